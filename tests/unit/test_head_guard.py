"""app/head_guard.py without a server: where a request head ends, and the error response it sends."""

from __future__ import annotations

import json

import pytest

from app.head_guard import error_response, head_length


@pytest.mark.parametrize(
    ("tail", "data", "expected"),
    [
        (b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY", 27),  # up to and including the empty line
        (b"", b"GET / HTTP/1.1\r\nHost: x", 23),  # no end yet: all of it
        (b"x\r\n", b"\r\nBODY", 2),  # the empty line split across two reads
        (b"x\r", b"\n\r\nBODY", 3),
        (b"", b"GET / HTTP/1.1\nHost: x\n\nBODY", 24),  # bare LF line ends
        (b"", b"", 0),
    ],
)
def test_head_length_counts_up_to_the_empty_line(tail: bytes, data: bytes, expected: int) -> None:
    assert head_length(tail, data) == expected


def test_error_response_is_the_services_json_error_and_closes() -> None:
    raw = error_response(431, "Request Header Fields Too Large", "request_header_fields_too_large", "too big")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == {"error": {"type": "request_header_fields_too_large", "message": "too big"}}
