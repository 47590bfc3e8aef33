"""Completion of `%sandbox` lines: answered on the host (the inner kernel does not know the magic),
or `%sandbox` offered beside the inner kernel's own matches while a line starts to spell it.

Pure functions over the request's and reply's content: the relay decides where the answer goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cells import may_have_magic
from .magics import complete


@dataclass
class Completion:
    """What the host makes of a complete_request."""

    line_start: int
    typed: str  # the line up to the cursor
    extra: list[str]  # `%sandbox` spellings to add to the inner kernel's matches
    reply: dict[str, Any] | None = None  # a complete_reply made here, if the inner kernel is not asked


def plan(request: dict[str, Any], kernel_up: bool) -> Completion | None:
    """None when the request is the inner kernel's alone; else what the host adds or answers."""
    code, cursor = request.get("code"), request.get("cursor_pos")
    if not isinstance(code, str) or not isinstance(cursor, int) or not 0 <= cursor <= len(code):
        return None
    line_start = code.rfind("\n", 0, cursor) + 1
    line_end = code.find("\n", cursor)
    line = code[line_start : len(code) if line_end < 0 else line_end]
    typed = line[: cursor - line_start]
    prefix = [name for name in ("%sandbox", "%%sandbox") if typed and name.startswith(typed) and typed != name]
    if prefix and kernel_up:
        return Completion(line_start, typed, prefix)
    if prefix:
        matches, start = prefix, 0
    elif may_have_magic(code.encode()):
        found = complete(line, cursor - line_start)
        if found is None:
            return None
        matches, start = found
    else:
        return None
    reply = {
        "status": "ok",
        "matches": matches,
        "cursor_start": line_start + start,
        "cursor_end": cursor,
        "metadata": {},
    }
    return Completion(line_start, typed, [], reply)


def merge(reply: dict[str, Any], completion: Completion) -> dict[str, Any] | None:
    """The inner kernel's (filtered) reply with `%sandbox` first, all matches replacing from the line's
    start; None to pass the reply on as it is."""
    matches, start, end = reply.get("matches"), reply.get("cursor_start"), reply.get("cursor_end")
    line_start, typed = completion.line_start, completion.typed
    if (
        reply.get("status") != "ok"
        or not isinstance(matches, list)
        or not isinstance(start, int)
        or not line_start <= start <= line_start + len(typed)
    ):
        return None
    # A match that replaces from further right is the same match written from the line's start.
    lead = typed[: start - line_start]
    theirs = [lead + m for m in matches if isinstance(m, str)]
    added = [m for m in completion.extra if m not in theirs]
    reply["matches"] = added + theirs
    reply["cursor_start"] = line_start
    metadata = reply.get("metadata")
    types = metadata.get("_jupyter_types_experimental") if isinstance(metadata, dict) else None
    if isinstance(metadata, dict) and isinstance(types, list):
        metadata["_jupyter_types_experimental"] = [
            {"start": line_start, "end": end, "text": m, "type": "magic", "signature": ""} for m in added
        ] + [
            {**t, "start": line_start, "text": lead + t["text"]}
            for t in types
            if isinstance(t, dict) and isinstance(t.get("text"), str)
        ]
    return reply
