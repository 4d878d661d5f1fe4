"""Batch collation driven by the model contract: pad prepared items into the ONNX inputs.

No modality is named here: every expert's tensors come from :class:`app.contract.ModelContract`, and each
item says which experts it has (:class:`app.preprocessing.pipeline.PreparedItem`). Kept free of the
service's settings and web dependencies, so the benchmark's peer servers and in-process ceiling pad batches
with the very same code as the service.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from app.contract import HOP_LENGTH, MAX_TEXT_TOKENS, V1_CONTRACT, ModelContract, TensorSpec
from app.preprocessing.pipeline import PreparedItem

#: Upper bound of a dynamic axis, where the graph has one (text: 128 tokens incl. [CLS]/[SEP]).
AXIS_LIMITS: Mapping[str, int] = {"text_length": MAX_TEXT_TOKENS}


def _bucket(value: int, buckets: Sequence[int]) -> int:
    for b in sorted(buckets):
        if value <= b:
            return b
    return value


def axis_padding(
    *, text_multiple: int = 1, audio_buckets: Sequence[int] = ()
) -> dict[str, Callable[[int], int]]:
    """Padding rules per dynamic axis: text length rounded up to ``text_multiple`` (≤ 128); audio frames to
    the smallest of ``audio_buckets`` that holds the longest clip (unchanged if none does); audio samples (a
    ``waveform`` expert's input) likewise, each bucket being that many 10-ms hops (``HOP_LENGTH`` samples)."""

    def text(n: int) -> int:
        return max(n, min(MAX_TEXT_TOKENS, math.ceil(n / text_multiple) * text_multiple))

    sample_buckets = [b * HOP_LENGTH for b in audio_buckets]
    return {
        "text_length": text,
        "audio_frames": lambda n: _bucket(n, audio_buckets) if audio_buckets else n,
        "audio_samples": lambda n: _bucket(n, sample_buckets) if sample_buckets else n,
    }


def validate_item(item: PreparedItem, contract: ModelContract = V1_CONTRACT) -> None:
    """Check one item's tensors against the contract before it joins a batch: every input of a used expert
    present, dtype, rank, fixed sizes, dynamic sizes in 1 … limit, finite floats.

    Raises:
        ValueError: on any violation (the item fails alone; its batch-mates run).
    """
    for expert in contract.experts:
        tensors = item.tensors(expert.name)
        if tensors is None:
            continue
        for spec in expert.inputs:
            _check(spec, tensors.get(spec.name))


def _check(spec: TensorSpec, arr: npt.NDArray[Any] | None) -> None:
    if arr is None:
        raise ValueError(f"missing input {spec.name}")
    bad = arr.dtype != np.dtype(spec.dtype) or arr.ndim != len(spec.shape)
    for size, dim in zip(arr.shape, spec.shape, strict=False):
        limit = AXIS_LIMITS.get(dim, size) if isinstance(dim, str) else dim
        bad = bad or (size != dim if isinstance(dim, int) else not 1 <= size <= limit)
    if bad or (arr.dtype.kind == "f" and not np.isfinite(arr).all()):
        raise ValueError(f"bad {spec.name} {arr.dtype} {arr.shape}")


def row_buckets(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two from 1 up to the first one ≥ 2 × ``max_batch_size``: the batch sizes and per-expert
    row counts :func:`collate` pads to when asked (a batch of ``max_batch_size`` items plus the filler rows
    its experts' counts need fits in the last one)."""
    out = [1]
    while out[-1] < 2 * max_batch_size:
        out.append(out[-1] * 2)
    return tuple(out)


def filler_rows(present: npt.NDArray[np.bool_], buckets: Sequence[int]) -> npt.NDArray[np.bool_]:
    """Rows to append to a batch so that its size and every expert's number of present rows are buckets.

    Args:
        present: bool [B, E], which expert each real row has.
        buckets: allowed sizes, ascending (e.g. :func:`row_buckets`).

    Returns:
        bool [F, E]: the filler rows' experts. An expert no real row has stays absent in every filler row
        (its branch keeps its fixed padding input), so only counts ≥ 1 are rounded up; F ≥ 0.
    """
    counts = present.sum(axis=0)
    wanted = np.array([_bucket(int(c), buckets) if c else 0 for c in counts], dtype=np.int64)
    extra = wanted - counts
    rows = _bucket(len(present) + int(extra.max(initial=0)), buckets) - len(present)
    filler: npt.NDArray[np.bool_] = np.arange(rows)[:, None] < extra[None, :]
    return filler


def collate(
    items: Sequence[PreparedItem],
    *,
    contract: ModelContract = V1_CONTRACT,
    text_multiple: int = 1,
    audio_buckets: Sequence[int] = (),
    buckets: Sequence[int] = (),
) -> dict[str, npt.NDArray[Any]]:
    """Pad a batch of prepared items into the contract's inputs (DESIGN.md, "Fused model contract").

    Every dynamic axis is padded to the batch's longest (by :func:`axis_padding`), with 0 in the padding
    (so mask tensors are 0 there). An absent expert gets a dummy (one element along each dynamic axis,
    filled with its spec's ``absent_fill``: one [PAD] token / one all-zero frame with mask 1) and 0 in the
    mask input; the graph's fused output does not depend on the dummy.

    ``buckets`` (e.g. :func:`row_buckets`; empty: off): filler rows are appended (:func:`filler_rows`; the
    dummies, with mask 1 for the experts whose count they round up) so the batch size and every expert's
    present-row count are buckets, i.e. the convolutions of the experts that run on their present rows only
    see a few input shapes (cuDNN's per-shape algorithm choice is then paid at warm-up). The graph's rows
    are independent: the first ``len(items)`` rows of the outputs are the items', the rest is discarded.

    Returns:
        input name → array with the batch axis first (v1: ``input_ids`` int64 [B, L], ``attention_mask``
        int64 [B, L], ``face`` float32 [B, 1, 64, 64], ``audio_features`` float32 [B, T, 64],
        ``audio_mask`` float32 [B, T]) and the mask float32 [B, E] in contract expert order; B =
        ``len(items)`` plus the filler rows.
    """
    pad = axis_padding(text_multiple=text_multiple, audio_buckets=audio_buckets)
    sizes = _axis_sizes(items, contract, pad)
    present = np.array(
        [[item.tensors(e.name) is not None for e in contract.experts] for item in items], dtype=bool
    ).reshape(len(items), len(contract.experts))
    if buckets:
        present = np.concatenate([present, filler_rows(present, buckets)])
    rows = len(present)
    feeds: dict[str, npt.NDArray[Any]] = {}
    for expert in contract.experts:
        for spec in expert.inputs:
            shape = tuple(d if isinstance(d, int) else sizes[d] for d in spec.shape)
            feeds[spec.name] = np.zeros((rows, *shape), dtype=spec.dtype)
        for row in range(rows):
            tensors = items[row].tensors(expert.name) if row < len(items) else None
            for spec in expert.inputs:
                value = tensors[spec.name] if tensors is not None else spec.dummy()
                region: tuple[int | slice, ...] = (row, *(slice(0, n) for n in value.shape))
                feeds[spec.name][region] = value
    feeds[contract.mask_input] = present.astype(np.float32)
    return feeds


def _axis_sizes(
    items: Sequence[PreparedItem], contract: ModelContract, pad: Mapping[str, Callable[[int], int]]
) -> dict[str, int]:
    longest: dict[str, int] = {}
    for expert in contract.experts:
        for spec in expert.inputs:
            for i, dim in enumerate(spec.shape):
                if isinstance(dim, str):
                    lengths = [
                        t[spec.name].shape[i] for it in items if (t := it.tensors(expert.name)) is not None
                    ]
                    longest[dim] = max(longest.get(dim, 1), *lengths, 1)
    return {dim: pad[dim](n) if dim in pad else n for dim, n in longest.items()}
