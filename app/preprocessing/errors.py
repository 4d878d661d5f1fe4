"""Typed preprocessing errors. The API maps each to one HTTP status and ``error.type`` (see app/errors.py)."""


class PreprocessingError(ValueError):
    """Base class: the input could not be turned into model input. ``message`` is safe to show clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedMediaError(PreprocessingError):
    """The bytes are not in a format this service decodes (HTTP 415)."""


class UndecodableInputError(PreprocessingError):
    """The bytes claim a supported format but cannot be decoded, or decode to nothing usable (HTTP 422)."""


class InputTooLargeError(PreprocessingError):
    """The decoded input exceeds a configured limit: pixels, seconds, characters (HTTP 413)."""
