"""Loopback HTTP/1.1 load generator (asyncio streams, keep-alive, pre-serialised requests).

Why not httpx: on a 2-core machine the client shares the CPU with the server under test, and an httpx
``AsyncClient`` spends roughly 0.3–0.5 ms of CPU per request building and parsing messages. This client
writes pre-built request bytes and parses only the status line and ``Content-Length`` /
``Transfer-Encoding: chunked``, so it takes far less CPU away from the server; its own CPU use is reported
next to every point. httpx is still used for readiness probes and one-off checks.

* :func:`closed_loop`: N workers, each sends its next request as soon as the previous answer arrives.
* :func:`open_loop`: Poisson arrivals at a fixed rate (latency measured from the scheduled send time, so
  queueing in the client is not hidden — no coordinated omission).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import numpy as np

#: Response headers the service sets per request (means are reported when present).
TIMING_HEADERS = ("x-batch-size", "x-preprocess-time-ms", "x-queue-time-ms", "x-inference-time-ms")


def build_request(
    host: str, port: int, path: str, body: bytes, content_type: str = "application/json"
) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nAccept: application/json\r\n\r\n"
    )
    return head.encode("ascii") + body


@dataclass
class Stats:
    """Latencies (s) of the requests completed inside the measurement window, and the failures."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    exceptions: int = 0
    window_s: float = 0.0
    #: Every answer received during the whole run (warm-up and the tail after the window included): the
    #: divisor for the server's CPU time per request over the same run.
    completed: int = 0
    #: Sums of the service's timing headers (x-batch-size, x-queue-time-ms, ...) over counted 200 answers.
    header_sums: dict[str, float] = field(default_factory=dict)

    def add_headers(self, headers: dict[str, str]) -> None:
        for key in TIMING_HEADERS:
            if key in headers:
                try:
                    self.header_sums[key] = self.header_sums.get(key, 0.0) + float(headers[key])
                except ValueError:
                    pass

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        return self.exceptions + sum(v for k, v in self.statuses.items() if k != 200)

    def summary(self) -> dict[str, float]:
        lat = np.asarray(self.latencies) * 1e3 if self.latencies else np.asarray([np.nan])
        return {
            "throughput": self.ok / self.window_s if self.window_s else float("nan"),
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
            "requests": float(self.ok + self.errors),
            "errors": float(self.errors),
            **{f"mean_{k[2:].replace('-', '_')}": v / max(1, self.ok) for k, v in self.header_sums.items()},
        }


#: uvicorn closes a keep-alive connection idle for 5 s (``timeout_keep_alive``); a request written on it
#: just then fails on the client side, which counted as an error in early open-loop runs (a harness
#: artefact, not a server fault). Connections idle longer than this are reopened first (as in soak.py).
MAX_IDLE_S = 4.0


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.headers: dict[str, str] = {}
        self.idle_since = time.monotonic()

    async def request(self, raw: bytes) -> int:
        if self.writer is not None and time.monotonic() - self.idle_since > MAX_IDLE_S:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        assert self.reader is not None
        try:
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip().lower()
            if "content-length" in headers:
                await self.reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await self.reader.readexactly(size + 2)
                    if size == 0:
                        break
            if headers.get("connection") == "close":
                self.close()
            self.headers = headers
            self.idle_since = time.monotonic()
            return status
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(
    host: str,
    port: int,
    requests: list[bytes],
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    seed: int = 0,
) -> Stats:
    """Run ``concurrency`` closed-loop workers for ``warmup_s + duration_s``; count only the last
    ``duration_s`` (requests that complete inside the window)."""
    stats = Stats()
    t0 = time.perf_counter()
    start, end = t0 + warmup_s, t0 + warmup_s + duration_s

    async def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        conn = _Conn(host, port)
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            raw = requests[rng.randrange(len(requests))]
            try:
                status = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                done = time.perf_counter()
                if start <= done <= end:
                    stats.exceptions += 1
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            stats.completed += 1
            if start <= done <= end:
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
                if status == 200:
                    stats.latencies.append(done - now)
                    stats.add_headers(conn.headers)
        conn.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    stats.window_s = duration_s
    return stats


async def open_loop(
    host: str,
    port: int,
    requests: list[bytes],
    rate: float,
    duration_s: float,
    warmup_s: float,
    seed: int = 0,
    max_conns: int = 512,
) -> Stats:
    """Poisson arrivals at ``rate`` requests/s; each request takes an idle keep-alive connection (or opens
    one, up to ``max_conns``). Latency counts from the scheduled arrival time."""
    rng = random.Random(seed)
    stats = Stats()
    idle: list[_Conn] = []
    open_conns = 0
    sem = asyncio.Semaphore(max_conns)
    t0 = time.perf_counter()
    start, end = t0 + warmup_s, t0 + warmup_s + duration_s
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float, raw: bytes) -> None:
        nonlocal open_conns
        async with sem:
            conn = idle.pop() if idle else _Conn(host, port)
            try:
                status = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                status = -1
            done = time.perf_counter()
            idle.append(conn)
        if status >= 0:
            stats.completed += 1
        if start <= scheduled < end:
            if status < 0:
                stats.exceptions += 1
            else:
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
                if status == 200:
                    stats.latencies.append(done - scheduled)

    next_t = t0
    while next_t < end:
        delay = next_t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(next_t, requests[rng.randrange(len(requests))]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_t += rng.expovariate(rate)
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    for c in idle:
        c.close()
    stats.window_s = duration_s
    return stats


async def fixed_count(host: str, port: int, requests: list[bytes], concurrency: int, progress=None) -> Stats:  # noqa: ANN001
    """Send every request in ``requests`` exactly once with ``concurrency`` closed-loop workers."""
    stats = Stats()
    queue = list(reversed(requests))
    t0 = time.perf_counter()

    async def worker() -> None:
        conn = _Conn(host, port)
        while queue:
            raw = queue.pop()
            t = time.perf_counter()
            try:
                status = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                stats.exceptions += 1
                continue
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if status == 200:
                stats.latencies.append(time.perf_counter() - t)
            if progress is not None:
                progress(1)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats.window_s = time.perf_counter() - t0
    return stats
