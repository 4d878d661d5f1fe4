"""Pure-ASGI middleware that gives every log line of a request its request id, status, error type and
timings (:mod:`app.logging_setup`; shown by the ``json`` log format).

It runs outside :class:`app.api.middleware.RequestContextMiddleware`, which sets the request id in the
scope's state and logs the access line: the status and the timing headers of the response
(``X-Preprocess-Time-Ms``, ``X-Queue-Time-Ms``, ``X-Inference-Time-Ms``, ``X-Batch-Size``,
:func:`app.api.responses.timing_headers`) are recorded as the response starts, before that line is
logged. The error type is recorded by the error handlers (:mod:`app.api.errors`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logging_setup import RequestLogContext, begin_request, end_request

#: Response header → timing field.
_TIMING_HEADERS = {
    b"x-preprocess-time-ms": "preprocess_ms",
    b"x-queue-time-ms": "queue_ms",
    b"x-inference-time-ms": "inference_ms",
    b"x-batch-size": "batch_size",
}


class RequestLogMiddleware:
    """Enter a :class:`~app.logging_setup.RequestLogContext` for each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = RequestLogContext(state=scope.setdefault("state", {}))

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.status = int(message["status"])
                for name, value in message.get("headers", []):
                    key = _TIMING_HEADERS.get(name.lower())
                    if key is not None:
                        try:
                            context.timings[key] = int(value) if key == "batch_size" else float(value)
                        except ValueError:
                            pass
            await send(message)

        token = begin_request(context)
        try:
            await self.app(scope, receive, recording_send)
        finally:
            end_request(token)
