"""Admission control: a bound on the requests between admission and answer, so overload is shed with 429.

The batcher's queue bounds only what waits for the model. Under a flood of uploads whose preprocessing is
the bottleneck (large images on few cores), requests would otherwise pile up without bound in front of
the preprocessing threads, each holding its body, and the batcher's queue would never fill: no 429, only
ever longer waits (found by tests/robustness/test_server_limits_and_time.py's saturation test).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from app.config import Settings
from app.inference.batcher import QueueFullError


class AdmissionLimit:
    """At most ``limit`` requests admitted at once (preprocessing, queued or running); the next ones raise
    :class:`~app.inference.batcher.QueueFullError` (HTTP 429, ``Retry-After`` from ``retry_after_s()``)
    at once. Used from one event loop only, so a plain counter is enough."""

    def __init__(self, limit: int, retry_after_s: Callable[[], int]) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.active = 0
        self._retry_after_s = retry_after_s

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the ``limit`` places for the duration of the ``with`` block.

        Raises:
            QueueFullError: all places are taken.
        """
        if self.active >= self.limit:
            raise QueueFullError(self._retry_after_s())
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


def admission_limit(settings: Settings) -> int:
    """Requests the service admits at once: a full queue, a batch in each consumer, and one upload in each
    preprocessing thread and worker process (``SENTIMENT_QUEUE_SIZE + SENTIMENT_BATCH_WORKERS ×
    SENTIMENT_MAX_BATCH_SIZE + SENTIMENT_PREPROCESS_WORKERS + SENTIMENT_PREPROCESS_PROCESSES``)."""
    s = settings
    return s.queue_size + s.batch_workers * s.max_batch_size + s.preprocess_workers + s.preprocess_processes
