"""The sandbox kernel behind a real Jupyter Server, driven over its REST API and websocket."""

from __future__ import annotations

import asyncio

from conftest import Server, execute_over_websocket, sandbox_containers, wait_until

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.spec import LABEL_KERNEL_ID


def test_server_lists_the_sandbox_kernelspec(jupyter_server: Server) -> None:
    _, specs = jupyter_server.request("GET", "/api/kernelspecs")
    spec = specs["kernelspecs"]["sandbox-python"]["spec"]
    assert spec["display_name"] == "Python 3 (sandbox)"
    assert spec["interrupt_mode"] == "message"


def test_a_cell_runs_in_the_sandbox_through_jupyter_server(
    jupyter_server: Server, docker_backend: DockerBackend
) -> None:
    status, kernel = jupyter_server.request("POST", "/api/kernels", {"name": "sandbox-python"})
    assert status == 201
    kernel_id = kernel["id"]
    try:
        seen = asyncio.run(
            execute_over_websocket(
                jupyter_server, kernel_id, "import socket; print('hello from', socket.gethostname())"
            )
        )
        text = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")
        assert "hello from jupyter-sandbox-" in text
        replies = [m for m in seen if m["msg_type"] == "execute_reply"]
        assert replies and replies[0]["content"]["status"] == "ok"
        assert sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel_id})

        # Restart through the server keeps the sandbox (same kernel id, same container).
        before = sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel_id})[0].id
        assert jupyter_server.request("POST", f"/api/kernels/{kernel_id}/restart")[0] == 200
        seen = asyncio.run(execute_over_websocket(jupyter_server, kernel_id, "print('after restart')"))
        assert "after restart" in "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
        assert sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel_id})[0].id == before
    finally:
        assert jupyter_server.request("DELETE", f"/api/kernels/{kernel_id}")[0] == 204
    assert wait_until(lambda: not sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel_id}), timeout=30)
