"""The supervisor of one command the agent runs: `python3 -I -S reaper.py end|keep -- ARGV...`.

It is a child subreaper (prctl PR_SET_CHILD_SUBREAPER: the agent sets it in the forked child before
the exec of this script, which keeps it, so this process never pays for importing ctypes), so whatever the command starts
stays below it in the process tree, however it detaches: `setsid`, a double fork and `nohup ... &`
all leave their processes orphaned, and orphans are handed to the nearest subreaper above them,
this one, instead of init. The agent then ends a command by killing this process's whole subtree
(processes.kill_tree), which nothing below can leave. Should the command kill this supervisor, its
processes are handed to the agent, itself a subreaper, which kills what it did not start.

Mode `end` (exec): when the command itself exits, everything it left running is killed. Mode
`keep` (background session commands): they may keep running; the supervisor reaps them and exits
with the command's status once the last one has gone.

Stdlib only, no site packages (-I -S): the sandbox can write neither into what this imports.
"""

from __future__ import annotations

import os
import signal
import sys

# Imported for the type checker only: the supervisor starts with as little as it can.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def proc_stats() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, fields of /proc/PID/stat after the command name: state, parent pid, group, session, ...)
    of every process still listed. The name is cut at the last ")": a process may put any text in it."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        yield int(name), stat[stat.rfind(b")") + 2 :].split()


def children_of(parent: int) -> list[int]:
    """Every process below `parent`, from /proc (a snapshot; callers repeat until it is empty)."""
    parents: dict[int, list[int]] = {}
    for pid, fields in proc_stats():
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(pid)
    found, queue = [], [parent]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_below(parent: int, rounds: int = 200) -> None:
    """SIGKILL everything below `parent` until nothing is left (a forking process's new children
    are found on the next round; the pids limit bounds how many there can be)."""
    for _ in range(rounds):
        found = children_of(parent)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reap_ready()


def reap_ready() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[1] not in ("end", "keep") or sys.argv[2] != "--":
        sys.stderr.write("usage: reaper.py end|keep -- ARGV...\n")
        sys.exit(2)
    mode, argv = sys.argv[1], sys.argv[3:]
    command = os.fork()
    if command == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(f"{argv[0]}: {exc.strerror}\n")
        os._exit(127)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(command, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    status = None
    while True:
        try:
            pid, raw = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == command:
            status = raw
            if mode == "end":
                kill_below(os.getpid())
    if status is None:
        os._exit(1)
    if os.WIFSIGNALED(status):
        # As a shell reports it: the supervisor dying of a signal means it was killed itself.
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
