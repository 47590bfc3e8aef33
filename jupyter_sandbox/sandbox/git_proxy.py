"""The host's credential-adding proxy for one git API call (clone, pull or push with credentials).

Trust boundary: a git credential never enters the sandbox. git in the sandbox is pointed at a proxy
port the agent opens on the sandbox's own loopback for the length of the call; every connection to
that port is carried to the host over a connection the host opened to the agent (`AgentRelay`), so
the sandbox never reaches the host and the egress policy stays as it is. On the host, `ProxySession`

- accepts a CONNECT only to the remote the call named, answers the TLS handshake with a certificate
  from a CA made for this call (git verifies it: it was given that CA's certificate, nothing else),
- accepts only git smart-HTTP requests for that repository's path (the services the operation needs),
- sends each on its own TLS connection to the real remote, verified with the host's trust store
  (`GitCredentialProxy.ca_bundle`), with the Authorization header added there and only there,
- relays the answer without cookies and without following redirects, and refuses everything else.

Whatever the sandbox does (its own git config, a `git` of its own, reading /proc, its own client on
the proxy port) it can at most make the same git requests to the same repository while the call
runs; it never sees the credential. Time and size are bounded on both of the host's connections.
"""

from __future__ import annotations

import http.client
import re
import secrets
import select
import socket
import ssl
import threading
import time
from typing import Any, Literal

from traitlets import Float, Int, Unicode, Union
from traitlets.config import LoggingConfigurable

from . import errors
from .agent_client import AgentClient, run_blocking
from .git_credentials import CallCertificates, Credential, Remote
from .spec import parse_size

MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
CHUNK = 256 * 1024
MAX_PROBLEMS = 20
# The headers of git's requests that go on to the remote; everything else (Authorization, Cookie,
# Proxy-*, Host, framing) is dropped or set by the proxy.
REQUEST_HEADERS = {
    "accept",
    "accept-encoding",
    "accept-language",
    "content-type",
    "content-encoding",
    "git-protocol",
    "pragma",
    "cache-control",
    "user-agent",
}
# The headers of the remote's answers that go back to git. No Set-Cookie: a session cookie is as good
# as the credential it was issued for.
RESPONSE_HEADERS = {
    "content-type",
    "content-encoding",
    "cache-control",
    "expires",
    "pragma",
    "date",
    "etag",
    "last-modified",
    "location",
    "www-authenticate",
    "vary",
    "retry-after",
}
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
REQUEST_LINE = re.compile(r"^([A-Z]{1,16}) ([\x21-\x7e]{1,8192}) HTTP/1\.([01])$")

SERVICES = {"clone": ("git-upload-pack",), "pull": ("git-upload-pack",), "push": ("git-receive-pack",)}


class Refused(Exception):
    """A request the proxy does not carry; `problem` is what the API caller is told."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.problem = problem


class GitCredentialProxy(LoggingConfigurable):
    """Operator knobs of the credential proxy, and the factory of one call's session."""

    ca_bundle = Unicode(
        "",
        config=True,
        help=(
            "PEM file of the CA certificates that verify git remotes reached with credentials (the host's "
            "connection, not the sandbox's). Empty: the system's trust store."
        ),
    )
    connect_timeout = Float(15.0, config=True, help="Seconds to connect (TCP and TLS) to a git remote.")
    read_timeout = Float(
        60.0,
        config=True,
        help=("Seconds a connection of the credential proxy (to the remote or from git) may stay silent."),
    )
    max_transfer = Union(
        [Int(), Unicode()],
        default_value="4g",
        config=True,
        help=("Most bytes one git call with credentials may move each way through the proxy, e.g. '4g'."),
    )
    max_connections = Int(
        4,
        config=True,
        help=("Most connections git (or anything in the sandbox) may have open through one call's proxy."),
    )

    def upstream_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_bundle or None)
        context.set_alpn_protocols(["http/1.1"])
        return context

    def session(self, remote: Remote, credential: Credential, operation: str) -> ProxySession:
        return ProxySession(self, remote, credential, SERVICES[operation])


class ProxySession:
    """The proxy of one call: serves connections relayed from the sandbox, in threads of its own."""

    def __init__(
        self, proxy: GitCredentialProxy, remote: Remote, credential: Credential, services: tuple[str, ...]
    ) -> None:
        self.proxy, self.remote, self.log = proxy, remote, proxy.log
        self._credential: Credential | None = credential
        self.services = services
        # A name for the remote that only this call knows (a reserved, never resolvable domain): git
        # in the sandbox is given it, so no url.insteadOf or http.<url>.* that sandbox code wrote
        # beforehand can match it (see agent/git.py).
        self.alias = f"git-{secrets.token_hex(8)}.invalid"
        self.certificates = CallCertificates([remote.host, self.alias]) if remote.scheme == "https" else None
        self.upstream_context = proxy.upstream_context() if remote.scheme == "https" else None
        self.limit = parse_size(proxy.max_transfer, "max_transfer")
        self.sent = self.received = 0
        self.problems: list[tuple[int, str]] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._closed = False
        self._upstreams: set[http.client.HTTPConnection] = set()
        # Only to recognise the secret in answers on their way to the sandbox; requests take the
        # credential from _credential, which close() drops.
        self._echo_check = credential

    @property
    def alias_url(self) -> str:
        return f"{self.remote.scheme}://{self.alias}{self.remote.path}"

    @property
    def ca_pem(self) -> str | None:
        return self.certificates.ca_pem.decode() if self.certificates else None

    def close(self) -> None:
        """The call is over: the credential is dropped, no further request gets it, and the host's
        connections to the remote end now rather than at their read timeout."""
        self._closed = True
        self._credential = None
        with self._lock:
            upstreams = list(self._upstreams)
        for connection in upstreams:
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def problem(self) -> tuple[int, str] | None:
        """What went wrong on the host's side, to explain a failed git call: the remote's failures
        first (they are what stops git), then refusals. Connections that sandbox code made to the
        proxy are refused too, so every distinct reason is named (at most three)."""
        with self._lock:
            problems = sorted(self.problems, key=lambda p: p[0] not in (502, 413))
        if not problems:
            return None
        reasons = list(dict.fromkeys(reason for _, reason in problems))[:3]
        return problems[0][0], "; ".join(reasons)

    def _note(self, status: int, problem: str) -> bool:
        """Keep a problem for the caller's error message; False once enough are kept (sandbox code
        can make the proxy refuse as often as it likes: neither the list nor the log grows for it)."""
        with self._lock:
            if len(self.problems) >= MAX_PROBLEMS:
                return False
            self.problems.append((status, problem))
            return True

    def _refused(self, stream: Stream, refused: Refused) -> None:
        if self._note(refused.status, refused.problem):
            self.log.info("git credential proxy for %s refused a request: %s", self.remote.url, refused.problem)
        try:
            stream.send(refusal(refused))
        except OSError:
            pass

    def _count(self, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.received += received
            over = self.sent > self.limit or self.received > self.limit
        if over:
            raise Refused(
                413, f"the git call moved more than the limit of {self.limit:,} bytes (GitCredentialProxy.max_transfer)"
            )

    # -- one relayed connection -------------------------------------------------------------

    def serve(self, sock: socket.socket, early: bytes = b"") -> None:
        """Speak HTTP (and TLS inside CONNECT) to whatever is at the sandbox's end of `sock`."""
        sock.settimeout(self.proxy.read_timeout)
        stream = Stream(sock, early)
        try:
            raw = stream.head()
            if raw is None:
                return
            method, target, headers, version = parse_head(raw)
            if method != "CONNECT":
                self._requests(stream, origin_form=False, first=(method, target, headers, version))
                return
            certificates = self._check_connect(target)
            if stream.pending():
                raise Refused(400, "git sent data before the tunnel was set up")
            stream.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            try:
                tls = certificates.server_context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                # git refused the call's certificate (or something else connected): nothing was sent.
                self.log.debug("git credential proxy: TLS from the sandbox failed: %s", exc)
                return
            self._requests(Stream(tls), origin_form=True)
        except Refused as refused:
            self._refused(stream, refused)
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            self.log.debug("git credential proxy: a relayed connection ended: %s", exc)
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _check_connect(self, target: str) -> CallCertificates:
        """The certificates to answer a CONNECT with (an https remote always has them)."""
        allowed = (self.remote.authority.lower(), f"{self.alias}:443")
        if self.remote.scheme != "https" or self.certificates is None or target.lower() not in allowed:
            raise Refused(
                400,
                f"git asked to connect to {target[:200]}, but the credentials of this call are only "
                f"for {self.remote.url}; check the repository's remote URL",
            )
        return self.certificates

    def _path(self, target: str, origin_form: bool) -> str:
        if origin_form:
            if not target.startswith("/"):
                raise Refused(400, "git sent a request the proxy cannot read")
            return target
        for netloc in (self.remote.netloc, self.alias):
            prefix = f"http://{netloc}/"
            if self.remote.scheme == "http" and target.lower().startswith(prefix.lower()):
                return target[len(prefix) - 1 :]
        raise Refused(
            400,
            f"git asked for {target.split('?')[0][:200]}, but the credentials of this call are "
            f"only for {self.remote.url}; check the repository's remote URL",
        )

    def _check_request(self, method: str, path: str) -> None:
        route, _, query = path.partition("?")
        repo = self.remote.path
        for service in self.services:
            if method == "GET" and route == f"{repo}/info/refs" and query == f"service={service}":
                return
            if method == "POST" and route == f"{repo}/{service}" and not query:
                return
        raise Refused(
            403,
            f"{method} {route[:200]} is not a git request of this call for {self.remote.url} "
            f"(only {', '.join(self.services)} on that repository)",
        )

    def _requests(self, stream: Stream, origin_form: bool, first: tuple | None = None) -> None:
        upstream: http.client.HTTPConnection | None = None
        try:
            while True:
                if first is not None:
                    method, target, headers, version = first
                    first = None
                else:
                    raw = stream.head()
                    if raw is None:
                        return
                    method, target, headers, version = parse_head(raw)
                if self._closed:
                    raise Refused(410, "the git call is over")
                path = self._path(target, origin_form)
                self._check_request(method, path)
                upstream, keep = self._forward(stream, method, path, headers, upstream)
                if not keep or version == "0":
                    return
        except Refused as refused:
            self._refused(stream, refused)
        finally:
            if upstream is not None:
                with self._lock:
                    self._upstreams.discard(upstream)
                upstream.close()

    def _connect(self) -> http.client.HTTPConnection:
        remote, timeout = self.remote, self.proxy.connect_timeout
        if remote.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                remote.host, remote.port, timeout=timeout, context=self.upstream_context
            )
        else:
            connection = http.client.HTTPConnection(remote.host, remote.port, timeout=timeout)
        try:
            connection.connect()
        except ssl.SSLCertVerificationError as exc:
            raise Refused(
                502, f"the TLS certificate of {remote.authority} could not be verified: {exc.verify_message or exc}"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise Refused(502, f"could not reach the git remote {remote.authority}: {exc}") from None
        connection.sock.settimeout(self.proxy.read_timeout)
        with self._lock:
            self._upstreams.add(connection)
        return connection

    def _forward(
        self,
        stream: Stream,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        upstream: http.client.HTTPConnection | None,
    ) -> tuple[http.client.HTTPConnection | None, bool]:
        """One request to the remote, its answer back to git; (the connection to reuse, keep-alive?)."""
        fields: dict[str, list[str]] = {}
        for name, value in headers:
            fields.setdefault(name.lower(), []).append(value)
        lengths, encodings = fields.get("content-length", []), fields.get("transfer-encoding", [])
        if len(lengths) > 1 or (lengths and encodings):
            raise Refused(400, "git sent a request with ambiguous framing")
        chunked = False
        if encodings:
            if [e.strip().lower() for e in encodings] != ["chunked"]:
                raise Refused(400, "git sent a transfer coding other than chunked")
            chunked = True
        length = 0
        if lengths:
            if not lengths[0].isdigit():
                raise Refused(400, "git sent an invalid Content-Length")
            length = int(lengths[0])
            if length > self.limit:
                raise Refused(413, f"the request is larger than the limit of {self.limit:,} bytes")
        connection_tokens = {t.strip().lower() for v in fields.get("connection", []) for t in v.split(",")}
        if "100-continue" in " ".join(fields.get("expect", [])).lower():
            stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        credential = self._credential
        if credential is None:
            raise Refused(410, "the git call is over")
        if upstream is not None and not still_open(upstream):
            # The remote closed the kept-alive connection while it was idle: a new one.
            with self._lock:
                self._upstreams.discard(upstream)
            upstream.close()
            upstream = None
        if upstream is None:
            upstream = self._connect()
        try:
            upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            upstream.putheader("Host", self.remote.netloc)
            for name, values in fields.items():
                if name in REQUEST_HEADERS and name not in connection_tokens:
                    for value in values:
                        upstream.putheader(name, value)
            upstream.putheader("Authorization", credential.header)
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            elif method == "POST" or length:
                upstream.putheader("Content-Length", str(length))
            upstream.endheaders()
            if chunked:
                for data in stream.chunks():
                    self._count(sent=len(data))
                    upstream.send(b"%x\r\n%s\r\n" % (len(data), data))
                upstream.send(b"0\r\n\r\n")
            else:
                remaining = length
                while remaining:
                    data = stream.read(min(remaining, CHUNK))
                    if not data:
                        raise Refused(400, "git's request body ended early")
                    self._count(sent=len(data))
                    upstream.send(data)
                    remaining -= len(data)
            response = upstream.getresponse()
        except ssl.SSLCertVerificationError as exc:
            upstream.close()
            raise Refused(
                502,
                f"the TLS certificate of {self.remote.authority} could not be verified: {exc.verify_message or exc}",
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            upstream.close()
            raise Refused(502, f"the git remote {self.remote.authority} failed: {exc}") from None
        self.requests += 1
        self.log.debug("git credential proxy: %s %s -> %s", method, path.partition("?")[0], response.status)
        try:
            keep = self._answer(stream, method, response) and "close" not in connection_tokens
        except Refused:
            with self._lock:
                self._upstreams.discard(upstream)
            upstream.close()
            raise
        if response.will_close or not keep:
            with self._lock:
                self._upstreams.discard(upstream)
            upstream.close()
            return None, keep
        return upstream, keep

    def _answer(self, stream: Stream, method: str, response: http.client.HTTPResponse) -> bool:
        reason = re.sub(r"[^\x20-\x7e]", "", response.reason or "")[:100] or "-"
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        for name, value in response.getheaders():
            if name.lower() in RESPONSE_HEADERS and re.fullmatch(r"[\x20-\x7e\t]*", value):
                lines.append(f"{name}: {value}")
        echo = self._echo_check
        if echo.found_in("\r\n".join(lines).encode("latin-1")):
            raise Refused(
                502, f"the git remote {self.remote.authority} sent the credential back; its answer was not passed on"
            )
        bodiless = method == "HEAD" or response.status in (204, 304) or response.status < 200
        announced = response.getheader("Content-Length")
        length = int(announced) if announced is not None and announced.isdigit() and len(announced) < 19 else None
        fixed = not response.chunked and length is not None
        if not bodiless:
            lines.append(f"Content-Length: {length}" if fixed else "Transfer-Encoding: chunked")
        stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if bodiless:
            return True
        tail = b""  # the end of the previous piece: a secret split across two pieces is found too
        try:
            while True:
                data = response.read(CHUNK)
                if not data:
                    break
                self._count(received=len(data))
                if echo.found_in(tail + data):
                    self._note(
                        502, f"the git remote {self.remote.authority} sent the credential back; the answer was cut off"
                    )
                    return False
                tail = data[-echo.longest :]
                stream.send(data if fixed else b"%x\r\n%s\r\n" % (len(data), data))
        except (OSError, http.client.HTTPException) as exc:
            self._note(502, f"the answer of the git remote {self.remote.authority} broke off: {exc}")
            return False
        except Refused as refused:
            self._note(refused.status, refused.problem)
            return False
        if not fixed:
            stream.send(b"0\r\n\r\n")
        return True


def still_open(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection to the remote can take another request (nothing to read on it:
    a readable idle connection is one the remote closed)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def refusal(refused: Refused) -> bytes:
    status = refused.status if refused.status in (400, 403, 410, 413, 502) else 403
    reason = {400: "Bad Request", 403: "Forbidden", 410: "Gone", 413: "Payload Too Large", 502: "Bad Gateway"}[status]
    body = f"jupyter-sandbox credential proxy: {refused.problem}\n".encode("utf-8", "replace")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def parse_head(raw: bytes) -> tuple[str, str, list[tuple[str, str]], str]:
    """(method, target, headers, minor version) of a request head; Refused when it is malformed."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise Refused(400, "git sent a request head that is not ASCII") from None
    lines = text.split("\r\n")
    match = REQUEST_LINE.match(lines[0])
    if not match:
        raise Refused(400, "git sent a request line the proxy cannot read")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not TOKEN.match(name) or "\n" in value or "\r" in value:
            raise Refused(400, "git sent a header the proxy cannot read")
        headers.append((name, value.strip(" \t")))
    if len(headers) > MAX_HEADERS:
        raise Refused(400, "git sent too many headers")
    return match.group(1), match.group(2), headers, match.group(3)


class Stream:
    """A socket with a read buffer: request heads, bodies and chunks, each with a bound."""

    def __init__(self, sock: socket.socket, early: bytes = b"") -> None:
        self.sock = sock
        self.buffer = bytearray(early)

    def pending(self) -> bool:
        return bool(self.buffer)

    def _fill(self) -> bool:
        data = self.sock.recv(CHUNK)
        if not data:
            return False
        self.buffer += data
        return True

    def head(self) -> bytes | None:
        """The next request head, or None when the other side closed between requests."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buffer[:end])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > MAX_HEAD:
                raise Refused(400, "git sent an over-long request head")
            if not self._fill():
                if self.buffer.strip():
                    raise Refused(400, "git's request head ended early")
                return None

    def read(self, size: int) -> bytes:
        if not self.buffer and not self._fill():
            return b""
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def line(self, limit: int = 4096) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > limit:
                raise Refused(400, "git sent an over-long chunk line")
            if not self._fill():
                raise Refused(400, "git's request body ended early")

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise Refused(400, "git's request body ended early")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def chunks(self) -> Any:
        """The data of a chunked body, piece by piece (trailers are read and dropped)."""
        while True:
            size_text = self.line().split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size_text):
                raise Refused(400, "git sent an invalid chunk size")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(MAX_HEADERS + 1):
                    if not self.line(MAX_HEAD):
                        return
                raise Refused(400, "git sent too many trailers")
            while size:
                data = self.read(min(size, CHUNK))
                if not data:
                    raise Refused(400, "git's request body ended early")
                size -= len(data)
                yield data
            if self.exactly(2) != b"\r\n":
                raise Refused(400, "git sent a malformed chunk")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class AgentRelay:
    """Connections from the host to the agent's relay of one call, one always waiting for git.

    The agent pairs each connection git (or anything else in the sandbox) makes to the call's proxy
    port with one of these and answers 101; the host then serves it with the session. At most
    `max_connections` are in use at once; `stop` ends them all.
    """

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        call_id: str,
        session: ProxySession,
        max_connections: int,
        deadline: float,
    ) -> None:
        self.host, self.port, self.token, self.call_id = host, port, token, call_id
        self.session, self.max_connections, self.deadline = session, max(1, max_connections), deadline
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._open: set[socket.socket] = set()
        self._in_use = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        keeper = threading.Thread(target=self._keep, name=f"git-relay-{self.call_id[:8]}", daemon=True)
        self._threads.append(keeper)
        keeper.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            sockets = list(self._open)
            self._lock.notify_all()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)

    def _keep(self) -> None:
        failures = 0
        while not self._stop.is_set() and time.monotonic() < self.deadline and failures < 20:
            with self._lock:
                while self._in_use >= self.max_connections and not self._stop.is_set():
                    self._lock.wait(0.5)
            if self._stop.is_set():
                return
            paired = self._wait_for_git()
            if paired is None:
                failures += 1
                self._stop.wait(0.1)
                continue
            if paired is False:
                return  # the agent says the call is over
            failures = 0
            sock, early = paired
            with self._lock:
                self._in_use += 1
            worker = threading.Thread(
                target=self._serve, args=(sock, early), daemon=True, name=f"git-proxy-{self.call_id[:8]}"
            )
            self._threads.append(worker)
            worker.start()

    def _serve(self, sock: socket.socket, early: bytes) -> None:
        try:
            self.session.serve(sock, early)
        finally:
            with self._lock:
                self._in_use -= 1
                self._open.discard(sock)
                self._lock.notify_all()

    def _wait_for_git(self) -> tuple[socket.socket, bytes] | Literal[False] | None:
        """A relay connection paired with a connection from the sandbox; False when the call is over,
        None when the agent could not be asked."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=10)
        except OSError:
            return None
        with self._lock:
            self._open.add(sock)
        keep = False
        try:
            sock.sendall(
                (
                    f"GET /git/relay/{self.call_id} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    f"Authorization: token {self.token}\r\nUpgrade: sandbox-relay\r\n"
                    "Connection: Upgrade\r\n\r\n"
                ).encode()
            )
            # Waits until something in the sandbox connects, or stop() shuts the socket.
            sock.settimeout(max(1.0, self.deadline - time.monotonic()))
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(4096)
                if not data or len(buffer) > 8192:
                    return None if not self._stop.is_set() else False
                buffer += data
            head, _, early = buffer.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0].split(b" ")
            if len(status) < 2 or status[1] != b"101":
                # 410: the call is over. 404 (the call never registered in time) and the rest: ask again.
                return False if status[1:2] == [b"410"] else None
            keep = True
            return sock, early
        except OSError:
            return False if self._stop.is_set() else None
        finally:
            if not keep:
                with self._lock:
                    self._open.discard(sock)
                sock.close()


class GitProxyError(Exception):
    """A git call with credentials failed on the host's side; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status if status in (413, 502) else 400
        self.message = message


def run_call(
    proxy: GitCredentialProxy,
    client: AgentClient,
    operation: str,
    request: dict[str, Any],
    remote: Remote,
    credential: Credential,
    timeout: float,
) -> dict[str, Any]:
    """Run one clone, pull or push in the sandbox with the credential added on the host (blocking).

    The proxy exists from just before the agent is asked until its answer: no request made after
    that gets the credential."""
    session = proxy.session(remote, credential, operation)
    call_id = secrets.token_hex(16)
    relay = AgentRelay(
        client.host, client.port, client.token, call_id, session, proxy.max_connections, time.monotonic() + timeout + 10
    )
    relay.start()
    try:
        # A clone names the real URL (it becomes the new repository's origin, and no config of the
        # sandbox is read by it); pull and push use the call's own name for the remote.
        url = remote.url if operation == "clone" else session.alias_url
        body = {**request, "relay": {"id": call_id, "ca": session.ca_pem, "url": url}}
        return run_blocking(lambda: client.git.run(operation, body, timeout=timeout))
    except errors.SandboxOperationError as exc:
        problem = session.problem()
        if problem:
            raise GitProxyError(
                problem[0], f"{credential.redact(exc.message)} (the host's credential proxy: {problem[1]})"
            ) from None
        raise
    finally:
        session.close()
        relay.stop()
