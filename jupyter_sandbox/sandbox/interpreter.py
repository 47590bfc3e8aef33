"""Which interpreter in an image may run the agent, and which folders its own PATH may hold.

The agent runs before any sandbox code and holds more than the sandbox does (its token, the calls the
host makes through it), so nothing the sandbox user can write may take part in starting it: not the
interpreter, not the folders on the way to it (a writable folder lets a file be swapped), not its
library folders (a `.pth` or `sitecustomize` there runs at start-up), not the folders its own `git`
and `tar` come from. Everything here is judged from the image's own file headers as the engine
reports them (owner and mode), before the sandbox's first process runs.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .records import PathStat

Stat = Callable[[str], Optional[PathStat]]

# In order of preference: the default image's environment (it has ipykernel), then system Pythons.
DEFAULT_CANDIDATES = ["/opt/sandbox-python/bin/python3", "/usr/local/bin/python3", "/usr/bin/python3"]
# The agent's own PATH: system folders only, each kept only when the sandbox user cannot write it.
SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
MAX_LINKS = 16
# Verdicts are remembered per image on the host; a change to what is judged makes them stale.
RULES_VERSION = 2


@dataclass
class Verdict:
    """The outcome for one image: the interpreter to use (or None) and why the others were refused."""

    python: str | None
    path: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"python": self.python, "path": self.path, "refused": self.refused}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(data.get("python"), list(data.get("path") or []), dict(data.get("refused") or {}))


class Judge:
    """Asks the engine about each path once (each question costs a round trip)."""

    def __init__(self, stat: Stat) -> None:
        self._stat = stat
        self._seen: dict[str, PathStat | None] = {}

    def stat(self, path: str) -> PathStat | None:
        if path not in self._seen:
            self._seen[path] = self._stat(path)
        return self._seen[path]

    def _owned(self, path: str, entry: PathStat, what: str) -> str | None:
        if entry.uid != 0:
            return f"{what} {path} belongs to uid {entry.uid}, not root"
        # A symlink's own mode means nothing; for everything else group or world write is a door.
        if entry.type != "symlink" and entry.mode & 0o022:
            return f"{what} {path} is writable by group or others (mode {entry.mode:o})"
        return None

    def folder(self, path: str) -> str | None:
        """Why `path` (a folder) and every folder above it might be changed by others, or None."""
        path = posixpath.normpath(path)
        chain = [path]
        while chain[-1] != "/":
            chain.append(posixpath.dirname(chain[-1]))
        for step in reversed(chain):
            entry = self.stat(step)
            if entry is None:
                return f"{step} does not exist"
            if entry.type == "symlink":
                return f"{step} is a symbolic link"
            if entry.type != "dir":
                return f"{step} is not a folder"
            problem = self._owned(step, entry, "folder")
            if problem:
                return problem
        return None

    def executable(self, path: str) -> tuple[str | None, str | None]:
        """(the real file behind `path`, None) when it and everything leading to it are root's and
        closed to others; else (None, why)."""
        current = posixpath.normpath(path)
        for _ in range(MAX_LINKS):
            problem = self.folder(posixpath.dirname(current))
            if problem:
                return None, problem
            entry = self.stat(current)
            if entry is None:
                return None, f"{current} does not exist"
            problem = self._owned(current, entry, "file")
            if problem:
                return None, problem
            if entry.type == "symlink":
                current = posixpath.normpath(posixpath.join(posixpath.dirname(current), entry.link))
                continue
            if entry.type != "file" or not entry.mode & 0o111:
                return None, f"{current} is not an executable file"
            return current, None
        return None, f"{path}: too many symbolic links"

    def library_folders(self, python: str, real: str) -> Iterable[str]:
        """The folders an interpreter imports from at start-up, as far as its paths tell."""
        version = re.match(r"python(\d+\.\d+)$", posixpath.basename(real))
        if not version:
            return []
        name = f"python{version.group(1)}"
        prefixes = [posixpath.dirname(posixpath.dirname(real))]
        venv = posixpath.dirname(posixpath.dirname(posixpath.normpath(python)))
        if self.stat(posixpath.join(venv, "pyvenv.cfg")) is not None:
            prefixes.insert(0, venv)
        folders = []
        for prefix in dict.fromkeys([*prefixes, "/usr/local"]):
            for tail in (name, f"{name}/site-packages", f"{name}/dist-packages", "python3/dist-packages"):
                folders.append(posixpath.join(prefix, "lib", tail))
        return [f for f in folders if self.stat(f) is not None]

    def python(self, candidate: str) -> str | None:
        """Why `candidate` may not run the agent, or None when it may."""
        if not posixpath.isabs(candidate):
            return "not an absolute path"
        real, problem = self.executable(candidate)
        if problem:
            return problem
        venv_config = posixpath.join(posixpath.dirname(posixpath.dirname(posixpath.normpath(candidate))), "pyvenv.cfg")
        entry = self.stat(venv_config)
        if entry is not None and (problem := self._owned(venv_config, entry, "file")):
            return problem
        for folder in self.library_folders(candidate, real or candidate):
            problem = self.folder(folder)
            if problem:
                return problem
        return None


def judge(stat: Stat, candidates: Iterable[str], home_of_agent: str | None = None) -> Verdict:
    """The first candidate the sandbox user cannot touch, and the system folders fit for its PATH.

    `home_of_agent` is the folder the host puts the agent's files in: the folder above it must be
    closed too, or the sandbox could move the agent's folder aside and put its own in its place."""
    judge_ = Judge(stat)
    verdict = Verdict(None)
    if home_of_agent:
        parent = posixpath.dirname(posixpath.normpath(home_of_agent))
        problem = judge_.folder(parent) if stat(parent) is not None else None
        if problem:
            verdict.refused[home_of_agent] = problem
            return verdict
    for candidate in candidates:
        problem = judge_.python(candidate)
        if problem is None:
            verdict.python = candidate
            break
        verdict.refused[candidate] = problem
    verdict.path = [
        folder for folder in SYSTEM_PATH if judge_.stat(folder) is not None and judge_.folder(folder) is None
    ]
    return verdict


def explain(verdict: Verdict, image: str) -> str:
    """Why no interpreter of `image` may run the agent, for a person."""
    reasons = "; ".join(f"{path}: {why}" for path, why in verdict.refused.items()) or "no candidates configured"
    return (
        f"the image {image} has no Python interpreter that the sandbox user cannot change, so the "
        f"sandbox's agent cannot be started safely ({reasons}). Use an image whose Python and its "
        "folders belong to root and are not writable by others, or name one in SandboxManager.agent_python."
    )
