"""The magics' way to the kernel's sandbox in hub mode: the sandbox service's REST API.

The same operations as kernel/access.py's LocalAccess, reached as this user over HTTP; the files the
magics read and write on this side (uploads from, downloads into the notebook's folder) are still
the user's own, on this machine, where the kernel runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Callable

from ..sandbox import errors
from ..sandbox.agent_client import Cancelled
from ..sandbox.network import EgressPolicy
from ..sandbox.operations import PREVIEW_HEADER, PreviewLink
from .api import ServiceAPI

# A `%sandbox exec` without --timeout: as long as the service lets one command run.
EXEC_TIMEOUT = 3600.0


@dataclass
class RemoteSandbox:
    """The kernel's record of a sandbox the service holds (what the magics and the relay read)."""

    id: str
    state: str = "running"
    workspace: str | None = None
    kernel_id: str | None = None
    image: str = ""
    memory_limit: str = ""
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @classmethod
    def from_rest(cls, info: Any, memory_limit: str = "") -> RemoteSandbox:
        if not isinstance(info, dict) or not isinstance(info.get("id"), str):
            raise errors.Internal("the sandbox service described a sandbox without an id")
        spec: dict[str, Any] = info["spec"] if isinstance(info.get("spec"), dict) else {}
        text = lambda key: info[key] if isinstance(info.get(key), str) else None  # noqa: E731
        return cls(
            id=info["id"],
            state=text("state") or "unknown",
            workspace=text("workspace"),
            kernel_id=text("kernel_id"),
            image=text("image") or "",
            memory_limit=memory_limit or str(spec.get("memory") or ""),
            spec=spec,
        )


def magic_status(info: dict[str, Any], cell_timeout: float) -> dict[str, Any]:
    """The REST status (SandboxStatus.to_rest) in the shape `%sandbox status` prints (to_magic)."""
    policy: dict[str, Any] = info["network"] if isinstance(info.get("network"), dict) else {}
    egress = EgressPolicy(
        mode=str(policy.get("mode") or "internet"),
        cidrs=[str(c) for c in policy.get("cidrs") or []],
        domains=[str(d) for d in policy.get("domains") or []],
    )
    return {
        "id": info.get("id"),
        "container": info.get("name"),
        "state": info.get("state"),
        "image": info.get("image"),
        "kernel_id": info.get("kernel_id"),
        "workspace": info.get("workspace"),
        "limits": {**(info.get("limits") or {}), "cell_timeout": cell_timeout},
        "disk": info.get("disk") or {"note": ""},
        "usage": info.get("usage") or {},
        "network": {"inter_sandbox": False, "egress": egress.describe(), **egress.to_dict()},
        "ports": info.get("ports") or [],
        "uptime_seconds": info.get("uptime_seconds"),
    }


class RemoteAccess:
    """Hub mode: each operation is one call of the service's API."""

    hub = True

    def __init__(self, api: ServiceAPI) -> None:
        self.api = api

    def status(self, sandbox: Any, cell_timeout: float) -> dict[str, Any]:
        return magic_status(self.api.get(sandbox.id), cell_timeout)

    def exec_streaming(
        self,
        sandbox: Any,
        script: str,
        on_output: Callable[[str, str], None],
        cancel: threading.Event | None,
        timeout: float | None,
        cwd: str | None,
    ) -> dict[str, Any]:
        # The API's exec answers when the command ends; the output is written then. An interrupt
        # stops waiting for it (the command runs out its timeout in the sandbox).
        answer: dict[str, Any] = {}

        def call() -> None:
            try:
                answer["result"] = self.api.exec(sandbox.id, script, cwd, timeout or EXEC_TIMEOUT)
            except errors.SandboxOperationError as exc:
                answer["error"] = exc

        worker = threading.Thread(target=call, daemon=True, name="sandbox-remote-exec")
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
            if cancel is not None and cancel.is_set() and worker.is_alive():
                raise Cancelled("interrupted")
        if "error" in answer:
            raise answer["error"]
        result = answer["result"]
        if not isinstance(result, dict) or not isinstance(result.get("exit_code"), int):
            raise errors.Internal("the sandbox service sent a malformed exec result")
        for name in ("stdout", "stderr"):
            if isinstance(result.get(name), str) and result[name]:
                on_output(name, result[name])
        return {"exit_code": result["exit_code"], "timed_out": bool(result.get("timed_out"))}

    def list_folder(self, sandbox: Any, path: str) -> dict[str, Any]:
        listing = self.api.list_files(sandbox.id, path)
        if not isinstance(listing, dict) or not isinstance(listing.get("entries"), list):
            raise errors.Internal("the sandbox service sent a malformed listing")
        return {
            "path": str(listing.get("path") or path or "/home/sandbox"),
            "entries": [e for e in listing["entries"] if isinstance(e, dict) and isinstance(e.get("name"), str)],
            "truncated": bool(listing.get("truncated")),
        }

    def upload_from(self, sandbox: Any, path: str, source: IO[bytes], size: int) -> dict[str, Any]:
        answer = self.api.upload(sandbox.id, path, source, size)
        return answer if isinstance(answer, dict) else {}

    def download_to(
        self, sandbox: Any, path: str, destination: IO[bytes], max_bytes: int, cancel: threading.Event | None
    ) -> int:
        return self.api.download(sandbox.id, path, destination, max_bytes, cancel)

    def restart_sandbox(self, sandbox: Any, hard: bool) -> Any:
        # The kernel's own restart: not announced back to it as one made from outside, and a hard one
        # allowed although a kernel (this one) is attached.
        after = self.api.kernel_action(sandbox.id, "restart", timeout=300, hard=hard)
        return RemoteSandbox.from_rest(after, getattr(sandbox, "memory_limit", ""))

    def stop_sandbox(self, sandbox: Any) -> None:
        self.api.stop(sandbox.id)

    def listening_ports(self, sandbox: Any) -> list[int]:
        answer = self.api.ports(sandbox.id)
        ports = answer.get("ports") if isinstance(answer, dict) else None
        return [p for p in ports or [] if isinstance(p, int) and not isinstance(p, bool)]

    def preview_link(self, sandbox: Any, port: int, expires_in: float) -> PreviewLink:
        answer = self.api.create_preview(sandbox.id, port, expires_in)
        if not isinstance(answer, dict) or not all(isinstance(answer.get(k), str) for k in ("url", "token")):
            raise errors.Internal("the sandbox service sent a malformed preview link")
        try:
            expires = int(datetime.fromisoformat(str(answer.get("expires_at"))).timestamp())
        except ValueError:
            expires = 0
        return PreviewLink(
            answer["url"],
            answer["token"],
            expires,
            header=str(answer.get("header") or PREVIEW_HEADER),
            script_url=str(answer.get("script_url") or ""),
        )
