"""The upstream sites of the gateway tests, run by the test in a container it made (as root, for
ports 80 and 443): HTTP on 80 and HTTPS on 443 with a certificate from the test's CA for every name
the test uses, plus a DNS listener on UDP 53 that records queries (none may arrive).

  /simple/, /simple/gwdemo/   a package index (PEP 503) with one wheel
  /packages/NAME              the wheel
  /echo                       the request as JSON: host, path and headers (also kept in requests.log)
  /big?bytes=N                N bytes
  /slow                       a byte every 0.2 s for a minute (a long-lived flow)
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FOLDER = Path(sys.argv[1])
WHEEL = next(FOLDER.glob("*.whl"))
DNS_LOG = FOLDER / "dns.log"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: bytes, kind: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._send(json.dumps({"received": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode())

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        host = (self.headers.get("Host") or "").split(":")[0]
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        if url.path == "/echo":
            headers = {k.lower(): v for k, v in self.headers.items()}
            # What arrived, for the test to read from outside the sandbox.
            with (FOLDER / "requests.log").open("a") as log:
                log.write(json.dumps({"host": host, "scheme": scheme, "headers": headers}) + "\n")
            self._send(json.dumps({"host": host, "scheme": scheme, "path": self.path, "headers": headers}).encode())
        elif url.path == "/simple/":
            self._send(b'<html><body><a href="/simple/gwdemo/">gwdemo</a></body></html>', "text/html")
        elif url.path == "/simple/gwdemo/":
            digest = hashlib.sha256(WHEEL.read_bytes()).hexdigest()
            link = f"https://files.pypi.test/packages/{WHEEL.name}#sha256={digest}"
            self._send(f'<html><body><a href="{link}">{WHEEL.name}</a></body></html>'.encode(), "text/html")
        elif url.path == f"/packages/{WHEEL.name}":
            self._send(WHEEL.read_bytes(), "application/octet-stream")
        elif url.path == "/big":
            size = int(parse_qs(url.query).get("bytes", ["1000"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"x" * 262144
            while size > 0:
                part = block[: min(size, len(block))]
                self.wfile.write(part)
                size -= len(part)
        elif url.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "300")
            self.end_headers()
            for _ in range(300):
                self.wfile.write(b".")
                self.wfile.flush()
                time.sleep(0.2)
        else:
            self.send_error(404)


def dns() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 53))
    while True:
        data, peer = udp.recvfrom(4096)
        with DNS_LOG.open("a") as log:
            log.write(json.dumps({"peer": peer[0], "bytes": len(data)}) + "\n")


def main() -> None:
    plain = ThreadingHTTPServer(("0.0.0.0", 80), Handler)
    secure = ThreadingHTTPServer(("0.0.0.0", 443), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(FOLDER / "server.pem"))
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    for target in (plain.serve_forever, secure.serve_forever, dns):
        threading.Thread(target=target, daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
