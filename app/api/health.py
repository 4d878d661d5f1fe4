"""Health routes: liveness, readiness (model loaded, warmed up, probe inference passed) and model info."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.deps import PredictorDep, require_api_key
from app.api.errors import error_responses
from app.api.responses import model_info
from app.errors import ApiError, ErrorType
from app.schemas import HealthResponse, ModelsResponse, ReadyResponse

router = APIRouter()


# HEAD answers like GET without a body (load balancers and uptime checkers probe with it); kept out of
# the OpenAPI schema, which would otherwise list each route twice under one operation id.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", response_model=HealthResponse, tags=["health"], summary="Process is alive")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses=error_responses(503),
    tags=["health"],
    summary="Model loaded, warmed up, probe inference passed (503 with the reason otherwise)",
)
async def readyz(predictor: PredictorDep) -> ReadyResponse:
    model = predictor.model
    if not predictor.ready or model is None:
        raise ApiError(ErrorType.NOT_READY, predictor.not_ready_reason or "model not ready")
    return ReadyResponse(
        status="ready",
        model=model.spec.name,
        version=model.spec.version,
        execution_provider=model.loaded.execution_provider,
    )


@router.get(
    "/v1/models",
    response_model=ModelsResponse,
    responses=error_responses(401, 503),
    tags=["models"],
    summary="Served model: name, version, labels, inputs, verified execution provider",
    dependencies=[Depends(require_api_key)],
)
async def models(predictor: PredictorDep) -> ModelsResponse:
    if predictor.model is None or predictor.pipeline is None:
        raise ApiError(ErrorType.NOT_READY, predictor.not_ready_reason or "model not loaded")
    return ModelsResponse(models=[model_info(predictor.model, predictor.settings, predictor.audio_buckets)])
