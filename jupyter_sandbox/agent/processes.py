"""Running commands inside the sandbox, as the sandbox user, with output streamed as it comes.

Each command runs under its own supervisor (reaper.py), a child subreaper: whatever the command
starts stays below that supervisor, however it detaches (`setsid`, double forks, `nohup ... &`), and
a timeout or a kill ends the supervisor's whole subtree. The agent is a subreaper too, so a command
that kills its own supervisor hands its processes to the agent, which kills them (`sweep`).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Callable

from . import environment
from .reaper import proc_stats

Emit = Callable[[dict], Awaitable[None]]
READ_CHUNK = 64 * 1024
PR_SET_CHILD_SUBREAPER = 36
REAPER = str(Path(__file__).with_name("reaper.py"))

# Children the agent itself started (supervisors, the kernel, terminals, archivers), by pid. A
# process of the agent's that is not among them was handed to it as an orphan.
OWN: set[int] = set()
# Supervisors the agent is killing on purpose: their death is no sign of a command escaping.
_ENDING: set[int] = set()


def _prctl() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    function.restype = ctypes.c_int
    return function


# Looked up once here: the forked child of a supervisor only calls it (no import, no lookup).
PRCTL = _prctl()


def become_subreaper() -> bool:
    """Mark the calling process a child subreaper: orphans below it come to it, not to init."""
    return PRCTL is not None and PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def supervised(argv: list[str], mode: str = "end") -> list[str]:
    """argv run under a supervisor (mode 'end': its leftovers die with it; 'keep': they may stay).
    Start it with `preexec_fn=supervisor_preexec`, which makes it a subreaper."""
    return [sys.executable, "-I", "-S", REAPER, mode, "--", *argv]


def supervisor_preexec() -> None:
    """In the forked child, before the exec of the supervisor: the subreaper mark, which execve
    keeps. Without it the supervisor must not run the command (its orphans would escape)."""
    if not become_subreaper():
        os._exit(126)


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every process that has not exited, from /proc."""
    table: dict[int, tuple[int, int]] = {}
    for pid, fields in proc_stats():
        if len(fields) > 3 and fields[0] not in (b"Z", b"X"):
            table[pid] = (int(fields[1]), int(fields[3]))
    return table


def _below(table: dict[int, tuple[int, int]], roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    queue = list(roots)
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


def _kill(pids: set[int]) -> None:
    _kill_with(pids, signal.SIGKILL)


def _kill_with(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_tree(root: int, rounds: int = 200) -> None:
    """SIGKILL everything below `root`, round after round until nothing is left, then `root`.
    Works on a stopped supervisor too: the agent does the killing, not the supervisor."""
    _ENDING.add(root)
    # Stopped first, so it reports the kill (-9) rather than its command's end.
    _kill_with({root}, signal.SIGSTOP)
    for _ in range(rounds):
        below = _below(_table(), {root})
        if not below:
            break
        _kill(below)
    _kill({root})


def kill_session(leader: int) -> None:
    """SIGKILL a session's leader, every process of its session (jobs of an interactive shell have
    process groups of their own) and everything below them, round after round."""
    for _ in range(50):
        table = _table()
        members = {pid for pid, (_, session) in table.items() if session == leader} | ({leader} & set(table))
        targets = members | _below(table, members)
        if not targets:
            return
        _kill(targets)


def sweep() -> int:
    """Kill the orphans handed to the agent that belong to no one it started: what a command left
    when it killed its own supervisor. Orphans of the kernel or a terminal keep their session
    (a process can only leave its session for a new one of its own), so they are left alone."""
    me = os.getpid()
    killed = 0
    for _ in range(50):
        table = _table()
        strays = {
            pid for pid, (parent, session) in table.items() if parent == me and pid not in OWN and session not in OWN
        }
        if not strays:
            break
        targets = strays | _below(table, strays)
        _kill(targets)
        killed += len(targets)
        reap_strays(force=True)
    return killed


_zombies_seen: set[int] = set()


def reap_strays(force: bool = False) -> None:
    """Reap orphans handed to the agent that have exited. The agent's own children are reaped by
    whoever waits for them (asyncio, the kernel runner) at once; a zombie of the agent's that is
    still there a round later is an orphan nobody waits for."""
    global _zombies_seen
    me = os.getpid()
    zombies = set()
    for pid, fields in proc_stats():
        if pid not in OWN and len(fields) > 1 and fields[0] == b"Z" and int(fields[1]) == me:
            zombies.add(pid)
    for pid in zombies if force else zombies & _zombies_seen:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    _zombies_seen = zombies


async def housekeeping(interval: float = 1.0) -> None:
    """Forever: reap exited orphans, so processes handed to the agent do not linger as zombies."""
    while True:
        await asyncio.sleep(interval)
        try:
            reap_strays()
        except OSError:
            pass


async def exited(process: asyncio.subprocess.Process) -> int:
    """The process's exit code as soon as it exits, whether or not its pipes are still open
    (asyncio's wait() also waits for them, which an escaped child can hold forever)."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while process.returncode is None:
            if pidfd is None:
                await asyncio.sleep(0.05)
                continue
            ready: asyncio.Future[None] = loop.create_future()

            def readable(ready: asyncio.Future[None] = ready) -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(pidfd, readable)
            try:
                await asyncio.wait_for(ready, 1.0)
            except asyncio.TimeoutError:
                pass
            finally:
                loop.remove_reader(pidfd)
            # The fd says it exited; asyncio's watcher sets the code a moment later.
            for _ in range(100):
                if process.returncode is not None:
                    break
                await asyncio.sleep(0.001 if _ < 10 else 0.01)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return process.returncode


async def supervise(process: asyncio.subprocess.Process) -> int:
    """Wait for a supervised command; if something other than the agent killed its supervisor,
    kill what the command left behind."""
    OWN.add(process.pid)
    try:
        code = await exited(process)
    finally:
        OWN.discard(process.pid)
        ending = process.pid in _ENDING
        _ENDING.discard(process.pid)
    # A supervisor reports a command's death by a signal as 128+N, as a shell does: a negative
    # code means the supervisor itself was killed, and not by the agent: the command got out.
    if code < 0 and not ending:
        sweep()
    return code


def kill_group(process: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def run_command(
    command: str | list[str],
    cwd: str,
    env: dict[str, str],
    timeout: float | None,
    emit: Emit,
    stdin_data: bytes | None = None,
    own: bool = False,
) -> dict:
    """Run a shell command string or an argv list; emit output chunks; return the exit record.

    A command of the sandbox's gets the sandbox's environment (environment.user()); one the agent
    runs for itself (`own`, e.g. git) gets the agent's, whose PATH only holds folders the sandbox
    user cannot write. A timeout or a cancel ends everything the command started, detached or
    not; so does the command's own end (what it left running goes with it).
    """
    variables = {**(dict(os.environ) if own else environment.user()), **env}
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    process = await asyncio.create_subprocess_exec(
        *supervised(argv, "end"),
        preexec_fn=supervisor_preexec,
        cwd=cwd,
        env=variables,
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    # Both were asked for as pipes above.
    assert process.stdout is not None and process.stderr is not None
    OWN.add(process.pid)
    waited = asyncio.ensure_future(supervise(process))
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
            asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"), asyncio.shield(waited)),
            timeout=timeout,
        )
    except asyncio.TimeoutError:
        timed_out = True
        kill_tree(process.pid)
    except asyncio.CancelledError:
        kill_tree(process.pid)
        raise
    exit_code = await waited
    try:
        await asyncio.wait_for(process.wait(), 5)  # the pipes are closed by now: leave nothing pending
    except asyncio.TimeoutError:
        pass
    return {"exit_code": exit_code, "timed_out": timed_out, "duration": time.monotonic() - started}
