"""What the relay's inbound filter (kernel/inbound.py) costs: a trivial cell's round trip and 100,000
printed lines with every message from the sandbox filtered, beside the same with the filter bypassed.

One kernel process, one sandbox: the kernel is benchmarks/filter_switch_kernel.py, the ordinary
sandbox kernel whose filter SIGUSR1 switches off and on; the two modes are interleaved so that both
see the same machine load. Target: filtered / bypassed <= 1.05 for both figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from common import _started, round_trips
from jupyter_client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import MultiKernelManager

HERE = Path(__file__).resolve().parent
CODE = "for i in range({lines}):\n    print(i)"
PROBE = "print('javascript://probe')"


@contextmanager
def switchable_kernel() -> Iterator[tuple[MultiKernelManager, str, BlockingKernelClient]]:
    specs = KernelSpecManager()
    with tempfile.TemporaryDirectory() as spec_root:
        spec = specs.get_kernel_spec("sandbox-python").to_dict()
        spec["argv"] = [sys.executable, str(HERE / "filter_switch_kernel.py"), "-f", "{connection_file}"]
        folder = Path(spec_root, "sandbox-python-filter-switch")
        folder.mkdir()
        (folder / "kernel.json").write_text(json.dumps(spec))
        specs.kernel_dirs.insert(0, spec_root)
        with _started(MultiKernelManager(kernel_spec_manager=specs), folder.name) as started:
            yield started


def set_filtering(mkm: MultiKernelManager, kernel_id: str, client: BlockingKernelClient, on: bool) -> None:
    """Switch the filter to `on`, and check it took: the probe's link is broken only when filtering."""
    for _ in range(2):
        if filtering(client) == on:
            return
        os.kill(mkm.get_kernel(kernel_id).provisioner.process.pid, signal.SIGUSR1)
        time.sleep(1.5)  # the relay's loop wakes at least once a second
    raise RuntimeError("the kernel did not switch its filter")


def filtering(client: BlockingKernelClient) -> bool:
    texts: list[str] = []
    client.execute_interactive(PROBE, timeout=60, output_hook=lambda msg: texts.append(msg["content"].get("text", "")))
    return "javascript://probe" not in "".join(texts)


def timed(client: BlockingKernelClient, lines: int) -> float:
    received: list[str] = []
    started = time.perf_counter()
    reply = client.execute_interactive(CODE.format(lines=lines), timeout=600,
                                       output_hook=lambda msg: received.append(msg["content"].get("text", "")))
    elapsed = time.perf_counter() - started
    assert reply["content"]["status"] == "ok"
    assert "".join(received).count("\n") == lines
    return elapsed


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200, help="trivial cells per mode")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    trips = {True: [], False: []}
    streams = {True: [], False: []}
    with switchable_kernel() as (mkm, kernel_id, client):
        for block in range(8):
            for on in (True, False) if block % 2 == 0 else (False, True):
                set_filtering(mkm, kernel_id, client, on)
                trips[on] += round_trips(client, args.n // 8)
        for index in range(args.repeat):
            for on in (True, False) if index % 2 == 0 else (False, True):
                set_filtering(mkm, kernel_id, client, on)
                streams[on].append(timed(client, args.lines))
        set_filtering(mkm, kernel_id, client, True)
    trip_ratio = statistics.median(trips[True]) / statistics.median(trips[False])
    stream_ratio = statistics.median(streams[True]) / statistics.median(streams[False])
    print(f"inbound filter: trivial cell round trip ({args.n} cells each), {args.lines:,} printed lines "
          f"(median of {args.repeat}); one kernel process, one sandbox")
    for on, label in ((False, "bypassed"), (True, "filtered")):
        print(f"  {label:9} round trip median {statistics.median(trips[on]) * 1000:6.2f} ms   "
              f"{args.lines:,} lines {statistics.median(streams[on]):6.2f} s")
    print(f"  filtered / bypassed: round trip {trip_ratio:.3f}, stream time {stream_ratio:.3f}   (target <= 1.05)")
    return {"filter_roundtrip_ratio": trip_ratio, "filter_stream_ratio": stream_ratio}


if __name__ == "__main__":
    main()
