"""One of an inner kernel's channels as a byte stream, through the sandbox's agent.

The serving side of `.../sandboxes/{id}/kernel/channels` (the server extension, or the sandbox service
on another machine than the user's) opens the agent's `/tunnel/{port}` to the channel's port on the
sandbox's own loopback, at the address the backend gives for the agent: no published kernel port is
assumed, so this works for a sandbox on any node. The bytes are ZMTP, copied unchanged in both
directions: signatures are made and checked at the two ends (the proxy kernel's relay and the inner
kernel), and whatever the sandbox sends is checked there, by the relay, as for a local sandbox.
"""

from __future__ import annotations

import asyncio
import threading

from . import binding, errors
from .agent_client import AgentClient

MAX_HEAD = 4096
CONNECT_SECONDS = 10.0
CHUNK = 64 * 1024


async def open_tunnel(agent: AgentClient, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A byte stream to 127.0.0.1:port inside the sandbox. Domain errors when the agent does not
    answer or nothing listens there."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(agent.host, agent.port), CONNECT_SECONDS)
    except (OSError, asyncio.TimeoutError):
        raise errors.AgentUnavailable("the sandbox's agent did not answer") from None
    try:
        writer.write(
            (
                f"GET /tunnel/{int(port)} HTTP/1.1\r\nHost: agent\r\nAuthorization: token {agent.token}\r\n"
                "Upgrade: sandbox-tunnel\r\nConnection: Upgrade\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_SECONDS)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        raise errors.AgentUnavailable("the sandbox's agent did not open the kernel's channel") from None
    if len(head) > MAX_HEAD or not head.startswith(b"HTTP/1.1 101 "):
        writer.close()
        raise errors.AgentUnavailable("the kernel in the sandbox is not listening (is it starting again?)")
    return reader, writer


class ChannelLeases:
    """A kernel whose channels are connected here is alive, for this machine's housekeeping.

    A proxy kernel on this machine holds its lease itself (binding.KernelLease). One on another
    machine (hub mode) cannot: without a lease here, reconciliation would take its sandbox for an
    orphan's after `orphan_grace`, and a second kernel of the notebook would take it as free. So while
    any channel of a kernel is connected through this process, this process holds the kernel's lease
    for it (when nobody else does); the last channel to close gives it back, and reconciliation's
    grace counts from then, as for a local kernel that died."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[binding.KernelLease | None, int]] = {}
        self._lock = threading.Lock()

    def take(self, kernel_id: str | None) -> None:
        if not kernel_id:
            return
        with self._lock:
            lease, count = self._held.get(kernel_id, (None, 0))
            if count == 0:
                candidate = binding.KernelLease(kernel_id)
                # Held already (the kernel runs on this machine and holds it): nothing to do.
                lease = candidate if candidate.acquire(blocking=False) else None
            self._held[kernel_id] = (lease, count + 1)

    def give_back(self, kernel_id: str | None) -> None:
        if not kernel_id:
            return
        with self._lock:
            lease, count = self._held.get(kernel_id, (None, 0))
            if count <= 1:
                self._held.pop(kernel_id, None)
                if lease is not None:
                    lease.release()
            else:
                self._held[kernel_id] = (lease, count - 1)


LEASES = ChannelLeases()
