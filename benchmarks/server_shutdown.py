"""Stopping a Jupyter server with many sandbox kernels, and a notebook's sandbox following a rename.

1. SIGTERM to a server with N kernels (default 12) and the warm pool: seconds until the server has
   exited (its shutdown removes its pool) and until every kernel's sandbox is released; baseline: the
   same server with N local ipykernels, stopped the same way.
2. A rename through the contents API: seconds until the notebook's sandbox carries the new name's
   key; baseline: the rename request itself.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import tempfile
import time
from pathlib import Path

from common import Api, start_server
from jupyter_client import BlockingKernelClient
from jupyter_core.paths import jupyter_runtime_dir

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.manager import SandboxManager


def wait(predicate, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def ready(kernel_id: str) -> None:
    """Wait until the kernel answers, through the connection file the server wrote for it."""
    client = BlockingKernelClient()
    client.load_connection_file(str(Path(jupyter_runtime_dir()) / f"kernel-{kernel_id}.json"))
    client.start_channels(hb=False)
    try:
        deadline = time.monotonic() + 300
        while True:
            msg_id = client.kernel_info()
            try:
                while client.get_shell_msg(timeout=2)["parent_header"].get("msg_id") != msg_id:
                    pass
                return
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kernel {kernel_id} did not answer") from None
    finally:
        client.stop_channels()


def stop_with_kernels(kernel_name: str, count: int, manager: SandboxManager) -> tuple[float, float]:
    """(seconds until the server exited, seconds until its kernels' sandboxes were released)."""
    with tempfile.TemporaryDirectory() as root:
        process, port, token = start_server(root)
        api = Api(port, token)
        kernels = [api.json("POST", "/api/kernels", {"name": kernel_name})["id"] for _ in range(count)]
        for kernel_id in kernels:
            ready(kernel_id)
        if kernel_name == "sandbox-python":
            wait(lambda: all((s := manager.find_for_kernel(k)) is not None and s.running for k in kernels))
        started = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=600)
        exited = time.perf_counter() - started
        wait(lambda: not any(manager.find_for_kernel(k) for k in kernels))
        return exited, time.perf_counter() - started


def follow_rename(manager: SandboxManager, repeat: int) -> tuple[list[float], list[float]]:
    requests, follows = [], []
    with tempfile.TemporaryDirectory() as root:
        Path(root, "n0.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        process, port, token = start_server(root)
        api = Api(port, token)
        try:
            session = api.json(
                "POST",
                "/api/sessions",
                {"path": "n0.ipynb", "name": "n0.ipynb", "type": "notebook", "kernel": {"name": "sandbox-python"}},
            )
            kernel_id = session["kernel"]["id"]
            wait(lambda: (s := manager.find_for_kernel(kernel_id)) is not None and s.running)
            for number in range(repeat):
                old, new = f"n{number}.ipynb", f"n{number + 1}.ipynb"
                key = binding.workspace_key(manager.owner, os.path.realpath(Path(root, new)))
                started = time.perf_counter()
                api.json("PATCH", f"/api/contents/{old}", {"path": new})
                requests.append(time.perf_counter() - started)
                wait(lambda key=key: manager.find_for_kernel(kernel_id).workspace == key, timeout=60)
                follows.append(time.perf_counter() - started)
            api.json("DELETE", f"/api/sessions/{session['id']}")
            wait(lambda: manager.find_for_kernel(kernel_id) is None)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=600)
            for sandbox in manager.list(owner=manager.owner):
                if (binding.notebook_record(sandbox.workspace or "") or {}).get("path", "").startswith(root):
                    manager.remove(sandbox)
    return requests, follows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernels", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    manager = SandboxManager()
    local = stop_with_kernels("python3", args.kernels, manager)
    sandboxed = stop_with_kernels("sandbox-python", args.kernels, manager)
    print(f"server stop with {args.kernels} kernels (SIGTERM to exit; to every sandbox released):")
    print(f"  local ipykernel   {local[0]:6.2f} s")
    print(f"  sandbox kernel    {sandboxed[0]:6.2f} s  (sandboxes released after {sandboxed[1]:.2f} s)")
    print(f"  ratio             {sandboxed[0] / local[0]:6.2f}")
    requests, follows = follow_rename(manager, args.repeat)
    print(f"rename of a running notebook ({args.repeat} times, median):")
    print(f"  the rename request         {statistics.median(requests) * 1000:7.1f} ms")
    print(f"  until its sandbox followed {statistics.median(follows) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
