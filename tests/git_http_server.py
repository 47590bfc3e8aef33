"""A git smart-HTTP(S) server with HTTP Basic and bearer-token auth, for tests.

In a container the tests start: python3 git_http_server.py USER PASSWORD PROJECT_ROOT PORT
On the host, in the test's own process: `GitServer(root, basic=(user, password), bearer=token,
tls=(certfile, keyfile)).start()`, which serves on 127.0.0.1 and records every request it saw
(method, path, whether its Authorization was right) in `seen`.
"""

from __future__ import annotations

import base64
import datetime
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class GitHandler(BaseHTTPRequestHandler):
    server_version = "test-git"
    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_git(self) -> None:
        git: GitServer = self.server.git  # type: ignore[attr-defined]
        body = self._body()
        if git.delay:
            time.sleep(git.delay)
        authorized = self.headers.get("Authorization") in git.accepted
        git.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "authorized": authorized,
                "authorization": self.headers.get("Authorization"),
                "size": len(body),
                "chunked": self.headers.get("Transfer-Encoding", "").lower() == "chunked",
            }
        )
        if not authorized:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": git.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "git-user",
            "REMOTE_ADDR": self.client_address[0],
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=300)
        head, _, content = result.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode(errors="replace").split("\r\n"):
            if ":" not in line:
                continue
            key, value = line.split(":", 1)
            if key.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        for key, value in git.extra_headers:
            self.send_header(key, value)
        if git.echo:
            # A careless server that shows the client what it sent.
            content = f"you sent: {self.headers.get('Authorization')}\n".encode() + content
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = handle_git

    def log_message(self, *args: object) -> None:
        pass


class GitServer:
    """Serves the bare repositories under `root`; accepts the Basic pair and/or the bearer token."""

    def __init__(
        self,
        root: str,
        basic: tuple[str, str] | None = None,
        bearer: str | None = None,
        tls: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.root = root
        self.accepted = set()
        if basic:
            self.accepted.add("Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode())
        if bearer:
            self.accepted.add(f"Bearer {bearer}")
        self.seen: list[dict] = []
        self.delay = 0.0  # seconds before each answer: a slow remote
        self.echo = False  # put the request's Authorization into each answer
        self.extra_headers = list(extra_headers)
        self.httpd = ThreadingHTTPServer((host, port), GitHandler)
        self.httpd.daemon_threads = True
        self.httpd.git = self  # type: ignore[attr-defined]
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]

    def start(self) -> GitServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- certificates for a test CA (cryptography is a dependency of the project) ------------------


def make_ca(name: str) -> tuple[Any, Any]:
    """A CA as the host's credential proxy makes one, valid for a day around now."""
    # Imported here: the server itself also runs as a script in a container without the package.
    from jupyter_sandbox.sandbox import certificates

    now = datetime.datetime.now(datetime.timezone.utc)
    return certificates.make_ca(name, now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))


def make_server_cert(ca: tuple[Any, Any], folder: Path, name: str, address: str = "127.0.0.1") -> tuple[str, str]:
    """A certificate for `address` signed by `ca`: (certfile, keyfile)."""
    from cryptography.hazmat.primitives import serialization

    from jupyter_sandbox.sandbox import certificates

    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = certificates.make_server_cert(
        ca, [address], now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
    )
    certfile, keyfile = folder / f"{name}.pem", folder / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(certfile), str(keyfile)


if __name__ == "__main__":
    USER, PASSWORD, ROOT, PORT = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    GitServer(ROOT, basic=(USER, PASSWORD), host="0.0.0.0", port=PORT).httpd.serve_forever()
