"""The proxy kernel in hub mode (its sandbox and its inner kernel's channels through the sandbox
service's API) beside single-machine mode (the same kernel talking to this machine's engine), in one
run: kernel start → first result, cold and from the warm pool, and a trivial cell's round trip
(p50/p95 over --cells). The ratio hub / single-machine is the figure.

The service is the real one (`jupyter sandbox service`, on this machine, a user of this run's own);
the hub-mode kernel gets DOCKER_HOST pointing at nothing, so it cannot reach the engine itself.
Cold: a service without a warm pool, and for single-machine mode a drained pool. Warm: the service's
pool for the user (`warm_pools`, filled by its housekeeping, not timed), and for single-machine mode
a pool filled by the server's call before the kernel starts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

from common import round_trips, run_cell
from jupyter_client import BlockingKernelClient
from jupyter_client.multikernelmanager import MultiKernelManager
from sdk import other_pools, pool_ready, summary
from service_support import ServiceProcess

from jupyter_sandbox.sandbox.manager import SandboxManager

T = TypeVar("T")


def hub_env(port: int, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "JUPYTER_SANDBOX_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTER_SANDBOX_SERVICE_TOKEN": token,
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    }


@contextmanager
def started(env: dict[str, str] | None) -> Iterator[tuple[BlockingKernelClient, float]]:
    """A sandbox kernel as Jupyter Server starts one, ready; and the time just before its start."""
    mkm = MultiKernelManager()
    begun = time.perf_counter()
    kernel_id = mkm.start_kernel(kernel_name="sandbox-python", **({"env": env} if env else {}))
    client = mkm.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=300)
        yield client, begun
    finally:
        client.stop_channels()
        mkm.shutdown_kernel(kernel_id, now=False)


def retried(measure: Callable[[], T]) -> T:
    """A start that failed for the machine's reasons (a port another process took between
    jupyter_client's choice and the kernel's bind, on a shared machine) is measured again, once."""
    try:
        return measure()
    except RuntimeError as exc:
        print(f"  (a kernel start failed: {exc}; measured again)", file=sys.stderr)
        return measure()


def first_result(env: dict[str, str] | None) -> float:
    return retried(lambda: _first_result(env))


def _first_result(env: dict[str, str] | None) -> float:
    with started(env) as (client, begun):
        outputs: list[str] = []
        client.execute_interactive(
            "print(6 * 7)", timeout=300, output_hook=lambda msg: outputs.append(str(msg["content"].get("text")))
        )
        elapsed = time.perf_counter() - begun
        assert "42\n" in outputs, outputs
    time.sleep(1.0)  # the release runs in a process of its own: not in the next start's way
    return elapsed


def cell_round_trips(env: dict[str, str] | None, cells: int) -> list[float]:
    return retried(lambda: _cell_round_trips(env, cells))


def _cell_round_trips(env: dict[str, str] | None, cells: int) -> list[float]:
    with started(env) as (client, _):
        run_cell(client, "pass")
        return round_trips(client, cells)


def line(name: str, values: list[float]) -> str:
    return f"  {name:<44} median {statistics.median(values):6.2f} s  (min {min(values):.2f}, n={len(values)})"


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cells", type=int, default=200)
    args = parser.parse_args()
    others = other_pools()
    local_pool = SandboxManager(warm_pool_size=1)
    # Real services (`jupyter sandbox service`), each with a user of this run's own: their housekeeping
    # leaves this process's pool alone, and it theirs.
    cold_service = ServiceProcess(Path(tempfile.mkdtemp()), ["bench"], {"SandboxManager": {"warm_pool_size": 0}})
    warm_service = ServiceProcess(
        Path(tempfile.mkdtemp()),
        ["bench"],
        {
            "SandboxManager": {"warm_pool_size": 1},
            "SandboxServiceApp": {"warm_pools": True},
            "SandboxService": {"pool_interval": 1},
        },
    )
    cold_service.start()
    warm_service.start()
    cold_env = hub_env(cold_service.port, cold_service.token("bench"))
    warm_env = hub_env(warm_service.port, warm_service.token("bench"))
    results: dict[str, list[float]] = {k: [] for k in ("local_cold", "hub_cold", "local_warm", "hub_warm")}
    try:
        first_result(None)  # image and page cache warm after this one
        first_result(cold_env)
        first_result(warm_env)  # the service keeps a pool for a user once they used it
        for _ in range(args.repeat):
            local_pool.drain_pool()
            results["local_cold"].append(first_result(None))
            results["hub_cold"].append(first_result(cold_env))
            local_pool.fill_pool()
            results["local_warm"].append(first_result(None))
            pool_ready(1, others | {""})
            results["hub_warm"].append(first_result(warm_env))
        local_pool.drain_pool()
        median = {k: statistics.median(v) for k, v in results.items()}
        print(f"kernel start -> first cell result, {args.repeat} rounds")
        print(line("single-machine mode, cold sandbox", results["local_cold"]))
        print(line("hub mode (through the service), cold", results["hub_cold"]))
        print(f"    hub / single-machine = {median['hub_cold'] / median['local_cold']:.2f}")
        print(line("single-machine mode, warm pool", results["local_warm"]))
        print(line("hub mode (through the service), warm pool", results["hub_warm"]))
        print(f"    hub / single-machine = {median['hub_warm'] / median['local_warm']:.2f}", flush=True)
        local_trips = cell_round_trips(None, args.cells)
        hub_trips = cell_round_trips(cold_env, args.cells)
    finally:
        local_pool.drain_pool()
        for service in (cold_service, warm_service):
            service.stop()
            # A stopped service leaves its sandboxes (its user's pool here): this run's own go.
            owned = SandboxManager(owner=service.owner("bench"))
            for sandbox in owned.list(owner=owned.owner):
                owned.remove(sandbox)
    print(f"trivial cell round trip, {args.cells} cells")
    print("  " + summary("single-machine mode (zmq to published ports)", local_trips))
    print("  " + summary("hub mode (zmq over the channels websockets)", hub_trips))
    ratio = statistics.median(hub_trips) / statistics.median(local_trips)
    print(f"    hub / single-machine = {ratio:.2f} (p50)")
    return {
        "hub_cold_ratio": median["hub_cold"] / median["local_cold"],
        "hub_warm_ratio": median["hub_warm"] / median["local_warm"],
        "hub_round_trip_ratio": ratio,
    }


if __name__ == "__main__":
    main()
