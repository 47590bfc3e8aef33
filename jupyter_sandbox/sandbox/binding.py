"""Which kernel and which notebook a sandbox belongs to right now, and who is still alive.

Docker labels cannot change after a container is made, but a sandbox changes hands: a warm-pool
sandbox is claimed by a kernel, a notebook's sandbox outlives its kernel and is picked up by the next
one. So the binding lives in the container's *name*, which Docker can change atomically:

    jupyter-sandbox-<id>                      unbound (warm pool, command line)
    jupyter-sandbox-<id>.a                    a warm-pool sandbox claimed by the REST API (POST /sandboxes)
    jupyter-sandbox-<id>.w-<workspace>        a notebook's sandbox that no kernel uses now
    jupyter-sandbox-<id>.w-<workspace>.k-<kernel id>
    jupyter-sandbox-<id>.k-<kernel id>        a kernel without a notebook (removed with its kernel)

Host-side files complete it, all in the user's Jupyter data directory (where the host secret
already is): a lock that serialises claims and renames, so two kernels never take the same sandbox;
one lease per running proxy kernel and per running Jupyter server (a file it holds an flock on for as
long as it lives), so a sandbox whose kernel or server is gone, even one killed with SIGKILL, is told
from one whose owner is only quiet; and, for notebooks, where each workspace's notebook file is now
(`workspaces/`) and which workspace a running kernel has now (`kernels/`), both rewritten when the
Jupyter server sees a notebook renamed, moved or deleted (notebooks.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import secrets as sandbox_secrets

NAME_PREFIX = "jupyter-sandbox-"
KERNEL_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")
WORKSPACE_RE = re.compile(r"^[0-9a-f]{8,64}$")
SERVER_ID_RE = re.compile(r"^[0-9a-f]{8,64}$")
_NAME_RE = re.compile(
    r"^jupyter-sandbox-([0-9a-f]+)(\.a)?(?:\.w-([0-9a-f]{8,64}))?(?:\.k-([0-9A-Za-z][0-9A-Za-z_-]*))?$"
)


@dataclass(frozen=True)
class Binding:
    sandbox_id: str
    workspace: str | None = None
    kernel_id: str | None = None
    # Claimed from the warm pool by the REST API: no longer the pool's, though its label says pool.
    api: bool = False

    @property
    def name(self) -> str:
        name = NAME_PREFIX + self.sandbox_id
        if self.api:
            name += ".a"
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
    return Binding(match.group(1), match.group(3) or None, match.group(4) or None, bool(match.group(2)))


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


def detached_workspace() -> str:
    """A workspace key no notebook path gives (random, of the same shape): a sandbox moved to it keeps
    its files and can be listed and removed, but no notebook ever picks it up again."""
    return secrets.token_hex(12)


def check_workspace(workspace: str) -> str:
    if not WORKSPACE_RE.match(workspace):
        raise ValueError(f"workspace {workspace!r}: 8 to 64 lowercase hex digits")
    return workspace


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


def _server_lease_path(server_id: str) -> Path:
    if not SERVER_ID_RE.match(server_id):
        raise ValueError(f"server id {server_id!r}: 8 to 64 lowercase hex digits")
    return _state_dir("servers") / f"{server_id}.lock"


class _Lease:
    """An flock held by a running process for its whole life; the OS drops it when the process dies.
    The file's content says who holds it (a kernel's says which Jupyter server started it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool = True, content: str = "") -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, content.encode(), 0)
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


class KernelLease(_Lease):
    """Held by a running proxy kernel; its content is the id of the Jupyter server that started it
    (empty for a kernel started otherwise), so each server's housekeeping knows its own kernels."""

    def __init__(self, kernel_id: str) -> None:
        super().__init__(_lease_path(kernel_id))


class ServerLease(_Lease):
    """Held by a running Jupyter server with the extension: what it made is its own while it lives,
    and anyone's to tidy once it is gone."""

    def __init__(self, server_id: str) -> None:
        super().__init__(_server_lease_path(server_id))


def new_server_id() -> str:
    return secrets.token_hex(8)


def _held(path: Path) -> bool:
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


def kernel_alive(kernel_id: str) -> bool:
    """Whether a proxy kernel with this id holds its lease now (on this machine)."""
    try:
        return _held(_lease_path(kernel_id))
    except ValueError:
        return False


def server_alive(server_id: str) -> bool:
    """Whether a Jupyter server with this id runs now (on this machine)."""
    try:
        return _held(_server_lease_path(server_id))
    except ValueError:
        return False


def kernel_server(kernel_id: str) -> str:
    """The id of the Jupyter server that started this kernel ('' when unknown or none)."""
    try:
        text = _lease_path(kernel_id).read_text()[:64].strip()
    except (OSError, ValueError, UnicodeDecodeError):
        return ""
    return text if SERVER_ID_RE.match(text) else ""


def lease_seen(kernel_id: str, default: float) -> float:
    """When the kernel was last known alive (its lease's modification time), else `default`."""
    try:
        return _lease_path(kernel_id).stat().st_mtime
    except (OSError, ValueError):
        return default


def forget_lease(kernel_id: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        _lease_path(kernel_id).unlink()
    forget_kernel_workspace(kernel_id)


# -- the warm pool: which pool sandboxes have been seen answering -----------------------------


def _ready_path(sandbox_id: str) -> Path:
    if not re.match(r"^[0-9a-f]{1,64}$", sandbox_id):
        raise ValueError(f"sandbox id {sandbox_id!r}")
    return _state_dir("pool") / f"{sandbox_id}.ready"


def mark_pool_ready(sandbox_id: str) -> None:
    """The pool saw this sandbox's agent answer: a kernel may claim it (one claimed while its agent
    still starts gives the kernel's first calls, and the sidebar's, a 502)."""
    _ready_path(sandbox_id).touch(mode=0o600)


def pool_ready(sandbox_id: str) -> bool:
    try:
        return _ready_path(sandbox_id).exists()
    except ValueError:
        return False


def forget_pool_ready(sandbox_id: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        _ready_path(sandbox_id).unlink()


# -- notebooks: where a workspace's notebook is now, and which workspace a kernel has now -------
# Callers that change these hold claim_lock(), as they rename containers in the same step.


def _record_path(workspace: str) -> Path:
    return _state_dir("workspaces") / f"{check_workspace(workspace)}.json"


def remember_notebook(workspace: str, path: str, seen: bool = False, detached: bool = False) -> None:
    """Note that `workspace` is the sandbox of the notebook file at `path` (absolute, resolved);
    `seen`: the file existed then (a file never seen, e.g. a session for a path with no file, is never
    taken for one deleted); `detached`: the file is gone and no notebook takes this workspace again."""
    record = {"path": path, "seen": seen, "detached": detached}
    sandbox_secrets.write_state(_record_path(workspace), json.dumps(record).encode())


def forget_notebook(workspace: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        _record_path(workspace).unlink()


def notebook_record(workspace: str) -> dict[str, object] | None:
    """What is remembered of the notebook of `workspace` ({'path', 'seen', 'detached'}), if anything."""
    try:
        record = json.loads(_record_path(workspace).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("path"), str) else None


def notebooks() -> dict[str, dict[str, object]]:
    """Every remembered workspace with its record (see notebook_record)."""
    found: dict[str, dict[str, object]] = {}
    for entry in _state_dir("workspaces").glob("*.json"):
        if not WORKSPACE_RE.match(entry.stem):
            continue
        try:
            record = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("path"), str):
            found[entry.stem] = record
    return found


def _kernel_note_path(kernel_id: str) -> Path:
    return _state_dir("kernels") / f"{check_kernel_id(kernel_id)}.json"


def set_kernel_workspace(kernel_id: str, workspace: str | None) -> None:
    """The kernel's notebook moved (or went): its next sandbox is that of `workspace` (None: one of
    its own, removed with it). The kernel reads this instead of the key it computed at start."""
    sandbox_secrets.write_state(_kernel_note_path(kernel_id), json.dumps({"workspace": workspace}).encode())


def kernel_workspace(kernel_id: str, default: str | None) -> str | None:
    """The workspace a kernel has now: what the server last noted for it, else `default`."""
    try:
        note = json.loads(_kernel_note_path(kernel_id).read_text())
    except (OSError, ValueError):
        return default
    if not isinstance(note, dict) or "workspace" not in note:
        return default
    workspace = note["workspace"]
    if workspace is None:
        return None
    return workspace if isinstance(workspace, str) and WORKSPACE_RE.match(workspace) else default


def forget_kernel_workspace(kernel_id: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        _kernel_note_path(kernel_id).unlink()
