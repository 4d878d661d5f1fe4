"""ONNX Runtime session creation with honest execution-provider reporting.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` in ``get_available_providers()`` even when CUDA or cuDNN
libraries are missing; session creation then logs an error and silently falls back to the CPU. Only
``session.get_providers()`` after creation tells which providers are really active, so that is what this
module reports (ONNX Runtime docs, "Execution Providers"; NOTES.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from app.inference.repository import ModelLoadError, ModelSpec

logger = logging.getLogger("app.inference.session")

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

#: CUDA provider options (ONNX Runtime docs, "CUDA Execution Provider"): grow the arena only by what is
#: requested (bucketed shapes keep it small). ``cudnn_conv_algo_search`` comes from the settings
#: (``Settings.cuda_conv_algo_search``): the cuDNN search runs again for every new conv input shape, and the
#: face network sees a new shape whenever the number of faces in a batch changes.
CUDA_OPTIONS: dict[str, Any] = {
    "arena_extend_strategy": "kSameAsRequested",
}


@dataclass(frozen=True)
class LoadedSession:
    """An ORT session plus what is true about it.

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        requested_providers: providers asked for, in order.
        active_providers: ``session.get_providers()`` after creation.
        model_file: the ONNX file loaded.
    """

    session: Any
    requested_providers: tuple[str, ...]
    active_providers: tuple[str, ...]
    model_file: Path

    @property
    def execution_provider(self) -> str:
        """The provider that runs the graph's nodes first (the first active one)."""
        return self.active_providers[0] if self.active_providers else "unknown"


def create_session(
    spec: ModelSpec,
    providers: list[str],
    *,
    intra_op_threads: int = 0,
    inter_op_threads: int = 1,
    optimization_level: str = "all",
    cuda_conv_algo_search: str = "DEFAULT",
) -> LoadedSession:
    """Create the ORT session for ``spec`` and verify its inputs/outputs and active providers.

    The graph is ``spec.variants[providers[0]]`` when the config lists a variant for the preferred provider;
    if the session falls back to another provider, it is recreated with that provider's graph.

    Raises:
        ModelLoadError: unreadable/corrupt ONNX file or inputs/outputs that differ from the contract.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = _OPT_LEVELS[optimization_level]
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only; the CUDA fallback is reported by us below
    # CUDA Conv kernels log through ORT's default logger, not the session's: with
    # cudnn_conv_algo_search=DEFAULT a warning per conv per new shape ("running in Fallback mode").
    ort.set_default_logger_severity(3)

    def build(path: Path, wanted: list[str]) -> Any:
        cuda = {**CUDA_OPTIONS, "cudnn_conv_algo_search": cuda_conv_algo_search}
        with_options: list[Any] = [(p, cuda) if p == "CUDAExecutionProvider" else p for p in wanted]
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=with_options)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/NoSuchFile types
            raise ModelLoadError(f"could not load ONNX model {path}: {type(exc).__name__}: {exc}") from exc

    model_file = spec.file_for(providers[0])
    session = build(model_file, providers)
    active = tuple(session.get_providers())
    if active and active[0] != providers[0]:
        logger.warning(
            "execution provider %s requested but not active; running on %s", providers[0], active[0]
        )
        fallback_file = spec.file_for(active[0])
        if fallback_file != model_file:
            model_file = fallback_file
            session = build(model_file, [p for p in providers if p in active])
            active = tuple(session.get_providers())

    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    contract = spec.contract
    if inputs != set(contract.input_names) or not set(contract.outputs) <= outputs:
        raise ModelLoadError(
            f"model {model_file} has inputs {sorted(inputs)} / outputs {sorted(outputs)}; contract needs "
            f"{list(contract.input_names)} / {list(contract.outputs)}"
        )
    logger.info("ONNX Runtime session for %s: active providers %s", model_file, list(active))
    return LoadedSession(
        session=session, requested_providers=tuple(providers), active_providers=active, model_file=model_file
    )
