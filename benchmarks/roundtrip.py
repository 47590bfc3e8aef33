"""Trivial-cell round trip: local ipykernel vs straight to the sandbox's kernel vs through the proxy.

Target: proxy / direct <= 1.10.
"""

from __future__ import annotations

import argparse
import statistics

from common import direct_client, kernel, ms, round_trips


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    with kernel("python3") as (_, _, local):
        local_times = round_trips(local, args.n)
    with kernel("sandbox-python") as (_, kernel_id, proxied), direct_client(kernel_id) as direct:
        # Interleave the two so that both see the same machine load.
        direct_times, proxy_times = [], []
        for _ in range(4):
            direct_times += round_trips(direct, args.n // 4)
            proxy_times += round_trips(proxied, args.n // 4)
    ratio = statistics.median(proxy_times) / statistics.median(direct_times)
    print(f"trivial cell round trip, {args.n} cells each")
    print(f"  local ipykernel          {ms(local_times)}")
    print(f"  sandbox kernel, direct   {ms(direct_times)}")
    print(f"  sandbox kernel, proxied  {ms(proxy_times)}")
    print(f"  proxy / direct = {ratio:.3f}   (target <= 1.10)")
    return {"roundtrip_ratio": ratio}


if __name__ == "__main__":
    main()
