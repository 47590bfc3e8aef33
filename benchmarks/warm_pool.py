"""Kernel start to first result: claimed from the warm pool vs a cold sandbox, beside a local ipykernel;
and the SDK's create → first exec result over REST, claimed from the warm pool vs made cold (p50/p95).

The Jupyter server keeps `SandboxManager.warm_pool_size` sandboxes started; here the pool is filled
between runs by the same call the server makes (not timed), and drained before each cold run.
Target: warm ≤ 0.3 s on a 2-core machine. The null kernel (benchmarks/null_kernel.py), which only
answers, shows the floor of this measurement.

The SDK part runs a Jupyter server with a warm pool; `Sandbox.create()` then `sb.process.exec` takes a
pool sandbox (POST /sandboxes claims one when the request has the pool's spec), and the cold path is
the same call with a label, which needs a container of its own. Target: p50 ≤ 150 ms, p95 ≤ 400 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cold_start import first_result
from common import pool_rounds, start_server
from sdk import other_pools, pool_ready, summary

from jupyter_sandbox.client import Sandbox
from jupyter_sandbox.sandbox.manager import SandboxManager


def install_null_kernel() -> None:
    """A kernelspec for null_kernel.py in a folder of this run, found through JUPYTER_PATH."""
    root = Path(tempfile.mkdtemp())
    folder = root / "kernels" / "null"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, str(Path(__file__).with_name("null_kernel.py")), "{connection_file}"],
                "display_name": "null",
                "language": "python",
            }
        )
    )
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("JUPYTER_PATH")]))


def sdk_create_to_first_exec(rounds: int, pool: int) -> dict[str, float]:
    """SDK create → first exec result, from the warm pool and cold, alternating, on one server."""
    others = other_pools()
    process, port, token = start_server(
        tempfile.mkdtemp(), [f"--SandboxManager.warm_pool_size={pool}", "--SandboxService.pool_interval=1"]
    )
    url = f"http://127.0.0.1:{port}"
    warm: list[float] = []
    cold: list[float] = []
    try:
        for _ in range(rounds):
            pool_ready(pool, others)
            for times, labels in ((warm, None), (cold, {"bench": "cold"})):
                started = time.perf_counter()
                sb = Sandbox.create(url=url, token=token, labels=labels)
                assert sb.process.exec(["echo", "ok"]).stdout == "ok\n"
                times.append(time.perf_counter() - started)
                sb.delete()
    finally:
        process.terminate()
        process.wait(timeout=120)
    print(f"SDK create -> first exec result, {rounds} rounds")
    print("  " + summary("warm pool: Sandbox.create() + process.exec", warm))
    print("  " + summary("baseline, cold: Sandbox.create(labels=...) + exec", cold))
    print("  target (warm pool): p50 <= 150 ms, p95 <= 400 ms")
    return {"sdk_warm_p50_s": statistics.median(warm), "sdk_cold_p50_s": statistics.median(cold)}


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sdk-rounds", type=int, default=20)
    parser.add_argument("--sdk-only", action="store_true", help="only the SDK create → first exec figures")
    args = parser.parse_args()
    if args.sdk_only:
        return sdk_create_to_first_exec(args.sdk_rounds, 1)
    install_null_kernel()
    SandboxManager(warm_pool_size=1).drain_pool()
    first_result("sandbox-python")  # image and page cache warm
    first_result("null")
    (floor, local), cold, warm = pool_rounds(first_result, args.repeat, ["null", "python3"])
    print(f"kernel start to first cell result, median of {args.repeat}")
    print(
        f"  null kernel (only zmq)   {statistics.median(floor):6.2f} s  (min {min(floor):.2f})   "
        "the floor: interpreter, zmq, jupyter_client's handshake"
    )
    print(f"  local ipykernel          {statistics.median(local):6.2f} s  (min {min(local):.2f})")
    print(f"  sandbox, cold            {statistics.median(cold):6.2f} s  (min {min(cold):.2f})")
    print(f"  sandbox, warm pool       {statistics.median(warm):6.2f} s  (min {min(warm):.2f})   (target ≤ 0.3 s)")
    print(
        f"  warm / cold = {statistics.median(warm) / statistics.median(cold):.2f}, "
        f"warm / local = {statistics.median(warm) / statistics.median(local):.2f}"
    )
    figures = {"warm_start_s": statistics.median(warm), "cold_start_s": statistics.median(cold)}
    return {**figures, **sdk_create_to_first_exec(args.sdk_rounds, 1)}


if __name__ == "__main__":
    main()
