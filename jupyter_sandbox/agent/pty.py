"""A terminal in the sandbox over a websocket: output as binary frames, input and control as JSON."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import struct
import termios
import time
from typing import Any

from tornado import websocket

from . import environment, processes
from .auth import require_token
from .usage import ACTIVITY


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def control_message(message: str) -> dict[str, Any] | None:
    """A client's text frame as the JSON object it must be; None for anything else (ignored)."""
    try:
        request = json.loads(message)
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def requested_size(request: dict[str, Any]) -> tuple[int, int] | None:
    """The (cols, rows) a client's message asks for, when it is a size the agent will set."""
    cols, rows = request.get("cols"), request.get("rows")
    if isinstance(cols, int) and isinstance(rows, int) and 0 < cols <= 1000 and 0 < rows <= 1000:
        return cols, rows
    return None


async def spawn(
    argv: list[str], env: dict[str, str], size: tuple[int, int] | None = None, cwd: str | None = None
) -> tuple[asyncio.subprocess.Process, int]:
    """Start argv in `cwd` (the user's home by default) on a new terminal it controls, in a session of its own (so
    that a kill of its group ends what it started); the terminal's master end, non-blocking."""
    master, slave = os.openpty()
    try:
        if size is not None:
            set_size(master, *size)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd or os.path.expanduser("~"),
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return process, master


class ProcessSocket(websocket.WebSocketHandler):
    """A websocket the host opens to run one process in the sandbox (a terminal, a command): the
    token check, signals to the process's group, and the kill and clean-up when either side goes."""

    def initialize(self, token: str, **_: Any) -> None:
        self.token = token
        self.process: asyncio.subprocess.Process | None = None
        self.master: int | None = None

    def prepare(self) -> None:
        require_token(self, self.token)
        ACTIVITY["last"] = time.time()

    def _signal(self, number: int) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                os.killpg(self.process.pid, number)
            except (ProcessLookupError, PermissionError):
                pass

    def _kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _send(self, frame: bytes) -> None:
        try:
            self.write_message(frame, binary=True)
        except websocket.WebSocketClosedError:
            self._kill()

    def _exit(self, code: int, reason: str = "command exited") -> None:
        """The last frame, {"type": "exit", "code"}, then the close and the clean-up."""
        try:
            self.write_message(json.dumps({"type": "exit", "code": code}))
            self.close(1000, reason)
        except websocket.WebSocketClosedError:
            pass
        self._cleanup()

    def on_close(self) -> None:
        self._kill()

    def _cleanup(self) -> None:
        if self.master is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.master)
            except (ValueError, RuntimeError):
                pass
            try:
                os.close(self.master)
            except OSError:
                pass
            self.master = None


class PtyHandler(ProcessSocket):
    """Client → agent: {"type": "input", "data": str} | {"type": "resize", "cols", "rows"} | {"type": "kill"}.
    Agent → client: binary frames of terminal output; a text frame {"type": "exit", "code"} at the end."""

    async def open(self) -> None:
        cols = int(self.get_query_argument("cols", "80") or 80)
        rows = int(self.get_query_argument("rows", "24") or 24)
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        env = {**environment.user(), "TERM": "xterm-256color"}
        process, master = await spawn([shell, "-i"], env, (max(1, min(cols, 1000)), max(1, min(rows, 1000))))
        processes.OWN.add(process.pid)  # its orphans keep its session: the agent leaves them be
        self.process, self.master = process, master
        asyncio.get_running_loop().add_reader(master, self._readable, master)
        # Held so that the task is not collected while the terminal runs.
        self._waiter = asyncio.ensure_future(self._wait(process))

    def _readable(self, master: int) -> None:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(master)
            return
        self._send(data)

    async def _wait(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        processes.OWN.discard(process.pid)
        await asyncio.sleep(0.05)  # let the last output through
        self._exit(code, "terminal exited")

    def on_message(self, message: str | bytes) -> None:
        if self.master is None:
            return
        ACTIVITY["last"] = time.time()
        if isinstance(message, bytes):
            os.write(self.master, message)
            return
        request = control_message(message)
        if request is None:
            return
        kind = request.get("type")
        if kind == "input" and isinstance(request.get("data"), str):
            os.write(self.master, request["data"].encode())
        elif kind == "resize":
            size = requested_size(request)
            if size is not None:
                set_size(self.master, *size)
                self._signal(signal.SIGWINCH)
        elif kind == "kill":
            self._kill()
