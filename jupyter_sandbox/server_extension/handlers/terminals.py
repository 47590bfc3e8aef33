"""A terminal in a sandbox: a websocket relayed to the agent's /pty, authenticated before the upgrade."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket
from tornado.httpclient import HTTPRequest

from ...sandbox import errors
from ...sandbox.operations import SandboxOperations
from .. import validation
from .base import AUTH_RESOURCE, http_error


class PtyHandler(WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """A terminal in the sandbox. Authenticated before the upgrade; then frames are relayed both ways."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, service: SandboxOperations) -> None:
        self.service = service
        self.upstream: websocket.WebSocketClientConnection | None = None

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        # An API socket: no redirect to the login page, a plain 403 before any upgrade.
        await JupyterHandler.prepare(self, _redirect_to_login=False)
        if not self.current_user:
            raise web.HTTPError(403, "authentication is required")

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:  # type: ignore[override]
        operation = validation.operation_for(
            validation.route_of(self.request.path, self.base_url, self.path_kwargs), "GET"
        )
        if operation is not None:
            try:
                validation.check_query(operation, self.request.query_arguments)
            except validation.RequestError as exc:
                raise web.HTTPError(400, exc.message) from None
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
        try:
            self.upstream = await websocket.websocket_connect(request, on_message_callback=self._from_sandbox)
        except Exception as exc:
            raise web.HTTPError(502, f"could not open a terminal in the sandbox: {exc}") from None
        await super().get(sandbox_id)

    def open(self, sandbox_id: str) -> None:
        pass

    def _from_sandbox(self, message: str | bytes | None) -> None:
        if message is None:
            self.close(1000, "the terminal ended")
            return
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        if self.upstream is not None:
            self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
