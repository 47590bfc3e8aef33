"""Sandboxes on a three-node Docker Swarm beside the single local engine, in one run.

1. `--count` sandboxes (default 100) created through the operations layer the REST API serves, each
   until its agent answers, `--parallel` at a time: on the local engine (the baseline), then on a swarm
   of three engines in containers on this machine (tests/swarm_support.py). Printed: wall time, per
   sandbox p50/p95, failures, and how the swarm spread them over its nodes. Each side's sandboxes are
   deleted but one before the other's are made (100 running sandboxes is what this machine may hold).
2. An exec round trip (`true` through the agent) to a sandbox on a swarm worker node beside one on the
   local engine (p50/p95 of `--rounds` each, in alternating runs of ten, so both see the same load).
3. Through the sandbox service (`jupyter sandbox service`, its REST API, a user's token): `--count`
   sandboxes created on the service with its single local engine (the baseline), then on the service
   with the swarm backend on the same three nodes (`--service-count` to change the count).
4. A trivial cell's round trip through the service to a hub-mode kernel whose inner kernel runs on a
   swarm worker node (the kernel's channels over the service's websocket and the agent's tunnel on
   that node) beside a local single-machine sandbox kernel, alternating runs of ten.

Both sides use the same small spec (0.5 CPU, 256 MiB): the swarm reserves `--reserve` of it per
sandbox (SwarmBackend.reserve_fraction), since three nodes of this 2-core machine cannot reserve 100
whole CPUs. Usage: python benchmarks/swarm.py [--count 100] [--parallel 4] [--rounds 50] [--service-count N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import Api, run_cell
from common import round_trips as cell_round_trips
from jupyter_client import BlockingKernelClient
from jupyter_client.multikernelmanager import MultiKernelManager
from service_support import ServiceProcess
from swarm_support import Swarm, swarm_cluster

from jupyter_sandbox.sandbox.image import DEFAULT_IMAGE
from jupyter_sandbox.sandbox.manager import SandboxManager
from jupyter_sandbox.sandbox.operations import SandboxOperations
from jupyter_sandbox.sandbox.swarm import SwarmBackend

SPEC = {"cpu": 0.5, "memory": "256m"}


class Side:
    """One manager and its operations, with an event loop per calling thread."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager
        self.ops = SandboxOperations(manager)
        self._local = threading.local()

    def run(self, coroutine: Any) -> Any:
        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coroutine)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def create_many(side: Side, count: int, parallel: int) -> tuple[float, list[float], list[str], list[dict]]:
    times: list[float] = []
    failures: list[str] = []
    made: list[dict] = []

    def one(_: int) -> None:
        started = time.monotonic()
        try:
            made.append(side.run(side.ops.create(dict(SPEC))))
            times.append(time.monotonic() - started)
        except Exception as exc:  # counted and shown, the run goes on
            failures.append(f"{type(exc).__name__}: {str(exc)[:160]}")

    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - started, times, failures, made


def delete_all(side: Side, made: list[dict], parallel: int) -> None:
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda s: side.run(side.ops.delete(s["id"])), made))


def round_trips(side: Side, sandbox_id: str, rounds: int) -> list[float]:
    side.run(side.ops.exec(sandbox_id, "true", None, {}, 30))  # warm up
    values = []
    for _ in range(rounds):
        started = time.monotonic()
        side.run(side.ops.exec(sandbox_id, "true", None, {}, 30))
        values.append(time.monotonic() - started)
    return values


def create_many_through(api: Api, count: int, parallel: int) -> tuple[float, list[float], list[str], list[dict]]:
    """`count` POST /sandbox/api/sandboxes on the service, `parallel` at a time, each until it answers."""
    times: list[float] = []
    failures: list[str] = []
    made: list[dict] = []

    def one(_: int) -> None:
        started = time.monotonic()
        try:
            made.append(api.json("POST", "/sandbox/api/sandboxes", dict(SPEC)))
            times.append(time.monotonic() - started)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {str(exc)[:160]}")

    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - started, times, failures, made


def delete_all_through(api: Api, made: list[dict], parallel: int) -> None:
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda s: api.json("DELETE", f"/sandbox/api/sandboxes/{s['id']}"), made))


SERVICE_MANAGER = {"warm_pool_size": 0, "max_sandboxes_per_owner": 0, "enforce_disk": "if-possible"}


def service_for(folder: Path, swarm: Swarm | None, reserve: float) -> ServiceProcess:
    """A service for one user, on the local engine or (with `swarm`) on the swarm's nodes."""
    config: dict[str, Any] = {"SandboxManager": dict(SERVICE_MANAGER)}
    if swarm is not None:
        config["SandboxServiceApp"] = {"backend": "swarm"}
        config["SwarmBackend"] = {
            "manager_url": swarm.manager.engine_url,
            "node_engines": swarm.endpoints(),
            "enforcer_image": swarm.node_image,
            "reserve_fraction": reserve,
        }
        config["SandboxManager"]["network_name"] = f"jsb-bench-service-{secrets.token_hex(3)}"
    folder.mkdir(parents=True, exist_ok=True)
    service = ServiceProcess(folder, ["bench"], config)
    service.start()
    return service


def set_availability(swarm: Swarm, hostname: str, availability: str) -> None:
    for node in swarm.manager.client().nodes.list():
        if node.attrs["Description"]["Hostname"] == hostname:
            spec = node.attrs["Spec"]
            spec["Availability"] = availability
            node.update(spec)


class Kernel:
    """A sandbox kernel as Jupyter Server starts one, with this environment (None: this process's)."""

    def __init__(self, env: dict[str, str] | None) -> None:
        self.mkm = MultiKernelManager()
        self.kernel_id = self.mkm.start_kernel(kernel_name="sandbox-python", **({"env": env} if env else {}))
        self.client: BlockingKernelClient = self.mkm.get_kernel(self.kernel_id).client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=300)
        run_cell(self.client, "pass")  # its sandbox is up

    def close(self) -> None:
        self.client.stop_channels()
        self.mkm.shutdown_kernel(self.kernel_id, now=False)


def through_the_service(cluster: Swarm, args: argparse.Namespace) -> None:
    """Parts 3 and 4: the service on the local engine beside the service on the swarm."""
    count = args.service_count if args.service_count is not None else args.count
    with tempfile.TemporaryDirectory() as root:
        local = service_for(Path(root, "local"), None, args.reserve)
        try:
            api = Api(local.port, local.token("bench"))
            wall, times, failures, made = create_many_through(api, count, args.parallel)
            report("service, local", wall, times, failures, made)
            delete_all_through(api, made, args.parallel)
        finally:
            local.stop()
        on_swarm = service_for(Path(root, "swarm"), cluster, args.reserve)
        api = Api(on_swarm.port, on_swarm.token("bench"))
        hub_kernel: Kernel | None = None
        local_kernel: Kernel | None = None
        try:
            wall, times, failures, made = create_many_through(api, count, args.parallel)
            report("service, swarm", wall, times, failures, made)
            spread = collections.Counter(s.get("node") for s in made)
            print(f"{'':>16}placed: {dict(sorted(spread.items()))}")
            delete_all_through(api, made, args.parallel)
            # The hub-mode kernel's sandbox on a worker: the manager node takes nothing new meanwhile.
            env = {
                **os.environ,
                "JUPYTER_SANDBOX_SERVICE_URL": on_swarm.base,
                "JUPYTER_SANDBOX_SERVICE_TOKEN": on_swarm.token("bench"),
                "DOCKER_HOST": "unix:///nonexistent/docker.sock",
            }
            set_availability(cluster, "node0", "pause")
            try:
                hub_kernel = Kernel(env)
            finally:
                set_availability(cluster, "node0", "active")
            nodes = {s.get("node") for s in api.json("GET", "/sandbox/api/sandboxes")["sandboxes"]}
            local_kernel = Kernel(None)
            local_rt: list[float] = []
            hub_rt: list[float] = []
            for _ in range(args.rounds // 10 or 1):
                local_rt += cell_round_trips(local_kernel.client, 10)
                hub_rt += cell_round_trips(hub_kernel.client, 10)
            print(
                f"cell round trip ({len(local_rt)} each, alternating): local kernel p50 "
                f"{statistics.median(local_rt) * 1000:.1f} ms p95 {percentile(local_rt, 0.95) * 1000:.1f} ms; "
                f"through the service to {'/'.join(sorted(str(n) for n in nodes))} p50 "
                f"{statistics.median(hub_rt) * 1000:.1f} ms p95 {percentile(hub_rt, 0.95) * 1000:.1f} ms "
                f"(ratio p50 {statistics.median(hub_rt) / statistics.median(local_rt):.2f})"
            )
        finally:
            for kernel in (hub_kernel, local_kernel):
                if kernel is not None:
                    kernel.close()
            for sandbox in api.json("GET", "/sandbox/api/sandboxes")["sandboxes"]:
                api.json("DELETE", f"/sandbox/api/sandboxes/{sandbox['id']}")
            on_swarm.stop()


def report(name: str, wall: float, times: list[float], failures: list[str], made: list[dict]) -> None:
    print(
        f"{name:>14}: {len(made)} made in {wall:6.1f} s wall ({len(made) / wall if wall else 0:.2f}/s), "
        f"each p50 {percentile(times, 0.5):.2f} s p95 {percentile(times, 0.95):.2f} s, {len(failures)} failures"
    )
    for failure, seen in collections.Counter(failures).most_common(3):
        print(f"{'':>16}{seen} x {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--reserve", type=float, default=0.02)
    parser.add_argument(
        "--service-count", type=int, default=None, help="sandboxes through the service (default --count)"
    )
    parser.add_argument("--only-service", action="store_true", help="parts 3 and 4 only")
    args = parser.parse_args()
    suffix = secrets.token_hex(3)
    if args.only_service:
        SandboxManager().ensure_image(DEFAULT_IMAGE)
        with swarm_cluster(DEFAULT_IMAGE) as cluster:
            through_the_service(cluster, args)
        return

    local = Side(
        SandboxManager(
            owner=f"bench-local-{suffix}",
            network_name=f"jsb-bench-local-{suffix}",
            enforce_disk="if-possible",
            max_sandboxes_per_owner=0,
        )
    )
    local.manager.ensure_image(DEFAULT_IMAGE)
    print(
        f"{args.count} sandboxes ({SPEC['cpu']} CPU, {SPEC['memory']}), {args.parallel} at a time, each until its agent answers"
    )
    wall, times, failures, made = create_many(local, args.count, args.parallel)
    report("local engine", wall, times, failures, made)
    # One local sandbox stays for the round trips, measured with the swarm's, alternately.
    kept_local = made[:1]
    delete_all(local, made[1:], args.parallel)

    with swarm_cluster(DEFAULT_IMAGE) as cluster:
        backend = SwarmBackend(
            manager_url=cluster.manager.engine_url,
            node_engines=cluster.endpoints(),
            enforcer_image=cluster.node_image,
            reserve_fraction=args.reserve,
        )
        swarm = Side(
            SandboxManager(
                backend=backend,
                owner=f"bench-swarm-{suffix}",
                network_name=f"jsb-bench-swarm-{suffix}",
                enforce_disk="if-possible",
                max_sandboxes_per_owner=0,
            )
        )
        try:
            wall, times, failures, made = create_many(swarm, args.count, args.parallel)
            report("3-node swarm", wall, times, failures, made)
            spread = collections.Counter(s.get("node") for s in made)
            print(f"{'':>16}placed: {dict(sorted(spread.items()))}")
            worker = next((s for s in made if s.get("node") != "node0"), None)
            delete_all(swarm, [s for s in made if s is not worker], args.parallel)
            made = [worker] if worker else []
            local_rt: list[float] = []
            swarm_rt: list[float] = []
            if worker and kept_local:
                for _ in range(args.rounds // 10 or 1):  # alternately, so that both see the same load
                    local_rt += round_trips(local, kept_local[0]["id"], 10)
                    swarm_rt += round_trips(swarm, worker["id"], 10)
        finally:
            delete_all(swarm, made, args.parallel)
            delete_all(local, kept_local, args.parallel)
        if local_rt and swarm_rt:
            print(
                f"exec round trip ({len(local_rt)} each, alternating): local p50 {statistics.median(local_rt) * 1000:.1f} ms "
                f"p95 {percentile(local_rt, 0.95) * 1000:.1f} ms; swarm worker node p50 "
                f"{statistics.median(swarm_rt) * 1000:.1f} ms p95 {percentile(swarm_rt, 0.95) * 1000:.1f} ms "
                f"(ratio p50 {statistics.median(swarm_rt) / statistics.median(local_rt):.2f})"
            )
        through_the_service(cluster, args)


if __name__ == "__main__":
    main()
