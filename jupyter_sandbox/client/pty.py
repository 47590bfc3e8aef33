"""PTYs in a sandbox: named terminals that outlive their connection (POST .../ptys, then the
.../ptys/{id}/connect websocket). Output arrives as binary frames (first the PTY's recent output,
then live); input and resizes go as JSON text frames; a last {"type": "exit", "exit_code"} frame
says how the PTY's process ended. Dropping the connection leaves the PTY running: connect to it
again by id (`sb.ptys.connect(id)`)."""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from typing import TYPE_CHECKING, Any, Callable

from tornado import websocket

from .connection import Transport, quoted
from .errors import CommandTimeout, InvalidRequest
from .models import PtyInfo

if TYPE_CHECKING:
    from .sandbox import AsyncSandbox

DataCallback = Callable[[bytes], Any]


def _check_size(cols: int, rows: int) -> None:
    for name, value in (("cols", cols), ("rows", rows)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1000:
            raise InvalidRequest(f"{name} must be a whole number from 1 to 1000")


class AsyncPty:
    """One connection to a PTY. `info` is what the server said of it; `output` holds everything
    received on this connection (the replay first); `on_data` sees each chunk as it comes."""

    def __init__(self, transport: Transport, sandbox_id: str, info: PtyInfo, on_data: DataCallback | None) -> None:
        self.transport = transport
        self.sandbox_id = sandbox_id
        self.info = info
        self.socket: websocket.WebSocketClientConnection | None = None
        self.output = bytearray()
        self.exit_code: int | None = info.exit_code
        self._on_data = on_data
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()

    @property
    def id(self) -> str:
        return self.info.id

    def _path(self, rest: str = "") -> str:
        return f"/sandboxes/{quoted(self.sandbox_id)}/ptys/{quoted(self.info.id)}{rest}"

    @classmethod
    async def create(
        cls,
        transport: Transport,
        sandbox_id: str,
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        id: str | None = None,
        command: str | builtins.list[str] | None = None,
        on_data: DataCallback | None = None,
    ) -> AsyncPty:
        _check_size(cols, rows)
        body: dict[str, Any] = {"cols": cols, "rows": rows}
        for key, value in (("id", id), ("cwd", cwd), ("env", env), ("command", command)):
            if value is not None:
                body[key] = value
        answer = await transport.request("POST", f"/sandboxes/{quoted(sandbox_id)}/ptys", json=body)
        pty = cls(transport, sandbox_id, PtyInfo.from_json(answer), on_data)
        await pty.connect()
        return pty

    async def connect(self) -> None:
        """(Re)connect: the PTY's recent output arrives first, then what it writes from now on."""
        if self.socket is not None:
            self.socket.close()
        self._closed.clear()
        self.exit_code = None  # the exit frame tells, after the replay
        self.socket = await self.transport.websocket(f"sandbox/api{self._path('/connect')}", on_message=self._received)

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
                code = frame.get("exit_code")
                self.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else -1
        self._changed.set()

    async def _write(self, frame: dict[str, Any]) -> None:
        if self.socket is None or self._closed.is_set():
            raise InvalidRequest(f"PTY {self.id!r} is not connected (it exited, or the connection was closed)")
        try:
            await self.socket.write_message(json.dumps(frame))
        except websocket.WebSocketClosedError:
            self._closed.set()
            raise InvalidRequest(f"PTY {self.id!r} is not connected") from None

    async def send_input(self, data: str) -> None:
        """Type `data` into the terminal (include "\\n" to press Enter, "\\x03" for Ctrl-C)."""
        if not isinstance(data, str):
            raise InvalidRequest("input must be a string")
        await self._write({"type": "input", "data": data})

    async def resize(self, cols: int, rows: int) -> PtyInfo:
        _check_size(cols, rows)
        self.info = PtyInfo.from_json(
            await self.transport.request("POST", self._path("/resize"), json={"cols": cols, "rows": rows})
        )
        return self.info

    async def refresh(self) -> PtyInfo:
        self.info = PtyInfo.from_json(await self.transport.request("GET", self._path()))
        if self.info.exit_code is not None:
            self.exit_code = self.info.exit_code
        return self.info

    async def kill(self) -> PtyInfo:
        """End the PTY's process and everything it started; its final state (exit code -9)."""
        self.info = PtyInfo.from_json(await self.transport.request("DELETE", self._path()))
        self.exit_code = self.info.exit_code
        return self.info

    async def wait_for(self, text: str | bytes, timeout: float = 30) -> bytes:
        """Until `text` appears in the output; returns the output so far."""
        needle = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if self._closed.is_set():
                raise CommandTimeout(f"the PTY's connection ended before {text!r} appeared")
            await self._tick(deadline, f"{text!r} did not appear within {timeout:g} seconds")
        return bytes(self.output)

    async def wait(self, timeout: float = 60) -> int:
        """Until the PTY's process exits; its exit code (minus the signal's number if one ended it)."""
        deadline = time.monotonic() + timeout
        while self.exit_code is None and not self._closed.is_set():
            await self._tick(deadline, f"the PTY did not exit within {timeout:g} seconds")
        if self.exit_code is None:
            # The connection went without an exit frame: ask the server whether the PTY ended.
            info = await self.refresh()
            if info.exit_code is None:
                raise CommandTimeout(f"the connection to PTY {self.id!r} closed while it still runs; connect again")
        assert self.exit_code is not None
        return self.exit_code

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
        """Drop this connection; the PTY keeps running."""
        if self.socket is not None:
            self.socket.close()
        self._closed.set()

    async def __aenter__(self) -> AsyncPty:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self.exit_code is None:
                await self.kill()
        finally:
            await self.close()


class Ptys:
    """`sb.ptys`: the sandbox's PTYs by id."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self.sandbox = sandbox

    def _path(self, rest: str = "") -> str:
        return f"/sandboxes/{quoted(self.sandbox.id)}/ptys{rest}"

    async def create(
        self,
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        id: str | None = None,
        command: str | builtins.list[str] | None = None,
        on_data: DataCallback | None = None,
    ) -> AsyncPty:
        return await AsyncPty.create(
            self.sandbox.transport, self.sandbox.id, cols, rows, cwd, env, id, command, on_data
        )

    async def list(self) -> builtins.list[PtyInfo]:
        answer = await self.sandbox.transport.request("GET", self._path())
        return [PtyInfo.from_json(p) for p in answer.get("ptys") or [] if isinstance(p, dict)]

    async def get(self, pty_id: str) -> PtyInfo:
        return PtyInfo.from_json(await self.sandbox.transport.request("GET", self._path(f"/{quoted(pty_id)}")))

    async def connect(self, pty_id: str, on_data: DataCallback | None = None) -> AsyncPty:
        """A new connection to an existing PTY (running or exited): its recent output, then live."""
        pty = AsyncPty(self.sandbox.transport, self.sandbox.id, await self.get(pty_id), on_data)
        await pty.connect()
        return pty

    async def kill(self, pty_id: str) -> PtyInfo:
        return PtyInfo.from_json(await self.sandbox.transport.request("DELETE", self._path(f"/{quoted(pty_id)}")))
