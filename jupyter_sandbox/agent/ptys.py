"""Named terminals that outlive their websockets: a PTY has an id, a size, a folder and an environment
from its creation, keeps running when its client goes, replays its recent output to whoever connects
next, and keeps its exit code for a while after it ends.

The agent always reads every PTY's output (so a program never blocks on a terminal nobody watches)
into a bounded buffer, and hands each chunk to the websockets connected at that moment. Everything is
bounded: PTYs running at once, exited ones kept (and for how long), the replay buffer, the clients of
one PTY and the bytes a slow client may leave unsent before it is dropped (it can reconnect and get
the replay).

Client → agent on `/ptys/{id}/connect`: binary frames (raw input), or text frames {"type": "input",
"data"} | {"type": "resize", "cols", "rows"} | {"type": "kill"}. Agent → client: the replay and then
live output as binary frames; when the process ends, a text frame {"type": "exit", "exit_code"} and the
close. A connect to a PTY that has exited gets its replay, the exit frame and the close.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado import web, websocket

from . import environment, files, processes
from .auth import require_token
from .pty import control_message, requested_size, set_size, spawn
from .usage import ACTIVITY

MAX_RUNNING = 32
MAX_EXITED_KEPT = 32
EXITED_KEPT_SECONDS = 900.0
REPLAY_BYTES = 256 * 1024
MAX_CLIENTS = 8
MAX_UNSENT = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024
MAX_ENV = 256
MAX_ENV_VALUE = 32 * 1024
MAX_COMMAND = 64 * 1024
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")


class PtyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def checked_size(cols: Any, rows: Any) -> tuple[int, int]:
    size = requested_size({"cols": cols, "rows": rows})
    if size is None:
        raise PtyError(400, "cols and rows must be whole numbers from 1 to 1000")
    return size


def checked_cwd(value: Any) -> str:
    """A folder inside the home (relative paths from it), after following every link in it."""
    if value is not None and not isinstance(value, str):
        raise PtyError(400, "cwd must be a path")
    try:
        path = files.resolve(value or None)
    except files.FileError as exc:
        raise PtyError(exc.status, str(exc)) from None
    home = Path(os.path.realpath(files.HOME))
    real = Path(os.path.realpath(path))
    if real != home and home not in real.parents:
        raise PtyError(400, f"cwd {value!r} is outside the home ({files.HOME})")
    if not real.is_dir():
        raise PtyError(400, f"cwd {value!r} is not a folder")
    return str(real)


def checked_env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ENV:
        raise PtyError(400, f"env must map at most {MAX_ENV} names to strings")
    for name, text in value.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise PtyError(400, f"env name {name!r} is not a variable name (letters, digits, '_')")
        if not isinstance(text, str) or "\0" in text or len(text) > MAX_ENV_VALUE:
            raise PtyError(400, f"env {name} must be text without NUL bytes, at most {MAX_ENV_VALUE} characters")
    return dict(value)


def checked_command(value: Any) -> list[str] | None:
    """None (an interactive shell), a shell command line, or an argv list."""
    if value is None:
        return None
    shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    if isinstance(value, str) and value.strip() and "\0" not in value and len(value) <= MAX_COMMAND:
        return [shell, "-c", value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(a, str) and "\0" not in a for a in value)
        and sum(len(a) for a in value) <= MAX_COMMAND
    ):
        return list(value)
    raise PtyError(400, "command must be a non-empty command line or list of arguments (at most 64 KiB)")


@dataclass
class Pty:
    id: str
    cols: int
    rows: int
    cwd: str
    process: asyncio.subprocess.Process
    master: int | None
    created: float = field(default_factory=time.time)
    exit_code: int | None = None
    exited: float | None = None
    replay: bytearray = field(default_factory=bytearray)
    clients: set[PtyConnectHandler] = field(default_factory=set)
    # The task that waits for the process's end, held so that it is not collected before.
    waiter: asyncio.Future | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cols": self.cols,
            "rows": self.rows,
            "cwd": self.cwd,
            "status": "running" if self.exit_code is None else "exited",
            "exit_code": self.exit_code,
            "created": self.created,
        }

    def remember(self, data: bytes) -> None:
        self.replay += data
        excess = len(self.replay) - REPLAY_BYTES
        if excess > 0:
            # Cut after a line end when there is one near: a replay that starts inside an escape
            # sequence or a UTF-8 character shows garbage.
            cut = self.replay.find(b"\n", excess, excess + 4096)
            del self.replay[: cut + 1 if cut >= 0 else excess]

    def write(self, data: bytes) -> None:
        if self.master is None or self.exit_code is not None:
            raise PtyError(409, f"PTY {self.id!r} has exited")
        try:
            os.write(self.master, data)
        except BlockingIOError:
            raise PtyError(503, "the terminal's input is full; the program is not reading it") from None
        except OSError:
            pass

    def resize(self, cols: int, rows: int) -> None:
        if self.master is None or self.exit_code is not None:
            raise PtyError(409, f"PTY {self.id!r} has exited")
        # The kernel sends SIGWINCH to the terminal's foreground job itself.
        set_size(self.master, cols, rows)
        self.cols, self.rows = cols, rows

    def kill(self) -> None:
        if self.exit_code is None:
            processes.kill_session(self.process.pid)


class Ptys:
    def __init__(self) -> None:
        self.ptys: dict[str, Pty] = {}

    def _forget_old(self) -> None:
        now = time.time()
        exited = sorted((p for p in self.ptys.values() if p.exited is not None), key=lambda p: p.exited or 0)
        for number, pty in enumerate(exited):
            if number < len(exited) - MAX_EXITED_KEPT or now - (pty.exited or now) > EXITED_KEPT_SECONDS:
                del self.ptys[pty.id]

    def all(self) -> list[Pty]:
        self._forget_old()
        return list(self.ptys.values())

    def get(self, pty_id: str) -> Pty:
        self._forget_old()
        try:
            return self.ptys[pty_id]
        except KeyError:
            raise PtyError(404, f"there is no PTY {pty_id!r}") from None

    async def create(self, body: dict[str, Any]) -> Pty:
        self._forget_old()
        pty_id = body.get("id")
        if pty_id is None:
            pty_id = secrets.token_hex(6)
        elif not isinstance(pty_id, str) or not ID.fullmatch(pty_id):
            raise PtyError(400, "id may hold letters, digits, '-' and '_' (at most 64)")
        if pty_id in self.ptys:
            raise PtyError(409, f"PTY {pty_id!r} exists")
        cols, rows = checked_size(body.get("cols", 80), body.get("rows", 24))
        cwd = checked_cwd(body.get("cwd"))
        env = checked_env(body.get("env"))
        argv = checked_command(body.get("command"))
        if sum(1 for p in self.ptys.values() if p.exit_code is None) >= MAX_RUNNING:
            raise PtyError(429, f"at most {MAX_RUNNING} PTYs run at once in a sandbox; kill one first")
        if argv is None:
            argv = ["/bin/bash", "-i"] if os.path.exists("/bin/bash") else ["/bin/sh", "-i"]
        variables = {**environment.user(), "TERM": "xterm-256color", **env}
        try:
            process, master = await spawn(argv, variables, (cols, rows), cwd)
        except OSError as exc:
            raise PtyError(400, f"cannot start the command: {exc.strerror or exc}") from None
        processes.OWN.add(process.pid)  # its session's processes are the PTY's: the sweep leaves them be
        pty = Pty(pty_id, cols, rows, cwd, process, master)
        self.ptys[pty_id] = pty
        asyncio.get_running_loop().add_reader(master, self._readable, pty)
        pty.waiter = asyncio.ensure_future(self._wait(pty))
        return pty

    def _readable(self, pty: Pty) -> None:
        if pty.master is None:
            return
        try:
            data = os.read(pty.master, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: every process holding the terminal has closed it
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(pty.master)
            return
        pty.remember(data)
        for client in list(pty.clients):
            client.deliver(data)

    async def _wait(self, pty: Pty) -> None:
        code = await processes.exited(pty.process)
        await asyncio.sleep(0.05)  # let the last output through
        if pty.master is not None:
            self._readable(pty)
            loop = asyncio.get_running_loop()
            try:
                loop.remove_reader(pty.master)
            except (ValueError, RuntimeError):
                pass
            # Closing the master hangs the terminal up: what the process left on it gets SIGHUP.
            os.close(pty.master)
            pty.master = None
        processes.OWN.discard(pty.process.pid)
        pty.exit_code, pty.exited = code, time.time()
        for client in list(pty.clients):
            client.ended(code)
        pty.clients.clear()

    async def kill(self, pty_id: str, wait: float = 5.0) -> Pty:
        """Kill the PTY's process and all of its session; answers once it has exited (or `wait` passed)."""
        pty = self.get(pty_id)
        pty.kill()
        if pty.waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(pty.waiter), wait)
            except asyncio.TimeoutError:
                pass
        return pty


def exit_frame(code: int) -> dict[str, Any]:
    return {"type": "exit", "exit_code": code}


class PtyConnectHandler(websocket.WebSocketHandler):
    """/ptys/{id}/connect: the replay, then live output; input, resize and kill from the client."""

    def initialize(self, token: str, ptys: Ptys) -> None:
        self.token = token
        self.ptys = ptys
        self.pty: Pty | None = None
        self.unsent = 0

    def prepare(self) -> None:
        require_token(self, self.token)
        ACTIVITY["last"] = time.time()
        try:
            self.pty = self.ptys.get(self.path_args[0])
        except PtyError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None
        if self.pty.exit_code is None and len(self.pty.clients) >= MAX_CLIENTS:
            raise web.HTTPError(429, f"at most {MAX_CLIENTS} clients per PTY")

    def open(self, pty_id: str) -> None:
        pty = self.pty
        assert pty is not None  # prepare() found it
        if pty.replay:
            self.deliver(bytes(pty.replay))
        if pty.exit_code is not None:
            self.ended(pty.exit_code)
            return
        # On the same loop as the reader: nothing comes between the replay and the live output.
        pty.clients.add(self)

    def deliver(self, data: bytes) -> None:
        if self.unsent > MAX_UNSENT:
            self._drop()
            return
        try:
            sent = self.write_message(data, binary=True)
        except websocket.WebSocketClosedError:
            self._drop()
            return
        self.unsent += len(data)
        sent.add_done_callback(lambda _: self._sent(len(data)))

    def _sent(self, size: int) -> None:
        self.unsent -= size

    def _drop(self) -> None:
        if self.pty is not None:
            self.pty.clients.discard(self)
        self.close(1008, "the client read too slowly; connect again for the recent output")

    def ended(self, code: int) -> None:
        try:
            self.write_message(exit_frame(code))
            self.close(1000, "the PTY exited")
        except websocket.WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        pty = self.pty
        if pty is None or pty.exit_code is not None:
            return
        ACTIVITY["last"] = time.time()
        try:
            if isinstance(message, bytes):
                pty.write(message)
                return
            request = control_message(message)
            if request is None:
                return
            kind = request.get("type")
            if kind == "input" and isinstance(request.get("data"), str):
                pty.write(request["data"].encode())
            elif kind == "resize":
                size = requested_size(request)
                if size is not None:
                    pty.resize(*size)
            elif kind == "kill":
                pty.kill()
        except PtyError:
            pass  # the process is ending, or its input is full: the frame is dropped

    def on_close(self) -> None:
        # The PTY keeps running: only this client goes.
        if self.pty is not None:
            self.pty.clients.discard(self)
