"""What a PTY request may ask for, checked on the host before the agent sees it (the agent checks
again, inside the sandbox, where a cwd's links can be followed), and the frames relayed back.

A PTY (agent/ptys.py) is a named terminal that outlives its websocket. The host relays its output
as opaque bytes to the client and passes on only one kind of text frame from the agent, the exit
frame, rebuilt from a checked exit code: the agent runs in the sandbox and may say anything.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import errors

HOME = "/home/sandbox"
MAX_SIZE = 1000
MAX_ENV = 256
MAX_ENV_VALUE = 32 * 1024
MAX_COMMAND = 64 * 1024
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
# Exit codes as the agent reports them: 0-255, or minus the number of the signal that ended it.
EXIT_CODES = range(-64, 256)


def check_id(value: Any) -> str:
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise errors.InvalidInput("a PTY id may hold letters, digits, '-' and '_' (1 to 64 of them)")
    return value


def checked_size(cols: Any, rows: Any) -> tuple[int, int]:
    for value in (cols, rows):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIZE:
            raise errors.InvalidInput(f"cols and rows must be whole numbers from 1 to {MAX_SIZE}")
    return cols, rows


def checked_cwd(value: Any) -> str | None:
    from .operations import check_path  # the one path check of the operations layer

    path = check_path(value, "cwd", required=False)
    if not path:
        return None
    if path.startswith("/") and path.rstrip("/") != HOME and not path.startswith(HOME + "/"):
        raise errors.InvalidInput(f"cwd must be inside the sandbox's home ({HOME}); {path!r} is not")
    return path


def checked_env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ENV:
        raise errors.InvalidInput(f"env must map at most {MAX_ENV} variable names to strings")
    for name, text in value.items():
        if not ENV_NAME.fullmatch(name):
            raise errors.InvalidInput(f"env name {name!r} is not a variable name (letters, digits and '_')")
        if not isinstance(text, str) or "\0" in text or len(text) > MAX_ENV_VALUE:
            raise errors.InvalidInput(
                f"env {name} must be a string without NUL characters, at most {MAX_ENV_VALUE} long"
            )
    return dict(value)


def checked_command(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip() and "\0" not in value and len(value) <= MAX_COMMAND:
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(a, str) and "\0" not in a for a in value)
        and sum(len(a) for a in value) <= MAX_COMMAND
    ):
        return value
    raise errors.InvalidInput("command must be a non-empty command line or a list of arguments (at most 64 KiB)")


def checked_request(body: dict[str, Any]) -> dict[str, Any]:
    """POST .../ptys {"id"?, "cols", "rows", "cwd"?, "env"?, "command"?} as the agent is sent it."""
    request: dict[str, Any] = {}
    if body.get("id") is not None:
        request["id"] = check_id(body["id"])
    if "cols" not in body or "rows" not in body:
        raise errors.InvalidInput("cols and rows are required (the terminal's size)")
    request["cols"], request["rows"] = checked_size(body["cols"], body["rows"])
    cwd = checked_cwd(body.get("cwd"))
    if cwd is not None:
        request["cwd"] = cwd
    request["env"] = checked_env(body.get("env"))
    command = checked_command(body.get("command"))
    if command is not None:
        request["command"] = command
    return request


def client_frame(message: str | bytes) -> str | bytes | None:
    """A client's frame as it is passed to the agent: raw input, or one of the control frames
    rebuilt from its checked fields; None for anything else (dropped)."""
    if isinstance(message, bytes):
        return message
    try:
        frame = json.loads(message)
    except ValueError:
        return None
    if not isinstance(frame, dict):
        return None
    kind = frame.get("type")
    if kind == "input" and isinstance(frame.get("data"), str):
        return json.dumps({"type": "input", "data": frame["data"]})
    if kind == "resize":
        try:
            cols, rows = checked_size(frame.get("cols"), frame.get("rows"))
        except errors.InvalidInput:
            return None
        return json.dumps({"type": "resize", "cols": cols, "rows": rows})
    if kind == "kill":
        return json.dumps({"type": "kill"})
    return None


def exit_code_of(message: str, key: str = "exit_code") -> int | None:
    """The exit code in an agent's text frame when it is a well-formed exit frame, else None."""
    try:
        frame = json.loads(message)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "exit":
        return None
    code = frame.get(key)
    if isinstance(code, bool) or not isinstance(code, int) or code not in EXIT_CODES:
        return None
    return code


MAX_FOLLOW = 3600.0


def follow_timeout(value: Any) -> float:
    """How long a caller follows a PTY's output (REST sends it as text): seconds, above 0, at most an hour."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise errors.InvalidInput(f"timeout must be a number of seconds, got {str(value)[:40]!r}") from None
    if not 0 < seconds <= MAX_FOLLOW:  # also refuses NaN
        raise errors.InvalidInput(f"timeout must be above 0 and at most {MAX_FOLLOW:g} seconds")
    return seconds
