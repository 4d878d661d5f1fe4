"""In-process ceiling: preprocess + ``session.run`` in a loop, no HTTP, no queue.

Two structures (Pillow, soundfile, PyAV and ORT release the GIL, so threads overlap):

* ``BxW`` (:class:`Batched`): a preprocessing thread pool stays ahead of ``W`` threads running batches of
  ``B`` items;
* ``iN`` (:class:`Inline`): ``N`` threads that each prepare one item and run it alone, the structure of a
  naive per-request server.

Each configuration is measured with ORT's intra-op threads at each value asked for; the best one per mix
is the ceiling, so the ceiling depends neither on the service's own batch and thread settings nor on one
structure (on a small CPU, padding a batch of tweets to its longest one can cost more than it saves, and a
naive server that runs every request start to end in its own thread beat a batched-only ceiling).

Engine: the service's own ``Predictor.prepare`` / ``Predictor.run_batch`` (:class:`AppEngine`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.corpus import Sample


class AppEngine:
    """The service's own :class:`app.inference.predictor.Predictor` driven directly: ``prepare`` (decode +
    preprocess, as in its preprocessing pool) and ``run_batch`` (collate with its length buckets + ORT), with
    the session options from ``app.config.Settings`` — i.e. the service minus HTTP, queue and event loop."""

    def __init__(self, model_dir: Any, gpu: bool, intra_op_threads: int | None = None) -> None:
        from app.config import Settings
        from app.inference.predictor import Predictor
        from app.preprocessing.pipeline import RawInput

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        threads = {} if intra_op_threads is None else {"intra_op_threads": intra_op_threads}
        self.settings = Settings(
            model_dir=model_dir.parent, model_name=model_dir.name, providers=providers, **threads
        )
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

    def __init__(self, model_dir: Any, gpu: bool, intra_op_threads: int | None = None) -> None:  # noqa: ARG002 - Pipeline reads BENCH_GPU
        from benchmarks.pipeline import Pipeline

        self.pipeline = Pipeline(model_dir, intra_op_threads=intra_op_threads or 0)
        self.provider = self.pipeline.provider

    def prep(self, s: Sample) -> Any:
        return self.pipeline.preprocess(s.text, s.image, s.audio)

    def run(self, batch: Sequence[Any]) -> Any:
        return self.pipeline.run(list(batch))


def engine(model_dir: Any, gpu: bool, intra_op_threads: int | None = None) -> AppEngine | PipelineEngine:
    """The service's predictor (:class:`AppEngine`), with ORT's intra-op threads set when given (None: the
    service's default)."""
    try:
        import app.inference.predictor  # noqa: F401
    except ImportError:
        return PipelineEngine(model_dir, gpu, intra_op_threads)
    return AppEngine(model_dir, gpu, intra_op_threads)


@dataclass(frozen=True)
class Batched:
    """Batches of ``batch_size`` items run by ``run_workers`` threads, a preprocessing pool ahead."""

    batch_size: int
    run_workers: int


@dataclass(frozen=True)
class Inline:
    """``threads`` threads, each preparing one item and running it alone."""

    threads: int


Config = Batched | Inline


def parse_config(text: str) -> Config:
    """``"16x1"`` → ``Batched(16, 1)``; ``"i4"`` → ``Inline(4)``.

    Raises:
        ValueError: anything else, or a number below 1.
    """
    text = text.strip()
    try:
        if text.startswith("i"):
            numbers = [int(text[1:])]
            config: Config = Inline(numbers[0])
        else:
            batch, workers = text.split("x")
            numbers = [int(batch), int(workers)]
            config = Batched(numbers[0], numbers[1])
    except ValueError as exc:
        raise ValueError(f"ceiling configuration {text!r}: expected BATCHxWORKERS or iTHREADS") from exc
    if min(numbers) < 1:
        raise ValueError(f"ceiling configuration {text!r}: expected BATCHxWORKERS or iTHREADS, each ≥ 1")
    return config


def config_name(config: Config) -> str:
    """Short name: ``b16w1`` or ``i4``."""
    if isinstance(config, Inline):
        return f"i{config.threads}"
    return f"b{config.batch_size}w{config.run_workers}"


def _batches(samples: list[Sample], batch_size: int, seed: int):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    while True:
        yield [samples[i] for i in rng.integers(0, len(samples), batch_size)]


def run(
    prep: Callable[[Sample], Any],
    run_batch: Callable[[Sequence[Any]], Any],
    samples: list[Sample],
    *,
    config: Config,
    duration_s: float,
    warmup_s: float,
    prep_threads: int = 2,
) -> dict[str, Any]:
    """Items per second over ``duration_s`` after ``warmup_s`` with one configuration (:func:`run_batched`
    or :func:`run_inline`)."""
    if isinstance(config, Inline):
        out = run_inline(
            prep, run_batch, samples, threads=config.threads, duration_s=duration_s, warmup_s=warmup_s
        )
    else:
        out = run_batched(
            prep,
            run_batch,
            samples,
            batch_size=config.batch_size,
            duration_s=duration_s,
            warmup_s=warmup_s,
            prep_threads=prep_threads,
            run_workers=config.run_workers,
        )
    return {**out, "config": config_name(config)}


def run_batched(
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
    t_stop = t_end
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
                    t_stop = now  # the pools' shutdown below (work not counted) is not in the window
                    break
            feats = [pending.popleft().result() for _ in range(batch_size)]
            pending.extend(prep_pool.submit(prep, s) for s in next(batches))
            running.append(run_pool.submit(run_batch, feats))
        for f in pending:
            f.cancel()
        for f in running:
            f.result()
    if measured_t0 is None or t_stop <= measured_t0:
        raise RuntimeError(
            f"no batch of {batch_size} finished inside the {duration_s:g}-s window; lengthen it"
        )
    elapsed = t_stop - measured_t0
    return {
        "throughput": done / elapsed,
        "batch_size": float(batch_size),
        "prep_threads": float(prep_threads),
        "run_workers": float(run_workers),
    }


def run_inline(
    prep: Callable[[Sample], Any],
    run_batch: Callable[[Sequence[Any]], Any],
    samples: list[Sample],
    *,
    threads: int,
    duration_s: float,
    warmup_s: float,
) -> dict[str, float]:
    """Items per second over ``duration_s`` after ``warmup_s``: ``threads`` threads, each drawing a sample,
    preparing it and running it as a batch of one, until the window ends (items finished inside it)."""
    t_start = time.perf_counter() + warmup_s
    t_end = t_start + duration_s
    counts = [0] * threads
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        rng = np.random.default_rng(1000 + i)
        try:
            while time.perf_counter() < t_end:
                run_batch([prep(samples[int(rng.integers(len(samples)))])])
                done = time.perf_counter()
                if t_start <= done <= t_end:
                    counts[i] += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failures.append(exc)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise failures[0]
    return {"throughput": sum(counts) / duration_s, "threads": float(threads)}


def cost_profile(model_dir: Any, samples: dict[str, list[Sample]], n: int = 48) -> dict[str, dict[str, Any]]:
    """CPU milliseconds per item, single-threaded (ORT intra-op threads = 1): ``prepare`` (decode +
    preprocess) and ``run_batch`` at batch sizes 1, 4 and 16, and each of the first ``n`` items' own cost
    (``item_ms``: prepare + run alone; the shape of the mix's service-time distribution, used for the
    M/G/c floor). CPU time (this thread's clock), not wall time, so it shows the work itself and what
    batching saves per item on this CPU, independent of other load on the machine."""
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
    out: dict[str, dict[str, Any]] = {}
    for mix, items in samples.items():
        raws = [RawInput(s.text, s.image, s.audio) for s in items[:n]]
        prepared = [predictor.prepare(r) for r in raws]
        item_ms = []
        for r in raws:
            t = time.thread_time()
            predictor.run_batch([predictor.prepare(r)])
            item_ms.append((time.thread_time() - t) * 1e3)
        t = time.process_time()
        for r in raws:
            predictor.prepare(r)
        row: dict[str, Any] = {"prepare_ms": (time.process_time() - t) / len(raws) * 1e3}
        for bs in (1, 4, 16):
            t = time.process_time()
            for i in range(0, len(prepared), bs):
                predictor.run_batch(prepared[i : i + bs])
            row[f"run_b{bs}_ms"] = (time.process_time() - t) / len(prepared) * 1e3
        row["item_ms"] = item_ms
        out[mix] = row
    return out
