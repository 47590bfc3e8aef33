"""A healthy sandbox's file listing latency, alone and next to a frozen neighbour, in one run.

The neighbour's agent is stopped (SIGSTOP, from inside) and a stream of calls to it is kept under
way while the healthy sandbox is listed. Before calls went through per-sandbox gates on async I/O,
those calls filled the server's shared thread pool and a listing of another sandbox took ~58 s.

Target: the listing with a frozen neighbour is within 1.5x of the listing alone.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import threading
import time

from common import Api, start_server

AGENT_PID = "$(cut -d' ' -f4 /proc/$PPID/stat)"


def listing_latencies(api: Api, sandbox_id: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        api.json("GET", f"/sandbox/api/sandboxes/{sandbox_id}/files")
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="listings per measurement")
    parser.add_argument("--callers", type=int, default=12, help="calls to the frozen sandbox kept under way")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        process, port, token = start_server(root)
        api = Api(port, token)
        made: list[str] = []
        try:
            healthy = api.json("POST", "/sandbox/api/sandboxes", {})["id"]
            made.append(healthy)
            frozen = api.json("POST", "/sandbox/api/sandboxes", {})["id"]
            made.append(frozen)
            listing_latencies(api, healthy, 20)  # warm up
            alone = listing_latencies(api, healthy, args.count)

            threading.Thread(
                target=lambda: _quiet(
                    api.json,
                    "POST",
                    f"/sandbox/api/sandboxes/{frozen}/process/exec",
                    {"command": f"kill -STOP {AGENT_PID}", "timeout": 5},
                ),
                daemon=True,
            ).start()
            time.sleep(1)
            stop = threading.Event()
            answers: dict[str, int] = {}

            def caller() -> None:
                while not stop.is_set():
                    try:
                        api.json("GET", f"/sandbox/api/sandboxes/{frozen}/files")
                        answers["200"] = answers.get("200", 0) + 1
                    except RuntimeError as exc:
                        code = str(exc).split(": ", 1)[1][:3]
                        answers[code] = answers.get(code, 0) + 1

            with concurrent.futures.ThreadPoolExecutor(max_workers=args.callers) as pool:
                for _ in range(args.callers):
                    pool.submit(caller)
                time.sleep(1)
                beside = listing_latencies(api, healthy, args.count)
                stop.set()
                _quiet(api.json, "DELETE", f"/sandbox/api/sandboxes/{frozen}")  # ends the callers' waits
                made.remove(frozen)
        finally:
            for sandbox_id in made:
                _quiet(api.json, "DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")
            process.terminate()
            process.wait(timeout=30)

    def show(name: str, values: list[float]) -> str:
        return (
            f"{name:<34} median {statistics.median(values) * 1000:7.2f} ms   "
            f"p95 {sorted(values)[int(len(values) * 0.95)] * 1000:7.2f} ms   max {max(values) * 1000:7.2f} ms"
        )

    print(show("listing, alone", alone))
    print(show(f"listing, frozen neighbour ({args.callers} callers)", beside))
    print(
        f"ratio (median): {statistics.median(beside) / statistics.median(alone):.2f}x   "
        f"answers to the frozen sandbox's callers: {dict(sorted(answers.items()))}"
    )


def _quiet(function, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        function(*args)
    except Exception as exc:  # a benchmark's cleanup says what failed and goes on
        print(f"({exc})", file=sys.stderr)


if __name__ == "__main__":
    main()
