"""Per-sandbox secrets derived from one host secret.

The agent token and the inner kernel's signing key of a sandbox are HMACs of the sandbox id under a
secret kept in the user's Jupyter data directory (mode 0600). Any trusted process of the same user
(the kernel, the server extension, the command line) can derive them from a sandbox id, so nothing
secret has to be stored in Docker labels, and nothing the sandbox writes is ever trusted as a key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

SECRET_ENV = "JUPYTER_SANDBOX_SECRET_FILE"


def secret_path() -> Path:
    override = os.environ.get(SECRET_ENV)
    if override:
        return Path(override)
    return Path(jupyter_data_dir()) / "jupyter_sandbox" / "host.secret"


def state_dir(kind: str) -> Path:
    """A folder of host-side state (locks, leases, policies, nonces), next to the host secret and
    never in a sandbox."""
    return secret_path().parent / kind


def write_state(path: Path, data: bytes) -> None:
    """Replace a host-side state file whole (a reader never sees half of it), readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


_known: dict[Path, bytes] = {}


def host_secret() -> bytes:
    """The host secret; read once per process (it never changes once written)."""
    path = secret_path()
    if path in _known:
        return _known[path]
    _known[path] = _read_or_create(path)
    return _known[path]


def _read_or_create(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fresh = secrets.token_hex(32).encode()
    # O_EXCL so that two processes starting at once agree on one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(fresh)
    return fresh


def derive(sandbox_id: str, purpose: str) -> str:
    return hmac.new(host_secret(), f"{purpose}:{sandbox_id}".encode(), hashlib.sha256).hexdigest()


def agent_token(sandbox_id: str) -> str:
    return derive(sandbox_id, "agent-token")


def kernel_key(sandbox_id: str) -> str:
    return derive(sandbox_id, "kernel-key")
