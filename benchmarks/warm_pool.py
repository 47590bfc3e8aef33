"""Kernel start to first result: claimed from the warm pool vs a cold sandbox, beside a local ipykernel.

The Jupyter server keeps `SandboxManager.warm_pool_size` sandboxes started; here the pool is filled
between runs by the same call the server makes (not timed), and drained before each cold run.
Target: warm ≤ 0.3 s on a 2-core machine. The null kernel (benchmarks/null_kernel.py), which only
answers, shows the floor of this measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from cold_start import first_result
from common import pool_rounds

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


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
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
    return {"warm_start_s": statistics.median(warm), "cold_start_s": statistics.median(cold)}


if __name__ == "__main__":
    main()
