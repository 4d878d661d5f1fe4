"""Memory and start-up of the service: cold start to ready; RSS after warm-up vs after N random-shape
requests (text 1–400 words, images 32–4000 px, audio 0.5 s to the service's maximum), or N requests of the
realistic upload mix (``--corpus realistic``).

Run alone: ``python -m benchmarks.memory [--requests 10000] [--corpus realistic --out PATH]``
(``python -m benchmarks`` runs it too).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tqdm import tqdm

from benchmarks import loadgen
from benchmarks.corpus import random_shapes
from benchmarks.server import ServerProcess

#: Distinct requests of the realistic corpus, sent in turn.
REALISTIC_POOL = 96


def run(
    server: ServerProcess,
    cache: Path,
    *,
    requests: int,
    warmup_requests: int = 500,
    concurrency: int = 8,
    max_audio_s: float = 30.0,
    path: str = "/v1/predict",
    corpus: str = "random",
) -> dict[str, object]:
    """Start ``server`` (not running yet), warm it up, send ``requests`` requests: random shapes
    (``corpus="random"``) or the ``realistic`` mix of :mod:`benchmarks.realistic` (multipart uploads: phone
    photos of 12 and 48 MP, screenshots, voice notes, tweets; a pool of :data:`REALISTIC_POOL` distinct
    requests sent in turn, so the client does not hold 10,000 photos in memory)."""
    if corpus == "realistic":
        from benchmarks import realistic

        pool = [
            loadgen.build_request("127.0.0.1", server.port, path, *realistic.multipart_body(s))
            for s in realistic.mix_samples("realistic", REALISTIC_POOL)
        ]
        raw = [pool[i % len(pool)] for i in range(warmup_requests + requests)]
    else:
        samples = random_shapes(cache, warmup_requests + requests, max_audio_s)
        raw = [loadgen.build_request("127.0.0.1", server.port, path, s.json_body()) for s in samples]
    cold = server.start()
    rss_ready = server.rss_bytes()
    try:
        with tqdm(total=warmup_requests + requests, desc=f"memory: {corpus}", unit="req") as bar:
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
    import datetime as dt
    import hashlib
    import json
    import os
    import sys

    from benchmarks.__main__ import RAW, RESULTS, service_server, service_settings
    from benchmarks.pipeline import find_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models/fused-sentiment"))
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=8110)
    parser.add_argument(
        "--corpus",
        choices=("random", "realistic"),
        default="random",
        help="random shapes (default) or the realistic upload mix of benchmarks.realistic",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "memory.json",
        help="JSON result; `python -m benchmarks` "
        "includes it in RESULTS.md when that run skips the memory benchmark",
    )
    args = parser.parse_args()
    model_dir = args.model_dir.resolve()
    result = run(
        service_server(model_dir, args.port),
        RAW / "corpus",
        requests=args.requests,
        concurrency=args.concurrency,
        max_audio_s=float(service_settings()["max_audio_seconds"]),
        corpus=args.corpus,
    )
    model, _ = find_model(model_dir)
    result["meta"] = {
        "command": "python -m benchmarks.memory " + " ".join(sys.argv[1:]),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": str(model),
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()[:16],
        "env": {k: v for k, v in os.environ.items() if k.startswith(("SENTIMENT_", "MALLOC_"))},
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
