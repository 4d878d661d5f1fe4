"""Bounded request heads under attack-like load (issue 18): the service (``msa serve``, whose protocol is
app/head_guard.py) side by side with plain uvicorn on the same app (httptools parser: no limits; h11 parser
with ``h11_max_incomplete_event_size``: a size limit, no deadline).

* ``big``: N clients at once each send one endless header line (default 20 × 200 MB, 64 KiB writes,
  checking for an answer before each write). Per client: bytes sent until the server answered or closed,
  and how (431 / other status / closed). Server RSS before and peak during; ``/readyz`` latency from a probe
  every 50 ms meanwhile.
* ``slow``: M connections (default 2,000) send a request line, then one header byte per connection per
  second. Per connection: seconds until the server closed it (or still open at the end of the window);
  server open files; ``/readyz`` latency meanwhile.

Run: ``python -m benchmarks.head_limits [--clients 20 --mb 200 --connections 2000 --head-timeout 5]
[--baseline]``; ``--baseline`` adds plain uvicorn (httptools, h11) with the big-header size capped at
``--baseline-mb`` (unbounded buffering would exhaust memory). Needs ``ulimit -n`` above 2 × connections.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RAW = ROOT / "benchmarks" / "results" / "raw"
MB = 1 << 20
CHUNK = b"a" * 65536


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One server process (no workers), RSS and open files from /proc (Linux; no psutil needed)."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str]) -> None:
        self.name, self.cmd, self.port, self.env = name, cmd, port, {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 300.0) -> None:
        RAW.mkdir(parents=True, exist_ok=True)
        log = open(RAW / f"head-limits-{self.name}.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def rss_bytes(self) -> int:
        """Current resident set size (VmRSS), bytes."""
        return self._status("VmRSS")

    def reset_peak_rss(self) -> None:
        """Reset the peak RSS (VmHWM) to the current RSS (``/proc/<pid>/clear_refs``, Linux ≥ 4.0)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_rss_bytes(self) -> int:
        """Peak resident set size since :meth:`reset_peak_rss` (VmHWM, exact: kept by the kernel), bytes."""
        return self._status("VmHWM")

    def num_fds(self) -> int:
        """Open file descriptors (sockets included)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def make_server(kind: str, port: int, head_timeout_s: float, model_dir: Path) -> ServerProcess:
    """``service`` = msa serve (guarded); ``httptools`` / ``h11`` = plain uvicorn on the same app."""
    env = {
        "SENTIMENT_MODEL_DIR": str(model_dir),
        "SENTIMENT_PROVIDERS": "CPUExecutionProvider",
        "SENTIMENT_WARMUP": "false",
        "SENTIMENT_LOG_LEVEL": "error",
        "SENTIMENT_HOST": "127.0.0.1",
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_REQUEST_HEAD_TIMEOUT_S": str(head_timeout_s),
        "PYTHONPATH": str(ROOT),
    }
    if kind == "service":
        cmd = [sys.executable, "-m", "app.cli", "serve"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(port)]
        cmd += ["--log-level", "error", "--no-access-log", "--http", kind]
        if kind == "h11":
            cmd += ["--h11-max-incomplete-event-size", str(64 * 1024)]
    return ServerProcess(kind, cmd, port, env)


@dataclass
class Probe:
    """``GET /readyz`` every ``interval_s`` in a thread; latencies in ms, failures counted."""

    url: str
    interval_s: float = 0.05
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextlib.contextmanager
    def running(self) -> Iterator[Probe]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def _loop(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get(self.url + "/readyz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    self.failures += 1
                time.sleep(self.interval_s)

    def summary(self) -> dict[str, float | int]:
        lat = sorted(self.latencies_ms) or [float("nan")]
        return {
            "probes": len(self.latencies_ms),
            "failures": self.failures,
            "p50_ms": round(lat[len(lat) // 2], 1),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
            "max_ms": round(lat[-1], 1),
        }


def _outcome(sock: socket.socket) -> str:
    try:
        data = sock.recv(65536)
    except OSError:
        return "reset"
    if not data:
        return "closed"
    return data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/") else "garbage"


def big_heads(server: ServerProcess, clients: int, total_bytes: int) -> dict[str, object]:
    """``clients`` sockets each send one header line of ``total_bytes``; stop each at the server's answer."""
    server.reset_peak_rss()
    rss_before = server.rss_bytes()
    sel = selectors.DefaultSelector()
    sent: dict[socket.socket, int] = {}
    outcome: dict[socket.socket, str] = {}
    sockets: dict[int, socket.socket] = {}
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nX-Big: ")
        sock.setblocking(False)
        sent[sock] = 0
        sockets[sock.fileno()] = sock
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    t0 = time.perf_counter()
    with Probe(f"http://127.0.0.1:{server.port}").running() as probe:
        time.sleep(0.5)  # probe latencies before the flood too
        while sel.get_map():
            for key, events in sel.select(timeout=1.0):
                sock = sockets[key.fd]
                if events & selectors.EVENT_READ:
                    outcome[sock] = _outcome(sock)
                elif sent[sock] >= total_bytes:
                    outcome[sock] = "sent_all"
                else:
                    try:
                        sent[sock] += sock.send(CHUNK)
                        continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        outcome[sock] = "reset"
                sel.unregister(sock)
                sock.close()
        elapsed = time.perf_counter() - t0
        time.sleep(max(0.0, 2.0 - elapsed))  # and for at least 2 s in all
    peak = server.peak_rss_bytes()
    return {
        "clients": clients,
        "line_mb": total_bytes / MB,
        "outcomes": dict(Counter(outcome.values())),
        "sent_mib_max": round(max(sent.values()) / MB, 3),
        "sent_mib_median": round(statistics.median(sent.values()) / MB, 3),
        "rss_before_mb": round(rss_before / MB, 1),
        "rss_growth_peak_mb": round((peak - rss_before) / MB, 1),
        "seconds": round(elapsed, 2),
        "readyz": probe.summary(),
    }


def slow_heads(server: ServerProcess, connections: int, window_s: float) -> dict[str, object]:
    """``connections`` sockets trickle header bytes (one per second each) for up to ``window_s`` seconds."""
    opened: dict[socket.socket, float] = {}
    closed_after: list[float] = []
    answers: Counter[str] = Counter()
    fds_before = server.num_fds()
    for i in range(connections):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
        sock.setblocking(False)
        opened[sock] = time.perf_counter()
        if i % 200 == 199:
            time.sleep(0.05)  # stay under the listen backlog
    sel = selectors.DefaultSelector()
    sockets = {sock.fileno(): sock for sock in opened}
    for sock in opened:
        sel.register(sock, selectors.EVENT_READ)
    fds_peak = server.num_fds()
    t_end = time.perf_counter() + window_s
    next_tick = time.perf_counter()
    with Probe(f"http://127.0.0.1:{server.port}").running() as probe:
        while sel.get_map() and time.perf_counter() < t_end:
            for key, _ in sel.select(timeout=0.1):
                sock = sockets[key.fd]
                answers[_outcome(sock)] += 1
                closed_after.append(time.perf_counter() - opened[sock])
                sel.unregister(sock)
                sock.close()
            if time.perf_counter() >= next_tick:  # one header byte per open connection per second
                next_tick += 1.0
                for fd in [k.fd for k in sel.get_map().values()]:
                    with contextlib.suppress(OSError):
                        sockets[fd].send(b"x")
                fds_peak = max(fds_peak, server.num_fds())
    still_open = len(sel.get_map())
    for fd in [k.fd for k in sel.get_map().values()]:
        sockets[fd].close()
    time.sleep(1.0)
    closed_after.sort()

    def q(p: float) -> float | None:
        return (
            round(closed_after[min(len(closed_after) - 1, int(p * len(closed_after)))], 2)
            if closed_after
            else None
        )

    return {
        "connections": connections,
        "window_s": window_s,
        "closed_by_server": len(closed_after),
        "still_open_at_end": still_open,
        "answers": dict(answers),
        "closed_after_s": {"min": q(0.0), "p50": q(0.5), "max": q(1.0)},
        "server_fds": {"before": fds_before, "peak": fds_peak, "after": server.num_fds()},
        "readyz": probe.summary(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios against the service (and with ``--baseline`` plain uvicorn) and print JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--mb", type=int, default=200, help="header line per client, MB")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--head-timeout", type=float, default=5.0, help="SENTIMENT_REQUEST_HEAD_TIMEOUT_S")
    parser.add_argument(
        "--window", type=float, default=0.0, help="slow scenario window, s (default 3 × timeout)"
    )
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--baseline-mb", type=int, default=16)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * args.connections + 100:
        parser.error(f"ulimit -n is {soft}; need more than {2 * args.connections + 100}")
    window = args.window or 3 * args.head_timeout
    results: dict[str, object] = {"ulimit_n": soft, "cpus": os.cpu_count()}
    kinds = ["service", *(["httptools", "h11"] if args.baseline else [])]
    for kind in kinds:
        server = make_server(kind, _free_port(), args.head_timeout, args.model_dir)
        server.start()
        try:
            mb = args.mb if kind == "service" else min(args.mb, args.baseline_mb)
            results[kind] = {
                "big": big_heads(server, args.clients, mb * MB),
                "slow": slow_heads(server, args.connections, window),
            }
        finally:
            server.stop()
        sys.stdout.write(json.dumps({kind: results[kind]}, indent=1) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
