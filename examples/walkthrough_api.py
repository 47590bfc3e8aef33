"""The article's walkthrough over the REST API alone: a TypeScript sandbox, `npm create hono`, `npm run
build`, an interactive PTY (id hono-dev, 300x100, in my-app) that runs `npm run start`, a preview link for port
3000 opened as a browser or curl would, typing into the terminal, waiting for it to exit, and deleting
the sandbox. Nothing but HTTP and one websocket: any language's HTTP client can do the same.

    JUPYTER_SANDBOX_URL=http://127.0.0.1:8888 JUPYTER_SANDBOX_TOKEN=... python examples/walkthrough_api.py

`npm create hono` downloads its template from GitHub; the node image (`jupyter sandbox image build
--lang node`) carries it, and the project's npm packages, so the steps work where GitHub and the npm
registry are out of the sandbox's reach.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from tornado import httpclient, websocket

BASE = os.environ.get("JUPYTER_SANDBOX_URL", "http://127.0.0.1:8888").rstrip("/")
TOKEN = os.environ.get("JUPYTER_SANDBOX_TOKEN", "")
API = f"{BASE}/sandbox/api"
HEADERS = {"Authorization": f"token {TOKEN}", "Content-Type": "application/json"}


def call(method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 600) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{API}{path}", method=method, headers=HEADERS, data=None if body is None else json.dumps(body).encode()
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def run(sandbox_id: str, command: str, cwd: str | None = None, timeout: int = 600) -> dict[str, Any]:
    """POST .../process/exec: the command's exit code and output."""
    status, result = call(
        "POST", f"/sandboxes/{sandbox_id}/process/exec", {"command": command, "cwd": cwd, "timeout": timeout}
    )
    assert status == 200, result
    return result


def fetch_preview(link: dict[str, Any]) -> bytes:
    """As curl does: the preview's URL with the token in a header. *.localhost is this machine."""
    parts = urlsplit(link["url"])
    request = urllib.request.Request(
        f"http://127.0.0.1:{parts.port}/", headers={"Host": parts.netloc, link["header"]: link["token"]}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


class Terminal:
    """A connection to one of the sandbox's PTYs (POST .../ptys made it; it lives on without us):
    binary frames are its output (first a replay of what it printed lately), JSON text frames are
    input, and a last {"type": "exit", "exit_code": N} says how it ended."""

    def __init__(self, socket: websocket.WebSocketClientConnection) -> None:
        self.socket, self.output, self.exit_code = socket, bytearray(), None

    @classmethod
    async def connect(cls, sandbox_id: str, pty_id: str) -> Terminal:
        url = f"{API.replace('http', 'ws', 1)}/sandboxes/{sandbox_id}/ptys/{pty_id}/connect"
        return cls(await websocket.websocket_connect(httpclient.HTTPRequest(url, headers=HEADERS)))

    async def type(self, text: str) -> None:
        await self.socket.write_message(json.dumps({"type": "input", "data": text}))

    async def read_until(self, needle: bytes, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            message = await asyncio.wait_for(self.socket.read_message(), max(0.1, deadline - time.monotonic()))
            if message is None:
                raise RuntimeError(f"the terminal ended before {needle!r} appeared")
            self.receive(message)

    def receive(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.output += message
        else:
            frame = json.loads(message)
            if frame.get("type") == "exit":
                self.exit_code = frame.get("exit_code")

    async def wait(self, timeout: float = 60) -> int | None:
        while self.exit_code is None:
            message = await asyncio.wait_for(self.socket.read_message(), timeout)
            if message is None:
                break
            self.receive(message)
        return self.exit_code

    def close(self) -> None:
        self.socket.close()


async def main() -> None:
    started = time.monotonic()
    status, sandbox = call("POST", "/sandboxes", {"language": "typescript"})
    assert status == 201, sandbox
    sandbox_id = sandbox["id"]
    print("created sandbox", sandbox_id, "image", sandbox["image"], flush=True)
    try:
        created = run(sandbox_id, "npm create hono@latest ./my-app -- --template nodejs --install --pm npm")
        print("npm create hono: exit code", created["exit_code"], flush=True)
        print(created["stdout"].strip(), flush=True)
        assert created["exit_code"] == 0, created["stderr"]

        built = run(sandbox_id, "npm run build", cwd="my-app")
        print("npm run build: exit code", built["exit_code"], flush=True)
        print("build output:", built["stdout"].strip(), flush=True)
        assert built["exit_code"] == 0, built["stderr"]

        pty = {"id": "hono-dev", "cols": 300, "rows": 100, "cwd": "my-app"}
        status, made = call("POST", f"/sandboxes/{sandbox_id}/ptys", pty)
        assert status == 201, made
        print("pty:", made["id"], f"{made['cols']}x{made['rows']}", "in", made["cwd"], flush=True)
        terminal = await Terminal.connect(sandbox_id, "hono-dev")
        await terminal.type("npm run start\n")
        await terminal.read_until(b"Server is running on http://localhost:3000")
        # The PTY outlives its connection: a new one by id gets what it printed, then live output.
        terminal.close()
        terminal = await Terminal.connect(sandbox_id, "hono-dev")
        await terminal.read_until(b"Server is running on http://localhost:3000")
        print("reconnected, replayed:", True, flush=True)

        status, link = call("POST", f"/sandboxes/{sandbox_id}/previews", {"port": 3000})
        assert status == 201, link
        print("open in a browser:", link["browser_url"], flush=True)
        body = fetch_preview(link)
        print(f"first preview byte {time.monotonic() - started:.1f} s after create", flush=True)
        print("the preview says:", body.decode(), flush=True)

        await terminal.type("\x03")  # Ctrl-C stops the server
        await terminal.type("echo typed-into-the-pty-$((6*7))\n")
        await terminal.read_until(b"typed-into-the-pty-42")
        print("pty echo: typed-into-the-pty-42", flush=True)
        await terminal.type("exit 0\n")
        print("pty exit code:", await terminal.wait(), flush=True)
    finally:
        status, _ = call("DELETE", f"/sandboxes/{sandbox_id}")
        print("deleted:", status, flush=True)
    status, _ = call("GET", f"/sandboxes/{sandbox_id}")
    print("the sandbox is gone:", status == 404, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
