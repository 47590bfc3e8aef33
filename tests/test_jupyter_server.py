"""The sandbox kernel behind a real Jupyter Server, driven over its REST API and websocket."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from conftest import Server, sandbox_containers, wait_until
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.spec import LABEL_KERNEL_ID


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
