"""Trivial-cell round trip through the proxy kernel's relay to a local ipykernel, beside the same
ipykernel reached directly, in one run (no Docker: the cost of the relay alone).

Which relay is measured is whichever `jupyter_sandbox` is importable: run it with PYTHONPATH set to
each checkout to compare two versions of the relay; `--also DIR` does that in the same run, measuring
the checkout at DIR in a child process right after this one.

Also printed lines through the relay vs direct, and a Run All (cells sent at once, each waiting for
the verdict of the one before it in the relay, as a cell behind a failing one must). Target: relay / direct <= 1.10 for the round trip,
>= 0.9 of direct throughput, and the same within noise for two versions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import ms, round_trips
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.connect import write_connection_file
from throughput import timed

import jupyter_sandbox
from jupyter_sandbox.kernel.relay import Relay
from jupyter_sandbox.kernel.settings import SandboxKernel


class LocalKernel(dict):
    """A local ipykernel's connection info; also answers as the Sandbox an older relay was given."""

    memory_limit = ""
    image_id = ""

    def kernel_connection(self) -> dict[str, Any]:
        return dict(self)


class LocalLifecycle:
    """Readies the local kernel's connection at once; every other lifecycle action does nothing."""

    memory_limit = ""
    sandbox = None

    def __init__(self, relay: Relay, kernel: LocalKernel) -> None:
        self.relay, self.kernel = relay, kernel

    def bring_up(self) -> None:
        self.relay.post("ready", self.kernel)

    def connection(self) -> dict[str, Any]:
        return self.kernel

    def recorded_kernel_info(self) -> None:
        return None

    def remember_kernel_info(self, info: dict[str, Any]) -> None:
        pass

    def magic_context(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no %sandbox lines in this benchmark")

    def adopt(self, sandbox: Any) -> dict[str, Any]:
        return self.kernel

    def stop_watching(self) -> None:
        pass

    def restart_kernel(self, message: str) -> None:
        pass

    def touch(self) -> None:
        pass

    def interrupt(self) -> None:
        pass

    def release(self) -> None:
        pass


def run_all(client: BlockingKernelClient, cells: int) -> float:
    """Seconds from sending `cells` trivial cells at once to the last one's reply."""
    started = time.perf_counter()
    last = [client.execute("pass") for _ in range(cells)][-1]
    while client.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != last:
        pass
    return time.perf_counter() - started


def measure(
    count: int, lines: int
) -> tuple[list[float], list[float], list[float], list[float], float, list[float], list[float]]:
    inner = KernelManager(kernel_name="python3", ip="127.0.0.1", transport="tcp")
    inner.start_kernel()
    direct = inner.client()
    direct.start_channels()
    direct.wait_for_ready(timeout=60)
    with tempfile.TemporaryDirectory() as tmp:
        _, front = write_connection_file(
            str(Path(tmp, "front.json")), ip="127.0.0.1", key=os.urandom(16).hex().encode()
        )
        kernel = LocalKernel(inner.get_connection_info())
        relay = Relay(dict(front), lambda r: LocalLifecycle(r, kernel), settings=SandboxKernel())
        thread = threading.Thread(target=relay.run, daemon=True)
        thread.start()
        proxied = BlockingKernelClient()
        proxied.load_connection_info(front)
        proxied.start_channels()
        proxied.wait_for_ready(timeout=60)
        try:
            # Interleaved, so that both see the same machine load.
            direct_times: list[float] = []
            relay_times: list[float] = []
            direct_printing: list[float] = []
            relay_printing: list[float] = []
            direct_run_all: list[float] = []
            relay_run_all: list[float] = []
            # CPU time of this process (client threads, and the relay's thread when it is used): the
            # difference per cell is the relay's own work, which the machine's load does not stretch.
            cpu = {"direct": 0.0, "relay": 0.0}
            for _ in range(4):
                started = time.process_time()
                direct_times += round_trips(direct, count // 4)
                cpu["direct"] += time.process_time() - started
                started = time.process_time()
                relay_times += round_trips(proxied, count // 4)
                cpu["relay"] += time.process_time() - started
                direct_printing.append(timed(direct, lines))
                relay_printing.append(timed(proxied, lines))
                direct_run_all.append(run_all(direct, count))
                relay_run_all.append(run_all(proxied, count))
        finally:
            relay.post("terminate")
            thread.join(10)
            proxied.stop_channels()
            direct.stop_channels()
            inner.shutdown_kernel(now=True)
    relay_cpu_ms = (cpu["relay"] - cpu["direct"]) / len(relay_times) * 1000
    return direct_times, relay_times, direct_printing, relay_printing, relay_cpu_ms, direct_run_all, relay_run_all


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--lines", type=int, default=20_000, help="printed lines for the throughput figure")
    parser.add_argument("--also", default="", help="a checkout whose relay to measure next, in a child process")
    args = parser.parse_args()
    direct_times, relay_times, direct_printing, relay_printing, relay_cpu_ms, direct_all, relay_all = measure(
        args.n, args.lines
    )
    ratio = statistics.median(relay_times) / statistics.median(direct_times)
    throughput = statistics.median(direct_printing) / statistics.median(relay_printing)
    where = Path(jupyter_sandbox.__file__).resolve().parents[1]
    print(f"trivial cell round trip, {args.n} cells each, relay from {where}")
    print(f"  local ipykernel, direct        {ms(direct_times)}")
    print(f"  local ipykernel, through relay {ms(relay_times)}")
    print(f"  relay / direct = {ratio:.3f}   (target <= 1.10)")
    print(f"  the relay's own CPU time per cell: {relay_cpu_ms:.2f} ms")
    print(f"{args.lines} printed lines, 4 times each")
    print(f"  local ipykernel, direct        median {statistics.median(direct_printing) * 1000:7.1f} ms")
    print(f"  local ipykernel, through relay median {statistics.median(relay_printing) * 1000:7.1f} ms")
    print(f"  relay / direct throughput = {throughput:.3f}   (target >= 0.9)")
    print(f"Run All of {args.n} trivial cells sent at once, 4 times each")
    print(f"  local ipykernel, direct        median {statistics.median(direct_all) * 1000:7.1f} ms")
    print(f"  local ipykernel, through relay median {statistics.median(relay_all) * 1000:7.1f} ms")
    if args.also:
        env = {**os.environ, "PYTHONPATH": args.also}
        command = [sys.executable, __file__, "-n", str(args.n), "--lines", str(args.lines)]
        subprocess.run(command, env=env, check=True, timeout=600)
    run_all_ratio = statistics.median(relay_all) / statistics.median(direct_all)
    return {
        "relay_split_ratio": ratio,
        "relay_split_throughput": throughput,
        "relay_cpu_ms": relay_cpu_ms,
        "relay_run_all_ratio": run_all_ratio,
    }


if __name__ == "__main__":
    main()
