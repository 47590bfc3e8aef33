"""Processes in a sandbox: one-shot exec, sessions, their commands, and command logs (followed or not)."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from jupyter_server.auth.decorator import authorized
from tornado import web

from ...sandbox import errors
from .base import SandboxAPIHandler, url_quote
from .sandboxes import sandbox_url
from .streaming import CancelledOnClose, stream_ndjson

SESSION_ID = r"(?P<session_id>[A-Za-z0-9_-]{1,64})"
COMMAND_ID = r"(?P<command_id>[0-9a-f]{1,32})"


class ExecHandler(CancelledOnClose, SandboxAPIHandler):
    """POST .../process/exec: run a command, answered when it ends; with "stream": true its output as
    it comes (newline-delimited JSON, handlers/streaming.py: {"stream", "text"} objects, then
    {"exit_code", "timed_out"}), and the command is killed when the client goes."""

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        body = self.json_body()
        if body.get("stream") is True:
            self.cancel = cancel = threading.Event()
            # Refusals (bad input, an unknown or another user's sandbox) are the status line.
            self.service.checked_exec(body.get("command"), body.get("cwd"), body.get("env"), body.get("timeout", 60))
            await self.service.sandbox(sandbox_id)

            async def run(put: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
                return await self.service.exec_output(
                    sandbox_id, body, lambda stream, text: put({"stream": stream, "text": text}), cancel
                )

            await stream_ndjson(self, cancel, run)
            return
        if "stream" in body and body["stream"] is not False:
            raise errors.InvalidInput("stream must be true or false")
        self.reply(
            await self.service.exec(
                sandbox_id, body.get("command"), body.get("cwd"), body.get("env"), body.get("timeout", 60)
            )
        )


class SessionsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.list_sessions(sandbox_id))

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        body = self.json_body()
        session = await self.service.create_session(sandbox_id, body.get("id"), body.get("cwd"), body.get("env"))
        self.created(session, sandbox_url(self.base_url, sandbox_id, "sessions", url_quote(session["id"])))


class SessionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, session_id: str) -> None:
        self.reply(await self.service.get_session(sandbox_id, session_id))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str, session_id: str) -> None:
        await self.service.delete_session(sandbox_id, session_id)
        self.no_content()


class CommandsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, session_id: str) -> None:
        body = self.json_body()
        run_async = bool(body.get("run_async"))
        answer = await self.service.run_command(sandbox_id, session_id, body.get("command"), run_async)
        self.reply(answer, status=202 if run_async else 200)


class CommandActionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, session_id: str, command_id: str, action: str) -> None:
        if action == "input":
            self.reply(await self.service.send_input(sandbox_id, session_id, command_id, self.json_body()))
        else:
            self.reply(await self.service.kill_command(sandbox_id, session_id, command_id))


class LogsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, session_id: str, command_id: str) -> None:
        if not self.flag("follow"):
            self.reply(await self.service.command_logs(sandbox_id, session_id, command_id))
            return
        # Followed logs: newline-delimited JSON, relayed line by line as the agent sends it.
        self.set_header("Content-Type", "application/x-ndjson")

        async def line(chunk: dict[str, Any]) -> None:
            self.write(json.dumps(chunk) + "\n")
            await self.flush()

        await self.service.follow_logs(sandbox_id, session_id, command_id, line)
        self.finish()
