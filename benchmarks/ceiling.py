"""In-process ceiling: preprocess + batched ``session.run`` in a loop, no HTTP, no queue.

A preprocessing thread pool stays ahead of one or more threads running batches (Pillow, OpenCV,
soundfile and ORT release the GIL, so they overlap). Several (batch size, run workers) configurations
are measured; the best one per mix is the ceiling, so the ceiling does not depend on the service's own
batch settings (on a small CPU, padding a batch of tweets to its longest one can cost more than it saves).

Engine: the service's own ``Predictor.prepare`` / ``Predictor.run_batch`` (:class:`AppEngine`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from benchmarks.corpus import Sample


class AppEngine:
    """The service's own :class:`app.inference.predictor.Predictor` driven directly: ``prepare`` (decode +
    preprocess, as in its preprocessing pool) and ``run_batch`` (collate with its length buckets + ORT), with
    the session options from ``app.config.Settings`` — i.e. the service minus HTTP, queue and event loop."""

    def __init__(self, model_dir: Any, gpu: bool) -> None:
        from app.config import Settings
        from app.inference.predictor import Predictor
        from app.preprocessing.pipeline import RawInput

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.settings = Settings(model_dir=model_dir.parent, model_name=model_dir.name, providers=providers)
        self.predictor = Predictor(self.settings)
        self.predictor.load()
        self.predictor.warmup()
        self._raw = RawInput
        assert self.predictor.model is not None
        self.provider = self.predictor.model.loaded.execution_provider

    def prep(self, s: Sample) -> Any:
        return self.predictor.prepare(self._raw(s.text, s.image, s.audio))

    def run(self, batch: Sequence[Any]) -> Any:
        out = self.predictor.run_batch(batch)
        bad = [r for r in out if isinstance(r, BaseException)]
        if bad:
            raise RuntimeError(f"{len(bad)} items failed in the ceiling: {bad[0]!r}")
        return out


class PipelineEngine:
    """Fallback before the app's predictor exists: :class:`benchmarks.pipeline.Pipeline`."""

    def __init__(self, model_dir: Any, gpu: bool) -> None:  # noqa: ARG002 - Pipeline reads BENCH_GPU
        from benchmarks.pipeline import Pipeline

        self.pipeline = Pipeline(model_dir)
        self.provider = self.pipeline.provider

    def prep(self, s: Sample) -> Any:
        return self.pipeline.preprocess(s.text, s.image, s.audio)

    def run(self, batch: Sequence[Any]) -> Any:
        return self.pipeline.run(list(batch))


def engine(model_dir: Any, gpu: bool) -> AppEngine | PipelineEngine:
    try:
        import app.inference.predictor  # noqa: F401
    except ImportError:
        return PipelineEngine(model_dir, gpu)
    return AppEngine(model_dir, gpu)


def _batches(samples: list[Sample], batch_size: int, seed: int):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    while True:
        yield [samples[i] for i in rng.integers(0, len(samples), batch_size)]


def run(
    prep: Callable[[Sample], Any],
    run_batch: Callable[[Sequence[Any]], Any],
    samples: list[Sample],
    *,
    batch_size: int,
    duration_s: float,
    warmup_s: float,
    prep_threads: int = 2,
    run_workers: int = 1,
) -> dict[str, float]:
    """Items per second over ``duration_s`` after ``warmup_s`` (whole batches only).

    ``prep_threads`` threads preprocess, ``run_workers`` threads call ``run_batch`` concurrently (ORT's
    ``run`` is thread-safe); preprocessing is kept ``run_workers + 1`` batches ahead so neither side idles.
    """
    batches = _batches(samples, batch_size, seed=0)
    done = 0
    t_start = time.perf_counter() + warmup_s
    t_end = t_start + duration_s
    measured_t0: float | None = None
    with ThreadPoolExecutor(prep_threads) as prep_pool, ThreadPoolExecutor(run_workers) as run_pool:
        pending: deque[Future[Any]] = deque()
        running: deque[Future[Any]] = deque()
        for _ in range(run_workers + 1):
            pending.extend(prep_pool.submit(prep, s) for s in next(batches))
        while True:
            if len(running) >= run_workers:
                running.popleft().result()
                now = time.perf_counter()
                if measured_t0 is None and now >= t_start:
                    measured_t0, done = now, 0
                else:
                    done += batch_size
                if now >= t_end:
                    break
            feats = [pending.popleft().result() for _ in range(batch_size)]
            pending.extend(prep_pool.submit(prep, s) for s in next(batches))
            running.append(run_pool.submit(run_batch, feats))
        for f in pending:
            f.cancel()
        for f in running:
            f.result()
    elapsed = time.perf_counter() - (measured_t0 or t_start)
    return {
        "throughput": done / elapsed,
        "batch_size": float(batch_size),
        "prep_threads": float(prep_threads),
        "run_workers": float(run_workers),
    }


def cost_profile(
    model_dir: Any, samples: dict[str, list[Sample]], n: int = 32
) -> dict[str, dict[str, float]]:
    """CPU milliseconds per item, single-threaded (ORT intra-op threads = 1): ``prepare`` (decode +
    preprocess) and ``run_batch`` at batch sizes 1, 4 and 16. CPU time, not wall time, so it shows the work
    itself and what batching saves per item on this CPU, independent of other load on the machine."""
    from app.config import Settings
    from app.inference.predictor import Predictor
    from app.preprocessing.pipeline import RawInput

    settings = Settings(
        model_dir=model_dir.parent,
        model_name=model_dir.name,
        providers=["CPUExecutionProvider"],
        intra_op_threads=1,
    )
    predictor = Predictor(settings)
    predictor.load()
    predictor.warmup()
    out: dict[str, dict[str, float]] = {}
    for mix, items in samples.items():
        raws = [RawInput(s.text, s.image, s.audio) for s in items[:n]]
        prepared = [predictor.prepare(r) for r in raws]
        t = time.process_time()
        for r in raws:
            predictor.prepare(r)
        row = {"prepare_ms": (time.process_time() - t) / len(raws) * 1e3}
        for bs in (1, 4, 16):
            t = time.process_time()
            for i in range(0, len(prepared), bs):
                predictor.run_batch(prepared[i : i + bs])
            row[f"run_b{bs}_ms"] = (time.process_time() - t) / len(prepared) * 1e3
        out[mix] = row
    return out
