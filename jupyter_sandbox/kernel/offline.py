"""Answers the proxy gives itself while the sandbox is not up yet.

Some front ends wait only a moment for a few requests: jupyter console gives a history request and
an is_complete request one second each, and a reply that comes later is taken for the reply to the
next request, so the console loses step with the kernel for the rest of the session. While the
sandbox starts, those two are answered here, the way a fresh ipykernel would answer them: an empty
history, and IPython's notion of a complete cell for Python code and `%`/`!` lines.
"""

from __future__ import annotations

import codeop
import re
import warnings
from typing import Any

_compiler = codeop.CommandCompiler()
# IPython's escapes: a line starting with one of these is not Python (magics, shell, help).
ESCAPES = ("%", "!", "?")
OPENERS = {"(": ")", "[": "]", "{": "}"}


def history_reply() -> dict[str, Any]:
    return {"status": "ok", "history": []}


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _open_brackets(code: str) -> bool:
    depth = 0
    for char in re.sub(r"(\"\"\"|'''|\"|')(?:\\.|(?!\1).)*\1|#[^\n]*", "", code, flags=re.S):
        if char in OPENERS:
            depth += 1
        elif char in OPENERS.values():
            depth -= 1
    return depth > 0


def is_complete(code: str) -> dict[str, Any]:
    """{"status": "complete" | "incomplete" | "invalid" [, "indent"]} as IPython decides it."""
    lines = code.split("\n")
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("%%"):
        # A cell magic's body ends with an empty line.
        return {"status": "complete"} if code.endswith("\n\n") else {"status": "incomplete", "indent": ""}
    python_lines = ["pass" if line.lstrip().startswith(ESCAPES) else line for line in lines]
    source = "\n".join(python_lines)
    if source.rstrip().endswith("\\"):
        return {"status": "incomplete", "indent": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = _compiler(source, "<cell>", "exec")
    except (SyntaxError, OverflowError, ValueError):
        return {"status": "invalid"}
    last = next((line for line in reversed(lines) if line.strip()), "")
    if compiled is not None and not (code.endswith("\n") is False and _needs_more(source, last)):
        return {"status": "complete"}
    if _open_brackets(source):
        return {"status": "incomplete", "indent": ""}
    indent = _indent_of(last)
    if last.rstrip().endswith(":"):
        indent += "    "
    return {"status": "incomplete", "indent": indent}


def _needs_more(source: str, last: str) -> bool:
    """A block opened above and not yet ended by an empty line (IPython keeps asking for lines)."""
    lines = [line for line in source.split("\n") if line.strip()]
    return len(lines) > 1 and any(line.rstrip().endswith(":") for line in lines[:-1]) and bool(_indent_of(last))
