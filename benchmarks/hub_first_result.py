"""Start of a sandbox kernel to its first result, through the example JupyterHub (examples/hub/: the
user's server in hub mode, the sandbox service holding the engine) beside `make lab`'s single-machine
mode (one Jupyter server that holds the engine itself), measured in the same run.

Each figure is from the kernel start request (POST /api/kernels on the user's server, through the hub's
proxy for the hub) to "42" printed by the first cell, over the kernel's websocket, as JupyterLab does it.
Cold: no warm sandbox, one is created. Warm: the first kernel of a notebook claims one from the warm
pool (filled, untimed, before each warm round).

Needs root (the hub's users are system accounts, as in `make hub`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import common
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import execute_request
from hub_support import HubUser, running_hub

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

CELL = "print(6 * 7)"


async def _first_result(ws_url: str, headers: dict[str, str]) -> None:
    connection = await websocket_connect(HTTPRequest(ws_url, headers=headers, request_timeout=300))
    msg_id = uuid.uuid4().hex
    await connection.write_message(execute_request(CELL, msg_id, uuid.uuid4().hex))
    try:
        while True:
            raw = await asyncio.wait_for(connection.read_message(), timeout=300)
            if raw is None:
                raise RuntimeError("the kernel's websocket closed before the result")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream" and "42" in msg["content"].get("text", ""):
                return
            if msg["msg_type"] == "error":
                raise RuntimeError(msg["content"].get("evalue", "the cell failed"))
    finally:
        connection.close()


def first_result(base: str, ws_base: str, headers: dict[str, str]) -> float:
    """Seconds from the kernel start request to the first cell's "42"; the kernel is shut down after."""
    started = time.perf_counter()
    made = requests.post(f"{base}/api/kernels", json={"name": "sandbox-python"}, headers=headers, timeout=300)
    made.raise_for_status()
    kernel_id = made.json()["id"]
    try:
        asyncio.run(_first_result(f"{ws_base}/api/kernels/{kernel_id}/channels", headers))
        return time.perf_counter() - started
    finally:
        requests.delete(f"{base}/api/kernels/{kernel_id}", headers=headers, timeout=120)


def wait_for_pool(manager: SandboxManager, owner: str, timeout: float = 180) -> None:
    """Until a warm sandbox of `owner` is free in the pool (the server's or the service's own fill)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s.pool and s.state == "running" for s in manager.list(owner=owner)):
            return
        time.sleep(0.5)
    raise RuntimeError("the warm pool did not fill")


def rounds(measure: Callable[[], float], count: int, before: Callable[[], None] | None = None) -> list[float]:
    out = []
    for _ in range(count):
        if before:
            before()
        out.append(measure())
    return out


def single_machine(manager: SandboxManager, pool: int, repeat: int) -> list[float]:
    """`make lab`'s mode: one Jupyter server, the engine its own."""
    process, port, token = common.start_server(tempfile.mkdtemp(), [f"--SandboxManager.warm_pool_size={pool}"])
    try:
        measure = functools.partial(
            first_result, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", {"Authorization": f"token {token}"}
        )
        before = functools.partial(wait_for_pool, manager, manager.owner) if pool else None
        return rounds(measure, repeat, before)
    finally:
        process.terminate()
        process.wait(timeout=60)


def through_the_hub(backend: DockerBackend, manager: SandboxManager, pool: int, repeat: int) -> list[float]:
    """The user's server forwards to the service; the kernel reaches its sandbox through it."""
    service_args = [f"--SandboxManager.warm_pool_size={pool}", f"--SandboxServiceApp.warm_pools={bool(pool)}"]
    with running_hub(backend, service_args, users=1) as hub:
        user: HubUser = next(iter(hub.users.values()))
        user.start()
        user.wait_until_ready()
        measure = functools.partial(
            first_result, f"{hub.base}/user/{user.name}", f"ws://127.0.0.1:{hub.port}/user/{user.name}", user.auth
        )
        if pool:
            # The service fills the pools of the users it has seen: one request makes this one known.
            user.server("GET", "/sandbox/api/sandboxes")
        before = functools.partial(wait_for_pool, manager, f"hub-user:{user.name}") if pool else None
        return rounds(measure, repeat, before)


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    backend = DockerBackend()
    manager = SandboxManager(backend=backend)
    figures: dict[str, list[float]] = {}
    for pool, kind in ((0, "cold"), (1, "warm")):
        figures[f"single machine, {kind}"] = single_machine(manager, pool, args.repeat)
    for pool, kind in ((0, "cold"), (1, "warm")):
        figures[f"through the hub, {kind}"] = through_the_hub(backend, manager, pool, args.repeat)

    print("kernel start -> first result ('42'), over the kernel's websocket")
    for name, values in figures.items():
        print(f"  {name:<26} {summary(values)}")
    for kind in ("cold", "warm"):
        hub_median = statistics.median(figures[f"through the hub, {kind}"])
        local_median = statistics.median(figures[f"single machine, {kind}"])
        print(f"  {kind}: hub / single machine = {hub_median / local_median:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
