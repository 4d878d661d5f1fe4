"""Pure-ASGI middleware: request ids, access log, and the request-body size limit.

The body limit is judged twice (issue 5, "Limits"): from ``Content-Length`` before anything is read, and
from a running count of the received chunks, so a chunked or lying client is cut off at the limit rather
than buffered. The whole body must arrive within ``body_timeout_s`` (slow clients that trickle a body get
408). An error answered before the body was read to its end closes the connection, so the server does not
go on reading (and discarding) the rest of a huge upload.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.errors import ApiError, ErrorType
from app.metrics import ServiceMetrics

logger = logging.getLogger("app.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: Error bodies are one small JSON object; more than this is not read for the error type.
_ERROR_BODY_MAX = 8192


def _error_type(body: bytes) -> str:
    """``error.type`` of the one error body (app/api/errors.py), ``unknown`` if it is not one."""
    try:
        value = json.loads(body)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return "unknown"
    return value if isinstance(value, str) else "unknown"


def _route(scope: Scope) -> str:
    """The matched route's template (``/v1/predict``), never the raw path (unbounded label values).

    A request refused here before routing (body limits) counts under its path if that is a documented
    route without parameters (the app's cached OpenAPI paths), else as ``unmatched``.
    """
    path = getattr(scope.get("route"), "path", None)
    if path is None:
        openapi = getattr(scope.get("app"), "openapi", None)
        documented = openapi().get("paths", {}) if callable(openapi) else {}
        path = scope.get("path") if scope.get("path") in documented else None
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Assign ``X-Request-ID`` (client's if well-formed, else a new UUID), log one access line per request
    (method, path, status, bytes in, duration; never content), and enforce ``max_body_bytes``,
    ``body_timeout_s`` (seconds for the whole body, from the first read; None = no deadline) and
    ``max_inflight_bytes``: the bodies of the requests in progress (``Content-Length``, or
    ``max_body_bytes`` when it is not declared) may not add up to more; a request that would exceed it is
    answered 429 + ``Retry-After`` before its body is read (one request is always admitted). Requests
    without a body (health probes) are never refused. With ``metrics``, every answered request is counted
    by route template, method, status and error type (read from the error body), and ``inflight_bytes``
    is exported."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout_s: float | None = None,
        max_inflight_bytes: int | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_bytes = 0
        self.metrics = metrics
        if metrics is not None:
            metrics.watch_inflight_bytes(lambda: self.inflight_bytes)

    def _admit(self, length: str | None, body_done: bool) -> tuple[JSONResponse | None, int]:
        """Refuse a body before reading it (413 over the limit, 400 invalid Content-Length, 429 when the
        in-flight upload budget is spent), else reserve its declared size (the limit when undeclared)
        against ``max_inflight_bytes``. Returns (refusal or None, bytes reserved)."""
        limit = self.max_body_bytes
        if length is not None and (not length.isdigit() or int(length) > limit):
            too_big = length.isdigit()
            refusal = error_response(
                ErrorType.PAYLOAD_TOO_LARGE if too_big else ErrorType.MALFORMED_REQUEST,
                f"request body is larger than {limit} bytes" if too_big else "invalid Content-Length",
                headers={"Connection": "close"},
            )
            return refusal, 0
        if body_done or self.max_inflight_bytes is None:
            return None, 0
        cost = int(length) if length is not None else limit
        if self.inflight_bytes and self.inflight_bytes + cost > self.max_inflight_bytes:
            refusal = error_response(
                ErrorType.OVERLOADED,
                "too many uploads in progress; retry later",
                headers={"Retry-After": "1", "Connection": "close"},
            )
            return refusal, 0
        self.inflight_bytes += cost
        return None, cost

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        supplied = headers.get("x-request-id", "")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0
        received = 0
        limit = self.max_body_bytes
        body_done = (
            scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE")
            or headers.get("content-length") == "0"
        )
        body_deadline: float | None = None
        error_body = b""

        async def send_with_id(message: Message) -> None:
            nonlocal status, error_body
            if message["type"] == "http.response.body" and status >= 400:
                error_body = (error_body + message.get("body", b"")[:_ERROR_BODY_MAX])[:_ERROR_BODY_MAX]
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                extra = [(b"x-request-id", request_id.encode())]
                if status >= 400 and not body_done:
                    extra.append((b"connection", b"close"))  # don't read the rest of the body
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        async def limited_receive() -> Message:
            nonlocal received, body_done, body_deadline
            if body_done or self.body_timeout_s is None:
                message = await receive()
            else:
                now = time.monotonic()
                if body_deadline is None:
                    body_deadline = now + self.body_timeout_s
                try:
                    message = await asyncio.wait_for(receive(), timeout=max(0.0, body_deadline - now))
                except TimeoutError:
                    raise ApiError(
                        ErrorType.REQUEST_TIMEOUT,
                        f"the request body did not arrive within {self.body_timeout_s:g} s",
                    ) from None
            if message["type"] == "http.request":
                body_done = body_done or not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(ErrorType.PAYLOAD_TOO_LARGE, f"request body is larger than {limit} bytes")
            return message

        reserved = 0
        try:
            refusal, reserved = self._admit(headers.get("content-length"), body_done)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
                return
            await self.app(scope, limited_receive, send_with_id)
        finally:
            self.inflight_bytes -= reserved
            if self.metrics is not None and status:
                error_type = _error_type(error_body) if status >= 400 else None
                self.metrics.observe_request(_route(scope), str(scope.get("method")), status, error_type)
            logger.info(
                "request_id=%s method=%s path=%s status=%d bytes_in=%d duration_ms=%.1f",
                request_id,
                scope.get("method"),
                scope.get("path"),
                status,
                received,
                (time.perf_counter() - started) * 1000.0,
            )
