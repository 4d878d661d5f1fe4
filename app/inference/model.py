"""The model runner: load the ONNX graph, verify its execution providers, warm it up, run batches.

Answers in the contract's label order (``app.contract.LABELS``) whatever order the graph's config lists.
Knows nothing of HTTP or of request fields: it sees padded feeds (:func:`app.inference.collate.collate`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from app.config import Settings
from app.contract import LABELS, MAX_TEXT_TOKENS, ModelContract
from app.inference.collate import row_buckets, validate_item
from app.inference.repository import ModelSpec, load_spec
from app.inference.session import LoadedSession, create_session
from app.preprocessing.pipeline import PreparedItem

#: ONNX tensor type names → numpy dtypes, to cast feeds to what a graph variant declares (e.g. float16).
_ORT_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """An ONNX input or output as the session reports it: name, ONNX type, shape (symbolic dims as str)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """One row of the model output, in ``LABELS`` order: fused probabilities float32 [3], per-expert
    probabilities float32 [E, 3] and the presence mask float32 [E] (contract expert order)."""

    probabilities: npt.NDArray[np.float32]
    modality_probabilities: npt.NDArray[np.float32]
    modality_mask: npt.NDArray[np.float32]


class InferenceModel(Protocol):
    """What the predictor needs of a model: its contract, identity, and a batched run."""

    @property
    def contract(self) -> ModelContract: ...

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def loaded(self) -> LoadedSession: ...

    def run(
        self, feeds: Mapping[str, npt.NDArray[Any]]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

    def describe(self) -> tuple[list[TensorInfo], list[TensorInfo]]: ...


class OnnxModel:
    """One ONNX Runtime session of the fused model (thread-safe ``run``, as ``InferenceSession.run`` is)."""

    def __init__(self, spec: ModelSpec, loaded: LoadedSession) -> None:
        self.spec = spec
        self.loaded = loaded
        session = loaded.session
        self._input_dtypes = {
            i.name: _ORT_DTYPES[i.type] for i in session.get_inputs() if i.type in _ORT_DTYPES
        }
        self._label_order = [spec.labels.index(label) for label in LABELS]

    @classmethod
    def load(cls, settings: Settings) -> OnnxModel:
        """Resolve the model repository and create the verified session (blocking).

        Raises:
            ModelLoadError: missing/corrupt model or config, inputs that differ from the contract.
        """
        spec = load_spec(settings.model_dir, settings.model_name, settings.model_version)
        loaded = create_session(
            spec,
            list(settings.providers),
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            optimization_level=settings.graph_optimization_level,
            cuda_conv_algo_search=settings.cuda_conv_algo_search,
            cuda_blocking_sync=settings.cuda_blocking_sync,
        )
        return cls(spec, loaded)

    @property
    def contract(self) -> ModelContract:
        return self.spec.contract

    def run(
        self, feeds: Mapping[str, npt.NDArray[Any]]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Run one padded batch.

        Returns:
            (fused probabilities float32 [B, 3], per-expert probabilities float32 [B, E, 3]), both in
            ``LABELS`` order.
        """
        inputs = {
            n: feeds[n].astype(self._input_dtypes.get(n, feeds[n].dtype), copy=False)
            for n in self.contract.input_names
        }
        fused, experts = self.loaded.session.run(list(self.contract.outputs), inputs)
        order = self._label_order
        return np.asarray(fused, np.float32)[:, order], np.asarray(experts, np.float32)[:, :, order]

    def describe(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """The session's inputs and outputs (for the model info route)."""
        session = self.loaded.session

        def io(nodes: Any) -> list[TensorInfo]:
            return [
                TensorInfo(n.name, str(n.type), tuple(d if isinstance(d, int) else str(d) for d in n.shape))
                for n in nodes
            ]

        return io(session.get_inputs()), io(session.get_outputs())


def warmup_batches(
    contract: ModelContract, settings: Settings, audio_buckets: Sequence[int]
) -> list[list[PreparedItem]]:
    """The representative batches to run once before serving (ORT allocates and, on CUDA, picks kernels per
    shape): every expert present at batch sizes 1 and ``max_batch_size``; then one item per text length
    multiple (≤ 128 tokens) and per audio bucket (frames), for each expert with that dynamic axis.

    With ``settings.shape_buckets``: every expert present at each row bucket
    (:func:`app.inference.collate.row_buckets`; the experts that run on their present rows only see those
    counts), and each audio bucket at each row bucket (the audio network runs on every row of a batch, filler
    rows included): ``len(row_buckets) × (1 + audio buckets)`` batches more, less the sizes 1 and
    ``max_batch_size`` already in the list."""
    every = PreparedItem.of(**{e.name: {t.name: t.dummy() for t in e.inputs} for e in contract.experts})
    sizes = {1, settings.max_batch_size}
    if settings.shape_buckets:
        sizes |= set(row_buckets(settings.max_batch_size))
    batches = [[every] * size for size in sorted(sizes)]
    if settings.shape_buckets:
        for expert in (e for e in contract.experts if any("audio_frames" in t.shape for t in e.inputs)):
            for n in audio_buckets:
                one = PreparedItem.of(
                    **{expert.name: {t.name: t.dummy({"audio_frames": n}) for t in expert.inputs}}
                )
                batches += [[one] * size for size in row_buckets(settings.max_batch_size)]
    step = settings.text_length_multiple
    lengths = {
        "text_length": [min(n, MAX_TEXT_TOKENS) for n in range(step, MAX_TEXT_TOKENS + step, step)],
        "audio_frames": list(audio_buckets),
    }
    for axis, values in lengths.items():
        for expert in (e for e in contract.experts if any(axis in t.shape for t in e.inputs)):
            for n in values:
                tensors = {t.name: t.dummy({axis: n}) for t in expert.inputs}
                batches.append([PreparedItem.of(**{expert.name: tensors})])
    return batches


def run_items(
    model: InferenceModel,
    items: Sequence[PreparedItem],
    collate: Callable[[Sequence[PreparedItem]], dict[str, npt.NDArray[Any]]],
    *,
    by_experts: bool = False,
) -> list[ModelOutput | BaseException]:
    """Validate, collate and run one batch; one result per item, in order.

    Items that fail validation (:func:`app.inference.collate.validate_item`) get their ``ValueError`` and
    their batch-mates still run; a row that is not a finite probability vector gets a ``RuntimeError``.
    ``by_experts``: run the batch as sub-batches of items with the same experts present (one
    ``session.run`` each, in order of first appearance), so that no expert computes rows it has no input
    for (a tweet's batch-mate without text otherwise runs the text encoder on one [PAD] token, a clip's
    batch-mate without audio its padding frames). Every row's result is the same either way (the graph's
    rows are independent).
    """
    results: list[ModelOutput | BaseException] = [RuntimeError("no result")] * len(items)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, item in enumerate(items):
        try:
            validate_item(item, model.contract)
        except ValueError as exc:
            results[i] = exc
            continue
        key = tuple(e.name for e in model.contract.experts if item.tensors(e.name) is not None)
        groups.setdefault(key if by_experts else (), []).append(i)
    for group in groups.values():
        feeds = collate([items[i] for i in group])
        probs, expert_probs = model.run(feeds)
        mask = feeds[model.contract.mask_input]
        for row, i in enumerate(group):
            p = probs[row]
            if np.isfinite(p).all() and abs(float(p.sum()) - 1.0) <= 1e-3:
                results[i] = ModelOutput(p, expert_probs[row], mask[row])
            else:
                results[i] = RuntimeError("model output is not a probability vector")
    return results
