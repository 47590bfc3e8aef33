"""The MCP server over streamable HTTP at {base_url}sandbox/mcp, behind the Jupyter server's own
authentication: the tornado handler authenticates and authorises the request (token, cookie and
XSRF rules as for every Jupyter API), then hands it to the MCP SDK's ASGI app. Its tools are the
stdio server's (mcp_server/server.py): they call this server's REST API with the server's token, so
the REST validation and operator maxima apply, and each call goes to the same audit log.

The sandbox server extension registers the route (`SandboxExtension.mcp_http`, on by default)."""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

AUTH_RESOURCE = "sandbox"
MCP_PATH = "/mcp"


class McpBridge:
    """The MCP ASGI app with its lifespan kept running in the server's event loop."""

    def __init__(self, serverapp: Any) -> None:
        # Built at the first request: the MCP SDK's import is not paid by servers nobody asks.
        self.serverapp = serverapp
        self.app: Any = None
        self.tools: Any = None
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _build(self) -> None:
        from mcp.server.transport_security import TransportSecuritySettings

        from ..client.connection import ServerAddress
        from ..config import load_config
        from ..mcp_server.server import SandboxMCP, build_server

        serverapp = self.serverapp
        token = serverapp.identity_provider.token
        if not token:
            raise RuntimeError("the MCP endpoint needs the server's token (IdentityProvider.token) to call its API")
        address = ServerAddress(f"http://127.0.0.1:{serverapp.port}{serverapp.base_url}", token)
        settings = SandboxMCP(config=load_config(serverapp.config))
        server, self.tools = build_server(settings, address)
        # Jupyter checks Host, auth and XSRF before the request gets here; the SDK's own host check
        # would refuse any address but loopback.
        self.app = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    async def start(self) -> None:
        if self._task is None:
            self._build()
            self._task = asyncio.ensure_future(self._lifespan())
        await self._started.wait()

    async def _lifespan(self) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "lifespan.startup"}
            await self._stop.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"].startswith("lifespan.startup"):
                self._started.set()

        await self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=10)
        if self.tools is not None:
            await self.tools.close()


class McpHandler(APIHandler):
    """POST (messages), GET (the server's event stream), DELETE (end a session)."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, bridge: McpBridge) -> None:
        self.bridge = bridge
        self._gone = asyncio.Event()

    def on_connection_close(self) -> None:
        self._gone.set()

    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self._relay()

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self._relay()

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        await self._relay()

    async def _relay(self) -> None:
        await self.bridge.start()
        request = self.request
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.protocol,
            "path": MCP_PATH,
            "raw_path": MCP_PATH.encode(),
            "query_string": request.query.encode(),
            "root_path": "",
            # Jupyter's credentials stay here: the MCP app needs none of them.
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in request.headers.get_all()
                if k.lower() not in ("authorization", "cookie", "x-xsrftoken")
            ],
            "client": (request.remote_ip, 0),
            "server": ("127.0.0.1", 0),
            "state": {},
        }
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": request.body or b"", "more_body": False}
            await self._gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if self._gone.is_set():
                return
            if message["type"] == "http.response.start":
                self.set_status(message["status"])
                self.clear_header("Content-Type")
                for key, value in message.get("headers", []):
                    self.add_header(key.decode("latin-1"), value.decode("latin-1"))
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    self.write(message["body"])
                if message.get("more_body"):
                    await self.flush()

        await self.bridge.app(scope, receive, send)
        if not self._finished:
            self.finish()


def mcp_routes(base_url: str, bridge: McpBridge) -> list[tuple[str, type, dict[str, Any]]]:
    return [(url_path_join(base_url, "sandbox", "mcp"), McpHandler, {"bridge": bridge})]
