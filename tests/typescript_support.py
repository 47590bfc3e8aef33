"""Fixtures for the TypeScript kernel and the Node walkthroughs: the node image (built once per run,
on the bootstrapped base, never from a registry) and the "TypeScript (sandbox)" kernelspec as this
checkout ships it."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock
from jupyter_client import MultiKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.image import NODE_IMAGE, ImageRecipe, build_image

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "share" / "jupyter" / "kernels"
TYPESCRIPT_KERNEL = "sandbox-typescript"


@pytest.fixture(scope="session")
def node_image(docker_backend: DockerBackend) -> str:
    """The node preset's image (Node.js, npm, TypeScript, Deno's kernel, the Hono starter). Built
    once, skipped when up to date (about 3 minutes the first time, most of it Deno and npm). Under the
    lock conftest's image build takes: parallel workers build each image once and never bootstrap
    the base twice at the same time."""
    with FileLock(str(Path(tempfile.gettempdir()) / "jupyter-sandbox-test-image.lock")):
        build_image(
            docker_backend,
            lambda line: print(line, file=sys.stderr),
            tag=NODE_IMAGE,
            bootstrap=True,
            recipe=ImageRecipe(lang="node"),
        )
    return NODE_IMAGE


def kernel_spec_manager() -> KernelSpecManager:
    """Kernelspecs with this checkout's own first (the installed ones may be another version's)."""
    specs = KernelSpecManager()
    specs.kernel_dirs.insert(0, str(KERNELS))
    return specs


def start_typescript_kernel(env: dict[str, str] | None = None):
    import os

    from conftest import SandboxKernel

    mkm = MultiKernelManager(kernel_spec_manager=kernel_spec_manager())
    kernel_id = mkm.start_kernel(kernel_name=TYPESCRIPT_KERNEL, env={**os.environ, **(env or {})})
    return SandboxKernel(mkm, kernel_id)


def run_cell(kernel, code: str, timeout: float = 120, settle: float = 1.0):
    """A cell's reply and outputs as a front end shows them. Deno's kernel forwards what a cell prints
    from a pipe of its own, so a line can arrive just after the cell's idle status; a front end still
    shows it under the cell (it goes by the parent header), so this waits `settle` seconds for such."""
    import queue
    import time

    from conftest import Run

    client = kernel.client
    msg_id = client.execute(code)
    outputs: list[dict] = []
    reply = None
    idle_at = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reply is None:
            try:
                shell = client.get_shell_msg(timeout=0.05)
                if shell["parent_header"].get("msg_id") == msg_id:
                    reply = shell
            except queue.Empty:
                pass
        if idle_at is not None and reply is not None and time.monotonic() - idle_at > settle:
            break
        try:
            message = client.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "status":
            if message["content"].get("execution_state") == "idle":
                idle_at = time.monotonic()
        elif message["msg_type"] != "execute_input":
            outputs.append(message)
    assert reply is not None, f"no reply to {code!r} within {timeout} s"
    return Run(reply, outputs)
