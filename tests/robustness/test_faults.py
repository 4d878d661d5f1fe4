"""Faults (issue 5): broken model at startup, CUDA required but absent, client disconnects, SIGTERM drain."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest
from onnx import TensorProto, helper

from app.config import REPO_ROOT, Settings
from app.inference.predictor import Predictor
from app.inference.repository import ModelLoadError
from app.main import create_app
from tests.gated import GatedModel
from tests.robustness.helpers import assert_prediction, probs
from tests.robustness.server import free_port, running_server, serve_env, wait_until_read


def _copy_repo(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(model_dir, target)
    return target


def _onnx_file(repo: Path) -> Path:
    return repo / "fused-sentiment" / "1" / "model.onnx"


# ----------------------------------------------------------------------------------- broken model
def _serve_once(model_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # A free port: `msa serve` checks it before loading the model, which then fails at startup.
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env=serve_env(model_dir),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_msa_serve_exits_non_zero_with_a_clear_error_on_missing_model(tmp_path: Path) -> None:
    result = _serve_once(tmp_path / "no-such-repository")
    assert result.returncode != 0
    assert "ModelLoadError" in result.stderr and "does not exist" in result.stderr
    assert "Application startup failed" in result.stderr


@pytest.mark.slow
def test_msa_serve_exits_non_zero_with_a_clear_error_on_corrupt_model(
    model_dir: Path, tmp_path: Path
) -> None:
    repo = _copy_repo(model_dir, tmp_path)
    data = _onnx_file(repo).read_bytes()
    _onnx_file(repo).write_bytes(data[: len(data) // 2])  # a truncated download
    result = _serve_once(repo)
    assert result.returncode != 0
    assert "could not load ONNX model" in result.stderr and "model.onnx" in result.stderr


def _wrong_contract_model(path: Path) -> None:
    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "L"])
    y = helper.make_tensor_value_info("probabilities", TensorProto.INT64, ["B", "L"])
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["probabilities"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every supported ONNX Runtime
    onnx.save(model, str(path))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda repo: _onnx_file(repo).write_bytes(b""), "could not load ONNX model"),
        (lambda repo: _onnx_file(repo).write_bytes(b"\x08\x07garbage" * 100), "could not load ONNX model"),
        (lambda repo: _onnx_file(repo).unlink(), "no <version>/model.onnx"),
        (lambda repo: _wrong_contract_model(_onnx_file(repo)), "contract needs"),
        (
            lambda repo: (repo / "fused-sentiment" / "tokenizer.json").write_text("{oops"),
            "could not load tokenizer",
        ),
        (lambda repo: (repo / "fused-sentiment" / "config.json").write_text("[1, 2"), "not valid JSON"),
    ],
    ids=["empty_file", "garbage", "missing_file", "wrong_contract", "corrupt_tokenizer", "corrupt_config"],
)
def test_broken_model_repository_raises_a_clear_error_at_startup(
    settings: Settings, model_dir: Path, tmp_path: Path, damage: Any, message: str
) -> None:
    repo = _copy_repo(model_dir, tmp_path)
    damage(repo)
    predictor = Predictor(settings.model_copy(update={"model_dir": repo, "warmup": False}))
    with pytest.raises(ModelLoadError, match=message):
        predictor.load()


# --------------------------------------------------------------------------------- CUDA required
@pytest.mark.slow
def test_cuda_required_but_unavailable_is_not_ready_with_the_reason(model_dir: Path, tmp_path: Path) -> None:
    with running_server(
        model_dir,
        tmp_path,
        wait_path="/healthz",
        require_gpu="true",
        providers="CUDAExecutionProvider,CPUExecutionProvider",
    ) as server:
        deadline = time.monotonic() + 30
        while (
            "model fused-sentiment" not in server.output()
            and "CUDA execution provider" not in server.output()
        ):
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        active = httpx.get(server.url + "/v1/models").json()["models"][0]["active_providers"]
        if "CUDAExecutionProvider" in active:  # pragma: no cover - a GPU machine: nothing to test here
            pytest.skip("the CUDA execution provider is active on this machine")
        r = httpx.get(server.url + "/readyz")
        assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"
        assert "CUDA" in r.json()["error"]["message"]
        assert httpx.get(server.url + "/healthz").status_code == 200  # alive, just not ready
        assert httpx.post(server.url + "/v1/predict", json={"text": "good"}).status_code == 503


# ----------------------------------------------------------------------------- client disconnect
def test_client_disconnect_frees_its_slot_and_does_not_disturb_its_batch(settings: Settings) -> None:
    # One consumer: batch 2 must wait in the queue behind the gated batch 1 (with two consumers it would run).
    s = settings.model_copy(
        update={"warmup": False, "max_batch_size": 8, "max_wait_ms": 50, "batch_workers": 1}
    )
    model = GatedModel(s)
    predictor = Predictor(s, model=model)
    app = create_app(settings=s, predictor=predictor)
    texts = [f"request {i} is {'good' if i % 2 else 'bad'} today" for i in range(6)]
    gate = threading.Event()
    running = threading.Event()

    async def main() -> tuple[list[Any], list[httpx.Response], int, int]:
        await predictor.start()
        model.hold(gate, running)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
            # Batch 1 (running, blocked at the gate): requests 0-2; request 1's client goes away.
            first = [asyncio.create_task(http.post("/v1/predict", json={"text": t})) for t in texts[:3]]
            while not running.is_set():
                await asyncio.sleep(0.01)
            # Batch 2 (queued behind it): requests 3-5; request 4's client goes away while queued.
            second = [asyncio.create_task(http.post("/v1/predict", json={"text": t})) for t in texts[3:]]
            while predictor.batcher.queued < 3:  # preprocessed and queued (no fixed sleep: CPU load)
                await asyncio.sleep(0.01)
            first[1].cancel()
            second[1].cancel()
            await asyncio.sleep(0.05)
            gate.set()
            results = await asyncio.gather(*first, *second, return_exceptions=True)
            await asyncio.sleep(0.1)
            queued, in_flight = predictor.batcher.queued, predictor.batcher.in_flight
            alone = [await http.post("/v1/predict", json={"text": t}) for t in texts]
        await predictor.stop()
        return list(results), alone, queued, in_flight

    results, alone, queued, in_flight = asyncio.run(main())
    assert isinstance(results[1], asyncio.CancelledError) and isinstance(results[4], asyncio.CancelledError)
    assert queued == 0 and in_flight == 0
    for i in (0, 2, 3, 5):
        got = assert_prediction(results[i])
        assert probs(got["probabilities"]) == pytest.approx(
            probs(assert_prediction(alone[i])["probabilities"]), abs=1e-5
        )
    # The request whose client left while queued was dropped before running: its batch-mates ran as two.
    assert assert_prediction(results[3])["timings"]["batch_size"] == 2


@pytest.mark.slow
def test_real_server_survives_clients_that_hang_up_mid_request(model_dir: Path, tmp_path: Path) -> None:
    import socket

    with running_server(model_dir, tmp_path, max_wait_ms=200) as server:
        host, port = server.url.removeprefix("http://").split(":")
        body = b'{"text": "a client that will not wait for its answer"}'
        head = (
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for i in range(20):
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(head + (body if i % 2 else body[:10]))  # full request, or half of the body
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(5):
                assert_prediction(http.post("/v1/predict", json={"text": "still serving everyone else"}))
            assert http.get("/readyz").status_code == 200
        assert "Traceback" not in server.output()


# ----------------------------------------------------------------------------------------- SIGTERM
# How a server that stopped accepting looks to a new client: the listening socket is closed (connection
# refused), or it closed while the connection waited in the accept backlog (reset), or uvicorn had just
# accepted it and closes connections without a request in progress at shutdown ("Server disconnected
# without sending a response"). Which one a probe meets depends on where SIGTERM finds it: a race under
# CPU load. A timeout is none of these: the server would still be holding the connection.
_CLOSED_WITHOUT_ANSWER = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def _outcomes(futures: list[Future[httpx.Response]]) -> list[str]:
    return [repr(f.exception() or f.result()) if f.done() else "pending" for f in futures]


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_and_exits_within_the_grace_period(
    model_dir: Path, tmp_path: Path
) -> None:
    n = 12
    # The batcher holds the first request up to 3 s for more: all n are in flight when SIGTERM arrives as
    # soon as the server has read them. (SIGTERM after a fixed 1-s sleep, with a new client per request,
    # found a request already finished in 1 of 18 runs under CPU load: one that had not reached the server
    # yet meets the closed socket.)
    sent: list[str] = []

    def trace(event: str, info: object) -> None:
        if event == "http11.send_request_body.complete":
            sent.append(event)

    with running_server(model_dir, tmp_path, max_wait_ms=3000, max_batch_size=16) as server:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        with (
            httpx.Client(base_url=server.url, timeout=30, limits=limits) as http,
            ThreadPoolExecutor(n) as pool,
        ):
            futures = [
                pool.submit(
                    http.post,
                    "/v1/predict",
                    json={"text": f"in flight number {i}"},
                    extensions={"trace": trace},
                )
                for i in range(n)
            ]
            deadline = time.monotonic() + 30
            while len(sent) < n:
                assert time.monotonic() < deadline and not any(f.done() for f in futures), _outcomes(futures)
                time.sleep(0.01)
            wait_until_read(server, n)
            sent_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            refused = False
            while not refused and time.monotonic() - sent_at < 1.5:  # stops accepting at once
                try:
                    httpx.get(server.url + "/healthz", timeout=1)
                    time.sleep(0.05)
                except _CLOSED_WITHOUT_ANSWER:
                    refused = True
            assert refused, "still accepting connections after SIGTERM"
            assert not any(f.done() for f in futures), f"finished before SIGTERM: {_outcomes(futures)}"
            responses = [f.result() for f in futures]
        exit_code = server.process.wait(timeout=30)
        exited_after = time.monotonic() - sent_at
    assert [r.status_code for r in responses] == [200] * n, [
        r.text[:100] for r in responses if r.status_code != 200
    ]
    assert len({r.json()["request_id"] for r in responses}) == n
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown, so the exit status is "terminated
    # by SIGTERM" (-15) — after the application shutdown completed (the batcher drained).
    assert exit_code in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete" in server.output()
    assert exited_after < 30  # uvicorn's timeout_graceful_shutdown in `msa serve`
    assert "Waiting for connections to close" in server.output() or "Shutting down" in server.output()


@pytest.mark.slow
def test_real_server_drops_the_work_of_a_client_that_left(model_dir: Path, tmp_path: Path) -> None:
    import socket

    # The batcher collects for 1.5 s after the first request: A arrives, leaves; B arrives and runs alone.
    with running_server(model_dir, tmp_path, max_wait_ms=1500, max_batch_size=16) as server:
        host, port = server.url.removeprefix("http://").split(":")
        body = b'{"text": "I will not wait for this answer"}'
        head = (
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: leaver\r\n"
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + body)
            time.sleep(0.3)
        time.sleep(0.2)
        r = httpx.post(server.url + "/v1/predict", json={"text": "I will wait"}, timeout=30)
        assert_prediction(r)
        assert r.headers["X-Batch-Size"] == "1"  # A's request was dropped from the batch, not run
        deadline = time.monotonic() + 5
        while "request_id=leaver client disconnected before its answer was ready" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
