"""Run the real service (``python -m app.cli serve``, i.e. ``msa serve``) in a subprocess for tests that
need a real HTTP server: streamed uploads, slow clients, SIGTERM, memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.config import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of ``pid`` in bytes, from /proc/<pid>/status (VmRSS, VmHWM; Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (writing 5 to /proc/<pid>/clear_refs, Linux ≥ 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _tcp_queues(port: int) -> tuple[int, list[int]]:
    """(accept backlog of the listening socket, unread bytes of each accepted connection) for the IPv4
    sockets bound to ``port``, from /proc/net/tcp (Linux: for a LISTEN socket ``rx_queue`` is its accept
    backlog, for an ESTABLISHED one the bytes not read yet)."""
    backlog, unread = 0, []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, rx_queue = int(fields[1].split(":")[1], 16), fields[3], int(fields[4][9:], 16)
        if local_port == port:
            if state == "0A":  # LISTEN
                backlog += rx_queue
            elif state == "01":  # ESTABLISHED
                unread.append(rx_queue)
    return backlog, unread


def wait_until_read(server: Server, connections: int, timeout_s: float = 30.0) -> None:
    """Return once the server has accepted ``connections`` connections and read all that was sent on them
    (call it after the clients sent their requests). Raises AssertionError after ``timeout_s``."""
    port = int(server.url.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout_s
    while True:
        backlog, unread = _tcp_queues(port)
        if backlog == 0 and len(unread) >= connections and not any(unread):
            return
        assert time.monotonic() < deadline, f"server did not read the requests: {backlog=} {unread=}"
        time.sleep(0.01)


def serve_env(model_dir: Path, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(
        {
            "SENTIMENT_MODEL_DIR": str(model_dir),
            "SENTIMENT_PROVIDERS": "CPUExecutionProvider",
            "SENTIMENT_WARMUP": "false",
            "SENTIMENT_INTRA_OP_THREADS": "1",
            "SENTIMENT_PREPROCESS_WORKERS": "2",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    env.update({f"SENTIMENT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@contextmanager
def running_server(
    model_dir: Path,
    tmp_path: Path,
    *,
    startup_s: float = 60.0,
    wait_path: str = "/readyz",
    **settings: object,
) -> Iterator[Server]:
    """Start ``msa serve`` on a free port and wait until ``wait_path`` answers 200; stop it (SIGTERM, then
    kill)."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=serve_env(model_dir, **settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(server.url + wait_path, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {startup_s} s:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
