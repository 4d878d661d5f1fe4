"""Dynamic batcher: a bounded asyncio queue in front of a synchronous batch function.

Requests are queued with :meth:`DynamicBatcher.submit`; ``workers`` consumer tasks take the first queued
request, then keep collecting until ``max_batch_size`` requests are gathered or ``max_wait_ms`` has passed
since the first one, and run the batch function in a thread pool (never on the event loop). The same idea
as Triton's dynamic batcher (``max_queue_delay_microseconds``, ``preferred_batch_size``).

Guarantees (tested in ``tests/unit/inference/test_batcher.py``):

* a batch never holds more than ``max_batch_size`` requests;
* every request's future is resolved exactly once, with a result or an exception, also when the batch
  function raises or returns the wrong number of results, and on shutdown;
* the batch function returns one result *or exception* per item, so one bad request does not fail its
  batch-mates; if it raises as a whole for a batch of several, each item is retried alone so that only the
  culprit fails;
* a full queue raises :class:`QueueFullError` at once (the API answers 429 with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.errors import ErrorType, ServiceError

logger = logging.getLogger("app.inference.batcher")

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")


class QueueFullError(ServiceError):
    """The bounded queue is full (HTTP 429); ``retry_after_s`` is also sent as the Retry-After header."""

    error_type = ErrorType.OVERLOADED

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "the request queue is full; retry later", headers={"Retry-After": str(retry_after_s)}
        )
        self.retry_after_s = retry_after_s


class BatcherClosedError(ServiceError):
    """The batcher is stopped or stopping and takes no new requests (HTTP 503)."""

    error_type = ErrorType.NOT_READY


@dataclass(frozen=True, slots=True)
class BatchOutcome(Generic[R]):
    """One request's result plus where its time went.

    Attributes:
        value: the batch function's result for this request.
        queue_ms: from :meth:`DynamicBatcher.submit` until its batch started running, in ms.
        inference_ms: wall time of the batch function call that produced it, in ms.
        batch_size: number of requests in that call.
    """

    value: R
    queue_ms: float
    inference_ms: float
    batch_size: int


@dataclass(slots=True, eq=False)  # a request is an identity: never compared by value (items hold arrays)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[BatchOutcome[R]]
    enqueued: float


class DynamicBatcher(Generic[T, R]):
    """Bounded-queue dynamic batcher around a synchronous ``batch_fn``.

    ``batch_fn`` is called in ``executor`` (whose size bounds concurrent model runs) with 1 …
    ``max_batch_size`` items and returns one result or exception instance per item; after the first item
    of a batch it waits ``max_wait_ms`` ms for more; at most ``queue_size`` items wait (more →
    :class:`QueueFullError`); ``workers`` consumer tasks run concurrently.
    """

    def __init__(
        self,
        batch_fn: Callable[[Sequence[T]], Sequence[R | BaseException]],
        *,
        executor: Executor,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        workers: int = 1,
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or workers < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size, queue_size and workers must be ≥ 1 and max_wait_ms ≥ 0")
        self._batch_fn = batch_fn
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self._workers = workers
        self._queue: asyncio.Queue[_Pending[T, R]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = True
        # Per consumer, the batch it took off the queue and has not resolved yet (slot i: consumer i).
        self._batches: list[list[_Pending[T, R]]] = [[] for _ in range(workers)]
        self._ema_batch_s = 0.0

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        """True while started and every consumer task is alive."""
        return not self._closed and bool(self._tasks) and all(not t.done() for t in self._tasks)

    @property
    def in_flight(self) -> int:
        """Items taken off the queue and not yet resolved (being collected into a batch or running)."""
        return sum(len(b) for b in self._batches)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Create the queue and consumer tasks on the running loop."""
        if not self._closed:
            return
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._closed = False
        self._tasks = [
            asyncio.create_task(self._consume(i), name=f"batcher-{i}") for i in range(self._workers)
        ]

    async def stop(self, *, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Stop taking requests; with ``drain``, finish queued and running ones first (up to ``timeout_s``).

        Whatever is still queued afterwards is failed with :class:`BatcherClosedError`.
        """
        self._closed = True
        queue = self._queue
        if drain and queue is not None:
            deadline = time.monotonic() + timeout_s
            while (queue.qsize() or self.in_flight) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if queue is not None:
            while not queue.empty():
                pending = queue.get_nowait()
                self._resolve_error(pending, BatcherClosedError("service is shutting down"))

    # ------------------------------------------------------------------ producer side
    def retry_after_s(self) -> int:
        """Seconds a rejected client should wait: time to drain a full queue at the recent batch pace."""
        batches = self.queue_size / self.max_batch_size
        return max(1, min(60, round(batches * max(self._ema_batch_s, 0.001) / self._workers + 0.5)))

    async def submit(self, item: T) -> BatchOutcome[R]:
        """Queue ``item`` and wait for its result.

        Raises:
            QueueFullError: the queue is full (not queued).
            BatcherClosedError: the batcher is not running.
            BaseException: whatever ``batch_fn`` returned or raised for this item.
        """
        if self._closed or self._queue is None:
            raise BatcherClosedError("batcher is not running")
        loop = asyncio.get_running_loop()
        pending: _Pending[T, R] = _Pending(item, loop.create_future(), time.perf_counter())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise QueueFullError(self.retry_after_s()) from None
        return await pending.future

    # ------------------------------------------------------------------ consumer side
    async def _consume(self, slot: int) -> None:
        queue = self._queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch: list[_Pending[T, R]] = []
            try:
                self._batches[slot] = batch
                await collect_batch(queue, batch, self.max_batch_size, self.max_wait_s)
                # Requests whose client went away (future cancelled) are dropped before running.
                live = [p for p in batch if not p.future.done()]
                if live:
                    await self._run(loop, live)
            except asyncio.CancelledError:
                for pending in batch:
                    self._resolve_error(pending, BatcherClosedError("service is shutting down"))
                raise
            except BaseException as exc:  # noqa: BLE001 - never leave a future unresolved
                logger.exception("batch of %d failed", len(batch))
                for pending in batch:
                    self._resolve_error(pending, exc)
            finally:
                self._batches[slot] = []

    async def _run(self, loop: asyncio.AbstractEventLoop, live: list[_Pending[T, R]]) -> None:
        started = time.perf_counter()
        items = [p.item for p in live]
        results: list[R | BaseException] = await loop.run_in_executor(
            self._executor, functools.partial(run_isolated, self._batch_fn, items)
        )
        elapsed = time.perf_counter() - started
        self._ema_batch_s = elapsed if self._ema_batch_s == 0 else 0.8 * self._ema_batch_s + 0.2 * elapsed
        for pending, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                self._resolve_error(pending, result)
            elif not pending.future.done():
                queue_ms = (started - pending.enqueued) * 1000.0
                pending.future.set_result(BatchOutcome(result, queue_ms, elapsed * 1000.0, len(live)))

    @staticmethod
    def _resolve_error(pending: _Pending[T, R], exc: BaseException) -> None:
        if not pending.future.done():
            pending.future.set_exception(exc)


async def collect_batch(
    queue: asyncio.Queue[P], batch: list[P], max_batch_size: int, max_wait_s: float
) -> None:
    """Fill ``batch`` from ``queue``: wait for a first item, then take more until ``max_batch_size`` items or
    ``max_wait_s`` seconds after the first. ``batch`` is owned by the caller, so a cancelled consumer can
    still fail what it holds; cancelling ``Queue.get`` never loses an item (it stays queued)."""
    batch.append(await queue.get())
    deadline = time.monotonic() + max_wait_s
    while len(batch) < max_batch_size:
        while len(batch) < max_batch_size and not queue.empty():
            batch.append(queue.get_nowait())
        remaining = deadline - time.monotonic()
        if len(batch) >= max_batch_size or remaining <= 0:
            break
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({getter}, timeout=remaining)
        finally:
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
            if getter.done() and not getter.cancelled():
                batch.append(getter.result())  # completed just before the cancel: keep it


def run_isolated(
    batch_fn: Callable[[Sequence[T]], Sequence[R | BaseException]], items: list[T]
) -> list[R | BaseException]:
    """Run ``batch_fn``; on a whole-batch failure retry each item alone so only the culprit fails."""
    try:
        results = list(batch_fn(items))
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        return results
    except Exception as exc:  # noqa: BLE001
        if len(items) == 1:
            return [exc]
        logger.warning("batch of %d failed (%s); retrying items one by one", len(items), type(exc).__name__)
        out: list[R | BaseException] = []
        for item in items:
            out.extend(run_isolated(batch_fn, [item]))
        return out
