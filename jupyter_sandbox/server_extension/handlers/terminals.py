"""A terminal in a sandbox: a websocket relayed to the agent's /pty, authenticated before the upgrade.

The agent runs in the sandbox, so what it sends is relayed with care: output as opaque binary frames
(at most MAX_FRAME each, and a client that lets more than MAX_UNSENT pile up is dropped rather than
buffered for without end), and of its text frames only a well-formed exit frame, rebuilt.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket
from tornado.httpclient import HTTPRequest

from ...sandbox import errors
from ...sandbox.ptys import exit_code_of
from .. import validation
from .base import AUTH_RESOURCE, Served, ServedOperations, error_reply, http_error, unauthenticated

MAX_FRAME = 1024 * 1024
MAX_UNSENT = 8 * 1024 * 1024


class PtyHandler(ServedOperations, WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """A terminal in the sandbox. Authenticated before the upgrade; then frames are relayed both ways."""

    auth_resource = AUTH_RESOURCE
    # The exit frame's key for the code: the sidebar's terminal has always said "code".
    exit_key = "code"

    def initialize(self, service: Served) -> None:
        self.serve(service)
        self.upstream: websocket.WebSocketClientConnection | None = None
        self.unsent = 0

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        # An API socket: no redirect to the login page, a plain 403 before any upgrade.
        await JupyterHandler.prepare(self, _redirect_to_login=False)
        if not self.current_user:
            raise unauthenticated(self)
        await self.refuse_strangers()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Refusals before the upgrade as the REST API gives them: JSON {"message"}, not a page."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message % exc.args if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        error_reply(self, status_code, message)

    def check_query(self) -> None:
        operation = validation.operation_for(
            validation.route_of(self.request.path, self.base_url, self.path_kwargs), "GET"
        )
        if operation is not None:
            try:
                validation.check_query(operation, self.request.query_arguments)
            except validation.RequestError as exc:
                raise web.HTTPError(400, exc.message) from None

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:  # type: ignore[override]
        self.check_query()
        cols, rows = self.get_query_argument("cols", "80"), self.get_query_argument("rows", "24")
        if not (cols.isdigit() and rows.isdigit() and 0 < int(cols) <= 1000 and 0 < int(rows) <= 1000):
            raise web.HTTPError(400, "cols and rows must be whole numbers from 1 to 1000")
        try:
            agent = await self.service.terminal(sandbox_id)
        except errors.SandboxOperationError as exc:
            raise http_error(exc) from None
        request = HTTPRequest(
            f"ws://{agent.host}:{agent.port}/pty?cols={cols}&rows={rows}",
            headers={"Authorization": f"token {agent.token}"},
            connect_timeout=10,
        )
        await self.connect_upstream(request, sandbox_id)

    async def connect_upstream(self, request: HTTPRequest, *args: Any) -> None:
        """Open the agent's websocket, then upgrade the client's (so a refusal is an HTTP error)."""
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            # Checked before the agent is called: nothing would ever close its socket.
            raise web.HTTPError(400, "this route is a websocket: connect with an Upgrade: websocket request")
        try:
            self.upstream = await websocket.websocket_connect(
                request, on_message_callback=self._from_sandbox, max_message_size=MAX_FRAME
            )
        except Exception as exc:
            raise web.HTTPError(502, f"could not open a terminal in the sandbox: {exc}") from exc
        await super().get(*args)

    def open(self, *args: Any) -> None:
        pass

    def _from_sandbox(self, message: str | bytes | None) -> None:
        if message is None:
            self.close(1000, "the terminal ended")
            return
        if isinstance(message, bytes):
            self._relay(message)
            return
        code = exit_code_of(message, self.exit_key)
        if code is not None:
            self._relay(json.dumps({"type": "exit", self.exit_key: code}))

    def _relay(self, message: str | bytes) -> None:
        if self.unsent > MAX_UNSENT:
            self.close(1008, "the client read too slowly; connect again")
            self._close_upstream()
            return
        try:
            sent = self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            return
        size = len(message)
        self.unsent += size
        sent.add_done_callback(lambda _: self._sent(size))

    def _sent(self, size: int) -> None:
        self.unsent -= size

    def on_message(self, message: str | bytes) -> None:
        if self.upstream is not None:
            self.upstream.write_message(message, binary=isinstance(message, bytes))

    def _close_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def on_close(self) -> None:
        self._close_upstream()
