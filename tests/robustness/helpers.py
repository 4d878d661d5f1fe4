"""Shared helpers of the robustness tests: post one upload, check the one error schema or a prediction."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi.testclient import TestClient

LABELS = ("negative", "neutral", "positive")


def post_file(
    client: TestClient,
    field: str,
    data: bytes,
    *,
    filename: str = "upload.bin",
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    """POST one file part named ``field`` (``image`` or ``audio``) to /v1/predict."""
    return client.post("/v1/predict", files={field: (filename, data, content_type)})


def assert_error(r: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """Exactly ``status`` with the one error body ``{"error": {"type": type_, "message": ...}}``."""
    assert r.status_code == status, f"expected {status} {type_}, got {r.status_code}: {r.text[:300]}"
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == type_, body
    message = body["error"]["message"]
    assert message and "Traceback" not in message and len(message) < 400
    err: dict[str, Any] = body["error"]
    return err


def assert_prediction(r: httpx.Response) -> dict[str, Any]:
    """200 with a valid fused probability vector and its label (null, with reason ``no_usable_evidence``,
    exactly when no expert was used: the probabilities are then the prior); returns the body."""
    assert r.status_code == 200, f"expected 200, got {r.status_code}: {r.text[:300]}"
    body: dict[str, Any] = r.json()
    probs = body["probabilities"]
    assert set(probs) == set(LABELS)
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in probs.values())
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4)
    used = [m for m in body["modalities"].values() if m is not None and m["used"]]
    if used:
        assert body["label"] == max(probs, key=probs.get) and body["reason"] is None
        assert body["probabilities_are_prior"] is False
    else:
        assert body["label"] is None and body["reason"] == "no_usable_evidence"
        assert body["probabilities_are_prior"] is True
    return body


def probs(values: dict[str, float] | None) -> list[float]:
    """A probabilities object in label order."""
    assert values is not None
    return [values[label] for label in LABELS]


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer counts as closed: a server
    that closes with unread client bytes in its socket sends a reset, which may even overtake its answer)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def trickled(sock: socket.socket, byte: bytes, read: Callable[[socket.socket], bytes]) -> bytes:
    """Send ``byte`` every 100 ms from a thread (never idle long, never finished) while ``read(sock)``
    waits for the server's answer; stop the trickle once it returns. Returns what ``read`` returned."""
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                sock.sendall(byte)
            except OSError:
                return
            time.sleep(0.1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        return read(sock)
    finally:
        stop.set()
        thread.join(5)
