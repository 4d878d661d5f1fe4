"""Memory and start-up of the service: cold start to ready; RSS after warm-up vs after N random-shape
requests (text 1–400 words, images 32–4000 px, audio 0.5 s to the service's maximum).

Run alone: ``python -m benchmarks.memory [--requests 10000]`` (``python -m benchmarks`` runs it too).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tqdm import tqdm

from benchmarks import loadgen
from benchmarks.corpus import random_shapes
from benchmarks.server import ServerProcess


def run(
    server: ServerProcess,
    cache: Path,
    *,
    requests: int,
    warmup_requests: int = 500,
    concurrency: int = 8,
    max_audio_s: float = 30.0,
    path: str = "/v1/predict",
) -> dict[str, object]:
    """Start ``server`` (not running yet), warm it up, send ``requests`` random-shape requests."""
    samples = random_shapes(cache, warmup_requests + requests, max_audio_s)
    raw = [loadgen.build_request("127.0.0.1", server.port, path, s.json_body()) for s in samples]
    cold = server.start()
    rss_ready = server.rss_bytes()
    try:
        with tqdm(total=warmup_requests + requests, desc="memory: random shapes", unit="req") as bar:
            warm = asyncio.run(
                loadgen.fixed_count("127.0.0.1", server.port, raw[:warmup_requests], concurrency, bar.update)
            )
            time.sleep(1.0)
            rss_warm = server.rss_bytes()
            checkpoints: list[tuple[int, int]] = [(0, rss_warm)]
            step = max(1, requests // 10)
            stats = loadgen.Stats()
            for i in range(0, requests, step):
                s = asyncio.run(
                    loadgen.fixed_count(
                        "127.0.0.1",
                        server.port,
                        raw[warmup_requests + i : warmup_requests + i + step],
                        concurrency,
                        bar.update,
                    )
                )
                stats.latencies += s.latencies
                stats.exceptions += s.exceptions
                for k, v in s.statuses.items():
                    stats.statuses[k] = stats.statuses.get(k, 0) + v
                checkpoints.append((i + step, server.rss_bytes()))
        time.sleep(1.0)
        rss_end = server.rss_bytes()
    finally:
        server.stop()
    return {
        "cold_start_s": cold,
        "rss_ready_mb": rss_ready / 2**20,
        "rss_warm_mb": rss_warm / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "growth_pct": 100.0 * (rss_end - rss_warm) / rss_warm,
        "requests": requests,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "warmup_statuses": {str(k): v for k, v in sorted(warm.statuses.items())},
        "exceptions": stats.exceptions,
        "checkpoints_mb": [(n, r / 2**20) for n, r in checkpoints],
    }


if __name__ == "__main__":
    import argparse
    import json

    from benchmarks.__main__ import RAW, service_server

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models/fused-sentiment"))
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=8110)
    args = parser.parse_args()
    print(
        json.dumps(
            run(service_server(args.model_dir, args.port), RAW / "corpus", requests=args.requests), indent=2
        )
    )
