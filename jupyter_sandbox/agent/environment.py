"""Two environments: the agent's own, set whole by the host, and the one the sandbox's processes get.

The agent's own calls (git, tar, its zip helper) find their programs on a PATH of system folders that
the host judged closed to the sandbox user. The sandbox's processes (the kernel, commands, sessions,
terminals) get the container's environment, with the user's ~/.local/bin first as the image wants,
plus the variables of the sandbox's spec: that is the sandbox's own business.
"""

from __future__ import annotations

import os
from typing import Any

_user: dict[str, str] = {}
# Never handed on: they point at the agent's own files.
PRIVATE = ("JUPYTER_SANDBOX_AGENT_CONFIG",)
FALLBACK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def setup(config: dict[str, Any]) -> None:
    """Split the process environment: remember the sandbox's, replace the agent's with the host's."""
    user = {k: v for k, v in os.environ.items() if k not in PRIVATE}
    extra = config.get("user_env")
    if isinstance(extra, dict):
        user.update({str(k): str(v) for k, v in extra.items()})
    _user.clear()
    _user.update(user)
    own = config.get("agent_env")
    own = {str(k): str(v) for k, v in own.items()} if isinstance(own, dict) else {}
    own.setdefault("PATH", FALLBACK_PATH)
    if not own["PATH"]:
        own["PATH"] = FALLBACK_PATH
    os.environ.clear()
    os.environ.update(own)


def user() -> dict[str, str]:
    """The environment for a process of the sandbox's (a copy; before setup(), the process's own)."""
    return dict(_user) if _user else {k: v for k, v in os.environ.items() if k not in PRIVATE}


def set_user_variable(name: str, value: str | None) -> None:
    """Set (or with None, remove) one variable of the sandbox processes' environment (the desktop's
    DISPLAY, for what starts once the desktop runs)."""
    if not _user:
        _user.update({k: v for k, v in os.environ.items() if k not in PRIVATE})
    if value is None:
        _user.pop(name, None)
    else:
        _user[name] = value
