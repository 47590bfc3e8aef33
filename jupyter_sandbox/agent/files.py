"""File operations inside the sandbox, done by the agent as the sandbox user."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

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
    entries: list[dict[str, Any]] = []
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


def open_for_writing(path: str | None) -> tuple[Path, Path, IO[bytes]]:
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


def info(path: str | None) -> dict[str, Any]:
    target = resolve(path)
    try:
        return entry(target, target.lstat())
    except FileNotFoundError:
        raise FileError(404, f"{target} does not exist") from None
    except PermissionError:
        raise FileError(403, f"{target}: permission denied") from None


def walk(path: str | None, limit: int = 10_000) -> dict[str, Any]:
    """Every entry under a folder (not following symlinks), up to `limit`."""
    root = resolve(path)
    if not root.is_dir():
        raise FileError(404 if not root.exists() else 400, f"{root} is not a folder")
    found: list[dict[str, Any]] = []
    for folder, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames) + sorted(filenames):
            full = Path(folder) / name
            try:
                found.append(entry(full, full.lstat()))
            except OSError:
                continue
            if len(found) >= limit:
                return {"path": str(root), "entries": found, "truncated": True}
    return {"path": str(root), "entries": found, "truncated": False}


def make_folder(path: str | None, mode: int) -> dict[str, Any]:
    target = resolve(path)
    try:
        target.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chmod(target, mode)
    except FileExistsError:
        raise FileError(409, f"{target} exists and is not a folder") from None
    except PermissionError:
        raise FileError(403, f"{target}: permission denied") from None
    return info(str(target))


def delete(path: str | None, recursive: bool) -> None:
    import shutil

    target = resolve(path)
    if not path:
        raise FileError(400, "a path is needed")
    if os.path.realpath(target) in ("/", os.path.realpath(HOME)):
        raise FileError(400, f"refusing to delete {target}: it is the sandbox's root or home folder")
    try:
        if target.is_dir() and not target.is_symlink():
            if recursive:
                shutil.rmtree(target)
            else:
                target.rmdir()
        else:
            target.unlink()
    except FileNotFoundError:
        raise FileError(404, f"{target} does not exist") from None
    except OSError as exc:
        if exc.errno == 39:  # ENOTEMPTY
            raise FileError(409, f"{target} is not empty; pass recursive=true to delete it with its contents") from None
        raise FileError(403 if isinstance(exc, PermissionError) else 400, f"{target}: {exc.strerror}") from None


def move(source: str | None, destination: str | None) -> dict[str, Any]:
    src, dst = resolve(source), resolve(destination)
    if not source or not destination:
        raise FileError(400, "source and destination are needed")
    if not os.path.lexists(src):
        raise FileError(404, f"{src} does not exist")
    if os.path.lexists(dst):
        raise FileError(409, f"{dst} already exists")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
    except OSError as exc:
        raise FileError(400, f"cannot move {src} to {dst}: {exc.strerror}") from None
    return info(str(dst))


def set_permissions(path: str | None, mode: int | None, owner: str | None, group: str | None) -> dict[str, Any]:
    import grp
    import pwd

    target = resolve(path)
    if not os.path.lexists(target):
        raise FileError(404, f"{target} does not exist")
    try:
        if mode is not None:
            os.chmod(target, mode)
        if owner is not None or group is not None:
            uid = -1 if owner is None else (int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid)
            gid = -1 if group is None else (int(group) if group.isdigit() else grp.getgrnam(group).gr_gid)
            os.chown(target, uid, gid, follow_symlinks=False)
    except KeyError as exc:
        raise FileError(400, f"no such user or group: {exc.args[0]}") from None
    except PermissionError:
        raise FileError(403, f"{target}: the sandbox user may not make that change") from None
    return info(str(target))


def search(path: str | None, pattern: str, limit: int = 10_000) -> dict[str, Any]:
    import fnmatch

    root = resolve(path)
    if not root.is_dir():
        raise FileError(404, f"{root} is not a folder")
    matches: list[str] = []
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if fnmatch.fnmatchcase(name, pattern):
                matches.append(str(Path(folder) / name))
                if len(matches) >= limit:
                    return {"files": sorted(matches), "truncated": True}
    return {"files": sorted(matches), "truncated": False}


def replace(paths: list[str], pattern: str, new_value: str) -> list[dict[str, Any]]:
    """Literal replacement in each file; what changed, file by file."""
    results = []
    for path in paths:
        target = resolve(path)
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            results.append({"file": str(target), "success": False, "error": "does not exist"})
            continue
        except (UnicodeDecodeError, IsADirectoryError):
            results.append({"file": str(target), "success": False, "error": "not a UTF-8 text file"})
            continue
        except PermissionError:
            results.append({"file": str(target), "success": False, "error": "permission denied"})
            continue
        count = text.count(pattern)
        if count:
            temporary = target.with_name(f".{target.name}.replace-{os.getpid()}")
            temporary.write_text(text.replace(pattern, new_value), encoding="utf-8")
            os.chmod(temporary, stat.S_IMODE(target.stat().st_mode))
            os.replace(temporary, target)
        results.append({"file": str(target), "success": True, "replacements": count})
    return results


# Runs in its own process so that a catastrophic regex can be stopped by a time limit.
FIND_SCRIPT = r"""
import json, os, re, sys
root, pattern, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
regex = re.compile(pattern)
found = 0
for folder, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if d != '.git']
    for name in sorted(filenames):
        path = os.path.join(folder, name)
        try:
            with open(path, 'rb') as handle:
                if b'\0' in handle.read(8192):
                    continue
                handle.seek(0)
                for number, raw in enumerate(handle, 1):
                    line = raw.decode('utf-8', 'replace').rstrip('\n')
                    if regex.search(line):
                        print(json.dumps({'file': path, 'line': number, 'content': line[:1000]}), flush=True)
                        found += 1
                        if found >= limit:
                            sys.exit(0)
        except OSError:
            continue
"""
