"""Client load for the saturation test, run in its own process (``multiprocessing``, spawn).

The health probes are timed in the test process; with the 24 client threads in that process too, a probe
waits for the GIL behind them and its latency measures the test's client, not the server.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import httpx


def _client(i: int, url: str, face: bytes, stop: Event, saw_429: Event) -> tuple[list[int], list[str]]:
    statuses: list[int] = []
    retry_after: list[str] = []
    # Text keeps the batcher queue full; images keep the preprocessing threads busy (CPU, GIL).
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            if i % 3 == 0:
                r = http.post("/v1/predict", files={"image": ("f.jpg", face, "image/jpeg")})
            else:
                r = http.post("/v1/predict", json={"text": f"client {i} says this is a good day " * 20})
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry_after.append(r.headers.get("retry-after", ""))
                saw_429.set()
    return statuses, retry_after


def hammer(
    url: str, clients: int, face: bytes, stop: Event, saw_429: Event, results: Queue[tuple[object, ...]]
) -> None:
    """Post to ``url`` from ``clients`` threads until ``stop``; set ``saw_429`` at the first 429; put
    (statuses, Retry-After values, client errors as text) on ``results``."""
    statuses: list[int] = []
    retry_after: list[str] = []
    errors: list[str] = []
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(_client, i, url, face, stop, saw_429) for i in range(clients)]
        for f in futures:
            try:
                s, r = f.result()
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                errors.append(repr(exc))
            else:
                statuses += s
                retry_after += r
    results.put((statuses, retry_after, errors))
