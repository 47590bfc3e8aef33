"""Preview links: a web app listening inside a sandbox, served on its own origin.

`http://{port}-{sandbox_id}.localhost:{server_port}/` is routed by its Host header to the proxy
below before any Jupyter handler can see it, so Jupyter's pages and APIs never exist on a preview
origin and Jupyter's cookies are never sent there. The path form `/sandbox/preview/{id}/{port}/` is
for deployments without host routing and is served with `Content-Security-Policy: sandbox`.

Every request needs a preview token (header, `?token=`, or the cookie a browser gets for `?token=`).
Before forwarding, the proxy removes credentials meant for Jupyter. The bytes travel through the
agent's tunnel to 127.0.0.1:{port} inside the sandbox: HTTP with streamed bodies both ways, and
websockets as a raw byte pipe after the upgrade.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
import urllib.parse
from typing import Any

from tornado import httputil, iostream, web
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.tcpclient import TCPClient

from ..agent.splice import buffered, copy, join, take_socket
from ..sandbox import preview as tokens
from ..sandbox import secrets as sandbox_secrets
from ..sandbox.client import AgentError
from ..sandbox.docker_backend import SandboxError
from ..sandbox.manager import AGENT_PORT, Sandbox, SandboxManager

TOKEN_HEADER = "X-Sandbox-Preview-Token"
COOKIE = "jupyter-sandbox-preview"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "proxy-connection"}
# Credentials meant for Jupyter (or for the proxy itself) never reach the app.
STRIPPED_REQUEST_HEADERS = {"authorization", "x-xsrftoken", "x-csrftoken", TOKEN_HEADER.lower()}
JUPYTER_COOKIE = re.compile(r"^(_xsrf|username-.*|jupyterhub-.*|" + COOKIE + r")$")
PATH_FORM_CSP = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"
SANDBOX_CACHE_SECONDS = 2.0
# Idle keep-alive connections to an app kept per (sandbox, container, port) for requests without a body.
POOL_SIZE = 8
REUSABLE_METHODS = ("GET", "HEAD", "OPTIONS")
# Bodies larger than this, of a known length, are moved socket to socket by the kernel (splice).
RAW_BODY_THRESHOLD = 1024 * 1024


def host_pattern(template: str) -> str:
    """The Host regex (named groups port, sandbox_id) of a preview URL template."""
    host = urllib.parse.urlsplit(template.replace("{server_port}", "0")).hostname or ""
    pattern = re.escape(host).replace(r"\{port\}", r"(?P<port>\d{1,5})").replace(
        r"\{sandbox_id\}", r"(?P<sandbox_id>[0-9a-f]{12})")
    return f"^{pattern}$"


def error_page(status: int, title: str, detail: str = "") -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{detail}</p></body></html>")


class _ResponseRelay(httputil.HTTPMessageDelegate):
    """Writes the app's response to the browser as it arrives, one flushed chunk at a time."""

    def __init__(self, handler: "PreviewProxyHandler") -> None:
        self.handler = handler
        self.started = False
        self.keep_alive = False
        self.raw_length = 0
        self.detached: Any = None

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> None:
        self.started = True
        delimited = "Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "").lower()
        self.keep_alive = (start_line.version == "HTTP/1.1" and delimited
                           and "close" not in headers.get("Connection", "").lower() and start_line.code != 101)
        handler = self.handler
        handler.set_status(start_line.code, start_line.reason)
        handler.clear_header("Content-Type")
        handler.clear_header("Server")
        for name, value in headers.get_all():
            if name.lower() in HOP_BY_HOP or name.lower() == "content-length" and "Transfer-Encoding" in headers:
                continue
            handler.add_header(name, value)
        handler.add_security_headers()
        length = headers.get("Content-Length", "")
        if (length.isdigit() and int(length) > RAW_BODY_THRESHOLD and handler.request.method != "HEAD"
                and "Transfer-Encoding" not in headers):
            # A large body: stop tornado's HTTP processing and move it in the kernel (see _relay).
            self.raw_length = int(length)
            self.detached = handler.connection.detach()

    def data_received(self, chunk: bytes) -> Any:
        self.handler.write(chunk)
        return self.handler.flush()

    def finish(self) -> None:
        pass

    def on_connection_close(self) -> None:
        pass


@web.stream_request_body
class PreviewProxyHandler(web.RequestHandler):
    """One request to a preview, on the preview's own origin (or the path form)."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, manager: SandboxManager, path_form: bool = False) -> None:
        self.manager = manager
        self.path_form = path_form
        self.upstream: Any = None
        self.connection: HTTP1Connection | None = None

    # tornado's own XSRF check must not run here: previews are the app's business.
    def check_xsrf_cookie(self) -> None:
        pass

    def add_security_headers(self) -> None:
        if self.path_form:
            self.set_header("Content-Security-Policy", PATH_FORM_CSP)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        title, detail = (exc.title, exc.detail) if isinstance(exc, _PreviewError) else (self._reason, "")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.add_security_headers()
        asked = f"<p>Address: <code>{html.escape(self.request.host)}{html.escape(self.request.path)}</code></p>"
        self.finish(error_page(status_code, title, detail + asked))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, _PreviewError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, _PreviewError):
            return
        super().log_exception(typ, value, tb)

    # -- which preview, and may the caller see it ------------------------------------------

    def _target(self) -> tuple[str, int]:
        kwargs = self.path_kwargs
        sandbox_id, port = kwargs["sandbox_id"], int(kwargs["port"])
        if not 1 <= port <= 65535:
            raise _PreviewError(400, "Not a port", f"{port} is not a TCP port (1 to 65535).")
        return sandbox_id, port

    def _given_token(self) -> tuple[str | None, bool]:
        """(token, whether it came in the query string)."""
        header = self.request.headers.get(TOKEN_HEADER)
        if header:
            return header, False
        values = self.request.query_arguments.get("token")
        if values:
            return values[-1].decode("latin-1"), True
        return self.get_cookie(COOKIE), False

    def _cookie_path(self) -> str:
        """The whole origin for the host form; only this sandbox and port for the path form."""
        if not self.path_form:
            return "/"
        marker = f"/{self.path_kwargs['sandbox_id']}/{self.path_kwargs['port']}/"
        return self.request.path[: self.request.path.index(marker) + len(marker)]

    def _url_without_token(self) -> str:
        query = [(k, v) for k, v in urllib.parse.parse_qsl(self.request.query, keep_blank_values=True) if k != "token"]
        return self.request.path + (("?" + urllib.parse.urlencode(query)) if query else "")

    async def prepare(self) -> None:
        self.request.connection.set_max_body_size(64 * 1024**3)
        sandbox_id, port = self._target()
        token, from_query = self._given_token()
        if not tokens.verify(token, sandbox_id, port):
            raise _PreviewError(401 if not token else 403,
                                "A preview token is needed" if not token else "This preview token is not valid here",
                                "Open this preview from JupyterLab or <code>%sandbox preview PORT</code>, or send "
                                f"the token in the <code>{TOKEN_HEADER}</code> header.")
        if from_query and self.request.method == "GET" and "text/html" in self.request.headers.get("Accept", ""):
            # A browser: keep the token in a cookie of this origin only, and drop it from the address.
            self.set_cookie(COOKIE, token, path=self._cookie_path(), httponly=True, samesite="Lax",
                            expires_days=tokens.MAX_EXPIRY / 86400)
            self.redirect(self._url_without_token())
            return
        sandbox = await self._sandbox(sandbox_id)
        websocket = self.request.headers.get("Upgrade", "").lower() == "websocket"
        self.reusable = not websocket and self.request.method in REUSABLE_METHODS and not self.request.headers.get(
            "Content-Length") and not self.request.headers.get("Transfer-Encoding")
        self.pool_key = (sandbox.id, sandbox.container_id, port)
        self.from_pool = False
        if self.reusable:
            self.upstream = self._pooled()
            self.from_pool = self.upstream is not None
        if self.upstream is None:
            self.upstream = await self._tunnel(sandbox, port)
        if websocket:
            return  # relayed raw in get()
        self._start_request()

    def _start_request(self) -> None:
        self.connection = HTTP1Connection(self.upstream, True, HTTP1ConnectionParameters(
            no_keep_alive=not self.reusable, decompress=False, max_body_size=64 * 1024**3, chunk_size=256 * 1024,
            header_timeout=3600, body_timeout=None))
        self.connection.write_headers(
            httputil.RequestStartLine(self.request.method, self._upstream_path(), "HTTP/1.1"), self._upstream_headers())

    def _pool(self) -> list[iostream.IOStream]:
        pools = self.settings.setdefault("jupyter_sandbox_preview_pool", {})
        return pools.setdefault(self.pool_key, [])

    def _pooled(self) -> iostream.IOStream | None:
        pool = self._pool()
        while pool:
            stream = pool.pop()
            if not stream.closed():
                return stream
        return None

    def _release(self, relay: "_ResponseRelay") -> None:
        """Keep the connection for the next request when the app allows it, else close it."""
        stream, self.upstream = self.upstream, None
        pool = self._pool()
        if self.reusable and relay.keep_alive and not stream.closed() and len(pool) < POOL_SIZE:
            pool.append(stream)
        else:
            stream.close()

    async def data_received(self, chunk: bytes) -> None:
        if self.connection is not None:
            await self.connection.write(chunk)

    async def _sandbox(self, sandbox_id: str) -> Sandbox:
        cache = self.settings.setdefault("jupyter_sandbox_preview_cache", {})
        cached = cache.get(sandbox_id)
        if cached and time.monotonic() - cached[0] < SANDBOX_CACHE_SECONDS:
            sandbox = cached[1]
        else:
            try:
                sandbox = await asyncio.get_running_loop().run_in_executor(None, self.manager.get, sandbox_id)
            except SandboxError:
                raise _PreviewError(404, "No such sandbox", "The sandbox of this preview does not exist.") from None
            cache[sandbox_id] = (time.monotonic(), sandbox)
        if not sandbox.running and self.manager.was_idle_stopped(sandbox):
            # Stopped for being idle, not by its user: a visit wakes it.
            sandbox = await asyncio.get_running_loop().run_in_executor(None, self._wake, sandbox)
            cache[sandbox_id] = (time.monotonic(), sandbox)
        if not sandbox.running or AGENT_PORT not in sandbox.host_ports:
            raise _PreviewError(503, "The sandbox is stopped",
                                f"Sandbox {html.escape(sandbox.id)} is {html.escape(sandbox.state)}; start it and reload.")
        return sandbox

    def _wake(self, sandbox: Sandbox) -> Sandbox:
        started = self.manager.start(sandbox)
        self.manager.wait_for_agent(started)
        return self.manager.get(sandbox.id)

    async def _tunnel(self, sandbox: Sandbox, port: int) -> iostream.IOStream:
        try:
            host, agent_port = sandbox.agent_endpoint()
            stream = await TCPClient().connect(host, agent_port, timeout=10)
            stream.set_nodelay(True)
            token = sandbox_secrets.agent_token(sandbox.id)
            await stream.write((f"GET /tunnel/{port} HTTP/1.1\r\nHost: agent\r\nAuthorization: token {token}\r\n"
                                "Upgrade: sandbox-tunnel\r\nConnection: Upgrade\r\n\r\n").encode())
            head = await asyncio.wait_for(stream.read_until(b"\r\n\r\n", max_bytes=65536), timeout=10)
        except (OSError, iostream.StreamClosedError, asyncio.TimeoutError):
            raise _PreviewError(502, "The sandbox did not answer", "Its agent could not be reached.") from None
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
        if status == 101:
            return stream
        stream.close()
        if status == 502:
            raise _PreviewError(502, f"Nothing is listening on port {port}", await self._listening(sandbox))
        raise _PreviewError(502, "The sandbox refused the preview", f"Its agent answered {status}.")

    async def _listening(self, sandbox: Sandbox) -> str:
        try:
            usage = await asyncio.get_running_loop().run_in_executor(None, lambda: self.manager.agent(sandbox).usage())
        except (AgentError, SandboxError):
            return "The ports listening in the sandbox could not be read."
        ports = [p for p in usage["ports"] if p not in (AGENT_PORT, 8751, 8752, 8753, 8754, 8755)]
        if not ports:
            return "No port is listening in the sandbox right now. Start your server and reload."
        return "Ports listening in the sandbox: " + ", ".join(html.escape(str(p)) for p in ports) + "."

    def _upstream_path(self) -> str:
        path = self.path_kwargs.get("rest")
        path = "/" + (path or "") if self.path_form else self.request.path
        query = [(k, v) for k, v in urllib.parse.parse_qsl(self.request.query, keep_blank_values=True) if k != "token"]
        return path + (("?" + urllib.parse.urlencode(query)) if query else "")

    def _upstream_headers(self, websocket: bool = False) -> httputil.HTTPHeaders:
        headers = httputil.HTTPHeaders()
        for name, value in self.request.headers.get_all():
            lowered = name.lower()
            if lowered in STRIPPED_REQUEST_HEADERS or lowered == "host":
                continue
            if lowered in HOP_BY_HOP and not (websocket and lowered in ("upgrade", "connection")):
                continue
            if lowered == "cookie":
                kept = [c.strip() for c in value.split(";")
                        if c.strip() and not JUPYTER_COOKIE.match(c.strip().split("=", 1)[0])]
                if not kept:
                    continue
                value = "; ".join(kept)
            headers.add(name, value)
        port = self.path_kwargs["port"]
        headers["Host"] = f"localhost:{port}"
        headers["X-Forwarded-Host"] = self.request.host
        headers["X-Forwarded-Proto"] = self.request.protocol
        if not websocket:
            headers["Connection"] = "keep-alive" if self.reusable else "close"
        return headers

    # -- relaying ---------------------------------------------------------------------------

    async def _relay(self, *args: Any, **kwargs: Any) -> None:
        if self.upstream is None:
            return
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            await self._relay_websocket()
            return
        if self.connection is None or self.connection.stream is not self.upstream:
            self._start_request()
        relay = _ResponseRelay(self)
        self.connection.finish()
        try:
            await self.connection.read_response(relay)
        except (iostream.StreamClosedError, httputil.HTTPInputError):
            self.upstream.close()
            if self.from_pool and not relay.started:
                # The app had closed an idle kept connection: ask again on a fresh one (no body was sent).
                self.from_pool = False
                sandbox = await self._sandbox(self.pool_key[0])
                self.upstream = await self._tunnel(sandbox, self.pool_key[2])
                await self._relay()
                return
            if not relay.started:
                raise _PreviewError(502, "The app closed the connection", "It sent no complete answer.") from None
        if relay.detached is not None:
            await self._relay_raw_body(relay)
            return
        if self.upstream is not None:
            self._release(relay)
        if not self._finished:
            self.finish()

    async def _relay_raw_body(self, relay: "_ResponseRelay") -> None:
        """Send the head through tornado, then splice exactly Content-Length bytes to the browser."""
        self.set_header("Content-Length", str(relay.raw_length))
        await self.flush()
        client = self.request.connection.detach()
        upstream, early = relay.detached, buffered(relay.detached)
        self.upstream = None
        client_socket, upstream_socket = take_socket(client), take_socket(upstream)
        try:
            loop = asyncio.get_running_loop()
            if early:
                await loop.sock_sendall(client_socket, early[: relay.raw_length])
            await copy(upstream_socket, client_socket, relay.raw_length - min(len(early), relay.raw_length))
        except OSError:
            pass
        finally:
            upstream_socket.close()
            client_socket.close()
        self._finished = True  # the detached connection has no response left for tornado to finish

    async def _relay_websocket(self) -> None:
        head = f"GET {self._upstream_path()} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in self._upstream_headers(websocket=True).get_all()) + "\r\n"
        await self.upstream.write(head.encode("latin-1"))
        client = self.request.connection.detach()
        await join(client, self.upstream)  # the same kernel-side byte pipe the agent uses
        self.upstream = None
        self._finished = True  # the detached connection has no response left for tornado to finish

    get = post = put = delete = patch = options = head = _relay


class _PreviewError(web.HTTPError):
    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.title = title
        self.detail = detail


def preview_routes(manager: SandboxManager) -> list[tuple[str, type, dict[str, Any]]]:
    """Every path on a preview origin goes to the app; nothing else is served there."""
    return [(r"/.*", HostPreviewHandler, {"manager": manager})]


class HostPreviewHandler(PreviewProxyHandler):
    """The host form: port and sandbox id come from the Host header."""

    async def prepare(self) -> None:
        match = re.match(self.settings["jupyter_sandbox_preview_host"], self.request.host_name)
        if not match:
            raise _PreviewError(400, "Not a preview address")
        self.path_kwargs.update(match.groupdict())
        await super().prepare()
