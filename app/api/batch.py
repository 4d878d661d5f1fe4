"""``POST /v1/predict/batch``: many JSON items in one request, answered in order, each with its own result
or its own error.

Every item goes through :meth:`~app.inference.predictor.Predictor.predict` on its own, all at once, so the
batcher sees them as separate requests and batches them with each other (and with concurrent single
requests). What concerns the whole request (Content-Type, JSON syntax, the ``items`` list, its length,
readiness, the API key) is answered with one error; what concerns one item (its fields, base64, content,
a full queue) is that item's error, in the one error schema.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from app.api.deps import PredictorDep, SettingsDep, require_api_key
from app.api.disconnect import unless_disconnected
from app.api.errors import ErrorDetail, error_responses, validation_message
from app.api.json_body import decode_base64, unknown_field_hint, validate_json
from app.api.responses import predict_response
from app.errors import STATUS, ApiError, ErrorType, ServiceError
from app.inference.predictor import NotReadyError, Predictor
from app.preprocessing.pipeline import RawInput
from app.schemas import BatchItemResult, PredictBatchResponse, PredictRequest

logger = logging.getLogger("app.api.batch")

router = APIRouter()

_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "`items`: 1 to SENTIMENT_MAX_BATCH_ITEMS (default 64) objects, each shaped like the "
        "JSON body of /v1/predict (`text`, `image_base64`, `audio_base64`).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "title": "PredictBatchRequest",
                    "additionalProperties": False,
                    "required": ["items"],
                    "properties": {
                        "items": {"type": "array", "minItems": 1, "items": PredictRequest.model_json_schema()}
                    },
                },
                "examples": {
                    "tweets": {
                        "summary": "Three short texts",
                        "value": {
                            "items": [{"text": "I love this!"}, {"text": "This is awful."}, {"text": "ok"}]
                        },
                    }
                },
            }
        },
    }
}


class _Envelope(BaseModel):
    """The request as a whole; the items are validated one by one (:func:`_raw_input`)."""

    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(min_length=1)


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers which of its keys were sent more than once."""

    duplicates: list[str]


def _object_with_duplicates(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.duplicates = sorted(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
    return obj


def _duplicate_keys(body: bytes, count: int) -> list[list[str]]:
    """Per item, its JSON keys sent more than once (pydantic would silently keep the last one).

    Raises:
        ApiError: ``items`` itself was sent more than once (422 ``validation_error``).
    """
    try:
        data = json.loads(body, object_pairs_hook=_object_with_duplicates)
    except (ValueError, RecursionError):
        return [[] for _ in range(count)]
    if data.duplicates:
        raise ApiError(
            ErrorType.VALIDATION_ERROR, f"JSON field(s) sent more than once: {', '.join(data.duplicates)}"
        )
    return [item.duplicates if isinstance(item, _Object) else [] for item in data["items"]]


def _raw_input(value: Any, duplicates: list[str]) -> RawInput:
    """One item → :class:`RawInput`. Raises: ApiError (422 ``validation_error`` / ``missing_modality``)."""
    if duplicates:
        raise ApiError(
            ErrorType.VALIDATION_ERROR, f"JSON field(s) sent more than once: {', '.join(duplicates)}"
        )
    try:
        req = PredictRequest.model_validate(value)
    except ValidationError as exc:
        errors = list(exc.errors())
        message = validation_message(errors) + unknown_field_hint(PredictRequest, errors)
        raise ApiError(ErrorType.VALIDATION_ERROR, message) from None
    raw = RawInput(
        text=req.text,
        image=decode_base64(req.image_base64, "image_base64"),
        audio=decode_base64(req.audio_base64, "audio_base64"),
    )
    if raw.empty:
        raise ApiError(ErrorType.MISSING_MODALITY, "send at least one of: text, image_base64, audio_base64")
    return raw


def decode_batch(body: bytes, max_items: int) -> list[RawInput | ServiceError]:
    """A JSON batch body → per item, its :class:`RawInput` or its own error (blocking: JSON and base64).

    Raises:
        ApiError: not JSON, not ``{"items": [...]}``, an empty list (422 ``validation_error``); more than
            ``max_items`` items (413 ``payload_too_large``).
    """
    envelope = validate_json(_Envelope, body)
    if len(envelope.items) > max_items:
        raise ApiError(
            ErrorType.PAYLOAD_TOO_LARGE,
            f"a batch holds at most {max_items} items (SENTIMENT_MAX_BATCH_ITEMS); this one has "
            f"{len(envelope.items)}: split it",
        )
    decoded: list[RawInput | ServiceError] = []
    for value, duplicates in zip(envelope.items, _duplicate_keys(body, len(envelope.items)), strict=True):
        try:
            decoded.append(_raw_input(value, duplicates))
        except ServiceError as exc:
            decoded.append(exc)
    return decoded


def _error_item(type_: ErrorType, message: str) -> BatchItemResult:
    return BatchItemResult(status=STATUS[type_], error=ErrorDetail(type=type_, message=message))


async def _answer(
    predictor: Predictor, raw: RawInput | ServiceError, request_id: str | None
) -> BatchItemResult:
    """One item's result, or its error (never raises but for cancellation)."""
    if isinstance(raw, ServiceError):
        return _error_item(raw.type, raw.message)
    try:
        prediction = await predictor.predict(raw)
    except ServiceError as exc:
        return _error_item(exc.type, exc.message)
    except Exception as exc:  # noqa: BLE001 - one item's model failure must not fail its batch-mates
        logger.error("batch item failed: %s", type(exc).__name__, exc_info=exc)
        return _error_item(ErrorType.INTERNAL_ERROR, "internal error; see server logs")
    assert predictor.model is not None
    return BatchItemResult(status=200, result=predict_response(prediction, predictor.model, request_id))


async def _answer_all(
    predictor: Predictor, items: list[RawInput | ServiceError], request_id: str | None
) -> list[BatchItemResult]:
    return list(await asyncio.gather(*(_answer(predictor, item, request_id) for item in items)))


@router.post(
    "/v1/predict/batch",
    response_model=PredictBatchResponse,
    responses=error_responses(400, 401, 408, 413, 415, 422, 503),
    tags=["predict"],
    summary="Sentiment probabilities for many JSON items in one request, in order",
    description='`{"items": [...]}` with 1 to SENTIMENT_MAX_BATCH_ITEMS (default 64) items, each shaped '
    'like the JSON body of /v1/predict. The answer is `{"results": [...]}` in the same order: per item '
    '`{"status": 200, "result": <the /v1/predict body>}` or `{"status": <4xx/5xx>, "error": {"type", '
    '"message"}}`. The items are batched with each other and with concurrent requests. Errors of the '
    "whole request (not JSON, no or empty `items`, too many items, not ready) are answered as usual.",
    openapi_extra=_OPENAPI_BODY,
    dependencies=[Depends(require_api_key)],
)
async def predict_batch(
    request: Request, predictor: PredictorDep, settings: SettingsDep
) -> PredictBatchResponse:
    """Answer every item in order (see the route description). Raises: ApiError (415, 422, 413 for the
    whole request), NotReadyError (503); per-item errors are in the results, never raised."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (media_type == "application/json" or media_type.endswith("+json")):
        raise ApiError(ErrorType.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
    body = await request.body()
    items = await run_in_threadpool(decode_batch, body, settings.max_batch_items)
    if not predictor.ready:
        raise NotReadyError(predictor.not_ready_reason or "model not ready")
    request_id = getattr(request.state, "request_id", None)
    results = await unless_disconnected(request, _answer_all(predictor, items, request_id))
    metrics = request.app.state.metrics
    for result in results:
        metrics.observe_batch_item(result.status, result.error.type.value if result.error else None)
    return PredictBatchResponse(results=results)
