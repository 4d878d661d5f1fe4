"""One closed set of error types → one HTTP status map → one JSON body (DESIGN.md, "Errors").

Every 4xx/5xx the service sends has the body ``{"error": {"type": "<snake_case>", "message": "<sentence>"}}``,
including FastAPI's own validation errors, unknown routes (404), wrong methods (405) and malformed multipart
bodies. Messages never contain stack traces or echo raw payloads.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.preprocessing.errors import (
    InputTooLargeError,
    PreprocessingError,
    UndecodableInputError,
    UnsupportedMediaError,
)

logger = logging.getLogger("app.errors")


class ErrorType(StrEnum):
    """Closed set of ``error.type`` values. The status of each is in :data:`STATUS`."""

    MALFORMED_REQUEST = "malformed_request"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INPUT_TOO_LARGE = "input_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_ERROR = "validation_error"
    MISSING_MODALITY = "missing_modality"
    INVALID_INPUT = "invalid_input"
    UNDECODABLE_INPUT = "undecodable_input"
    OVERLOADED = "overloaded"
    INTERNAL_ERROR = "internal_error"
    NOT_READY = "not_ready"
    TIMEOUT = "timeout"


STATUS: dict[ErrorType, int] = {
    ErrorType.MALFORMED_REQUEST: 400,
    ErrorType.UNAUTHORIZED: 401,
    ErrorType.NOT_FOUND: 404,
    ErrorType.METHOD_NOT_ALLOWED: 405,
    ErrorType.REQUEST_TIMEOUT: 408,
    ErrorType.PAYLOAD_TOO_LARGE: 413,
    ErrorType.INPUT_TOO_LARGE: 413,
    ErrorType.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorType.VALIDATION_ERROR: 422,
    ErrorType.MISSING_MODALITY: 422,
    ErrorType.INVALID_INPUT: 422,
    ErrorType.UNDECODABLE_INPUT: 422,
    ErrorType.OVERLOADED: 429,
    ErrorType.INTERNAL_ERROR: 500,
    ErrorType.NOT_READY: 503,
    ErrorType.TIMEOUT: 504,
}


class ErrorDetail(BaseModel):
    type: ErrorType = Field(description="Machine-readable error type (closed set).")
    message: str = Field(description="Human-readable sentence; safe to show, never a stack trace.")


class ErrorResponse(BaseModel):
    """The one error body of the service."""

    error: ErrorDetail


class ApiError(Exception):
    """Raise anywhere in request handling to answer with the error schema."""

    def __init__(self, type_: ErrorType, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.headers = headers or {}

    @property
    def status_code(self) -> int:
        return STATUS[self.type]


def error_response(type_: ErrorType, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Build the JSON error response for ``type_``."""
    body = ErrorResponse(error=ErrorDetail(type=type_, message=message))
    return JSONResponse(status_code=STATUS[type_], content=body.model_dump(mode="json"), headers=headers)


def from_preprocessing(exc: PreprocessingError) -> ApiError:
    """Map a typed preprocessing error to its API error (415 / 413 / 422)."""
    if isinstance(exc, UnsupportedMediaError):
        return ApiError(ErrorType.UNSUPPORTED_MEDIA_TYPE, exc.message)
    if isinstance(exc, InputTooLargeError):
        return ApiError(ErrorType.INPUT_TOO_LARGE, exc.message)
    if isinstance(exc, UndecodableInputError):
        return ApiError(ErrorType.UNDECODABLE_INPUT, exc.message)
    return ApiError(ErrorType.INVALID_INPUT, exc.message)


_HTTP_STATUS_TYPES: dict[int, ErrorType] = {
    400: ErrorType.MALFORMED_REQUEST,
    401: ErrorType.UNAUTHORIZED,
    404: ErrorType.NOT_FOUND,
    405: ErrorType.METHOD_NOT_ALLOWED,
    408: ErrorType.REQUEST_TIMEOUT,
    413: ErrorType.PAYLOAD_TOO_LARGE,
    415: ErrorType.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorType.VALIDATION_ERROR,
    429: ErrorType.OVERLOADED,
    503: ErrorType.NOT_READY,
    504: ErrorType.TIMEOUT,
}


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

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.type, exc.message, exc.headers or None)

    async def preprocessing_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PreprocessingError)
        err = from_preprocessing(exc)
        return error_response(err.type, err.message)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(ErrorType.VALIDATION_ERROR, validation_message(list(exc.errors())))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        type_ = _HTTP_STATUS_TYPES.get(
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

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(PreprocessingError, preprocessing_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_disconnect)
    app.add_exception_handler(Exception, unhandled)
