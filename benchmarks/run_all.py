"""Run every benchmark in turn; each prints its figure beside its baseline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in (
    "cold_start.py",
    "warm_pool.py",
    "roundtrip.py",
    "throughput.py",
    "magics_and_policy.py",
    "rest_api.py",
    "previews.py",
    "idle_capacity.py",
    "lab_first_result.py",
    "egress_start.py",
    "inbound_filter.py",
    "starvation.py",
    "git_clone.py",
    "disk_write.py",
    "first_result_and_completion.py",
    "server_shutdown.py",
):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], cwd=HERE, check=True)
