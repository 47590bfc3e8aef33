"""The egress gateway: an HTTP proxy on the host for sandboxes whose allow list names domains.

Trust boundary: every byte a connection brings is the sandbox's, and hostile. The gateway

- knows the sandbox by the connection's source address on the sandbox network (state.py), and
  judges each request by that sandbox's current policy, kept on the host (network.py), and the
  operator's deny list, which wins over every policy;
- for CONNECT, reads the TLS ClientHello without decrypting it and requires its server name to be
  the CONNECT host; then it only carries bytes, unless the host has a secret (vault.py): then it
  answers TLS itself with a leaf from the sandbox's own CA (authority.py), puts each secret's value
  in place of its placeholder in the request's header values, and re-encrypts to the real host with
  normal certificate verification;
- forwards plain HTTP one request per connection, without the Proxy-* headers;
- resolves names itself (DNS, or the operator's resolve_overrides) and refuses names that resolve to
  private, loopback, link-local or metadata addresses unless the policy lists that block;
- records every attempt in the sandbox's connection log (time, host, port, allowed or blocked, bytes,
  reason), never a header or a secret;
- closes open connections that a changed policy no longer allows.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import network
from . import authority, domains, state, tls, vault
from .settings import Settings

log = logging.getLogger("jupyter_sandbox.gateway")
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
CHUNK = 256 * 1024
F_SETPIPE_SZ = 1031  # Linux's fcntl for a pipe's capacity
PIPE_SIZE = 1024 * 1024
HEAD_TIMEOUT = 30.0
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


class Refused(Exception):
    """A request the gateway does not carry; `status` and the message go back to the sandbox."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(eq=False)  # each one is itself: kept in a set while open
class Connection:
    sandbox_id: str
    host: str
    port: int
    sockets: list[socket.socket] = field(default_factory=list)
    sent: int = 0
    received: int = 0
    cut: str = ""
    intercepted: bool = False
    last: float = field(default_factory=time.monotonic)  # the last byte either way, for idle_timeout

    def close(self, why: str) -> None:
        self.cut = why
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class Decision:
    host: str
    port: int
    addresses: list[str]
    rule: str
    direct: bool  # an override or a listed block: reached directly, never through upstream_proxy


class Head:
    """A parsed request or response head."""

    def __init__(self, first: str, headers: list[tuple[str, str]]) -> None:
        self.first = first
        self.headers = headers

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def without(self, names: set[str]) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.headers if k.lower() not in names]


def read_head(reader: Any) -> Head | None:
    """A head from a binary file object, bounded; None at a clean end of stream."""
    first = reader.readline(MAX_HEAD + 1)
    if not first:
        return None
    total = len(first)
    if not first.endswith(b"\n") or total > MAX_HEAD:
        raise Refused(431, "the request line is too long")
    headers: list[tuple[str, str]] = []
    while True:
        line = reader.readline(MAX_HEAD + 1)
        total += len(line)
        if total > MAX_HEAD or len(headers) > MAX_HEADERS:
            raise Refused(431, "the request's headers are too large")
        if not line.endswith(b"\n"):
            raise Refused(400, "the head ended early")
        if line in (b"\r\n", b"\n"):
            break
        text = line.decode("latin-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") or ":" not in text:
            raise Refused(400, "a malformed header line")
        key, value = text.split(":", 1)
        if not key or any(c in key for c in " \t"):
            raise Refused(400, "a malformed header name")
        headers.append((key, value.strip()))
    return Head(first.decode("latin-1").rstrip("\r\n"), headers)


def _blocked_address(address: str, cidrs: Sequence[str]) -> bool:
    ip = ipaddress.ip_address(address)
    if any(ip in ipaddress.ip_network(c) for c in cidrs):
        return any(ip in ipaddress.ip_network(b) for b in (network.NEVER_V4 if ip.version == 4 else network.NEVER_V6))
    blocked = network.BLOCKED_V4 + network.NEVER_V4 if ip.version == 4 else network.BLOCKED_V6 + network.NEVER_V6
    return any(ip in ipaddress.ip_network(b) for b in blocked)


def _response(status: int, reason: str, body: str) -> bytes:
    data = (body + "\n").encode()
    phrase = {400: "Bad Request", 421: "Misdirected Request", 431: "Headers Too Large", 502: "Bad Gateway"}.get(
        status, "Error"
    )
    if status == 403:
        # Clients show a refused CONNECT by its status line only (no body): the line says why.
        phrase = "Blocked by the sandbox network policy: " + _printable_phrase(reason)
    return (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\nX-Sandbox-Gateway: {_printable_phrase(reason)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1", "replace") + data


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = state.ConnectionLog(settings.log_entries)
        self.leaves = authority.LeafCache()
        self.open: set[Connection] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.last_used = time.monotonic()
        self.upstream_context = ssl.create_default_context()
        if settings.upstream_ca_file:
            self.upstream_context.load_verify_locations(settings.upstream_ca_file)
        self.listener: socket.socket | None = None

    # -- the policy ---------------------------------------------------------------------------

    def judge(self, sandbox_id: str, raw_host: str, port: int, resolve: bool = True) -> Decision:
        """Whether the sandbox's policy (now) lets it reach `raw_host`:`port`, and where that is;
        without `resolve` the policy alone is judged (no DNS: the watcher asks this often)."""
        policy = network.load(sandbox_id)
        try:
            host = domains.host_of(raw_host)
        except domains.DomainError as exc:
            raise Refused(400, f"not a host name: {exc}") from None
        if not policy.uses_gateway:
            raise Refused(403, f"the sandbox's network policy is {policy.mode}, which does not use the gateway")
        if port not in self.settings.allowed_ports:
            ports = ", ".join(map(str, self.settings.allowed_ports))
            raise Refused(403, f"port {port} is not allowed (the gateway allows ports {ports})")
        denied = domains.first_match(host, self.settings.deny_domains)
        if denied:
            raise Refused(403, f"{host} is on the operator's deny list ({denied})")
        if domains.is_address(host):
            if not any(ipaddress.ip_address(host) in ipaddress.ip_network(c) for c in policy.cidrs):
                raise Refused(
                    403, f"{host} is not in the sandbox's allow list ({', '.join(policy.cidrs) or 'no blocks'})"
                )
            if _blocked_address(host, policy.cidrs):
                raise Refused(403, f"{host} is a link-local or metadata address")
            return Decision(host, port, [host], host, True)
        rule = domains.first_match(host, policy.domains)
        if rule is None:
            listed = ", ".join(policy.domains)
            raise Refused(
                403,
                f"{host} is not on the sandbox's network allow list ({listed}); "
                f"add it with %sandbox network allow ... {host}",
            )
        override = self.settings.resolve_overrides.get(host)
        if not resolve:
            return Decision(host, port, [], rule, bool(override))
        if override:
            return Decision(host, port, [override], rule, True)
        if self.settings.upstream_proxy:
            return Decision(host, port, [], rule, False)  # the upstream proxy resolves it
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise Refused(502, f"{host} does not resolve ({exc.strerror})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        public = [a for a in addresses if not _blocked_address(a, policy.cidrs)]
        if not public:
            raise Refused(403, f"{host} resolves to private or reserved addresses only ({', '.join(addresses)})")
        return Decision(host, port, public, rule, False)

    def still_allowed(self, conn: Connection) -> str | None:
        """Why an open connection is no longer allowed, or None."""
        try:
            self.judge(conn.sandbox_id, conn.host, conn.port, resolve=False)
        except Refused as exc:
            if exc.status == 502:
                return None
            return exc.reason
        return None

    # -- serving ----------------------------------------------------------------------------------

    def bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.settings.address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.settings.address, self.settings.port))
        listener.listen(256)
        self.listener = listener
        return listener

    def serve(self) -> None:
        listener = self.listener or self.bind()
        threading.Thread(target=self._watch, daemon=True, name="gateway-watch").start()
        listener.settimeout(1.0)
        while not self.stopping.is_set():
            try:
                client, peer = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            self.last_used = time.monotonic()
            threading.Thread(target=self._handle_safely, args=(client, peer[0]), daemon=True).start()
        listener.close()

    def stop(self) -> None:
        self.stopping.set()

    def _watch(self) -> None:
        """Cut connections a changed policy forbids; exit when no sandbox has used the gateway for long."""
        while not self.stopping.wait(0.5):
            with self.lock:
                current = list(self.open)
            now = time.monotonic()
            for conn in current:
                why = self.still_allowed(conn) if conn.host else None
                if why:
                    conn.close(f"cut: the policy changed ({why})")
                elif conn.host and not conn.intercepted and now - conn.last > self.settings.idle_timeout:
                    conn.close(f"closed: silent for {self.settings.idle_timeout:.0f} s")
            if not self._address_exists():
                log.info("gateway: %s is gone (its network was removed); exiting", self.settings.address)
                self.stop()
                return
            if current:
                self.last_used = time.monotonic()
            elif time.monotonic() - self.last_used > self.settings.idle_exit_seconds and not state.registered():
                log.info("gateway: no sandbox has used it for %.0f s; exiting", self.settings.idle_exit_seconds)
                self.stop()

    def _address_exists(self) -> bool:
        """Whether the host still has the address the gateway listens on (the bridge exists)."""
        family = socket.AF_INET6 if ":" in self.settings.address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((self.settings.address, 0))
            except OSError as exc:
                return exc.errno != errno.EADDRNOTAVAIL
        return True

    def _handle_safely(self, client: socket.socket, peer: str) -> None:
        try:
            self._handle(client, peer)
        except Exception:  # a bug in one connection must not go unseen, nor stop the others
            log.exception("gateway: a connection from %s failed", peer)
            client.close()

    def _handle(self, client: socket.socket, peer: str) -> None:
        sandbox_id = state.sandbox_at(peer)
        if sandbox_id is None:
            try:
                client.sendall(_response(403, "unknown peer", "this address is not a sandbox's"))
            except OSError:
                pass
            client.close()
            return
        conn = Connection(sandbox_id, "", 0, [client])
        with self.lock:
            if sum(1 for c in self.open if c.sandbox_id == sandbox_id) >= self.settings.max_connections_per_sandbox:
                refuse = True
            else:
                refuse = False
                self.open.add(conn)
        entry: dict[str, Any] = {}
        try:
            if refuse:
                raise Refused(
                    403, f"the sandbox has {self.settings.max_connections_per_sandbox} connections open already"
                )
            client.settimeout(HEAD_TIMEOUT)
            reader = client.makefile("rb")
            head = read_head(reader)
            if head is None:
                return
            entry = self._serve_request(conn, client, reader, head)
        except Refused as exc:
            entry = {"allowed": False, "reason": exc.reason}
            try:
                client.sendall(_response(exc.status, exc.reason, f"jupyter-sandbox gateway: {exc.reason}"))
            except OSError:
                pass
        except _Quiet as exc:
            entry = {"allowed": not str(exc).startswith("blocked"), "reason": str(exc)}
        except (OSError, ValueError) as exc:
            entry.setdefault("allowed", True)
            entry["reason"] = conn.cut or f"{entry.get('reason', 'allowed')}; ended: {type(exc).__name__}"
        finally:
            with self.lock:
                self.open.discard(conn)
            for sock in conn.sockets:
                try:
                    sock.close()
                except OSError:
                    pass
            if conn.cut:
                entry["reason"] = conn.cut
            if entry:
                self.log.add(
                    sandbox_id,
                    {
                        "host": conn.host[:255],
                        "port": conn.port,
                        "allowed": bool(entry.get("allowed")),
                        "bytes_sent": conn.sent,
                        "bytes_received": conn.received,
                        "reason": str(entry.get("reason", ""))[:300],
                        "intercepted": conn.intercepted,
                        **({"method": entry["method"]} if "method" in entry else {}),
                    },
                )

    def _serve_request(self, conn: Connection, client: socket.socket, reader: Any, head: Head) -> dict[str, Any]:
        parts = head.first.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise Refused(400, "not an HTTP/1 request")
        method, target = parts[0], parts[1]
        if method == "CONNECT":
            host, port = _authority(target)
            conn.host, conn.port = _printable(host), port
            decision = self.judge(conn.sandbox_id, host, port)
            conn.host = decision.host
            return self._tunnel(conn, client, reader, decision)
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            raise Refused(400, "a proxy request names an absolute http:// URL (or is a CONNECT)")
        try:
            port = url.port or 80
        except ValueError:
            raise Refused(400, "a URL with a bad port") from None
        conn.host, conn.port = _printable(url.hostname), port
        decision = self.judge(conn.sandbox_id, url.hostname, port)
        conn.host = decision.host
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        upstream = self._connect(decision, conn, plain_target=target)
        conn.sockets.append(upstream)
        forward_target = target if (self.settings.upstream_proxy and not decision.direct) else path
        authority = decision.host if port == 80 else f"{decision.host}:{port}"
        headers = [("Host", authority), *head.without(HOP_BY_HOP | {"host"}), ("Connection", "close")]
        client.settimeout(self.settings.idle_timeout)
        upstream.settimeout(self.settings.idle_timeout)
        self._exchange(conn, client, reader, upstream, upstream.makefile("rb"), method, forward_target, head, headers)
        return {"allowed": True, "reason": f"allowed by {decision.rule}", "method": method}

    # -- upstream ---------------------------------------------------------------------------------

    def _connect(self, decision: Decision, conn: Connection, plain_target: str | None = None) -> socket.socket:
        """A TCP connection to the host (or, for CONNECT through the upstream proxy, a tunnel to it)."""
        timeout = self.settings.connect_timeout
        if self.settings.upstream_proxy and not decision.direct:
            proxy = self.settings.upstream_proxy.removeprefix("http://").rstrip("/")
            proxy_host, _, proxy_port = proxy.rpartition(":")
            sock = socket.create_connection((proxy_host or proxy, int(proxy_port or 3128)), timeout=timeout)
            if plain_target is None:
                target = f"{decision.host}:{decision.port}"
                sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                answer = read_head(sock.makefile("rb"))
                if answer is None or answer.first.split(" ")[1:2] != ["200"]:
                    sock.close()
                    raise Refused(
                        502, f"the upstream proxy refused {target}: {answer.first if answer else 'no answer'}"
                    )
            return sock
        last: Exception | None = None
        for address in decision.addresses:
            try:
                return socket.create_connection((address, decision.port), timeout=timeout)
            except OSError as exc:
                last = exc
        raise Refused(502, f"could not reach {decision.host}:{decision.port} ({last})")

    # -- CONNECT ----------------------------------------------------------------------------------

    def _tunnel(self, conn: Connection, client: socket.socket, reader: Any, decision: Decision) -> dict[str, Any]:
        secrets = vault.for_host(conn.sandbox_id, decision.host) if not domains.is_address(decision.host) else []
        # Reached before the tunnel is granted, so an unreachable host is a 502 the client can read.
        upstream = self._connect(decision, conn)
        conn.sockets.append(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._check_hello(client, decision)
        client.settimeout(self.settings.idle_timeout)
        upstream.settimeout(self.settings.idle_timeout)
        if secrets:
            conn.intercepted = True
            self._intercept(conn, client, upstream, decision, secrets)
            return {"allowed": True, "reason": f"allowed by {decision.rule}; secret added"}
        self._splice(conn, client, upstream)
        return {"allowed": True, "reason": f"allowed by {decision.rule}"}

    def _check_hello(self, client: socket.socket, decision: Decision) -> None:
        """Peek at the ClientHello (it stays in the socket for whoever reads next) and require its
        server name to be the CONNECT host."""
        data, deadline = b"", time.monotonic() + HEAD_TIMEOUT
        while True:
            try:
                length = tls.hello_length(data)
            except tls.NotTLS as exc:
                raise _Quiet(f"blocked: only TLS may pass a CONNECT tunnel ({exc})") from None
            if length is not None:
                break
            if time.monotonic() > deadline or len(data) >= tls.MAX_HELLO:
                raise _Quiet("blocked: no TLS ClientHello arrived")
            client.settimeout(max(0.1, deadline - time.monotonic()))
            more = client.recv(tls.MAX_HELLO, socket.MSG_PEEK)
            if not more:
                raise _Quiet("blocked: the client closed before its TLS ClientHello")
            if len(more) == len(data):
                time.sleep(0.005)  # the rest of the hello is on its way
            data = more
        try:
            name = tls.server_name(data)
        except tls.NotTLS as exc:
            raise _Quiet(f"blocked: {exc}") from None
        if name is None:
            if not domains.is_address(decision.host):
                raise _Quiet("blocked: the TLS ClientHello names no server (SNI), so its host cannot be checked")
            return
        try:
            sni = domains.host_of(name)
        except domains.DomainError:
            raise _Quiet("blocked: the TLS server name is not a host name") from None
        if sni != decision.host:
            raise _Quiet(f"blocked: the TLS server name {sni} is not the CONNECT host {decision.host}")

    def _splice(self, conn: Connection, client: socket.socket, upstream: socket.socket) -> None:
        """Carry bytes both ways until either side ends: one direction on a thread of its own, each
        moved by the kernel (splice through a pipe) where it can, so a tunnel costs little more than
        a direct connection. Silence is ended by the watcher (idle_timeout)."""
        client.settimeout(None)
        upstream.settimeout(None)
        other = threading.Thread(target=self._pump, args=(conn, upstream, client, False), daemon=True)
        other.start()
        self._pump(conn, client, upstream, True)
        other.join()

    def _pump(self, conn: Connection, source: socket.socket, target: socket.socket, outbound: bool) -> None:
        splice = getattr(os, "splice", None)
        try:
            if splice is not None:
                read_end, write_end = os.pipe()
                try:
                    try:
                        fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)  # fewer, larger moves
                    except OSError:
                        pass
                    while True:
                        moved = splice(source.fileno(), write_end, PIPE_SIZE)
                        if moved == 0:
                            break
                        left = moved
                        while left:
                            left -= splice(read_end, target.fileno(), left)
                        self._count(conn, moved, outbound)
                finally:
                    os.close(read_end)
                    os.close(write_end)
            else:
                while True:
                    data = source.recv(CHUNK)
                    if not data:
                        break
                    target.sendall(data)
                    self._count(conn, len(data), outbound)
        except OSError:
            pass
        finally:
            # The other direction ends too: a half-closed tunnel is closed.
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _count(conn: Connection, size: int, outbound: bool) -> None:
        conn.last = time.monotonic()
        if outbound:
            conn.sent += size
        else:
            conn.received += size

    def _intercept(
        self,
        conn: Connection,
        client: socket.socket,
        raw: socket.socket,
        decision: Decision,
        secrets: list[vault.Secret],
    ) -> None:
        context = self.leaves.context(conn.sandbox_id, decision.host)
        try:
            tls_client = context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise _Quiet(f"the sandbox's TLS handshake failed: {exc}") from None
        conn.sockets.append(tls_client)
        try:
            upstream = self.upstream_context.wrap_socket(raw, server_hostname=decision.host)
        except (ssl.SSLError, OSError) as exc:
            reason = f"{decision.host}'s certificate did not verify: {exc}"
            tls_client.sendall(_response(502, "upstream TLS", f"jupyter-sandbox gateway: {reason}"))
            raise _Quiet(reason) from None
        conn.sockets.append(upstream)
        client_reader = tls_client.makefile("rb")
        upstream_reader = upstream.makefile("rb")
        tls_client.settimeout(self.settings.idle_timeout)
        upstream.settimeout(self.settings.idle_timeout)
        authority_name = decision.host if decision.port == 443 else f"{decision.host}:{decision.port}"
        while True:
            try:
                head = read_head(client_reader)
            except Refused as exc:
                tls_client.sendall(_response(exc.status, exc.reason, f"jupyter-sandbox gateway: {exc.reason}"))
                return
            if head is None:
                return
            parts = head.first.split(" ")
            if len(parts) != 3 or not parts[1].startswith("/"):
                tls_client.sendall(_response(400, "bad request", "jupyter-sandbox gateway: not an origin-form request"))
                return
            host_header = (head.get("host") or "").lower()
            if host_header not in (decision.host, f"{decision.host}:{decision.port}"):
                tls_client.sendall(
                    _response(421, "host mismatch", f"jupyter-sandbox gateway: Host must be {decision.host}")
                )
                return
            headers = [("Host", authority_name)]
            for key, value in head.without({"host", "proxy-authorization", "proxy-connection"}):
                for secret in secrets:
                    if secret.placeholder in value:
                        value = value.replace(secret.placeholder, secret.value)
                headers.append((key, value))
            keep = self._exchange(
                conn,
                tls_client,
                client_reader,
                upstream,
                upstream_reader,
                parts[0],
                parts[1],
                head,
                headers,
                [secret.value for secret in secrets],
            )
            if not keep:
                return

    def _exchange(
        self,
        conn: Connection,
        client: Any,
        client_reader: Any,
        upstream: Any,
        upstream_reader: Any,
        method: str,
        target: str,
        head: Head,
        headers: list[tuple[str, str]],
        mask: Sequence[str] = (),
    ) -> bool:
        """One request and its answer; whether the connection may carry another. `mask`: secret
        values that must not come back to the sandbox (a host that echoes a header would hand it
        the value): masked, same length, in the answer's headers and body, which is asked for
        without compression so that it can be read."""
        chunked = "chunked" in (head.get("transfer-encoding") or "").lower()
        length = head.get("content-length")
        if head.get("transfer-encoding") and not chunked:
            raise Refused(400, "an unsupported Transfer-Encoding")
        if length is not None and (not length.isdigit() or chunked):
            raise Refused(400, "a bad Content-Length")
        expect = (head.get("expect") or "").lower() == "100-continue"
        dropped = {"expect", "transfer-encoding", "content-length", *(("accept-encoding", "te") if mask else ())}
        out = [(k, v) for k, v in headers if k.lower() not in dropped]
        if chunked:
            out.append(("Transfer-Encoding", "chunked"))
        elif length is not None:
            out.append(("Content-Length", length))
        data = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in out) + "\r\n"
        if any("\r" in k + v or "\n" in k + v for k, v in out):
            raise Refused(400, "a header with a line break")
        upstream.sendall(data.encode("latin-1"))
        conn.sent += len(data)
        if expect:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if chunked:
            conn.sent += _copy_chunked(client_reader, upstream)
        elif length:
            conn.sent += _copy_exact(client_reader, upstream, int(length))
        while True:
            answer = read_head(upstream_reader)
            if answer is None:
                raise OSError("the server closed without an answer")
            status = answer.first.split(" ")[1] if len(answer.first.split(" ")) > 1 else ""
            if status.startswith("1") and status != "101":
                continue  # an interim answer (100 Continue): ours went already
            break
        answer_chunked = "chunked" in (answer.get("transfer-encoding") or "").lower()
        answer_length = answer.get("content-length")
        close = (answer.get("connection") or "").lower() == "close" or (head.get("connection") or "").lower() == "close"
        bodiless = method == "HEAD" or status in ("204", "304")
        back = [(k, _masked_text(v, mask)) for k, v in answer.without(HOP_BY_HOP | {"content-length"})]
        sink: Any = _Masker(client, mask) if mask else client
        if bodiless:
            if answer_length is not None:
                back.append(("Content-Length", answer_length))
        elif answer_chunked:
            back.append(("Transfer-Encoding", "chunked"))
        elif answer_length is not None and answer_length.isdigit():
            back.append(("Content-Length", answer_length))
        else:
            close = True
        if close:
            back.append(("Connection", "close"))
        text = answer.first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in back) + "\r\n"
        client.sendall(text.encode("latin-1"))
        conn.received += len(text)
        if bodiless:
            pass
        elif answer_chunked and mask:
            conn.received += _rechunk(upstream_reader, client, mask)
        elif answer_chunked:
            conn.received += _copy_chunked(upstream_reader, client)
        elif answer_length is not None and answer_length.isdigit():
            conn.received += _copy_exact(upstream_reader, sink, int(answer_length))
        else:
            while True:
                block = upstream_reader.read1(CHUNK)
                if not block:
                    break
                sink.sendall(block)
                conn.received += len(block)
        if mask:
            sink.flush()
        return not close


class _Quiet(Exception):
    """The tunnel is open already: close it, with this reason in the log, and send nothing more."""


def _masked_text(text: str, values: Sequence[str]) -> str:
    for value in values:
        text = text.replace(value, "*" * len(value))
    return text


class _Masker:
    """A writer that masks secret values (same length) in what passes through it, also where a
    value is split between two writes: the last len(longest)-1 bytes wait for the next write."""

    def __init__(self, target: Any, values: Sequence[str]) -> None:
        self.target = target
        self.values = [v.encode("latin-1") for v in values if v]
        self.keep = max((len(v) for v in self.values), default=1) - 1
        self.pending = b""

    def _masked(self, data: bytes) -> bytes:
        for value in self.values:
            data = data.replace(value, b"*" * len(value))
        return data

    def sendall(self, data: bytes) -> None:
        data = self._masked(self.pending + data)
        cut = max(0, len(data) - self.keep)
        out, self.pending = data[:cut], data[cut:]
        if out:
            self.target.sendall(out)

    def flush(self) -> None:
        if self.pending:
            self.target.sendall(self._masked(self.pending))
            self.pending = b""


def _rechunk(reader: Any, writer: Any, values: Sequence[str]) -> int:
    """A chunked body, its data masked across chunk boundaries, sent on as chunks of its own."""

    class _Chunks:
        def sendall(self, data: bytes) -> None:
            writer.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    masker = _Masker(_Chunks(), values)
    total = 0
    while True:
        line = reader.readline(1024)
        if not line.endswith(b"\n"):
            raise OSError("a malformed chunk from the server")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise OSError("a malformed chunk size from the server") from None
        if size == 0:
            while reader.readline(MAX_HEAD) not in (b"\r\n", b"\n", b""):
                pass  # trailers are dropped: they could carry the value unmasked
            masker.flush()
            writer.sendall(b"0\r\n\r\n")
            return total
        left = size
        while left:
            block = reader.read1(min(CHUNK, left))
            if not block:
                raise OSError("the body ended early")
            masker.sendall(block)
            left -= len(block)
            total += len(block)
        reader.readline(16)  # the CRLF after the chunk's data


def _copy_exact(reader: Any, writer: Any, length: int) -> int:
    left = length
    while left > 0:
        block = reader.read1(min(CHUNK, left))
        if not block:
            raise OSError("the body ended early")
        writer.sendall(block)
        left -= len(block)
    return length


def _copy_chunked(reader: Any, writer: Any) -> int:
    total = 0
    while True:
        line = reader.readline(1024)
        if not line.endswith(b"\n"):
            raise Refused(400, "a malformed chunk")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise Refused(400, "a malformed chunk size") from None
        writer.sendall(line)
        total += len(line)
        if size == 0:
            while True:
                trailer = reader.readline(MAX_HEAD)
                if not trailer.endswith(b"\n"):
                    raise Refused(400, "a malformed trailer")
                writer.sendall(trailer)
                total += len(trailer)
                if trailer in (b"\r\n", b"\n"):
                    return total
        total += _copy_exact(reader, writer, size + 2)


def _authority(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise Refused(400, "CONNECT names host:port")
    return host, int(port)


def _printable_phrase(text: str) -> str:
    return "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in text)[:300]


def _printable(text: str) -> str:
    return "".join(c if 0x20 < ord(c) < 0x7F else "?" for c in text)[:255]
