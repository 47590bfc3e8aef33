"""The TypeScript kernel's figures, each beside a baseline measured in the same run:

1. kernel start -> first result: "TypeScript (sandbox)" vs "Python 3 (sandbox)" (cold sandboxes).
2. trivial TypeScript cell round trip: through the relay vs straight to Deno's kernel in the sandbox
   (target: relay / direct <= 1.10).
3. the REST walkthrough (examples/walkthrough_api.py) from create to the first preview byte, vs the same
   commands in a bare `docker run` of the node image (no sandbox, no agent, no relay, no preview).

Needs the node image: `jupyter sandbox image build --lang node`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from common import direct_client, ms, start_server
from jupyter_client import BlockingKernelClient
from jupyter_client.multikernelmanager import MultiKernelManager

from jupyter_sandbox.sandbox.image import NODE_IMAGE

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from typescript_support import TYPESCRIPT_KERNEL, kernel_spec_manager  # noqa: E402


@contextmanager
def started(name: str) -> Iterator[tuple[BlockingKernelClient, str, float]]:
    mkm = MultiKernelManager(kernel_spec_manager=kernel_spec_manager())
    begin = time.perf_counter()
    kernel_id = mkm.start_kernel(kernel_name=name)
    client = mkm.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=300)
        yield client, kernel_id, begin
    finally:
        client.execute_interactive("%sandbox delete --yes", timeout=120, output_hook=lambda msg: None)
        client.stop_channels()
        mkm.shutdown_kernel(kernel_id, now=False)


def cell(client: BlockingKernelClient, code: str) -> None:
    reply = client.execute_interactive(code, timeout=300, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]


def first_result(name: str, code: str) -> float:
    with started(name) as (client, _, begin):
        cell(client, code)
        return time.perf_counter() - begin


def round_trips(client: BlockingKernelClient, count: int) -> list[float]:
    cell(client, "0")
    times = []
    for _ in range(count):
        begin = time.perf_counter()
        cell(client, "0")
        times.append(time.perf_counter() - begin)
    return times


def walkthrough(port: int, token: str) -> float:
    env = {"JUPYTER_SANDBOX_URL": f"http://127.0.0.1:{port}", "JUPYTER_SANDBOX_TOKEN": token}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "walkthrough_api.py")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**__import__("os").environ, **env},
    )
    found = re.search(r"first preview byte ([0-9.]+) s after create", done.stdout)
    assert done.returncode == 0 and found, done.stdout[-2000:] + done.stderr[-2000:]
    return float(found.group(1))


BARE = (
    "set -e; cd ~ && npm create hono@latest ./my-app -- --template nodejs --install --pm npm >/dev/null 2>&1; "
    "cd my-app && npm run build >/dev/null; (npm run start >/dev/null 2>&1 &); "
    "until node -e \"fetch('http://127.0.0.1:3000/').then(r=>r.text()).then(t=>process.exit(t?0:1),()=>process.exit(1))\""
    "; do sleep 0.2; done"
)


def bare_walkthrough() -> float:
    begin = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-u", "1000", "--", NODE_IMAGE, "bash", "-c", BARE],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return time.perf_counter() - begin


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100, help="round trips per kernel")
    parser.add_argument("--repeat", type=int, default=2, help="cold starts per kernel")
    args = parser.parse_args()

    ts_start, py_start = [], []
    for _ in range(args.repeat):
        py_start.append(first_result("sandbox-python", "1"))
        ts_start.append(first_result(TYPESCRIPT_KERNEL, "1"))
    print("kernel start -> first result (cold sandbox)")
    print(f"  Python 3 (sandbox)       {ms(py_start)}")
    print(f"  TypeScript (sandbox)     {ms(ts_start)}")
    start_ratio = statistics.median(ts_start) / statistics.median(py_start)
    print(f"  TypeScript / Python = {start_ratio:.2f}")

    with started(TYPESCRIPT_KERNEL) as (relayed, kernel_id, _), direct_client(kernel_id) as direct:
        direct_times, relay_times = [], []
        for _ in range(4):  # interleaved, so both see the same machine load
            direct_times += round_trips(direct, args.n // 4)
            relay_times += round_trips(cast("BlockingKernelClient", relayed), args.n // 4)
    ratio = statistics.median(relay_times) / statistics.median(direct_times)
    print(f"trivial TypeScript cell round trip, {args.n} cells each")
    print(f"  Deno's kernel, direct    {ms(direct_times)}")
    print(f"  through the relay        {ms(relay_times)}")
    print(f"  relay / direct = {ratio:.3f}   (target <= 1.10)")

    with tempfile.TemporaryDirectory() as root:
        process, port, token = start_server(root)
        try:
            project = walkthrough(port, token)
        finally:
            process.terminate()
            process.wait(timeout=30)
    bare = bare_walkthrough()
    print("walkthrough, create -> first preview byte")
    print(f"  bare docker run (baseline)   {bare:.1f} s")
    print(f"  REST walkthrough             {project:.1f} s")
    print(f"  walkthrough / bare = {project / bare:.2f}")
    figures = {"ts_start_ratio": start_ratio, "ts_roundtrip_ratio": ratio, "walkthrough_ratio": project / bare}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
