"""Form bodies (``multipart/form-data`` and ``application/x-www-form-urlencoded``) parsed strictly.

Built only on public APIs: python-multipart's push parsers (:class:`python_multipart.MultipartParser`,
:class:`python_multipart.QuerystringParser`) with their documented callbacks, its streaming
``Base64Decoder``/``QuotedPrintableDecoder`` and ``parse_options_header``; Starlette's ``Request.stream()``,
``UploadFile`` and ``Headers``; the standard library's RFC 2231 parameter decoding (``email.message``).

What a caller gets (:class:`Form`):

- A part is a **file** (:class:`starlette.datastructures.UploadFile`, spooled to disk past
  :data:`SPOOL_MAX_SIZE` bytes) when its ``Content-Disposition`` has a ``filename`` parameter, or only a
  ``filename*`` one (RFC 5987/RFC 2231 syntax; RFC 7578 section 4.2 tells senders not to use it, but some
  HTTP clients do for non-ASCII names), or when its ``Content-Type`` is not ``text/*``. A file's bytes are
  never decoded as text.
- Any other part, and every urlencoded field, is a :class:`TextPart`: its bytes and the charset to decode
  them with; :meth:`TextPart.decode` decodes strictly, so invalid bytes are refused, never mangled into
  mojibake or U+FFFD (Starlette's own parsers fall back to latin-1 or ``errors="replace"``).
- A part's ``Content-Transfer-Encoding`` (RFC 2045 section 6; deprecated by RFC 7578 section 4.7, still
  sent by older clients) is undone: ``base64`` and ``quoted-printable`` are decoded, ``7bit``/``8bit``/
  ``binary`` are the identity; any other is refused.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from email.message import Message
from tempfile import SpooledTemporaryFile
from typing import TYPE_CHECKING, BinaryIO, cast
from urllib.parse import unquote_to_bytes

from python_multipart import MultipartParser, QuerystringParser
from python_multipart.decoders import Base64Decoder, QuotedPrintableDecoder
from python_multipart.exceptions import DecodeError, FormParserError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request

from app.errors import ErrorType, ServiceError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks, QuerystringCallbacks

SPOOL_MAX_SIZE = 1024 * 1024
"""Bytes of a file part kept in memory before it is spooled to a temporary file (Starlette's value)."""

_IDENTITY_ENCODINGS = ("7bit", "8bit", "binary")  # RFC 2045 section 6.2: no decoding needed
_BASE64_WHITESPACE = b" \t\r\n"  # RFC 2045 section 6.8: base64 lines end with CRLF; decoders ignore it


class FormError(ServiceError, ValueError):
    """The form body is malformed or uses an unsupported feature (HTTP 400 ``malformed_request``).

    ``message`` is safe to show to the client (it never repeats the body); the subclasses below carry the
    other error types, so callers never look at message text.
    """

    error_type = ErrorType.MALFORMED_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)


class TooManyPartsError(FormError):
    """More file or text parts than allowed (HTTP 413 ``payload_too_large``)."""

    error_type = ErrorType.PAYLOAD_TOO_LARGE


class FieldTooLargeError(FormError):
    """A text part is longer than ``max_part_size`` bytes (HTTP 413 ``input_too_large``)."""

    error_type = ErrorType.INPUT_TOO_LARGE


class FieldDecodeError(FormError):
    """A text part's bytes are not valid in its charset, or the charset is unknown (HTTP 422)."""

    error_type = ErrorType.INVALID_INPUT


def _decode(raw: bytes, charset: str) -> str:
    try:
        codecs.lookup(charset)
    except LookupError:
        raise FieldDecodeError("a form field declares an unknown charset") from None
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        raise FieldDecodeError(f"a form field is not valid {charset} text") from None


@dataclass(frozen=True)
class TextPart:
    """A form field that is not a file: its (transfer-decoded) bytes and the charset they are in."""

    raw: bytes
    charset: str = "utf-8"

    def decode(self) -> str:
        """The text, decoded strictly with :attr:`charset`.

        Raises:
            FieldDecodeError: the bytes are not valid in the charset, or the charset is unknown.
        """
        return _decode(self.raw, self.charset)


@dataclass
class Form:
    """The parts of a form body in the order sent, each a :class:`TextPart` or an ``UploadFile``."""

    items: list[tuple[str, TextPart | UploadFile]] = field(default_factory=list)

    def multi_items(self) -> list[tuple[str, TextPart | UploadFile]]:
        """Every ``(name, part)`` pair, repeated names included (as Starlette's ``FormData``)."""
        return list(self.items)

    def getlist(self, name: str) -> list[TextPart | UploadFile]:
        """Every part sent under ``name``, in order."""
        return [part for key, part in self.items if key == name]

    async def close(self) -> None:
        """Close every file part (its temporary file is deleted)."""
        for _, part in self.items:
            if isinstance(part, UploadFile):
                await part.close()


def _charset_of(content_type: str | None, default: str) -> str:
    _, params = parse_options_header(content_type)
    declared = params.get(b"charset")
    return declared.decode("latin-1") if declared else default


def _file_name(disposition: str, params: dict[bytes, bytes], charset: str) -> str | None:
    """The part's file name: RFC 7578 ``filename``, else RFC 5987/2231 ``filename*`` (decoded by the
    standard library, ``email.message.Message.get_filename``); ``None`` when it has neither."""
    if b"filename" in params:
        return _decode_name(params[b"filename"], charset)
    message = Message()
    message["Content-Disposition"] = disposition
    return message.get_filename()


def _decode_name(raw: bytes, charset: str) -> str:
    """A part's name or file name: only compared with known names and shown in errors, so never refused."""
    try:
        return raw.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return raw.decode("latin-1")


@dataclass
class _Part:
    """One multipart part being received: where its decoded bytes go, and how they get there."""

    name: str
    upload: UploadFile | None
    charset: str
    max_size: int
    pending: list[tuple[UploadFile, bytes]]
    decoder: Base64Decoder | QuotedPrintableDecoder | None = None  # None: identity transfer encoding
    data: bytearray = field(default_factory=bytearray)

    def write(self, data: bytes) -> int:
        """Take decoded bytes: a file's wait in ``pending`` for the async write, a text part's are capped
        at ``max_size`` and kept."""
        if self.upload is not None:
            self.pending.append((self.upload, data))
        else:
            if len(self.data) + len(data) > self.max_size:
                raise FieldTooLargeError(f"Part exceeded maximum size of {int(self.max_size / 1024)}KB.")
            self.data.extend(data)
        return len(data)


def _transfer_decoder(encoding: str, part: _Part) -> Base64Decoder | QuotedPrintableDecoder | None:
    """The streaming decoder for a part's ``Content-Transfer-Encoding`` (RFC 2045 section 6, matched
    case-insensitively), writing into ``part``; ``None`` for the identity encodings.

    Raises:
        FormError: any other transfer encoding.
    """
    token = encoding.strip().lower()
    if token == "base64":
        return Base64Decoder(part)
    if token == "quoted-printable":
        return QuotedPrintableDecoder(part)
    if token in _IDENTITY_ENCODINGS:
        return None
    # The value is not repeated: it is client input, and error messages never echo the request.
    raise FormError(
        "a part's Content-Transfer-Encoding is not supported (supported: base64, quoted-printable, 7bit, "
        "8bit, binary)"
    )


class _MultipartReceiver:
    """The callbacks of :class:`python_multipart.MultipartParser`: builds each part from its headers and
    data, enforces the limits, and records whether the closing boundary was seen."""

    def __init__(self, charset: str, *, max_files: int, max_fields: int, max_part_size: int) -> None:
        self.charset = charset
        self.max_files, self.max_fields, self.max_part_size = max_files, max_fields, max_part_size
        self.form = Form()
        self.part: _Part | None = None
        self.pending: list[tuple[UploadFile, bytes]] = []  # file bytes for the async write after a chunk
        self.files = self.fields = 0
        self.ended = False
        self.header: list[tuple[bytes, bytes]] = []
        self.header_name = bytearray()
        self.header_value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self.header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.part = None
        self.header = []

    def on_header_end(self) -> None:
        self.header.append((bytes(self.header_name).lower(), bytes(self.header_value).strip(b" \t")))
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        headers = Headers(raw=self.header)
        disposition = headers.get("content-disposition", "")
        _, params = parse_options_header(disposition)
        if b"name" not in params:
            raise FormError('The Content-Disposition header field "name" must be provided.')
        name = _decode_name(params[b"name"], self.charset)
        content_type = headers.get("content-type")
        media_type, _ = parse_options_header(content_type)
        filename = _file_name(disposition, params, self.charset)
        upload = None
        if filename is not None or (media_type and not media_type.startswith(b"text/")):
            self.files += 1
            if self.files > self.max_files:
                raise TooManyPartsError(f"Too many files. Maximum number of files is {self.max_files}.")
            spool = cast(BinaryIO, SpooledTemporaryFile(max_size=SPOOL_MAX_SIZE))
            upload = UploadFile(spool, size=0, filename=filename, headers=headers)
        else:
            self.fields += 1
            if self.fields > self.max_fields:
                raise TooManyPartsError(f"Too many fields. Maximum number of fields is {self.max_fields}.")
        # The part is listed now, so that its file is closed with the form if parsing fails later.
        self.form.items.append((name, upload if upload is not None else TextPart(b"")))
        part = _Part(name, upload, _charset_of(content_type, self.charset), self.max_part_size, self.pending)
        part.decoder = _transfer_decoder(headers.get("content-transfer-encoding", "7bit"), part)
        self.part = part

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        assert part is not None  # set by on_headers_finished
        chunk = data[start:end]
        if isinstance(part.decoder, Base64Decoder):
            chunk = chunk.translate(None, _BASE64_WHITESPACE)
        (part.decoder or part).write(chunk)

    def on_part_end(self) -> None:
        part = self.part
        assert part is not None
        if part.decoder is not None:
            part.decoder.finalize()  # flushes the decoder; base64 left over raises DecodeError
        if part.upload is None:
            self.form.items[-1] = (part.name, TextPart(bytes(part.data), part.charset))

    def on_end(self) -> None:
        self.ended = True


async def _parse_multipart(
    headers: Headers, stream: AsyncIterator[bytes], *, max_files: int, max_fields: int, max_part_size: int
) -> Form:
    _, params = parse_options_header(headers.get("content-type"))
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormError("Missing boundary in multipart.")
    receiver = _MultipartReceiver(
        _charset_of(headers.get("content-type"), "utf-8"),
        max_files=max_files,
        max_fields=max_fields,
        max_part_size=max_part_size,
    )
    try:
        parser = MultipartParser(boundary, receiver.callbacks())
        async for chunk in stream:
            parser.write(chunk)
            # File bytes are written here, not in the callbacks: past the spool size UploadFile.write
            # runs in a thread pool, off the event loop (as Starlette's parser does).
            for upload, data in receiver.pending:
                await upload.write(data)
            receiver.pending.clear()
        parser.finalize()
        if not receiver.ended:
            # Without its closing boundary the body was cut short; its last part would be lost silently.
            raise FormError("the multipart body ends before its closing boundary")
        for _, item in receiver.form.items:
            if isinstance(item, UploadFile):
                await item.seek(0)
    except BaseException as exc:
        for _, item in receiver.form.items:
            if isinstance(item, UploadFile):
                item.file.close()  # synchronous: safe while being cancelled too
        if isinstance(exc, DecodeError):
            raise FormError("a part's base64 Content-Transfer-Encoding is not valid base64") from None
        if isinstance(exc, FormParserError):
            raise FormError("Invalid multipart data.") from None
        raise
    return receiver.form


class _QuerystringReceiver:
    """The callbacks of :class:`python_multipart.QuerystringParser`: each field's name and value,
    percent-decoded (WHATWG URL standard, ``application/x-www-form-urlencoded`` parsing)."""

    def __init__(self, *, max_fields: int, max_part_size: int) -> None:
        self.max_fields, self.max_part_size = max_fields, max_part_size
        self.form = Form()
        self.name = bytearray()
        self.value = bytearray()

    def callbacks(self) -> QuerystringCallbacks:
        return {
            "on_field_start": self.on_field_start,
            "on_field_name": lambda data, start, end: self.extend(self.name, data[start:end]),
            "on_field_data": lambda data, start, end: self.extend(self.value, data[start:end]),
            "on_field_end": self.on_field_end,
        }

    def on_field_start(self) -> None:
        self.name.clear()
        self.value.clear()

    def extend(self, buffer: bytearray, data: bytes) -> None:
        if len(self.name) + len(self.value) + len(data) > self.max_part_size:
            raise FieldTooLargeError(f"Field exceeded maximum size of {int(self.max_part_size / 1024)}KB.")
        buffer.extend(data)

    def on_field_end(self) -> None:
        if len(self.form.items) >= self.max_fields:
            raise TooManyPartsError(f"Too many fields. Maximum number of fields is {self.max_fields}.")
        name, value = (unquote_to_bytes(bytes(raw).replace(b"+", b" ")) for raw in (self.name, self.value))
        # Names are compared with known names and shown in errors: refused here when not UTF-8, as values are.
        self.form.items.append((_decode(name, "utf-8"), TextPart(value, "utf-8")))


async def _parse_urlencoded(stream: AsyncIterator[bytes], *, max_fields: int, max_part_size: int) -> Form:
    receiver = _QuerystringReceiver(max_fields=max_fields, max_part_size=max_part_size)
    parser = QuerystringParser(receiver.callbacks())
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise FormError("Invalid urlencoded data.") from None
    return receiver.form


async def parse_form(request: Request, *, max_files: int, max_fields: int, max_part_size: int) -> Form:
    """Parse a ``multipart/form-data`` (RFC 7578) or ``application/x-www-form-urlencoded`` body.

    Text parts keep their bytes and charset (:class:`TextPart`; decode with :meth:`TextPart.decode`): the
    part's own ``Content-Type: text/plain; charset=...`` (RFC 7578 section 4.4), else the request's
    ``charset`` parameter, else UTF-8; urlencoded values are UTF-8 after percent-decoding. File parts (see
    the module docstring) are ``UploadFile`` objects positioned at their start. The caller closes the form.

    Args:
        request: the request; its body is streamed (``Request.stream()``), never buffered whole.
        max_files: most file parts; more raise ``FormError("Too many files...")``.
        max_fields: most text parts; more raise ``FormError("Too many fields...")``.
        max_part_size: most bytes in one text part (after transfer decoding) or urlencoded field (name and
            value, before percent-decoding); more raise ``FormError("... exceeded maximum size ...")``.

    Raises:
        FieldDecodeError: an urlencoded field name is not UTF-8 after percent-decoding.
        FormError: malformed body (including a multipart body without its closing boundary, a part without
            a name, invalid base64 in a base64 part), an unsupported Content-Transfer-Encoding, a limit
            exceeded. Errors of ``Request.stream()`` itself (client disconnect, the app's body limits)
            propagate unchanged.
    """
    media_type, _ = parse_options_header(request.headers.get("content-type"))
    async with aclosing(request.stream()) as stream:
        if media_type == b"multipart/form-data":
            return await _parse_multipart(
                request.headers,
                stream,
                max_files=max_files,
                max_fields=max_fields,
                max_part_size=max_part_size,
            )
        return await _parse_urlencoded(stream, max_fields=max_fields, max_part_size=max_part_size)
