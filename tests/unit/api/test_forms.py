"""app/api/forms.py without the app: bodies streamed in chunks of any size, limits, transfer encodings."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from app.api.forms import FieldDecodeError, Form, FormError, TextPart, parse_form

CASES = Path(__file__).resolve().parents[2] / "data" / "cases"
LIMITS = {"max_files": 10, "max_fields": 10, "max_part_size": 1024}


def request(body: bytes, content_type: str, chunk: int) -> Request:
    """A Starlette request whose body arrives in ``chunk``-byte messages (as from a slow client)."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = iter(
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    )

    async def receive() -> Message:
        return next(messages)

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
    return Request(scope, receive)


def parse(body: bytes, content_type: str, chunk: int = 1 << 16, **limits: int) -> Form:
    return asyncio.run(parse_form(request(body, content_type, chunk), **{**LIMITS, **limits}))


def multipart(*parts: tuple[bytes, bytes]) -> bytes:
    body = b"".join(b"--B\r\n" + headers + b"\r\n\r\n" + payload + b"\r\n" for headers, payload in parts)
    return body + b"--B--\r\n"


MULTIPART = "multipart/form-data; boundary=B"


def read(part: TextPart | UploadFile) -> bytes:
    assert isinstance(part, UploadFile)
    return asyncio.run(part.read())


@pytest.mark.parametrize("chunk", [1, 3, 77, 1 << 16])
def test_base64_file_part_is_decoded_whatever_the_chunk_boundaries(chunk: int) -> None:
    body = (CASES / "cte_base64.body").read_bytes()
    content_type = (CASES / "cte_base64.ctype").read_text(encoding="ascii").strip()
    payload = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--turn2boundary--", 1)[0]
    [(name, part)] = parse(body, content_type, chunk).multi_items()
    assert name == "image"
    assert read(part) == base64.b64decode(b"".join(payload.split()))


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_quoted_printable_text_part_is_decoded_whatever_the_chunk_boundaries(chunk: int) -> None:
    headers = b'Content-Disposition: form-data; name="text"\r\nContent-Transfer-Encoding: quoted-printable'
    form = parse(multipart((headers, b"caf=C3=A9 =\r\nvery=3D good")), MULTIPART, chunk)
    [part] = form.getlist("text")
    assert isinstance(part, TextPart) and part.decode() == "café very= good"


def test_file_part_larger_than_the_spool_size_keeps_every_byte() -> None:
    data = bytes(range(256)) * 12_000  # 3 MB: spooled to a temporary file
    headers = b'Content-Disposition: form-data; name="audio"; filename="a.wav"'
    [part] = parse(multipart((headers, data)), MULTIPART, chunk=50_000).getlist("audio")
    assert isinstance(part, UploadFile) and part.size == len(data) and part.filename == "a.wav"
    assert read(part) == data


def test_filename_star_is_decoded_as_rfc_5987() -> None:
    headers = b"Content-Disposition: form-data; name=\"image\"; filename*=utf-8''%D0%BB%D0%B8%D1%86%D0%BE.jpg"
    [part] = parse(multipart((headers, b"x")), MULTIPART).getlist("image")
    assert isinstance(part, UploadFile) and part.filename == "лицо.jpg"


def test_text_part_charset_comes_from_the_part_then_the_request_then_utf8() -> None:
    own = b'Content-Disposition: form-data; name="a"\r\nContent-Type: text/plain; charset=iso-8859-1'
    plain = b'Content-Disposition: form-data; name="b"'
    form = parse(multipart((own, b"caf\xe9"), (plain, b"caf\xe9")), MULTIPART + "; charset=cp1252")
    assert [(n, p.charset) for n, p in form.multi_items() if isinstance(p, TextPart)] == [
        ("a", "iso-8859-1"),
        ("b", "cp1252"),
    ]
    [part] = parse(multipart((plain, b"caf\xe9")), MULTIPART).getlist("b")
    assert isinstance(part, TextPart)
    with pytest.raises(FieldDecodeError, match="utf-8"):
        part.decode()


def test_text_part_over_the_size_limit_is_refused_after_transfer_decoding() -> None:
    headers = b'Content-Disposition: form-data; name="text"\r\nContent-Transfer-Encoding: base64'
    parse(multipart((headers, base64.b64encode(b"a" * 1024))), MULTIPART)  # 1368 bytes sent, 1024 kept
    with pytest.raises(FormError, match="exceeded maximum size"):
        parse(multipart((headers, base64.b64encode(b"a" * 1025))), MULTIPART)


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([(b'Content-Disposition: form-data; name="f"; filename="x"', b"")] * 3, "Too many files"),
        ([(b'Content-Disposition: form-data; name="t"', b"")] * 3, "Too many fields"),
    ],
)
def test_part_count_limits(parts: list[tuple[bytes, bytes]], message: str) -> None:
    assert len(parse(multipart(*parts), MULTIPART, max_files=3, max_fields=3).items) == 3
    with pytest.raises(FormError, match=message):
        parse(multipart(*parts, parts[0]), MULTIPART, max_files=3, max_fields=3)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (multipart((b'Content-Disposition: form-data; name="t"', b"x"))[:-9], MULTIPART, "closing boundary"),
        (b"", MULTIPART, "closing boundary"),
        (multipart((b'Content-Disposition: form-data; name="t"', b"x")), "multipart/form-data", "boundary"),
        (multipart((b"Content-Disposition: form-data", b"x")), MULTIPART, '"name"'),
        (b"--B\r\nbroken\r\n\r\n", MULTIPART, "Invalid multipart data"),
    ],
    ids=["cut", "empty", "no_boundary", "no_name", "broken_header"],
)
def test_malformed_multipart_bodies_raise_form_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(FormError, match=message):
        parse(body, content_type)


@pytest.mark.parametrize("chunk", [1, 4, 1 << 16])
def test_urlencoded_values_are_utf8_after_percent_decoding(chunk: int) -> None:
    body = "text=caf%C3%A9+good&raw=café&empty=&flag".encode()
    form = parse(body, "application/x-www-form-urlencoded", chunk)
    values = {n: p.decode() for n, p in form.multi_items() if isinstance(p, TextPart)}
    assert values == {"text": "café good", "raw": "café", "empty": "", "flag": ""}
    [part] = parse(b"text=caf%E9", "application/x-www-form-urlencoded").getlist("text")
    assert isinstance(part, TextPart)
    with pytest.raises(FieldDecodeError):
        part.decode()


def test_urlencoded_limits() -> None:
    urlencoded = "application/x-www-form-urlencoded"
    with pytest.raises(FormError, match="Too many fields"):
        parse(b"a=1&b=2&c=3", urlencoded, max_fields=2)
    parse(b"t=" + b"a" * 1023, urlencoded)  # name and value: 1024 bytes
    with pytest.raises(FormError, match="exceeded maximum size"):
        parse(b"t=" + b"a" * 1024, urlencoded)
