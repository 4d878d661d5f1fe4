"""Strict form parsing: text fields are decoded with their declared charset or refused, never mangled.

Starlette's own parsers decode a multipart text field with the request's charset and silently fall back to
latin-1 when the bytes are not valid in it, and decode urlencoded values with ``errors="replace"``; invalid
UTF-8 would reach the model as mojibake or U+FFFD. These subclasses decode strictly, honour a part's own
``Content-Type: text/plain; charset=...`` (RFC 7578, section 4.4), and raise :class:`FieldDecodeError`
(the API answers 422 ``invalid_input``). File parts are untouched (their bytes are never decoded as text).
"""

from __future__ import annotations

import codecs
from contextlib import aclosing
from urllib.parse import unquote_to_bytes

from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request


class FieldDecodeError(MultiPartException):
    """A form field's bytes are not valid in its declared charset (or the charset is unknown)."""


def _decode(raw: bytes, charset: str) -> str:
    try:
        codecs.lookup(charset)
    except LookupError:
        raise FieldDecodeError("a form field declares an unknown charset") from None
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        raise FieldDecodeError(f"a form field is not valid {charset} text") from None


class StrictMultiPartParser(MultiPartParser):
    """``multipart/form-data``: the ``text`` field is decoded with its part's charset, else the request's,
    else UTF-8; undecodable bytes raise :class:`FieldDecodeError` instead of the latin-1 fallback.
    ``ended`` says whether the closing boundary was seen."""

    ended = False

    def on_end(self) -> None:
        self.ended = True  # the closing boundary was seen
        super().on_end()

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is not None or part.field_name != "text":
            # Files keep their bytes; other fields are refused by name later, whatever they hold.
            super().on_part_end()
            return
        charset = self._charset or "utf-8"
        for name, value in part.item_headers:
            if name == b"content-type":
                _, params = parse_options_header(value)
                declared = params.get(b"charset")
                if declared:
                    charset = declared.decode("latin-1") if isinstance(declared, bytes) else str(declared)
        self.items.append((part.field_name, _decode(bytes(part.data), charset)))


class StrictFormParser(FormParser):
    """``application/x-www-form-urlencoded``: percent-decoded bytes must be UTF-8 (WHATWG URL standard)."""

    def on_field_end(self) -> None:
        for raw in (self._field_name, self._field_value):
            _decode(unquote_to_bytes(bytes(raw).replace(b"+", b" ")), "utf-8")
        super().on_field_end()


async def parse_form(request: Request, *, max_files: int, max_fields: int, max_part_size: int) -> FormData:
    """Parse a multipart or urlencoded body with the strict parsers (same limits as ``Request.form``).

    Raises:
        FieldDecodeError: a text field is not valid in its charset.
        MultiPartException: malformed body (including one without its closing boundary), too many
            files/fields, a field over ``max_part_size`` bytes.
    """
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    async with aclosing(request.stream()) as stream:
        if content_type == b"multipart/form-data":
            parser = StrictMultiPartParser(
                request.headers,
                stream,
                max_files=max_files,
                max_fields=max_fields,
                max_part_size=max_part_size,
            )
            form = await parser.parse()
            if not parser.ended:
                # Without its closing boundary the body was cut short; its last part would be lost silently.
                await form.close()
                raise MultiPartException("the multipart body ends before its closing boundary")
            return form
        return await StrictFormParser(
            request.headers, stream, max_fields=max_fields, max_part_size=max_part_size
        ).parse()
