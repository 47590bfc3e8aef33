"""The egress gateway's proxy in this process, on loopback: an HTTPS origin and an upstream
("company") proxy of the test's own, a client that speaks to the gateway as a sandbox would.

Host state goes to a folder of the test's (JUPYTER_SANDBOX_SECRET_FILE), where 127.0.0.1 is
registered as the address of a made-up sandbox with a domain policy.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from jupyter_sandbox.sandbox import certificates, network
from jupyter_sandbox.sandbox.gateway import state, tls, vault
from jupyter_sandbox.sandbox.gateway.proxy import Gateway
from jupyter_sandbox.sandbox.gateway.settings import Settings

SANDBOX = "0123456789ab"


def site_ca(names: list[str]) -> tuple[bytes, bytes]:
    """(CA certificate PEM, server key and certificate PEM for `names`)."""
    from cryptography.hazmat.primitives import serialization

    now = datetime.datetime.now(datetime.timezone.utc)
    before, after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
    ca = certificates.make_ca("gateway unit test CA", before, after)
    cert, key = certificates.make_server_cert(ca, names, before, after)
    pem = serialization.Encoding.PEM
    server = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca[0].public_bytes(pem), server + cert.public_bytes(pem)


def _listen() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


class Origin:
    """An HTTPS server for corp.test that answers each request with its request head."""

    def __init__(self, server_pem: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(server_pem))
        self.sock = _listen()
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls_conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += tls_conn.recv(4096)
                body = head.split(b"\r\n\r\n")[0]
                self.heads.append(body)
                tls_conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )
        except (OSError, ssl.SSLError):
            pass


class CompanyProxy:
    """A CONNECT proxy that records what it was asked and carries every tunnel to `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.asked: list[str] = []
        self.sock = _listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        self.asked.append(head.split(b"\r\n")[0].decode())
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    monkeypatch.setenv("JUPYTER_SANDBOX_SECRET_FILE", str(tmp_path / "state" / "host.secret"))
    ca_pem, server_pem = site_ca(["corp.test"])
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "server.pem").write_bytes(server_pem)
    origin = Origin(tmp_path / "server.pem")
    company = CompanyProxy(origin.port)
    network.save(SANDBOX, network.EgressPolicy("allow", [], ["corp.test", "other.test"]))
    state.register("127.0.0.1", SANDBOX)
    settings = Settings(
        network_name="unit",
        address="127.0.0.1",
        port=0,
        upstream_proxy=f"127.0.0.1:{company.port}",
        upstream_ca_file=str(tmp_path / "ca.pem"),
        idle_exit_seconds=3600,
    )
    gateway = Gateway(settings)
    listener = gateway.bind()
    thread = threading.Thread(target=gateway.serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    yield {"port": listener.getsockname()[1], "company": company, "context": client_context, "origin": origin}
    gateway.stop()
    thread.join(timeout=5)


def _connect(port: int, host: str) -> tuple[socket.socket, str]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return sock, answer.split(b"\r\n")[0].decode()


def _get(sock: socket.socket, context: ssl.SSLContext, name: str, headers: str = "") -> str:
    with context.wrap_socket(sock, server_hostname=name) as tls_sock:
        tls_sock.sendall(f"GET /x HTTP/1.1\r\nHost: {name}\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls_sock.recv(65536):
            data += chunk
    return data.decode()


def _logged(predicate: Callable[[list[dict]], bool], timeout: float = 10) -> list[dict]:
    """The sandbox's connection log once it satisfies `predicate`: a tunnel's entry is written when
    both of its directions have ended, a moment after the client saw the end of its answer."""
    deadline = time.monotonic() + timeout
    while True:
        entries = state.read_log(SANDBOX)
        if predicate(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def test_tunnels_go_through_the_upstream_proxy_by_name(world: dict) -> None:
    sock, status = _connect(world["port"], "corp.test")
    assert " 200 " in status
    assert "GET /x" in _get(sock, world["context"], "corp.test")
    assert world["company"].asked == ["CONNECT corp.test:443 HTTP/1.1"]
    entry = _logged(bool)[-1]
    assert entry["host"] == "corp.test" and entry["allowed"] and entry["bytes_received"] > 0


def test_a_secret_is_swapped_in_upstream_and_the_leaf_comes_from_the_sandboxes_ca(world: dict) -> None:
    secret = vault.put(SANDBOX, "CORP_TOKEN", "s3cret-value-123", ["corp.test"])
    sock, status = _connect(world["port"], "corp.test")
    assert " 200 " in status
    # The sandbox trusts its own CA (not the test's): the gateway answered TLS itself.
    from jupyter_sandbox.sandbox.gateway import authority

    sandbox_context = ssl.create_default_context(cadata=authority.ca_certificate(SANDBOX).decode())
    echoed = _get(sock, sandbox_context, "corp.test", f"Authorization: Bearer {secret.placeholder}\r\n")
    assert world["origin"].heads[-1].count(b"Authorization: Bearer s3cret-value-123") == 1
    # The origin's echo comes back masked.
    assert "Authorization: Bearer " + "*" * 16 in echoed and "s3cret" not in echoed
    assert "s3cret-value-123" not in json_log()


def json_log() -> str:
    import json

    return json.dumps(state.read_log(SANDBOX))


def test_sni_must_match_and_only_tls_passes(world: dict) -> None:
    sock, status = _connect(world["port"], "corp.test")
    assert " 200 " in status
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, OSError)):
        _get(sock, context, "other.test")
    sock, status = _connect(world["port"], "corp.test")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: corp.test\r\n\r\n")
    try:
        assert sock.recv(100) == b""  # closed, nothing carried
    except ConnectionResetError:
        pass
    entries = _logged(lambda log: sum(not e["allowed"] for e in log) >= 2)
    reasons = [e["reason"] for e in entries if not e["allowed"]]
    assert any("TLS server name other.test is not the CONNECT host corp.test" in r for r in reasons)
    assert any("only TLS" in r for r in reasons)


def test_refusals_name_the_policy_in_the_status_line(world: dict) -> None:
    _, status = _connect(world["port"], "evilcorp.test")
    assert status.startswith("HTTP/1.1 403 Blocked by the sandbox network policy: evilcorp.test is not on")
    _, status = _connect(world["port"], "corp.test.evil")
    assert "403" in status
    sock = socket.create_connection(("127.0.0.1", world["port"]), timeout=10)
    sock.sendall(b"CONNECT corp.test:22 HTTP/1.1\r\n\r\n")
    assert "port 22 is not allowed" in sock.recv(4096).decode()
    sock = socket.create_connection(("127.0.0.1", world["port"]), timeout=10)
    sock.sendall(b"GET https://corp.test/ HTTP/1.1\r\n\r\n")
    assert " 400 " in sock.recv(4096).decode()


def test_an_unknown_address_is_no_sandbox(world: dict) -> None:
    state.unregister(SANDBOX)
    _, status = _connect(world["port"], "corp.test")
    assert status.startswith("HTTP/1.1 403")


def test_client_hello_parsing_is_strict() -> None:
    with pytest.raises(tls.NotTLS):
        tls.hello_length(b"GET / HTTP/1.1\r\n")
    assert tls.hello_length(b"\x16\x03\x01\x00") is None  # more needed
    with pytest.raises(tls.NotTLS):
        tls.server_name(b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00")
