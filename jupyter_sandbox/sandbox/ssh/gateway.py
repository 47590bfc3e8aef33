"""The SSH gateway: an asyncssh server on the Jupyter server's event loop that leads into sandboxes.

Trust: the SSH client is a stranger until it logs in with a token (the user name, see tokens.py) or
a registered key (keys.py), and even then it only ever reaches the one sandbox the login names, as
the sandbox user, through that sandbox's agent: a shell is the agent's PTY socket, a command its
channel socket, sftp/scp its file API, `-L` its tunnel to the sandbox's own loopback. Nothing is
forwarded to the host or anywhere else (no remote forwarding, agent forwarding, X11 or unix
sockets), and the destination of a `-L` is judged from the request's text before any connection is
made. Failed logins fail slowly and alike, with a bounded number waiting per source and in all, so
a flood of them costs the server little and says nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import Any

import asyncssh
from asyncssh.stream import SSHTCPStreamSession
from tornado import websocket
from tornado.httpclient import HTTPRequest
from traitlets import Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from .. import errors
from ..agent_client import AgentClient
from ..agent_http import AgentResponse
from ..manager import Sandbox
from ..operations import SandboxOperations, UploadSlot
from ..spec import RESERVED_PORTS
from . import keys, tokens

ENDPOINT_ENV = "JUPYTER_SANDBOX_SSH_ENDPOINT"
# `-L` destinations that mean the sandbox's own loopback; every other name or address is refused.
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}
MAX_TUNNEL_HEAD = 16 * 1024
ENCRYPTION = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"]


def command_line(token: str, host: str, port: int) -> str:
    return f"ssh -p {port} {token}@{host}" if port != 22 else f"ssh {token}@{host}"


def grant(sandbox_id: str, expires_in: Any, default: float, maximum: float, host: str, port: int) -> dict[str, Any]:
    """Issue a token for the sandbox; what REST and the magic show. Raises tokens.TokenError."""
    lifetime = default if expires_in is None else tokens.parse_lifetime(expires_in, maximum)
    issued = tokens.issue(sandbox_id, lifetime)
    return {
        "sandbox_id": sandbox_id,
        "token": issued.token,
        "expires_at": datetime.fromtimestamp(issued.expires_at, timezone.utc).isoformat(),
        "expires_in": round(lifetime),
        "host": host,
        "port": port,
        "command": command_line(issued.token, host, port),
        "host_key_fingerprint": keys.fingerprint(),
    }


def endpoint() -> dict[str, Any] | None:
    """The running gateway as the server tells the kernels it starts: host, port, default and
    longest token lifetime. None when the gateway is off."""
    try:
        value = json.loads(os.environ.get(ENDPOINT_ENV) or "null")
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("host"), str) or not isinstance(value.get("port"), int):
        return None
    return value


class SSHGateway(LoggingConfigurable):
    port = Int(
        0,
        config=True,
        help="Port of the SSH gateway into sandboxes (`ssh -p PORT TOKEN@host`); 0 leaves it off.",
    )
    ip = Unicode(
        "127.0.0.1",
        config=True,
        help="Address the SSH gateway listens on. Loopback by default: opening it wider exposes sandboxes "
        "to whoever holds a token.",
    )
    public_host = Unicode(
        "localhost", config=True, help="Host name shown in the `ssh` command lines handed out with tokens."
    )
    token_lifetime = Float(3600.0, config=True, help="Seconds a token lives when no expiry is asked for.")
    max_token_lifetime = Float(7 * 86400.0, config=True, help="The longest expiry a token may be given, in seconds.")
    failure_delay = Float(
        1.0,
        config=True,
        help="Seconds a failed login waits before it is refused; doubled per recent failure of its source.",
    )
    max_failure_delay = Float(8.0, config=True, help="The longest a failed login is made to wait, in seconds.")
    max_unauthenticated = Int(
        128, config=True, help="Connections that have not logged in yet, in all; more are closed at once."
    )
    max_unauthenticated_per_source = Int(
        16, config=True, help="Connections not logged in yet from one address; more are closed at once."
    )
    login_timeout = Float(30.0, config=True, help="Seconds a connection has to log in.")
    recheck_interval = Float(
        5.0, config=True, help="Seconds between checks that end sessions whose token expired or was revoked."
    )

    def __init__(self, service: SandboxOperations, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self._server: asyncssh.SSHAcceptor | None = None
        self._pending: dict[str, int] = {}
        self._failures: dict[str, tuple[int, float]] = {}
        self._live: set[_Login] = set()
        self._recheck: asyncio.Task | None = None
        self.bound_port = 0

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.port <= 0 or self._server is not None:
            return
        self._server = await asyncssh.create_server(
            lambda: _Login(self),
            self.ip,
            self.port,
            server_host_keys=[keys.host_key()],
            process_factory=self._process,
            sftp_factory=lambda chan: _sftp(chan),
            allow_scp=False,
            line_editor=False,
            encoding=None,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=self.login_timeout,
            keepalive_interval=30,
            server_version="SandboxGateway",
            # AES-GCM first and ChaCha20 not offered: OpenSSH clients prefer ChaCha20, which costs
            # this Python server several times the CPU per byte of AES-GCM (hardware-assisted).
            encryption_algs=ENCRYPTION,
        )
        sockets = self._server.sockets
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        # Kernels started from now on inherit it: %sandbox ssh hands out tokens for this gateway.
        os.environ[ENDPOINT_ENV] = json.dumps(
            {
                "host": self.public_host,
                "port": self.bound_port,
                "default": self.token_lifetime,
                "max": self.max_token_lifetime,
            }
        )
        self._recheck = asyncio.ensure_future(self._recheck_loop())
        self.log.info(
            "jupyter-sandbox: SSH gateway on %s:%s (host key %s)", self.ip, self.bound_port, keys.fingerprint()
        )

    def start_soon(self) -> None:
        """Start once the event loop runs (the extension is set up before it does)."""
        if self.port > 0:
            asyncio.get_event_loop().call_soon(lambda: asyncio.ensure_future(self._start_logged()))

    async def _start_logged(self) -> None:
        try:
            await self.start()
        except (OSError, asyncssh.Error) as exc:
            self.log.error("jupyter-sandbox: the SSH gateway could not listen on %s:%s: %s", self.ip, self.port, exc)

    async def stop(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        if self._server is not None:
            self._server.close()
            for login in list(self._live):
                login.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
            self._server = None
        os.environ.pop(ENDPOINT_ENV, None)

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_interval)
            for login in list(self._live):
                if login.token is not None and tokens.verify(login.token) is None:
                    self.log.info(
                        "SSH session into sandbox %s ended: its token expired or was revoked", login.sandbox_id
                    )
                    login.close()
                elif login._access is not None:
                    # An open SSH connection is use, even a quiet one (a shell left at its prompt):
                    # the sandbox is not stopped under it. Its token's expiry bounds how long.
                    login._access.touch()

    # -- tokens (REST) --------------------------------------------------------------------

    async def grant(self, sandbox_id: str, expires_in: Any) -> dict[str, Any]:
        await self.service.sandbox(sandbox_id, running=False)  # 404 for one that is not there, or not ours
        if self._server is None:
            raise errors.Conflict("the SSH gateway is off; start the server with --SSHGateway.port=2222 to turn it on")
        try:
            return grant(
                sandbox_id, expires_in, self.token_lifetime, self.max_token_lifetime, self.public_host, self.bound_port
            )
        except tokens.TokenError as exc:
            raise errors.InvalidInput(str(exc)) from None

    async def revoke(self, sandbox_id: str) -> int:
        await self.service.sandbox(sandbox_id, running=False)
        count = tokens.revoke(sandbox_id)
        for login in list(self._live):
            if login.sandbox_id == sandbox_id and login.token is not None:
                login.close()
        return count

    # -- admission and failures -----------------------------------------------------------

    def admit(self, source: str) -> bool:
        if (
            sum(self._pending.values()) >= self.max_unauthenticated
            or self._pending.get(source, 0) >= self.max_unauthenticated_per_source
        ):
            return False
        self._pending[source] = self._pending.get(source, 0) + 1
        return True

    def admitted_done(self, source: str) -> None:
        left = self._pending.get(source, 0) - 1
        if left > 0:
            self._pending[source] = left
        else:
            self._pending.pop(source, None)

    def failure_wait(self, source: str) -> float:
        """How long this source's next failure waits; counts it. Recent failures double the wait."""
        count, last = self._failures.get(source, (0, 0.0))
        now = time.monotonic()
        if now - last > 60:
            count = 0
        self._failures[source] = (count + 1, now)
        if len(self._failures) > 10000:  # bounded: the oldest sources are forgotten
            for key in sorted(self._failures, key=lambda k: self._failures[k][1])[:5000]:
                del self._failures[key]
        return min(self.failure_delay * (2 ** min(count, 10)), self.max_failure_delay)

    # -- sessions -------------------------------------------------------------------------

    async def _process(self, process: asyncssh.SSHServerProcess) -> None:
        login = _login_of(process.channel)
        if process.subsystem is not None:  # sftp has its own handler; there is no other subsystem
            process.stderr.write(f"jupyter-sandbox: there is no subsystem {process.subsystem[:64]!r}\n".encode())
            process.exit(1)
            return
        try:
            access = await login.access()
            if process.command is None and process.get_terminal_type():
                code = await _relay(process, access, "/pty", shell=True)
            else:
                code = await _relay(process, access, "/channel", shell=False)
        except errors.SandboxOperationError as exc:
            process.stderr.write(f"jupyter-sandbox: {exc.message}\n".encode())
            code = 255
        except (OSError, websocket.WebSocketError, asyncssh.Error) as exc:
            process.stderr.write(f"jupyter-sandbox: the sandbox could not be reached: {exc}\n".encode())
            code = 255
        except Exception:  # a fault here must end this session with a word, never go unseen
            self.log.exception("SSH session into sandbox %s failed", login.sandbox_id)
            process.stderr.write(b"jupyter-sandbox: the session failed (see the server's log)\n")
            code = 255
        process.exit(code if 0 <= code <= 255 else 128 + (-code % 128))


class Access:
    """One logged-in connection's way into its sandbox: through the operations layer's gate and
    error mapping, with the agent found once (and again when the sandbox was restarted)."""

    def __init__(self, gateway: SSHGateway, sandbox_id: str, found: Sandbox | None = None) -> None:
        self.gateway, self.service, self.sandbox_id = gateway, gateway.service, sandbox_id
        self._found = found  # as the login saw it a moment ago: one Docker lookup fewer per login
        self._agent: AgentClient | None = None
        self._touched = 0.0

    async def agent(self) -> AgentClient:
        if self._agent is None:
            sandbox, self._found = self._found, None
            if sandbox is None:
                sandbox = await self.service.sandbox(self.sandbox_id, running=False)
            if not sandbox.running:  # connecting to a stopped sandbox starts it
                self.gateway.log.info("SSH login into stopped sandbox %s: starting it", self.sandbox_id)
                sandbox = await self.service.start_and_wait(sandbox)
            self._agent = self.service.agent_for(sandbox)
        return self._agent

    def touch(self) -> None:
        """Use over SSH keeps the sandbox from being stopped as idle (the agent sees only some of it)."""
        now = time.monotonic()
        if now - self._touched > 1:
            self._touched = now
            self.service.manager.note_activity(self.sandbox_id)

    async def awaited(self, awaitable: Awaitable[Any]) -> Any:
        """An agent read, with the agent client's deadlines and its errors in the domain's words."""
        return await (await self.agent()).guarded(awaitable)

    async def call(self, method: str, path: str, query: dict[str, Any] | None, body: Any) -> Any:
        async with self.service.gate(self.sandbox_id):
            agent = await self.agent()
            try:
                return await agent.call(method, path, query, body)
            except (errors.AgentUnavailable, errors.TimedOut):
                self._agent = None  # found afresh next time (a restarted sandbox has a new port)
                raise

    async def open_stream(self, path: str) -> AgentResponse:
        agent = await self.agent()
        response = await agent.open("GET", path)
        if response.status >= 400:
            raw = await agent.guarded(response.read_all(65536))
            response.close()
            try:
                message = str(json.loads(raw).get("message", ""))[:300]
            except (ValueError, AttributeError):
                message = ""
            refusal = {400: errors.InvalidInput, 403: errors.Forbidden, 404: errors.NotFound}
            raise refusal.get(response.status, errors.AgentUnavailable)(message or "the read failed")
        return response

    async def open_upload(self) -> UploadSlot:
        await self.agent()
        return await self.service.open_upload(self.sandbox_id, self.service.manager.owner)

    async def websocket(self, path: str) -> websocket.WebSocketClientConnection:
        agent = await self.agent()
        request = HTTPRequest(
            f"ws://{agent.host}:{agent.port}{path}",
            headers={"Authorization": f"token {agent.token}"},
            connect_timeout=10,
        )
        return await websocket.websocket_connect(request)

    async def tunnel(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A byte stream to 127.0.0.1:port inside the sandbox, through the agent's tunnel."""
        agent = await self.agent()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(agent.host, agent.port), 10)
        try:
            writer.write(
                (
                    f"GET /tunnel/{port} HTTP/1.1\r\nHost: agent\r\nAuthorization: token {agent.token}\r\n"
                    "Upgrade: sandbox-tunnel\r\nConnection: Upgrade\r\n\r\n"
                ).encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "the sandbox did not answer") from None
        if len(head) > MAX_TUNNEL_HEAD or not head.startswith(b"HTTP/1.1 101 "):
            writer.close()
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, f"nothing is listening on port {port} in the sandbox"
            )
        return reader, writer


class _Login(asyncssh.SSHServer):
    """One SSH connection, from its first byte to its end."""

    def __init__(self, gateway: SSHGateway) -> None:
        self.gateway = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source = ""
        self.admitted = False
        self.started = time.monotonic()
        self.sandbox_id: str | None = None
        self.token: str | None = None
        self._access: Access | None = None
        self.found: Sandbox | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.source = str(peer[0])
        self.admitted = self.gateway.admit(self.source)
        if not self.admitted:
            asyncio.get_event_loop().call_soon(conn.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle()
        self.gateway._live.discard(self)

    def _settle(self) -> None:
        if self.admitted:
            self.admitted = False
            self.gateway.admitted_done(self.source)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    async def _fail(self) -> None:
        """Every refusal takes the same time from the login's start, whatever the reason."""
        wait = self.gateway.failure_wait(self.source)
        await asyncio.sleep(max(0.0, self.started + wait - time.monotonic()))
        self.started = time.monotonic()

    async def begin_auth(self, username: str) -> bool:
        self.started = time.monotonic()
        sandbox_id = tokens.verify(username)
        if sandbox_id is not None and await self._owned(sandbox_id):
            self.sandbox_id, self.token = sandbox_id, username
            return False  # the token is the login: no further authentication
        if tokens.SANDBOX_ID.fullmatch(username) and keys.registered() is not None:
            return True  # a key login may follow; its failure waits in validate_public_key
        await self._fail()
        return True

    async def _owned(self, sandbox_id: str) -> bool:
        try:
            self.found = await self.gateway.service.sandbox(sandbox_id, running=False)
        except errors.SandboxOperationError:
            return False
        return True

    def auth_completed(self) -> None:
        self._settle()
        self.gateway._live.add(self)
        if self.sandbox_id is not None:
            self.gateway.log.info("SSH login into sandbox %s from %s", self.sandbox_id, self.source)

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        authorized = keys.registered()
        if (
            tokens.SANDBOX_ID.fullmatch(username)
            and authorized is not None
            and authorized.validate(key, "", "") is not None
            and await self._owned(username)
        ):
            self.sandbox_id = username
            return True
        await self._fail()
        return False

    def password_auth_supported(self) -> bool:
        return True  # offered so that a password attempt fails as slowly as anything else

    async def validate_password(self, username: str, password: str) -> bool:
        await self._fail()
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    async def access(self) -> Access:
        if self._access is None:
            assert self.sandbox_id is not None
            self._access = Access(self.gateway, self.sandbox_id, self.found)
        await self._access.agent()
        return self._access

    # -- forwarding: only -L to the sandbox's own loopback --------------------------------

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        # Judged on the request's text alone: no name is resolved, no address is tried.
        if dest_host.lower() not in LOOPBACK_NAMES or not 1 <= dest_port <= 65535 or dest_port in RESERVED_PORTS:
            self.gateway.log.info(
                "SSH forwarding refused for sandbox %s: %s port %s", self.sandbox_id, dest_host[:100], dest_port
            )
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                "only ports on the sandbox's own localhost can be forwarded",
            )
        return self._open_tunnel(dest_port)

    async def _open_tunnel(self, port: int) -> SSHTCPStreamSession:
        access = await self.access()
        reader, writer = await access.tunnel(port)
        access.touch()

        async def relay(ssh_reader: asyncssh.SSHReader, ssh_writer: asyncssh.SSHWriter) -> None:
            async def upstream() -> None:
                while True:
                    data = await ssh_reader.read(65536)
                    if not data:
                        break
                    access.touch()
                    writer.write(data)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()

            async def downstream() -> None:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    access.touch()
                    ssh_writer.write(data)
                    await ssh_writer.drain()
                ssh_writer.write_eof()

            try:
                await asyncio.gather(upstream(), downstream())
            except (OSError, asyncssh.Error):
                pass
            finally:
                writer.close()
                ssh_writer.close()

        return SSHTCPStreamSession(relay)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # no remote forwarding: nothing may listen on the host for the sandbox

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False


def _login_of(chan: Any) -> _Login:
    owner = chan.get_connection().get_owner()
    assert isinstance(owner, _Login)
    return owner


def _sftp(chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
    from .sftp import AgentSFTPServer

    login = _login_of(chan)
    assert login.sandbox_id is not None
    if login._access is None:
        login._access = Access(login.gateway, login.sandbox_id, login.found)
    return AgentSFTPServer(chan, login._access)


async def _relay(process: asyncssh.SSHServerProcess, access: Access, path: str, shell: bool) -> int:
    """Carry one session between the SSH channel and the agent's PTY (shell) or channel (command)
    socket; the command's exit status."""
    width, height, _, _ = process.get_terminal_size()
    term = process.get_terminal_type()
    if shell:
        query = f"?cols={min(max(width, 1), 1000) or 80}&rows={min(max(height, 1), 1000) or 24}"
        upstream = await access.websocket(path + query)
    else:
        upstream = await access.websocket(path)
        await upstream.write_message(
            json.dumps(
                {
                    "type": "start",
                    "command": process.command,
                    "pty": bool(term),
                    "term": term,
                    "cols": width or 80,
                    "rows": height or 24,
                }
            )
        )
    access.touch()
    code: list[int] = [255]

    async def from_client() -> None:
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as change:
                if 0 < change.width <= 1000 and 0 < change.height <= 1000:
                    await upstream.write_message(
                        json.dumps({"type": "resize", "cols": change.width, "rows": change.height})
                    )
                continue
            except asyncssh.BreakReceived:
                await upstream.write_message(json.dumps({"type": "signal", "name": "INT"}))
                continue
            except asyncssh.SignalReceived as received:
                await upstream.write_message(json.dumps({"type": "signal", "name": str(received.signal).upper()}))
                continue
            if not data:
                if not shell:
                    await upstream.write_message(json.dumps({"type": "eof"}))
                return
            access.touch()
            await upstream.write_message(data, binary=True)

    async def from_sandbox() -> None:
        while True:
            message = await upstream.read_message()
            if message is None:
                return
            if isinstance(message, bytes):
                if shell:
                    process.stdout.write(message)
                elif message[:1] == b"\x02":
                    process.stderr.write(message[1:])
                else:
                    process.stdout.write(message[1:])
                await process.stdout.drain()
                continue
            try:
                event = json.loads(message)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") == "exit":
                value = event.get("code")
                code[0] = value if isinstance(value, int) and not isinstance(value, bool) else 255
                return

    reader = asyncio.ensure_future(from_client())
    try:
        await from_sandbox()
    except (websocket.WebSocketClosedError, asyncssh.Error, OSError):
        pass
    finally:
        reader.cancel()
        upstream.close()
    return code[0]
