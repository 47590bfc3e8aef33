"""The sandbox kernel behind a real Jupyter Server, driven over its REST API and websocket."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from conftest import sandbox_containers, wait_until
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.spec import LABEL_KERNEL_ID

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | list]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=60) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else {})


@pytest.fixture(scope="module")
def jupyter_server(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port, token = free_port(), secrets.token_hex(16)
    root = tmp_path_factory.mktemp("server-root")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "NO_PROXY": "127.0.0.1"})
    server = Server(port, token)

    def up() -> bool:
        try:
            return server.request("GET", "/api/status")[0] == 200
        except OSError:
            return False

    assert wait_until(up, timeout=60), "jupyter server did not start"
    yield server
    process.terminate()
    process.wait(timeout=30)


def test_server_lists_the_sandbox_kernelspec(jupyter_server: Server) -> None:
    _, specs = jupyter_server.request("GET", "/api/kernelspecs")
    spec = specs["kernelspecs"]["sandbox-python"]["spec"]
    assert spec["display_name"] == "Python 3 (sandbox)"
    assert spec["interrupt_mode"] == "message"


async def _execute_over_websocket(server: Server, kernel_id: str, code: str) -> list[dict]:
    url = f"ws://127.0.0.1:{server.base.rsplit(':', 1)[1]}/api/kernels/{kernel_id}/channels?token={server.token}"
    connection = await websocket_connect(url)
    session = uuid.uuid4().hex
    msg_id = uuid.uuid4().hex
    await connection.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": session,
                   "date": "", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    seen: list[dict] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(connection.read_message(), timeout=120)
        assert raw is not None, "the websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        seen.append(msg)
        # The reply (shell) and the idle status (iopub) travel on different channels, in any order.
        idle = any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in seen)
        if idle and any(m["msg_type"] == "execute_reply" for m in seen):
            break
    connection.close()
    return seen


def test_a_cell_runs_in_the_sandbox_through_jupyter_server(jupyter_server: Server, docker_backend: DockerBackend) -> None:
    status, kernel = jupyter_server.request("POST", "/api/kernels", {"name": "sandbox-python"})
    assert status == 201
    kernel_id = kernel["id"]
    try:
        seen = asyncio.run(_execute_over_websocket(
            jupyter_server, kernel_id, "import socket; print('hello from', socket.gethostname())"))
        text = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")
        assert "hello from jupyter-sandbox-" in text
        replies = [m for m in seen if m["msg_type"] == "execute_reply"]
        assert replies and replies[0]["content"]["status"] == "ok"
        assert sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel_id})

        # Restart through the server keeps the sandbox (same kernel id, same container).
        before = sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel_id})[0]["Id"]
        assert jupyter_server.request("POST", f"/api/kernels/{kernel_id}/restart")[0] == 200
        seen = asyncio.run(_execute_over_websocket(jupyter_server, kernel_id, "print('after restart')"))
        assert "after restart" in "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
        assert sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel_id})[0]["Id"] == before
    finally:
        assert jupyter_server.request("DELETE", f"/api/kernels/{kernel_id}")[0] == 204
    assert wait_until(lambda: not sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel_id}), timeout=30)
