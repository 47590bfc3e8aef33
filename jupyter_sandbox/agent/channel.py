"""A command in the sandbox over a websocket, with stdin, stdout, stderr and its exit status apart.

What an SSH `exec` (and a shell without a terminal) needs and neither the PTY socket (one merged
stream, always an interactive shell) nor exec streaming (no stdin) gives. The command runs as the
sandbox user with the sandbox's environment, in a session of its own, optionally on a terminal.

Client → agent: a first text frame {"type": "start", "command": str | null, "pty": bool, "term",
"cols", "rows"}; then binary frames of stdin, and text frames {"type": "eof"} | {"type": "resize",
"cols", "rows"} | {"type": "signal", "name"}. Agent → client: binary frames whose first byte names the
stream (1 stdout, 2 stderr); a last text frame {"type": "exit", "code"} (minus the signal number when
a signal ended it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from tornado import websocket

from . import environment, processes
from .pty import ProcessSocket, control_message, requested_size, set_size, spawn
from .usage import ACTIVITY

READ_CHUNK = 64 * 1024
SIGNALS = {"INT", "TERM", "HUP", "KILL", "QUIT", "USR1", "USR2", "ALRM", "PIPE"}
MAX_COMMAND = 256 * 1024


class ChannelHandler(ProcessSocket):
    def initialize(self, token: str, **_: Any) -> None:
        super().initialize(token)
        self.started = False

    async def on_message(self, message: str | bytes) -> None:
        ACTIVITY["last"] = time.time()
        if isinstance(message, bytes):
            await self._stdin(message)
            return
        request = control_message(message)
        if request is None:
            return
        kind = request.get("type")
        if kind == "start" and not self.started:
            self.started = True
            try:
                await self._start(request)
            except OSError as exc:
                self._send(b"\x02" + f"cannot run the command: {exc}\n".encode())
                self._exit(127)
        elif kind == "eof":
            self._eof()
        elif kind == "resize" and self.master is not None:
            size = requested_size(request)
            if size is not None:
                set_size(self.master, *size)
                self._signal(signal.SIGWINCH)
        elif kind == "signal" and request.get("name") in SIGNALS:
            self._signal(getattr(signal, "SIG" + request["name"]))

    async def _start(self, request: dict[str, Any]) -> None:
        command = request.get("command")
        if command is not None and (not isinstance(command, str) or len(command) > MAX_COMMAND):
            raise OSError("the command must be text of at most 256 KiB")
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        terminal = bool(request.get("pty"))
        argv = [shell, "-c", command] if command is not None else [shell, "-il"] if terminal else [shell]
        env = environment.user()
        term = request.get("term")
        if terminal:
            env["TERM"] = term if isinstance(term, str) and term.isprintable() and len(term) < 64 else "xterm-256color"
            self.process, master = await spawn(argv, env, requested_size(request))
            self.master = master
            asyncio.get_running_loop().add_reader(master, self._pty_readable)
            readers: list[Any] = []
        else:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=os.path.expanduser("~"),
                env=env,
                start_new_session=True,
            )
            readers = [self._pump(self.process.stdout, 1), self._pump(self.process.stderr, 2)]
        # Kept among the agent's own for good: what the command leaves running in its session (a
        # server an editor's setup script started, say) stays, as it would after an ssh command.
        processes.OWN.add(self.process.pid)
        self._waiter = asyncio.ensure_future(self._wait(readers))

    async def _pump(self, stream: asyncio.StreamReader | None, number: int) -> None:
        assert stream is not None
        while True:
            data = await stream.read(READ_CHUNK)
            if not data:
                return
            try:
                await self.write_message(bytes([number]) + data, binary=True)  # backpressure: one chunk at a time
            except websocket.WebSocketClosedError:
                self._kill()
                return

    def _pty_readable(self) -> None:
        try:
            data = os.read(self.master, READ_CHUNK) if self.master is not None else b""
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if self.master is not None:
                asyncio.get_running_loop().remove_reader(self.master)
            return
        self._send(b"\x01" + data)

    async def _wait(self, readers: list[Any]) -> None:
        assert self.process is not None
        await asyncio.gather(*readers)
        code = await self.process.wait()
        if self.master is not None:
            await asyncio.sleep(0.05)  # let the terminal's last output through
        self._exit(code)

    async def _stdin(self, data: bytes) -> None:
        if self.master is not None:
            try:
                os.write(self.master, data)
            except OSError:
                pass
        elif self.process is not None and self.process.stdin is not None:
            try:
                self.process.stdin.write(data)
                await self.process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _eof(self) -> None:
        if self.master is not None:
            try:
                os.write(self.master, b"\x04")
            except OSError:
                pass
        elif self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
