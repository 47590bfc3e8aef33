"""The proxy kernel in hub mode: its sandbox and the inner kernel's channels come through the sandbox
service's API, and the kernel process itself reaches no engine (DOCKER_HOST names a socket that does
not exist). The service is the real one (`jupyter sandbox service`, a tokens file of two users); the
kernels run as Alice, and Bob is the other user whose token must get nothing of hers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import API, KERNEL_NAME, SandboxKernel, Server, box, wait_until
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import MultiKernelManager
from service_support import ServiceProcess
from tornado import httpclient, websocket

from jupyter_sandbox.sandbox.docker_backend import DockerBackend

NO_ENGINE = "unix:///nonexistent/sandbox-test/docker.sock"


@pytest.fixture(scope="module")
def service_process(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        tmp_path_factory.mktemp("service"), ["alice", "bob"], {"SandboxManager": {"warm_pool_size": 0}}
    )
    process.start()
    yield process
    try:
        for user in process.users:
            client = Server(process.port, process.token(user))
            status, listing = client.request("GET", f"{API}/sandboxes")
            for sandbox in listing.get("sandboxes", []) if status == 200 else []:
                client.request("DELETE", box(sandbox["id"]))
    finally:
        process.stop()


@pytest.fixture(scope="module")
def service(service_process: ServiceProcess) -> Server:
    """The service as Alice calls it."""
    return Server(service_process.port, service_process.token("alice"))


@pytest.fixture(scope="module")
def notebook_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user-notebooks")
    (folder / "analysis.ipynb").write_text("{}")
    return folder


def hub_environment(service: Server) -> dict[str, str]:
    env = {
        **os.environ,
        "JUPYTER_SANDBOX_SERVICE_URL": service.base,
        "JUPYTER_SANDBOX_SERVICE_TOKEN": service.token,
        "DOCKER_HOST": NO_ENGINE,
        "JPY_SESSION_NAME": "analysis.ipynb",
    }
    env.pop("DOCKER_CONFIG", None)
    return env


def start_hub_kernel(service: Server, folder: Path) -> SandboxKernel:
    mkm = MultiKernelManager(kernel_spec_manager=KernelSpecManager())
    kernel_id = mkm.start_kernel(kernel_name=KERNEL_NAME, env=hub_environment(service), cwd=str(folder))
    return SandboxKernel(mkm, kernel_id)


def releasing(kernel_id: str) -> bool:
    found = subprocess.run(
        ["pgrep", "-f", f"jupyter_sandbox.remote.release {kernel_id}"], capture_output=True, check=False, timeout=10
    )
    return found.returncode == 0


def shut_down(kernel: SandboxKernel) -> None:
    kernel.client.stop_channels()
    kernel.mkm.shutdown_kernel(kernel.kernel_id)
    time.sleep(0.5)
    assert wait_until(lambda: not releasing(kernel.kernel_id), timeout=60)


def status_json(kernel: SandboxKernel) -> dict[str, Any]:
    run = kernel.run("%sandbox status --json")
    assert run.status == "ok", run.error
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def hub_kernel(service: Server, notebook_folder: Path) -> Iterator[SandboxKernel]:
    kernel = start_hub_kernel(service, notebook_folder)
    yield kernel
    if kernel.kernel_id in kernel.mkm.list_kernel_ids():
        shut_down(kernel)
    # The notebook's sandbox is kept by design: this test's own, removed here.
    for sandbox in service.request("GET", f"{API}/sandboxes")[1]["sandboxes"]:
        service.request("DELETE", box(sandbox["id"]))


def test_the_kernel_process_has_no_engine_and_its_first_cell_runs_in_the_sandbox(hub_kernel: SandboxKernel) -> None:
    run = hub_kernel.run("import os, socket; print(6 * 7, os.path.exists('/home/sandbox'), os.getuid())")
    assert run.status == "ok", run.error
    assert run.stdout.split() == ["42", "True", "1000"]
    pid = hub_kernel.km.provisioner.pid  # type: ignore[union-attr]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"DOCKER_HOST={NO_ENGINE}".encode() in environ


def test_input_round_trip(hub_kernel: SandboxKernel) -> None:
    run = hub_kernel.run(
        "name = input('who? ')\nprint('hello', name)", stdin_hook=lambda m: hub_kernel.client.input("Ada")
    )
    assert run.status == "ok", run.error
    assert run.stdout.strip().endswith("hello Ada")


def test_a_sleeping_cell_is_interrupted(hub_kernel: SandboxKernel) -> None:
    reply = hub_kernel.interrupted("import time\ntime.sleep(120)", hub_kernel.km.interrupt_kernel, wait=1.5)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert hub_kernel.run("print('after')").stdout == "after\n"


def test_a_widgets_comm_round_trip(hub_kernel: SandboxKernel) -> None:
    run = hub_kernel.run("import ipywidgets as w\ns = w.IntSlider(value=3)\ns")
    assert run.status == "ok", run.error
    views = [
        o
        for o in run.of_type("execute_result") + run.of_type("display_data")
        if "application/vnd.jupyter.widget-view+json" in o["content"]["data"]
    ]
    model_id = views[0]["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    msg = hub_kernel.client.session.msg(
        "comm_msg", {"comm_id": model_id, "data": {"method": "update", "state": {"value": 9}, "buffer_paths": []}}
    )
    hub_kernel.client.shell_channel.send(msg)
    assert wait_until(lambda: hub_kernel.run("print(s.value)").stdout.strip() == "9", timeout=15, interval=0.2)


def test_magics_status_exec_and_upload_of_the_users_file(hub_kernel: SandboxKernel, notebook_folder: Path) -> None:
    info = status_json(hub_kernel)
    assert info["state"] == "running" and len(info["id"]) == 12 and info["workspace"]
    run = hub_kernel.run("%sandbox exec echo from-exec $(id -u)")
    assert run.status == "ok", run.error
    assert "from-exec 1000" in run.stdout
    (notebook_folder / "measurements.csv").write_text("a,b\n1,2\n")
    run = hub_kernel.run("%sandbox upload measurements.csv")
    assert run.status == "ok", run.error
    assert "uploaded measurements.csv" in run.stdout
    assert hub_kernel.run("print(open('/home/sandbox/measurements.csv').read())").stdout == "a,b\n1,2\n\n"


def test_kernel_restart_loses_variables_and_keeps_files(hub_kernel: SandboxKernel) -> None:
    before = status_json(hub_kernel)["id"]
    hub_kernel.run("kept = 5\nopen('/home/sandbox/kept.txt', 'w').write('still here')")
    hub_kernel.restart()
    run = hub_kernel.run("print('kept' in dir(), open('/home/sandbox/kept.txt').read())")
    assert run.stdout == "False still here\n"
    assert status_json(hub_kernel)["id"] == before
    # The notebook's own hard restart: a fresh container on the same files, reached again at once.
    hub_kernel.run("again = 1")
    run = hub_kernel.run("%sandbox restart --hard")
    assert run.status == "ok", run.error
    run = hub_kernel.run("print('again' in dir(), open('/home/sandbox/kept.txt').read())")
    assert run.stdout == "False still here\n"


def test_an_unsigned_or_malformed_frame_from_the_sandbox_is_dropped(hub_kernel: SandboxKernel) -> None:
    # The sandbox's own code writes straight to the kernel's iopub socket: a message with a wrong
    # signature, one with no signature frames at all, then a marker through the kernel's own session.
    code = (
        "import json\n"
        "k = get_ipython().kernel\n"
        "head = json.dumps({'msg_id': 'forged', 'msg_type': 'stream', 'session': 's', 'username': 'u',"
        " 'date': '', 'version': '5.3'}).encode()\n"
        "body = json.dumps({'name': 'stdout', 'text': 'FORGED'}).encode()\n"
        "k.iopub_socket.send_multipart([b'stream', b'<IDS|MSG>', b'0' * 64, head, b'{}', b'{}', body])\n"
        "k.iopub_socket.send_multipart([b'stream', b'FORGED-MALFORMED'])\n"
        "print('marker')"
    )
    run = hub_kernel.run(code)
    assert run.status == "ok", run.error
    texts = json.dumps([o["content"] for o in run.outputs])
    assert "marker" in texts and "FORGED" not in texts
    assert hub_kernel.run("print(1 + 1)").stdout == "2\n"


def test_a_killed_sandbox_is_reported_and_the_next_cell_starts_it_again(
    hub_kernel: SandboxKernel, docker_backend: DockerBackend
) -> None:
    info = status_json(hub_kernel)
    hub_kernel.run("open('/home/sandbox/before-kill.txt', 'w').write('kept')")
    docker_backend.client.containers.get(info["container"]).kill()
    time.sleep(2.0)  # the kernel's watch hears of it through the service
    run = hub_kernel.run("print(open('/home/sandbox/before-kill.txt').read())", timeout=120)
    said = run.stdout + run.stderr
    assert "killed (SIGKILL)" in said, said
    assert run.stdout.endswith("kept\n")
    assert status_json(hub_kernel)["id"] == info["id"]


def test_another_users_token_gets_nothing_of_the_kernels_sandbox(
    hub_kernel: SandboxKernel, service: Server, service_process: ServiceProcess
) -> None:
    alices = status_json(hub_kernel)["id"]
    bob = Server(service_process.port, service_process.token("bob"))

    async def attempt(url: str, headers: dict[str, str]) -> int:
        request = httpclient.HTTPRequest(url, headers=headers, connect_timeout=20)
        try:
            conn = await websocket.websocket_connect(request)
        except httpclient.HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    ws = f"ws://127.0.0.1:{service.port}{box(alices, '/kernel/channels')}"
    for channel in ("shell", "iopub", "control"):
        assert asyncio.run(attempt(f"{ws}?channel={channel}", {"Authorization": f"token {bob.token}"})) == 404
    assert asyncio.run(attempt(f"{ws}?channel=shell", {})) == 401
    assert bob.request("GET", box(alices, "/kernel/events") + "?after=0&wait=0")[0] == 404
    for action in ("interrupt", "restart", "activity"):
        assert bob.request("POST", box(alices, f"/kernel/{action}"), {})[0] == 404
    # Bob naming Alice's kernel gets a sandbox of his own, never hers.
    status, his = bob.request("POST", f"{API}/kernels/{hub_kernel.kernel_id}/sandbox", {})
    assert status == 200 and his["sandbox"]["id"] != alices and his["kernel"]["key"]
    assert bob.request("DELETE", f"{API}/kernels/{hub_kernel.kernel_id}/sandbox")[1]["released"] == [
        his["sandbox"]["id"]
    ]
    assert hub_kernel.run("print('still hers')").stdout == "still hers\n"
    assert status_json(hub_kernel)["id"] == alices


def test_a_second_kernel_of_the_notebook_gets_its_sandbox_then_deletion_is_reported(
    hub_kernel: SandboxKernel, service: Server, notebook_folder: Path
) -> None:
    sandbox_id = status_json(hub_kernel)["id"]
    hub_kernel.run("open('/home/sandbox/notebook-file.txt', 'w').write('the notebook kept this')")
    shut_down(hub_kernel)
    assert service.request("GET", box(sandbox_id))[1]["state"] != "running"
    second = start_hub_kernel(service, notebook_folder)
    try:
        assert status_json(second)["id"] == sandbox_id
        assert second.run("print(open('/home/sandbox/notebook-file.txt').read())").stdout == "the notebook kept this\n"
        assert service.request("DELETE", box(sandbox_id))[0] == 204
        # The kernel learns it at once (its watch); the next cell says why and starts a fresh one.
        time.sleep(1.0)
        run = second.run("print('again')", timeout=120)
        said = run.stdout + run.stderr + json.dumps(run.error or {})
        assert "removed" in said, said
        assert "again" in run.stdout
        assert status_json(second)["id"] != sandbox_id
    finally:
        new_id = status_json(second)["id"]
        shut_down(second)
        service.request("DELETE", box(new_id))
