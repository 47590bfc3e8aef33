"""The start-up gate: what the relay knows about the inner kernel before it can pass requests on.

Until the sandbox's kernel has answered a kernel_info request on shell and said something on iopub
(so its subscription is live), control and stdin requests are held here; the one a front end gives
only seconds, kernel_info, is answered from what the image's kernel said before (recorded per image),
or after a bounded wait with a minimal answer. Shell requests wait in the relay's own ordered queue.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

from .replies import unknown_kernel_info

HANDSHAKE_RESEND_SECONDS = 0.5
# When the image's kernel info is not recorded yet (the image's first start on this host), a
# kernel_info request waits for the sandbox's own answer this long at most: front ends wait for it
# before sending anything (JupyterLab, nbclient and Jupyter Server give up after 60 s), and a first
# start may include building the image. Then it gets a minimal answer and the cells show progress.
KERNEL_INFO_WAIT_SECONDS = 10.0


class State(enum.Enum):
    STARTING = "starting"  # the sandbox is being created or started
    CONNECTING = "connecting"  # sockets connected, waiting for the inner kernel to answer
    READY = "ready"
    FAILED = "failed"  # the sandbox could not be brought up; the reason is kept
    DEAD = "dead"  # the container stopped; the next request starts it again


@dataclass
class Held:
    """A request that waits: for the sandbox, or (on shell) for the requests before it."""

    channel: str
    idents: list[bytes]
    frames: list[bytes]  # [signature, header, parent, metadata, content, *buffers]
    header: dict[str, Any]
    abort: bool = False  # an execute request queued behind a cell that failed with stop_on_error


class Handshake:
    """kernel_info_request sent (and resent) to a freshly connected inner kernel until it answers
    on shell and iopub has delivered a message, within `timeout` seconds."""

    def __init__(self, timeout: float, now: float | None = None) -> None:
        self.timeout = timeout
        self.started = time.monotonic() if now is None else now
        self.sent = 0.0
        self.shell = False
        self.iopub = False

    def tick(self, now: float | None = None) -> str | None:
        """ "timeout" when the kernel did not answer in time, "send" when a request is due, else None."""
        now = time.monotonic() if now is None else now
        if now - self.started > self.timeout:
            return "timeout"
        if now - self.sent >= HANDSHAKE_RESEND_SECONDS:
            self.sent = now
            return "send"
        return None

    @property
    def done(self) -> bool:
        return self.shell and self.iopub


class StartupGate:
    """The relay's view of the inner kernel's availability, and the requests that wait for it."""

    def __init__(self, wait_seconds: float = KERNEL_INFO_WAIT_SECONDS, language: str = "python") -> None:
        self.language = language
        self.state = State.STARTING
        self.failure = ""
        self.kernel_info: dict[str, Any] | None = None
        self.handshake: Handshake | None = None
        self.held: list[Held] = []  # control requests that wait for the sandbox
        self._kernel_info_deadline = time.monotonic() + wait_seconds
        self._kernel_info_overdue = False

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    @property
    def down(self) -> bool:
        """Failed or stopped: the next request that needs the sandbox starts it again."""
        return self.state in (State.FAILED, State.DEAD)

    @property
    def coming_up(self) -> bool:
        return self.state in (State.STARTING, State.CONNECTING)

    def connecting(self, timeout: float) -> Handshake:
        self.state = State.CONNECTING
        self.handshake = Handshake(timeout)
        return self.handshake

    def fail(self, state: State, message: str) -> None:
        self.state = state
        self.failure = message

    def kernel_info_answerable(self) -> bool:
        return bool(self.kernel_info) or self._kernel_info_overdue or self.down

    def kernel_info_reply(self) -> dict[str, Any]:
        return self.kernel_info or unknown_kernel_info(self.language)

    def learn(self, info: dict[str, Any] | None) -> bool:
        """A recorded kernel_info arrived; True if it was news."""
        if info is None or self.kernel_info is not None:
            return False
        self.kernel_info = info
        return True

    def kernel_info_overdue(self, now: float | None = None) -> bool:
        """True once, when a kernel_info request has waited long enough for an unknown image."""
        now = time.monotonic() if now is None else now
        if self.kernel_info is not None or self._kernel_info_overdue or self.ready:
            return False
        if now > self._kernel_info_deadline:
            self._kernel_info_overdue = True
            return True
        return False

    def hold(self, item: Held) -> None:
        self.held.append(item)

    def release(self) -> list[Held]:
        held, self.held = self.held, []
        return held
