"""`jupyter sandbox start|stop|exec|shell ID`, `doctor` and the `list` table: the common actions on one
sandbox from a shell, through the same operations layer as the REST API and the magics."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from .sandbox import binding
from .sandbox.manager import Sandbox
from .sandbox.operations import SandboxOperations

LIFECYCLE = ("start", "stop", "exec", "shell", "doctor")
SHELL_TIMEOUT = 24 * 3600  # an interactive shell may stay open for a working day


def add_parsers(commands: Any) -> None:
    start = commands.add_parser("start", help="start a stopped sandbox (its files are where they were)")
    start.add_argument("id", metavar="ID")
    stop = commands.add_parser("stop", help="stop a sandbox (files kept; `start` or the notebook's next cell resumes)")
    stop.add_argument("id", metavar="ID")
    run = commands.add_parser(
        "exec",
        help="run a command in a sandbox, its output here: jupyter sandbox exec ID [--cwd DIR] -- COMMAND...",
    )
    run.add_argument("id", metavar="ID")
    run.add_argument("--cwd", default=None, help="folder in the sandbox to run in (default: /home/sandbox)")
    run.add_argument("--timeout", type=float, default=None, help="kill the command after this many seconds")
    # Options first, then `--`: what follows is the command's own (its flags are not ours).
    run.add_argument("argv", nargs="*", metavar="COMMAND", help="a shell line, or words after --")
    shell = commands.add_parser("shell", help="an interactive shell in a running sandbox, as its user")
    shell.add_argument("id", metavar="ID")
    commands.add_parser("doctor", help="check the engine, image, network, egress enforcement, Node and extension")


def split_exec(given: list[str]) -> tuple[list[str], list[str]]:
    """`exec ID [options] -- COMMAND...`: the words after `--` are the command's, kept from argparse
    (whose subcommands mishandle a `--`)."""
    if given[:1] == ["exec"] and "--" in given:
        cut = given.index("--")
        return given[:cut], given[cut + 1 :]
    return given, []


def _where(sandbox: Sandbox) -> str:
    """The notebook a sandbox belongs to, as a person names it (relative to here when inside)."""
    if sandbox.pool:
        return "(warm pool)"
    if not sandbox.workspace:
        return "(no notebook)"
    record = binding.notebook_record(sandbox.workspace)
    if not record:
        return "(a notebook)"
    path = str(record["path"])
    here = os.getcwd()
    shown = os.path.relpath(path, here) if path.startswith(here + os.sep) else path
    home = os.path.expanduser("~")
    if shown.startswith(home + os.sep):
        shown = "~" + shown[len(home) :]
    return shown + (" (deleted)" if record.get("detached") else "")


def print_table(sandboxes: Sequence[Sandbox], every_owner: bool = False) -> None:
    """Columns as wide as their widest cell, so nothing is cut and nothing runs into its neighbour."""
    head = ["ID", "STATE", "NOTEBOOK", "KERNEL", "IMAGE"] + (["OWNER"] if every_owner else [])
    rows = [
        [s.id, s.state, _where(s), s.kernel_id[:8] if s.kernel_id else "-", s.image]
        + ([s.owner] if every_owner else [])
        for s in sandboxes
    ]
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _fail(message: str) -> int:
    print(f"jupyter sandbox: {message}", file=sys.stderr)
    return 1


def lifecycle(args: argparse.Namespace, operations: SandboxOperations) -> int:
    if args.command == "doctor":
        from . import doctor

        return doctor.run(operations.manager)
    if args.command == "start":
        started = asyncio.run(operations.start(args.id))
        print(f"started {started['id']}")
        return 0
    if args.command == "stop":
        asyncio.run(operations.stop(args.id))
        print(f"stopped {args.id} (its files are kept; `jupyter sandbox start {args.id}` resumes it)")
        return 0
    sandbox = asyncio.run(operations.sandbox(args.id, running=False))
    if not sandbox.running:
        return _fail(f"sandbox {args.id} is {sandbox.state}; start it first: jupyter sandbox start {args.id}")
    if args.command == "exec":
        return _exec(args, operations, sandbox)
    return _shell(sandbox)


def _exec(args: argparse.Namespace, operations: SandboxOperations, sandbox: Sandbox) -> int:
    words = [*args.argv, *getattr(args, "trailing", [])]
    if not words:
        print("jupyter sandbox exec: give a command, e.g. jupyter sandbox exec ID -- ls -la", file=sys.stderr)
        return 2
    # One word is a shell line as typed ("ls | wc -l"); several are argv words, quoted back into one.
    command = words[0] if len(words) == 1 else shlex.join(words)

    def write(stream: str, text: str) -> None:
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write(text)
        out.flush()

    record = asyncio.run(
        operations.exec_streaming(sandbox, command, on_output=write, timeout=args.timeout, cwd=args.cwd)
    )
    if record.get("timed_out"):
        return _fail(f"the command ran longer than {args.timeout:g} s and was killed")
    return int(record["exit_code"])


def _shell(sandbox: Sandbox) -> int:
    """Docker's own client gives the terminal (raw mode, resizes, signals); it runs as the container's
    user in its home, under the same limits and network as everything else in the sandbox."""
    docker = shutil.which("docker")
    if not docker:
        return _fail("the docker command is not installed; use the sidebar's terminal or `jupyter sandbox exec`")
    tty = ["-it"] if sys.stdin.isatty() else ["-i"]
    argv = [docker, "exec", *tty, "--workdir", "/home/sandbox", "--", sandbox.container_id, "bash", "-l"]
    try:
        return subprocess.run(argv, timeout=SHELL_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        return _fail("the shell was closed after a day")
