"""Which kernel and which notebook a sandbox belongs to right now, and who is still alive.

Docker labels cannot change after a container is made, but a sandbox changes hands: a warm-pool
sandbox is claimed by a kernel, a notebook's sandbox outlives its kernel and is picked up by the next
one. So the binding lives in the container's *name*, which Docker can change atomically:

    jupyter-sandbox-<id>                      unbound (warm pool, command line)
    jupyter-sandbox-<id>.w-<workspace>        a notebook's sandbox that no kernel uses now
    jupyter-sandbox-<id>.w-<workspace>.k-<kernel id>
    jupyter-sandbox-<id>.k-<kernel id>        a kernel without a notebook (removed with its kernel)

Two host-side files complete it, both in the user's Jupyter data directory (where the host secret
already is): a lock that serialises claims, so two kernels never take the same sandbox, and one lease
per running proxy kernel (a file it holds an flock on for as long as it lives), so the server can tell
a sandbox whose kernel is gone, even one killed with SIGKILL, from one whose kernel is only quiet.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import secrets as sandbox_secrets

NAME_PREFIX = "jupyter-sandbox-"
KERNEL_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")
_NAME_RE = re.compile(r"^jupyter-sandbox-([0-9a-f]+)(?:\.w-([0-9a-f]{8,64}))?(?:\.k-([0-9A-Za-z][0-9A-Za-z_-]*))?$")


@dataclass(frozen=True)
class Binding:
    sandbox_id: str
    workspace: str | None = None
    kernel_id: str | None = None

    @property
    def name(self) -> str:
        name = NAME_PREFIX + self.sandbox_id
        if self.workspace:
            name += f".w-{self.workspace}"
        if self.kernel_id:
            name += f".k-{self.kernel_id}"
        return name


def base_name(sandbox_id: str) -> str:
    return NAME_PREFIX + sandbox_id


def volume_name(sandbox_id: str) -> str:
    return f"{NAME_PREFIX}{sandbox_id}-home"


def parse_name(name: str) -> Binding | None:
    match = _NAME_RE.match(name.lstrip("/"))
    if not match:
        return None
    return Binding(match.group(1), match.group(2) or None, match.group(3) or None)


def check_kernel_id(kernel_id: str) -> str:
    if not KERNEL_ID_RE.match(kernel_id):
        raise ValueError(f"kernel id {kernel_id!r}: letters, digits, '-' and '_' only, at most 64")
    return kernel_id


def kernel_name_pattern(kernel_id: str) -> str:
    """A Docker `name` filter (a regular expression) matching the sandbox bound to this kernel."""
    return rf"\.k-{re.escape(check_kernel_id(kernel_id))}$"


def workspace_name_pattern(workspace: str) -> str:
    return rf"\.w-{re.escape(workspace)}(\.|$)"


def workspace_key(owner: str, notebook_path: str) -> str:
    """A notebook's workspace: the same owner and notebook file always give the same key."""
    return hashlib.sha256(f"{owner}\0{os.path.normpath(notebook_path)}".encode()).hexdigest()[:24]


# -- host-side locks ---------------------------------------------------------------------------

def _state_dir(kind: str) -> Path:
    path = sandbox_secrets.state_dir(kind)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@contextlib.contextmanager
def host_lock(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process of this user on this machine."""
    fd = os.open(_state_dir("locks") / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def claim_lock() -> contextlib.AbstractContextManager[None]:
    """Held while a process looks for a sandbox to take and renames it; one claim at a time."""
    return host_lock("claims")


def _lease_path(kernel_id: str) -> Path:
    return _state_dir("leases") / f"{check_kernel_id(kernel_id)}.lock"


class KernelLease:
    """An flock held by a running proxy kernel for its whole life; the OS drops it when it dies."""

    def __init__(self, kernel_id: str) -> None:
        self.path = _lease_path(kernel_id)
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.touch()
        return True

    def touch(self) -> None:
        """Note that the kernel is alive now; after it dies, the file's age says for how long."""
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def release(self, forget: bool = False) -> None:
        if self._fd is None:
            return
        if forget:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


def kernel_alive(kernel_id: str) -> bool:
    """Whether a proxy kernel with this id holds its lease now (on this machine)."""
    try:
        path = _lease_path(kernel_id)
    except ValueError:
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lease_seen(kernel_id: str, default: float) -> float:
    """When the kernel was last known alive (its lease's modification time), else `default`."""
    try:
        return _lease_path(kernel_id).stat().st_mtime
    except (OSError, ValueError):
        return default


def forget_lease(kernel_id: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        _lease_path(kernel_id).unlink()
