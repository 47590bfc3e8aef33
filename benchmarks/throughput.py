"""100,000 printed lines through the proxy vs straight to the sandbox's kernel.

Target: proxied throughput >= 0.9 of direct.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import direct_client, kernel, run_cell

CODE = "for i in range({lines}):\n    print(i)"


def timed(client, lines: int) -> float:
    received = []
    started = time.perf_counter()
    reply = client.execute_interactive(
        CODE.format(lines=lines), timeout=600, output_hook=lambda msg: received.append(msg["content"].get("text", ""))
    )
    elapsed = time.perf_counter() - started
    assert reply["content"]["status"] == "ok"
    assert "".join(received).count("\n") == lines
    return elapsed


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with kernel("sandbox-python") as (_, kernel_id, proxied), direct_client(kernel_id) as direct:
        run_cell(direct, "pass")
        direct_times, proxy_times = [], []
        for _ in range(args.repeat):
            direct_times.append(timed(direct, args.lines))
            proxy_times.append(timed(proxied, args.lines))
    direct_rate = args.lines / statistics.median(direct_times)
    proxy_rate = args.lines / statistics.median(proxy_times)
    print(f"{args.lines:,} printed lines, median of {args.repeat}")
    print(f"  direct   {statistics.median(direct_times):6.2f} s  {direct_rate:10,.0f} lines/s")
    print(f"  proxied  {statistics.median(proxy_times):6.2f} s  {proxy_rate:10,.0f} lines/s")
    print(f"  proxied / direct throughput = {proxy_rate / direct_rate:.3f}   (target >= 0.9)")
    return {"throughput_ratio": proxy_rate / direct_rate}


if __name__ == "__main__":
    main()
