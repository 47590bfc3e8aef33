"""Per-cell limits: how much output a cell may show, and how long it may run.

The counting is over bytes that came from the sandbox (content and buffers of output messages);
the decisions are returned to the relay, which speaks to the front end and the lifecycle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..sandbox.spec import format_size, parse_size

OUTPUT_MESSAGES = frozenset({"stream", "display_data", "update_display_data", "execute_result"})


@dataclass
class Cell:
    """An execute request from the front end, while it runs: for time and output limits."""

    header: dict[str, Any]
    idents: list[bytes]
    started: float | None = None
    output_bytes: int = 0
    capped: bool = False
    interrupted_at: float | None = None
    restarted: bool = False
    busy_sent: bool = False  # the proxy said busy while it waited for the sandbox


def output_limit_bytes(setting: str) -> int:
    """The output_limit setting in bytes; 0 is no limit."""
    return 0 if str(setting).strip() in ("", "0") else parse_size(setting, "output_limit")


@dataclass
class OutputLimit:
    limit: int = 0  # bytes; 0 is no limit

    def admit(self, cell: Cell, size: int) -> tuple[bool, str | None]:
        """Whether `size` more bytes of the cell's output are shown, and the notice to show once
        when the limit is passed."""
        if not self.limit:
            return True, None
        cell.output_bytes += size
        if cell.output_bytes <= self.limit:
            return True, None
        if cell.capped:
            return False, None
        cell.capped = True
        return False, (
            f"\n[sandbox] this cell's output passed the limit of {format_size(self.limit)}; the rest of it is not shown\n"
        )


@dataclass
class TimeLimit:
    """A cell that runs longer than `timeout` is interrupted; one that does not stop within `grace`
    of the interrupt gets its kernel restarted."""

    timeout: float = 0.0
    grace: float = 5.0

    def due(self, cells: list[Cell], now: float | None = None) -> list[tuple[str, Cell]]:
        """("interrupt", cell) and ("restart", cell) actions due now; each is given once per cell."""
        if not self.timeout:
            return []
        now = time.monotonic() if now is None else now
        actions: list[tuple[str, Cell]] = []
        for cell in cells:
            if cell.started is None or cell.restarted:
                continue
            if cell.interrupted_at is None and now - cell.started > self.timeout:
                cell.interrupted_at = now
                actions.append(("interrupt", cell))
            elif cell.interrupted_at is not None and now - cell.interrupted_at > self.grace:
                cell.restarted = True
                actions.append(("restart", cell))
        return actions

    def interrupt_notice(self) -> str:
        return f"\n[sandbox] the cell ran longer than its limit of {self.timeout:g} s and was interrupted\n"

    def restart_message(self) -> str:
        return (
            f"The cell ran longer than its limit of {self.timeout:g} s and did not stop within "
            f"{self.grace:g} s of the interrupt, so the Python process in the sandbox "
            "was restarted: variables are gone, files in /home/sandbox are kept."
        )
