"""Log-mel throughput in a preprocessing-style thread pool: numpy's default BLAS threads vs one.

``python -m benchmarks.blas_threads [--workers 4] [--clips 400]`` runs :func:`app.preprocessing.audio.log_mel`
on a 3-s clip in a pool of ``--workers`` threads twice, side by side in one process: first with the BLAS
library's default thread count, then limited to one thread (``threadpoolctl``), and prints clips/s and CPU
ms per clip for both. Why the service limits BLAS to one thread:
:func:`app.inference.readiness.limit_blas_threads`.

Measured on the 2-core development VM (2026-11-29, another job on the other core, 4 workers, 400 clips):
default (OpenBLAS, 2 threads) 211 clips/s, 6.34 ms CPU per clip; one BLAS thread 579 clips/s, 2.11 ms.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from app.preprocessing.audio import log_mel


def _run(wave: np.ndarray, clips: int, workers: int) -> tuple[float, float]:
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: log_mel(wave), range(clips)))
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return clips / wall, 1e3 * cpu / clips


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.blas_threads", description=__doc__)
    p.add_argument("--workers", type=int, default=4, help="preprocessing threads (the service's default: 4)")
    p.add_argument("--clips", type=int, default=400)
    args = p.parse_args(argv)
    wave = (0.1 * np.random.default_rng(0).standard_normal(3 * 16_000)).astype(np.float32)
    log_mel(wave)
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    rate, cpu = _run(wave, args.clips, args.workers)
    print(f"default BLAS threads {blas}: {rate:.0f} clips/s, {cpu:.2f} ms CPU per clip")
    with threadpool_limits(limits=1, user_api="blas"):
        rate, cpu = _run(wave, args.clips, args.workers)
    print(f"one BLAS thread: {rate:.0f} clips/s, {cpu:.2f} ms CPU per clip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
