"""The proxy kernel's one way to its sandbox's operations, for the `%sandbox` magics.

Two implementations: `LocalAccess` (the operations layer over this machine's engine, single-machine
mode) and `remote.access.RemoteAccess` (the sandbox service's REST API, hub mode). The magics parse
and present; what they do with the sandbox goes through here, and is the same operation either way.
Every method blocks (the magics run on a thread of their own) and raises domain errors.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import IO, Any, Callable, Protocol, TypeVar

T = TypeVar("T")
Write = Callable[[str, str], None]


def run(awaitable: Awaitable[T]) -> T:
    """Run one operation to its end from a thread that has no event loop of its own."""

    async def wrapped() -> T:
        return await awaitable

    return asyncio.run(wrapped())


@dataclass
class ConfigChange:
    """A checked `%sandbox config` change, before it is applied: what it changes, whether that needs a
    fresh container, the cpu and memory it makes, and what applying it needs (`plan`: the
    operations layer's ConfigPlan locally, the changes as sent in hub mode)."""

    changed: list[str]
    restart: bool
    cpu: float
    memory: int
    plan: Any


class SandboxAccess(Protocol):
    """What the magics do with the kernel's sandbox (`sandbox`: the kernel's record of it)."""

    hub: bool  # True: through the sandbox service; the magics that need this machine's engine say so

    def status(self, sandbox: Any, cell_timeout: float) -> dict[str, Any]: ...
    def exec_streaming(
        self,
        sandbox: Any,
        script: str,
        on_output: Write,
        cancel: threading.Event | None,
        timeout: float | None,
        cwd: str | None,
    ) -> dict[str, Any]: ...
    def list_folder(self, sandbox: Any, path: str) -> dict[str, Any]: ...
    def upload_from(self, sandbox: Any, path: str, source: IO[bytes], size: int) -> dict[str, Any]: ...
    def download_to(
        self, sandbox: Any, path: str, destination: IO[bytes], max_bytes: int, cancel: threading.Event | None
    ) -> int: ...
    def restart_sandbox(self, sandbox: Any, hard: bool) -> Any: ...
    def stop_sandbox(self, sandbox: Any) -> None: ...
    def listening_ports(self, sandbox: Any) -> list[int]: ...
    def preview_link(self, sandbox: Any, port: int, expires_in: float) -> Any: ...  # hub mode only
    def plan_config(self, sandbox: Any, changes: dict[str, Any]) -> ConfigChange: ...
    def apply_config(self, sandbox: Any, change: ConfigChange, progress: Callable[[str], None]) -> Any: ...
    def network_policy(self, sandbox: Any) -> dict[str, Any]: ...
    def set_network(self, sandbox: Any, value: dict[str, Any]) -> dict[str, Any]: ...
    def network_log(self, sandbox: Any, limit: int) -> dict[str, Any]: ...
    def list_secrets(self, sandbox: Any) -> list[dict[str, Any]]: ...
    def set_secret(self, sandbox: Any, body: dict[str, Any]) -> dict[str, Any]: ...
    def delete_secret(self, sandbox: Any, name: str) -> None: ...
    def list_ptys(self, sandbox: Any) -> list[dict[str, Any]]: ...
    def create_pty(self, sandbox: Any, body: dict[str, Any]) -> dict[str, Any]: ...
    def kill_pty(self, sandbox: Any, pty_id: str) -> dict[str, Any]: ...
    def pty_send(self, sandbox: Any, pty_id: str, text: str) -> int: ...
    def pty_follow(
        self,
        sandbox: Any,
        pty_id: str,
        on_output: Callable[[str], None],
        until: str | None,
        timeout: float,
        cancel: threading.Event | None,
    ) -> int | None: ...
    def desktop(self, sandbox: Any, action: str, body: dict[str, Any]) -> dict[str, Any]: ...


class LocalAccess:
    """Single-machine mode: the operations layer over this machine's engine."""

    hub = False

    def __init__(self, manager: Any) -> None:
        from .magics import operations_for

        self.manager = manager
        self.ops = operations_for(manager)

    def status(self, sandbox: Any, cell_timeout: float) -> dict[str, Any]:
        current = self.manager.get(sandbox.id)
        return run(self.ops.status_of(current)).to_magic(cell_timeout)

    def exec_streaming(
        self,
        sandbox: Any,
        script: str,
        on_output: Write,
        cancel: threading.Event | None,
        timeout: float | None,
        cwd: str | None,
    ) -> dict[str, Any]:
        return run(
            self.ops.exec_streaming(sandbox, script, on_output=on_output, cancel=cancel, timeout=timeout, cwd=cwd)
        )

    def list_folder(self, sandbox: Any, path: str) -> dict[str, Any]:
        return run(self.ops.list_folder(sandbox, path))

    def upload_from(self, sandbox: Any, path: str, source: IO[bytes], size: int) -> dict[str, Any]:
        return run(self.ops.upload_from(sandbox, path, source, size))

    def download_to(
        self, sandbox: Any, path: str, destination: IO[bytes], max_bytes: int, cancel: threading.Event | None
    ) -> int:
        return run(self.ops.download_to(sandbox, path, destination, max_bytes, cancel))

    def restart_sandbox(self, sandbox: Any, hard: bool) -> Any:
        return run(self.ops.restart_sandbox(sandbox, hard=hard))

    def stop_sandbox(self, sandbox: Any) -> None:
        run(self.ops.stop_sandbox(sandbox))

    def listening_ports(self, sandbox: Any) -> list[int]:
        return run(self.ops.listening_ports(sandbox))

    def preview_link(self, sandbox: Any, port: int, expires_in: float) -> Any:
        # Single-machine mode mints its links with the server's template (magics.preview).
        raise NotImplementedError

    def plan_config(self, sandbox: Any, changes: dict[str, Any]) -> ConfigChange:
        plan = run(self.ops.plan_config(sandbox, changes))
        return ConfigChange(plan.changed, plan.restart, plan.spec.cpu, plan.spec.memory, plan)

    def apply_config(self, sandbox: Any, change: ConfigChange, progress: Callable[[str], None]) -> Any:
        return run(self.ops.apply_config(sandbox, change.plan, progress if change.restart else None))

    def network_policy(self, sandbox: Any) -> dict[str, Any]:
        return self.ops.describe_network(sandbox)

    def set_network(self, sandbox: Any, value: dict[str, Any]) -> dict[str, Any]:
        run(self.ops.set_network(sandbox, value))
        return self.ops.describe_network(sandbox)

    def network_log(self, sandbox: Any, limit: int) -> dict[str, Any]:
        return run(self.ops.network_log(sandbox.id, limit))

    def list_secrets(self, sandbox: Any) -> list[dict[str, Any]]:
        return run(self.ops.list_secrets(sandbox.id))["secrets"]

    def set_secret(self, sandbox: Any, body: dict[str, Any]) -> dict[str, Any]:
        return run(self.ops.set_secret(sandbox.id, body))

    def delete_secret(self, sandbox: Any, name: str) -> None:
        run(self.ops.delete_secret(sandbox.id, name))

    def list_ptys(self, sandbox: Any) -> list[dict[str, Any]]:
        return run(self.ops.list_ptys(sandbox.id))["ptys"]

    def create_pty(self, sandbox: Any, body: dict[str, Any]) -> dict[str, Any]:
        return run(self.ops.create_pty(sandbox.id, body))

    def kill_pty(self, sandbox: Any, pty_id: str) -> dict[str, Any]:
        return run(self.ops.kill_pty(sandbox.id, pty_id))

    def pty_send(self, sandbox: Any, pty_id: str, text: str) -> int:
        return run(self.ops.pty_send(sandbox.id, pty_id, text))

    def pty_follow(
        self,
        sandbox: Any,
        pty_id: str,
        on_output: Callable[[str], None],
        until: str | None,
        timeout: float,
        cancel: threading.Event | None,
    ) -> int | None:
        return run(self.ops.pty_follow(sandbox.id, pty_id, on_output, until=until, timeout=timeout, cancel=cancel))

    def desktop(self, sandbox: Any, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if action == "stop":
            return run(self.ops.desktop_stop(sandbox.id))
        if action == "start":
            return run(self.ops.desktop_start(sandbox.id, body))
        return run(self.ops.desktop_status(sandbox.id))
