"""In-process ceiling: preprocess + batched ``session.run`` in a loop, no HTTP, no queue.

Two schedules, the better one is the ceiling:

* ``sequential``: preprocess a batch in this thread, then run it (ORT uses all cores inside the run);
* ``pipelined``: a thread pool preprocesses the next batch while the current one runs (Pillow, OpenCV,
  soundfile and ORT release the GIL, so this overlaps on 2 cores).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.corpus import Sample
from benchmarks.pipeline import Features, Pipeline


def _batches(samples: list[Sample], batch_size: int, seed: int):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    while True:
        yield [samples[i] for i in rng.integers(0, len(samples), batch_size)]


def run(
    pipeline: Pipeline,
    samples: list[Sample],
    *,
    batch_size: int,
    duration_s: float,
    warmup_s: float,
    schedule: str,
    threads: int = 2,
) -> dict[str, float]:
    """Items per second over ``duration_s`` after ``warmup_s`` (whole batches only)."""
    batches = _batches(samples, batch_size, seed=0)

    def prep(s: Sample) -> Features:
        return pipeline.preprocess(s.text, s.image, s.audio)

    done = 0
    t_start = time.perf_counter() + warmup_s
    t_end = t_start + duration_s
    measured_t0 = None
    if schedule == "sequential":
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            if measured_t0 is None and now >= t_start:
                measured_t0, done = now, 0
            pipeline.run([prep(s) for s in next(batches)])
            done += batch_size
    else:
        with ThreadPoolExecutor(threads) as pool:
            pending = [pool.submit(prep, s) for s in next(batches)]
            while True:
                now = time.perf_counter()
                if now >= t_end:
                    break
                if measured_t0 is None and now >= t_start:
                    measured_t0, done = now, 0
                feats = [f.result() for f in pending]
                pending = [pool.submit(prep, s) for s in next(batches)]
                pipeline.run(feats)
                done += batch_size
            for f in pending:
                f.result()
    elapsed = time.perf_counter() - (measured_t0 or t_start)
    return {"throughput": done / elapsed, "batch_size": float(batch_size)}
