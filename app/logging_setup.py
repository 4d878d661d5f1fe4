"""Log formats of the service: ``text`` (one plain line per record) or ``json`` (one JSON object per line).

``SENTIMENT_LOG_FORMAT`` chooses; :func:`log_config` is the ``logging.config.dictConfig`` dictionary that
``msa serve`` gives uvicorn as ``log_config`` (uvicorn docs, "Settings: Logging"), so uvicorn's own lines
and the service's go through the same handler and formatter, in every worker process.

In JSON, each line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; a message made only
of ``key=value`` pairs (the ``app.access`` line) also gives each pair as a field. A line logged while a
request is served carries that request's ``request_id``, ``status`` and ``error_type`` (null until known),
``elapsed_ms`` since the request arrived, and the stage timings of a prediction (``preprocess_ms``,
``queue_ms``, ``inference_ms``, ``batch_size``; null otherwise). The request context lives in a
:class:`contextvars.ContextVar` (Python docs, "contextvars"), which asyncio tasks and Starlette's thread
pool copy, so preprocessing threads log with their request's id. Framework-free: the API layer fills it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

#: The text format (also ``msa predict``'s): time, level, logger, message.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Timing fields of a request, always present (null when unknown) in its JSON lines.
TIMING_FIELDS = ("preprocess_ms", "queue_ms", "inference_ms", "batch_size")


@dataclass
class RequestLogContext:
    """What is known about the request being served, filled in as it goes.

    Attributes:
        state: the ASGI scope's ``state`` dict, where the request middleware puts ``request_id``.
        started: ``time.perf_counter()`` when the request arrived (s).
        status: HTTP status of the response, once it started.
        error_type: ``error.type`` of an error response.
        timings: ``preprocess_ms``, ``queue_ms``, ``inference_ms`` (ms) and ``batch_size`` of a prediction.
    """

    state: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    error_type: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The request's log fields (see the module docstring)."""
        out: dict[str, Any] = {
            "request_id": self.state.get("request_id"),
            "status": self.status,
            "error_type": self.error_type,
            "elapsed_ms": round((time.perf_counter() - self.started) * 1000.0, 3),
        }
        out.update({name: self.timings.get(name) for name in TIMING_FIELDS})
        return out


_REQUEST: ContextVar[RequestLogContext | None] = ContextVar("sentiment_request_log", default=None)


def begin_request(context: RequestLogContext) -> Token[RequestLogContext | None]:
    """Make ``context`` the current request's (until :func:`end_request` with the returned token)."""
    return _REQUEST.set(context)


def end_request(token: Token[RequestLogContext | None]) -> None:
    """Leave the request context entered with :func:`begin_request`."""
    _REQUEST.reset(token)


def current_request() -> RequestLogContext | None:
    """The context of the request being served in this task or thread, if any."""
    return _REQUEST.get()


def note_error_type(error_type: str) -> None:
    """Record the ``error.type`` the current request is answered with (no-op outside a request)."""
    context = _REQUEST.get()
    if context is not None:
        context.error_type = error_type


_KEY_VALUES = re.compile(r"[a-z_]+=\S*(?: [a-z_]+=\S*)*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _value(text: str) -> Any:
    if text == "None":
        return None
    if _NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, the ``key=value`` pairs of
    an all-pairs message, the current request's fields, and ``exception`` (the traceback) if any."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        if _KEY_VALUES.fullmatch(message):
            for pair in message.split(" "):
                key, _, value = pair.partition("=")
                out.setdefault(key, _value(value))
        context = _REQUEST.get()
        if context is not None:
            for key, value in context.fields().items():
                if value is not None or key not in out:
                    out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def log_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """``logging.config.dictConfig`` dictionary: one stderr handler in ``log_format`` for the root logger
    (the service's ``app.*`` loggers) and uvicorn's loggers, all at ``level`` (``info``, ``warning``, ...).
    """
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    level = level.upper()
    handler = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stderr"}
        },
        "loggers": {"uvicorn": handler, "uvicorn.error": {"level": level}, "uvicorn.access": handler},
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Apply :func:`log_config` to this process (``msa predict``; ``msa serve`` passes it to uvicorn)."""
    import logging.config

    logging.config.dictConfig(log_config(level, log_format))
