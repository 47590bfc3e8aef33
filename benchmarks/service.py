"""Create a sandbox and get its first `exec` result: through the sandbox service (hub mode) against
the same through a single-machine Jupyter server's REST API (the baseline), in one run, interleaved.

Both with the warm pool off (a cold create each time); the service adds its token lookup and the
per-user scoping, nothing else should differ. Prints p50 and p95 of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import Api, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from service_support import ServiceProcess


def first_result(api: Api) -> float:
    """Seconds from POST /sandboxes to the first exec's answer; the sandbox is removed afterwards."""
    started = time.perf_counter()
    sandbox = api.json("POST", "/sandbox/api/sandboxes", {})
    answer = api.json("POST", f"/sandbox/api/sandboxes/{sandbox['id']}/process/exec", {"command": "echo ready"})
    took = time.perf_counter() - started
    assert answer["stdout"] == "ready\n", answer
    api.json("DELETE", f"/sandbox/api/sandboxes/{sandbox['id']}")
    return took


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        process, port, token = start_server(root, ["--SandboxManager.warm_pool_size=0"])
        service = ServiceProcess(Path(root), ["bench"], {"SandboxManager": {"warm_pool_size": 0}})
        service.start()
        try:
            local, hub = Api(port, token), Api(service.port, service.token("bench"))
            first_result(local)  # the first create of a process pays for its imports and the image check
            first_result(hub)
            through_server, through_service = [], []
            for _ in range(args.runs):
                through_server.append(first_result(local))
                through_service.append(first_result(hub))
        finally:
            service.stop()
            process.terminate()
            process.wait(timeout=30)
    print(f"create -> first exec result, {args.runs} runs each, interleaved (warm pool off)")
    for name, values in (("single-machine server", through_server), ("sandbox service", through_service)):
        print(f"  {name:22s} p50 {statistics.median(values) * 1000:7.0f} ms   p95 {p95(values) * 1000:7.0f} ms")
    ratio = statistics.median(through_service) / statistics.median(through_server)
    print(f"  service / server (p50): {ratio:.2f}x")


if __name__ == "__main__":
    main()
