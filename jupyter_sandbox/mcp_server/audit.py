"""The MCP server's audit trail and approvals, both host-side state an operator reads and writes.

Audit: one JSON line per tool call in <state dir>/mcp-audit/<sandbox id>.jsonl (calls that name
no sandbox, such as list, in _server.jsonl). Approvals: a call of a tool the operator listed in
require_approval is refused with a request id and recorded in <state dir>/mcp-approvals/; the
operator runs `jupyter sandbox mcp approve ID`; the same call (same tool, same arguments) made
again with approval_id=ID then runs, once."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from ..sandbox.secrets import state_dir

REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")
SANDBOX_ID = re.compile(r"^[0-9a-f]{12}$")
# Written text is logged by size and digest, not whole: a log an operator reads stays readable,
# and it does not copy a file's contents (perhaps a secret) into a second place.
LOGGED_WHOLE = 500


def default_audit_dir() -> Path:
    return state_dir("mcp-audit")


def default_approvals_dir() -> Path:
    return state_dir("mcp-approvals")


def _summary(arguments: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, value in arguments.items():
        if isinstance(value, str) and len(value) > LOGGED_WHOLE:
            summary[key] = {
                "length": len(value),
                "sha256": hashlib.sha256(value.encode()).hexdigest(),
                "start": value[:200],
            }
        else:
            summary[key] = value
    return summary


class AuditLog:
    """Append-only JSON lines, one file per sandbox."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, sandbox_id: str | None) -> Path:
        # A sandbox id from the caller names a file only when it has the id's form.
        name = sandbox_id if sandbox_id and SANDBOX_ID.match(sandbox_id) else "_server"
        return self.folder / f"{name}.jsonl"

    def record(
        self,
        tool: str,
        sandbox_id: str | None,
        arguments: dict[str, Any],
        outcome: str,
        detail: str = "",
        seconds: float = 0.0,
    ) -> None:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tool": tool,
            "sandbox_id": sandbox_id,
            "arguments": _summary(arguments),
            "outcome": outcome,
            "detail": detail[:2000],
            "seconds": round(seconds, 3),
            "pid": os.getpid(),
        }
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path_for(sandbox_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")


def _digest(tool: str, arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([tool, arguments], sort_keys=True).encode()).hexdigest()


class Approvals:
    """Requests waiting for the operator, approved ones, and their one use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, request_id: str) -> Path:
        if not REQUEST_ID.match(request_id or ""):
            raise ValueError("an approval id is 16 hexadecimal characters")
        return self.folder / f"{request_id}.json"

    def request(self, tool: str, arguments: dict[str, Any]) -> str:
        request_id = secrets.token_hex(8)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {"tool": tool, "arguments": _summary(arguments), "digest": _digest(tool, arguments), "approved": False}
        fd = os.open(self._path(request_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        return request_id

    def approve(self, request_id: str) -> dict[str, Any]:
        path = self._path(request_id)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"there is no approval request {request_id}") from None
        record["approved"] = True
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(record))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
        return record

    def pending(self) -> list[dict[str, Any]]:
        found = []
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.json")):
                try:
                    record = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if not record.get("approved"):
                    found.append({"id": path.stem, **record})
        return found

    def consume(self, request_id: str, tool: str, arguments: dict[str, Any]) -> bool:
        """True (and the approval is used up) when the operator approved exactly this call."""
        try:
            path = self._path(request_id)
            record = json.loads(path.read_text())
        except (ValueError, OSError):
            return False
        if not record.get("approved") or record.get("digest") != _digest(tool, arguments):
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False  # another call used it first
        return True
