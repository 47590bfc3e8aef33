"""Helpers shared by the benchmarks: start kernels the way Jupyter Server does, start a Jupyter
server in its own process, and time cells."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar, cast

from jupyter_client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import MultiKernelManager

from jupyter_sandbox.sandbox.manager import SandboxManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import server_argv

if TYPE_CHECKING:
    from jupyter_client.connect import KernelConnectionInfo

T = TypeVar("T")


@contextmanager
def kernel(
    name: str, extra_argv: list[str] | None = None
) -> Iterator[tuple[MultiKernelManager, str, BlockingKernelClient]]:
    """A kernel started as Jupyter Server starts one; extra_argv adds command-line config."""
    specs = KernelSpecManager()
    with tempfile.TemporaryDirectory() as spec_root:
        if extra_argv:
            spec = specs.get_kernel_spec(name).to_dict()
            spec["argv"] = spec["argv"] + extra_argv
            folder = Path(spec_root, f"{name}-bench")
            folder.mkdir()
            (folder / "kernel.json").write_text(json.dumps(spec))
            specs.kernel_dirs.insert(0, spec_root)
            name = folder.name
        with _started(MultiKernelManager(kernel_spec_manager=specs), name) as started:
            yield started


@contextmanager
def _started(mkm: MultiKernelManager, name: str) -> Iterator[tuple[MultiKernelManager, str, BlockingKernelClient]]:
    kernel_id = mkm.start_kernel(kernel_name=name)
    client = mkm.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=300)
        run_cell(client, "pass")  # the sandbox kernel answers kernel_info before its sandbox is up
        yield mkm, kernel_id, client
    finally:
        client.stop_channels()
        mkm.shutdown_kernel(kernel_id, now=False)


@contextmanager
def timed_kernel(name: str) -> Iterator[tuple[BlockingKernelClient, float]]:
    """A kernel started as Jupyter Server starts one, ready, and the perf_counter reading taken just
    before the start request, which start-up figures are measured from."""
    mkm = MultiKernelManager()
    started = time.perf_counter()
    kernel_id = mkm.start_kernel(kernel_name=name)
    client = mkm.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=300)
        yield client, started
    finally:
        client.stop_channels()
        mkm.shutdown_kernel(kernel_id, now=False)


def pool_rounds(
    measure: Callable[[str], T], repeat: int, baselines: Sequence[str]
) -> tuple[list[list[T]], list[T], list[T]]:
    """`measure` of each baseline kernel, of a cold sandbox kernel and of one claimed from the warm
    pool, `repeat` rounds in turn: (per baseline, cold, warm). The pool is drained before each round
    and filled (by the server's own call, not timed) before the warm run, then drained at the end."""
    manager = SandboxManager(warm_pool_size=1)
    manager.drain_pool()
    local: list[list[T]] = [[] for _ in baselines]
    cold: list[T] = []
    warm: list[T] = []
    try:
        for _ in range(repeat):
            manager.drain_pool()
            for results, name in zip(local, baselines):
                results.append(measure(name))
            cold.append(measure("sandbox-python"))
            manager.fill_pool()
            warm.append(measure("sandbox-python"))
    finally:
        manager.drain_pool()
    return local, cold, warm


@contextmanager
def direct_client(kernel_id: str) -> Iterator[BlockingKernelClient]:
    """A client connected straight to the ipykernel inside a kernel's sandbox (no proxy)."""
    sandbox = SandboxManager().find_for_kernel(kernel_id)
    assert sandbox is not None, "no sandbox for that kernel"
    client = BlockingKernelClient()
    client.load_connection_info(cast("KernelConnectionInfo", sandbox.kernel_connection()))
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()


def run_cell(client: BlockingKernelClient, code: str, timeout: float = 300) -> dict:
    reply = client.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


def round_trips(client: BlockingKernelClient, count: int) -> list[float]:
    run_cell(client, "pass")  # warm up
    times = []
    for _ in range(count):
        started = time.perf_counter()
        run_cell(client, "pass")
        times.append(time.perf_counter() - started)
    return times


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.2f} ms  mean {statistics.mean(values) * 1000:7.2f} ms"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_up(port: int, token: str) -> bool:
    """Whether the Jupyter server on `port` answers GET /api/status with 200."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/api/status", headers={"Authorization": f"token {token}"})
        return connection.getresponse().status == 200
    except OSError:
        return False


def start_server(
    root: str | Path,
    extra: Sequence[str] = (),
    python: str = sys.executable,
    module: str = "jupyter_server",
    port: int | None = None,
    timeout: float = 60,
) -> tuple[subprocess.Popen, int, str]:
    """A Jupyter server (or, with module "jupyterlab", JupyterLab) on loopback with token auth, in
    its own process, once it answers: (process, port, token). `extra` adds command-line config."""
    port = port or free_port()
    token = secrets.token_hex(16)
    process = subprocess.Popen(
        server_argv(root, port, token, extra, module=module, python=python),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    deadline = time.monotonic() + timeout
    while not server_up(port, token):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the Jupyter server ({module}) did not start")
        time.sleep(0.1)
    return process, port, token


class Api:
    """The Jupyter server's REST API with the token, over http.client (no proxy, no extra library)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.headers = port, {"Authorization": f"token {token}"}

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        connection = self.connection()
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
        response = connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data) if data else {}
