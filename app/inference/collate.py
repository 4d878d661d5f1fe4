"""Batch collation: pad prepared requests into the six inputs of the fused model contract.

Kept free of the service's settings and web dependencies so that the benchmark's peer servers and
in-process ceiling (``benchmarks/pipeline.py``, some in their own venvs) pad batches with the very same
code as the service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from app.contract import FACE_SIZE, MAX_TEXT_TOKENS, MODALITIES, N_MELS
from app.preprocessing.text import EncodedText


class Prepared(Protocol):
    """What :func:`collate` reads from one request (``app.inference.predictor.PreparedInput``)."""

    @property
    def text(self) -> EncodedText | None: ...

    @property
    def face(self) -> npt.NDArray[np.float32] | None: ...

    @property
    def audio_features(self) -> npt.NDArray[np.float32] | None: ...


def _bucket(value: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if value <= b:
            return b
    return value


def collate(
    items: Sequence[Prepared], *, text_multiple: int = 1, audio_buckets: Sequence[int] = ()
) -> dict[str, npt.NDArray[Any]]:
    """Pad a batch of prepared inputs into the six contract inputs (DESIGN.md, "Fused model contract").

    Text is right-padded to the batch's longest sequence rounded up to ``text_multiple`` (≤ 128) with
    ``attention_mask`` 0; audio frames are padded to the smallest of ``audio_buckets`` (frames) holding the
    batch's longest clip, with ``audio_mask`` 0. An absent modality gets a dummy (one [PAD] token / one
    silent frame with mask 1 so that no branch sees an all-zero mask) and ``modality_mask`` 0; the graph's
    fused output does not depend on the dummy.

    Returns:
        ``input_ids`` int64 [B, L], ``attention_mask`` int64 [B, L], ``face`` float32 [B, 1, 64, 64],
        ``audio_features`` float32 [B, T, 64], ``audio_mask`` float32 [B, T],
        ``modality_mask`` float32 [B, 3].
    """
    batch = len(items)
    longest_text = max((it.text.num_tokens for it in items if it.text is not None), default=1)
    length = min(MAX_TEXT_TOKENS, math.ceil(longest_text / text_multiple) * text_multiple)
    length = max(length, longest_text)
    longest_audio = max(
        (it.audio_features.shape[0] for it in items if it.audio_features is not None), default=1
    )
    frames = _bucket(longest_audio, sorted(audio_buckets)) if audio_buckets else longest_audio

    input_ids = np.zeros((batch, length), dtype=np.int64)
    attention_mask = np.zeros((batch, length), dtype=np.int64)
    face = np.zeros((batch, 1, FACE_SIZE, FACE_SIZE), dtype=np.float32)
    audio = np.zeros((batch, frames, N_MELS), dtype=np.float32)
    audio_mask = np.zeros((batch, frames), dtype=np.float32)
    modality_mask = np.zeros((batch, len(MODALITIES)), dtype=np.float32)
    for row, it in enumerate(items):
        if it.text is not None:
            input_ids[row, : it.text.num_tokens] = it.text.input_ids
            attention_mask[row, : it.text.num_tokens] = 1
            modality_mask[row, 0] = 1.0
        else:
            attention_mask[row, 0] = 1
        if it.face is not None:
            face[row] = it.face
            modality_mask[row, 1] = 1.0
        if it.audio_features is not None:
            n = it.audio_features.shape[0]
            audio[row, :n] = it.audio_features
            audio_mask[row, :n] = 1.0
            modality_mask[row, 2] = 1.0
        else:
            audio_mask[row, 0] = 1.0
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "face": face,
        "audio_features": audio,
        "audio_mask": audio_mask,
        "modality_mask": modality_mask,
    }
