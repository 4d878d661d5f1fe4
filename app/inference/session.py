"""ONNX Runtime session creation with honest execution-provider reporting.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` in ``get_available_providers()`` even when CUDA or cuDNN
libraries are missing; session creation then logs an error and silently falls back to the CPU. Only
``session.get_providers()`` after creation tells which providers are really active, so that is what this
module reports (ONNX Runtime docs, "Execution Providers"; NOTES.md).

Before asking for CUDA, :func:`missing_cuda_libraries` loads the CUDA and cuDNN libraries the installed
``onnxruntime-gpu`` build links against (``libcublasLt.so.13`` ... for a CUDA 13 build), with the same
loader search ONNX Runtime uses (``dlopen`` by soname: ``LD_LIBRARY_PATH``, the ``ldconfig`` cache, and
libraries already loaded, e.g. by ``onnxruntime.preload_dlls()`` or ``import torch``). If one is missing, the
CUDA (and TensorRT) providers are not requested and one plain warning says why, instead of ONNX Runtime's red
``ERROR ... libcublasLt.so.13: cannot open shared object file`` line and its silent fallback.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable
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


#: Providers that run on the CUDA libraries (ONNX Runtime docs, "TensorRT Execution Provider": TensorRT
#: needs the CUDA provider's libraries as well).
CUDA_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def cuda_libraries(cuda_version: str | None) -> tuple[str, ...]:
    """Sonames the CUDA execution provider of an ``onnxruntime-gpu`` build for ``cuda_version`` needs.

    The NEEDED entries of ``libonnxruntime_providers_cuda.so`` (``readelf -d``: cuBLASLt, cuBLAS, cuRAND,
    the CUDA runtime, the driver ``libcuda.so.1``) plus cuDNN 9, which the provider loads when it creates
    its handles (ONNX Runtime docs, "CUDA Execution Provider", requirements table; the same names
    ``onnxruntime.preload_dlls()`` loads on Linux). Empty for a build without CUDA (``cuda_version`` None).
    """
    if not cuda_version:
        return ()
    major = cuda_version.split(".")[0]
    return (
        "libcuda.so.1",
        f"libcudart.so.{major}",
        f"libcublasLt.so.{major}",
        f"libcublas.so.{major}",
        "libcurand.so.10",
        "libcudnn.so.9",
    )


def _build_cuda_version() -> str | None:
    """The CUDA version the installed ONNX Runtime was built with (None: a CPU-only build)."""
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:  # pragma: no cover - every onnxruntime wheel ships it
        return None
    version = getattr(build_and_package_info, "cuda_version", None)
    return str(version) if version else None


def missing_cuda_libraries(
    names: tuple[str, ...] | None = None, load: Callable[[str], object] = ctypes.CDLL
) -> list[str]:
    """The libraries of :func:`cuda_libraries` that cannot be loaded: the soname, followed by the loader's
    reason when it is not the usual "cannot open shared object file" (a library that is found but broken).

    Args:
        names: sonames to probe; default: those of the installed ONNX Runtime build.
        load: loads one library by soname, raising ``OSError`` when it cannot (``ctypes.CDLL``: ``dlopen``
            with the loader's search path); tests pass a stub.
    """
    if names is None:
        # The sonames are Linux's; elsewhere (Windows DLL names differ) ONNX Runtime is left to decide.
        names = cuda_libraries(_build_cuda_version()) if sys.platform.startswith("linux") else ()
    missing = []
    for name in names:
        try:
            load(name)
        except OSError as exc:
            reason = str(exc).removeprefix(f"{name}: ")
            missing.append(name if "cannot open shared object file" in reason else f"{name} ({reason})")
    return missing


#: ``CU_CTX_SCHED_BLOCKING_SYNC`` (CUDA driver API, ``cuda.h``): a host thread waiting for the GPU sleeps on
#: a synchronisation primitive instead of spinning.
CU_CTX_SCHED_BLOCKING_SYNC = 0x04


def set_blocking_sync(load: Callable[[str], Any] = ctypes.CDLL) -> str | None:
    """Make every CUDA device's primary context (the one ONNX Runtime's CUDA provider uses) block instead of
    spin while the host waits for the GPU (``cuDevicePrimaryCtxSetFlags_v2`` with
    :data:`CU_CTX_SCHED_BLOCKING_SYNC`; CUDA's default on a host with more cores than contexts is to
    spin-wait, a busy core per waiting thread for as long as the GPU works).

    Args:
        load: loads ``libcuda.so.1`` (``ctypes.CDLL``; tests pass a stub).

    Returns:
        None when set on every device; else why not (no driver library, a CUresult error code).
    """
    try:
        cuda = load("libcuda.so.1")
    except OSError as exc:
        return f"libcuda.so.1 not loadable: {exc}"
    try:  # a library without these symbols (a shim, a stub) is a reason, not a crash
        init, get_count, get_device = cuda.cuInit, cuda.cuDeviceGetCount, cuda.cuDeviceGet
        set_flags = getattr(cuda, "cuDevicePrimaryCtxSetFlags_v2", None) or cuda.cuDevicePrimaryCtxSetFlags
    except AttributeError as exc:
        return f"libcuda.so.1 lacks a driver API symbol: {exc}"
    count = ctypes.c_int(0)
    if (rc := init(0)) != 0 or (rc := get_count(ctypes.byref(count))) != 0:
        return f"cuInit / cuDeviceGetCount returned CUresult {rc}"
    for index in range(count.value):
        device = ctypes.c_int(0)
        if (rc := get_device(ctypes.byref(device), index)) != 0 or (
            rc := set_flags(device, CU_CTX_SCHED_BLOCKING_SYNC)
        ) != 0:
            return f"device {index}: CUresult {rc}"
    return None


def usable_providers(providers: list[str], probe: Callable[[], list[str]] | None = None) -> list[str]:
    """``providers`` without the CUDA ones when their libraries cannot be loaded (one warning says which).

    On a GPU host the list is returned unchanged. When every provider would be dropped, the CPU provider
    is used, so a session can still be created (``SENTIMENT_REQUIRE_GPU`` then keeps the service
    not ready, app/inference/startup.py). ``probe`` defaults to :func:`missing_cuda_libraries`.
    """
    if not any(p in CUDA_PROVIDERS for p in providers):
        return providers
    missing = (probe or missing_cuda_libraries)()
    if not missing:
        return providers
    kept = [p for p in providers if p not in CUDA_PROVIDERS] or ["CPUExecutionProvider"]
    logger.warning(
        "CUDA execution provider not used: the dynamic loader cannot load %s (onnxruntime-gpu needs CUDA %s "
        "and cuDNN 9); running on %s. SENTIMENT_PROVIDERS=CPUExecutionProvider skips this check.",
        ", ".join(missing),
        _build_cuda_version() or "?",
        kept[0],
    )
    return kept


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
    cuda_blocking_sync: bool = False,
) -> LoadedSession:
    """Create the ORT session for ``spec`` and verify its inputs/outputs and active providers.

    CUDA providers are asked for only when their libraries load (:func:`usable_providers`); the requested
    providers reported are ``providers`` as configured. The graph is ``spec.variants[p]`` for the first
    provider ``p`` asked for when the config lists a variant for it; if the session falls back to another
    provider, it is recreated with that provider's graph. When a CUDA provider comes first, ORT's thread
    pools do not spin-wait (``session.intra_op.allow_spinning`` / ``inter_op`` = 0): on a GPU they run only
    the few CPU nodes, and spinning would burn host cores between runs; with ``cuda_blocking_sync`` the
    CUDA context does not spin either while a run waits for the GPU (:func:`set_blocking_sync`; a failure
    is logged once and the session is created as usual).

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

    wanted = usable_providers(providers)
    if wanted[0] in CUDA_PROVIDERS:
        # On a GPU the intra-op pool runs only the few nodes left on the CPU; spin-waiting threads would
        # keep host cores busy between runs (ORT's default: spin), taking them from preprocessing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if cuda_blocking_sync and (why := set_blocking_sync()) is not None:
            logger.warning("CUDA blocking synchronisation not set (%s); host threads spin-wait", why)
    model_file = spec.file_for(wanted[0])
    session = build(model_file, wanted)
    active = tuple(session.get_providers())
    if active and active[0] != wanted[0]:
        logger.warning("execution provider %s requested but not active; running on %s", wanted[0], active[0])
        fallback_file = spec.file_for(active[0])
        if fallback_file != model_file:
            model_file = fallback_file
            session = build(model_file, [p for p in wanted if p in active])
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
