"""Releasing a kernel's sandbox through the sandbox service, in a process of its own (hub mode).

As kernel/release.py does for single-machine mode: Jupyter kills a kernel a few seconds after its
shutdown reply, and the service's stop or removal may take longer; this process, in a session of its
own, asks the service and waits for its answer.
"""

from __future__ import annotations

import logging
import sys

from ..sandbox import binding, errors
from .api import ServiceAPI
from .settings import service_token, service_url


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[SandboxRelease %(levelname)s] %(message)s")
    if len(argv) != 2:
        print("usage: python -m jupyter_sandbox.remote.release KERNEL_ID", file=sys.stderr)
        return 2
    kernel_id = binding.check_kernel_id(argv[1])
    if not service_url():
        logging.error("no sandbox service is configured (JUPYTER_SANDBOX_SERVICE_URL)")
        return 2
    api = ServiceAPI(service_url(), service_token())
    try:
        api.release(kernel_id)
    except errors.SandboxOperationError as exc:
        logging.error("could not release the sandbox of kernel %s: %s", kernel_id, exc.message)
        return 1
    finally:
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
