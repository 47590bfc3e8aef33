"""Reaching the app inside a sandbox, for the preview proxy.

Two roads to an app listening on PORT in the sandbox:
- straight to the container's own address, when the Docker engine is on this machine and the app
  listens on all addresses (`python -m http.server`, most servers told `--host 0.0.0.0`): one hop,
  the same as a browser next to the container would have;
- through the agent's tunnel (`GET /tunnel/PORT`, upgraded to a byte pipe to 127.0.0.1:PORT inside
  the sandbox), when the app listens on the sandbox's loopback only, or the engine is elsewhere.
The first road is tried first and, when refused, not again for a few seconds.

Connections the app keeps alive are kept for the next request to the same sandbox, container and
port. Sandbox lookups are cached for a moment: a page loads many files in a burst.
"""

from __future__ import annotations

import asyncio
import html
import socket
import time
from typing import Any

from ...sandbox import secrets as sandbox_secrets
from ...sandbox.docker_backend import SandboxError
from ...sandbox.errors import SandboxOperationError
from ...sandbox.manager import Sandbox, SandboxManager
from ...sandbox.spec import AGENT_PORT, user_ports
from .http1 import Channel, ProtocolError, parse_response
from .pages import PreviewFailure

SANDBOX_CACHE_SECONDS = 2.0
# After the container's address refused a port, go through the tunnel for this long before trying again.
DIRECT_REFUSED_SECONDS = 5.0
CONNECT_TIMEOUT = 10.0
KEPT_PER_APP = 8
KEPT_SECONDS = 30.0

Key = tuple[str, str, int]  # sandbox id, container id, port


class Upstreams:
    """Sandboxes looked up, and connections to their apps (new, or kept from an earlier request)."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager
        self._sandboxes: dict[str, tuple[float, Sandbox]] = {}
        self._kept: dict[Key, list[tuple[float, Channel]]] = {}
        self._tunnel_only: dict[Key, float] = {}

    async def sandbox(self, sandbox_id: str) -> Sandbox:
        """The running sandbox of a preview; an idle-stopped one is started again (a visit wakes it)."""
        loop = asyncio.get_running_loop()
        cached = self._sandboxes.get(sandbox_id)
        if cached and time.monotonic() - cached[0] < SANDBOX_CACHE_SECONDS:
            sandbox = cached[1]
        else:
            try:
                sandbox = await loop.run_in_executor(None, self.manager.get, sandbox_id)
            except SandboxError:
                raise PreviewFailure(404, "No such sandbox", "The sandbox of this preview does not exist.") from None
            self._sandboxes[sandbox_id] = (time.monotonic(), sandbox)
        if not sandbox.running and self.manager.was_idle_stopped(sandbox):
            sandbox = await loop.run_in_executor(None, self._wake, sandbox)
            self._sandboxes[sandbox_id] = (time.monotonic(), sandbox)
        if not sandbox.running or AGENT_PORT not in sandbox.host_ports:
            raise PreviewFailure(
                503,
                "The sandbox is stopped",
                f"Sandbox {html.escape(sandbox.id)} is {html.escape(sandbox.state)}; start it and reload.",
            )
        self.manager.note_activity(sandbox.id)
        return sandbox

    def _wake(self, sandbox: Sandbox) -> Sandbox:
        started = self.manager.start(sandbox)
        self.manager.wait_for_agent(started)
        return self.manager.get(sandbox.id)

    # -- kept connections -------------------------------------------------------------------

    def kept(self, key: Key) -> Channel | None:
        kept = self._kept.get(key, [])
        while kept:
            since, channel = kept.pop()
            if time.monotonic() - since < KEPT_SECONDS and channel.idle_and_open():
                return channel
            channel.close()
        return None

    def keep(self, key: Key, channel: Channel) -> None:
        kept = self._kept.setdefault(key, [])
        refused = self._tunnel_only.get(key)
        if refused is not None and channel.via_tunnel and time.monotonic() - refused > DIRECT_REFUSED_SECONDS:
            # The straight road was refused a while ago (the app may have been starting): try it again.
            channel.close()
            return
        if len(kept) < KEPT_PER_APP and not channel.buffer:
            kept.append((time.monotonic(), channel))
        else:
            channel.close()

    # -- new connections --------------------------------------------------------------------

    async def connect(self, sandbox: Sandbox, port: int) -> Channel:
        key = (sandbox.id, sandbox.container_id, port)
        address = sandbox.direct_address()
        if address and time.monotonic() - self._tunnel_only.get(key, 0.0) > DIRECT_REFUSED_SECONDS:
            channel = await self._direct(address, port)
            if channel is not None:
                return channel
            self._tunnel_only[key] = time.monotonic()
        return await self._tunnel(sandbox, port)

    async def _direct(self, address: str, port: int) -> Channel | None:
        try:
            return await _connect(address, port)
        except (OSError, asyncio.TimeoutError):
            return None  # not listening on the container's address (or not reachable): the tunnel decides

    async def _tunnel(self, sandbox: Sandbox, port: int) -> Channel:
        channel = None
        try:
            channel = await _connect(*sandbox.agent_endpoint())
            token = sandbox_secrets.agent_token(sandbox.id)
            await channel.send(
                (
                    f"GET /tunnel/{port} HTTP/1.1\r\nHost: agent\r\nAuthorization: token {token}\r\n"
                    "Upgrade: sandbox-tunnel\r\nConnection: Upgrade\r\n\r\n"
                ).encode()
            )
            raw = await asyncio.wait_for(channel.read_head(), CONNECT_TIMEOUT)
            status = int(parse_response(raw).first[1]) if raw else 0
        except (OSError, SandboxError, asyncio.TimeoutError, ProtocolError):
            if channel is not None:
                channel.close()
            raise PreviewFailure(502, "The sandbox did not answer", "Its agent could not be reached.") from None
        if status == 101:
            channel.via_tunnel = True
            return channel
        channel.close()
        if status == 502:
            raise PreviewFailure(502, f"Nothing is listening on port {port}", await self.listening(sandbox))
        raise PreviewFailure(502, "The sandbox refused the preview", f"Its agent answered {status}.")

    async def listening(self, sandbox: Sandbox) -> str:
        """A sentence (HTML) naming the ports listening in the sandbox, for the 502 page."""
        try:
            agent = self.manager.agent(sandbox)
            usage: dict[str, Any] = await agent.usage()  # async: no thread is held by a slow agent
        except (SandboxError, SandboxOperationError):
            return "The ports listening in the sandbox could not be read."
        ports = user_ports(usage.get("ports", []))
        if not ports:
            return "No port is listening in the sandbox right now. Start your server and reload."
        return "Ports listening in the sandbox: " + ", ".join(html.escape(str(p)) for p in ports) + "."


async def _connect(host: str, port: int) -> Channel:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), CONNECT_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return Channel(sock)
