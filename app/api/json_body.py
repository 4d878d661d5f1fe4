"""JSON request bodies: the UTF-8 byte-order mark, and error messages that name the real cause."""

from __future__ import annotations

import codecs
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.api.errors import validation_message
from app.errors import ApiError, ErrorType

M = TypeVar("M", bound=BaseModel)


def strip_bom(body: bytes) -> bytes:
    """``body`` without a leading UTF-8 byte-order mark.

    RFC 8259 section 8.1 lets a parser ignore a BOM; Python's ``json`` reads such bytes as ``utf-8-sig``
    and some editors and REST tools send one. Pydantic's JSON parser refuses it ("expected value").
    """
    return body.removeprefix(codecs.BOM_UTF8)


def json_syntax_error(body: bytes) -> str | None:
    """Why ``body`` is not valid JSON (RFC 8259), in words that name the cause and never quote the body.

    Used when pydantic reports ``json_invalid``, whose messages can mislead (a lone surrogate escape is
    "unexpected end of hex escape"). Causes, in order: bytes that are not UTF-8 (RFC 8259 section 8.1),
    the standard library's ``json.JSONDecodeError`` message and position (e.g. ``Invalid \\uXXXX
    escape``), a ``\\u`` escape that encodes a lone UTF-16 surrogate (RFC 8259 section 8.2; Python's
    ``json`` accepts it, but it is not a Unicode string). ``None`` when none applies (e.g. nesting too
    deep for the standard library parser, ``NaN``): the caller keeps pydantic's message.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"body: Invalid JSON: not valid UTF-8 (byte 0x{body[exc.start]:02X} at offset {exc.start})"
    try:
        value = json.loads(text)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except json.JSONDecodeError as exc:
        return f"body: Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except UnicodeEncodeError as exc:
        code = ord(exc.object[exc.start])
        return (
            f"body: Invalid JSON: a \\u escape encodes a lone UTF-16 surrogate (U+{code:04X}), "
            "which is not a Unicode character"
        )
    except (RecursionError, ValueError):
        # Nesting too deep, or an integer over Python's 4,300-digit conversion limit (a ValueError that is
        # not a JSONDecodeError): pydantic's own message ("number out of range", ...) is kept.
        return None
    return None


def validate_json(model: type[M], body: bytes) -> M:
    """Validate a JSON request body (a leading UTF-8 BOM ignored) as ``model``.

    Raises:
        ApiError: 422 ``validation_error`` whose message names the cause: the JSON syntax error
            (:func:`json_syntax_error`) or pydantic's field locations and messages, never the values.
    """
    body = strip_bom(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = list(exc.errors())
        cause = json_syntax_error(body) if errors[0]["type"] == "json_invalid" else None
        raise ApiError(
            ErrorType.VALIDATION_ERROR,
            cause or validation_message(errors) + unknown_field_hint(model, errors),
        ) from None


def unknown_field_hint(model: type[BaseModel], errors: list[Any]) -> str:
    """For unknown top-level fields (pydantic ``extra_forbidden``): the fields ``model`` takes, and the
    base64 field meant when a file field's multipart name (``image``, ``audio``) was used in JSON."""
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1]
    if not unknown:
        return ""
    allowed = list(model.model_fields)
    meant = [f"'{u}_base64' for '{u}'" for u in unknown if f"{u}_base64" in allowed]
    hint = f" (JSON bodies carry files base64-encoded: {', '.join(meant)})" if meant else ""
    return f"; allowed fields: {', '.join(allowed)}{hint}"
