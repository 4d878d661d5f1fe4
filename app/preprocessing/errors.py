"""Typed preprocessing errors; each carries its :class:`~app.errors.ErrorType` (and so its HTTP status)."""

from app.errors import ErrorType, ServiceError


class PreprocessingError(ServiceError, ValueError):
    """Base class: the input could not be turned into model input (HTTP 422 ``invalid_input``).
    ``message`` is safe to show clients."""

    error_type = ErrorType.INVALID_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)


class UnsupportedMediaError(PreprocessingError):
    """The bytes are not in a format this service decodes (HTTP 415)."""

    error_type = ErrorType.UNSUPPORTED_MEDIA_TYPE


class UndecodableInputError(PreprocessingError):
    """The bytes claim a supported format but cannot be decoded, or decode to nothing usable (HTTP 422)."""

    error_type = ErrorType.UNDECODABLE_INPUT


class InputTooLargeError(PreprocessingError):
    """The decoded input exceeds a configured limit: pixels, seconds, characters (HTTP 413)."""

    error_type = ErrorType.INPUT_TOO_LARGE
