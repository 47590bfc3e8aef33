"""Idle sandboxes are stopped (files kept) and started again by their next use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import (
    Server,
    fetch,
    preview_host,
    run_over_websocket,
    start_jupyter_server,
    start_preview_app,
    wait_until,
)

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

# Idle stops are judged in seconds: the module runs in the serial pass, where load from other tests
# cannot stretch the busy signal of a running cell past the timeout.
pytestmark = pytest.mark.serial

IDLE = 4


@pytest.fixture(scope="module")
def idle_server(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server, process = start_jupyter_server(
        tmp_path_factory.mktemp("root"), [f"--SandboxManager.idle_timeout={IDLE}", "--SandboxService.reap_interval=1"]
    )
    yield server
    process.terminate()
    process.wait(timeout=30)


def state(server: Server, sandbox_id: str) -> str:
    return server.request("GET", f"/sandbox/api/sandboxes/{sandbox_id}")[1].get("state", "")


def test_idle_sandbox_stops_and_the_next_api_call_starts_it(idle_server: Server) -> None:
    status, created = idle_server.request("POST", "/sandbox/api/sandboxes", {})
    box = f"/sandbox/api/sandboxes/{created['id']}"
    try:
        idle_server.request("PUT", f"{box}/files/content?path=kept.txt", raw=b"still here")
        assert wait_until(lambda: state(idle_server, created["id"]) == "exited", timeout=IDLE + 15)
        status, content = idle_server.request("GET", f"{box}/files/content?path=kept.txt")
        assert status == 200 and content == b"still here"
        assert state(idle_server, created["id"]) == "running"
        # A sandbox its user stopped stays stopped.
        idle_server.request("POST", f"{box}/stop")
        assert idle_server.request("GET", f"{box}/files")[0] == 409
    finally:
        idle_server.request("DELETE", box)


def test_a_long_silent_cell_is_not_stopped_and_an_idle_notebook_wakes(
    idle_server: Server, docker_backend: DockerBackend
) -> None:
    status, kernel = idle_server.request("POST", "/api/kernels", {"name": "sandbox-python"})
    assert status == 201, kernel
    kernel_id = kernel["id"]

    def cell(code: str) -> str:
        return run_over_websocket(idle_server, kernel_id, code)[1]

    try:
        assert "done" in cell(f"import time\ntime.sleep({IDLE * 2 + 2})\nprint('done')")  # busy: never reaped
        sandbox = SandboxManager(backend=docker_backend).find_for_kernel(kernel_id)
        cell("open('/home/sandbox/note.txt', 'w').write('kept')")
        assert wait_until(lambda: state(idle_server, sandbox.id) == "exited", timeout=IDLE + 15)
        text = cell("print(open('/home/sandbox/note.txt').read())")
        assert text.endswith("kept\n") and "[sandbox]" in text and "Starting it again" in text
        assert "nobody used it for a while" in text
    finally:
        idle_server.request("DELETE", f"/api/kernels/{kernel_id}")


def test_a_preview_visit_wakes_an_idle_sandbox(idle_server: Server) -> None:
    status, created = idle_server.request("POST", "/sandbox/api/sandboxes", {})
    assert status == 201, created
    sandbox_id = created["id"]
    box = f"/sandbox/api/sandboxes/{sandbox_id}"
    try:
        assert wait_until(lambda: state(idle_server, sandbox_id) == "exited", timeout=IDLE + 15)
        token = idle_server.request("POST", f"{box}/previews", {"port": 3000})[1]["token"]
        status, _, body = fetch(
            idle_server, preview_host(idle_server, sandbox_id, 3000), "/", {"X-Sandbox-Preview-Token": token}
        )
        assert status == 502 and b"Nothing is listening on port 3000" in body  # awake, no app
        assert state(idle_server, sandbox_id) == "running"
    finally:
        idle_server.request("DELETE", box)


def test_a_preview_in_use_keeps_its_sandbox_awake(idle_server: Server) -> None:
    """The proxy reaches an app listening on all addresses straight, past the agent: the server counts
    that use itself, so a sandbox serving a page someone is using is not stopped under them."""
    import time

    status, created = idle_server.request("POST", "/sandbox/api/sandboxes", {})
    assert status == 201, created
    sandbox_id = created["id"]
    box = f"/sandbox/api/sandboxes/{sandbox_id}"
    try:
        start_preview_app(idle_server, sandbox_id, {3000: "0.0.0.0"})
        token = idle_server.request("POST", f"{box}/previews", {"port": 3000})[1]["token"]
        host = preview_host(idle_server, sandbox_id, 3000)
        until = time.monotonic() + IDLE * 2 + 3
        while time.monotonic() < until:
            status, _, body = fetch(idle_server, host, "/echo", {"X-Sandbox-Preview-Token": token})
            assert status == 200 and b'"path": "/echo"' in body
            time.sleep(0.5)
        assert state(idle_server, sandbox_id) == "running"
    finally:
        idle_server.request("DELETE", box)
