"""A proxy kernel's sandbox, for a kernel that runs on another machine than the engine (hub mode).

POST/DELETE .../kernels/{kernel_id}/sandbox bring a kernel's sandbox up and release it; GET
.../sandboxes/{id}/kernel/events waits for what happens to it; POST .../kernel/{interrupt,restart,activity}
act on its Python process; .../kernel/channels (websocket) carries one of the inner kernel's channels
as bytes. The same operations the local kernel calls (operations.py), for the sandbox's owner only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web, websocket

from ...sandbox import errors
from ...sandbox.kernel_channels import CHUNK, LEASES, open_tunnel
from .base import SandboxAPIHandler, http_error
from .terminals import PtyHandler

KERNEL_ID = r"(?P<kernel_id>[0-9A-Za-z_-]{1,64})"
# Bytes a slow kernel side may leave unsent before its channel is dropped (zmq reconnects it).
MAX_UNSENT = 16 * 1024 * 1024


class KernelSandboxHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, kernel_id: str) -> None:
        body = self.json_body()
        self.reply((await self.service.bring_up_kernel(kernel_id, body.get("workspace"))).to_rest())

    @web.authenticated
    @authorized
    async def delete(self, kernel_id: str) -> None:
        self.reply({"released": await self.service.release_kernel(kernel_id)})


class KernelEventsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        after, wait = self.query("after") or "0", self.query("wait") or "25"
        try:
            numbers = int(after), float(wait)
        except ValueError:
            raise web.HTTPError(400, "after must be a whole number and wait a number of seconds") from None
        self.reply(await self.service.kernel_events(sandbox_id, *numbers))


class KernelActionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, action: str) -> None:
        self.reply(await self.service.kernel_action(sandbox_id, action, self.json_body().get("hard", False)))


class KernelChannelsHandler(PtyHandler):
    """GET .../kernel/channels?channel=shell|iopub|stdin|control|hb (websocket): the channel's bytes,
    binary frames both ways. Authenticated and owner-checked before the upgrade (another user's
    sandbox is a 404); the agent's tunnel is opened first, so a refusal is an HTTP status."""

    def initialize(self, service: Any) -> None:
        super().initialize(service)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pump: asyncio.Task | None = None
        self.kernel_id: str | None = None

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:  # type: ignore[override]
        self.check_query()
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise web.HTTPError(400, "this route is a websocket: connect with an Upgrade: websocket request")
        try:
            agent, port, kernel_id = await self.service.kernel_channel(
                sandbox_id, self.get_query_argument("channel", "")
            )
            self.reader, self.writer = await open_tunnel(agent, port)
        except errors.SandboxOperationError as exc:
            raise http_error(exc) from None
        # A kernel connected from another machine is alive here (housekeeping leaves its sandbox be).
        self.kernel_id = kernel_id
        LEASES.take(kernel_id)
        try:
            await websocket.WebSocketHandler.get(self, sandbox_id)
        finally:
            if self.ws_connection is None:  # refused at the handshake: on_close never comes
                self._close_stream()
                self._give_back()

    def open(self, *args: Any) -> None:
        self.set_nodelay(True)
        self.pump = asyncio.ensure_future(self._from_sandbox_stream())

    async def _from_sandbox_stream(self) -> None:
        assert self.reader is not None
        try:
            while True:
                data = await self.reader.read(CHUNK)
                if not data:
                    break
                if self.unsent > MAX_UNSENT:
                    break
                self.unsent += len(data)
                try:
                    await self.write_message(data, binary=True)
                finally:
                    self.unsent -= len(data)
        except (OSError, websocket.WebSocketClosedError, asyncio.CancelledError):
            pass
        finally:
            self._close_stream()
            self.close(1000, "the kernel's channel ended")

    async def on_message(self, message: str | bytes) -> None:  # type: ignore[override]
        if self.writer is None or isinstance(message, str):
            return  # only bytes travel on a channel
        try:
            self.writer.write(message)
            await self.writer.drain()  # backpressure: the next frame is read once this one is taken
        except OSError:
            self.close(1011, "the kernel's channel broke")

    def _close_stream(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _give_back(self) -> None:
        kernel_id, self.kernel_id = self.kernel_id, None
        LEASES.give_back(kernel_id)

    def on_close(self) -> None:
        self._close_stream()
        self._give_back()
        if self.pump is not None:
            self.pump.cancel()
