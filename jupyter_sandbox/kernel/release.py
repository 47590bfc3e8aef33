"""Releasing a kernel's sandbox in a process of its own.

Jupyter gives a kernel a few seconds after its shutdown reply and then kills it. Stopping or removing
a container can take longer than that when many kernels shut down at once (a server exiting), and a
kernel killed halfway would leave a container or a volume behind. So the kernel hands the work to
this small process, in a session of its own, which nothing kills along with the kernel.

It is started first thing in the kernel's shutdown, and works once the kernel's process has ended: a
kernel shut down while its sandbox was still being made (many kernels starting and a server exiting)
is killed by Jupyter before that ends, and only then is there nothing more of it to come.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

from traitlets.config import Config

from ..sandbox import binding
from ..sandbox.docker_backend import SandboxError
from ..sandbox.manager import SandboxManager

CONFIG_ENV = "JUPYTER_SANDBOX_RELEASE_CONFIG"
STARTING_FLAG = "--while-starting"
# How long the release waits for its kernel's process to end (Jupyter kills a kernel a few seconds
# after its shutdown reply); what is there is released after that in any case.
KERNEL_END_SECONDS = 60.0
# A kernel that ended while its sandbox was being made may have left a Docker call under way, whose
# container appears a moment later: it is looked for once more after this long.
LATE_CREATE_SECONDS = 3.0


def spawn(manager: SandboxManager, kernel_id: str, starting: bool = False) -> subprocess.Popen:
    """Start the release of `kernel_id`'s sandbox with the manager's configuration; do not wait.
    `starting`: the kernel's sandbox is still being made."""
    settings = {
        key: value
        for key, value in manager.config.get("SandboxManager", {}).items()
        if isinstance(value, (str, int, float, bool, list))
    }
    settings.setdefault("owner", manager.owner)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_sandbox.kernel.release",
            binding.check_kernel_id(kernel_id),
            *([STARTING_FLAG] if starting else []),
        ],
        env={**os.environ, CONFIG_ENV: json.dumps({"SandboxManager": settings})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def wait_for_the_kernel_to_end(kernel_id: str, timeout: float = KERNEL_END_SECONDS) -> bool:
    """Until the kernel's process no longer holds its lease; False if it still does after `timeout`."""
    deadline = time.monotonic() + timeout
    while binding.kernel_alive(kernel_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[SandboxRelease %(levelname)s] %(message)s")
    if len(argv) not in (2, 3) or argv[2:] not in ([], [STARTING_FLAG]):
        print(f"usage: python -m jupyter_sandbox.kernel.release KERNEL_ID [{STARTING_FLAG}]", file=sys.stderr)
        return 2
    kernel_id = binding.check_kernel_id(argv[1])
    starting = argv[2:] == [STARTING_FLAG]
    manager = SandboxManager(config=Config(json.loads(os.environ.get(CONFIG_ENV) or "{}")))
    if not wait_for_the_kernel_to_end(kernel_id):
        logging.warning("kernel %s still runs after %.0f s; releasing its sandbox now", kernel_id, KERNEL_END_SECONDS)
    status = 0
    for attempt in range(2 if starting else 1):
        if attempt:
            time.sleep(LATE_CREATE_SECONDS)
        for sandbox in manager.list(kernel_id=kernel_id):
            try:
                manager.release(sandbox)
            except SandboxError as exc:
                logging.error("could not release sandbox %s of kernel %s: %s", sandbox.id, kernel_id, exc)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
