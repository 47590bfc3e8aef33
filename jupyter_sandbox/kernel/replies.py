"""Replies and outputs the proxy makes itself: errors, aborted cells, and a kernel_info for a
sandbox that never answered. Fields that came from the sandbox are forced to plain strings here."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .. import __version__

# What the notebook is told when the sandbox API restarted its Python process (local or hub mode).
API_RESTART_MESSAGE = (
    "The Python process in the sandbox was restarted through the sandbox API: variables are gone, "
    "files in /home/sandbox are kept."
)


def error_output(message: str, ename: str = "SandboxError", traceback: list[str] | None = None) -> dict[str, Any]:
    """An `error` output: exactly nbformat's fields (a "status" here makes a saved notebook invalid)."""
    return {
        "ename": ename,
        "evalue": message,
        "traceback": traceback if traceback is not None else [f"\x1b[0;31m{ename}\x1b[0m: {message}"],
    }


def error_reply(message: Any, ename: Any = "SandboxError", traceback: Any = None) -> dict[str, Any]:
    """The error part of a reply; fields that came from the sandbox are forced to strings."""
    lines = [str(line) for line in traceback[:1000]] if isinstance(traceback, list) else None
    return {"status": "error", **error_output(str(message), str(ename), lines)}


def failed_execute_reply(error: dict[str, Any], execution_count: int) -> dict[str, Any]:
    """An execute_reply for a cell that failed, shaped as ipykernel's (empty payload and expressions)."""
    return {**error, "execution_count": execution_count, "user_expressions": {}, "payload": []}


def reply_metadata(session: str, status: str) -> dict[str, Any]:
    """The metadata ipykernel puts on an execute_reply."""
    return {
        "started": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "dependencies_met": True,
        "engine": session,
        "status": status,
    }


TYPESCRIPT_LANGUAGE_INFO = {
    "name": "typescript",
    "version": "5",
    "mimetype": "text/x.typescript",
    "file_extension": ".ts",
    "pygments_lexer": "typescript",
    "codemirror_mode": "typescript",
    "nbconvert_exporter": "script",
}


def unknown_kernel_info(language: str = "python") -> dict[str, Any]:
    """Only when no sandbox could be started and none ever answered for this image: the front end
    still gets a reply (and the cells the reason)."""
    if language == "typescript":
        return {
            "status": "ok",
            "protocol_version": "5.3",
            "implementation": "jupyter-sandbox",
            "implementation_version": __version__,
            "language_info": dict(TYPESCRIPT_LANGUAGE_INFO),
            "banner": "TypeScript in a jupyter-sandbox container (the sandbox could not be started)",
            "help_links": [],
        }
    return {
        "status": "ok",
        "protocol_version": "5.3",
        "implementation": "jupyter-sandbox",
        "implementation_version": __version__,
        "language_info": {
            "name": "python",
            "version": "3",
            "mimetype": "text/x-python",
            "file_extension": ".py",
            "pygments_lexer": "ipython3",
            "codemirror_mode": {"name": "ipython", "version": 3},
            "nbconvert_exporter": "python",
        },
        "banner": "Python 3 in a jupyter-sandbox container (the sandbox could not be started)",
        "help_links": [],
    }
