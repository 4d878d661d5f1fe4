"""FastAPI app factory. Model load, warm-up and the readiness probe run in the lifespan, never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.api import batch, docs, health, metrics, playground, predict, v2
from app.api.errors import install_error_handlers
from app.api.log_context import RequestLogMiddleware
from app.api.middleware import RequestContextMiddleware
from app.config import Settings, get_settings
from app.inference.predictor import Predictor
from app.malloc import tune_malloc
from app.metrics import ServiceMetrics

logger = logging.getLogger("app")

DESCRIPTION = """
Send **text**, an **image** and/or an **audio** clip; get `negative` / `neutral` / `positive`
probabilities from one fused ONNX model (ONNX Runtime; CUDA first, CPU fallback), fused and per modality.

Errors always have the body `{"error": {"type": "...", "message": "..."}}`.
"""


def create_app(*, settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: defaults to :func:`app.config.get_settings` (environment).
        predictor: inject one (tests); defaults to ``Predictor(settings)``, started in the lifespan.
    """
    settings = settings or get_settings()
    if settings.tune_malloc:
        applied = tune_malloc()  # before any thread pool starts
        if applied:
            logger.info("malloc tuning: %s", applied)
    predictor = predictor or Predictor(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A missing/corrupt model raises here: startup fails and `msa serve` exits non-zero.
        await predictor.start()
        try:
            yield
        finally:
            await predictor.stop()

    app = FastAPI(
        title="Multimodal sentiment inference service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # A trailing slash is a 404 in the error schema, not a bodiless 307 that curl does not follow.
        redirect_slashes=False,
        # /docs and /redoc are app.api.docs: their assets come from this process, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.predictor = predictor
    app.state.metrics = ServiceMetrics()  # a registry per app: several apps in one process don't collide
    metrics.instrument(app.state.metrics, predictor)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(predict.router)
    app.include_router(docs.router)
    app.include_router(batch.router)
    app.include_router(metrics.router)
    app.include_router(v2.router)
    app.include_router(playground.router)  # GET / (HTML page calling /v1/predict)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-Preprocess-Time-Ms",
                "X-Queue-Time-Ms",
                "X-Inference-Time-Ms",
                "X-Batch-Size",
                "Retry-After",
            ],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        max_inflight_bytes=settings.max_inflight_bytes,
        metrics=app.state.metrics,
    )
    # Outermost: the request's log context (request id, status, error type, timings) spans the access line.
    app.add_middleware(RequestLogMiddleware)
    return app
