"""The closed set of error types, their HTTP statuses, and the base class every domain exception shares.

Framework-free on purpose (no FastAPI/Starlette imports): preprocessing and inference raise
:class:`ServiceError` subclasses that carry their :class:`ErrorType`; the one handler in
:mod:`app.api.errors` renders ``{"error": {"type": ..., "message": ...}}`` with :data:`STATUS`. No layer
maps exception classes or message text to statuses (DESIGN.md, "Errors").
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import ClassVar


class ErrorType(StrEnum):
    """Closed set of ``error.type`` values. The status of each is in :data:`STATUS`."""

    MALFORMED_REQUEST = "malformed_request"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    REQUEST_HEADER_FIELDS_TOO_LARGE = "request_header_fields_too_large"
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


#: HTTP status of every error type (RFC 9110 status semantics; 429 and 431 from RFC 6585).
STATUS: Mapping[ErrorType, int] = {
    ErrorType.MALFORMED_REQUEST: 400,
    ErrorType.UNAUTHORIZED: 401,
    ErrorType.NOT_FOUND: 404,
    ErrorType.METHOD_NOT_ALLOWED: 405,
    ErrorType.REQUEST_TIMEOUT: 408,
    ErrorType.REQUEST_HEADER_FIELDS_TOO_LARGE: 431,
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


class ServiceError(Exception):
    """Base of every domain exception that reaches a client.

    Subclasses set the class attribute ``error_type``; an instance may override it (``error_type=``).
    ``message`` is safe to show to clients (no stack traces, no echoed payloads); ``headers`` are added to
    the HTTP response (e.g. ``Retry-After`` for 429).
    """

    error_type: ClassVar[ErrorType] = ErrorType.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        error_type: ErrorType | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type: ErrorType = error_type or self.error_type
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def status_code(self) -> int:
        """The HTTP status of this error's type (:data:`STATUS`)."""
        return STATUS[self.type]


class ApiError(ServiceError):
    """An error decided in the API layer (request shape, authentication); the type is given explicitly."""

    def __init__(self, type_: ErrorType, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, error_type=type_, headers=headers)
