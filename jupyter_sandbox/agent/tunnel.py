"""A byte tunnel to a port on the sandbox's own loopback, for previews.

The host asks `GET /tunnel/{port}` with `Upgrade: sandbox-tunnel`; the agent answers 101 and from then
on copies bytes both ways between that connection and 127.0.0.1:{port} inside the sandbox. HTTP,
chunked bodies, server-sent events and websockets pass untouched; the host speaks HTTP over it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tornado import iostream, web
from tornado.tcpclient import TCPClient

from .auth import require_token
from .splice import detach, join
from .usage import ACTIVITY


class TunnelHandler(web.RequestHandler):
    def initialize(self, token: str, **_: Any) -> None:
        self.token = token

    async def get(self, port: str) -> None:
        require_token(self, self.token)
        number = int(port)
        if not 1 <= number <= 65535:
            raise web.HTTPError(400, "port must be from 1 to 65535")
        if self.request.headers.get("Upgrade", "").lower() != "sandbox-tunnel":
            raise web.HTTPError(400, "this endpoint needs Upgrade: sandbox-tunnel")
        try:
            upstream = await asyncio.wait_for(TCPClient().connect("127.0.0.1", number), timeout=5)
        except (OSError, asyncio.TimeoutError, iostream.StreamClosedError):
            raise web.HTTPError(502, f"nothing is listening on port {number} in the sandbox") from None
        client = detach(self.request)
        await client.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: sandbox-tunnel\r\nConnection: Upgrade\r\n\r\n"
        )
        ACTIVITY["last"] = time.time()
        await join(client, upstream)
        # The connection was detached and is closed: there is no response left for tornado to finish.
        self._finished = True
