"""``msa`` command-line manners, through a real subprocess (``python -m app.cli``, what ``msa`` runs).

A user error is exactly one line on stderr and a non-zero exit status, never a traceback; bad arguments
are argparse's usage error (exit 2); ``msa serve`` refuses a port in use before loading the model and
exits 0 after a graceful shutdown on SIGINT (Ctrl-C) or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import REPO_ROOT

FACE = REPO_ROOT / "examples" / "face.jpg"


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(
        {"SENTIMENT_PROVIDERS": "CPUExecutionProvider", "PYTHONPATH": str(REPO_ROOT), **settings}
    )
    return env


def _msa(*args: str, timeout: float = 120, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=_env(**settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_line_error(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    """Assert a user error: non-zero exit, nothing on stdout, one stderr line starting with prefix."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), result.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--image", "missing.jpg"], "No such file or directory"),
        (["--audio", "missing.wav"], "No such file or directory"),
        (["--text", "fine", "--image", "examples"], "is a directory"),
        (["--audio", "examples/face.jpg/speech.wav"], "Not a directory"),
    ],
)
def test_predict_with_an_unusable_file_is_one_line(args: list[str], reason: str) -> None:
    line = _one_line_error(_msa("predict", *args), "msa predict: --")
    assert args[-1] in line and reason in line


@pytest.mark.parametrize(
    "args",
    [
        ["predict"],  # no modality
        ["predict", "--bogus"],
        ["predict", "--image"],  # option without its value
        ["serve", "--port", "eighty"],
        ["serve", "--port", "70000"],
        ["frobnicate"],
        [],
    ],
)
def test_bad_arguments_are_a_usage_error(args: list[str]) -> None:
    result = _msa(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("usage: msa"), result.stderr
    assert "error:" in result.stderr.splitlines()[-1]


def test_invalid_setting_is_one_line() -> None:
    line = _one_line_error(_msa("predict", "--text", "hi", SENTIMENT_MAX_BATCH_SIZE="0"), "msa predict:")
    assert "SENTIMENT_MAX_BATCH_SIZE" in line


def test_missing_model_is_one_line(tmp_path: Path) -> None:
    result = _msa("predict", "--text", "hi", SENTIMENT_MODEL_DIR=str(tmp_path / "nowhere"))
    line = _one_line_error(result, "msa predict: cannot load the model")
    assert "does not exist" in line


def test_serve_refuses_a_port_in_use_before_loading_the_model(busy_port: int, tmp_path: Path) -> None:
    # The model directory does not exist: had the model been loaded first, this would be a ModelLoadError.
    started = time.monotonic()
    result = _msa(
        "serve", "--host", "127.0.0.1", "--port", str(busy_port), SENTIMENT_MODEL_DIR=str(tmp_path / "none")
    )
    line = _one_line_error(result, "msa serve: cannot listen on")
    assert f"127.0.0.1:{busy_port}" in line and "in use" in line
    assert time.monotonic() - started < 60


def test_serve_refuses_a_port_in_use_from_the_environment(busy_port: int) -> None:
    result = _msa("serve", SENTIMENT_HOST="127.0.0.1", SENTIMENT_PORT=str(busy_port))
    _one_line_error(result, "msa serve: cannot listen on")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_exits_0_quietly_on_a_signal(sig: signal.Signals, model_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=_env(SENTIMENT_MODEL_DIR=str(model_dir), SENTIMENT_WARMUP="false"),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        process.send_signal(sig)
        assert process.wait(timeout=60) == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text(errors="replace")
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "Application shutdown complete" in output
