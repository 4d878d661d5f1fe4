"""Preprocessing in worker processes (SENTIMENT_PREPROCESS_PROCESSES): the same answers and errors as the
thread pool, a killed worker replaced, a worker that dies on a request answered with a 500, a hung worker
answered with a 504 and replaced, workers stopped with the service (also a stopped one) and by themselves
when the server process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.config import REPO_ROOT, Settings
from app.inference.predictor import Predictor
from app.main import create_app
from app.preprocessing.experts import DEFAULT_EXPERTS, Expert, ExpertInput, Resources, prepare_face
from tests.media import face_jpeg, image_bytes, speech_wav

#: Width of the image on which :func:`_crashing_face` makes its worker process exit.
CRASH_WIDTH = 13
#: Width of the image on which :func:`_slow_face` takes :data:`SLOW_S` seconds.
SLOW_WIDTH = 17
SLOW_S = 0.5


def _crashing_face(image: Image.Image, resources: Resources) -> ExpertInput:
    """The face expert's prepare function, except that a 13-px-wide image ends the process at once (as a
    crash in a native decoder would)."""
    if image.width == CRASH_WIDTH:
        os._exit(3)
    return prepare_face(image, resources)


def _slow_face(image: Image.Image, resources: Resources) -> ExpertInput:
    """The face expert's prepare function, except that a 17-px-wide image takes half a second."""
    if image.width == SLOW_WIDTH:
        time.sleep(SLOW_S)
    return prepare_face(image, resources)


def _client(settings: Settings, experts: Mapping[str, Expert] | None = None, **update: Any) -> TestClient:
    s = settings.model_copy(update=update)
    predictor = Predictor(s, experts=dict(experts or DEFAULT_EXPERTS))
    return TestClient(create_app(settings=s, predictor=predictor), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def processes(settings: Settings) -> Iterator[TestClient]:
    crashing = {**DEFAULT_EXPERTS, "face": Expert("image", _crashing_face)}
    with _client(settings, crashing, preprocess_processes=2) as client:
        yield client


def _pool(client: TestClient) -> Any:
    pool = client.app.state.predictor.process_pool  # type: ignore[attr-defined]
    assert pool is not None
    return pool


def _post(client: TestClient, image: bytes, audio: bytes | None = None) -> Any:
    files: dict[str, Any] = {"image": ("photo", image)}
    if audio is not None:
        files["audio"] = ("clip", audio)
    return client.post("/v1/predict", data={"text": "what a lovely day"}, files=files)


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    """The response without its timings and request id (which differ from request to request)."""
    assert "timings" in body and "request_id" in body
    return {k: v for k, v in body.items() if k not in ("timings", "request_id")}


def test_workers_answer_as_the_threads_do(processes: TestClient, settings: Settings) -> None:
    assert len(_pool(processes).pids()) == 2
    with _client(settings) as threads:
        assert threads.app.state.predictor.process_pool is None  # type: ignore[attr-defined]
        teal = image_bytes(Image.new("RGB", (300, 200), "teal"))
        for image, audio in ((face_jpeg(), speech_wav()), (teal, None)):
            a, b = _post(processes, image, audio), _post(threads, image, audio)
            assert a.status_code == b.status_code == 200, a.text
            assert _answer(a.json()) == _answer(b.json())
        for bad in (b"GIF89a not really", b"\x89PNG\r\n\x1a\n" + b"\0" * 40):
            a, b = _post(processes, bad), _post(threads, bad)
            assert a.status_code == b.status_code and a.status_code in (415, 422)
            assert a.json() == b.json()


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux ``/proc/PID/stat``, field 3: state)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_until_gone(pid: int, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while _running(pid):
        assert time.monotonic() < deadline, f"process {pid} still running after {limit_s:g} s"
        time.sleep(0.05)


def _restarts_metric(client: TestClient) -> float:
    """``sentiment_preprocess_worker_restarts_total`` from ``GET /metrics``."""
    text = client.get("/metrics").text
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "sentiment_preprocess_worker_restarts_total"
    ]
    assert len(values) == 1, text
    return values[0]


def test_a_killed_idle_worker_is_replaced_and_the_next_request_succeeds(processes: TestClient) -> None:
    pool = _pool(processes)
    restarts, victim = pool.restarts, pool.pids()[0]
    os.kill(victim, signal.SIGKILL)
    _wait_until_gone(victim)
    response = _post(processes, face_jpeg())
    assert response.status_code == 200, response.text
    assert pool.restarts == restarts + 1 == _restarts_metric(processes)
    assert victim not in pool.pids() and len(pool.pids()) == 2


def test_a_request_that_kills_its_worker_gets_a_500_and_the_service_goes_on(processes: TestClient) -> None:
    pool = _pool(processes)
    restarts = pool.restarts
    response = _post(processes, image_bytes(Image.new("RGB", (CRASH_WIDTH, 20), "red")))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "internal_error"
    assert "worker process" in response.json()["error"]["message"]
    assert pool.restarts == restarts + 2  # the pool it broke, then the fresh one it was retried in
    assert _restarts_metric(processes) == pool.restarts
    assert _post(processes, face_jpeg()).status_code == 200


def test_every_worker_is_started_before_the_service_is_ready(settings: Settings) -> None:
    with _client(settings, preprocess_processes=3) as client:
        pids = _pool(client).pids()
        assert len(pids) == 3 and all(_running(p) for p in pids)


def test_a_hung_worker_gets_a_504_and_is_replaced(settings: Settings) -> None:
    with _client(settings, preprocess_processes=2, request_timeout_s=2.0) as client:
        pool = _pool(client)
        workers = pool.pids()
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # a hung decoder, as seen from the server
        try:
            response = _post(client, face_jpeg())
            assert response.status_code == 504, response.text
            assert response.json()["error"]["type"] == "timeout"
            assert pool.restarts == 1 == _restarts_metric(client)
            hung = [p for p in workers if p not in pool.pids()]
            assert len(hung) == 1
            _wait_until_gone(hung[0])  # killed although it was stopped
        finally:
            for pid in workers:
                if _running(pid):
                    os.kill(pid, signal.SIGCONT)
        assert _post(client, face_jpeg()).status_code == 200


def test_the_deadline_counts_a_fields_own_run_not_its_wait_for_a_worker(settings: Settings) -> None:
    # One worker, four half-second fields at once: the second is sent to the worker while the first runs
    # and the last waits 1.5 s; with the 0.8-s deadline counted from sending, the second (1.0 s) and later
    # ones would be cut; each runs 0.5 s: all answered, no worker killed.
    slow = {**DEFAULT_EXPERTS, "face": Expert("image", _slow_face)}
    with _client(settings, slow, preprocess_processes=1, request_timeout_s=0.8) as client:
        image = image_bytes(Image.new("RGB", (SLOW_WIDTH, 20), "red"))
        with ThreadPoolExecutor(4) as threads:
            responses = list(threads.map(lambda _: _post(client, image), range(4)))
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
        assert _pool(client).restarts == 0


def test_requests_queued_behind_a_hung_worker_go_to_its_replacement(settings: Settings) -> None:
    # One worker, stopped: the first request runs into the deadline (504); those waiting behind it are
    # prepared by the replacement, each answered in the JSON schema.
    with _client(settings, preprocess_processes=1, request_timeout_s=2.0) as client:
        pool = _pool(client)
        (hung,) = pool.pids()
        os.kill(hung, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(3) as threads:
                responses = list(threads.map(lambda _: _post(client, face_jpeg()), range(3)))
        finally:
            if _running(hung):
                os.kill(hung, signal.SIGCONT)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200, 504], [r.text for r in responses]
        assert all(r.headers["content-type"] == "application/json" for r in responses)
        assert pool.restarts == 1
        _wait_until_gone(hung)


@pytest.mark.parametrize("stopped", [False, True], ids=["idle", "stopped"])
def test_workers_exit_with_the_service(settings: Settings, stopped: bool) -> None:
    with _client(settings, preprocess_processes=1) as client:
        pids = _pool(client).pids()
        assert len(pids) == 1 and _running(pids[0])
        if stopped:
            os.kill(pids[0], signal.SIGSTOP)
    _wait_until_gone(pids[0])


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
def test_a_worker_ends_when_the_server_process_is_killed(stopped: bool) -> None:
    server = textwrap.dedent(
        """
        import multiprocessing, os, time
        from app.inference.process_pool import exit_with_parent

        def worker(parent):
            exit_with_parent(parent, 0.05)
            time.sleep(120)

        if __name__ == "__main__":
            child = multiprocessing.get_context("fork").Process(target=worker, args=(os.getpid(),))
            child.start()
            print(child.pid, flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, cwd=REPO_ROOT, text=True)
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        time.sleep(0.3)
        assert _running(worker)
        if stopped:  # a hung worker: its own watch thread cannot run
            os.kill(worker, signal.SIGSTOP)
    finally:
        proc.kill()  # SIGKILL: the server's own shutdown never runs
        proc.wait()
    try:
        _wait_until_gone(worker)
    finally:
        if _running(worker):
            os.kill(worker, signal.SIGKILL)
