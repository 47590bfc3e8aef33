"""Helpers shared by the benchmarks: start kernels the way Jupyter Server does and time cells."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jupyter_client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import MultiKernelManager

from jupyter_sandbox.sandbox.manager import SandboxManager


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
def direct_client(kernel_id: str) -> Iterator[BlockingKernelClient]:
    """A client connected straight to the ipykernel inside a kernel's sandbox (no proxy)."""
    sandbox = SandboxManager().find_for_kernel(kernel_id)
    assert sandbox is not None, "no sandbox for that kernel"
    client = BlockingKernelClient()
    client.load_connection_info(sandbox.kernel_connection())
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
