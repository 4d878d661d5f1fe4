"""``GET /metrics`` (Prometheus text exposition format) and the wiring of :class:`~app.metrics.ServiceMetrics`
to the predictor: every successful prediction records its stage times, batch size and per-expert use."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import require_api_key
from app.api.errors import error_responses
from app.inference.predictor import Prediction, Predictor
from app.metrics import ServiceMetrics

router = APIRouter()


def record_prediction(metrics: ServiceMetrics, prediction: Prediction) -> None:
    """Record one prediction: preprocess, queue and inference time (ms → s), its batch size, and for every
    expert whose field was sent whether it was used or why it abstained (``PreparedItem.experts``)."""
    metrics.observe_prediction(
        preprocess_s=prediction.preprocess_ms / 1000.0,
        queue_s=prediction.queue_ms / 1000.0,
        inference_s=prediction.inference_ms / 1000.0,
        batch_size=prediction.batch_size,
        experts={
            name: None if part.used else (part.reason or "not_used")
            for name, part in prediction.item.experts.items()
        },
    )


def instrument(metrics: ServiceMetrics, predictor: Predictor) -> None:
    """Record the predictor's predictions and read its batcher's queue depth, items in flight, the
    model's name, version and active execution provider, and the worker-process restarts at scrape time."""

    def model_info() -> dict[str, str] | None:
        model = predictor.model
        if model is None:
            return None
        provider = model.loaded.execution_provider
        return {"name": model.spec.name, "version": model.spec.version, "execution_provider": provider}

    predictor.observers.append(lambda prediction: record_prediction(metrics, prediction))
    metrics.watch(
        queued=lambda: predictor.batcher.queued,
        items_in_flight=lambda: predictor.batcher.in_flight,
        model_info=model_info,
        worker_restarts=lambda: predictor.process_pool.restarts if predictor.process_pool else 0,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text exposition format 0.0.4", "content": {"text/plain": {}}},
        **error_responses(401),
    },
    tags=["health"],
    summary="Prometheus metrics: requests, stage times, batch sizes, expert use, queue depth, model",
    dependencies=[Depends(require_api_key)],
)
async def metrics(request: Request) -> Response:
    """This app's registry in the Prometheus text exposition format 0.0.4 (gauges read now)."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
