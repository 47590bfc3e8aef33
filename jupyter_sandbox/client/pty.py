"""A terminal in the sandbox over the same websocket the sidebar uses (/sandbox/api/.../pty):
output arrives as binary frames, input and control go as JSON text frames, and a final
{"type": "exit", "code"} text frame says how the shell ended."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from typing import Any, Callable

from tornado import websocket

from .connection import Transport, quoted
from .errors import CommandTimeout, InvalidRequest

DataCallback = Callable[[bytes], Any]


def _check_size(cols: int, rows: int) -> None:
    for name, value in (("cols", cols), ("rows", rows)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1000:
            raise InvalidRequest(f"{name} must be a whole number from 1 to 1000")


class AsyncPty:
    """An interactive shell. `output` holds everything received; `on_data` sees each chunk."""

    def __init__(self, socket: websocket.WebSocketClientConnection | None = None) -> None:
        self.socket = socket
        self.output = bytearray()
        self.exit_code: int | None = None
        self._on_data: DataCallback | None = None
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()

    @classmethod
    async def open(
        cls,
        transport: Transport,
        sandbox_id: str,
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        on_data: DataCallback | None = None,
    ) -> AsyncPty:
        _check_size(cols, rows)
        pty = cls()
        pty._on_data = on_data
        pty.socket = await transport.websocket(
            f"sandbox/api/sandboxes/{quoted(sandbox_id)}/pty?cols={cols}&rows={rows}", on_message=pty._received
        )
        if cwd:
            # The terminal route takes no folder: the shell is told to go there (quoted, one argument).
            await pty.send_input(f"cd -- {shlex.quote(cwd)}\n")
        return pty

    def _received(self, message: str | bytes | None) -> None:
        if message is None:
            self._closed.set()
        elif isinstance(message, bytes):
            self.output += message
            if self._on_data is not None:
                self._on_data(message)
        else:
            try:
                frame = json.loads(message)
            except ValueError:
                frame = None
            if isinstance(frame, dict) and frame.get("type") == "exit":
                code = frame.get("code")
                self.exit_code = code if isinstance(code, int) else -1
        self._changed.set()

    async def _write(self, frame: dict[str, Any]) -> None:
        if self.socket is None or self._closed.is_set():
            return
        try:
            await self.socket.write_message(json.dumps(frame))
        except websocket.WebSocketClosedError:
            self._closed.set()

    async def send_input(self, data: str) -> None:
        """Type `data` into the terminal (include "\\n" to press Enter)."""
        if not isinstance(data, str):
            raise InvalidRequest("input must be a string")
        await self._write({"type": "input", "data": data})

    async def resize(self, cols: int, rows: int) -> None:
        _check_size(cols, rows)
        await self._write({"type": "resize", "cols": cols, "rows": rows})

    async def kill(self) -> None:
        """End the shell and everything it started."""
        await self._write({"type": "kill"})

    async def wait_for(self, text: str | bytes, timeout: float = 30) -> bytes:
        """Until `text` appears in the output; returns the output so far."""
        needle = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if self._closed.is_set():
                raise CommandTimeout(f"the terminal ended before {text!r} appeared")
            await self._tick(deadline, f"{text!r} did not appear within {timeout:g} seconds")
        return bytes(self.output)

    async def wait(self, timeout: float = 60) -> int:
        """Until the shell exits; its exit code."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            await self._tick(deadline, f"the terminal did not exit within {timeout:g} seconds")
        return self.exit_code if self.exit_code is not None else -1

    async def _tick(self, deadline: float, error: str) -> None:
        self._changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandTimeout(error)
        try:
            await asyncio.wait_for(self._changed.wait(), timeout=remaining)
        except asyncio.TimeoutError:
            raise CommandTimeout(error) from None

    async def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
        self._closed.set()

    async def __aenter__(self) -> AsyncPty:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.kill()
        await self.close()
