"""What the manager and the gateway process share, kept on the host next to the host secret (never
in a sandbox): which sandbox holds which address on the sandbox network, where the gateway listens,
and each sandbox's connection log.

The gateway tells sandboxes apart by the source address of a connection. On the Docker bridge that
address is the engine's to give: a sandbox holds no NET_ADMIN or NET_RAW, so it can neither change
its address nor forge another's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import secrets as sandbox_secrets


def _dir(kind: str) -> Path:
    return sandbox_secrets.state_dir(f"gateway-{kind}")


def _safe_id(sandbox_id: str) -> str:
    if not sandbox_id or not all(c.isalnum() or c in "-_" for c in sandbox_id) or len(sandbox_id) > 64:
        raise ValueError(f"not a sandbox id: {sandbox_id!r}")
    return sandbox_id


# -- which sandbox has which address ------------------------------------------------------------


def register(address: str, sandbox_id: str) -> None:
    """Connections from `address` are `sandbox_id`'s (written when its policy is put in force)."""
    canonical = str(ipaddress.ip_address(address))
    sandbox_secrets.write_state(_dir("peers") / canonical, _safe_id(sandbox_id).encode())


def unregister(sandbox_id: str) -> None:
    for path, owner in _peers():
        if owner == sandbox_id:
            path.unlink(missing_ok=True)


def sandbox_at(address: str) -> str | None:
    try:
        canonical = str(ipaddress.ip_address(address))
        return (_dir("peers") / canonical).read_text().strip() or None
    except (OSError, ValueError):
        return None


def _peers() -> Iterator[tuple[Path, str]]:
    folder = _dir("peers")
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        try:
            yield path, path.read_text().strip()
        except OSError:
            continue


def registered() -> list[str]:
    return [owner for _, owner in _peers()]


# -- where the gateway listens --------------------------------------------------------------------


def record_path(network_name: str) -> Path:
    return _dir("run") / f"{_safe_id(network_name)}.json"


def read_record(network_name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(record_path(network_name).read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def write_record(network_name: str, record: dict[str, Any]) -> None:
    sandbox_secrets.write_state(record_path(network_name), json.dumps(record).encode())


def records() -> list[dict[str, Any]]:
    """Every gateway's record on this machine (of this user)."""
    folder = _dir("run")
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        if path.name.endswith(".settings.json"):
            continue
        record = read_record(path.stem)
        if record:
            found.append({**record, "network_name": path.stem})
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


# -- the connection log -----------------------------------------------------------------------------


def log_path(sandbox_id: str) -> Path:
    return _dir("log") / f"{_safe_id(sandbox_id)}.jsonl"


class ConnectionLog:
    """Each sandbox's last `limit` connection attempts, as JSON lines in a file of its own (written
    by the gateway process only; read by the server and the kernel). The file is cut back to the
    newest `limit` entries whenever it holds twice as many, so it stays bounded."""

    def __init__(self, limit: int = 500) -> None:
        self.limit = max(1, limit)
        self._counts: dict[str, int] = {}

    def add(self, sandbox_id: str, entry: dict[str, Any]) -> None:
        path = log_path(sandbox_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps({"time": time.time(), **entry}, ensure_ascii=True) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        count = self._counts.get(sandbox_id)
        if count is None:
            count = len(read_log(sandbox_id, limit=None))
        else:
            count += 1
        if count >= 2 * self.limit:
            kept = read_log(sandbox_id, limit=self.limit)
            sandbox_secrets.write_state(path, "".join(json.dumps(e) + "\n" for e in kept).encode())
            count = len(kept)
        self._counts[sandbox_id] = count


def read_log(sandbox_id: str, limit: int | None = 500) -> list[dict[str, Any]]:
    """The newest entries, oldest first; lines that do not parse are skipped."""
    try:
        lines = log_path(sandbox_id).read_text(errors="replace").splitlines()
    except (OSError, ValueError):
        return []
    entries = []
    for line in lines if limit is None else lines[-limit:]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def forget(sandbox_id: str) -> None:
    """Everything kept for a sandbox that goes away."""
    unregister(sandbox_id)
    log_path(sandbox_id).unlink(missing_ok=True)
