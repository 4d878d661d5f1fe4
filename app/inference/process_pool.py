"""Preprocessing in worker processes (``SENTIMENT_PREPROCESS_PROCESSES`` > 0): image and audio fields are
decoded and prepared outside the server process, so that work does not contend for the server's GIL.

Each worker process (started with the ``spawn`` method: the server's threads and ONNX Runtime sessions are
not forked) builds its own :class:`~app.preprocessing.pipeline.PreprocessingPipeline` once, from the same
model contract, tokenizer, limits and execution providers as the server's (its own face detector and voice
activity detector sessions, one intra-op thread each). A task sends the field's bytes to a worker and gets
back :meth:`~app.preprocessing.pipeline.PreprocessingPipeline.prepare_field`'s result (the facts and the
experts' tensors: ~170 KB for an image, ~4 KB per second of audio), or the typed
:class:`~app.preprocessing.errors.PreprocessingError` it raised, pickled. Text fields stay in the server's
thread pool (tokenising a tweet costs less than the round trip).

Each worker is its own single-process ``concurrent.futures.ProcessPoolExecutor`` (own task queue), and a
task goes to the worker with the fewest tasks in flight among those that have finished starting, so one
worker's trouble stays its own:

* A worker that dies (killed by the kernel's OOM killer, or a crash in a native decoder) fails the tasks it
  held with ``BrokenProcessPool``; it is replaced by a fresh process and each of those tasks is run once
  more, on the least busy worker; a task whose retry dies too is answered with
  :class:`PreprocessWorkerError` (HTTP 500 ``internal_error``). Tasks on the other workers are not touched.
* A worker that runs one field for longer than the deadline (``request_timeout_s``; the clock starts when
  the task reaches the head of the worker's line, so waiting does not count) (a hung decoder, a stopped
  process) is killed and replaced, and that request is answered 504 ``timeout``
  (:class:`PreprocessDeadlineError`); no legitimate field comes near it (the limits bound the work).
* Workers are killed when the service stops (also when one is hung or stopped), and each worker ends when
  the server process is gone (killed with SIGKILL, or a uvicorn worker process that ended without its
  shutdown): :func:`exit_with_parent`, so none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from app.config import Settings
from app.contract import ModelContract
from app.errors import ErrorType, ServiceError
from app.preprocessing.experts import Expert, ExpertInput
from app.preprocessing.pipeline import PreprocessingPipeline

logger = logging.getLogger("app.inference.process_pool")

#: Request fields prepared in worker processes; the others (text) stay in the server's thread pool.
PROCESS_FIELDS: frozenset[str] = frozenset({"image", "audio"})


#: Seconds between a worker's checks that the server process that started it is still its parent.
ORPHAN_CHECK_S: Final[float] = 1.0
#: Longest a request waits for a new worker to finish starting (building its pipeline: about 1.5 s on an
#: idle 2-core machine, several times that under load) before the worker is replaced; the field deadline
#: is used instead when it is longer.
START_TIMEOUT_S: Final[float] = 60.0
#: Tasks sent to one worker at once: the one it runs and the next (so it does not wait for the server's
#: event loop between two); more requests wait in the server.
TASKS_PER_WORKER: Final[int] = 2
#: ``prctl`` option: the signal a process gets when its parent thread exits (linux/prctl.h).
PR_SET_PDEATHSIG: Final[int] = 1


class PreprocessWorkerError(ServiceError):
    """A preprocessing worker process died while preparing this request, twice (HTTP 500)."""


class PreprocessDeadlineError(ServiceError):
    """A preprocessing worker took longer than the deadline on this request's field (HTTP 504)."""

    error_type = ErrorType.TIMEOUT


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs to build the server's preprocessing pipeline (pickled once per worker).

    Attributes:
        contract: the model's experts and inputs.
        tokenizer_file: the model's ``tokenizer.json``.
        providers: the fused model's active execution providers (the detectors use the same).
        settings: the service settings (limits, language gate, detector file, malloc tuning).
        experts: the preprocessing registry; its prepare functions must be importable module attributes.
        model_name: for error messages.
    """

    contract: ModelContract
    tokenizer_file: Path
    providers: tuple[str, ...]
    settings: Settings
    experts: Mapping[str, Expert]
    model_name: str = "model"


_pipeline: PreprocessingPipeline | None = None


def exit_with_parent(parent: int, interval_s: float = ORPHAN_CHECK_S) -> threading.Thread:
    """Make this process end when ``parent`` (the server process that started it) is gone: on Linux the
    kernel sends it SIGKILL when the thread that started it exits (``prctl(PR_SET_PDEATHSIG)``, which also
    ends a stopped process); and a daemon thread ends it (``os._exit(0)``) once its parent is no longer
    ``parent`` (re-parented), checking every ``interval_s`` seconds. A worker has nothing to save; without
    this, the workers of a server killed with SIGKILL would live on."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(0)

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread


def _init_worker(spec: WorkerSpec, parent: int) -> None:
    """Worker initializer: exit with the server, malloc tuning, one BLAS thread, then the pipeline (detector
    sessions loaded)."""
    global _pipeline
    exit_with_parent(parent)
    from app.inference.startup import limit_blas_threads, pipeline_for
    from app.malloc import tune_malloc

    if spec.settings.tune_malloc:
        tune_malloc()
    limit_blas_threads()
    _pipeline = pipeline_for(
        spec.contract, spec.tokenizer_file, spec.providers, spec.settings, spec.experts, spec.model_name
    )


def _prepare_field(modality: str, value: Any) -> tuple[Any, dict[str, ExpertInput]]:
    """Runs in a worker: :meth:`PreprocessingPipeline.prepare_field` on the worker's pipeline."""
    assert _pipeline is not None, "worker initializer did not run"
    return _pipeline.prepare_field(modality, value)


def _worker_pid() -> int:
    return os.getpid()


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[[Future[Any]], None], arg: Future[Any]
) -> None:
    """``loop.call_soon_threadsafe``, from the executor's thread; nothing once the loop is closed (the
    service stopped and nobody waits for the worker any more)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, arg)


class _Worker:
    """One worker process in its own single-process executor, started at once. At most
    :data:`TASKS_PER_WORKER` tasks are sent to it at once (one running, the next already in its pipe, so it
    never idles between two); further requests wait for ``slots`` in the server, where a request that is
    cancelled simply stops waiting. ``line``: the tasks sent, in the order the worker runs them; only the
    first one's deadline clock runs (``clock``), so a task's deadline counts its own run only. ``busy``:
    tasks waiting for or sent to this worker."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.executor = ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(spec, os.getpid()),
        )
        #: Resolves to the worker's pid once its initializer has run (pipeline built).
        self.started: Future[int] = self.executor.submit(_worker_pid)
        self.processes: list[BaseProcess] = list(getattr(self.executor, "_processes", {}).values())
        self.slots = asyncio.Semaphore(TASKS_PER_WORKER)
        self.line: deque[tuple[Future[Any], str]] = deque()
        self.clock: asyncio.TimerHandle | None = None
        self.busy = 0
        #: Set when the pool replaced this worker: requests still waiting for it go to another.
        self.replaced = False
        #: The task this worker was killed for (it ran past the deadline): answered 504, not retried.
        self.expired: Future[Any] | None = None

    def alive(self) -> bool:
        """Whether the process runs and the executor still takes tasks."""
        return not getattr(self.executor, "_broken", False) and all(p.is_alive() for p in self.processes)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def kill(self) -> None:
        """SIGKILL the process (works on a hung or stopped one too); the executor then fails the task it
        held with ``BrokenProcessPool``."""
        for p in self.processes:
            if p.is_alive():
                p.kill()
        for p in self.processes:
            p.join(timeout=2)  # reaped at once after SIGKILL; bounded all the same
        self.executor.shutdown(wait=False)


class FieldProcessPool:
    """``processes`` worker processes preparing request fields (see the module docstring).

    Args:
        spec: what each worker builds its pipeline from.
        processes: number of worker processes (≥ 1).
        deadline_s: longest a worker may run one field before it is killed and replaced (seconds; the
            time a request waits for a worker does not count).
    """

    def __init__(self, spec: WorkerSpec, processes: int, deadline_s: float = 30.0) -> None:
        if processes < 1:
            raise ValueError(f"processes must be ≥ 1, got {processes}")
        self.spec = spec
        self.processes = processes
        self.deadline_s = deadline_s
        self._lock = threading.Lock()
        self._closed = False
        self._workers = [_Worker(spec) for _ in range(processes)]
        #: Workers replaced since start (died, or killed after the deadline).
        self.restarts = 0

    def _replace(self, worker: _Worker, why: str) -> None:
        """Kill ``worker`` and start a fresh one in its place (once, however many tasks saw it fail)."""
        with self._lock:
            if self._closed or worker.replaced:
                return
            worker.replaced = True
            self.restarts += 1
            logger.error(
                "preprocessing worker %s %s; starting a new one (restart %d)",
                worker.pids(),
                why,
                self.restarts,
            )
            worker.kill()
            self._workers[self._workers.index(worker)] = _Worker(self.spec)

    def _pick(self) -> _Worker:
        """The least busy live worker, preferring those that have finished starting (a replacement builds
        its pipeline first); dead ones are replaced first."""
        for worker in list(self._workers):
            if not worker.alive():
                self._replace(worker, "exited")
        ready = [w for w in self._workers if w.started.done()]
        return min(ready or self._workers, key=lambda w: w.busy)

    def _start_clock(self, worker: _Worker) -> None:
        """Start the deadline clock of the task at the head of ``worker``'s line (the one it runs now)."""
        future, modality = worker.line[0]
        loop = asyncio.get_running_loop()
        worker.clock = loop.call_later(self.deadline_s, self._expire, worker, future, modality)

    def _finished(self, worker: _Worker, future: Future[Any]) -> None:
        """A task sent to ``worker`` ended (also when its request stopped waiting): free its slot, and start
        the next task's clock when it was the one running."""
        was_running = bool(worker.line) and worker.line[0][0] is future
        worker.line = deque(item for item in worker.line if item[0] is not future)
        if was_running:
            if worker.clock is not None:
                worker.clock.cancel()
                worker.clock = None
            if worker.line and not worker.replaced:
                self._start_clock(worker)
        worker.slots.release()
        worker.busy -= 1

    def _expire(self, worker: _Worker, future: Future[Any], modality: str) -> None:
        """Deadline timer of one task: kill its worker if the task is still running (whether or not its
        request still waits for it: a hung worker must not keep the tasks queued behind it)."""
        if not future.done() and not worker.replaced:
            worker.expired = future
            self._replace(worker, f"took longer than {self.deadline_s:g} s on one {modality} field")

    async def prepare_field(self, modality: str, value: Any) -> tuple[Any, dict[str, ExpertInput]]:
        """Prepare one request field in a worker process.

        Returns:
            As :meth:`PreprocessingPipeline.prepare_field`: (the field's facts, expert name → input).

        Raises:
            PreprocessingError: typed (413 / 415 / 422), as in the server process.
            PreprocessDeadlineError: the worker ran longer than ``deadline_s`` on it (it was replaced).
            PreprocessWorkerError: the worker died on this task and again on the retry (both replaced), or
                the service is shutting down.
        """
        loop = asyncio.get_running_loop()
        failures = 0
        while failures < 2 and not self._closed:
            worker = self._pick()
            worker.busy += 1
            try:
                await worker.slots.acquire()
            except BaseException:
                worker.busy -= 1
                raise
            if worker.replaced:  # replaced while this request waited: go to another, no attempt spent
                worker.slots.release()
                worker.busy -= 1
                continue
            try:
                # A replacement first builds its pipeline; that is not this field's run (shielded: a request
                # that stops waiting must not cancel the worker's start-up task).
                started = asyncio.shield(asyncio.wrap_future(worker.started))
                await asyncio.wait_for(started, max(self.deadline_s, START_TIMEOUT_S))
                future = worker.executor.submit(_prepare_field, modality, value)
            except BaseException as exc:
                worker.slots.release()
                worker.busy -= 1
                if isinstance(exc, TimeoutError):
                    self._replace(worker, f"did not start within {max(self.deadline_s, START_TIMEOUT_S):g} s")
                elif isinstance(exc, RuntimeError):  # BrokenProcessPool, or "... after shutdown"
                    self._replace(worker, "exited")
                else:  # the request was cancelled (client gone)
                    raise
                failures += 1
                continue
            worker.line.append((future, modality))
            if len(worker.line) == 1:
                self._start_clock(worker)
            done = partial(self._finished, worker)
            future.add_done_callback(partial(_call_soon, loop, done))
            try:
                return await asyncio.wrap_future(future)
            except BrokenProcessPool:
                if worker.expired is future:
                    raise PreprocessDeadlineError(
                        f"preprocessing the {modality} took longer than {self.deadline_s:g} s"
                    ) from None
                self._replace(worker, "exited")
                failures += 1
        raise PreprocessWorkerError("a preprocessing worker process exited while preparing this request")

    async def start(self) -> list[int]:
        """Wait until every worker has started and built its pipeline (a worker that dies while starting is
        replaced once); their process ids.

        Raises:
            BrokenProcessPool: a worker and its replacement both died while starting (e.g. the model's
                tokenizer or a detector cannot be loaded there).
        """
        for i in range(len(self._workers)):
            try:
                await asyncio.wrap_future(self._workers[i].started)
            except BrokenProcessPool:
                self._replace(self._workers[i], "exited while starting")
                await asyncio.wrap_future(self._workers[i].started)
        return self.pids()

    def pids(self) -> list[int]:
        """Process ids of the current workers (tests, metrics)."""
        return sorted(pid for w in self._workers for pid in w.pids())

    def shutdown(self) -> None:
        """Stop the workers (killed: they hold no state; a task still running fails with
        :class:`PreprocessWorkerError`)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.kill()
