"""JSON request bodies: the UTF-8 byte-order mark, error messages that name the real cause, keys sent more
than once, and base64 fields decoded without holding the GIL for long."""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
from collections import Counter
from collections.abc import Collection
from typing import Any, TypeVar

import pybase64
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


#: Whitespace a base64 field may carry (line-wrapped output of ``base64``); str.split's ASCII set.
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_JSON_WHITESPACE = re.compile(rb"[ \t\r\n]*")


def decode_base64(value: str | None, field: str) -> bytes | None:
    """A JSON base64 field → its bytes; ``None`` stays ``None``.

    A ``data:<type>;base64,`` URL prefix and whitespace anywhere (line-wrapped ``base64`` output) are
    accepted; any other character outside the standard alphabet (RFC 4648 section 4) is refused. Decoded
    with pybase64 (SIMD: 0.3 ms for a 5 MB phone photo, vs 17 ms in the standard library's ``binascii``,
    both holding the GIL); what pybase64 refuses is retried with the standard library, so the accepted
    set is exactly ``base64.b64decode(..., validate=True)``'s (Python 3.11 also accepts excess padding
    after a complete quantum, which pybase64 refuses; tests/unit/api/test_json_body.py compares the two).
    The whitespace scan is a memchr per whitespace character, so a body without whitespace is not copied.

    Raises:
        ApiError: 422 ``validation_error``, "<field> is not valid base64".
    """
    if value is None:
        return None
    text = value.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if not text.isascii() or any(c in text for c in _ASCII_WHITESPACE):
        text = "".join(text.split())
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(ErrorType.VALIDATION_ERROR, f"{field} is not valid base64") from None


def _flat_keys(body: bytes, limit: int) -> list[str] | None:
    """The keys of a JSON object ``body`` that has no backslash, or ``None`` when it nests (``{`` or ``[``
    outside strings after the first ``{``) or holds more than ``limit`` strings. Without a backslash no
    string can contain a quote, so the quote pairs are exactly the strings, and a string followed by ``:``
    is a key; each step is a memchr (``bytes.find``), so a multi-megabyte base64 value costs
    microseconds, not a parse."""
    keys: list[str] = []
    pos = body.find(b"{") + 1
    for _ in range(limit + 1):
        start = body.find(b'"', pos)
        stop = len(body) if start == -1 else start
        if body.find(b"{", pos, stop) != -1 or body.find(b"[", pos, stop) != -1:
            return None
        if start == -1:
            return keys
        end = body.find(b'"', start + 1)
        if end == -1:
            return None
        after = _JSON_WHITESPACE.match(body, end + 1)
        if after is not None and body[after.end() : after.end() + 1] == b":":
            keys.append(body[start + 1 : end].decode("utf-8", "replace"))
        pos = end + 1
    return None


def duplicate_keys(body: bytes, fields: Collection[str]) -> list[str]:
    """Which of ``fields`` a JSON object ``body`` (already validated: a flat object whose values are strings
    or null) sends more than once as top-level keys, sorted; pydantic would silently keep the last one.
    Linear in the body's size whichever way it takes.

    Three ways, cheapest first: a body without a backslash is walked quote pair by quote pair
    (:func:`_flat_keys`; a body that nests or holds more than two strings per field is parsed); a body
    with escapes but no ``\\u`` escape cannot spell a field name otherwise than literally, so counting each
    quoted name is enough; else the standard library parses it with an ``object_pairs_hook``.
    """
    if body.find(b"\\") == -1:
        keys = _flat_keys(body, 2 * len(fields))
        if keys is not None:
            return sorted(k for k in set(keys) if k in fields and keys.count(k) > 1)
    elif b"\\u" not in body and all(body.count(f'"{name}"'.encode()) < 2 for name in fields):
        return []
    top: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Called for every object, innermost first, so the last call is the top-level object's. Counter:
        # linear in the keys (list.count was quadratic: 26 s for one object of 40,000 keys).
        nonlocal top
        counts = Counter(key for key, _ in pairs)
        top = sorted(key for key, n in counts.items() if n > 1 and key in fields)
        return dict(pairs)

    json.loads(body, object_pairs_hook=pairs_hook)
    return top
