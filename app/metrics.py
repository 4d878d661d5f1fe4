"""The service's Prometheus metrics (``prometheus-client``), one registry per application.

Framework-free and free of the other layers' types: callers pass plain values (seconds, counts, label
strings), so any layer may record. :mod:`app.api.metrics` feeds it from the predictor's predictions and
serves ``GET /metrics``; the middleware counts requests. Names follow the Prometheus conventions
(https://prometheus.io/docs/practices/naming/): the prefix ``sentiment_``, base units in the name
(``_seconds``, ``_bytes``), ``_total`` for counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "sentiment"

#: Stage-time buckets (s): 1 ms (a text-only batch on a GPU) to 30 s (the default request timeout).
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Batch-size buckets: powers of two up to the largest allowed ``max_batch_size`` (1024).
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

#: ``error_type`` label of answers that are not errors.
NO_ERROR = "none"


class _ModelInfoCollector(Collector):
    """``sentiment_model_info{name, version, execution_provider} 1``, read at scrape time (absent until the
    model is loaded)."""

    def __init__(self, describe: Callable[[], Mapping[str, str] | None]) -> None:
        self._describe = describe

    def collect(self) -> Iterator[Metric]:
        labels = self._describe()
        if labels is None:
            return
        family = InfoMetricFamily(f"{PREFIX}_model", "The served model and its active execution provider.")
        family.add_metric([], dict(labels))
        yield family


class _ReadCounterCollector(Collector):
    """A counter whose value is read at scrape time from a count the service keeps itself (e.g. the
    preprocessing worker pool's restarts), exposed as ``<name>_total``."""

    def __init__(self, name: str, help_: str, read: Callable[[], float]) -> None:
        self._name, self._help, self._read = name, help_, read

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._help, value=self._read())


class ServiceMetrics:
    """The metric objects of one application and its own :class:`~prometheus_client.CollectorRegistry`
    (never the global one, so several apps in one process, e.g. in tests, do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests answered, by route template, method, status and error type (`none` for success).",
            ["route", "method", "status", "error_type"],
            registry=r,
        )
        self.batch_items = Counter(
            f"{PREFIX}_batch_items",
            "Items of POST /v1/predict/batch requests, by their own status and error type.",
            ["status", "error_type"],
            registry=r,
        )
        self.expert_used = Counter(
            f"{PREFIX}_expert_used",
            "Predictions in which an expert (model branch) contributed to the fused probabilities.",
            ["expert"],
            registry=r,
        )
        self.expert_abstained = Counter(
            f"{PREFIX}_expert_abstained",
            "Predictions in which an expert's input was sent but not used, by reason (e.g. no_face).",
            ["expert", "reason"],
            registry=r,
        )
        self.preprocess_seconds = self._histogram("preprocess", "Decoding and preprocessing of one item.")
        self.queue_seconds = self._histogram("queue", "Time one item waited in the batcher's queue.")
        self.inference_seconds = self._histogram(
            "inference", "The batched ONNX Runtime call one item was part of (observed once per item)."
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Size of the batched model call each item ran in (observed once per item).",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_batcher_queue_depth", "Items waiting in the batcher's queue.", registry=r
        )
        self.items_in_flight = Gauge(
            f"{PREFIX}_batcher_items_in_flight",
            "Items taken off the batcher's queue and not yet answered (being batched or run).",
            registry=r,
        )
        self.inflight_bytes = Gauge(
            f"{PREFIX}_inflight_request_bytes",
            "Request-body bytes reserved by requests in progress (SENTIMENT_MAX_INFLIGHT_BYTES bounds it).",
            registry=r,
        )

    def _histogram(self, stage: str, help_: str) -> Histogram:
        return Histogram(
            f"{PREFIX}_{stage}_duration_seconds", help_, buckets=SECONDS_BUCKETS, registry=self.registry
        )

    def observe_request(self, route: str, method: str, status: int, error_type: str | None) -> None:
        """Count one answered HTTP request (``route`` is the route template, never the raw path)."""
        self.requests.labels(route, method, str(status), error_type or NO_ERROR).inc()

    def observe_prediction(
        self,
        *,
        preprocess_s: float,
        queue_s: float,
        inference_s: float,
        batch_size: int,
        experts: Mapping[str, str | None],
    ) -> None:
        """Record one successful prediction: stage times in seconds, the batch size it ran in, and
        ``experts``: expert name → ``None`` when used, else the reason it abstained (e.g. ``no_face``)."""
        self.preprocess_seconds.observe(preprocess_s)
        self.queue_seconds.observe(queue_s)
        self.inference_seconds.observe(inference_s)
        self.batch_size.observe(batch_size)
        for expert, reason in experts.items():
            if reason is None:
                self.expert_used.labels(expert).inc()
            else:
                self.expert_abstained.labels(expert, reason).inc()

    def observe_batch_item(self, status: int, error_type: str | None) -> None:
        """Count one item of a batch request by its own status."""
        self.batch_items.labels(str(status), error_type or NO_ERROR).inc()

    def watch(
        self,
        *,
        queued: Callable[[], float],
        items_in_flight: Callable[[], float],
        model_info: Callable[[], Mapping[str, str] | None],
        worker_restarts: Callable[[], float],
    ) -> None:
        """Read the queue depth, the items in flight, the model info and the number of times the
        preprocessing worker processes were restarted at scrape time."""
        self.queue_depth.set_function(queued)
        self.items_in_flight.set_function(items_in_flight)
        self.registry.register(_ModelInfoCollector(model_info))
        self.registry.register(
            _ReadCounterCollector(
                f"{PREFIX}_preprocess_worker_restarts",
                "Times a preprocessing worker process died and its pool was replaced "
                "(SENTIMENT_PREPROCESS_PROCESSES > 0; always 0 with threads).",
                worker_restarts,
            )
        )

    def watch_inflight_bytes(self, read: Callable[[], float]) -> None:
        """Read the in-flight request-body bytes (the middleware's budget) at scrape time."""
        self.inflight_bytes.set_function(read)
