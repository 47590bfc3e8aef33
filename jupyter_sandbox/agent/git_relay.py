"""The sandbox's end of the host's git credential proxy, for one git call at a time.

While a clone, pull or push with credentials runs, the agent listens on a port of the sandbox's own
loopback and git is told to use it as its HTTP proxy. The host keeps a connection waiting on
`GET /git/relay/{call}` (Upgrade: sandbox-relay); each connection made to the port is paired with
one of those (101) and bytes are copied both ways. The credential is added on the host: nothing that
passes here in the sandbox's direction carries it. Anything in the sandbox can connect to the port
while the call runs; the host decides what such a connection may do.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

from tornado import web

from .auth import require_token
from .splice import buffered, copy, detach, take_socket, until_either_ends

REGISTRATION_WAIT = 30.0
MAX_WAITING = 8
CALL_ID = re.compile(r"^[0-9a-f]{32}$")


class Relay:
    """The listening port of one call and the connections waiting on it for the host."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(MAX_WAITING)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.waiting: asyncio.Queue[socket.socket] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.joined: set[socket.socket] = set()
        self._accepting = asyncio.ensure_future(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self.listener)
            except (OSError, asyncio.CancelledError):
                return
            if self.waiting.qsize() >= MAX_WAITING:
                sock.close()
                continue
            sock.setblocking(False)
            self.waiting.put_nowait(sock)

    async def take(self) -> socket.socket | None:
        """The next connection made to the port, or None once the call is over."""
        getting = asyncio.ensure_future(self.waiting.get())
        ending = asyncio.ensure_future(self.closed.wait())
        await asyncio.wait([getting, ending], return_when=asyncio.FIRST_COMPLETED)
        ending.cancel()
        if getting.done() and not self.closed.is_set():
            return getting.result()
        getting.cancel()
        return None

    def close(self) -> None:
        self.closed.set()
        self._accepting.cancel()
        self.listener.close()
        while not self.waiting.empty():
            self.waiting.get_nowait().close()
        for sock in list(self.joined):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Relays:
    """The calls under way, by id; a relay request may arrive just before its call registers."""

    def __init__(self) -> None:
        self.calls: dict[str, Relay] = {}
        self._changed: asyncio.Condition | None = None

    @property
    def changed(self) -> asyncio.Condition:
        # Made on first use, inside the agent's event loop.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def open(self, call_id: str) -> Relay:
        if call_id in self.calls:
            raise ValueError("that git call is already under way")
        relay = Relay(call_id)
        self.calls[call_id] = relay
        async with self.changed:
            self.changed.notify_all()
        return relay

    def close(self, relay: Relay) -> None:
        self.calls.pop(relay.call_id, None)
        relay.close()

    async def find(self, call_id: str) -> Relay | None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: call_id in self.calls), REGISTRATION_WAIT)
            except asyncio.TimeoutError:
                return None
        return self.calls.get(call_id)


class RelayHandler(web.RequestHandler):
    """GET /git/relay/{call}: wait for a connection to the call's proxy port, then carry it."""

    def initialize(self, token: str, relays: Relays, **_: Any) -> None:
        self.token = token
        self.relays = relays

    async def get(self, call_id: str) -> None:
        require_token(self, self.token)
        if not CALL_ID.match(call_id):
            raise web.HTTPError(400, "not a call id")
        if self.request.headers.get("Upgrade", "").lower() != "sandbox-relay":
            raise web.HTTPError(400, "this endpoint needs Upgrade: sandbox-relay")
        relay = await self.relays.find(call_id)
        if relay is None:
            raise web.HTTPError(404, "no such git call")
        local = await relay.take()
        if local is None:
            raise web.HTTPError(410, "the git call is over")
        host = detach(self.request)
        relay.joined.add(local)
        remote: socket.socket | None = None
        try:
            await host.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: sandbox-relay\r\nConnection: Upgrade\r\n\r\n"
            )
            early = buffered(host)
            remote = take_socket(host)
            relay.joined.add(remote)
            if early:
                await asyncio.get_running_loop().sock_sendall(local, early)
            await until_either_ends(copy(local, remote), copy(remote, local))
        except OSError:
            pass
        finally:
            for sock in (local, remote):
                if sock is not None:
                    relay.joined.discard(sock)
                    sock.close()
        # The connection was detached and is closed: there is no response left for tornado to finish.
        self._finished = True
