"""Limits, memory and time against the real server (uvicorn in a subprocess, ``msa serve``; issue 5).

* a 2 GB upload streamed from a generator (chunked, no Content-Length) is cut off at the body limit with
  413, the server closes the connection instead of reading the rest, and its peak RSS stays bounded;
* a declared 2 GB Content-Length is refused before a byte of the body is read;
* a client that trickles (or stalls) its body gets 408 within ``SENTIMENT_BODY_TIMEOUT_S``;
* with the batcher queue saturated, clients get 200 or 429 + Retry-After (never 5xx), and /healthz and
  /readyz stay fast.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import socket
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.media import face_jpeg
from tests.robustness.hammer import hammer
from tests.robustness.helpers import read_until_closed, trickled
from tests.robustness.server import Server, reset_peak_rss, rss_bytes, running_server

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

MB = 1 << 20
BODY_TIMEOUT_S = 2.0
SATURATION_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        model_dir,
        tmp_path_factory.mktemp("server"),
        body_timeout_s=BODY_TIMEOUT_S,
        queue_size=4,
        max_batch_size=2,
        max_wait_ms=20,
    ) as srv:
        yield srv


def _multipart_stream(total_bytes: int, counter: list[int]) -> Iterator[bytes]:
    yield b'--B\r\nContent-Disposition: form-data; name="audio"; filename="huge.wav"\r\n\r\n'
    chunk = b"\0" * MB
    for _ in range(total_bytes // MB):
        counter[0] += len(chunk)
        yield chunk
    yield b"\r\n--B--\r\n"


def test_2gb_streamed_upload_is_cut_off_and_memory_stays_bounded(server: Server) -> None:
    pid = server.process.pid
    reset_peak_rss(pid)
    before, _ = rss_bytes(pid)
    sent = [0]
    r = httpx.post(
        server.url + "/v1/predict",
        content=_multipart_stream(2048 * MB, sent),
        headers={"Content-Type": "multipart/form-data; boundary=B"},
        timeout=120,
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
    assert r.headers.get("connection") == "close"
    _, peak = rss_bytes(pid)
    # The server stopped reading at the 25 MB limit and closed the connection: the client could push only
    # what fits into socket buffers after that, far from 2 GB.
    assert sent[0] < 512 * MB, f"client sent {sent[0] / MB:.0f} MB"
    log.info(
        f"2 GB stream: client sent {sent[0] / MB:.0f} MB, server peak RSS +{(peak - before) / MB:.1f} MB"
    )
    assert peak - before < 200 * MB, f"peak RSS grew by {(peak - before) / MB:.0f} MB"
    assert httpx.get(server.url + "/readyz").status_code == 200


def test_declared_2gb_content_length_is_refused_before_reading(server: Server) -> None:
    sent = [0]
    started = time.monotonic()
    r = httpx.post(
        server.url + "/v1/predict",
        content=_multipart_stream(2048 * MB, sent),
        headers={"Content-Type": "multipart/form-data; boundary=B", "Content-Length": str(2048 * MB + 100)},
        timeout=60,
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
    assert time.monotonic() - started < 10
    assert sent[0] < 512 * MB
    # The access log shows the body was never read.
    assert "status=413 bytes_in=0 " in server.output()


def _raw_request(server: Server, head: bytes) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    sock.sendall(head)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _head(length: int) -> bytes:
    return (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
    )


def test_trickling_client_gets_408_and_is_disconnected(server: Server) -> None:
    logged_408 = "path=/v1/predict status=408 "
    before = server.output().count(logged_408)
    sock = _raw_request(server, _head(10_000) + b'{"text": "')
    started = time.monotonic()
    try:
        # one byte every 100 ms: 10 kB would take 1000 s
        response = trickled(sock, b"a", read_until_closed)
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert BODY_TIMEOUT_S - 0.5 < elapsed < BODY_TIMEOUT_S + 3
    # The server answers 408 and closes while bytes the client keeps sending sit unread in its socket: the
    # kernel may then turn the close into a reset (RFC 9293 §3.6.1) that overtakes the 408 on the client's
    # side. Either way the server decided 408 (its access log) and disconnected at the body timeout.
    if response:
        assert response.startswith(b"HTTP/1.1 408 "), response[:200]
        assert b'"request_timeout"' in response
    deadline = time.monotonic() + 10  # the access log line is written as the response completes
    while server.output().count(logged_408) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.output().count(logged_408) == before + 1, server.output()[-2000:]


def test_stalled_client_gets_408(server: Server) -> None:
    sock = _raw_request(server, _head(100) + b'{"te')
    started = time.monotonic()
    try:
        response = _read_all(sock)  # returns when the server closes the connection
    finally:
        sock.close()
    assert response.startswith(b"HTTP/1.1 408 "), response[:200]
    assert time.monotonic() - started < BODY_TIMEOUT_S + 3


def test_saturated_server_answers_429_with_retry_after_and_health_stays_fast(server: Server) -> None:
    # 24 clients in another process (tests/robustness/hammer.py) keep the queue full; this one probes.
    spawn = multiprocessing.get_context("spawn")
    stop, saw_429, results = spawn.Event(), spawn.Event(), spawn.Queue()
    clients = spawn.Process(target=hammer, args=(server.url, 24, face_jpeg(), stop, saw_429, results))
    probe_times: dict[str, list[float]] = {"/healthz": [], "/readyz": []}
    clients.start()
    try:  # the clients stop also when a probe fails
        # Probe once the queue was seen full. How soon it fills depends on the machine: under CPU load
        # preprocessing, not the queue, can be the bottleneck for a while (a fixed 1-s wait plus 20 probe
        # rounds saw no 429 in 1 of 25 runs here).
        assert saw_429.wait(SATURATION_DEADLINE_S), (
            "the queue (size 4) never filled: the server was not saturated"
        )
        with httpx.Client(base_url=server.url, timeout=10) as probe:
            for _ in range(20):
                for path, times in probe_times.items():
                    started = time.perf_counter()
                    r = probe.get(path)
                    times.append(time.perf_counter() - started)
                    assert r.status_code == 200, (path, r.status_code, r.text)
                time.sleep(0.05)
    finally:
        stop.set()
        statuses, retry_after, errors = results.get(timeout=60)
        clients.join(10)
    assert not errors, errors  # e.g. a request the server never answered (client timeout)
    assert statuses and set(statuses) <= {200, 429}, sorted(set(statuses))
    assert all(v.isdigit() and int(v) >= 1 for v in retry_after)
    log.info(
        f"saturated: {statuses.count(200)} x 200, {statuses.count(429)} x 429; probe ms (median, max) %s",
        {p: (round(statistics.median(t) * 1000, 1), round(max(t) * 1000, 1)) for p, t in probe_times.items()},
    )
    for path, times in probe_times.items():
        assert statistics.median(times) < 0.1, (path, times)
        assert max(times) < 1.0, (path, times)


def test_flood_of_large_uploads_gets_429_before_bodies_are_read(model_dir: Path, tmp_path: Path) -> None:
    # Preprocessing, not the batcher queue, is the bottleneck for large images: without a byte budget every
    # upload would wait in memory (48 × 9 MB uploads grew the server by 570 MB and all got 200 eventually).
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (1000, 1000, 3), dtype=np.uint8)).save(buf, "PNG")
    upload = buf.getvalue()  # ~3 MB, incompressible
    budget = 4 * len(upload) + 100_000
    with running_server(model_dir, tmp_path, max_inflight_bytes=budget) as srv:
        pid = srv.process.pid
        reset_peak_rss(pid)
        before, _ = rss_bytes(pid)

        def post(_: int) -> httpx.Response:
            return httpx.post(
                srv.url + "/v1/predict", files={"image": ("n.png", upload, "image/png")}, timeout=120
            )

        with ThreadPoolExecutor(24) as pool:
            responses = list(pool.map(post, range(24)))
            assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200  # bodiless: never refused
        _, peak = rss_bytes(pid)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses, statuses
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["type"] == "overloaded" and int(r.headers["Retry-After"]) >= 1
    log.info(
        "upload flood: %d x 200, %d x 429, peak RSS +%.0f MB",
        statuses.count(200),
        statuses.count(429),
        (peak - before) / MB,
    )
    assert peak - before < 200 * MB
