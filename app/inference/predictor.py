"""Predictor: raw uploads → preprocessing (thread pool) → dynamic batcher → ORT → :class:`PredictResponse`.

Stages (DESIGN.md, "Data flow"): :meth:`Predictor.prepare` (pure, runs in the preprocessing pool) turns
bytes into arrays; :func:`collate` pads a batch of them into the six contract inputs;
:meth:`Predictor.run_batch` runs ORT once per batch; :meth:`Predictor.predict` ties them together for one
request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from app.config import Settings
from app.contract import FACE_SIZE, INPUT_NAMES, LABELS, MAX_TEXT_TOKENS, N_MELS, OUTPUT_NAMES
from app.inference.batcher import BatchOutcome, DynamicBatcher
from app.inference.collate import collate
from app.inference.repository import ModelLoadError, ModelSpec, load_spec
from app.inference.session import LoadedSession, create_session
from app.preprocessing.audio import decode_audio, log_mel
from app.preprocessing.errors import InputTooLargeError, PreprocessingError
from app.preprocessing.face import FaceBox, largest_face_input
from app.preprocessing.image import decode_image
from app.preprocessing.text import EncodedText, encode_text, load_tokenizer, normalize_text
from app.schemas import (
    AudioResult,
    FaceBoxModel,
    ImageResult,
    Modalities,
    ModelInfo,
    ModelInput,
    ModelRef,
    PredictResponse,
    Probabilities,
    TextResult,
    Timings,
)

logger = logging.getLogger("app.inference.predictor")


class NotReadyError(RuntimeError):
    """The model is not loaded, not warmed up, or the required GPU is not active."""


class DeadlineExceededError(RuntimeError):
    """The prediction did not finish within ``request_timeout_s``."""


@dataclass(frozen=True, slots=True)
class RawInput:
    """One request's modalities as received (``None`` = absent)."""

    text: str | None = None
    image: bytes | None = None
    audio: bytes | None = None

    @property
    def empty(self) -> bool:
        return self.text is None and self.image is None and self.audio is None


@dataclass(frozen=True, slots=True)
class PreparedInput:
    """Model-ready arrays of one request plus the facts reported back.

    Attributes:
        text: tokenised text, or None.
        face: float32 [1, 64, 64] in [-1, 1], or None (no image, or no face found).
        audio_features: float32 [T, 64] log-mel frames, or None.
        text_facts / image_facts / audio_facts: what the response reports per modality (None = not sent).
    """

    text: EncodedText | None = None
    face: npt.NDArray[np.float32] | None = None
    audio_features: npt.NDArray[np.float32] | None = None
    text_facts: dict[str, Any] | None = None
    image_facts: dict[str, Any] | None = None
    audio_facts: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """One row of the model output: fused [3] and per-modality [3, 3] probabilities (contract label order)."""

    probabilities: npt.NDArray[np.float32]
    modality_probabilities: npt.NDArray[np.float32]
    modality_mask: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(3, np.float32))


def limit_blas_threads() -> None:
    """Make numpy's BLAS (OpenBLAS in the numpy wheels) single-threaded in this process, for good.

    The log-mel filterbank product (:func:`app.preprocessing.audio.log_mel`) is a small matrix product that
    runs inside every preprocessing thread; a multi-threaded BLAS starts its own CPU-count threads for each,
    which only oversubscribes the cores (the pool already runs in parallel). Measured side by side with
    ``python -m benchmarks.blas_threads`` (see its docstring). ONNX Runtime's own thread pool is not
    affected. Uses ``threadpoolctl`` (limits libraries already loaded; numpy is imported by then).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


#: ONNX tensor type names → numpy dtypes for the contract inputs.
_ORT_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def validate_prepared(item: PreparedInput) -> None:
    """Check one prepared input's shapes/dtypes/values before it joins a batch.

    Raises:
        ValueError: on any violation (the item fails alone; its batch-mates run).
    """
    if item.text is not None:
        ids = item.text.input_ids
        if ids.ndim != 1 or ids.shape[0] == 0 or ids.shape[0] > MAX_TEXT_TOKENS or ids.dtype != np.int64:
            raise ValueError(f"bad input_ids {ids.dtype} {ids.shape}")
    if item.face is not None:
        f = item.face
        if f.shape != (1, FACE_SIZE, FACE_SIZE) or f.dtype != np.float32 or not np.isfinite(f).all():
            raise ValueError(f"bad face {f.dtype} {f.shape}")
    if item.audio_features is not None:
        a = item.audio_features
        if a.ndim != 2 or a.shape[1] != N_MELS or a.shape[0] == 0 or not np.isfinite(a).all():
            raise ValueError(f"bad audio features {a.dtype} {a.shape}")


def _probs(vec: npt.NDArray[np.float32]) -> Probabilities:
    return Probabilities(**{label: float(np.clip(v, 0.0, 1.0)) for label, v in zip(LABELS, vec, strict=True)})


class Predictor:
    """Owns the ORT session, tokenizer, thread pools and dynamic batcher of one model.

    Use :meth:`start` (load, warm up, probe) and :meth:`stop` from the app lifespan; :meth:`predict` per
    request. ``load_error``/``not_ready_reason`` tell /readyz why it is not ready.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spec: ModelSpec | None = None
        self.loaded: LoadedSession | None = None
        self.tokenizer: Tokenizer | None = None
        self._ready = False
        self.not_ready_reason: str | None = "model not loaded yet"
        self._label_order: list[int] = list(range(len(LABELS)))
        self._input_dtypes: dict[str, type[np.generic]] = {}
        self.audio_buckets = settings.audio_buckets_frames()
        self._preprocess_pool = ThreadPoolExecutor(
            settings.preprocess_workers, thread_name_prefix="preprocess"
        )
        self._inference_pool = ThreadPoolExecutor(settings.batch_workers, thread_name_prefix="inference")
        self.batcher: DynamicBatcher[PreparedInput, ModelOutput] = DynamicBatcher(
            self.run_batch,
            executor=self._inference_pool,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            queue_size=settings.queue_size,
            workers=settings.batch_workers,
        )

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Resolve the model files, create the session, load the tokenizer (blocking).

        Raises:
            ModelLoadError: missing/corrupt model, tokenizer or config.
        """
        s = self.settings
        limit_blas_threads()
        spec = load_spec(s.model_dir, s.model_name, s.model_version)
        loaded = create_session(
            spec,
            list(s.providers),
            intra_op_threads=s.intra_op_threads,
            inter_op_threads=s.inter_op_threads,
            optimization_level=s.graph_optimization_level,
            cuda_conv_algo_search=s.cuda_conv_algo_search,
        )
        try:
            tokenizer = load_tokenizer(spec.tokenizer_file)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"could not load tokenizer {spec.tokenizer_file}: {exc}") from exc
        self.spec, self.loaded, self.tokenizer = spec, loaded, tokenizer
        self._input_dtypes = {
            i.name: _ORT_DTYPES[i.type] for i in loaded.session.get_inputs() if i.type in _ORT_DTYPES
        }
        self._label_order = [spec.labels.index(label) for label in LABELS]

    def warmup(self) -> int:
        """Run every representative shape once: batch sizes 1 and max, each text-length multiple, each audio
        bucket (ORT allocates and, on CUDA, picks kernels per shape). Returns the number of runs."""
        runs = 0
        dummy_text = EncodedText(np.array([101, 102], dtype=np.int64), 2, False)
        face = np.zeros((1, FACE_SIZE, FACE_SIZE), dtype=np.float32)
        for batch in sorted({1, self.settings.max_batch_size}):
            items = [
                PreparedInput(text=dummy_text, face=face, audio_features=np.zeros((1, N_MELS), np.float32))
            ]
            self._run_feeds(self._collate(items * batch))
            runs += 1
        step = self.settings.text_length_multiple
        for length in range(step, MAX_TEXT_TOKENS + step, step):
            n = min(length, MAX_TEXT_TOKENS)
            text = EncodedText(np.full(n, 1000, dtype=np.int64), n, False)
            self._run_feeds(self._collate([PreparedInput(text=text)]))
            runs += 1
        for frames in self.audio_buckets:
            feats = np.zeros((frames, N_MELS), dtype=np.float32)
            self._run_feeds(self._collate([PreparedInput(audio_features=feats)]))
            runs += 1
        return runs

    @staticmethod
    def probe_upload() -> RawInput:
        """A small real upload (PNG + WAV bytes made here) for the readiness probe and pool warm-up."""
        import io

        import soundfile as sf
        from PIL import Image

        yy, xx = np.mgrid[0:96, 0:96]
        png = io.BytesIO()
        Image.fromarray(((xx * 2 + yy) % 256).astype(np.uint8)).save(png, format="PNG")
        t = np.arange(8_000, dtype=np.float32) / 16_000
        wav = io.BytesIO()
        sf.write(wav, (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), 16_000, format="WAV")
        return RawInput(text="this is a good day", image=png.getvalue(), audio=wav.getvalue())

    async def start(self) -> None:
        """Load (if needed), warm up, start the batcher, and pass one real inference through it."""
        loop = asyncio.get_running_loop()
        if self.loaded is None:
            await loop.run_in_executor(self._inference_pool, self.load)
        assert self.loaded is not None and self.spec is not None
        if self.settings.warmup:
            started = time.perf_counter()
            runs = await loop.run_in_executor(self._inference_pool, self.warmup)
            logger.info("warm-up: %d runs in %.0f ms", runs, (time.perf_counter() - started) * 1000)
        await self.batcher.start()
        # Decode a real upload in every preprocessing thread (loads the per-thread face detector), then
        # pass it through the batcher and the model: the readiness probe.
        upload = self.probe_upload()
        prepared = await asyncio.gather(
            *(
                loop.run_in_executor(self._preprocess_pool, self.prepare, upload)
                for _ in range(self.settings.preprocess_workers)
            )
        )
        outcome = await self.batcher.submit(prepared[0])
        probs = outcome.value.probabilities
        if not (np.isfinite(probs).all() and abs(float(probs.sum()) - 1.0) < 1e-3):
            self.not_ready_reason = f"readiness probe gave invalid probabilities {probs.tolist()}"
            logger.error(self.not_ready_reason)
            return
        if self.settings.require_gpu and "CUDAExecutionProvider" not in self.loaded.active_providers:
            self.not_ready_reason = (
                "SENTIMENT_REQUIRE_GPU is set but the CUDA execution provider is not active "
                f"(active: {list(self.loaded.active_providers)}); check CUDA 13 / cuDNN 9 libraries"
            )
            logger.error(self.not_ready_reason)
            return
        self._ready = True
        self.not_ready_reason = None
        logger.info(
            "model %s version %s ready on %s",
            self.spec.name,
            self.spec.version,
            self.loaded.execution_provider,
        )

    async def stop(self) -> None:
        """Drain the batcher and shut the thread pools down."""
        self._ready = False
        self.not_ready_reason = "shutting down"
        await self.batcher.stop(drain=True)
        self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        self._inference_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        """Loaded, warmed up, probe passed, GPU requirement met, and the batcher alive."""
        if self._ready and not self.batcher.running:
            self.not_ready_reason = "batcher is not running"
            return False
        return self._ready

    # ------------------------------------------------------------------ stages
    def prepare(self, raw: RawInput) -> PreparedInput:
        """Decode and preprocess one request (blocking; run it in the preprocessing pool).

        Raises:
            PreprocessingError: typed, per modality (413 / 415 / 422 in the API).
        """
        assert self.tokenizer is not None
        s = self.settings
        text = face = feats = None
        text_facts = image_facts = audio_facts = None
        if raw.text is not None:
            if len(raw.text) > s.max_text_chars:
                raise InputTooLargeError(
                    f"text has {len(raw.text)} characters, more than the limit of {s.max_text_chars}"
                )
            normalized = normalize_text(raw.text)
            if not normalized:
                raise PreprocessingError("text is empty or only whitespace")
            text = encode_text(self.tokenizer, raw.text)
            unknown = self.tokenizer.token_to_id("[UNK]")
            if text.num_tokens <= 2 or all(int(i) == unknown for i in text.input_ids[1:-1]):
                # Nothing left, or only [UNK] (e.g. emoji only): the text branch would see no content.
                raise PreprocessingError("text contains no tokens the model can read")
            text_facts = {
                "tokens": text.num_tokens,
                "truncated": text.truncated,
                "characters": len(normalized),
            }
        if raw.image is not None:
            decoded = decode_image(raw.image, max_pixels=s.max_image_pixels)
            face, boxes = largest_face_input(decoded.image)
            image_facts = {
                "faces": len(boxes),
                "face_box": boxes[0] if boxes else None,
                "format": decoded.format,
                "width": decoded.width,
                "height": decoded.height,
            }
        if raw.audio is not None:
            audio = decode_audio(raw.audio, max_seconds=s.max_audio_seconds)
            feats = log_mel(audio.waveform)
            audio_facts = {
                "duration_s": round(audio.duration_s, 4),
                "sample_rate": audio.source_sample_rate,
                "channels": audio.source_channels,
                "format": audio.format,
            }
        return PreparedInput(text, face, feats, text_facts, image_facts, audio_facts)

    def _collate(self, items: Sequence[PreparedInput]) -> dict[str, npt.NDArray[Any]]:
        return collate(
            items, text_multiple=self.settings.text_length_multiple, audio_buckets=self.audio_buckets
        )

    def _run_feeds(self, feeds: dict[str, npt.NDArray[Any]]) -> tuple[npt.NDArray[np.float32], ...]:
        assert self.loaded is not None
        # Cast to the graph's declared input types (e.g. a float16 variant for CUDA listed in config.json).
        inputs = {
            n: feeds[n].astype(self._input_dtypes.get(n, feeds[n].dtype), copy=False) for n in INPUT_NAMES
        }
        outputs = self.loaded.session.run(list(OUTPUT_NAMES), inputs)
        probs = np.asarray(outputs[0], dtype=np.float32)[:, self._label_order]
        mprobs = np.asarray(outputs[1], dtype=np.float32)[:, :, self._label_order]
        return probs, mprobs

    def run_batch(self, items: Sequence[PreparedInput]) -> list[ModelOutput | BaseException]:
        """Run one batch (blocking; called by the batcher in the inference pool).

        Items that fail validation, or whose output row is not a probability vector, get an exception;
        the others get their :class:`ModelOutput`.
        """
        results: list[ModelOutput | BaseException | None] = [None] * len(items)
        valid: list[int] = []
        for i, item in enumerate(items):
            try:
                validate_prepared(item)
                valid.append(i)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        if valid:
            feeds = self._collate([items[i] for i in valid])
            probs, mprobs = self._run_feeds(feeds)
            for row, i in enumerate(valid):
                p = probs[row]
                if not np.isfinite(p).all() or abs(float(p.sum()) - 1.0) > 1e-3:
                    results[i] = RuntimeError("model output is not a probability vector")
                else:
                    results[i] = ModelOutput(p, mprobs[row], feeds["modality_mask"][row])
        return [r if r is not None else RuntimeError("no result") for r in results]

    # ------------------------------------------------------------------ request path
    async def preprocess(self, raw: RawInput) -> tuple[PreparedInput, float]:
        """Run :meth:`prepare` in the preprocessing pool; returns the input and its time in ms."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        prepared = await loop.run_in_executor(self._preprocess_pool, self.prepare, raw)
        return prepared, (time.perf_counter() - started) * 1000.0

    async def predict(self, raw: RawInput, *, request_id: str | None = None) -> PredictResponse:
        """Full pipeline for one request.

        Raises:
            NotReadyError, PreprocessingError, QueueFullError, DeadlineExceededError,
            BatcherClosedError, RuntimeError (model failure for this item).
        """
        if not self.ready:
            raise NotReadyError(self.not_ready_reason or "model not ready")
        started = time.perf_counter()
        prepared, preprocess_ms = await self.preprocess(raw)
        try:
            outcome = await asyncio.wait_for(
                self.batcher.submit(prepared), timeout=self.settings.request_timeout_s
            )
        except TimeoutError:
            raise DeadlineExceededError(
                f"prediction took longer than {self.settings.request_timeout_s:g} s"
            ) from None
        total_ms = (time.perf_counter() - started) * 1000.0
        return self.to_response(prepared, outcome, preprocess_ms, total_ms, request_id)

    def to_response(
        self,
        prepared: PreparedInput,
        outcome: BatchOutcome[ModelOutput],
        preprocess_ms: float,
        total_ms: float,
        request_id: str | None = None,
    ) -> PredictResponse:
        """Turn a model output row and the preprocessing facts into the response schema."""
        assert self.spec is not None and self.loaded is not None
        out = outcome.value
        mask = out.modality_mask
        modalities = Modalities()
        if prepared.text_facts is not None:
            modalities.text = TextResult(
                used=bool(mask[0]), probabilities=_probs(out.modality_probabilities[0]), **prepared.text_facts
            )
        if prepared.image_facts is not None:
            facts = dict(prepared.image_facts)
            box: FaceBox | None = facts.pop("face_box")
            modalities.image = ImageResult(
                used=bool(mask[1]),
                probabilities=_probs(out.modality_probabilities[1]) if mask[1] else None,
                face_box=FaceBoxModel(x=box.x, y=box.y, width=box.width, height=box.height) if box else None,
                **facts,
            )
        if prepared.audio_facts is not None:
            modalities.audio = AudioResult(
                used=bool(mask[2]),
                probabilities=_probs(out.modality_probabilities[2]),
                **prepared.audio_facts,
            )
        return PredictResponse(
            label=LABELS[int(np.argmax(out.probabilities))],  # type: ignore[arg-type]
            probabilities=_probs(out.probabilities),
            modalities=modalities,
            model=ModelRef(
                name=self.spec.name,
                version=self.spec.version,
                execution_provider=self.loaded.execution_provider,
            ),
            timings=Timings(
                preprocess_ms=round(preprocess_ms, 3),
                queue_ms=round(outcome.queue_ms, 3),
                inference_ms=round(outcome.inference_ms, 3),
                total_ms=round(total_ms, 3),
                batch_size=outcome.batch_size,
            ),
            request_id=request_id,
        )

    def info(self) -> ModelInfo:
        """What /v1/models reports."""
        assert self.spec is not None and self.loaded is not None
        session = self.loaded.session

        def io(nodes: Any) -> list[ModelInput]:
            return [
                ModelInput(
                    name=n.name,
                    dtype=str(n.type),
                    shape=[d if isinstance(d, int) else str(d) for d in n.shape],
                )
                for n in nodes
            ]

        return ModelInfo(
            name=self.spec.name,
            version=self.spec.version,
            labels=list(LABELS),
            inputs=io(session.get_inputs()),
            outputs=io(session.get_outputs()),
            execution_provider=self.loaded.execution_provider,
            active_providers=list(self.loaded.active_providers),
            requested_providers=list(self.loaded.requested_providers),
            max_batch_size=self.settings.max_batch_size,
            max_text_tokens=MAX_TEXT_TOKENS,
            audio_buckets_frames=list(self.audio_buckets),
        )
