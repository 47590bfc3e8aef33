"""Named PTYs in a sandbox: create, list, read, kill and resize them, and connect to one by websocket.

A PTY outlives its websocket (the agent keeps it and its recent output, agent/ptys.py): a client
that reconnects gets the replay, then live output; one that connects after the PTY exited gets the
replay and the exit frame. The relay passes the agent's output on as opaque bytes and rebuilds the
one text frame it passes on (the exit frame) from a checked exit code.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.httpclient import HTTPClientError, HTTPRequest

from ...sandbox import errors
from ...sandbox import ptys as checks
from .base import SandboxAPIHandler, http_error, url_quote
from .sandboxes import sandbox_url
from .streaming import CancelledOnClose, stream_ndjson
from .terminals import PtyHandler

PTY_ID = r"(?P<pty_id>[A-Za-z0-9_-]{1,64})"


class PtysHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.list_ptys(sandbox_id))

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        pty = await self.service.create_pty(sandbox_id, self.json_body())
        self.created(pty, sandbox_url(self.base_url, sandbox_id, "ptys", url_quote(pty["id"])))


class PtyItemHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, pty_id: str) -> None:
        self.reply(await self.service.get_pty(sandbox_id, pty_id))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str, pty_id: str) -> None:
        self.reply(await self.service.kill_pty(sandbox_id, pty_id))


class PtyResizeHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, pty_id: str) -> None:
        self.reply(await self.service.resize_pty(sandbox_id, pty_id, self.json_body()))


class PtyConnectHandler(PtyHandler):
    """GET .../ptys/{pty_id}/connect (websocket): the same frames as .../pty, and a last
    {"type": "exit", "exit_code"} when the PTY's process ends."""

    exit_key = "exit_code"

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, pty_id: str) -> None:  # type: ignore[override]
        self.check_query()
        try:
            agent, _ = await self.service.pty_endpoint(sandbox_id, pty_id)
        except errors.SandboxOperationError as exc:
            raise http_error(exc) from None
        request = HTTPRequest(
            f"ws://{agent.host}:{agent.port}/ptys/{pty_id}/connect",
            headers={"Authorization": f"token {agent.token}"},
            connect_timeout=10,
        )
        await self.connect_upstream(request, sandbox_id)

    async def connect_upstream(self, request: HTTPRequest, *args: Any) -> None:
        try:
            await super().connect_upstream(request, *args)
        except web.HTTPError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, HTTPClientError) and cause.code in (404, 429):
                # Gone since it was looked up (it aged out), or too many clients on it.
                message = "the PTY is not there" if cause.code == 404 else "too many clients on this PTY"
                raise web.HTTPError(cause.code, message) from None
            raise

    def on_message(self, message: str | bytes) -> None:
        frame = checks.client_frame(message)
        if frame is not None:
            super().on_message(frame)


class PtyInputHandler(SandboxAPIHandler):
    """POST .../ptys/{pty_id}/input {"data": TEXT}: type into a running PTY without a websocket
    (`%sandbox pty send` in hub mode, scripts): {"sent": characters}."""

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, pty_id: str) -> None:
        self.reply({"sent": await self.service.pty_send(sandbox_id, pty_id, self.json_body().get("data"))})


class PtyOutputHandler(CancelledOnClose, SandboxAPIHandler):
    """GET .../ptys/{pty_id}/output?until=TEXT&timeout=SECONDS: the PTY's recent output and what follows
    (`%sandbox pty wait` in hub mode), as newline-delimited JSON (handlers/streaming.py): {"output": text}
    objects, then {"exit_code": N} when its process exits or {"exit_code": null} once `until` was
    printed. Closing the connection stops following (the PTY keeps running)."""

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, pty_id: str) -> None:
        self.cancel = cancel = threading.Event()
        until = self.get_query_argument("until", "") or None
        timeout = checks.follow_timeout(self.get_query_argument("timeout", "60"))
        await self.service.get_pty(sandbox_id, pty_id)  # an unknown sandbox or PTY: the status line says so

        async def follow(put: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
            code = await self.service.pty_follow(
                sandbox_id, pty_id, lambda text: put({"output": text}), until=until, timeout=timeout, cancel=cancel
            )
            return {"exit_code": code}

        await stream_ndjson(self, cancel, follow)
