"""`make lab` with everything installed: seconds until the URL is printed, and how many lines were
printed by then (targets: under 5 s, under 30 lines).

Baseline, measured in the same run on the same machine: the same steps as `make lab` ran them before
(`make image`, then `jupyter lab` in the foreground with its own log on the terminal), timed to the
line where JupyterLab prints its URL.

Run from the source tree after one `make lab` (or `make image`) has set everything up:
    python benchmarks/make_lab.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"http://127\.0\.0\.1:\d+/lab\?token=")
DEADLINE = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(argv: list[str]) -> tuple[float, int]:
    """Run argv in its own process group until a line carries the lab URL: (seconds, lines before
    and with it). Then stop the whole group, JupyterLab included."""
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    assert process.stdout is not None
    lines = 0
    try:
        for raw in process.stdout:
            lines += 1
            if URL.search(raw.decode(errors="replace")):
                return time.monotonic() - started, lines
            if time.monotonic() - started > DEADLINE:
                break
        raise SystemExit(f"no URL from {' '.join(argv[:3])} within {DEADLINE} s ({lines} lines)")
    finally:
        try:
            os.killpg(process.pid, signal.SIGINT)
            time.sleep(0.3)
            os.killpg(process.pid, signal.SIGINT)  # JupyterLab asks for a second Ctrl-C
            process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)


def ours() -> tuple[float, int]:
    return timed(["make", "lab", f"LAB_PORT={free_port()}", f"LAB_SSH_PORT={free_port()}"])


def baseline() -> tuple[float, int]:
    """The former recipe: `make image` (the old `setup`), then JupyterLab with its log on the terminal."""
    port, token = free_port(), secrets.token_hex(24)
    lab = (
        f"{ROOT}/.venv/bin/jupyter lab --ip=127.0.0.1 --port={port} --no-browser --allow-root "
        f"--ServerApp.root_dir={ROOT}/examples --SSHGateway.port={free_port()} --IdentityProvider.token={token}"
    )
    return timed(["bash", "-c", f"make image && {lab}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not (ROOT / ".venv" / ".installed").exists():
        print("run `make lab` once first: this measures the start with everything installed", file=sys.stderr)
        return 2
    results: dict[str, list[tuple[float, int]]] = {"make lab": [], "baseline (make image; jupyter lab)": []}
    for _ in range(args.runs):
        results["make lab"].append(ours())
        results["baseline (make image; jupyter lab)"].append(baseline())
    print(f"{'':<36}{'seconds to the URL (median, min-max)':<40}lines printed")
    for name, runs in results.items():
        seconds = [s for s, _ in runs]
        lines = [n for _, n in runs]
        print(
            f"{name:<36}{statistics.median(seconds):5.2f} ({min(seconds):.2f}-{max(seconds):.2f}){'':<21}"
            f"{statistics.median(lines):.0f}"
        )
    print("targets: under 5 s and under 30 lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
