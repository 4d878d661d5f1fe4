"""Stop working for clients that have gone away.

uvicorn does not cancel a request handler when its client disconnects: the upload would still be decoded,
queued and run through the model, and only the answer dropped. Under overload that is how retry storms
turn into congestion collapse (clients time out and retry while the server keeps working on the requests
they abandoned). :func:`unless_disconnected` runs the work as a task and cancels it when the ASGI server
reports ``http.disconnect``; the batcher then drops the request if it is still queued (its future is
cancelled), so its batch-mates run without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request

T = TypeVar("T")


class ClientLeft(ClientDisconnect):
    """The client disconnected after its body was read completely, while its answer was being prepared
    (a :class:`~starlette.requests.ClientDisconnect`, so it is handled as one: nothing is sent)."""


async def _wait_for_disconnect(request: Request) -> None:
    # Called after the body has been read: the next ASGI message is http.disconnect, sent when the client
    # goes away (or, by test clients, once the response is complete; this task is cancelled before that).
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise :class:`ClientLeft`.

    Only call this once the request body has been read completely.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientLeft()
