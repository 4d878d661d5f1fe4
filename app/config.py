"""Service settings: one pydantic-settings class, every field read from an ``SENTIMENT_*`` env variable.

Each field's ``description`` is the documentation (docs/configuration.md lists the same text).
Validators refuse impossible values at startup rather than at the first request.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.contract import SAMPLE_RATE, num_frames

#: Repository root when running from a checkout (``<repo>/app/config.py`` → ``<repo>``).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Log-mel frames per second (hop of 10 ms at 16 kHz, see ``app.preprocessing.audio.HOP_LENGTH``).
FRAMES_PER_SECOND = 100


def _split_csv(value: Any) -> Any:
    """Accept ``a,b,c`` as well as a JSON list for list settings given as env strings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class _ModelSettings(BaseModel):
    """Which model to serve and how ONNX Runtime runs it."""

    # --- model ---------------------------------------------------------------------------------
    model_dir: Path = Field(
        default=REPO_ROOT / "models",
        description="Model repository root; the model is read from "
        "<model_dir>/<model_name>/<version>/model.onnx "
        "with config.json and tokenizer.json in <model_dir>/<model_name>/.",
    )
    model_name: str = Field(default="fused-sentiment", description="Model folder name inside model_dir.")
    model_version: str | None = Field(
        default=None,
        description="Version folder to serve; unset = the highest numeric version folder "
        "holding a model.onnx.",
    )
    data_dir: Path = Field(
        default=REPO_ROOT.parent / "shared" / "data",
        description="Training/evaluation data directory (used by `msa train` and data tests, "
        "not by serving).",
    )

    # --- ONNX Runtime --------------------------------------------------------------------------
    providers: Annotated[list[str], NoDecode] = Field(
        default=["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference (comma-separated). The provider "
        "actually active after session creation is verified with session.get_providers() and reported.",
    )
    require_gpu: bool = Field(
        default=False,
        description="If true, the service stays not-ready (503 on /readyz with the reason) when the CUDA "
        "execution provider is not active after session creation (silent CPU fallback).",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="ORT intra-op threads per session.run (0 = auto: CPU count ÷ batch_workers, at least 1, "
        "so concurrent runs do not oversubscribe the cores). Lower it when preprocessing threads compete "
        "with inference for the same cores.",
    )
    inter_op_threads: int = Field(default=1, ge=0, description="ORT inter-op threads (sequential execution).")
    cuda_conv_algo_search: Literal["DEFAULT", "HEURISTIC", "EXHAUSTIVE"] = Field(
        default="DEFAULT",
        description="cuDNN convolution algorithm choice of the CUDA execution provider (ORT option "
        "cudnn_conv_algo_search). ORT repeats the choice for every new conv input shape, and batches of "
        "varying size and face count are new shapes: DEFAULT (no search) avoids that per-shape cost but runs "
        "the bundled model's scene and face convolutions in cuDNN's slow fallback kernels (H200, batch 1: "
        "104.6 ms vs 5.8 ms with HEURISTIC, whose first run on a fresh session took 1.7-3.0 s; see "
        'shape_buckets and docs/benchmarks.md, "On a GPU"). Ignored on CPU.',
    )
    cuda_blocking_sync: bool = Field(
        default=False,
        description="On the CUDA execution provider, make the CUDA context block instead of spin while a "
        "run waits for the GPU (cuDevicePrimaryCtxSetFlags, CU_CTX_SCHED_BLOCKING_SYNC): CUDA's default "
        "spin-wait keeps a host core busy for as long as the GPU works (on an H200 the service used 448.8 "
        "ms of CPU per realistic request at one connection against 90.4 ms on a 2-core CPU host). Off by "
        "default: not yet measured on a GPU (benchmarks/gpu_check.sh compares it). Ignored on CPU.",
    )
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = Field(
        default="all", description="ORT graph optimisation level."
    )
    warmup: bool = Field(
        default=True,
        description="Run the model at startup on every batch-size/length bucket shape before becoming ready.",
    )
    language_gate: bool = Field(
        default=True,
        description="Refuse text in a language the model's text expert was not trained on (the contract's "
        "`languages`: English for the bundled model): the text is then not used, reason "
        "`unsupported_language`, with the detected `language` (py3langid; rule in "
        "app/preprocessing/language.py). False: every text is used, whatever its language (the text expert "
        "is then confidently wrong on other languages).",
    )

    @field_validator("providers")
    @classmethod
    def _providers_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one execution provider is required")
        import onnxruntime as ort

        unknown = [p for p in value if p not in ort.get_all_providers()]
        if unknown:
            raise ValueError(
                f"unknown execution provider(s) {unknown}; ONNX Runtime knows {ort.get_all_providers()}"
            )
        return value


class _BatchingSettings(BaseModel):
    """Dynamic batching, thread pools and the shape buckets of the batches."""

    # --- batching ------------------------------------------------------------------------------
    max_batch_size: int = Field(
        default=4,
        ge=1,
        le=1024,
        description="Largest batch the dynamic batcher sends to the model. Default 4 for CPUs, where a batch "
        "saves little per item and padding texts to the longest costs more (benchmarks/results/RESULTS.md); "
        "raise it on a GPU (e.g. 64).",
    )
    batch_by_experts: bool | None = Field(
        default=None,
        description="Run each batch as sub-batches of requests with the same modalities present, so no "
        "expert computes padding rows for batch-mates it has no input for. Unset (default): on with the "
        "CPU execution provider, where every padded row costs as much as a real one (small mix, 64 "
        "connections, 2 cores, batches of 4: 46 → 63 req/s; python -m benchmarks.tune --mix small), off on "
        "a GPU, where one larger batch is cheaper than several smaller ones.",
    )
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="How long the batcher waits for more requests after the first one of a batch (ms). 0 "
        "(Triton's default max_queue_delay too) = send what is queued at once: under load, requests queue "
        "while the model runs and form batches anyway. A few ms can help a GPU under steady load; on a CPU "
        "they only add latency (benchmarks/results/ANALYSIS.md).",
    )
    queue_size: int = Field(
        default=256,
        ge=1,
        description="Bounded request queue in front of the model; when full, requests get 429 with "
        "Retry-After. Roughly: max tolerated queueing delay × throughput. The service admits at most "
        "queue_size + batch_workers × max_batch_size + preprocess_workers + preprocess_processes "
        "requests at once (those being preprocessed included); more get 429 at once.",
    )
    batch_workers: int = Field(
        default=2,
        ge=1,
        description="Concurrent batch consumers (ORT session.run calls in flight). 2: on a CPU two runs with "
        "CPU count ÷ 2 threads each beat one run on all cores; on a GPU collation overlaps the device run.",
    )
    preprocess_workers: int = Field(
        default_factory=lambda: max(1, min(4, os.cpu_count() or 1)),
        ge=1,
        description="Threads decoding and preprocessing uploads (never on the event loop). Default: "
        "min(4, CPU count).",
    )
    preprocess_processes: int = Field(
        default=0,
        ge=0,
        description="Worker processes that decode and prepare image and audio fields (text stays in the "
        "threads), so that work does not share the server's GIL. 0 (default): threads only. Each worker "
        "loads its own tokenizer, language identifier, face and voice activity detectors (RSS about "
        "230–290 MB per worker). A worker that dies is replaced and its requests retried once (500 if the "
        "retry dies too); one that runs one field for longer than request_timeout_s is killed and "
        "replaced (504). Measured against threads and several uvicorn workers in docs/benchmarks.md.",
    )
    text_length_multiple: int = Field(
        default=16,
        ge=1,
        description="Text is padded to the batch's longest sequence rounded up to this multiple (≤ 128), so "
        "few distinct shapes reach ONNX Runtime.",
    )
    audio_bucket_seconds: Annotated[list[float], NoDecode] = Field(
        default=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 25.0, 30.0],
        description="Audio frame-length buckets in seconds (comma-separated): a batch's audio is padded "
        "to the smallest bucket that holds its longest clip. A bucket covering max_audio_seconds is added. "
        "Steps of ≤ 25 % keep the padded compute small (powers of two padded 2.3-s speech to 4 s).",
    )

    shape_buckets: bool = Field(
        default=False,
        description="Pad every batch with filler rows so that its size and each expert's number of present "
        "rows are powers of two (up to the first one ≥ 2 × max_batch_size), give the face detector a "
        "fixed 640 × 640 input on CUDA, and warm every such shape up at start-up (more warm-up runs). For "
        "the CUDA execution provider with cuda_conv_algo_search HEURISTIC or EXHAUSTIVE, whose per-shape "
        "algorithm choice then happens at warm-up only. Off by default: not yet measured end to end on a "
        'GPU (docs/benchmarks.md, "On a GPU"); the filler rows cost CPU time on a CPU.',
    )

    @field_validator("audio_bucket_seconds")
    @classmethod
    def _positive_buckets(cls, value: list[float]) -> list[float]:
        if any(not math.isfinite(v) or v <= 0 for v in value):
            raise ValueError("audio buckets must be positive seconds")
        return sorted(set(value))


class _LimitSettings(BaseModel):
    """Per-request limits (sizes, time) and the in-flight upload budget."""

    # --- limits --------------------------------------------------------------------------------
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest request body in bytes (413), judged from Content-Length and while streaming.",
    )
    max_image_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="Largest image (width × height, read from the header before decoding; 413). Guards "
        "against decompression bombs.",
    )
    max_jpeg_pixels: int = Field(
        default=200_000_000,
        ge=1,
        description="Largest sequential JPEG whose first scan holds every colour component, as cameras "
        "write them (width × height; 413). Such JPEGs are decoded at 1/2, 1/4 or 1/8 of their size (DCT "
        "scaling) in bounded memory; progressive or non-interleaved JPEGs and other formats keep "
        "SENTIMENT_MAX_IMAGE_PIXELS.",
    )
    max_audio_seconds: float = Field(
        default=30.0, gt=0, description="Longest audio clip in seconds (413), checked before full decoding."
    )
    max_text_chars: int = Field(default=10_000, ge=1, description="Longest text in characters (413).")
    max_parts: int = Field(
        default=16, ge=3, description="Most multipart parts (files and fields, each) in one request (413)."
    )
    max_batch_items: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Most items in one POST /v1/predict/batch request (413 beyond). Each item enters the "
        "batcher's queue as its own request, so keep it at most queue_size (items beyond a full queue get "
        "their own 429). The whole body is still bounded by max_body_bytes.",
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Deadline for one prediction (queue + inference); 504 after it. With "
        "preprocess_processes > 0 also the most one worker process may spend on one field (killed and "
        "replaced after it; 504).",
    )
    max_inflight_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Most request-body bytes in progress at once (each request counts its Content-Length, "
        "or max_body_bytes if it declares none); beyond it new uploads get 429 with Retry-After before "
        "their body is read, so a flood of large uploads cannot exhaust memory. Requests without a body "
        "(health probes) are never refused.",
    )
    body_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Deadline for receiving the whole request body (s, from the first read); a client "
        "that trickles its body slower gets 408 and the connection is closed. Raise it for large uploads "
        "over slow links.",
    )

    max_request_head_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request head (request line + all headers) in bytes; a larger one gets 431 and "
        "the connection is closed, before the server buffers more than this plus one socket read (256 KiB). "
        "Browsers send 1-8 KiB; nginx's default limit is 4 × 8 KiB. Raise it only for very large cookies "
        "or tokens.",
    )
    request_head_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Deadline for receiving a request head (s), from the connection's start or, on a "
        "kept-alive connection, the first byte of the next request; a slower head gets 408 (or, if no byte "
        "came, a plain close), so clients that trickle header bytes cannot hold connections open. A head is "
        "under 1 KiB for this API; raise it only for very slow links.",
    )


class Settings(_ModelSettings, _BatchingSettings, _LimitSettings, BaseSettings):
    """All tunables of the service. Env prefix ``SENTIMENT_``; e.g. ``SENTIMENT_MAX_BATCH_SIZE=16``."""

    model_config = SettingsConfigDict(env_prefix="SENTIMENT_", extra="ignore", protected_namespaces=())

    # --- server --------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Bind address for `msa serve` (0.0.0.0 in Docker).")
    port: int = Field(default=8000, ge=1, le=65535, description="Bind port for `msa serve`.")
    tune_malloc: bool = Field(
        default=True,
        description="Bound glibc malloc arenas (2) and fix the mmap threshold (32 MiB) at startup, so RSS "
        "stays flat under uploads of very different sizes (app/malloc.py). MALLOC_ARENA_MAX / "
        "MALLOC_MMAP_THRESHOLD_ in the environment take precedence. No effect off glibc.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="Uvicorn worker processes. Each loads its own model copy; one process with batching is "
        "usually faster than several without.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="info", description="Log level of the service and uvicorn."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log line format of the service and uvicorn: text (time, level, logger, message) or json "
        "(one object per line with time, level, logger, message and, for a request's lines, request_id, "
        "status, error_type, elapsed_ms and the stage timings; app/logging_setup.py).",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="If set, /v1/* and /metrics require `Authorization: Bearer <key>` or `X-API-Key: <key>` "
        "(401 otherwise; Prometheus sends it with `authorization: {credentials: <key>}` in its scrape "
        "config). Health routes and /docs stay open.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[], description="Allowed CORS origins (comma-separated); empty = CORS off."
    )

    @field_validator("providers", "cors_origins", "audio_bucket_seconds", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.max_batch_size > self.queue_size:
            raise ValueError("queue_size must be at least max_batch_size")
        if self.intra_op_threads == 0:
            self.intra_op_threads = max(1, (os.cpu_count() or 1) // self.batch_workers)
        return self

    def audio_buckets_frames(self) -> list[int]:
        """Audio length buckets in log-mel frames, the last one covering ``max_audio_seconds``."""
        limit = num_frames(math.ceil(self.max_audio_seconds * SAMPLE_RATE))
        buckets = sorted({num_frames(round(s * SAMPLE_RATE)) for s in self.audio_bucket_seconds})
        buckets = [b for b in buckets if b < limit] + [limit]
        return buckets

    @property
    def model_path(self) -> Path:
        """``<model_dir>/<model_name>``."""
        return self.model_dir / self.model_name


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
