"""Hub mode's REST API on the user's server: every /sandbox/api path, authenticated and authorised here
as in single-machine mode, then forwarded to the sandbox service by remote/forward.py.

Two handlers for the one path space: a websocket upgrade (a terminal, a PTY's connect, anything under
the API that upgrades) goes to the socket relay, every other request to the streamed HTTP forward.
"""

from __future__ import annotations

import json
from typing import Any, cast

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.auth.utils import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import httputil, web, websocket
from tornado.routing import PathMatches, Rule

from ...remote.forward import UNLIMITED_BODY, BrokenAnswer, Exchange, ForwardError, SandboxForwarder, api_path
from ...sandbox import errors
from ...sandbox.operations import attach_kernel
from .base import AUTH_RESOURCE, NEEDS_TOKEN, SANDBOX_ID, http_error


def _message(exc: BaseException | None, reason: str) -> str:
    if isinstance(exc, ForwardError):
        return exc.message
    if isinstance(exc, web.HTTPError) and exc.log_message:
        return exc.log_message % exc.args if exc.args else exc.log_message
    return reason


@web.stream_request_body
class ForwardHandler(APIHandler):
    """Any request under /sandbox/api but an upgrade: checked here, then streamed to the service and back."""

    auth_resource = AUTH_RESOURCE
    # OPTIONS stays Jupyter's own (its CORS answer), never the service's.
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")
    exchange: Exchange | None = None

    def initialize(self, forwarder: SandboxForwarder) -> None:
        self.forwarder = forwarder

    async def prepare(self) -> None:  # type: ignore[override]
        # Jupyter's own checks first: the origin, who the caller is, XSRF for a cookie session.
        await super().prepare()
        if self.request.method == "OPTIONS":
            return
        if not self.current_user:
            raise web.HTTPError(403, NEEDS_TOKEN)
        # Authorised before a byte of the body is read, let alone sent on (the action by method, as
        # @authorized decides it for the single-machine handlers).
        method = self.request.method or "GET"
        action = HTTP_METHOD_TO_AUTH_ACTION[method]
        if not await ensure_async(self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE)):
            raise web.HTTPError(403, "%s", f"you are not authorized to {action} sandboxes on this server")
        limit = self.forwarder.max_body_size or UNLIMITED_BODY
        cast(Any, self.request.connection).set_max_body_size(limit)
        try:
            rest = api_path(self.request.path, self.base_url)
            self.exchange = self.forwarder.exchange(
                self, method, rest, self.request.query, self.request.headers, self.base_url
            )
        except ForwardError as exc:
            raise web.HTTPError(exc.status, "%s", exc.message) from None

    async def data_received(self, chunk: bytes) -> None:
        if self.exchange is not None and not self._finished:
            await self.exchange.feed(chunk)

    async def _answer(self) -> None:
        if self.exchange is None or self._finished:
            return
        try:
            content_type = await self.exchange.finish()
        except ForwardError as exc:
            raise web.HTTPError(exc.status, "%s", exc.message) from None
        except BrokenAnswer as exc:
            self.log.warning(
                "jupyter-sandbox: the sandbox service's answer to %s broke off: %s", self.request.path, exc
            )
            cast(Any, self.request.connection).close()
            return
        self.finish(set_content_type=content_type or "application/json")

    # One decorated method per verb (checked again after prepare's check: @authorized decides the
    # action from the method, and remembers it per decorated function).
    @web.authenticated
    @authorized
    async def get(self, *args: Any) -> None:
        await self._answer()

    @web.authenticated
    @authorized
    async def head(self, *args: Any) -> None:
        await self._answer()

    @web.authenticated
    @authorized
    async def post(self, *args: Any) -> None:
        await self._answer()

    @web.authenticated
    @authorized
    async def put(self, *args: Any) -> None:
        await self._answer()

    @web.authenticated
    @authorized
    async def patch(self, *args: Any) -> None:
        await self._answer()

    @web.authenticated
    @authorized
    async def delete(self, *args: Any) -> None:
        await self._answer()

    def on_connection_close(self) -> None:
        if self.exchange is not None:
            self.exchange.client_left()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": _message(exc, self._reason)}))


class ForwardSocketHandler(WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """A websocket under /sandbox/api: checked here (before the upgrade: who, may they, Origin), then
    relayed frame by frame to the same path on the service."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, forwarder: SandboxForwarder) -> None:
        self.forwarder = forwarder
        self.upstream: websocket.WebSocketClientConnection | None = None
        self.unsent = 0  # bytes written to the client, not yet sent
        self.unsent_up = 0  # bytes written to the service, not yet sent

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        # An API socket: no redirect to the login page, a plain 403 before any upgrade.
        await JupyterHandler.prepare(self, _redirect_to_login=False)
        if not self.current_user:
            raise web.HTTPError(403, NEEDS_TOKEN)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": _message(exc, self._reason)}))

    def get_compression_options(self) -> dict[str, Any] | None:
        return None

    @web.authenticated
    @authorized
    async def get(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if not self.check_origin(self.request.headers.get("Origin")):
            # Checked before the service is dialled (the upgrade checks it again).
            raise web.HTTPError(403, "cross-origin websockets are not allowed")
        offered = self.request.headers.get("Sec-WebSocket-Protocol")
        subprotocols = [p.strip() for p in offered.split(",") if p.strip()] if offered else None
        try:
            rest = api_path(self.request.path, self.base_url)
            self.upstream = await self.forwarder.open_socket(
                rest, self.request.query, self.request.headers, self._from_service, subprotocols
            )
        except ForwardError as exc:
            raise web.HTTPError(exc.status, "%s", exc.message) from None
        await super().get(*args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return self.upstream.selected_subprotocol if self.upstream is not None else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _from_service(self, message: str | bytes | None) -> None:
        if message is None:
            upstream = self.upstream
            code = upstream.close_code if upstream is not None else None
            reason = upstream.close_reason if upstream is not None else None
            self.upstream = None
            self.close(code if code and code not in (1005, 1006) else 1000, reason or "the sandbox service closed")
            return
        if self.unsent > self.forwarder.max_unsent:
            self.close(1008, "the client read too slowly; connect again")
            self._close_upstream()
            return
        try:
            sent = self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self._close_upstream()
            return
        size = len(message)
        self.unsent += size
        sent.add_done_callback(lambda _: self._sent(size))

    def _sent(self, size: int) -> None:
        self.unsent -= size

    def _sent_up(self, size: int) -> None:
        self.unsent_up -= size

    def on_message(self, message: str | bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        if self.unsent_up > self.forwarder.max_unsent:
            self.close(1008, "the sandbox service read too slowly; connect again")
            self._close_upstream()
            return
        try:
            sent = upstream.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self.close(1011, "the sandbox service closed")
            return
        size = len(message)
        self.unsent_up += size
        sent.add_done_callback(lambda _: self._sent_up(size))

    def _close_upstream(self, code: int | None = None, reason: str | None = None) -> None:
        if self.upstream is not None:
            self.upstream.close(code, reason)
            self.upstream = None

    def on_close(self) -> None:
        code = self.close_code if self.close_code and self.close_code not in (1005, 1006) else None
        self._close_upstream(code, self.close_reason if code else None)


class HubKernelHandler(APIHandler):
    """POST .../kernel in hub mode: the kernel starts here, beside this server (kernels run with the
    user's files), and the service lends it the sandbox (POST .../lend); one orchestration with
    single-machine mode's (sandbox/operations.py: attach_kernel)."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, forwarder: SandboxForwarder) -> None:
        self.forwarder = forwarder

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.request.method != "OPTIONS" and not self.current_user:
            raise web.HTTPError(403, NEEDS_TOKEN)

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict) or set(body) - {"language"}:
            raise web.HTTPError(400, "the request body is an object with at most the field language")

        async def lend(box_id: str, kernel_id: str | None) -> Any:
            return await self.forwarder.post_json(f"sandboxes/{box_id}/lend", {"kernel_id": kernel_id})

        async def start(name: str, kernel_id: str) -> None:
            await self.kernel_manager.start_kernel(kernel_name=name, kernel_id=kernel_id)

        try:
            answer = await attach_kernel(sandbox_id, body.get("language"), start, lend)
        except ForwardError as exc:
            raise web.HTTPError(exc.status, "%s", exc.message) from None
        except errors.SandboxOperationError as exc:
            raise http_error(exc) from None
        self.set_status(201)
        self.set_header("Location", url_path_join(self.base_url, "api", "kernels", answer["kernel_id"]))
        self.finish(json.dumps(answer))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": _message(exc, self._reason)}))


class UpgradeMatches(PathMatches):
    """The path pattern, for websocket upgrade requests only (the rest of the same paths go elsewhere)."""

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return super().match(request)


def forward_routes(base_url: str, forwarder: SandboxForwarder) -> list[Any]:
    """Every path under {base_url}sandbox/api: upgrades to the socket relay, the rest to the HTTP forward."""
    api = url_path_join(base_url, "sandbox", "api")
    pattern = api + "/.*"
    args = {"forwarder": forwarder}
    return [
        Rule(UpgradeMatches(pattern), ForwardSocketHandler, args),
        # The one route whose work is partly here: its kernel runs beside this server.
        (f"{api}/sandboxes/{SANDBOX_ID}/kernel", HubKernelHandler, args),
        (pattern, ForwardHandler, args),
    ]
