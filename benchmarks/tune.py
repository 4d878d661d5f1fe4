"""Sweep the service's CPU tuning settings (SENTIMENT_* env) on one mix at one concurrency.

``PYTHONPATH=...`` in a configuration is passed as is (e.g. a folder with a ``sitecustomize.py`` that patches
ONNX Runtime session options for an experiment).

``python -m benchmarks.tune [--mix realistic] [--concurrency 64] [--duration 8] [--configs NAME=K=V;K=V ...]``
(mixes: :data:`benchmarks.__main__.MIX_NAMES`). Each
configuration starts ``msa serve`` with those environment variables, warms it up, and measures a closed
loop; the table shows which settings to make the CPU defaults. Not part of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from benchmarks import loadgen
from benchmarks.__main__ import MIX_NAMES, ROOT, load_mixes, measure_point, service_server

DEFAULT_CONFIGS = [
    "defaults=",
    "b16-w2-intra1=MAX_BATCH_SIZE=16;BATCH_WORKERS=2;INTRA_OP_THREADS=1",
    "b4-w2-intra1=MAX_BATCH_SIZE=4;BATCH_WORKERS=2;INTRA_OP_THREADS=1",
    "b8-w1-intra2=MAX_BATCH_SIZE=8;BATCH_WORKERS=1;INTRA_OP_THREADS=2",
    "b16-wait20=MAX_WAIT_MS=20",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", type=Path, default=ROOT / "models" / "fused-sentiment")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--mix", default="realistic", choices=MIX_NAMES)
    p.add_argument("--configs", nargs="*", default=DEFAULT_CONFIGS)
    p.add_argument("--realistic-items", type=int, default=12, help="distinct files per realistic kind")
    args = p.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds through the `finally` that stops the server under test, which
    # runs in its own session and would otherwise outlive this script, holding its port and GPU memory.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    samples = load_mixes([args.mix], args.data_dir, args.realistic_items)
    print(
        "| config | env | req/s | p50 ms | p99 ms | errors | server CPU % | server CPU ms / request | "
        "mean batch | cold start s | GPU util % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for i, spec in enumerate(args.configs):
        name, _, env_s = spec.partition("=")
        env = {
            (k if k == "PYTHONPATH" else f"SENTIMENT_{k}"): v
            for k, _, v in (kv.partition("=") for kv in env_s.split(";") if kv)
        }
        server = service_server(args.model_dir.resolve(), 8200 + i, env)
        raw = [
            loadgen.build_request("127.0.0.1", server.port, "/v1/predict", s.json_body())
            for s in samples[args.mix]
        ]
        try:
            cold = server.start()
            asyncio.run(loadgen.closed_loop("127.0.0.1", server.port, raw, 16, 3.0, 0.0))
            r = measure_point(server, raw, args.concurrency, args.duration, 2.0)
        except Exception as exc:  # noqa: BLE001 - one configuration failing must not lose the others
            print(f"| {name} | `{env_s or '-'}` | failed: {type(exc).__name__}: {exc} |", flush=True)
            continue
        finally:
            server.stop()  # also on SIGTERM (a `timeout` around this script): see main()
        print(
            f"| {name} | `{env_s or '-'}` | {r['throughput']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{int(r['errors'])} | {r['server_cpu_pct']:.0f} | {r['server_cpu_ms_per_request']:.1f} | "
            f"{r.get('mean_batch_size', float('nan')):.1f} | {cold:.1f} | "
            f"{r.get('gpu_util_pct', float('nan')):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
