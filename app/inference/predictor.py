"""Predictor: raw uploads → preprocessing (thread pool) → dynamic batcher → model → :class:`Prediction`.

Stages (DESIGN.md, "Data flow"): :class:`~app.preprocessing.pipeline.PreprocessingPipeline` turns bytes into
a typed item; :func:`~app.inference.collate.collate` pads a batch of items into the contract's inputs;
:class:`~app.inference.model.OnnxModel` runs ONNX Runtime once per batch. This class owns the pools, the
batcher and the lifecycle (load, warm-up, readiness probe); the API turns a :class:`Prediction` into JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from app.config import Settings
from app.errors import ErrorType, ServiceError
from app.inference.admission import AdmissionLimit, admission_limit
from app.inference.batcher import DynamicBatcher
from app.inference.collate import collate, row_buckets
from app.inference.model import InferenceModel, ModelOutput, OnnxModel, run_items, warmup_batches
from app.inference.process_pool import PROCESS_FIELDS, FieldProcessPool, WorkerSpec
from app.inference.startup import build_pipeline, limit_blas_threads, probe_upload, readiness_problem
from app.preprocessing.experts import DEFAULT_EXPERTS, Expert
from app.preprocessing.pipeline import PreparedItem, PreprocessingPipeline, RawInput

logger = logging.getLogger("app.inference.predictor")


class NotReadyError(ServiceError):
    """The model is not loaded, not warmed up, or the required GPU is not active (HTTP 503)."""

    error_type = ErrorType.NOT_READY


class DeadlineExceededError(ServiceError):
    """The prediction did not finish within ``request_timeout_s`` (HTTP 504)."""

    error_type = ErrorType.TIMEOUT


@dataclass(frozen=True, slots=True)
class Prediction:
    """One request's answer before it becomes JSON: the prepared item, its model output row, and the
    milliseconds spent per stage (preprocess, queue, inference, total) with the batch size it ran in."""

    item: PreparedItem
    output: ModelOutput
    preprocess_ms: float
    queue_ms: float
    inference_ms: float
    total_ms: float
    batch_size: int


class Predictor:
    """Owns the model, the preprocessing pipeline, the thread pools (and worker processes, when
    configured) and the dynamic batcher. ``model``:
    inject a loaded model (tests, benchmarks; default :meth:`OnnxModel.load`); ``experts``: preprocessing
    registry (default :data:`~app.preprocessing.experts.DEFAULT_EXPERTS`). :meth:`start` / :meth:`stop`
    from the app lifespan, :meth:`predict` per request; ``not_ready_reason`` says why it is not ready.
    ``observers`` are called with every successful :class:`Prediction` (on the event loop; e.g. metrics)."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: InferenceModel | None = None,
        experts: dict[str, Expert] | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.pipeline: PreprocessingPipeline | None = None
        self.not_ready_reason: str | None = "model not loaded yet"
        self.observers: list[Callable[[Prediction], None]] = []
        self._ready = False
        self._experts = experts or dict(DEFAULT_EXPERTS)
        self.audio_buckets = settings.audio_buckets_frames()
        #: Row buckets of the batches (``settings.shape_buckets``; empty when off), computed once.
        self.row_buckets = row_buckets(settings.max_batch_size) if settings.shape_buckets else ()
        workers = settings.preprocess_workers
        self._preprocess_pool = ThreadPoolExecutor(workers, thread_name_prefix="preprocess")
        self._inference_pool = ThreadPoolExecutor(settings.batch_workers, thread_name_prefix="inference")
        self.batcher: DynamicBatcher[PreparedItem, ModelOutput] = DynamicBatcher(
            self.run_batch,
            executor=self._inference_pool,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            queue_size=settings.queue_size,
            workers=settings.batch_workers,
        )
        self.admission = AdmissionLimit(admission_limit(settings), self.batcher.retry_after_s)
        #: Worker processes for image and audio fields (``settings.preprocess_processes`` > 0), started by
        #: :meth:`start`.
        self.process_pool: FieldProcessPool | None = None

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Load the model (unless injected) and the tokenizer; build the preprocessing pipeline (blocking).

        Raises:
            ModelLoadError: missing/corrupt model, tokenizer or config.
        """
        limit_blas_threads()
        model = self.model or OnnxModel.load(self.settings)
        self.pipeline = build_pipeline(model, self.settings, self._experts)
        self.model = model

    def warmup(self) -> int:
        """Run every representative shape once (:func:`warmup_batches`). Returns the number of runs."""
        assert self.model is not None
        batches = warmup_batches(self.model.contract, self.settings, self.audio_buckets)
        for batch in batches:
            self.model.run(self.collate(batch))
        return len(batches)

    async def start(self) -> None:
        """Load (if needed), warm up, start the batcher, and pass one real upload through it (the probe)."""
        loop = asyncio.get_running_loop()
        if self.pipeline is None:
            await loop.run_in_executor(self._inference_pool, self.load)
        assert self.model is not None
        if self.settings.warmup:
            started = time.perf_counter()
            runs = await loop.run_in_executor(self._inference_pool, self.warmup)
            logger.info("warm-up: %d runs in %.0f ms", runs, (time.perf_counter() - started) * 1000)
        await self.batcher.start()
        # Decode a real upload in every preprocessing thread (loads the per-thread face detector), then
        # pass it through the batcher and the model.
        if self.settings.preprocess_processes and self.process_pool is None:
            await self._start_processes()
        upload = probe_upload()
        prepared = await asyncio.gather(
            *(self._prepare_fields(upload) for _ in range(self.settings.preprocess_workers))
        )
        outcome = await self.batcher.submit(prepared[0])
        self.not_ready_reason = readiness_problem(outcome.value.probabilities, self.model, self.settings)
        if self.not_ready_reason:
            logger.error(self.not_ready_reason)
            return
        self._ready = True
        logger.info("model %s ready on %s", self.model.spec.name, self.model.loaded.execution_provider)

    async def _start_processes(self) -> None:
        """Start the preprocessing worker processes (each builds its pipeline: tokenizer, detectors)."""
        assert self.model is not None
        model = self.model
        spec = WorkerSpec(
            model.contract,
            model.spec.tokenizer_file,
            tuple(model.loaded.active_providers),
            self.settings,
            self._experts,
            model.spec.name,
        )
        started = time.perf_counter()
        pool = FieldProcessPool(spec, self.settings.preprocess_processes, self.settings.request_timeout_s)
        pids = await pool.start()
        self.process_pool = pool
        elapsed = (time.perf_counter() - started) * 1000
        logger.info("preprocessing worker processes %s started in %.0f ms", pids, elapsed)

    async def stop(self) -> None:
        """Drain the batcher and shut the thread pools (and worker processes) down."""
        self._ready = False
        self.not_ready_reason = "shutting down"
        await self.batcher.stop(drain=True)
        self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        self._inference_pool.shutdown(wait=False, cancel_futures=True)
        if self.process_pool is not None:
            self.process_pool.shutdown()

    @property
    def ready(self) -> bool:
        """Loaded, warmed up, probe passed, GPU requirement met, and the batcher alive."""
        if self._ready and not self.batcher.running:
            self.not_ready_reason = "batcher is not running"
            return False
        return self._ready

    # ------------------------------------------------------------------ stages
    def prepare(self, raw: RawInput) -> PreparedItem:
        """Decode and preprocess one request (blocking). Raises: PreprocessingError (typed)."""
        assert self.pipeline is not None, "call load() first"
        return self.pipeline.prepare(raw)

    def collate(self, items: Sequence[PreparedItem]) -> dict[str, npt.NDArray[Any]]:
        """Pad items into the model's inputs with the configured text multiple and audio buckets."""
        assert self.model is not None
        return collate(
            items,
            contract=self.model.contract,
            text_multiple=self.settings.text_length_multiple,
            audio_buckets=self.audio_buckets,
            buckets=self.row_buckets,
        )

    @property
    def batch_by_experts(self) -> bool:
        """Whether batches run as sub-batches of items with the same experts (``settings.batch_by_experts``;
        unset: only when the model runs on the CPU execution provider)."""
        if self.settings.batch_by_experts is not None:
            return self.settings.batch_by_experts
        return self.model is not None and self.model.loaded.execution_provider == "CPUExecutionProvider"

    def run_batch(self, items: Sequence[PreparedItem]) -> list[ModelOutput | BaseException]:
        """Run one batch (blocking; the batcher calls it in the inference pool): :func:`run_items`."""
        assert self.model is not None
        return run_items(self.model, items, self.collate, by_experts=self.batch_by_experts)

    # ------------------------------------------------------------------ request path
    async def _in_pool(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._preprocess_pool, fn, *args)

    async def _prepare_fields(self, raw: RawInput) -> PreparedItem:
        """:meth:`prepare` in the preprocessing pool; a request with several fields has each field decoded
        and prepared as its own pool task, so a photo and a voice note of one request use two cores when
        the pool has them (one request's latency), at the same total work. With worker processes
        (:attr:`process_pool`), image and audio fields are prepared there and text in the thread pool. The
        first failing field in the contract's order is raised, as :meth:`prepare` would."""
        assert self.pipeline is not None, "call load() first"
        pipeline = self.pipeline
        fields = pipeline.fields(raw)
        processes = self.process_pool
        if processes is None and (len(fields) < 2 or self.settings.preprocess_workers < 2):
            item: PreparedItem = await self._in_pool(pipeline.prepare, raw)
            return item

        def task(modality: str) -> Awaitable[tuple[Any, dict[str, Any]]]:
            if processes is not None and modality in PROCESS_FIELDS:
                return processes.prepare_field(modality, raw.get(modality))
            return self._in_pool(pipeline.prepare_field, modality, raw.get(modality))

        done = await asyncio.gather(*(task(m) for m in fields), return_exceptions=True)
        for result in done:
            if isinstance(result, BaseException):
                raise result
        return pipeline.merge(fields, list(done))  # type: ignore[arg-type]

    async def predict(self, raw: RawInput) -> Prediction:
        """Full pipeline for one request.

        Raises:
            NotReadyError, PreprocessingError, QueueFullError (the queue or the admission limit is full),
            DeadlineExceededError, BatcherClosedError
            (each a :class:`~app.errors.ServiceError` with its type), RuntimeError (model failure).
        """
        if not self.ready:
            raise NotReadyError(self.not_ready_reason or "model not ready")
        with self.admission.admit():
            started = time.perf_counter()
            item = await self._prepare_fields(raw)
            preprocess_ms = (time.perf_counter() - started) * 1000.0
            timeout = self.settings.request_timeout_s
            try:
                out = await asyncio.wait_for(self.batcher.submit(item), timeout=timeout)
            except TimeoutError:
                raise DeadlineExceededError(f"prediction took longer than {timeout:g} s") from None
        total_ms = (time.perf_counter() - started) * 1000.0
        times = (preprocess_ms, out.queue_ms, out.inference_ms, total_ms)
        prediction = Prediction(item, out.value, *times, out.batch_size)
        for observe in self.observers:
            observe(prediction)
        return prediction
