"""Latency through the core: a trivial cell's round trip and GET /sandboxes/{id}, each beside a baseline
measured in the same run.

- trivial cell (`pass`): the sandbox kernel against a local ipykernel;
- GET /sandbox/api/sandboxes/{id} (status: Docker, the agent's health and usage) against GET
  /api/status, a trivial authenticated endpoint of the same Jupyter server.
Run it on two trees (PYTHONPATH=<tree>) to compare them; the baselines say how loaded the machine was.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import Api, kernel, ms, round_trips, start_server


def timed(api: Api, path: str, count: int) -> list[float]:
    api.json("GET", path)  # warm up
    times = []
    for _ in range(count):
        started = time.perf_counter()
        api.json("GET", path)
        times.append(time.perf_counter() - started)
    return times


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100, help="cells and requests of each kind")
    args = parser.parse_args()

    with kernel("python3") as (_, _, local), kernel("sandbox-python") as (_, _, sandboxed):
        local_times, sandbox_times = [], []
        for _ in range(4):  # interleaved: both see the same machine load
            local_times += round_trips(local, args.n // 4)
            sandbox_times += round_trips(sandboxed, args.n // 4)

    with tempfile.TemporaryDirectory() as root:
        process, port, token = start_server(root)
        api = Api(port, token)
        try:
            sandbox_id = api.json("POST", "/sandbox/api/sandboxes", {})["id"]
            try:
                status_times, baseline_times = [], []
                for _ in range(4):
                    baseline_times += timed(api, "/api/status", args.n // 4)
                    status_times += timed(api, f"/sandbox/api/sandboxes/{sandbox_id}", args.n // 4)
            finally:
                api.json("DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")
        finally:
            process.terminate()
            process.wait(timeout=30)

    cell_ratio = statistics.median(sandbox_times) / statistics.median(local_times)
    status_ratio = statistics.median(status_times) / statistics.median(baseline_times)
    print(f"trivial cell round trip, {len(local_times)} cells each")
    print(f"  local ipykernel (baseline)      {ms(local_times)}")
    print(f"  sandbox kernel                  {ms(sandbox_times)}")
    print(f"  sandbox / local = {cell_ratio:.2f}")
    print(f"GET latency, {len(status_times)} requests each")
    print(f"  GET /api/status (baseline)      {ms(baseline_times)}")
    print(f"  GET /sandbox/api/sandboxes/{{id}} {ms(status_times)}")
    print(f"  status / baseline = {status_ratio:.2f}")
    return {"cell_ratio": cell_ratio, "status_ratio": status_ratio}


if __name__ == "__main__":
    main()
