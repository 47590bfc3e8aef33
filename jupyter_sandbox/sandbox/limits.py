"""What one sandbox (or one user) may hold of the server at once.

Calls for one sandbox pass through that sandbox's gate (a bounded number at a time), Docker calls run
on an executor of their own with a deadline each, and uploads reserve room in their user's budget
before a byte is read. A frozen, slow or flooding sandbox then fills its own gate, and the others'
calls go on as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Callable

from . import errors

# A sandbox's gate full is errors.Busy, a user's upload budget full errors.LimitReached, a Docker
# call past its deadline errors.TimedOut: the front doors decide what each looks like.
Busy = errors.Busy


class SandboxGates:
    """At most `limit` calls under way per sandbox; a call waits up to `wait` seconds for a place."""

    def __init__(self, limit: int, wait: float) -> None:
        self.limit, self.wait = max(1, limit), max(0.0, wait)
        # sandbox id -> [its semaphore, calls holding or waiting for a place]
        self._gates: dict[str, list[Any]] = {}

    async def acquire(self, sandbox_id: str) -> Callable[[], None]:
        """Take a place in the sandbox's gate; returns the (idempotent) release."""
        entry = self._gates.setdefault(sandbox_id, [asyncio.Semaphore(self.limit), 0])
        entry[1] += 1
        try:
            await asyncio.wait_for(entry[0].acquire(), self.wait)
        except asyncio.TimeoutError:
            self._leave(sandbox_id, entry)
            raise errors.Busy(
                f"sandbox {sandbox_id} is busy: {self.limit} calls to it are already under way "
                "(its agent may be slow or stopped); try again later",
            ) from None
        except BaseException:
            self._leave(sandbox_id, entry)
            raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                entry[0].release()
                self._leave(sandbox_id, entry)

        return release

    def _leave(self, sandbox_id: str, entry: list[Any]) -> None:
        entry[1] -= 1
        if entry[1] == 0 and self._gates.get(sandbox_id) is entry:
            # Nothing holds or waits: forget the sandbox, so ids that come and go cost nothing.
            del self._gates[sandbox_id]

    @contextlib.asynccontextmanager
    async def enter(self, sandbox_id: str) -> AsyncIterator[None]:
        release = await self.acquire(sandbox_id)
        try:
            yield
        finally:
            release()


class DockerCalls:
    """Blocking Docker Engine calls on an executor of their own (never the loop's shared default),
    each with a deadline: a wedged engine call answers 504 instead of holding its caller forever."""

    def __init__(self, threads: int, timeout: float) -> None:
        self.timeout = timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="sandbox-docker"
        )

    async def run(self, function: Callable, *args: Any, timeout: float | None = None) -> Any:
        future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        limit = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(future, limit)
        except asyncio.TimeoutError:
            raise errors.TimedOut(f"the Docker engine did not answer within {limit:.0f} s") from None


class UploadBudget:
    """Bytes of upload buffers each user holds at once. Every upload reserves its window before its
    body is read; a user over the budget is told so (429) instead of growing the server."""

    def __init__(self, per_user: int, window: int) -> None:
        self.per_user, self.window = per_user, window
        self._held: dict[str, int] = {}

    def held(self, user: str) -> int:
        return self._held.get(user, 0)

    def reserve(self, user: str) -> Reservation:
        if self.held(user) + self.window > self.per_user:
            raise errors.LimitReached(
                f"{user} already has {self.held(user) // self.window} uploads under way, the most "
                f"the server holds for one user at once ({self.per_user:,} bytes of buffers); "
                "try again when one has finished",
            )
        self._held[user] = self.held(user) + self.window
        return Reservation(self, user)


class Reservation:
    def __init__(self, budget: UploadBudget, user: str) -> None:
        self.budget, self.user, self.released = budget, user, False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        left = self.budget.held(self.user) - self.budget.window
        if left > 0:
            self.budget._held[self.user] = left
        else:
            self.budget._held.pop(self.user, None)
