"""Checking the shape of what the agent answers: the host trusts nothing the sandbox says.

A shape is a Python type (str, int, float, bool), a tuple of allowed types, `None` for null, a list
`[shape]` for "a list of", or a dict {key: shape} for an object with at least those keys. `reduce()`
returns the value with only the described parts, or raises ShapeError.
"""

from __future__ import annotations

from typing import Any

MAX_ITEMS = 100_000


class ShapeError(ValueError):
    pass


def reduce(value: Any, shape: Any, where: str = "answer") -> Any:
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            raise ShapeError(f"{where} is not an object")
        return {key: reduce(value.get(key), sub, f"{where}.{key}") for key, sub in shape.items()}
    if isinstance(shape, list):
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise ShapeError(f"{where} is not a list")
        return [reduce(item, shape[0], f"{where}[]") for item in value]
    allowed = shape if isinstance(shape, tuple) else (shape,)
    if value is None and None in allowed:
        return None
    types = tuple(t for t in allowed if t is not None)
    if isinstance(value, bool) and bool not in types:
        raise ShapeError(f"{where} has the wrong type")
    if not isinstance(value, types):
        raise ShapeError(f"{where} has the wrong type")
    return value


NUMBER = (int, float)
COMMAND = {"id": str, "command": str, "exit_code": (int, None), "started": NUMBER, "running": bool}
SESSION = {"id": str, "cwd": str, "created": NUMBER, "commands": [COMMAND]}
PTY = {
    "id": str,
    "cols": int,
    "rows": int,
    "cwd": str,
    "status": str,
    "exit_code": (int, None),
    "created": NUMBER,
}
AGENT_SHAPES: dict[str, Any] = {
    "pty": PTY,
    "sessions": {"sessions": [SESSION]},
    "session": SESSION,
    "command": COMMAND,
    "command_run": {**COMMAND, "stdout": (str, None), "stderr": (str, None)},
    "input": {"sent": int},
    "git_status": {
        "branch": str,
        "ahead": int,
        "behind": int,
        "files": [{"path": str, "index": str, "worktree": str, "staged": bool, "untracked": bool}],
    },
    "git_branches": {"branches": [str], "current": (str, None)},
    "git_clone": {"path": str},
    "git_commit": {"commit": str},
    "git_output": {"output": str},
}
