"""Preview tokens: signed, bound to one sandbox and one port, expiring, and revocable.

A token is `{sandbox_id}.{port}.{expires}.{signature}`. The signature is an HMAC under a key derived
from the host secret and the sandbox's current preview nonce; rotating the nonce (or deleting the
sandbox) invalidates every token handed out before. Any trusted process of the user (the server, the
kernel) can mint and check tokens; nothing about them lives in the sandbox.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path

from . import secrets as sandbox_secrets
from .spec import RESERVED_PORTS

DEFAULT_EXPIRY = 3600
MAX_EXPIRY = 24 * 3600
TOKEN_RE = re.compile(r"^([0-9a-f]{12})\.(\d{1,5})\.(\d{1,12})\.([0-9a-f]{64})$")


class PreviewError(ValueError):
    """A request for a preview token that cannot be honoured; the message says why."""


def check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise PreviewError(f"port must be a whole number from 1 to 65535, got {port!r}")
    if port in RESERVED_PORTS:
        raise PreviewError(
            f"port {port} is jupyter-sandbox's own (its agent and kernel use "
            f"{min(RESERVED_PORTS)} to {max(RESERVED_PORTS)}); preview your app's port"
        )
    return port


def _nonce_path(sandbox_id: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{12}", sandbox_id):
        raise PreviewError("not a sandbox id")
    return sandbox_secrets.state_dir("previews") / sandbox_id


_nonces: dict[Path, tuple[tuple[int, int], bytes]] = {}
# Tokens found good lately: (token, sandbox id, port) -> when. A preview page loads many files at
# once; each would otherwise read the nonce's file. Rotating in this process forgets them at once;
# a rotation by another process (the command line) takes effect within this many seconds.
VERIFIED_SECONDS = 1.0
_verified: dict[tuple[str, str, int], float] = {}


def _nonce(sandbox_id: str) -> bytes:
    """The sandbox's current nonce; re-read only when its file changed (another process may rotate it)."""
    path = _nonce_path(sandbox_id)
    try:
        stat = path.stat()
        changed = (stat.st_ino, stat.st_mtime_ns)
    except FileNotFoundError:
        return rotate(sandbox_id)
    cached = _nonces.get(path)
    if cached is None or cached[0] != changed:
        cached = (changed, path.read_bytes())
        _nonces[path] = cached
    return cached[1]


def rotate(sandbox_id: str) -> bytes:
    """A new nonce: every token handed out before stops working."""
    _verified.clear()
    fresh = secrets.token_hex(16).encode()
    sandbox_secrets.write_state(_nonce_path(sandbox_id), fresh)
    return fresh


def forget(sandbox_id: str) -> None:
    _verified.clear()
    try:
        _nonce_path(sandbox_id).unlink()
    except (FileNotFoundError, PreviewError):
        pass


def _signature(sandbox_id: str, port: int, expires: int) -> str:
    key = hmac.new(
        sandbox_secrets.host_secret(), b"preview:" + sandbox_id.encode() + b":" + _nonce(sandbox_id), hashlib.sha256
    ).digest()
    return hmac.new(key, f"{sandbox_id}.{port}.{expires}".encode(), hashlib.sha256).hexdigest()


def mint(sandbox_id: str, port: int, expires_in: int = DEFAULT_EXPIRY) -> tuple[str, int]:
    """(token, expires_at) for one sandbox and port; PreviewError says what is wrong with either argument."""
    check_port(port)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 1 <= expires_in <= MAX_EXPIRY:
        raise PreviewError(f"expires_in must be from 1 to {MAX_EXPIRY} seconds (24 hours), got {expires_in!r}")
    expires = int(time.time()) + expires_in
    return f"{sandbox_id}.{port}.{expires}.{_signature(sandbox_id, port, expires)}", expires


def verify(token: str | None, sandbox_id: str, port: int) -> bool:
    """True only for an unexpired token minted for exactly this sandbox and port, under today's nonce."""
    if not token:
        return False
    match = TOKEN_RE.match(token)
    if not match:
        return False
    token_sandbox, token_port, expires, signature = match.groups()
    now = time.time()
    if token_sandbox != sandbox_id or int(token_port) != port or int(expires) < now:
        return False
    key = (token, sandbox_id, port)
    if now - _verified.get(key, 0.0) < VERIFIED_SECONDS:
        return True
    try:
        expected = _signature(sandbox_id, port, int(expires))
    except PreviewError:
        return False
    if not hmac.compare_digest(signature, expected):
        return False
    if len(_verified) > 1024:
        _verified.clear()
    _verified[key] = now
    return True


def parse_duration(text: str) -> int:
    """'90', '90s', '15m', '2h' → seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", text or "")
    if not match:
        raise PreviewError(f"expected a duration such as 30m or 2h, got {text!r}")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
