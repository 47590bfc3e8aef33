"""The `%sandbox` magics. They run in the proxy kernel on the host, never inside the sandbox.

A `%sandbox` line is as untrusted as any code in the cell: every request is checked against the
operator's limits, and a refused request says why and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import posixpath
import shlex
import stat
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, TypeVar

from ..sandbox import preview as preview_tokens
from ..sandbox.agent_client import Cancelled, domain_error
from ..sandbox.agent_http import AgentError
from ..sandbox.disk import describe as describe_disk
from ..sandbox.docker_backend import SandboxError
from ..sandbox.errors import SandboxOperationError
from ..sandbox.manager import Sandbox, SandboxManager
from ..sandbox.operations import SandboxOperations, preview_link
from ..sandbox.spec import SpecError, limit_size, parse_size, readable_size
from . import downloads
from .access import LocalAccess, SandboxAccess
from .settings import SandboxKernel

T = TypeVar("T")
Write = Callable[[str, str], None]
# Set by the server extension in the Jupyter server's environment, which kernels inherit.
PREVIEW_TEMPLATE_ENV = "JUPYTER_SANDBOX_PREVIEW_TEMPLATE"
# The path form on the server's own address (set only when the server serves it): a URL for scripts.
PREVIEW_SCRIPT_TEMPLATE_ENV = "JUPYTER_SANDBOX_PREVIEW_SCRIPT_TEMPLATE"

SUBCOMMANDS = (
    "status",
    "config",
    "network",
    "secret",
    "exec",
    "ls",
    "upload",
    "download",
    "preview",
    "ssh",
    "pty",
    "desktop",
    "restart",
    "stop",
    "delete",
    "help",
)
OPTIONS = {
    "status": ["--json", "--help"],
    "config": ["--cpu", "--memory", "--pids", "--disk", "--cell-timeout", "--env", "--image", "--help"],
    "network": ["--help"],
    "secret": ["--host", "--help"],
    "exec": ["--timeout", "--cwd", "--help"],
    "ls": ["--help"],
    "upload": ["--to", "--help"],
    "download": ["--force", "--help"],
    "preview": ["--expires", "--help"],
    "ssh": ["--expires", "--revoke", "--help"],
    "pty": [
        "create",
        "list",
        "send",
        "wait",
        "kill",
        "--id",
        "--cols",
        "--rows",
        "--cwd",
        "--env",
        "--for",
        "--timeout",
    ],
    "desktop": ["--size", "--help"],
    "restart": ["--hard", "--help"],
    "stop": ["--help"],
    "delete": ["--yes", "--help"],
    "help": [],
}

HELP = """%sandbox: control this notebook's sandbox (handled on the host, never inside the sandbox)

  %sandbox [status] [--json]     id, image, state, limits, live usage, network, open ports
  %sandbox config [--cpu N] [--memory SIZE] [--pids N] [--disk SIZE] [--cell-timeout SECONDS]
                  [--env KEY=VALUE ...] [--image IMAGE]
                                 change limits: CPU and memory live, the rest by a clean restart
  %sandbox network [internet | none | allow DOMAIN|CIDR... | log]
                                 show or change (live) what the sandbox may reach; where it went
  %sandbox secret set NAME --host HOST | list | delete NAME
                                 a secret the gateway adds for HOST; the sandbox sees a placeholder
  %sandbox exec [--cwd DIR] COMMAND
                                 run a shell command in the sandbox, output streamed into the cell
  %%sandbox exec                 the rest of the cell is a shell script run in the sandbox
  %sandbox ls [PATH]             list a folder in the sandbox (default: /home/sandbox)
  %sandbox upload HOST_PATH... [--to SANDBOX_FOLDER]   (or: upload FILE SANDBOX_PATH)
  %sandbox download SANDBOX_PATH [HOST_PATH] [--force]
                                 copy files; uploads come from the notebook's folder, downloads go
                                 into its sandbox-downloads/<sandbox id>/ folder
  %sandbox preview PORT [--expires 2h]
                                 a link (and a curl line) to a web server listening on PORT in the sandbox
  %sandbox ssh [--expires 1h] [--revoke]
                                 a token and the `ssh` command line to log into the sandbox
  %sandbox pty create|list|send|wait|kill ...
                                 terminals in the sandbox that outlive their connection, by id
                                 (`%sandbox pty --help` for the details)
  %sandbox desktop [start | stop | status] [--size 1280x800]
                                 the virtual desktop (desktop image) and a link to its live view
  %sandbox restart [--hard]      restart the Python process (files kept); --hard: a fresh container
  %sandbox stop                  stop the sandbox; the next cell starts it again
  %sandbox delete --yes          delete the sandbox and its files; the next cell gets a fresh one
  %sandbox help                  this text; `%sandbox SUBCOMMAND --help` for details
"""


# What only single-machine mode has: the SSH gateway runs in the user's Jupyter server, which in hub
# mode reaches no engine (and the sandbox service runs no gateway).
ENGINE_ONLY = frozenset({"ssh"})
HUB_REFUSAL = {
    "ssh": "%sandbox ssh is not available when sandboxes come from the sandbox service (hub mode): the "
    "service runs no SSH gateway. Use %sandbox pty (terminals by id), %sandbox exec, or a terminal "
    "from the sandbox sidebar instead"
}

# A folder upload goes file by file; past this many, an archive is the better way.
MAX_UPLOAD_FILES = 10_000


class MagicUsageError(Exception):
    """Bad arguments: the message includes the usage line."""


_operations: dict[int, SandboxOperations] = {}


def operations_for(manager: SandboxManager) -> SandboxOperations:
    """The kernel's operations layer over its manager (one per manager, made on first use)."""
    ops = _operations.get(id(manager))
    if ops is None or ops.manager is not manager:
        ops = _operations[id(manager)] = SandboxOperations(manager, config=manager.config, log=manager.log)
    return ops


def _run(awaitable: Awaitable[T]) -> T:
    """Run one operation to its end from the magic's thread (which has no event loop of its own)."""

    async def run() -> T:
        return await awaitable

    return asyncio.run(run())


class MagicExit(Exception):
    """--help was asked for and printed."""


@dataclass
class MagicResult:
    error: str | None = None
    reconnect: Sandbox | None = None
    stopped: bool = False
    deleted: bool = False
    cell_timeout: float | None = None


@dataclass
class MagicContext:
    # This machine's manager; None in hub mode, where the kernel reaches no engine (`access` is the
    # sandbox service's API then).
    manager: SandboxManager | None
    settings: SandboxKernel
    sandbox: Sandbox | None
    cell_timeout: float
    write: Write
    cancel: threading.Event = field(default_factory=threading.Event)
    stop_watching: Callable[[], None] = lambda: None
    delete: Callable[[], None] = lambda: None
    # Asks the front end for a value in a password field (None: it cannot, or no answer came).
    ask_secret: Callable[[str], str | None] = lambda prompt: None
    access_to: SandboxAccess | None = None

    @property
    def access(self) -> SandboxAccess:
        """The one way to the sandbox's operations (local, or the sandbox service's API)."""
        if self.access_to is None:
            self.access_to = LocalAccess(self.engine)
        return self.access_to

    @property
    def engine(self) -> SandboxManager:
        """This machine's manager, for the magics that only single-machine mode has."""
        if self.manager is None:
            raise SandboxOperationError("this command is not available through the sandbox service (hub mode)")
        return self.manager


class _Parser(argparse.ArgumentParser):
    def __init__(self, write: Write, **kwargs: Any) -> None:
        super().__init__(add_help=True, allow_abbrev=False, **kwargs)
        self._write = write

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            self._write("stdout", message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise MagicUsageError(message)
        raise MagicExit()

    def error(self, message: str) -> NoReturn:
        raise MagicUsageError(f"{self.format_usage()}{self.prog}: error: {message}")


def _number(text: str, convert: Callable[[str], Any], expected: str, refused: str, zero_allowed: bool) -> Any:
    """An argparse type: a finite number above zero (or zero too), with messages a person reads."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0 or (value == 0 and not zero_allowed):
        raise argparse.ArgumentTypeError(f"{refused}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, float, "a number", "must be a positive number", zero_allowed=False)


def _non_negative_float(text: str) -> float:
    return _number(
        text, float, "a number of seconds", "must be 0 (no limit) or a positive number of seconds", zero_allowed=True
    )


def _positive_int(text: str) -> int:
    return _number(text, int, "a whole number", "must be more than zero", zero_allowed=False)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s" if minutes else f"{secs}s"


class SandboxMagics:
    """Parses and runs one `%sandbox` line or `%%sandbox` cell."""

    def run(self, text: str, body: str | None, ctx: MagicContext) -> MagicResult:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            return MagicResult(error=f"%sandbox: cannot parse the line: {exc}")
        command = words[0] if words else "status"
        if command in ("-h", "--help"):
            command = "help"
        if command not in SUBCOMMANDS:
            return MagicResult(
                error=f"%sandbox: unknown subcommand {command!r}; "
                f"choose from {', '.join(SUBCOMMANDS)} (see %sandbox help)"
            )
        if body is not None and command != "exec":
            return MagicResult(
                error="%%sandbox only takes `exec` (the cell is a shell script); use %sandbox lines for the rest"
            )
        if ctx.manager is None and command in ENGINE_ONLY:
            return MagicResult(error=HUB_REFUSAL[command])
        try:
            if command == "exec":
                rest = text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else ""
                return self.exec(rest, body, ctx)
            return getattr(self, command.replace("-", "_"))(words[1:], ctx)
        except MagicExit:
            return MagicResult()
        except MagicUsageError as exc:
            return MagicResult(error=str(exc).strip())
        except AgentError as exc:
            # What the agent refused, as the domain error says it (never "agent answered 404").
            return MagicResult(error=f"%sandbox {command}: {domain_error(exc).message}")
        except (SpecError, SandboxError, SandboxOperationError) as exc:
            return MagicResult(error=f"%sandbox {command}: {exc}")

    # -- subcommands ------------------------------------------------------------------------

    def help(self, args: list[str], ctx: MagicContext) -> MagicResult:
        ctx.write("stdout", HELP)
        return MagicResult()

    def _require(self, ctx: MagicContext) -> Sandbox:
        if ctx.sandbox is None or not ctx.sandbox.running:
            raise SandboxError("the sandbox is not running; run a cell to start it")
        return ctx.sandbox

    def status(self, args: list[str], ctx: MagicContext) -> MagicResult:
        parser = _Parser(ctx.write, prog="%sandbox status", description="Show the sandbox's state, limits and usage.")
        parser.add_argument("--json", action="store_true", help="print the status as JSON")
        options = parser.parse_args(args)
        info = self.collect_status(ctx)
        if options.json:
            ctx.write("stdout", json.dumps(info, indent=2) + "\n")
            return MagicResult()
        limits, use, disk = info["limits"], info["usage"], info["disk"]
        lines = [
            f"sandbox   {info['id']}  ({info['state']}, up {_duration(info['uptime_seconds'])})"
            if info.get("uptime_seconds") is not None
            else f"sandbox   {info['id']}  ({info['state']})",
            f"image     {info['image']}",
            "limits    "
            + " · ".join(
                [
                    f"cpu {limits['cpu']:g} vCPU",
                    f"memory {limit_size(limits['memory'])}",
                    f"pids {limits['pids']}",
                    f"disk {limit_size(limits['disk'])}"
                    + (" (home)" if disk.get("enforced") == "total" else " per file"),
                    f"cell timeout {limits['cell_timeout']:g} s" if limits["cell_timeout"] else "cell timeout none",
                ]
            ),
        ]
        if use:
            parts = [
                f"cpu {use['cpu_seconds']:.1f} s",
                f"memory {readable_size(use['memory_bytes'])}",
                f"pids {use['pids']}",
            ]
            if disk.get("used_bytes") is not None:
                parts.append(f"disk {describe_disk(disk)} in /home/sandbox")
            elif use.get("disk_bytes") is not None:
                parts.append(
                    f"disk {readable_size(use['disk_bytes'])}{'+' if use.get('disk_partial') else ''} in /home/sandbox"
                )
            lines.append("usage     " + " · ".join(parts))
        lines.append(f"disk      {disk['note']}")
        lines.append(
            "workspace "
            + (
                "kept for this notebook when the kernel shuts down (`%sandbox delete` removes it)"
                if info.get("workspace")
                else "removed when the kernel shuts down"
            )
        )
        lines.append(f"network   {info['network']['egress']} (sandboxes cannot reach each other)")
        lines.append("ports     " + (", ".join(map(str, info["ports"])) or "none listening"))
        ctx.write("stdout", "\n".join(lines) + "\n")
        return MagicResult()

    def collect_status(self, ctx: MagicContext) -> dict[str, Any]:
        if ctx.sandbox is None:
            raise SandboxError("this kernel has no sandbox yet; run a cell to start one")
        return ctx.access.status(ctx.sandbox, ctx.cell_timeout)

    def config(self, args: list[str], ctx: MagicContext) -> MagicResult:
        parser = _Parser(
            ctx.write,
            prog="%sandbox config",
            description="Change the sandbox's limits. CPU and memory change live; pids, disk, "
            "env and image need a clean restart (files are kept, variables are not).",
        )
        parser.add_argument("--cpu", type=_positive_float, help="vCPUs, e.g. 2 or 0.5")
        parser.add_argument("--memory", type=_size, help="memory, e.g. 2g")
        parser.add_argument("--pids", type=_positive_int, help="most processes and threads")
        parser.add_argument(
            "--disk", type=_size, help="size of the home (files kept; not below what they take), e.g. 5g"
        )
        parser.add_argument("--cell-timeout", type=_non_negative_float, help="seconds per cell, 0 for none")
        parser.add_argument(
            "--env",
            type=_env_pair,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="set an environment variable (repeatable)",
        )
        parser.add_argument("--image", help="switch to another allowed image")
        options = parser.parse_args(args)
        result = MagicResult()
        if options.cell_timeout is not None:
            maximum = ctx.settings.max_cell_timeout
            if maximum and (options.cell_timeout == 0 or options.cell_timeout > maximum):
                raise SpecError(
                    f"cell-timeout: {options.cell_timeout:g} s is above the operator's maximum of {maximum:g} s"
                )
        changes = {
            k: v
            for k, v in (
                ("cpu", options.cpu),
                ("memory", options.memory),
                ("pids", options.pids),
                ("disk", options.disk),
                ("image", options.image),
            )
            if v is not None
        }
        if options.env:
            changes["env"] = dict(options.env)
        if not changes and options.cell_timeout is None:
            ctx.write("stdout", "nothing to change; see %sandbox config --help\n")
            return result
        if changes:
            sandbox = self._require(ctx)
            plan = ctx.access.plan_config(sandbox, changes)  # refuses before anything changes
            if plan.restart:
                ctx.write(
                    "stdout",
                    f"restarting the sandbox to apply {', '.join(plan.changed)} "
                    "(files in /home/sandbox are kept, variables are not)...\n",
                )
                ctx.stop_watching()
                result.reconnect = ctx.access.apply_config(sandbox, plan, lambda m: ctx.write("stdout", m + "\n"))
            else:
                ctx.access.apply_config(sandbox, plan, lambda m: None)
                ctx.write(
                    "stdout",
                    "changed live: "
                    + ", ".join(
                        f"cpu {plan.cpu:g} vCPU" if k == "cpu" else f"memory {limit_size(plan.memory)}"
                        for k in plan.changed
                    )
                    + "\n",
                )
        if options.cell_timeout is not None:
            result.cell_timeout = options.cell_timeout
            ctx.write(
                "stdout",
                f"cell timeout: {options.cell_timeout:g} s\n" if options.cell_timeout else "cell timeout: none\n",
            )
        return result

    def network(self, args: list[str], ctx: MagicContext) -> MagicResult:
        from .network_magic import network_magic

        return network_magic(args, ctx)

    def secret(self, args: list[str], ctx: MagicContext) -> MagicResult:
        from .network_magic import secret_magic

        return secret_magic(args, ctx)

    def exec(self, rest: str, body: str | None, ctx: MagicContext) -> MagicResult:
        parser = _Parser(
            ctx.write,
            prog="%sandbox exec",
            description="Run a shell command in the sandbox. As a cell magic (%%sandbox exec) "
            "the cell's body is the script. A non-zero exit code fails the cell.",
        )
        parser.add_argument("--timeout", type=_positive_float, help="kill the command after this many seconds")
        parser.add_argument("--cwd", default=None, help="folder in the sandbox to run in (default: /home/sandbox)")
        parser.add_argument("command", nargs=argparse.REMAINDER, help="the shell command")
        words = rest.split()
        options_end = 0
        while options_end < len(words) and words[options_end].startswith("--"):
            if words[options_end] == "--":
                options_end += 1
                break
            options_end += 2 if words[options_end] in ("--timeout", "--cwd") else 1
        options = parser.parse_args([w for w in words[:options_end] if w != "--"])
        command = rest.split(None, options_end)[options_end] if len(rest.split(None, options_end)) > options_end else ""
        script = body if body is not None else command
        if not script.strip():
            raise MagicUsageError(f"{parser.format_usage()}%sandbox exec: error: give a command to run")
        sandbox = self._require(ctx)
        try:
            record = ctx.access.exec_streaming(sandbox, script, ctx.write, ctx.cancel, options.timeout, options.cwd)
        except Cancelled:
            return MagicResult(error="interrupted: the command was stopped")
        if record.get("timed_out"):
            return MagicResult(error=f"the command ran longer than {options.timeout:g} s and was killed")
        if record["exit_code"] != 0:
            return MagicResult(error=f"the command exited with code {record['exit_code']}")
        return MagicResult()

    def ls(self, args: list[str], ctx: MagicContext) -> MagicResult:
        parser = _Parser(ctx.write, prog="%sandbox ls", description="List a folder in the sandbox.")
        parser.add_argument("path", nargs="?", default="", help="folder (default: /home/sandbox)")
        options = parser.parse_args(args)
        listing = ctx.access.list_folder(self._require(ctx), options.path)
        # The folder as a path reads: '/home/sandbox/../..' is '/'.
        lines = [f"{posixpath.normpath(str(listing['path']) or '/')}:"]
        for item in listing["entries"]:
            if item.get("type") not in ("file", "directory", "symlink", "other") or not isinstance(
                item.get("size"), int
            ):
                continue  # an entry the sandbox sent without the fields a listing shows
            mode = int(item["mode"], 8) if isinstance(item.get("mode"), str) else 0  # checked: octal text
            kind = {"directory": "d", "symlink": "l"}.get(item["type"], "-")
            name = item["name"] + ("/" if item["type"] == "directory" else "")
            if item["type"] == "symlink" and isinstance(item.get("target"), str):
                name += f" -> {item['target']}"
            lines.append(f"{kind}{stat.filemode(mode)[1:]} {item['size']:>12,}  {name}")
        if not listing["entries"]:
            lines.append("(empty)")
        if listing["truncated"]:
            lines.append("(more entries not shown)")
        ctx.write("stdout", "\n".join(lines) + "\n")
        return MagicResult()

    # -- file transfer ----------------------------------------------------------------------

    def _host_path(self, raw: str, ctx: MagicContext, must_exist: bool) -> Path:
        """A host path confined to the host root: no '..', no way out by a symlink, no hidden files."""
        settings = ctx.settings
        if not settings.allow_file_transfer:
            raise SpecError("file transfer between the host and the sandbox is turned off by the operator")
        if not raw or "\0" in raw:
            raise SpecError("a host path is needed")
        root = Path(os.path.realpath(settings.host_root))
        given = Path(raw)
        if ".." in given.parts:
            raise SpecError(f"host path {raw!r}: '..' is not allowed")
        candidate = given if given.is_absolute() else root / given
        relative_parts = candidate.relative_to(root).parts if _is_within(candidate, root) else None
        if relative_parts is None:
            raise SpecError(f"host path {raw!r} is outside the notebook's folder {root}")
        if not settings.allow_hidden_files and any(part.startswith(".") for part in relative_parts):
            raise SpecError(f"host path {raw!r}: hidden files and folders are not allowed")
        resolved = Path(os.path.realpath(candidate))
        if not _is_within(resolved, root):
            raise SpecError(f"host path {raw!r} leads outside the notebook's folder (through a symlink)")
        if must_exist and not resolved.is_file():
            raise SpecError(
                f"host path {raw!r} is not a file" if resolved.exists() else f"host path {raw!r} does not exist"
            )
        return resolved

    def _upload_sources(self, raw: str, ctx: MagicContext) -> list[tuple[Path, str]]:
        """(host file, path relative to the upload's target) for a file, or every file of a folder:
        each checked as a host path of its own (so no symlink, hidden file or '..' gets through)."""
        folder = self._host_path(raw, ctx, must_exist=False)
        if not folder.is_dir():
            return [(self._host_path(raw, ctx, must_exist=True), folder.name)]
        found: list[tuple[Path, str]] = []
        for top, dirs, files in os.walk(folder, followlinks=False):
            relative = Path(top).relative_to(folder)
            if not ctx.settings.allow_hidden_files:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                files = [f for f in files if not f.startswith(".")]
            dirs.sort()
            for name in sorted(files):
                inside = Path(raw) / relative / name
                if os.path.islink(Path(top) / name):
                    continue  # a link is not copied (its target may be anywhere)
                found.append((self._host_path(str(inside), ctx, must_exist=True), f"{folder.name}/{relative / name}"))
                if len(found) > MAX_UPLOAD_FILES:
                    raise SpecError(f"{raw} holds more than {MAX_UPLOAD_FILES:,} files; upload it as an archive")
        return found

    def upload(self, args: list[str], ctx: MagicContext) -> MagicResult:
        parser = _Parser(
            ctx.write,
            prog="%sandbox upload",
            description="Copy files or folders from the notebook's folder on the host into the sandbox. "
            "`%sandbox upload FILE SANDBOX_PATH` copies one file to that path.",
        )
        parser.add_argument("host_paths", nargs="+", metavar="HOST_PATH", help="files or folders")
        parser.add_argument("--to", default=None, help="sandbox folder to copy into (default: /home/sandbox)")
        options = parser.parse_args(args)
        sources = options.host_paths
        target: str | None = options.to
        rename: str | None = None
        if options.to is None and len(sources) == 2:
            try:
                second: Path | None = self._host_path(sources[1], ctx, must_exist=False)
            except SpecError:
                second = None  # not a host path at all, e.g. /home/sandbox/...: the sandbox side
            if second is None or not second.exists():
                rename = sources[1]  # FILE SANDBOX_PATH, the one-file form
                sources = sources[:1]
        files: list[tuple[str, Path, str]] = []
        for raw in sources:
            files.extend((raw, path, relative) for path, relative in self._upload_sources(raw, ctx))
        if rename is not None and (len(files) != 1 or files[0][2] != Path(sources[0]).name):
            raise SpecError(f"{sources[0]} is a folder: give its sandbox folder with --to")
        limit = parse_size(ctx.settings.max_transfer_size, "max_transfer_size")
        sandbox = self._require(ctx)
        total = 0
        for raw, path, relative in files:
            # O_NOFOLLOW: the file checked above cannot be swapped for a symlink before it is opened.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > limit or total + size > limit:
                    shown = raw if len(files) == 1 else relative
                    raise SpecError(
                        f"{shown} is {readable_size(size)}, above the limit of {limit_size(limit)}"
                        if size > limit
                        else f"the upload would pass the limit of {limit_size(limit)} at {shown}; nothing after it was sent"
                    )
                total += size
                # The agent makes the folders a file goes into.
                destination = rename or posixpath.join(target or "", relative)
                answer = ctx.access.upload_from(sandbox, destination, handle, size)
            if len(files) == 1:
                ctx.write("stdout", f"uploaded {raw} ({size:,} bytes) to {answer.get('path', destination)}\n")
        if len(files) != 1:
            where = posixpath.normpath(target) if target else "/home/sandbox"
            ctx.write("stdout", f"uploaded {len(files)} files ({total:,} bytes) to {where}\n")
        return MagicResult()

    def download(self, args: list[str], ctx: MagicContext) -> MagicResult:
        settings = ctx.settings
        parser = _Parser(
            ctx.write,
            prog="%sandbox download",
            description="Copy a file from the sandbox into the notebook's folder on the host, under "
            f"{settings.downloads_folder}/<sandbox id>/ (where no kernel imports it).",
        )
        parser.add_argument("sandbox_path")
        parser.add_argument(
            "host_path", nargs="?", help="a name (or relative path) inside that folder; default: the file's own name"
        )
        parser.add_argument("--force", action="store_true", help="replace a file of the same name")
        options = parser.parse_args(args)
        if not settings.allow_file_transfer:
            raise SpecError("file transfer between the host and the sandbox is turned off by the operator")
        folder = downloads.check_folder(settings.downloads_folder)
        parts = downloads.name_parts(options.host_path, options.sandbox_path, settings.allow_hidden_files)
        limit = parse_size(settings.max_transfer_size, "max_transfer_size")
        sandbox = self._require(ctx)
        destination, size = downloads.write(
            settings.host_root,
            folder,
            sandbox.id,
            parts,
            options.force,
            lambda handle: ctx.access.download_to(sandbox, options.sandbox_path, handle, limit, ctx.cancel),
        )
        ctx.write("stdout", f"downloaded {options.sandbox_path} ({size:,} bytes) to {destination}\n")
        return MagicResult()

    def preview(self, args: list[str], ctx: MagicContext) -> MagicResult:
        parser = _Parser(
            ctx.write,
            prog="%sandbox preview",
            description="A link to a web server listening on PORT inside the sandbox, on its own "
            "origin. The link logs the browser in once; curl sends the token as a header.",
        )
        parser.add_argument("port", type=_positive_int, help="the port the server listens on in the sandbox")
        parser.add_argument("--expires", default="1h", help="how long the link works, e.g. 30m or 2h (at most 24h)")
        options = parser.parse_args(args)
        sandbox = self._require(ctx)
        template = os.environ.get(PREVIEW_TEMPLATE_ENV)
        if not template and not ctx.access.hub:
            raise SandboxError(
                "previews are served by the jupyter-sandbox server extension; start this kernel "
                "from a Jupyter server that has it enabled (e.g. JupyterLab after pip install)"
            )
        try:
            expires_in = preview_tokens.parse_duration(options.expires)
        except preview_tokens.PreviewError as exc:
            raise SpecError(str(exc)) from None
        if ctx.access.hub:
            # The service serves previews and signs their tokens: the link is its own.
            link = ctx.access.preview_link(sandbox, options.port, expires_in)
        else:
            script_template = os.environ.get(PREVIEW_SCRIPT_TEMPLATE_ENV, "")
            link = preview_link(str(template), sandbox.id, options.port, expires_in, script_template=script_template)
        listening = ctx.access.listening_ports(sandbox)
        until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(link.expires))
        lines = [
            f"preview of port {options.port} in sandbox {sandbox.id}, valid until {until}",
            f"  open in a browser:  {link.browser_url}",
            f"  with curl:          curl -H '{link.header}: {link.token}' {link.url}",
        ]
        if link.script_url:
            # *.localhost resolves in browsers and curl, not in Python's resolver: scripts take this one.
            lines.append(f"  from a script:      {link.script_url}  (send the {link.header} header)")
        if options.port not in listening:
            lines.append(
                f"  note: nothing listens on port {options.port} yet "
                f"(listening: {', '.join(map(str, listening)) or 'none'})"
            )
        ctx.write("stdout", "\n".join(lines) + "\n")
        return MagicResult()

    def ssh(self, args: list[str], ctx: MagicContext) -> MagicResult:
        from .ssh_magic import ssh

        return ssh(args, ctx)

    def pty(self, args: list[str], ctx: MagicContext) -> MagicResult:
        from .pty_magic import pty

        return pty(args, ctx)

    def desktop(self, args: list[str], ctx: MagicContext) -> MagicResult:
        from .desktop_magic import desktop

        return desktop(args, ctx)

    # -- lifecycle --------------------------------------------------------------------------

    def restart(self, args: list[str], ctx: MagicContext) -> MagicResult:
        parser = _Parser(
            ctx.write,
            prog="%sandbox restart",
            description="Restart the Python process in the sandbox (files are kept). "
            "--hard: a fresh container on the same workspace volume.",
        )
        parser.add_argument("--hard", action="store_true", help="recreate the container")
        options = parser.parse_args(args)
        sandbox = self._require(ctx)
        ctx.stop_watching()
        after = ctx.access.restart_sandbox(sandbox, options.hard)
        if options.hard:
            ctx.write("stdout", f"sandbox {sandbox.id}: a fresh container; files in /home/sandbox are kept\n")
        else:
            ctx.write("stdout", "the Python process in the sandbox was restarted; files are kept\n")
        return MagicResult(reconnect=after)

    def stop(self, args: list[str], ctx: MagicContext) -> MagicResult:
        parser = _Parser(
            ctx.write,
            prog="%sandbox stop",
            description="Stop the sandbox container. Files are kept; the next cell starts it again.",
        )
        parser.parse_args(args)
        sandbox = self._require(ctx)
        ctx.stop_watching()
        ctx.access.stop_sandbox(sandbox)
        ctx.write("stdout", f"sandbox {sandbox.id} stopped; the next cell starts it again\n")
        return MagicResult(stopped=True)

    def delete(self, args: list[str], ctx: MagicContext) -> MagicResult:
        parser = _Parser(
            ctx.write,
            prog="%sandbox delete",
            description="Delete the sandbox: its container and every file in /home/sandbox. "
            "The next cell starts a fresh sandbox.",
        )
        parser.add_argument("--yes", action="store_true", help="confirm; without it nothing is deleted")
        options = parser.parse_args(args)
        sandbox = ctx.sandbox
        if sandbox is None:
            raise SandboxError("this kernel has no sandbox to delete")
        if not options.yes:
            ctx.write(
                "stdout",
                f"this deletes sandbox {sandbox.id} and all its files in /home/sandbox; "
                "run `%sandbox delete --yes` to go ahead\n",
            )
            return MagicResult()
        ctx.delete()
        ctx.write("stdout", f"sandbox {sandbox.id} and its files were deleted; the next cell starts a fresh one\n")
        return MagicResult(deleted=True)


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def complete(line: str, cursor_in_line: int) -> tuple[list[str], int] | None:
    """Completions for a `%sandbox` line: (matches, start offset in the line), or None if not ours."""
    text = line[:cursor_in_line]
    stripped = text.lstrip("%")
    if not (text.startswith("%sandbox") or text.startswith("%%sandbox")) or not stripped.startswith("sandbox"):
        if "%sandbox".startswith(text) and text.startswith("%") and text:
            return (["%sandbox"], 0)
        return None
    words = text.split()
    current = "" if text.endswith((" ", "\t")) else words[-1]
    start = cursor_in_line - len(current)
    if len(words) == 1 and not text.endswith((" ", "\t")):
        return ([words[0]], 0)
    position = len(words) - (0 if current == "" else 1)
    if position == 1:
        return ([s for s in SUBCOMMANDS if s.startswith(current)], start)
    subcommand = words[1]
    options = OPTIONS.get(subcommand, [])
    if current.startswith("-") or current == "":
        return ([o for o in options if o.startswith(current) and o not in words[:-1]], start)
    return ([], start)
