"""Answers that stream as newline-delimited JSON while an operation runs (a command's output, a PTY's):
one object per piece of output as it comes, a blank line as a heartbeat while nothing comes (so a
client notices its own interrupt and a closed connection is noticed here), and a last object that
says how it ended. An error before any output is the response's status, as everywhere in the API;
one after it is a last {"error", "status"} object (the status line was sent already).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable
from typing import Any, Callable

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from ...sandbox import errors
from ...sandbox.agent_client import Cancelled
from .base import status_of

HEARTBEAT = 0.5  # seconds without output before a blank line is sent
Piece = Callable[[dict[str, Any]], None]


class CancelledOnClose:
    """For a handler that streams: `self.cancel`, once its work sets one, is set when the client goes,
    so that the work stops (a command is killed, a PTY no longer followed). Listed before the handler
    base, so that its on_connection_close is the one tornado calls."""

    cancel: threading.Event | None = None

    def on_connection_close(self) -> None:
        if self.cancel is not None:
            self.cancel.set()


async def stream_ndjson(
    handler: RequestHandler,
    cancel: threading.Event,
    run: Callable[[Piece], Awaitable[dict[str, Any]]],
) -> None:
    """Run `run(put)` (which puts each piece of output, an object, with `put`, and returns the last
    object) and relay its pieces. `cancel` is set when the client goes: the operation must stop."""
    pieces: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    work = asyncio.ensure_future(run(pieces.put_nowait))
    started = False

    async def send(text: str) -> None:
        nonlocal started
        if not started:
            handler.set_header("Content-Type", "application/x-ndjson")
            handler.set_header("Cache-Control", "no-store")
            started = True
        handler.write(text)
        try:
            await handler.flush()
        except StreamClosedError:
            cancel.set()

    while not (work.done() and pieces.empty()):
        piece = asyncio.ensure_future(pieces.get())
        await asyncio.wait({work, piece}, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED)
        if piece.done():
            await send(json.dumps(piece.result()) + "\n")
            continue
        piece.cancel()
        if not work.done():
            # Callers check what they can before (so that a refusal is still the status line).
            await send("\n")
    try:
        last = work.result()
    except Cancelled:
        return  # the client went (the operation stopped for that): nobody to answer
    except errors.SandboxOperationError as exc:
        if not started:
            raise
        last = {"error": exc.message, "status": status_of(exc)}
    await send(json.dumps(last) + "\n")
    handler.finish()
