"""Hub mode, the user's server: `/sandbox/api/...` forwarded to the sandbox service, as this user.

The user's own Jupyter server authenticates and authorises every request first, exactly as in
single-machine mode (its handlers do that, server_extension/handlers/forward.py); only then is the
request sent on to `{service}/sandbox/api/...`. What crosses to the service is chosen, never copied
wholesale: the method, the path under the API, the query without the server's own credentials
(`token`, `_xsrf`), a short list of content headers, the body, and this server's credential for the
service (`Authorization: token <SandboxRemote.token>`). Nothing of the browser's credentials (its
cookies, its Authorization header, its XSRF token) and no hop-by-hop header ever reaches the service;
nothing the service answers can set a cookie on the user's server's origin.

Bodies stream both ways with backpressure (an upload of gigabytes, a download, a followed log): the
server holds a few chunks, never a whole body. Websockets under the API are relayed frame by frame.

What the service says passes through unchanged (status, JSON body), with two exceptions that are the
forwarder's own: a service that cannot be reached is a 502 that names its URL and what to check, and a
service that refuses this server's credential (401) is a 502 for the operator (the user cannot fix it),
which never shows the credential.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any, Callable, Protocol, cast
from urllib.parse import unquote, unquote_plus, urlsplit

from tornado import httputil, websocket
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from traitlets import Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from .settings import TOKEN_ENV, URL_ENV, SandboxRemote

API_PREFIX = "sandbox/api/"
# Request headers that carry meaning for the API, the only ones passed on (an allow list: whatever a
# browser or a proxy in front of the user's server adds, cookies and credentials above all, stays).
REQUEST_HEADERS = ("Content-Type", "Content-Length", "Accept", "If-None-Match", "If-Modified-Since", "Range")
# The service's response headers that pass back; Set-Cookie and hop-by-hop headers are never among them.
RESPONSE_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Range",
    "Accept-Ranges",
    "Cache-Control",
    "ETag",
    "Last-Modified",
    "Retry-After",
    "X-Content-Type-Options",
    "Content-Security-Policy",
)
# Query parameters that are the user's server's own credentials (Jupyter reads its token from `token`).
CREDENTIAL_PARAMETERS = frozenset({"token", "_xsrf"})
# Websocket request headers passed on (the handshake's own are made anew by the client).
SOCKET_HEADERS = ("Accept",)
# How many bytes of a body the forwarder keeps between the two sides before it stops reading.
PIPE_WINDOW = 4 * 1024 * 1024
UNLIMITED_BODY = 1 << 62

log = logging.getLogger(__name__)


class ForwardError(Exception):
    """Why a request could not be forwarded: answered with `status` and `message` as the API's JSON."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Sink(Protocol):
    """What the forwarder writes a response into (the tornado handler of the user's request)."""

    def set_status(self, status_code: int, reason: str | None = None) -> None: ...

    def set_header(self, name: str, value: Any) -> None: ...

    def clear_header(self, name: str) -> None: ...

    def write(self, chunk: bytes) -> None: ...

    def flush(self) -> Awaitable[None]: ...


def filtered_query(query: str) -> str:
    """The raw query string without the user's server's credentials, the other parameters byte for byte."""
    kept = []
    for part in query.split("&"):
        if not part:
            continue
        name = unquote_plus(part.split("=", 1)[0])
        if name in CREDENTIAL_PARAMETERS:
            continue
        kept.append(part)
    return "&".join(kept)


def api_path(request_path: str, base_url: str) -> str:
    """The part of a request's (still percent-encoded) path below `{base_url}sandbox/api/`; a path that
    would climb out of the API (a `.` or `..` segment, encoded or not) is refused as not found."""
    prefix = base_url.rstrip("/") + "/" + API_PREFIX
    if not request_path.startswith(prefix):
        raise ForwardError(404, "there is no such API path; GET /sandbox/api/openapi.json lists them")
    rest = request_path[len(prefix) :]
    for segment in rest.split("/"):
        if unquote(segment) in (".", "..") or "\\" in unquote(segment):
            raise ForwardError(404, "there is no such API path; GET /sandbox/api/openapi.json lists them")
    return rest


class Pipe:
    """A bounded buffer between a request body arriving and the same body sent on: `put` waits while
    more than `window` bytes are held, so a slow service slows the client instead of filling memory."""

    def __init__(self, window: int = PIPE_WINDOW) -> None:
        self.window = window
        self._chunks: list[bytes] = []
        self._held = 0
        self._ended = False
        self._aborted = False
        self._changed = asyncio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def put(self, chunk: bytes) -> None:
        while self._held > self.window and not self._aborted:
            await self._changed.wait()
        if self._aborted:
            return  # nobody reads any more: the answer is already decided
        self._chunks.append(chunk)
        self._held += len(chunk)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def abort(self) -> None:
        """The reading side is gone (the service answered, or the client left): writers stop waiting."""
        self._aborted = True
        self._wake()

    async def get(self) -> bytes | None:
        """What arrived since the last call; None at the end of the body. Raises if the client left mid-body."""
        while not self._chunks:
            if self._aborted:
                raise ConnectionAbortedError("the client closed its connection before the body was sent")
            if self._ended:
                return None
            await self._changed.wait()
        # All that is held, in one piece: fewer, larger writes to the service.
        chunk = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._held = 0
        self._wake()
        return chunk


class SandboxForwarder(LoggingConfigurable):
    """Sends an authorised request of this user's server on to the sandbox service, as this user."""

    connect_timeout = Float(
        10.0,
        config=True,
        help="Seconds to wait for a connection to the sandbox service before the request is a 502.",
    )
    request_timeout = Float(
        24 * 3600.0,
        config=True,
        help=(
            "Most seconds one forwarded request may take, its body and answer included (uploads of "
            "gigabytes, followed logs and terminals last long; the service has its own timeouts)."
        ),
    )
    max_clients = Int(
        500,
        config=True,
        help=(
            "Most requests forwarded to the service at once (each open download, log follow or upload "
            "holds one); more wait for a free one."
        ),
    )
    max_body_size = Int(
        0,
        config=True,
        help=(
            "Most bytes of one request body this server accepts to forward; 0: no limit of its own (the "
            "service's upload limits apply, and it refuses a body it will not take before it is sent)."
        ),
    )
    max_message_size = Int(
        16 * 1024 * 1024,
        config=True,
        help="Most bytes of one websocket message relayed either way; a larger one closes the socket.",
    )
    max_unsent = Int(
        8 * 1024 * 1024,
        config=True,
        help=(
            "Most websocket bytes waiting for a slow reader on either side before the relay closes the "
            "socket (the other side is not buffered for without end)."
        ),
    )
    ca_certs = Unicode(
        "",
        config=True,
        help="A PEM file of the certificate authorities that sign an https service's certificate ('' : the system's).",
    )

    def __init__(self, remote: SandboxRemote, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.remote = remote
        self.service_url = remote.url.strip().rstrip("/")
        parts = urlsplit(self.service_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"the sandbox service's URL must be http(s)://host[:port][/prefix], got {self.service_url!r} "
                f"(c.SandboxRemote.url or ${URL_ENV})"
            )
        # The service's own path of its API (a service behind a hub's proxy has a prefix).
        self._service_api = parts.path.rstrip("/") + "/" + API_PREFIX
        self._service_origin = f"{parts.scheme}://{parts.netloc}"
        self._client: SimpleAsyncHTTPClient | None = None

    @property
    def client(self) -> SimpleAsyncHTTPClient:
        # One client of its own (not the shared AsyncHTTPClient, whose 10 slots long downloads and
        # followed logs would fill), made on the loop that serves the requests.
        if self._client is None:
            self._client = SimpleAsyncHTTPClient(
                force_instance=True, max_clients=self.max_clients, max_body_size=UNLIMITED_BODY
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- what is sent --------------------------------------------------------------------------

    def credential(self) -> str:
        token = self.remote.token.strip()
        if not token:
            raise ForwardError(
                502,
                "this Jupyter server has no credential for the sandbox service at "
                f"{self.service_url}: the operator must set c.SandboxRemote.token or ${TOKEN_ENV} "
                "(on a JupyterHub, the hub gives each server $JUPYTERHUB_API_TOKEN)",
            )
        return token

    def upstream_url(self, rest: str, query: str, scheme: str = "http") -> str:
        url = f"{self.service_url}/{API_PREFIX}{rest}"
        if scheme == "ws":
            url = "ws" + url[len("http") :]
        kept = filtered_query(query)
        return f"{url}?{kept}" if kept else url

    def request_headers(
        self, incoming: httputil.HTTPHeaders, names: tuple[str, ...] = REQUEST_HEADERS
    ) -> dict[str, str]:
        headers = {name: incoming[name] for name in names if name in incoming}
        headers["Authorization"] = f"token {self.credential()}"
        return headers

    def local_location(self, location: str, base_url: str) -> str | None:
        """A Location the service sent, as the same resource on the user's server (None: not one of the API's)."""
        parts = urlsplit(location)
        if parts.netloc and f"{parts.scheme}://{parts.netloc}" != self._service_origin:
            return None
        if not parts.path.startswith(self._service_api):
            return None
        local = base_url.rstrip("/") + "/" + API_PREFIX + parts.path[len(self._service_api) :]
        return f"{local}?{parts.query}" if parts.query else local

    # -- errors --------------------------------------------------------------------------------

    def unreachable(self, error: BaseException | None) -> ForwardError:
        reason = _reason(error)
        self.log.warning("jupyter-sandbox: the sandbox service at %s did not answer: %s", self.service_url, reason)
        return ForwardError(
            502,
            f"the sandbox service at {self.service_url} did not answer ({reason}): check that it runs "
            f"(`jupyter sandbox service`) and that this server's c.SandboxRemote.url (or ${URL_ENV}) is its "
            "address, reachable from this server",
        )

    def refused(self) -> ForwardError:
        self.log.error(
            "jupyter-sandbox: the sandbox service at %s refused this server's credential (401); check "
            "c.SandboxRemote.token / $%s / $JUPYTERHUB_API_TOKEN and the service's tokens",
            self.service_url,
            TOKEN_ENV,
        )
        return ForwardError(
            502,
            f"the sandbox service at {self.service_url} did not accept this Jupyter server's credential; "
            "this is for the operator to fix (the server's c.SandboxRemote.token, or the token the hub "
            "gave it, must be one the service knows), not something you can change",
        )

    async def post_json(self, rest: str, body: dict[str, Any], timeout: float = 60.0) -> Any:
        """One call of this server's own to the service's API (not a user's request passed on)."""
        request = HTTPRequest(
            self.upstream_url(rest, ""),
            method="POST",
            headers={"Authorization": f"token {self.credential()}", "Content-Type": "application/json"},
            body=json.dumps(body),
            connect_timeout=self.connect_timeout,
            request_timeout=timeout,
            follow_redirects=False,
            ca_certs=self.ca_certs or None,
        )
        try:
            response = await self.client.fetch(request, raise_error=False)
        except Exception as exc:
            raise self.unreachable(exc) from None
        if response.code == 599:
            raise self.unreachable(response.error)
        if response.code == 401:
            raise self.refused()
        if response.code >= 400:
            raise ForwardError(response.code, _message_of(response, response.code))
        return json.loads(response.body) if response.body else None

    # -- one HTTP request ----------------------------------------------------------------------

    def exchange(
        self, sink: Sink, method: str, rest: str, query: str, headers: httputil.HTTPHeaders, base_url: str
    ) -> Exchange:
        return Exchange(self, sink, method, rest, query, headers, base_url)

    # -- one websocket -------------------------------------------------------------------------

    async def open_socket(
        self,
        rest: str,
        query: str,
        headers: httputil.HTTPHeaders,
        on_message: Callable[[str | bytes | None], None],
        subprotocols: list[str] | None,
    ) -> websocket.WebSocketClientConnection:
        request = HTTPRequest(
            self.upstream_url(rest, query, scheme="ws"),
            headers=self.request_headers(headers, SOCKET_HEADERS),
            connect_timeout=self.connect_timeout,
            request_timeout=self.connect_timeout,
            ca_certs=self.ca_certs or None,
            follow_redirects=False,
        )
        try:
            return await websocket.websocket_connect(
                request,
                on_message_callback=on_message,
                max_message_size=self.max_message_size,
                subprotocols=subprotocols,
            )
        except websocket.WebSocketError as exc:
            raise self.unreachable(exc) from None
        except Exception as exc:
            response = getattr(exc, "response", None)
            code = getattr(exc, "code", None)
            if code == 401:
                raise self.refused() from None
            if isinstance(code, int) and code < 599:
                # The service refused the upgrade with its own answer (404 for a sandbox that is not
                # this user's, 409 for a stopped one, ...): its status and message pass through.
                raise ForwardError(code, _message_of(response, code)) from None
            raise self.unreachable(exc) from None


class Exchange:
    """One HTTP request forwarded: the body as it arrives (`feed`), then the answer as it comes."""

    def __init__(
        self,
        forwarder: SandboxForwarder,
        sink: Sink,
        method: str,
        rest: str,
        query: str,
        headers: httputil.HTTPHeaders,
        base_url: str,
    ) -> None:
        self.forwarder, self.sink, self.base_url = forwarder, sink, base_url
        self.has_body = (
            method in ("POST", "PUT", "PATCH") or "Content-Length" in headers or "Transfer-Encoding" in headers
        )
        self.pipe = Pipe() if self.has_body else None
        self.began = False  # the answer's status and headers are set on the sink
        self.rejected = False  # the service refused the credential: its body is not shown
        self.error: ForwardError | None = None
        self._status: int | None = None
        self._headers = httputil.HTTPHeaders()
        self._sent = 0
        request_headers = forwarder.request_headers(headers)
        if self.has_body and "Content-Length" not in request_headers and method in ("GET", "HEAD", "DELETE", "OPTIONS"):
            request_headers["Content-Length"] = "0"
        self.request = HTTPRequest(
            forwarder.upstream_url(rest, query),
            method=method,
            headers=request_headers,
            body_producer=cast(Any, self._produce) if self.pipe is not None else None,
            # The service refuses a body it will not take (size, owner, path) before it is sent.
            expect_100_continue=self.pipe is not None,
            allow_nonstandard_methods=True,
            follow_redirects=False,
            decompress_response=False,
            connect_timeout=forwarder.connect_timeout,
            request_timeout=forwarder.request_timeout,
            header_callback=self._header_line,
            streaming_callback=self._chunk,
            ca_certs=forwarder.ca_certs or None,
        )
        self.done: asyncio.Future[HTTPResponse] = asyncio.ensure_future(
            forwarder.client.fetch(self.request, raise_error=False)
        )
        self.done.add_done_callback(lambda _: self.pipe.abort() if self.pipe is not None else None)

    async def _produce(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        assert self.pipe is not None
        while True:
            chunk = await self.pipe.get()
            if chunk is None:
                return
            await write(chunk)

    async def feed(self, chunk: bytes) -> None:
        """A piece of the request body (waits while the service is slower than the client)."""
        if self.pipe is not None:
            await self.pipe.put(chunk)

    def client_left(self) -> None:
        if self.pipe is not None:
            self.pipe.abort()
        if not self.done.done():
            # Nothing reads the answer any more: the service's side of it is closed as well.
            self.done.cancel()

    def _header_line(self, line: str) -> None:
        if line.startswith("HTTP/"):
            self._status = httputil.parse_response_start_line(line.strip()).code
            self._headers = httputil.HTTPHeaders()
            return
        if line.strip():
            self._headers.parse_line(line)
            return
        if self._status is None or 100 <= self._status < 200:
            return
        if self._status == 401:
            self.rejected = True
            return
        self.sink.set_status(self._status)
        for name in RESPONSE_HEADERS:
            if name in self._headers:
                self.sink.set_header(name, self._headers[name])
        location = self._headers.get("Location")
        if location is not None:
            local = self.forwarder.local_location(location, self.base_url)
            if local is not None:
                self.sink.set_header("Location", local)
        self.began = True

    def _chunk(self, chunk: bytes) -> Awaitable[None] | None:
        if not self.began:
            return None  # a refusal's body, or an interim answer's: not the user's to see
        self._sent += len(chunk)
        self.sink.write(chunk)
        return self.sink.flush()  # backpressure: the next chunk is read once this one is sent

    async def finish(self) -> str | None:
        """Wait for the whole answer; returns its Content-Type for the sink's finish. Raises ForwardError
        when there was no answer to pass on (and it is not too late to give one)."""
        if self.pipe is not None:
            self.pipe.end()
        try:
            response = await self.done
        except asyncio.CancelledError:
            raise ForwardError(502, "the request to the sandbox service was abandoned") from None
        except Exception as exc:
            # Not every failure is an answer with code 599: a refused connection is raised as itself.
            if self.began:
                raise BrokenAnswer(_reason(exc)) from None
            raise self.forwarder.unreachable(exc) from None
        if self.rejected:
            raise self.forwarder.refused()
        if not self.began:
            raise self.forwarder.unreachable(response.error)
        if response.error is not None and response.code == 599:
            # Cut off mid-answer: the headers are gone already, only a closed connection says so.
            raise BrokenAnswer(_reason(response.error))
        return self._headers.get("Content-Type")


class BrokenAnswer(Exception):
    """The service's answer broke off after it began: the client's connection is closed, not answered."""


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "no answer"
    text = str(error) or type(error).__name__
    if "Timeout" in type(error).__name__ or "Timeout" in text:
        return f"timed out: {text}"
    return text


def _message_of(response: Any, code: int) -> str:
    body = getattr(response, "body", None) or b""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return message if isinstance(message, str) else f"the sandbox service answered {code}"
