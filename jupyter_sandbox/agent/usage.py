"""What only the inside of the sandbox can tell: disk used in the home folder, listening ports."""

from __future__ import annotations

import os
import time

LISTEN = "0A"
# When someone last used the sandbox through the agent (files, commands, terminals, git).
ACTIVITY = {"last": time.time()}


def listening_ports() -> list[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == LISTEN:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return sorted(ports)


def disk_used(root: str, max_seconds: float = 2.0, max_entries: int = 200_000) -> dict:
    """Bytes in files under root; 'partial' when the walk was cut short to stay quick."""
    total, seen, started = 0, 0, time.monotonic()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for item in entries:
                    seen += 1
                    if seen > max_entries or time.monotonic() - started > max_seconds:
                        return {"bytes": total, "partial": True}
                    try:
                        if item.is_dir(follow_symlinks=False):
                            stack.append(item.path)
                        else:
                            total += item.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return {"bytes": total, "partial": False}
