"""Kernel start to first result, and to the first Tab completion, sandbox vs a local ipykernel.

Each run starts a kernel as Jupyter Server does and, right after its kernel_info reply (when
JupyterLab lets the user type), sends what a user's first moments send: a cell, then a completion.
Times are from the kernel start request. "cold": a fresh sandbox is made; "warm": a sandbox from the
warm pool (filled between runs by the server's own call, not timed). The first completion is also
shown on its own (from its request to its reply), beside JupyterLab's 1 s completion timeout; a
local ipykernel started the same way in the same run is the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import pool_rounds, timed_kernel

from jupyter_sandbox.sandbox.manager import SandboxManager

CELL = "import os\nprint(6 * 7)"
COMPLETE = ("os.path.jo", len("os.path.jo"))


def first_moments(kernel_name: str) -> tuple[float, float, float]:
    """(start → first result, start → first completion, the completion's own latency) in seconds."""
    with timed_kernel(kernel_name) as (client, started):
        outputs: list[str] = []
        client.execute_interactive(
            CELL, timeout=300, output_hook=lambda msg: outputs.append(msg["content"].get("text", ""))
        )
        result = time.perf_counter() - started
        assert "42\n" in outputs, outputs
        asked = time.perf_counter()
        reply = client.complete(*COMPLETE, reply=True, timeout=60)
        done = time.perf_counter()
        assert "os.path.join" in reply["content"]["matches"] or "join" in reply["content"]["matches"], reply["content"]
        return result, done - started, done - asked


def row(label: str, values: list[tuple[float, float, float]]) -> str:
    result, completion, own = (statistics.median(v[i] for v in values) for i in range(3))
    return f"  {label:22} first result {result:6.2f} s   first completion {completion:6.2f} s   (its own {own * 1000:6.0f} ms)"


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    SandboxManager(warm_pool_size=1).drain_pool()
    first_moments("sandbox-python")  # image, page cache and the recorded kernel info are warm after this
    (local,), cold, warm = pool_rounds(first_moments, args.repeat, ["python3"])
    print(f"kernel start to first result and to first completion ({COMPLETE[0]!r}), median of {args.repeat}")
    print(row("local ipykernel", local))
    print(row("sandbox, cold", cold))
    print(row("sandbox, warm pool", warm))
    own = {
        name: statistics.median(v[2] for v in values)
        for name, values in (("local", local), ("cold", cold), ("warm", warm))
    }
    print(
        f"  first completion's own latency: cold / local = {own['cold'] / own['local']:.2f}, "
        f"warm / local = {own['warm'] / own['local']:.2f}   (JupyterLab gives up after 1 s)"
    )
    return {"first_completion_cold_ms": own["cold"] * 1000, "first_completion_warm_ms": own["warm"] * 1000}


if __name__ == "__main__":
    main()
