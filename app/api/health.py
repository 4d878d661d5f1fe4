"""Health routes: liveness, readiness (model loaded, warmed up, probe inference passed) and model info."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.deps import PredictorDep, require_api_key
from app.errors import ApiError, ErrorType, error_responses
from app.schemas import HealthResponse, ModelsResponse, ReadyResponse

router = APIRouter()


@router.get("/healthz", response_model=HealthResponse, tags=["health"], summary="Process is alive")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses=error_responses(503),
    tags=["health"],
    summary="Model loaded, warmed up, probe inference passed (503 with the reason otherwise)",
)
async def readyz(predictor: PredictorDep) -> ReadyResponse:
    if not predictor.ready or predictor.spec is None or predictor.loaded is None:
        raise ApiError(ErrorType.NOT_READY, predictor.not_ready_reason or "model not ready")
    return ReadyResponse(
        status="ready",
        model=predictor.spec.name,
        version=predictor.spec.version,
        execution_provider=predictor.loaded.execution_provider,
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
    if predictor.loaded is None:
        raise ApiError(ErrorType.NOT_READY, predictor.not_ready_reason or "model not loaded")
    return ModelsResponse(models=[predictor.info()])
