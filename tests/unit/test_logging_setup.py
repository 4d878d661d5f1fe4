"""Log formats (issue 13, item 7): ``SENTIMENT_LOG_FORMAT=json`` makes every line of ``msa serve`` (uvicorn's
and the service's) one JSON object, and a request's lines carry its request id, status, error type and
timings."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.logging_setup import (
    TIMING_FIELDS,
    JsonFormatter,
    RequestLogContext,
    begin_request,
    end_request,
    log_config,
    note_error_type,
)
from tests.robustness.server import running_server

REQUEST_KEYS = {"request_id", "status", "error_type", "elapsed_ms", *TIMING_FIELDS}


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("app.access", logging.INFO, __file__, 1, message, args, exc_info)


def test_json_line_outside_a_request_has_the_basic_fields() -> None:
    line = json.loads(JsonFormatter().format(_record("model %s ready", "m")))
    assert line["message"] == "model m ready" and line["level"] == "INFO" and line["logger"] == "app.access"
    assert line["time"].endswith("+00:00")
    assert not REQUEST_KEYS & set(line)


def test_json_line_inside_a_request_carries_its_context() -> None:
    context = RequestLogContext(state={"request_id": "abc"})
    token = begin_request(context)
    try:
        note_error_type("missing_modality")
        context.status = 422
        line = json.loads(
            JsonFormatter().format(_record("request_id=%s path=%s status=%d", "abc", "/v1/predict", 422))
        )
    finally:
        end_request(token)
    assert REQUEST_KEYS <= set(line)
    assert (line["request_id"], line["status"], line["error_type"]) == ("abc", 422, "missing_modality")
    assert line["path"] == "/v1/predict" and line["queue_ms"] is None
    note_error_type("ignored")  # outside a request: no effect, no error
    assert context.error_type == "missing_modality"


def test_json_line_with_an_exception_stays_one_line() -> None:
    text = JsonFormatter().format(_record("unhandled error: %s", "ValueError", exc=True))
    assert "\n" not in text and "ValueError: boom" in json.loads(text)["exception"]


def test_log_config_uses_one_formatter_for_uvicorn_and_the_app() -> None:
    config = log_config("info", "json")
    assert config["formatters"]["service"] == {"()": "app.logging_setup.JsonFormatter"}
    assert config["loggers"]["uvicorn"]["handlers"] == config["root"]["handlers"] == ["stderr"]
    assert "%(levelname)s" in log_config("debug", "text")["formatters"]["service"]["format"]


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.mark.slow
def test_msa_serve_json_logs_every_line_and_each_request(model_dir: Path, tmp_path: Path) -> None:
    with running_server(model_dir, tmp_path, log_format="json", warmup="false") as server:
        ok = httpx.post(
            server.url + "/v1/predict", json={"text": "good"}, headers={"X-Request-ID": "req-ok"}, timeout=30
        )
        bad = httpx.post(server.url + "/v1/predict", json={}, headers={"X-Request-ID": "req-bad"}, timeout=30)
        assert (ok.status_code, bad.status_code) == (200, 422)
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        output = server.output()
    lines = _lines(output)  # every line, uvicorn's included, is JSON
    assert {"uvicorn.error", "app.access"} <= {line["logger"] for line in lines}, output
    assert any("Application startup complete" in line["message"] for line in lines)
    by_id = {line.get("request_id"): line for line in lines if line["logger"] == "app.access"}
    good, refused = by_id["req-ok"], by_id["req-bad"]
    for line in (good, refused):
        assert REQUEST_KEYS <= set(line), line
    assert (good["status"], good["error_type"]) == (200, None)
    assert all(isinstance(good[k], int | float) for k in TIMING_FIELDS), good
    assert good["inference_ms"] == pytest.approx(float(ok.headers["X-Inference-Time-Ms"]))
    assert (refused["status"], refused["error_type"]) == (422, "missing_modality")
    assert refused["queue_ms"] is None and refused["elapsed_ms"] > 0
