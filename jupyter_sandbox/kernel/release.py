"""Releasing a kernel's sandbox in a process of its own.

Jupyter gives a kernel a few seconds after its shutdown reply and then kills it. Stopping or removing
a container can take longer than that when many kernels shut down at once (a server exiting), and a
kernel killed halfway would leave a container or a volume behind. So the kernel hands the work to
this small process, in a session of its own, which nothing kills along with the kernel.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from traitlets.config import Config

from ..sandbox import binding
from ..sandbox.docker_backend import SandboxError
from ..sandbox.manager import SandboxManager

CONFIG_ENV = "JUPYTER_SANDBOX_RELEASE_CONFIG"


def spawn(manager: SandboxManager, kernel_id: str) -> subprocess.Popen:
    """Start the release of `kernel_id`'s sandbox with the manager's configuration; do not wait."""
    settings = {
        key: value
        for key, value in manager.config.get("SandboxManager", {}).items()
        if isinstance(value, (str, int, float, bool, list))
    }
    settings.setdefault("owner", manager.owner)
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_sandbox.kernel.release", binding.check_kernel_id(kernel_id)],
        env={**os.environ, CONFIG_ENV: json.dumps({"SandboxManager": settings})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[SandboxRelease %(levelname)s] %(message)s")
    if len(argv) != 2:
        print("usage: python -m jupyter_sandbox.kernel.release KERNEL_ID", file=sys.stderr)
        return 2
    kernel_id = binding.check_kernel_id(argv[1])
    manager = SandboxManager(config=Config(json.loads(os.environ.get(CONFIG_ENV) or "{}")))
    status = 0
    for sandbox in manager.list(kernel_id=kernel_id):
        try:
            manager.release(sandbox)
        except SandboxError as exc:
            logging.error("could not release sandbox %s of kernel %s: %s", sandbox.id, kernel_id, exc)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
