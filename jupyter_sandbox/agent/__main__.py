"""Entry point of the agent inside the container.

The kernel is started before tornado is even imported: a cold sandbox's first cell waits on the
kernel, not on the agent.
"""

from __future__ import annotations

import json
import logging
import os
import sys

CONFIG_PATH = os.environ.get("JUPYTER_SANDBOX_AGENT_CONFIG", "/opt/jupyter-sandbox/agent.json")


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s agent %(levelname)s %(message)s")
    with open(CONFIG_PATH) as handle:
        config = json.load(handle)

    import threading

    from .kernel_runner import KernelRunner
    from .seed import seed

    # Beside the kernel's start, not before it: each folder appears whole (seed.py), and a program that
    # looks before it does makes its own.
    threading.Thread(target=seed, args=(config.get("seed") or [],), name="seed", daemon=True).start()

    pending_events: list[dict] = []
    runner = KernelRunner(
        key=config["kernel"]["key"],
        ports=config["kernel"]["ports"],
        cwd=config["kernel"].get("cwd") or os.path.expanduser("~"),
        runtime_dir=config.get("runtime_dir", "/tmp/.jupyter-sandbox"),
        on_event=pending_events.append,  # replaced once the event loop runs
    )
    if config.get("autostart_kernel", True):
        runner.start()

    import asyncio

    from .server import MAX_BODY_SIZE, EventLog, make_app

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        events = EventLog()
        runner.on_event = lambda event: loop.call_soon_threadsafe(events.add, event)
        for event in pending_events:
            events.add(event)
        app = make_app(config["token"], runner, events)
        app.listen(int(config["port"]), address="0.0.0.0", max_body_size=MAX_BODY_SIZE)
        logging.getLogger("jupyter_sandbox_agent").info("agent listening on port %s", config["port"])
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
