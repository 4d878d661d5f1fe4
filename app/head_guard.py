"""Bounded request heads: a size limit and a receive deadline for the request line and headers.

uvicorn's httptools protocol has neither: it buffers a header line of any length (one client sending a
192 MB header grew the server by 270 MB) and waits for a head forever (900 connections trickling a byte now
and then were all held open). :class:`HeadLimitedHttpToolsProtocol` is that protocol with both, checked on
the raw bytes before the parser sees them, so neither the parser nor the app ever holds more than
``max_request_head_bytes`` plus one socket read (≤ 256 KiB, asyncio's read size) per connection.

* Size: a head larger than ``max_request_head_bytes`` gets ``431 Request Header Fields Too Large`` (RFC
  6585 §5) with the service's JSON error body and ``Connection: close``; the rest of what the client sends
  is read and dropped for a moment (at most :data:`LINGER_BYTES` / :data:`LINGER_S`, nginx's "lingering
  close") so that the client can read the answer before the connection closes.
* Time: the head must arrive within ``request_head_timeout_s``, counted from the connection's start or,
  on a kept-alive connection, from the first byte of the next head (idle time between requests is
  uvicorn's ``timeout_keep_alive``). A late head gets ``408 Request Timeout`` (RFC 9110 §15.5.9) if any of
  it arrived, else the connection is just closed.

Used by ``msa serve`` (``uvicorn.run(..., http=HeadLimitedHttpToolsProtocol)``); limits come from
:class:`app.config.Settings` (``SENTIMENT_MAX_REQUEST_HEAD_BYTES``, ``SENTIMENT_REQUEST_HEAD_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import get_settings
from app.errors import STATUS, ErrorType

logger = logging.getLogger("app.head_guard")

#: After refusing a head, bytes still read (and dropped) before the connection is closed.
LINGER_BYTES: Final[int] = 256 * 1024
#: After refusing a head, seconds at most before the connection is closed.
LINGER_S: Final[float] = 1.0
#: Ends of a request head: an empty line (RFC 9112 §2.1); bare LF line ends are tolerated by the parser.
_HEAD_ENDS: Final[tuple[bytes, ...]] = (b"\r\n\r\n", b"\n\n")


def error_response(status: int, reason: str, error_type: str, message: str) -> bytes:
    """A complete HTTP/1.1 response with the service's error body, closing the connection.

    Args:
        status: HTTP status code, e.g. 431.
        reason: its reason phrase, e.g. ``Request Header Fields Too Large``.
        error_type: ``error.type`` of the body (app/errors.py's closed set).
        message: ``error.message``, a sentence safe to show.

    Returns:
        Status line, headers (``content-type: application/json``, ``content-length``, ``connection:
        close``) and the body ``{"error": {"type": ..., "message": ...}}``, as bytes.
    """
    body = json.dumps({"error": {"type": error_type, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def head_length(tail: bytes, data: bytes) -> int:
    """Bytes of ``data`` that belong to the head: up to and including the first empty line, or all of it.

    Args:
        tail: the last (up to 3) bytes received before ``data``, so an end split across reads is found.
        data: the bytes just received.
    """
    window = tail + data
    ends = [i + len(end) for end in _HEAD_ENDS if (i := window.find(end)) >= 0]
    if not ends:
        return len(data)
    return max(0, min(ends) - len(tail))


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol with a request-head size limit and receive deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head_bytes = settings.max_request_head_bytes
        self.head_timeout_s = settings.request_head_timeout_s
        self._head_open = True  # waiting for (the rest of) a request head
        self._head_bytes = 0
        self._tail = b""
        self._head_timer: asyncio.TimerHandle | None = None
        self._lingering = -1  # bytes dropped since a refusal; -1 = not refused

    # --- connection lifecycle -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline as the connection opens (uvicorn arms no timer until a response)."""
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the head deadline, then uvicorn's cleanup."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count head bytes before the parser sees them; refuse a head over the limit with 431."""
        if self._lingering >= 0:
            self._lingering += len(data)
            if self._lingering > LINGER_BYTES:
                self.transport.abort()
            return
        if self._head_open:
            if self._head_timer is None:
                self._start_head_timer()  # the first byte of the next head on a kept-alive connection
            self._head_bytes += head_length(self._tail, data)
            self._tail = (self._tail + data)[-3:]
            if self._head_bytes > self.max_head_bytes:
                self._refuse(
                    ErrorType.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "Request Header Fields Too Large",
                    f"the request line and headers exceed {self.max_head_bytes} bytes",
                )
                return
        super().data_received(data)

    # --- parser callbacks -----------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        """The head is complete: stop counting and cancel its deadline."""
        self._head_open = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The body is complete: the next bytes are the next request's head."""
        super().on_message_complete()
        self._head_open, self._head_bytes, self._tail = True, 0, b""

    # --- helpers --------------------------------------------------------------------------------------
    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self._head_open or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # an idle connection that never sent a request
            return
        self._refuse(
            ErrorType.REQUEST_TIMEOUT,
            "Request Timeout",
            f"the request line and headers did not arrive within {self.head_timeout_s:g} s",
        )

    def _refuse(self, error_type: ErrorType, reason: str, message: str) -> None:
        status = STATUS[error_type]
        logger.warning("refused a request head from %s: %s %s", self.client, status, message)
        self._cancel_head_timer()
        self._head_open = False
        self._lingering = 0
        self.transport.write(error_response(status, reason, error_type.value, message))
        # Drop what the client still sends for a moment, so it can read the answer (no RST on unread data).
        self.loop.call_later(LINGER_S, self.transport.close)
