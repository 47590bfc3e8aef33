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
from .usage import ACTIVITY


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyHandler(websocket.WebSocketHandler):
    """Client → agent: {"type": "input", "data": str} | {"type": "resize", "cols", "rows"} | {"type": "kill"}.
    Agent → client: binary frames of terminal output; a text frame {"type": "exit", "code"} at the end."""

    def initialize(self, token: str, **_: Any) -> None:
        self.token = token
        self.process: asyncio.subprocess.Process | None = None
        self.master: int | None = None

    def prepare(self) -> None:
        import hmac

        from tornado import web

        scheme, _, given = (self.request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "token" or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPError(401, "a valid agent token is required")
        ACTIVITY["last"] = time.time()

    async def open(self) -> None:
        cols = int(self.get_query_argument("cols", "80") or 80)
        rows = int(self.get_query_argument("rows", "24") or 24)
        master, slave = os.openpty()
        set_size(master, max(1, min(cols, 1000)), max(1, min(rows, 1000)))
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        env = {**environment.user(), "TERM": "xterm-256color"}
        self.process = process = await asyncio.create_subprocess_exec(
            shell,
            "-i",
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=os.path.expanduser("~"),
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        processes.OWN.add(process.pid)  # its orphans keep its session: the agent leaves them be
        os.close(slave)
        self.master = master
        os.set_blocking(master, False)
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
        try:
            self.write_message(data, binary=True)
        except websocket.WebSocketClosedError:
            self._kill()

    async def _wait(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        processes.OWN.discard(process.pid)
        await asyncio.sleep(0.05)  # let the last output through
        try:
            self.write_message(json.dumps({"type": "exit", "code": code}))
            self.close(1000, "terminal exited")
        except websocket.WebSocketClosedError:
            pass
        self._cleanup()

    def on_message(self, message: str | bytes) -> None:
        if self.master is None:
            return
        ACTIVITY["last"] = time.time()
        if isinstance(message, bytes):
            os.write(self.master, message)
            return
        try:
            request = json.loads(message)
        except ValueError:
            return
        if not isinstance(request, dict):
            return
        kind = request.get("type")
        if kind == "input" and isinstance(request.get("data"), str):
            os.write(self.master, request["data"].encode())
        elif kind == "resize":
            cols, rows = request.get("cols"), request.get("rows")
            if isinstance(cols, int) and isinstance(rows, int) and 0 < cols <= 1000 and 0 < rows <= 1000:
                set_size(self.master, cols, rows)
                if self.process is not None:
                    try:
                        os.killpg(self.process.pid, signal.SIGWINCH)
                    except (ProcessLookupError, PermissionError):
                        pass
        elif kind == "kill":
            self._kill()

    def _kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

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
