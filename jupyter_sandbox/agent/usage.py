"""What only the inside of the sandbox can tell: disk used in the home folder, listening ports."""

from __future__ import annotations

import os
import time
from collections.abc import Set as AbstractSet

LISTEN = "0A"
# When someone last used the sandbox through the agent (files, commands, terminals, git).
ACTIVITY = {"last": time.time()}


# Docker's embedded DNS resolver listens in every container on 127.0.0.11; it is no app of the user's.
DOCKER_DNS = "0B00007F"


def listening_sockets() -> list[tuple[str, int, str]]:
    """(local address as the kernel writes it, port, socket inode) of listening TCP sockets."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == LISTEN:
                        address, port = fields[1].rsplit(":", 1)
                        found.append((address, int(port, 16), fields[9]))
        except OSError:
            continue
    return found


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets a process holds open."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _ephemeral_range() -> range:
    """The ports the kernel hands out to a bind to port 0 (no one types one of these into a URL)."""
    try:
        low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())  # noqa: SIM115
        return range(low, high + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def machinery_ports(kernel_pid: int | None) -> set[int]:
    """Ports the sandbox's own machinery listens on besides the fixed ones: any of the agent's process
    (its tunnels and channels), and those the inner kernel's process got from the OS (port 0: the
    debugger's, a comm's). A server the user starts in the kernel on a port of their choosing stays."""
    mine = socket_inodes(os.getpid())
    kernels = socket_inodes(kernel_pid) if kernel_pid else set()
    ephemeral = _ephemeral_range()
    return {port for _, port, inode in listening_sockets() if inode in mine or (inode in kernels and port in ephemeral)}


def listening_ports(hidden: AbstractSet[int] = frozenset()) -> list[int]:
    """Ports the user's programs listen on: not Docker's DNS, not the `hidden` ones."""
    return sorted({port for address, port, _ in listening_sockets() if address != DOCKER_DNS and port not in hidden})


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
