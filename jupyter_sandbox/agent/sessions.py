"""Background shell sessions: commands that keep running, with their logs kept apart by stream."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import environment, processes

LOG_ROOT = Path("/tmp/.jupyter-sandbox/sessions")
MAX_SESSIONS = 100
MAX_COMMANDS = 1000


@dataclass
class Command:
    id: str
    command: str
    process: asyncio.subprocess.Process
    stdout_path: Path
    stderr_path: Path
    started: float = field(default_factory=time.time)
    exit_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # The task that waits for the command's end, held here so that it is not collected before.
    reaper: asyncio.Future | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "exit_code": self.exit_code,
            "started": self.started,
            "running": self.exit_code is None,
        }


@dataclass
class Session:
    id: str
    cwd: str
    env: dict[str, str]
    commands: dict[str, Command] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cwd": self.cwd,
            "created": self.created,
            "commands": [c.describe() for c in self.commands.values()],
        }


class SessionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Sessions:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    def create(self, session_id: str | None, cwd: str, env: dict[str, str]) -> Session:
        session_id = session_id or secrets.token_hex(6)
        if session_id in self.sessions:
            raise SessionError(409, f"session {session_id!r} exists")
        if len(self.sessions) >= MAX_SESSIONS:
            raise SessionError(429, f"at most {MAX_SESSIONS} sessions at once")
        session = Session(session_id, cwd, env)
        self.sessions[session_id] = session
        return session

    def get(self, session_id: str) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionError(404, f"there is no session {session_id!r}") from None

    def command(self, session_id: str, command_id: str) -> Command:
        try:
            return self.get(session_id).commands[command_id]
        except KeyError:
            raise SessionError(404, f"there is no command {command_id!r} in session {session_id!r}") from None

    async def run(self, session_id: str, command: str) -> Command:
        session = self.get(session_id)
        if len(session.commands) >= MAX_COMMANDS:
            raise SessionError(429, f"at most {MAX_COMMANDS} commands per session")
        command_id = secrets.token_hex(6)
        folder = LOG_ROOT / session_id
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stdout_path, stderr_path = folder / f"{command_id}.out", folder / f"{command_id}.err"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            # Under a supervisor that keeps what the command leaves running (it is a background
            # session) but holds on to it, so a kill ends it all.
            process = await asyncio.create_subprocess_exec(
                *processes.supervised(["/bin/sh", "-c", command], "keep"),
                cwd=session.cwd,
                env={**environment.user(), **session.env},
                stdin=asyncio.subprocess.PIPE,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=processes.supervisor_preexec,
            )
        processes.OWN.add(process.pid)
        record = Command(command_id, command, process, stdout_path, stderr_path)
        session.commands[command_id] = record

        async def reap() -> None:
            record.exit_code = await processes.supervise(process)
            record.done.set()

        record.reaper = asyncio.ensure_future(reap())
        return record

    def kill(self, session_id: str, command_id: str) -> None:
        record = self.command(session_id, command_id)
        if record.exit_code is None:
            processes.kill_tree(record.process.pid)

    async def send_input(self, session_id: str, command_id: str, data: bytes) -> None:
        record = self.command(session_id, command_id)
        if record.exit_code is not None or record.process.stdin is None:
            raise SessionError(409, "the command has finished")
        record.process.stdin.write(data)
        await record.process.stdin.drain()

    def delete(self, session_id: str) -> None:
        session = self.get(session_id)
        for command_id in session.commands:
            self.kill(session_id, command_id)
        del self.sessions[session_id]
