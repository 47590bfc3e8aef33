"""Entry point of the agent inside the container.

The agent is the container's command, and its first act is the start gate: it reads one line from
its stdin, which only the host can write (through the Docker API), and the host writes it only once
the sandbox's egress policy is in force. Until then nothing runs but this interpreter (which the host
judged closed to the sandbox user) and the standard library; nothing of the sandbox's files is read.

After the gate, the kernel is started before tornado is even imported: a cold sandbox's first cell
waits on the kernel, not on the agent.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

CONFIG_PATH = "/opt/jupyter-sandbox/agent.json"
GATE_LINE = b"open\n"


def wait_at_gate() -> None:
    """Block until the host says the policy holds; end the container if it never will."""
    line = sys.stdin.buffer.readline()
    if line != GATE_LINE:
        sys.stderr.write(
            "agent: the start gate was not opened (the host did not confirm the sandbox's "
            "egress policy); not starting\n"
        )
        sys.exit(3)
    # Nothing else may ever speak on this stdin.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def main() -> None:
    wait_at_gate()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s agent %(levelname)s %(message)s")
    with open(CONFIG_PATH) as handle:
        config = json.load(handle)

    import threading

    from . import environment

    environment.setup(config)

    from . import processes
    from .kernel_runner import KernelRunner
    from .seed import seed

    # Beside the kernel's start, not before it: each folder appears whole (seed.py), and a program that
    # looks before it does makes its own.
    threading.Thread(target=seed, args=(config.get("seed") or [],), name="seed", daemon=True).start()

    # Before the first child: whatever any command detaches stays below the agent (processes.py).
    if not processes.become_subreaper():
        logging.getLogger("jupyter_sandbox_agent").warning("could not become a child subreaper")

    pending_events: list[dict] = []
    runner = KernelRunner(
        key=config["kernel"]["key"],
        ports=config["kernel"]["ports"],
        cwd=config["kernel"].get("cwd") or os.path.expanduser("~"),
        runtime_dir=config.get("runtime_dir", "/tmp/.jupyter-sandbox"),
        on_event=pending_events.append,  # replaced once the event loop runs
        argv=config["kernel"].get("argv") or None,
    )
    if config.get("autostart_kernel", True):
        runner.start()

    import asyncio

    from .server import MAX_BODY_SIZE, EventLog, make_app

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        events = EventLog()

        def on_event(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(events.add, event)

        runner.on_event = on_event
        for event in pending_events:
            events.add(event)
        app = make_app(config["token"], runner, events)
        # Held by the app, so that the task lives as long as the agent serves.
        app.settings["housekeeping"] = asyncio.ensure_future(processes.housekeeping())
        app.listen(int(config["port"]), address="0.0.0.0", max_body_size=MAX_BODY_SIZE)
        logging.getLogger("jupyter_sandbox_agent").info("agent listening on port %s", config["port"])
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
