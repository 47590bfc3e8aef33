"""The sandbox kernel with one change, for benchmarks/inbound_filter.py only: SIGUSR1 switches the
inbound filter off and on, so that both are measured in one kernel process against one sandbox.
Never a kernelspec anyone uses: with the filter off, the sandbox reaches the browser unfiltered."""

from __future__ import annotations

import signal
import sys
from typing import Any

from jupyter_sandbox.kernel import inbound
from jupyter_sandbox.kernel.app import main

filtering = [True]
_frames = inbound.InboundFilter.frames


def frames(self: inbound.InboundFilter, channel: str, body: list[bytes]) -> list[bytes] | None:
    return _frames(self, channel, body) if filtering[0] else body


def toggle(*_: Any) -> None:
    filtering[0] = not filtering[0]


if __name__ == "__main__":
    inbound.InboundFilter.frames = frames  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, toggle)
    sys.argv[0] = "jupyter-sandbox-kernel"
    main()
