"""Pure-ASGI middleware: request ids, access log, and the request-body size limit.

The body limit is judged twice (issue 5, "Limits"): from ``Content-Length`` before anything is read, and
from a running count of the received chunks, so a chunked or lying client is cut off at the limit rather
than buffered.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, ErrorType, error_response

logger = logging.getLogger("app.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Assign ``X-Request-ID`` (client's if well-formed, else a new UUID), log one access line per request
    (method, path, status, bytes in, duration; never content), and enforce ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(ErrorType.PAYLOAD_TOO_LARGE, f"request body is larger than {limit} bytes")
            return message

        try:
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                too_big = length.isdigit()
                response = error_response(
                    ErrorType.PAYLOAD_TOO_LARGE if too_big else ErrorType.MALFORMED_REQUEST,
                    f"request body is larger than {limit} bytes" if too_big else "invalid Content-Length",
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send_with_id)
                return
            await self.app(scope, limited_receive, send_with_id)
        finally:
            logger.info(
                "request_id=%s method=%s path=%s status=%d bytes_in=%d duration_ms=%.1f",
                request_id,
                scope.get("method"),
                scope.get("path"),
                status,
                received,
                (time.perf_counter() - started) * 1000.0,
            )
