"""File operations inside the sandbox, done by the agent as the sandbox user."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

HOME = os.path.expanduser("~")


class FileError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def resolve(path: str | None) -> Path:
    """A sandbox path: relative paths are taken from the sandbox user's home."""
    if not path:
        return Path(HOME)
    if "\0" in path:
        raise FileError(400, "a path may not contain NUL bytes")
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(HOME) / candidate


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def entry(path: Path, st: os.stat_result) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": path.name,
        "path": str(path),
        "type": kind_of(st.st_mode),
        "size": st.st_size,
        "mode": stat.S_IMODE(st.st_mode),
        "mtime": st.st_mtime,
        "uid": st.st_uid,
        "gid": st.st_gid,
    }
    if stat.S_ISLNK(st.st_mode):
        try:
            info["target"] = os.readlink(path)
        except OSError:
            info["target"] = None
    return info


def list_directory(path: str | None, limit: int = 10_000) -> dict[str, Any]:
    folder = resolve(path)
    try:
        st = folder.lstat()
    except FileNotFoundError:
        raise FileError(404, f"{folder} does not exist") from None
    except PermissionError:
        raise FileError(403, f"{folder}: permission denied") from None
    if not stat.S_ISDIR(os.stat(folder).st_mode):
        return {"path": str(folder), "entries": [entry(folder, st)], "truncated": False}
    entries = []
    try:
        with os.scandir(folder) as iterator:
            for item in iterator:
                if len(entries) >= limit:
                    return {"path": str(folder), "entries": entries, "truncated": True}
                try:
                    entries.append(entry(Path(item.path), item.stat(follow_symlinks=False)))
                except OSError:
                    continue
    except PermissionError:
        raise FileError(403, f"{folder}: permission denied") from None
    entries.sort(key=lambda e: (e["type"] != "directory", e["name"]))
    return {"path": str(folder), "entries": entries, "truncated": False}


def open_for_reading(path: str | None):
    target = resolve(path)
    try:
        if stat.S_ISDIR(os.stat(target).st_mode):
            raise FileError(400, f"{target} is a directory")
        return open(target, "rb"), os.stat(target).st_size
    except FileNotFoundError:
        raise FileError(404, f"{target} does not exist") from None
    except PermissionError:
        raise FileError(403, f"{target}: permission denied") from None


def open_for_writing(path: str | None):
    """A temporary file beside the target; `finish_write` renames it into place."""
    target = resolve(path)
    if not path:
        raise FileError(400, "a file path is needed")
    if target.is_dir():
        raise FileError(400, f"{target} is a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.upload-{os.getpid()}-{id(target)}")
        return target, temporary, open(temporary, "wb")
    except PermissionError:
        raise FileError(403, f"{target}: permission denied") from None
    except NotADirectoryError:
        raise FileError(400, f"{target.parent} is not a directory") from None
