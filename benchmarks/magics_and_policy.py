"""`%sandbox status` round trip, and what the output policy costs.

- `%sandbox status` (Docker inspect + stats + the agent's disk walk) beside a trivial cell in the
  same kernel.
- 1,000 HTML display outputs through the proxy with policy `safe` vs `trusted`.
  Target: `safe` >= 0.8 of `trusted` throughput.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import kernel, ms, round_trips

HTML_CELL = (
    "from IPython.display import HTML, display\n"
    "for i in range({count}):\n"
    '    display(HTML(\'<table class="dataframe"><tr><th>row</th><td style="color: red">%d</td>'
    '<td><b>bold</b> <a href="https://example.org">link</a></td></tr></table>\' % i))'
)


def timed_outputs(client, count: int) -> float:
    seen = []
    started = time.perf_counter()
    reply = client.execute_interactive(
        HTML_CELL.format(count=count),
        timeout=600,
        output_hook=lambda msg: seen.append(1) if msg["msg_type"] == "display_data" else None,
    )
    elapsed = time.perf_counter() - started
    assert reply["content"]["status"] == "ok" and len(seen) == count
    return elapsed


def status_round_trips(client, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        reply = client.execute_interactive("%sandbox status", timeout=60, output_hook=lambda msg: None)
        times.append(time.perf_counter() - started)
        assert reply["content"]["status"] == "ok"
    return times


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outputs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with kernel("sandbox-python") as (_, _, client):
        trivial = round_trips(client, 20)
        status = status_round_trips(client, 20)
    print("%sandbox status round trip, 20 each")
    print(f"  trivial cell      {ms(trivial)}")
    print(f"  %sandbox status   {ms(status)}")

    with (
        kernel("sandbox-python", ["--SandboxKernel.output_policy=safe"]) as (_, _, safe),
        kernel("sandbox-python", ["--SandboxKernel.output_policy=trusted"]) as (_, _, trusted),
    ):
        timed_outputs(safe, 50), timed_outputs(trusted, 50)  # warm up
        safe_times, trusted_times = [], []
        for _ in range(args.repeat):
            safe_times.append(timed_outputs(safe, args.outputs))
            trusted_times.append(timed_outputs(trusted, args.outputs))
    ratio = statistics.median(trusted_times) / statistics.median(safe_times)
    print(f"{args.outputs:,} HTML display outputs, median of {args.repeat}")
    print(
        f"  policy trusted  {statistics.median(trusted_times):6.3f} s  "
        f"{args.outputs / statistics.median(trusted_times):8,.0f} outputs/s"
    )
    print(
        f"  policy safe     {statistics.median(safe_times):6.3f} s  "
        f"{args.outputs / statistics.median(safe_times):8,.0f} outputs/s"
    )
    print(f"  safe / trusted throughput = {ratio:.3f}   (target >= 0.8)")
    return {"policy_ratio": ratio}


if __name__ == "__main__":
    main()
