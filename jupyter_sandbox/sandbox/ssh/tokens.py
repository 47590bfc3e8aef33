"""SSH access tokens: issued for one sandbox, expiring, kept only as hashes, gone with the sandbox.

A token is the sandbox id followed by 40 random hex digits, used as the SSH user name
(`ssh -p 2222 TOKEN@localhost`). The host keeps, per sandbox, the SHA-256 of each token with its
expiry, in a file of its state directory (mode 0600, never in the sandbox). The kernel (for
`%sandbox ssh`) and the server (REST, the gateway) are separate processes of one user: they share
this file under a host lock. A stolen state file gives no token; a token names its sandbox, and
verification compares in constant time against that sandbox's hashes only, so a token of one
sandbox never opens another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import binding
from .. import secrets as sandbox_secrets

SANDBOX_ID = re.compile(r"[0-9a-f]{12}")
TOKEN = re.compile(r"([0-9a-f]{12})([0-9a-f]{40})")
MIN_LIFETIME = 60.0
MAX_LIFETIME = 30 * 24 * 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LIFETIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


class TokenError(ValueError):
    """A lifetime that cannot be used; the message says why."""


@dataclass(frozen=True)
class Issued:
    token: str
    sandbox_id: str
    expires_at: float


def parse_lifetime(value: Any, maximum: float = MAX_LIFETIME) -> float:
    """Seconds from a number of seconds or a text such as '90s', '15m', '1h', '7d'."""
    if isinstance(value, bool):
        raise TokenError("expires_in must be a number of seconds or a duration such as '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and _LIFETIME.match(value):
        number, unit = _LIFETIME.match(value).groups()  # type: ignore[union-attr]
        seconds = float(number) * _UNITS[(unit or "s").lower()]
    else:
        raise TokenError("expires_in must be a number of seconds or a duration such as '30m', '1h' or '7d'")
    if not MIN_LIFETIME <= seconds <= maximum:
        raise TokenError(f"expires_in must be from {MIN_LIFETIME:.0f} seconds to {maximum:.0f} seconds")
    return seconds


def _file(sandbox_id: str) -> Path:
    return sandbox_secrets.state_dir("ssh-tokens") / f"{sandbox_id}.json"


def _digest(sandbox_id: str, secret: str) -> str:
    return hashlib.sha256(f"{sandbox_id}:{secret}".encode()).hexdigest()


def _read(sandbox_id: str) -> list[dict[str, Any]]:
    try:
        entries = json.loads(_file(sandbox_id).read_bytes())
    except (FileNotFoundError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    return [
        e
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("hash"), str) and isinstance(e.get("expires"), (int, float))
    ]


def _write(sandbox_id: str, entries: list[dict[str, Any]]) -> None:
    if entries:
        sandbox_secrets.write_state(_file(sandbox_id), json.dumps(entries).encode())
    else:
        forget(sandbox_id)


def issue(sandbox_id: str, lifetime: float) -> Issued:
    if not SANDBOX_ID.fullmatch(sandbox_id):
        raise TokenError(f"{sandbox_id!r} is not a sandbox id")
    secret = secrets.token_hex(20)
    now = time.time()
    expires = now + lifetime
    with binding.host_lock(f"ssh-{sandbox_id}"):
        entries = [e for e in _read(sandbox_id) if e["expires"] > now]  # expired ones are dropped on the way
        entries.append({"hash": _digest(sandbox_id, secret), "expires": expires})
        _write(sandbox_id, entries)
    return Issued(sandbox_id + secret, sandbox_id, expires)


def verify(token: str) -> str | None:
    """The sandbox id a valid, unexpired token opens, else None."""
    match = TOKEN.fullmatch(token) if isinstance(token, str) and len(token) == 52 else None
    if match is None:
        return None
    sandbox_id, secret = match.groups()
    digest = _digest(sandbox_id, secret).encode()
    now, found = time.time(), False
    for entry in _read(sandbox_id):
        # Every stored hash is compared, each in constant time: the time taken says nothing of which matched.
        if hmac.compare_digest(entry["hash"].encode(), digest) and entry["expires"] > now:
            found = True
    return sandbox_id if found else None


def revoke(sandbox_id: str) -> int:
    """Revoke every token of the sandbox; the number revoked."""
    with binding.host_lock(f"ssh-{sandbox_id}"):
        count = len(_read(sandbox_id))
        forget(sandbox_id)
    return count


def forget(sandbox_id: str) -> None:
    """The sandbox is gone: so are its tokens."""
    try:
        _file(sandbox_id).unlink()
    except FileNotFoundError:
        pass
