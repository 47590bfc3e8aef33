"""How many idle sandboxes this machine holds at once with the default spec, and what each costs.

Creates N sandboxes (default 50) of the default spec, each with its agent and Python kernel started
and answering, lets them settle, then reads each one's memory from its cgroup and the host's
MemAvailable before and after. The baseline, in the same run: a local ipykernel process's resident
memory. All sandboxes are removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jupyter_client.multikernelmanager import MultiKernelManager

from jupyter_sandbox.sandbox.agent_client import run_blocking
from jupyter_sandbox.sandbox.manager import Sandbox, SandboxManager


def mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def local_ipykernel_rss() -> int:
    mkm = MultiKernelManager()
    kernel_id = mkm.start_kernel(kernel_name="python3")
    client = mkm.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        pid = mkm.get_kernel(kernel_id).provisioner.process.pid
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
    finally:
        client.stop_channels()
        mkm.shutdown_kernel(kernel_id, now=True)


def cpu_seconds(manager: SandboxManager, sandboxes: list[Sandbox]) -> float:
    return sum(manager.usage(s).get("cpu_seconds") or 0.0 for s in sandboxes)


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    manager = SandboxManager()
    baseline = local_ipykernel_rss()
    before = mem_available()
    created: list[Sandbox] = []

    def make(_: int) -> Sandbox:
        sandbox = manager.create()
        manager.wait_for_agent(sandbox, timeout=120)
        created.append(sandbox)
        return sandbox

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(make, range(args.count)))
        took = time.perf_counter() - started
        time.sleep(args.settle)
        answering = sum(
            1 for s in created if run_blocking(lambda s=s: manager.agent(s).health(timeout=10)).get("kernel")
        )
        memory = [manager.usage(s)["memory_bytes"] for s in created]
        after = mem_available()
        cpu_before = cpu_seconds(manager, created)
        time.sleep(10)
        idle_cpu = (cpu_seconds(manager, created) - cpu_before) / 10
    finally:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(manager.remove, created))
    per_host = (before - after) / max(1, len(created))
    print(
        f"idle sandboxes held at once: {answering} of {args.count} answering (created in {took:.0f} s)   (target ≥ 50)"
    )
    print(f"  memory per idle sandbox, cgroup:      median {mib(statistics.median(memory))}, max {mib(max(memory))}")
    print(
        f"  host MemAvailable drop per sandbox:   {mib(per_host)} ({mib(before)} available before, {mib(after)} after)"
    )
    print(
        f"  baseline, one local ipykernel's RSS:  {mib(baseline)}   "
        f"(sandbox / local = {statistics.median(memory) / baseline:.2f})"
    )
    print(f"  CPU used by all {len(created)} idle sandboxes together: {idle_cpu * 100:.1f} % of one core")
    print(f"  this machine would hold about {int(before / max(per_host, 1))} by memory")
    return {"idle_held": answering, "idle_memory_bytes": statistics.median(memory)}


if __name__ == "__main__":
    main()
