"""Splitting a cell into the `%sandbox` lines the proxy runs and the code the sandbox runs."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAGIC_RE = re.compile(r"^%sandbox(?=\s|$)")
CELL_MAGIC_RE = re.compile(r"^%%sandbox(?=\s|$)")
MARKER = b"%sandbox"


@dataclass
class Segment:
    kind: str  # "code", "line" (a %sandbox line) or "cell" (%%sandbox with its body)
    text: str
    body: str = ""


def may_have_magic(content: bytes) -> bool:
    """A cheap test on the raw message before any JSON is decoded."""
    return MARKER in content


def split_cell(code: str) -> list[Segment]:
    """Segments in order; code between `%sandbox` lines stays together. No magic: one code segment."""
    lines = code.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and CELL_MAGIC_RE.match(lines[first]):
        return [Segment("cell", lines[first][len("%%sandbox") :].strip(), "\n".join(lines[first + 1 :]))]
    segments: list[Segment] = []
    pending: list[str] = []
    for line in lines:
        if MAGIC_RE.match(line):
            if any(p.strip() for p in pending):
                segments.append(Segment("code", "\n".join(pending)))
            pending = []
            segments.append(Segment("line", line[len("%sandbox") :].strip()))
        else:
            pending.append(line)
    if any(p.strip() for p in pending):
        segments.append(Segment("code", "\n".join(pending)))
    return segments or [Segment("code", code)]


def has_magic(segments: list[Segment]) -> bool:
    return any(segment.kind != "code" for segment in segments)


# Subcommands that act on what exists: they wait for a sandbox being brought up, but start none.
ACT_ON_EXISTING = frozenset({"stop", "delete"})


def magic_waits(segment: Segment) -> str:
    """What a `%sandbox` segment needs before it runs, as code would: "" nothing (help, --help, a
    line that does not parse), "up" a sandbox being brought up to be up, "start" a running sandbox
    (one is started if there is none)."""
    words = segment.text.split()
    command = words[0] if words else "status"
    if command in ("help", "-h", "--help") or "--help" in words or "-h" in words:
        return ""
    return "up" if command in ACT_ON_EXISTING else "start"
