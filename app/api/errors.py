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

from app.errors import STATUS, ErrorType, ServiceError

logger = logging.getLogger("app.errors")


class ErrorDetail(BaseModel):
    type: ErrorType = Field(description="Machine-readable error type (closed set).")
    message: str = Field(description="Human-readable sentence; safe to show, never a stack trace.")


class ErrorResponse(BaseModel):
    """The one error body of the service."""

    error: ErrorDetail


def error_response(type_: ErrorType, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Build the JSON error response for ``type_``."""
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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries (schema :class:`ErrorResponse`) for the given statuses."""
    descriptions = {
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
    return {s: {"model": ErrorResponse, "description": descriptions.get(s, "Error")} for s in statuses}


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
        body = ErrorResponse(error=ErrorDetail(type=type_, message=message)).model_dump(mode="json")
        return JSONResponse(status_code=exc.status_code, content=body, headers=exc.headers)

    async def client_disconnect(request: Request, _: Exception) -> JSONResponse:
        # The client went away before its body was complete: nothing to answer, nothing broken (no 500).
        logger.info("request_id=%s client disconnected mid-body", getattr(request.state, "request_id", None))
        return error_response(ErrorType.MALFORMED_REQUEST, "client disconnected before the body was complete")

    async def unhandled(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        return error_response(ErrorType.INTERNAL_ERROR, "internal error; see server logs")

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_disconnect)
    app.add_exception_handler(Exception, unhandled)
