"""Run inside a sandbox by the gateway tests: what a program there would try. Prints one JSON line.

fetch URL [HEADER: VALUE ...]   a request with urllib (the environment's proxy and CA settings);
                                $NAME in a header value is taken from the environment
direct ADDRESS PORT             a TCP connection that ignores the proxy
resolve NAME                    a name lookup (Docker's embedded resolver)
udp ADDRESS PORT                a DNS-shaped UDP query, waiting a moment for any answer
sni HOST NAME                   CONNECT HOST:443 at the proxy, then a TLS handshake naming NAME
stream URL SECONDS              read a long answer for up to SECONDS; how far it got and why it ended
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def out(**data: object) -> None:
    print(json.dumps(data), flush=True)


def fetch(url: str, headers: list[str]) -> None:
    request = urllib.request.Request(url)
    for line in headers:
        key, value = line.split(":", 1)
        request.add_header(key.strip(), os.path.expandvars(value.strip()))
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            out(status=answer.status, body=answer.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        out(status=exc.code, body=exc.read().decode("utf-8", "replace"), error=str(exc))
    except Exception as exc:
        out(status=0, error=f"{type(exc).__name__}: {exc}")


def direct(address: str, port: str) -> None:
    try:
        with socket.create_connection((address, int(port)), timeout=5):
            out(connected=True)
    except OSError as exc:
        out(connected=False, error=f"{type(exc).__name__}: {exc}")


def resolve(name: str) -> None:
    try:
        out(resolved=socket.gethostbyname(name))
    except OSError as exc:
        out(resolved=None, error=f"{type(exc).__name__}: {exc}")


def udp(address: str, port: str, name: str = "pypi.test") -> None:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    try:
        sock.sendto(query, (address, int(port)))
        data = sock.recv(512)
        out(sent=True, answered=len(data))
    except OSError as exc:
        out(sent=False, error=f"{type(exc).__name__}: {exc}")


def proxy() -> tuple[str, int]:
    url = urlsplit(os.environ["HTTPS_PROXY"])
    return url.hostname or "", url.port or 3128


def sni(host: str, name: str) -> None:
    sock = socket.create_connection(proxy(), timeout=10)
    sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    answer = sock.recv(4096).decode("latin-1")
    if " 200 " not in answer.split("\r\n")[0] + " ":
        out(tunnel=False, answer=answer.split("\r\n")[0])
        return
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(sock, server_hostname=name) as tls:
            tls.sendall(f"GET /echo HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = tls.recv(65536)
            out(tunnel=True, handshake=True, answer=data.decode("latin-1")[:200])
    except (OSError, ssl.SSLError) as exc:
        out(tunnel=True, handshake=False, error=f"{type(exc).__name__}: {exc}")


def stream(url: str, seconds: str) -> None:
    started, got = time.monotonic(), 0
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            while time.monotonic() - started < float(seconds):
                block = answer.read(1)
                if not block:
                    out(got=got, ended="eof", after=time.monotonic() - started)
                    return
                got += 1
                if got == 1:
                    print(json.dumps({"first": True}), flush=True)
    except Exception as exc:
        out(got=got, ended=f"{type(exc).__name__}: {exc}", after=time.monotonic() - started)
        return
    out(got=got, ended="time", after=time.monotonic() - started)


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    {
        "fetch": lambda: fetch(args[0], args[1:]),
        "direct": lambda: direct(*args),
        "resolve": lambda: resolve(*args),
        "udp": lambda: udp(*args),
        "sni": lambda: sni(*args),
        "stream": lambda: stream(*args),
    }[command]()


if __name__ == "__main__":
    main()
