"""Restart, shutdown and everything that can go wrong around a sandbox kernel."""

from __future__ import annotations

import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SandboxKernel, sandbox_containers, start_sandbox_kernel

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.records import ContainerRecord
from jupyter_sandbox.sandbox.spec import LABEL_KERNEL_ID


def _sandbox_of(backend: DockerBackend, kernel: SandboxKernel) -> ContainerRecord:
    found = sandbox_containers(backend, **{LABEL_KERNEL_ID: kernel.kernel_id})
    assert len(found) == 1
    return found[0]


def test_restart_keeps_files_and_forgets_variables(
    sandbox_kernel: SandboxKernel, docker_backend: DockerBackend
) -> None:
    run = sandbox_kernel.run("x = 5\nopen('/home/sandbox/kept.txt', 'w').write('still here')")
    assert run.status == "ok"
    before = _sandbox_of(docker_backend, sandbox_kernel).id
    sandbox_kernel.restart()
    run = sandbox_kernel.run("print(open('/home/sandbox/kept.txt').read())\nprint('x' in globals())")
    assert run.stdout == "still here\nFalse\n"
    assert _sandbox_of(docker_backend, sandbox_kernel).id == before


def test_shutdown_leaves_no_container_volume_or_network(sandbox_image: str, docker_backend: DockerBackend) -> None:
    kernel = start_sandbox_kernel()
    assert kernel.run("print(1)").stdout == "1\n"
    volume = binding.volume_name(_sandbox_of(docker_backend, kernel).labels["io.jupyter-sandbox.id"])
    kernel.shutdown()
    assert not sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel.kernel_id})
    assert volume not in docker_backend.list_volumes(["io.jupyter-sandbox.id"])
    if not sandbox_containers(docker_backend):
        assert "jupyter-sandbox" not in docker_backend.list_networks(["io.jupyter-sandbox.created-by"])


def test_killed_container_is_reported_within_seconds_and_recovers(
    sandbox_kernel: SandboxKernel, docker_backend: DockerBackend
) -> None:
    sandbox_kernel.run("open('/home/sandbox/before-kill.txt', 'w').write('safe')")
    container = _sandbox_of(docker_backend, sandbox_kernel).id
    client = sandbox_kernel.client
    msg_id = client.execute("import time\ntime.sleep(600)")
    time.sleep(1.0)
    killed_at = time.monotonic()
    subprocess.run(["docker", "kill", container], check=True, capture_output=True)
    reply = client.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=30)
    reported_after = time.monotonic() - killed_at
    assert reply["content"]["status"] == "error"
    assert "container stopped" in reply["content"]["evalue"]
    assert reported_after < 5, reported_after
    # The next cell starts the same sandbox again, files intact.
    run = sandbox_kernel.run("print(open('/home/sandbox/before-kill.txt').read())", timeout=120)
    assert run.status == "ok", run.error
    assert "safe" in run.stdout
    assert "[sandbox]" in run.stdout  # it said what it was doing


def test_memory_bomb_is_contained_and_reported(sandbox_kernel: SandboxKernel) -> None:
    run = sandbox_kernel.run("hog = []\nwhile True:\n    hog.append(bytearray(50 * 1024 * 1024))", timeout=120)
    assert run.status == "error"
    message = run.reply["content"]["evalue"]
    assert "ran out of memory" in message or "killed" in message
    # The kernel came back by itself and works.
    run = sandbox_kernel.run("print('back')", timeout=60)
    assert run.stdout == "back\n"


def test_fork_bomb_is_contained(sandbox_kernel: SandboxKernel) -> None:
    code = """
import os, time
children = []
try:
    while True:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError as exc:
    print('refused after', len(children), type(exc).__name__)
finally:
    import signal
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
"""
    run = sandbox_kernel.run(code, timeout=120)
    assert run.status == "ok", run.error
    count = int(run.stdout.split()[2])
    assert 0 < count < 512
    assert sandbox_kernel.run("print('fine')").stdout == "fine\n"
    # The host still forks happily.
    assert subprocess.run(["true"]).returncode == 0


def test_fifty_megabytes_of_output_neither_crashes_nor_hangs(sandbox_kernel: SandboxKernel) -> None:
    received = []
    run = sandbox_kernel.run(
        "import sys\nchunk = 'x' * 1023 + '\\n'\nfor _ in range(50 * 1024):\n    sys.stdout.write(chunk)",
        timeout=300,
        output_hook=lambda msg: received.append(msg["content"].get("text", "")),
    )
    assert run.status == "ok"
    # The default output limit (10 MB per cell) cut it short, and said so once.
    shown = sum(len(text) for text in received)
    assert 0 < shown <= 11 * 1024 * 1024
    assert run.stderr.count("output passed the limit of 10 MiB") == 1
    assert sandbox_kernel.run("print('ok')").stdout == "ok\n"


def test_missing_image_is_reported_in_the_notebook(sandbox_image: str, tmp_path: Path) -> None:
    kernel = start_sandbox_kernel(
        extra_argv=["--SandboxManager.image=jupyter-sandbox/does-not-exist:1"], tmp_path=tmp_path
    )
    try:
        run = kernel.run("print(1)", timeout=60)
        assert run.status == "error"
        assert "jupyter-sandbox/does-not-exist:1" in run.error["evalue"]
        assert "not on this Docker engine" in run.error["evalue"]
        # The kernel indicator does not stay at "starting" after a start that failed.
        states = []
        while True:
            try:
                message = kernel.client.get_iopub_msg(timeout=2)
            except queue.Empty:
                break
            if message["msg_type"] == "status" and not message["parent_header"]:
                states.append(message["content"]["execution_state"])
        assert not states or states[-1] == "idle", states
    finally:
        kernel.shutdown()


@pytest.mark.parametrize("docker_host", ["tcp://127.0.0.1:9", "unix:///nonexistent/docker.sock"])
def test_unreachable_docker_is_reported_in_the_notebook(sandbox_image: str, docker_host: str) -> None:
    kernel = start_sandbox_kernel(extra_env={"DOCKER_HOST": docker_host})
    try:
        run = kernel.run("print(1)", timeout=60)
        assert run.status == "error"
        assert "Docker is not reachable" in run.error["evalue"]
        assert docker_host in run.error["evalue"]
        # It keeps answering, and says the same again.
        again = kernel.run("print(2)", timeout=60)
        assert "Docker is not reachable" in again.error["evalue"]
    finally:
        kernel.shutdown()


def test_missing_default_image_is_built_with_progress_in_the_notebook(
    sandbox_image: str, docker_backend: DockerBackend, tmp_path: Path
) -> None:
    tag = "jupyter-sandbox/python:autobuild-test"

    def remove_its_tags() -> None:
        # The tag and the one naming its inputs' hash: with either left, nothing would be built.
        for image in docker_backend.client.images.list("jupyter-sandbox/python"):
            for name in image.tags:
                if name == tag or name.startswith(tag + "-"):
                    docker_backend.client.images.remove(name)

    remove_its_tags()
    kernel = start_sandbox_kernel(
        extra_argv=[f"--SandboxManager.image={tag}", "--SandboxManager.bootstrap_base=True"],
        tmp_path=tmp_path,
        ready=False,
    )  # the cell is sent at once, so it waits on the build
    try:
        run = kernel.run("print('built and running')", timeout=600)
        assert run.status == "ok", run.error
        assert f"[sandbox] the sandbox image {tag} is missing; building it" in run.stdout
        assert f"[sandbox] built {tag}" in run.stdout
        assert run.stdout.endswith("built and running\n")
    finally:
        kernel.shutdown()
        remove_its_tags()


def test_sigint_to_the_proxy_interrupts_the_cell(sandbox_kernel: SandboxKernel) -> None:
    """Jupyter sends SIGINT when a kernelspec says interrupt_mode=signal; it must reach the sandbox."""
    import os
    import signal

    reply = sandbox_kernel.interrupted(
        "import time\nwhile True:\n    time.sleep(0.01)",
        lambda: os.kill(sandbox_kernel.km.provisioner.process.pid, signal.SIGINT),
    )
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert sandbox_kernel.run("print('alive')").stdout == "alive\n"


def test_demo_notebook_runs_headless(sandbox_image: str) -> None:
    result = subprocess.run(
        [sys.executable, "examples/run_demo.py", "examples/demo.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "user id: 1000" in result.stdout
    assert "effective capabilities: 0000000000000000" in result.stdout
    assert "<image/png, text/plain>" in result.stdout
