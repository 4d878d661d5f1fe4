"""Audio branch: a compact 2-D CNN on log-mel features with masked, padding-invariant pooling.

Input ``audio_features`` float32 [B, T, 64] (``app.preprocessing.audio.log_mel``) and ``audio_mask``
float32 [B, T] (1 = real frame). Padding invariance (the server pads batches to length buckets) holds
exactly because (1) the per-utterance normalisation uses only real frames, (2) padded frames are set to 0
before every convolution and pooling, which equals the convolution's own zero padding at the end of an
unpadded clip, (3) max pooling runs after ReLU (values ≥ 0) with ``ceil_mode=True``, so a window holding
real frames and zeroed padding has the same maximum as the shorter window at the end of the unpadded clip,
and the frame mask is max-pooled the same way, and (4) the final pooling is a masked mean and masked max
over time. Outputs: 6 CREMA-D emotion logits (ANG, DIS, FEA, HAP, NEU, SAD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from app.contract import N_MELS


class ConvBlock(nn.Module):
    """Conv 3×3 + BatchNorm + ReLU (``n_conv`` times, padded frames zeroed), then 2×2 max pooling."""

    def __init__(self, cin: int, cout: int, n_conv: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False) for i in range(n_conv)]
        )
        self.bns = nn.ModuleList([nn.BatchNorm2d(cout) for _ in range(n_conv)])

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T, F], m [B, 1, T, 1] → pooled x [B, C', ceil(T/2), F/2], pooled m."""
        for conv, bn in zip(self.convs, self.bns, strict=True):
            x = F.relu(bn(conv(x * m)))
        x = F.max_pool2d(x * m, 2, 2, ceil_mode=True)
        m = F.max_pool2d(m, (2, 1), (2, 1), ceil_mode=True)
        return x, m


class AudioCNN(nn.Module):
    """Log-mel CNN: features float32 [B, T, 64] + mask [B, T] → ``n_classes`` emotion logits [B, 6]."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), n_classes: int = 6) -> None:
        super().__init__()
        blocks = []
        cin = 1
        for i, c in enumerate(channels):
            blocks.append(ConvBlock(cin, c, 1 if i in (0, len(channels) - 1) else 2))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(2 * cin, n_classes)
        self.spec_augment = False

    @staticmethod
    def normalise(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-utterance normalisation over real frames: per-band mean, one scalar std. x [B,T,M], "
        "mask [B,T]."""
        m = mask.unsqueeze(-1)
        n = m.sum(1, keepdim=True).clamp(min=1.0)
        mean = (x * m).sum(1, keepdim=True) / n
        centred = (x - mean) * m
        var = (centred**2).sum((1, 2), keepdim=True) / (n * N_MELS)
        return centred / torch.sqrt(var + 1e-5)

    def forward(self, audio_features: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        return self.from_normalised(self.normalise(audio_features, audio_mask), audio_mask)

    def from_normalised(self, x: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, 6] from normalised features x [B, T, M] (0 at padded frames) and the frame mask [B, T];
        training mixes examples in this normalised domain (mixup)."""
        if self.training and self.spec_augment:
            x = spec_augment(x)
        h = x.unsqueeze(1)  # [B, 1, T, M]
        m = audio_mask[:, None, :, None]
        for block in self.blocks:
            h, m = block(h, m)
        h = h.mean(dim=3)  # [B, C, T']
        mt = m[:, :, :, 0]  # [B, 1, T']
        mean = (h * mt).sum(2) / mt.sum(2).clamp(min=1.0)
        mx = torch.where(mt > 0, h, torch.zeros_like(h)).amax(2)  # h ≥ 0 after ReLU, so 0 is neutral
        logits: torch.Tensor = self.head(self.dropout(torch.cat([mean, mx], dim=1)))
        return logits


def spec_augment(
    x: torch.Tensor, n_freq: int = 2, f_width: int = 8, n_time: int = 2, t_width: int = 20
) -> torch.Tensor:
    """SpecAugment masks (Park et al., 2019) on normalised features [B, T, M]: set bands/frames to 0."""
    b, t, f = x.shape
    keep = torch.ones_like(x)
    for _ in range(n_freq):
        w = torch.randint(0, f_width + 1, (b, 1, 1))
        s = (torch.rand(b, 1, 1) * (f - w)).long()
        idx = torch.arange(f).view(1, 1, f)
        keep = keep * ~((idx >= s) & (idx < s + w))
    for _ in range(n_time):
        w = torch.randint(0, t_width + 1, (b, 1, 1))
        s = (torch.rand(b, 1, 1) * (t - w).clamp(min=0)).long()
        idx = torch.arange(t).view(1, t, 1)
        keep = keep * ~((idx >= s) & (idx < s + w))
    return x * keep
