"""Where files from a sandbox land on the host, and how they get there.

What a sandbox hands to the host is hostile: its content and, through a name the user may have been
told to type (or a line the sandbox planted), its name. Put next to a notebook, a `numpy.py` or a
`pandas/` would be imported by the user's next local kernel or script: code from the sandbox running on
the host. So downloads never go into the notebook's folder itself, but into a folder of their own,
`<notebook folder>/sandbox-downloads/<sandbox id>/`:
- its name is not a Python identifier (it has a dash), so the notebook folder on `sys.path` (the cwd of
  the user's kernels) cannot import it or anything in it;
- names are checked part by part: no '..', no absolute paths, no hidden files, no control or
  formatting characters, no names Windows reserves or cannot store, bounded lengths;
- no symlink on the host is followed: every folder is opened relative to the one before with
  O_NOFOLLOW, and a symlink at the file's own place is refused;
- an existing file is never replaced unless asked for (`--force`); without it the file is linked into
  place, which fails if the name was taken meanwhile;
- the file is written under a temporary name first and appears whole, mode 0644 (never executable).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..sandbox.spec import SpecError

DEFAULT_FOLDER = "sandbox-downloads"
MAX_NAME_BYTES = 255
MAX_DEPTH = 16
# Names Windows gives to devices, whatever the extension (a notebook folder may be shared with Windows).
_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9¹²³]|LPT[0-9¹²³])$", re.IGNORECASE)
_UNSTORABLE = set('<>:"|?*\\')


def check_part(part: str, shown: str, allow_hidden: bool = False) -> None:
    """Refuse one path component of a download's name, saying why."""
    if part in ("", "."):
        raise SpecError(f"host path {shown!r}: an empty or '.' part is not allowed")
    if part == "..":
        raise SpecError(f"host path {shown!r}: '..' is not allowed")
    for char in part:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            raise SpecError(f"host path {shown!r}: control or formatting character U+{ord(char):04X} is not allowed")
        if char in _UNSTORABLE:
            raise SpecError(f"host path {shown!r}: {char!r} is not allowed in a file name")
    if part.startswith(".") and not allow_hidden:
        raise SpecError(f"host path {shown!r}: hidden files and folders are not allowed")
    if part.endswith((".", " ")) or part.startswith(" "):
        raise SpecError(f"host path {shown!r}: a name may not begin with a space or end with a dot or a space")
    if _RESERVED.match(part.split(".")[0].rstrip(" ")):
        raise SpecError(f"host path {shown!r}: {part!r} is a reserved device name on Windows")
    if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise SpecError(f"host path {shown!r}: a name may be at most {MAX_NAME_BYTES} bytes long")


def check_folder(folder: str) -> list[str]:
    """The operator's downloads folder (relative to the notebook's folder), as parts; never importable."""
    parts = folder.replace("\\", "/").split("/")
    if folder.startswith(("/", "\\")) or not folder:
        raise SpecError(f"downloads_folder {folder!r} must be a relative path inside the notebook's folder")
    for part in parts:
        check_part(part, folder)
    if parts[0].isidentifier():
        raise SpecError(
            f"downloads_folder {folder!r}: {parts[0]!r} is a name Python could import from the "
            "notebook's folder; use one with a dash, such as 'sandbox-downloads'"
        )
    return parts


def name_parts(host_path: str | None, sandbox_path: str, allow_hidden: bool) -> list[str]:
    """The checked parts of a download's name inside its folder: HOST_PATH, else the sandbox file's name."""
    raw = host_path if host_path is not None else sandbox_path.rstrip("/").rsplit("/", 1)[-1]
    if not raw or "\0" in raw:
        raise SpecError("a host path is needed" if not raw else "host path: NUL is not allowed")
    if raw.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", raw):
        raise SpecError(
            f"host path {raw!r} is absolute: a download goes into the notebook's "
            f"{DEFAULT_FOLDER}/<sandbox id>/ folder; give a name (or a relative path) inside it"
        )
    parts = raw.split("/")
    if len(parts) > MAX_DEPTH:
        raise SpecError(f"host path {raw!r}: at most {MAX_DEPTH} folders deep")
    for part in parts:
        check_part(part, raw, allow_hidden)
    return parts


def _open_folder(parent: int, name: str, shown: Path) -> int:
    """A folder inside `parent` (made if missing), opened without following a symlink."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symlink" if os.path.islink(shown) else "not a folder"
            raise SpecError(f"host folder {shown} is {kind}; downloads do not go through it") from None
        raise


def write(
    root: str, folder: list[str], sandbox_id: str, parts: list[str], force: bool, fill: Callable[[IO[bytes]], int]
) -> tuple[Path, int]:
    """Write a download to root/folder/sandbox_id/parts with `fill` (which writes the file's bytes into the
    handle and returns how many); (where it landed, bytes)."""
    shown = Path(os.path.realpath(root))
    fds = [os.open(shown, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for name in [*folder, sandbox_id, *parts[:-1]]:
            shown = shown / name
            fds.append(_open_folder(fds[-1], name, shown))
        here, name = fds[-1], parts[-1]
        destination = shown / name
        _check_place(here, name, destination, force)
        temporary = f".download-{os.getpid()}-{time.monotonic_ns()}.part"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=here)
        try:
            with os.fdopen(fd, "wb") as handle:
                size = fill(handle)
            _commit(here, temporary, name, destination, force)
        finally:
            try:
                os.unlink(temporary, dir_fd=here)
            except FileNotFoundError:
                pass
        return destination, size
    finally:
        for fd in fds:
            os.close(fd)


def _check_place(here: int, name: str, destination: Path, force: bool) -> None:
    try:
        found = os.stat(name, dir_fd=here, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(found.st_mode):
        raise SpecError(f"host path {destination} is a symlink; not writing through it or replacing it")
    if not stat.S_ISREG(found.st_mode):
        raise SpecError(f"host path {destination} exists and is not a file")
    if not force:
        raise SpecError(f"host path {destination} exists; add --force to replace it")


def _commit(here: int, temporary: str, name: str, destination: Path, force: bool) -> None:
    """Put the finished file in place: replacing only with `force`; never through a symlink."""
    if force:
        _check_place(here, name, destination, force=True)
        # rename() replaces the name itself: a symlink put there meanwhile is replaced, not followed.
        os.replace(temporary, name, src_dir_fd=here, dst_dir_fd=here)
        return
    try:
        # link() fails if the name exists, whatever it is: no window between a check and the write.
        os.link(temporary, name, src_dir_fd=here, dst_dir_fd=here, follow_symlinks=False)
    except FileExistsError:
        raise SpecError(f"host path {destination} exists; add --force to replace it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # A filesystem without hard links: check, then rename (a file made in between would be replaced).
        _check_place(here, name, destination, force=False)
        os.replace(temporary, name, src_dir_fd=here, dst_dir_fd=here)
