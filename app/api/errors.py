"""The one JSON error body and the handlers that render it (DESIGN.md, "Errors").

Error types and statuses live in :mod:`app.errors`; every domain exception is an
:class:`~app.errors.ServiceError` that carries its type, so one handler renders them all.

Every 4xx/5xx the service sends has the body ``{"error": {"type": "<snake_case>", "message": "<sentence>"}}``,
including FastAPI's own validation errors, unknown routes (404), wrong methods (405) and malformed multipart
bodies. Messages never contain stack traces or echo raw payloads.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.api.disconnect import ClientLeft
from app.errors import STATUS, ErrorType, ServiceError
from app.logging_setup import note_error_type

logger = logging.getLogger("app.errors")


class ErrorDetail(BaseModel):
    type: ErrorType = Field(description="Machine-readable error type (closed set).")
    message: str = Field(description="Human-readable sentence; safe to show, never a stack trace.")


class ErrorResponse(BaseModel):
    """The one error body of the service."""

    error: ErrorDetail


def error_response(type_: ErrorType, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Build the JSON error response for ``type_`` (and record the type for the request's log lines)."""
    note_error_type(type_.value)
    body = ErrorResponse(error=ErrorDetail(type=type_, message=message))
    return JSONResponse(status_code=STATUS[type_], content=body.model_dump(mode="json"), headers=headers)


#: Status → error type for exceptions raised by the framework itself (404, 405, 400 ...): the first type
#: of each status in :class:`ErrorType` order, derived from the one table :data:`app.errors.STATUS`.
_FRAMEWORK_TYPES: dict[int, ErrorType] = {}
for _type, _status in STATUS.items():
    _FRAMEWORK_TYPES.setdefault(_status, _type)


def validation_message(errors: list[Any]) -> str:
    # Field locations and pydantic's messages only; never the offending input values.
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "request validation failed"


#: One realistic message per error type, shown as the OpenAPI example of that type (each is a message the
#: service really sends for it; see docs/api.md).
_EXAMPLE_MESSAGES: dict[ErrorType, str] = {
    ErrorType.MALFORMED_REQUEST: "malformed multipart body",
    ErrorType.UNAUTHORIZED: "missing or invalid API key",
    ErrorType.NOT_FOUND: "no such route",
    ErrorType.METHOD_NOT_ALLOWED: "method not allowed on this route",
    ErrorType.REQUEST_TIMEOUT: "the request body did not arrive within 60 s",
    ErrorType.REQUEST_HEADER_FIELDS_TOO_LARGE: "the request line and headers exceed 65536 bytes",
    ErrorType.PAYLOAD_TOO_LARGE: "request body is larger than 26214400 bytes",
    ErrorType.INPUT_TOO_LARGE: "audio is 42.00 s long, more than the limit of 30 s",
    ErrorType.UNSUPPORTED_MEDIA_TYPE: "Content-Type must be multipart/form-data, "
    "application/x-www-form-urlencoded or application/json",
    ErrorType.VALIDATION_ERROR: "image_base64 is not valid base64",
    ErrorType.MISSING_MODALITY: "send at least one of: text, image, audio",
    ErrorType.INVALID_INPUT: "text is not valid UTF-8",
    ErrorType.UNDECODABLE_INPUT: "image header could not be read",
    ErrorType.OVERLOADED: "the request queue is full; retry later",
    ErrorType.INTERNAL_ERROR: "internal error; see server logs",
    ErrorType.NOT_READY: "model not ready",
    ErrorType.TIMEOUT: "prediction took longer than 30 s",
}

_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (e.g. broken multipart body)",
    401: "Missing or wrong API key",
    408: "The request body did not arrive within the body timeout",
    413: "Body, image pixels, audio seconds or text characters over the limit",
    415: "Unsupported Content-Type or media format (detected from the bytes)",
    422: "Missing modality, invalid or undecodable content",
    429: "Queue full; retry after the Retry-After seconds",
    503: "Model not ready",
    504: "Prediction deadline exceeded",
}


def error_example(type_: ErrorType) -> dict[str, Any]:
    """The OpenAPI example object (``summary``, ``value``) of one error type: its body as sent."""
    body = ErrorResponse(error=ErrorDetail(type=type_, message=_EXAMPLE_MESSAGES[type_]))
    return {"summary": type_.value, "value": body.model_dump(mode="json")}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given statuses: schema :class:`ErrorResponse`, and one example
    per error type that has that status in :data:`app.errors.STATUS` (e.g. 413 shows ``payload_too_large``
    and ``input_too_large``), so Swagger UI and ReDoc show a body that can really be answered.

    Raises:
        ValueError: a status that no error type has (it could never be answered with the error body).
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        types = [t for t, s in STATUS.items() if s == status]
        if not types:
            raise ValueError(f"no error type has the HTTP status {status}")
        responses[status] = {
            "model": ErrorResponse,
            "description": _DESCRIPTIONS.get(status, "Error"),
            "content": {"application/json": {"examples": {t.value: error_example(t) for t in types}}},
        }
    return responses


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers so every error leaves in the one schema."""

    async def service_error(_: Request, exc: Exception) -> JSONResponse:
        # Every domain exception carries its own type (app/errors.py): no class or message mapping here.
        assert isinstance(exc, ServiceError)
        return error_response(exc.type, exc.message, exc.headers or None)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(ErrorType.VALIDATION_ERROR, validation_message(list(exc.errors())))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        type_ = _FRAMEWORK_TYPES.get(
            exc.status_code,
            ErrorType.INTERNAL_ERROR if exc.status_code >= 500 else ErrorType.MALFORMED_REQUEST,
        )
        message = exc.detail if isinstance(exc.detail, str) else type_.value.replace("_", " ")
        if type_ is ErrorType.NOT_FOUND:
            message = "no such route"
        elif type_ is ErrorType.METHOD_NOT_ALLOWED:
            message = "method not allowed on this route"
        note_error_type(type_.value)
        body = ErrorResponse(error=ErrorDetail(type=type_, message=message)).model_dump(mode="json")
        return JSONResponse(status_code=exc.status_code, content=body, headers=exc.headers)

    async def client_disconnect(request: Request, exc: Exception) -> JSONResponse:
        # The client went away (before its body was complete, or while its answer was being prepared):
        # nothing to answer, nothing broken (no 500); the body below is never read by anyone.
        request_id = getattr(request.state, "request_id", None)
        if isinstance(exc, ClientLeft):
            logger.info("request_id=%s client disconnected before its answer was ready", request_id)
            message = "client disconnected before the answer was ready"
            return error_response(ErrorType.MALFORMED_REQUEST, message)
        logger.info("request_id=%s client disconnected mid-body", request_id)
        return error_response(ErrorType.MALFORMED_REQUEST, "client disconnected before the body was complete")

    async def unhandled(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        return error_response(ErrorType.INTERNAL_ERROR, "internal error; see server logs")

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_disconnect)
    app.add_exception_handler(Exception, unhandled)
