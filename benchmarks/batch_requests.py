"""Server CPU time per item: 64 tweets in one ``POST /v1/predict/batch`` vs the same 64 as single requests.

One run, one server (``msa serve`` with the bundled model on the CPU), the two modes interleaved round by
round so drift on a shared machine hits both alike. The server's CPU time (user + system, all threads) is
read from ``/proc/<pid>/stat`` before and after each round; the client's own CPU is not counted. The 64
single requests are sent at once (64 connections), so the batcher can batch them too: the difference is
what one HTTP request, one JSON parse and one response per item cost.

    python -m benchmarks.batch_requests [--rounds 20] [--items 64]

Prints per-item server CPU (ms) and wall time per mode and the ratio single ÷ batch. Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")

_WORDS = (
    "I absolutely love this, best day ever!",
    "This is the worst service I have ever experienced.",
    "The meeting is at three o'clock in room twelve.",
    "Not bad at all, although the ending was a bit slow.",
    "I can't believe they cancelled the show, so disappointed.",
    "What a beautiful morning at the beach with friends #sunshine",
    "The package arrived yesterday.",
    "Honestly the food was cold and the staff rude.",
)


def tweets(n: int) -> list[str]:
    """``n`` distinct short texts (tweet-sized)."""
    return [f"{_WORDS[i % len(_WORDS)]} #{i}" for i in range(n)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc/<pid>/stat`` fields
    14 and 15 (proc(5)), in clock ticks of ``SC_CLK_TCK``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_PROVIDERS": "CPUExecutionProvider",
        "SENTIMENT_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError("server not ready after 300 s")


async def _post(client: httpx.AsyncClient, path: str, body: object) -> httpx.Response:
    # uvicorn closes keep-alive connections idle for 5 s; one reused just as it closes is a ReadError
    # before the server read the request: send it again.
    for attempt in range(3):
        try:
            return await client.post(path, json=body)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def singles(client: httpx.AsyncClient, texts: list[str]) -> None:
    rs = await asyncio.gather(*(_post(client, "/v1/predict", {"text": t}) for t in texts))
    assert all(r.status_code == 200 for r in rs), [r.status_code for r in rs]


async def batch(client: httpx.AsyncClient, texts: list[str]) -> None:
    r = await _post(client, "/v1/predict/batch", {"items": [{"text": t} for t in texts]})
    assert r.status_code == 200 and all(x["status"] == 200 for x in r.json()["results"]), r.text[:200]


async def measure(port: int, pid: int, rounds: int, n: int) -> dict[str, list[tuple[float, float]]]:
    """Per mode, (server CPU s, wall s) of each round."""
    texts = tweets(n)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    out: dict[str, list[tuple[float, float]]] = {"single": [], "batch": []}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as client:
        for _ in range(3):  # warm-up: connections, shapes, the face/audio-free text path
            await singles(client, texts)
            await batch(client, texts)
        for i in range(rounds):
            order = ("single", "batch") if i % 2 == 0 else ("batch", "single")
            for mode in order:
                await asyncio.sleep(0.2)  # let the server go idle
                cpu0, t0 = cpu_seconds(pid), time.perf_counter()
                await (singles if mode == "single" else batch)(client, texts)
                out[mode].append((cpu_seconds(pid) - cpu0, time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds per mode (interleaved)")
    parser.add_argument("--items", type=int, default=64, help="tweets per round")
    args = parser.parse_args(argv)
    port = _free_port()
    log = Path(tempfile.gettempdir()) / f"batch_requests-server-{port}.log"
    proc = start_server(port, log)
    print(f"server log: {log}", file=sys.stderr)
    try:
        results = asyncio.run(measure(port, proc.pid, args.rounds, args.items))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    n = args.items
    print(f"{args.rounds} rounds × {n} tweets per mode, interleaved; server CPU from /proc/<pid>/stat")
    print(f"{'mode':<28} {'CPU ms/item (total)':>20} {'median round':>13} {'wall ms/round':>14}")
    per_item = {}
    for mode, label in (("single", f"{n} single requests"), ("batch", f"1 batch request of {n}")):
        cpu = [c for c, _ in results[mode]]
        wall = [w for _, w in results[mode]]
        per_item[mode] = sum(cpu) / (len(cpu) * n) * 1000
        median = statistics.median(cpu) / n * 1000
        print(f"{label:<28} {per_item[mode]:>20.3f} {median:>13.3f} {statistics.median(wall) * 1000:>14.1f}")
    print(f"ratio CPU per item, single ÷ batch: {per_item['single'] / per_item['batch']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
