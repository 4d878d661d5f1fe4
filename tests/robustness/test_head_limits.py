"""Bounded request heads against the real server (``msa serve`` in a subprocess; issue 18).

An oversized request head gets 431 with the service's JSON error body and the connection is closed; a head
that trickles in slower than ``SENTIMENT_REQUEST_HEAD_TIMEOUT_S`` gets 408 and is closed; an idle connection
that never sends a byte is closed. Heads under the limit and heads that arrive in pieces in time are served.
No timing is asserted tighter than "closed, and not before the deadline"; the load measurement (20 clients
sending 200 MB header lines, 2,000 trickling connections) is benchmarks/head_limits.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.robustness.helpers import read_until_closed, trickled
from tests.robustness.server import Server, running_server

pytestmark = pytest.mark.slow

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        model_dir,
        tmp_path_factory.mktemp("server"),
        max_request_head_bytes=HEAD_LIMIT,
        request_head_timeout_s=HEAD_TIMEOUT_S,
    ) as srv:
        yield srv


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _status_and_body(response: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {line.split(b":")[0].strip().lower() for line in head.split(b"\r\n")[1:]}
    assert b"connection" in headers
    return status, json.loads(body)


def test_oversized_head_gets_431_with_the_json_error_body_and_is_closed(server: Server) -> None:
    big = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (HEAD_LIMIT + 4096) + b"\r\n\r\n"
    with _connect(server) as sock:
        sock.sendall(big)
        response = read_until_closed(sock)
    status, body = _status_and_body(response)
    assert status == 431
    assert body["error"]["type"] == "request_header_fields_too_large"  # type: ignore[index]
    assert str(HEAD_LIMIT) in body["error"]["message"]  # type: ignore[index]
    assert httpx.get(server.url + "/readyz").status_code == 200  # the server is fine


def test_endless_header_line_is_cut_off_far_below_its_size(server: Server) -> None:
    # A client that keeps sending one header line: it learns of the refusal (431 or a closed connection)
    # long before it has sent 8 MB.
    chunk, sent = b"a" * 65536, 0
    with _connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while sent < 8 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # reset or broken pipe: the server closed the connection
        response = read_until_closed(sock)
    assert sent < 8 << 20
    assert response == b"" or response.startswith(b"HTTP/1.1 431 ")


def test_head_just_under_the_limit_is_served(server: Server) -> None:
    r = httpx.get(server.url + "/readyz", headers={"X-Pad": "a" * (HEAD_LIMIT - 1024)})
    assert r.status_code == 200


def test_trickled_head_gets_408_after_the_head_timeout(server: Server) -> None:
    started = time.monotonic()  # before the connection exists, so the server's deadline is later
    with _connect(server) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        response = trickled(sock, b"X", read_until_closed)  # a header byte every 100 ms
        elapsed = time.monotonic() - started
    status, body = _status_and_body(response)
    assert status == 408 and body["error"]["type"] == "request_timeout"  # type: ignore[index]
    assert elapsed >= HEAD_TIMEOUT_S * 0.95  # not before the deadline (the socket timeout is 30 s)


def test_idle_connection_is_closed_without_an_answer(server: Server) -> None:
    with _connect(server) as sock:
        assert read_until_closed(sock) == b""


def test_head_sent_in_pieces_within_the_timeout_is_served(server: Server) -> None:
    with _connect(server) as sock:
        for piece in (b"GET /readyz HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n"):
            sock.sendall(piece)
            time.sleep(0.05)
        response = read_until_closed(sock)
    assert response.startswith(b"HTTP/1.1 200 ")


def test_second_request_on_a_kept_alive_connection_has_its_own_deadline(server: Server) -> None:
    # The deadline is per head: a connection that stays in use longer than the timeout is not cut.
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert client.get("/readyz").status_code == 200
            time.sleep(HEAD_TIMEOUT_S * 0.6)
