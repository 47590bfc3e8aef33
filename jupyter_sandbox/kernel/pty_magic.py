"""`%sandbox pty create|list|send|wait|kill`: the sandbox's named PTYs from a notebook.

Runs in the proxy kernel on the host, through the operations layer (the same PTYs the REST API and
the SDK see). `send` takes Python-style escapes (`\\n` for Enter, `\\x03` for Ctrl-C); `wait` shows
the PTY's recent output and what follows, until it exits (its exit code) or prints `--for TEXT`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sandbox.agent_client import Cancelled
from ..sandbox.spec import SpecError

if TYPE_CHECKING:
    from .magics import MagicContext, MagicResult

ACTIONS = ("create", "list", "send", "wait", "kill")
USAGE = (
    "%sandbox pty create [--id ID] [--cols 80] [--rows 24] [--cwd DIR] [--env KEY=VALUE ...] [-- COMMAND ...]\n"
    "%sandbox pty list\n"
    "%sandbox pty send ID 'TEXT'          (quoted; escapes: \\n Enter, \\x03 Ctrl-C)\n"
    "%sandbox pty wait ID [--for TEXT] [--timeout 60]\n"
    "%sandbox pty kill ID\n"
)


def _describe(pty: dict) -> str:
    state = "running" if pty["status"] == "running" else f"exited ({pty['exit_code']})"
    return f"{pty['id']:<20} {pty['cols']}x{pty['rows']:<8} {state:<14} {pty['cwd']}"


def pty(args: list[str], ctx: MagicContext) -> MagicResult:
    from .magics import MagicResult, MagicUsageError, _Parser, _positive_float

    if not args or args[0] in ("-h", "--help", "help"):
        ctx.write("stdout", "PTYs: terminals in the sandbox that outlive their connection, by id.\n" + USAGE)
        return MagicResult()
    action, rest = args[0], args[1:]
    if action not in ACTIONS:
        raise MagicUsageError(f"%sandbox pty: unknown action {action!r}; choose from {', '.join(ACTIONS)}\n{USAGE}")
    sandbox = ctx.sandbox
    if sandbox is None or not sandbox.running:
        raise SpecError("the sandbox is not running; run a cell to start it")
    parser = _Parser(ctx.write, prog=f"%sandbox pty {action}")
    if action == "create":
        parser.add_argument("--id", default=None)
        parser.add_argument("--cols", type=int, default=80)
        parser.add_argument("--rows", type=int, default=24)
        parser.add_argument("--cwd", default=None)
        parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
        command: list[str] = []
        if "--" in rest:
            rest, command = rest[: rest.index("--")], rest[rest.index("--") + 1 :]
        options = parser.parse_args(rest)
        env = {}
        for item in options.env:
            if "=" not in item:
                raise SpecError(f"--env takes KEY=VALUE, got {item!r}")
            key, value = item.split("=", 1)
            env[key] = value
        body = {"id": options.id, "cols": options.cols, "rows": options.rows, "cwd": options.cwd, "env": env}
        if command:
            body["command"] = " ".join(command)
        made = ctx.access.create_pty(sandbox, body)
        ctx.write("stdout", f"PTY {made['id']} running in {made['cwd']} ({made['cols']}x{made['rows']})\n")
        return MagicResult()
    if action == "list":
        parser.parse_args(rest)
        found = ctx.access.list_ptys(sandbox)
        ctx.write("stdout", "\n".join(_describe(p) for p in found) + "\n" if found else "no PTYs\n")
        return MagicResult()
    parser.add_argument("id")
    if action == "send":
        parser.add_argument("text", nargs="+")
        options = parser.parse_args(rest)
        try:
            # Non-Latin-1 characters pass through as escapes of their own, decoded back.
            text = " ".join(options.text).encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError as exc:
            raise SpecError(f"the text has a bad escape: {exc.reason}") from None
        sent = ctx.access.pty_send(sandbox, options.id, text)
        ctx.write("stdout", f"sent {sent} characters to PTY {options.id}\n")
        return MagicResult()
    if action == "wait":
        parser.add_argument("--for", dest="until", default=None)
        parser.add_argument("--timeout", type=_positive_float, default=60.0)
        options = parser.parse_args(rest)
        try:
            code = ctx.access.pty_follow(
                sandbox, options.id, lambda text: ctx.write("stdout", text), options.until, options.timeout, ctx.cancel
            )
        except Cancelled:
            return MagicResult(error="interrupted: stopped waiting (the PTY keeps running)")
        if code is None:
            ctx.write("stdout", "\n")
        else:
            ctx.write("stdout", f"\nPTY {options.id} exited with code {code}\n")
        return MagicResult()
    options = parser.parse_args(rest)
    killed = ctx.access.kill_pty(sandbox, options.id)
    ctx.write("stdout", f"PTY {killed['id']} killed (exit code {killed['exit_code']})\n")
    return MagicResult()
