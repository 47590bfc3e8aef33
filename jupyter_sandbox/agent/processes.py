"""Running commands inside the sandbox, as the sandbox user, with output streamed as it comes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Awaitable, Callable

from . import environment

Emit = Callable[[dict], Awaitable[None]]
READ_CHUNK = 64 * 1024


def kill_group(process: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def run_command(command: str | list[str], cwd: str, env: dict[str, str], timeout: float | None,
                      emit: Emit, stdin_data: bytes | None = None, own: bool = False) -> dict:
    """Run a shell command string or an argv list; emit output chunks; return the exit record.

    A command of the sandbox's gets the sandbox's environment (environment.user()); one the agent
    runs for itself (`own`, e.g. git) gets the agent's, whose PATH only holds folders the sandbox
    user cannot write. The command gets its own process group: a timeout or a cancel kills
    everything it started.
    """
    variables = {**(dict(os.environ) if own else environment.user()), **env}
    kwargs = dict(cwd=cwd, env=variables, stdin=asyncio.subprocess.PIPE if stdin_data is not None
                  else asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                  stderr=asyncio.subprocess.PIPE, start_new_session=True)
    if isinstance(command, str):
        process = await asyncio.create_subprocess_exec("/bin/sh", "-c", command, **kwargs)
    else:
        process = await asyncio.create_subprocess_exec(*command, **kwargs)
    started = time.monotonic()

    async def pump(stream: asyncio.StreamReader, name: str) -> None:
        while True:
            chunk = await stream.read(READ_CHUNK)
            if not chunk:
                return
            await emit({"stream": name, "text": chunk.decode("utf-8", "replace")})

    if stdin_data is not None and process.stdin is not None:
        process.stdin.write(stdin_data)
        process.stdin.close()
    timed_out = False
    try:
        await asyncio.wait_for(
            asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"), process.wait()),
            timeout=timeout)
    except asyncio.TimeoutError:
        timed_out = True
        kill_group(process)
    except asyncio.CancelledError:
        kill_group(process)
        raise
    exit_code = await process.wait()
    # Whatever the command left running in its group goes with it.
    kill_group(process)
    return {"exit_code": exit_code, "timed_out": timed_out, "duration": time.monotonic() - started}
