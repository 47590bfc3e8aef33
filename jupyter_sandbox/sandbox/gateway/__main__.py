"""`python -m jupyter_sandbox.sandbox.gateway SETTINGS_FILE`: the gateway process (started by
control.ensure_running, one per sandbox network on a machine)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from . import state
from .proxy import Gateway
from .settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gateway %(levelname)s %(message)s")
    settings = Settings.from_json(Path(sys.argv[1]).read_text())
    gateway = Gateway(settings)
    gateway.bind()
    signal.signal(signal.SIGTERM, lambda *_: gateway.stop())
    state.write_record(
        settings.network_name,
        {"pid": os.getpid(), "address": settings.address, "port": settings.port, "digest": settings.digest},
    )
    gateway.serve()


if __name__ == "__main__":
    main()
