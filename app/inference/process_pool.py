"""Preprocessing in worker processes (``SENTIMENT_PREPROCESS_PROCESSES`` > 0): image and audio fields are
decoded and prepared outside the server process, so that work does not contend for the server's GIL.

Each worker process (started with the ``spawn`` method: the server's threads and ONNX Runtime sessions are
not forked) builds its own :class:`~app.preprocessing.pipeline.PreprocessingPipeline` once, from the same
model contract, tokenizer, limits and execution providers as the server's (its own face detector and voice
activity detector sessions, one intra-op thread each). A task sends the field's bytes to a worker and gets
back :meth:`~app.preprocessing.pipeline.PreprocessingPipeline.prepare_field`'s result (the facts and the
experts' tensors: ~170 KB for an image, ~4 KB per second of audio), or the typed
:class:`~app.preprocessing.errors.PreprocessingError` it raised, pickled. Text fields stay in the server's
thread pool (tokenising a tweet costs less than the round trip).

A worker that dies (killed by the kernel's OOM killer, or a crash in a native decoder) breaks the
``concurrent.futures`` pool and fails every task in it with ``BrokenProcessPool``: the pool is then replaced
by a fresh one and each failed task is run once more there; a task that breaks the fresh pool too is
answered with :class:`PreprocessWorkerError` (HTTP 500 ``internal_error``) instead of taking the server down,
and that pool is replaced too, so the next request finds working workers.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from app.contract import ModelContract
from app.errors import ServiceError
from app.preprocessing.experts import Expert, ExpertInput
from app.preprocessing.pipeline import PreprocessingPipeline

logger = logging.getLogger("app.inference.process_pool")

#: Request fields prepared in worker processes; the others (text) stay in the server's thread pool.
PROCESS_FIELDS: frozenset[str] = frozenset({"image", "audio"})


class PreprocessWorkerError(ServiceError):
    """A preprocessing worker process died while preparing this request, twice (HTTP 500)."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs to build the server's preprocessing pipeline (pickled once per worker).

    Attributes:
        contract: the model's experts and inputs.
        tokenizer_file: the model's ``tokenizer.json``.
        providers: the fused model's active execution providers (the detectors use the same).
        settings: the service settings (limits, language gate, detector file, malloc tuning).
        experts: the preprocessing registry; its prepare functions must be importable module attributes.
        model_name: for error messages.
    """

    contract: ModelContract
    tokenizer_file: Path
    providers: tuple[str, ...]
    settings: Settings
    experts: Mapping[str, Expert]
    model_name: str = "model"


_pipeline: PreprocessingPipeline | None = None


def _init_worker(spec: WorkerSpec) -> None:
    """Worker initializer: malloc tuning, one BLAS thread, then the pipeline (detector sessions loaded)."""
    global _pipeline
    from app.inference.startup import limit_blas_threads, pipeline_for
    from app.malloc import tune_malloc

    if spec.settings.tune_malloc:
        tune_malloc()
    limit_blas_threads()
    _pipeline = pipeline_for(
        spec.contract, spec.tokenizer_file, spec.providers, spec.settings, spec.experts, spec.model_name
    )


def _prepare_field(modality: str, value: Any) -> tuple[Any, dict[str, ExpertInput]]:
    """Runs in a worker: :meth:`PreprocessingPipeline.prepare_field` on the worker's pipeline."""
    assert _pipeline is not None, "worker initializer did not run"
    return _pipeline.prepare_field(modality, value)


def _worker_pid() -> int:
    return os.getpid()


class FieldProcessPool:
    """A pool of ``processes`` worker processes preparing request fields (see the module docstring).

    Args:
        spec: what each worker builds its pipeline from.
        processes: number of worker processes (≥ 1).
    """

    def __init__(self, spec: WorkerSpec, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"processes must be ≥ 1, got {processes}")
        self.spec = spec
        self.processes = processes
        self._lock = threading.Lock()
        self._closed = False
        self._executor = self._new_executor()
        self.restarts = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.spec,),
        )

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """The current executor, replaced by a fresh one first if it is still ``broken`` (once, however many
        tasks saw it break)."""
        with self._lock:
            if self._executor is broken and not self._closed:
                self.restarts += 1
                logger.error(
                    "a preprocessing worker process died; starting a new pool (restart %d)", self.restarts
                )
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
                self._launch(self._executor)
            return self._executor

    def _launch(self, executor: ProcessPoolExecutor) -> list[Future[int]]:
        """Start all of ``executor``'s workers now (the executor starts one per task submitted while none is
        idle), rather than on the requests that would find none; each task returns its worker's pid."""
        return [executor.submit(_worker_pid) for _ in range(self.processes)]

    async def prepare_field(self, modality: str, value: Any) -> tuple[Any, dict[str, ExpertInput]]:
        """Prepare one request field in a worker process.

        Returns:
            As :meth:`PreprocessingPipeline.prepare_field`: (the field's facts, expert name → input).

        Raises:
            PreprocessingError: typed (413 / 415 / 422), as in the server process.
            PreprocessWorkerError: the worker died on this task in the pool and again in a fresh one (both
                pools replaced), or the service is shutting down.
        """
        loop = asyncio.get_running_loop()
        executor = self._executor
        for _ in range(2):
            try:
                return await loop.run_in_executor(executor, _prepare_field, modality, value)
            except BrokenProcessPool:
                if self._closed:
                    break
                executor = self._replace(executor)  # the next task finds a working pool either way
        raise PreprocessWorkerError("a preprocessing worker process exited while preparing this request")

    async def start(self) -> list[int]:
        """Start every worker (each loads its detectors) and return their process ids."""
        pids = await asyncio.gather(*(asyncio.wrap_future(f) for f in self._launch(self._executor)))
        return sorted(set(pids))

    def pids(self) -> list[int]:
        """Process ids of the current workers (tests, metrics)."""
        return sorted(p.pid for p in getattr(self._executor, "_processes", {}).values() if p.pid is not None)

    def shutdown(self) -> None:
        """Stop the workers; queued tasks are cancelled."""
        with self._lock:
            self._closed = True
            self._executor.shutdown(wait=False, cancel_futures=True)
