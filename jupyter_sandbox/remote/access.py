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

from ..kernel.access import ConfigChange
from ..sandbox import errors
from ..sandbox.agent_client import Cancelled
from ..sandbox.network import EgressPolicy
from ..sandbox.operations import PREVIEW_HEADER, PreviewLink
from .api import ERROR_OF, MAX_MESSAGE, ServiceAPI

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
        # The output as it comes; an interrupt closes the connection, and the service kills the command.
        for item in self.api.exec_output(sandbox.id, script, cwd, timeout or EXEC_TIMEOUT, cancel):
            if "exit_code" in item:
                code = item["exit_code"]
                if not isinstance(code, int) or isinstance(code, bool):
                    raise errors.Internal("the sandbox service sent a malformed exec result")
                return {"exit_code": code, "timed_out": bool(item.get("timed_out"))}
            if "error" in item:
                raise streamed_error(item)
            if item.get("stream") in ("stdout", "stderr") and isinstance(item.get("text"), str):
                on_output(item["stream"], item["text"])
        if cancel is not None and cancel.is_set():
            raise Cancelled("interrupted")
        raise errors.AgentUnavailable("the sandbox service ended the command's output without its exit code")

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

    # -- configuration: checked by the service first (a dry run), then applied ----------------

    def plan_config(self, sandbox: Any, changes: dict[str, Any]) -> ConfigChange:
        answer = self.api.update(sandbox.id, {"config": changes, "dry_run": True})
        plan = answer.get("config") if isinstance(answer, dict) else None
        if not isinstance(plan, dict) or not isinstance(plan.get("changed"), list):
            raise errors.Internal("the sandbox service sent a malformed config plan")
        return ConfigChange(
            changed=[str(c) for c in plan["changed"]],
            restart=bool(plan.get("restart")),
            cpu=float(plan.get("cpu") or 0),
            memory=int(plan.get("memory") or 0),
            plan=changes,
        )

    def apply_config(self, sandbox: Any, change: ConfigChange, progress: Callable[[str], None]) -> Any:
        # This kernel names itself: the service allows a change that recreates the container while
        # a kernel is attached only to that kernel, which follows it (MagicResult.reconnect).
        body = {"config": change.plan, "kernel_id": getattr(sandbox, "kernel_id", None)}
        answer = self.api.update(sandbox.id, body, timeout=900)
        if not isinstance(answer, dict) or not isinstance(answer.get("config"), dict):
            raise errors.Internal("the sandbox service sent a malformed config answer")
        if change.restart:
            for line in answer["config"].get("progress") or []:
                progress(str(line))
        return RemoteSandbox.from_rest(answer.get("sandbox"), getattr(sandbox, "memory_limit", ""))

    # -- network and secrets ----------------------------------------------------------------------

    def network_policy(self, sandbox: Any) -> dict[str, Any]:
        return checked_policy(self.api.network(sandbox.id))

    def set_network(self, sandbox: Any, value: dict[str, Any]) -> dict[str, Any]:
        self.api.update(sandbox.id, {"network": value})
        return self.network_policy(sandbox)

    def network_log(self, sandbox: Any, limit: int) -> dict[str, Any]:
        found = self.api.network_log(sandbox.id, limit)
        entries = found.get("entries") if isinstance(found, dict) else None
        return {"entries": [e for e in entries or [] if isinstance(e, dict)]}

    def list_secrets(self, sandbox: Any) -> list[dict[str, Any]]:
        found = self.api.list_secrets(sandbox.id)
        return [checked_secret(s) for s in (found.get("secrets") if isinstance(found, dict) else None) or []]

    def set_secret(self, sandbox: Any, body: dict[str, Any]) -> dict[str, Any]:
        return checked_secret(self.api.set_secret(sandbox.id, body))

    def delete_secret(self, sandbox: Any, name: str) -> None:
        self.api.delete_secret(sandbox.id, name)

    # -- PTYs and the desktop ---------------------------------------------------------------------

    def list_ptys(self, sandbox: Any) -> list[dict[str, Any]]:
        found = self.api.ptys(sandbox.id)
        return [checked_pty(p) for p in (found.get("ptys") if isinstance(found, dict) else None) or []]

    def create_pty(self, sandbox: Any, body: dict[str, Any]) -> dict[str, Any]:
        return checked_pty(self.api.create_pty(sandbox.id, body))

    def kill_pty(self, sandbox: Any, pty_id: str) -> dict[str, Any]:
        return checked_pty(self.api.kill_pty(sandbox.id, pty_id))

    def pty_send(self, sandbox: Any, pty_id: str, text: str) -> int:
        sent = self.api.pty_input(sandbox.id, pty_id, text).get("sent")
        return sent if isinstance(sent, int) and not isinstance(sent, bool) else 0

    def pty_follow(
        self,
        sandbox: Any,
        pty_id: str,
        on_output: Callable[[str], None],
        until: str | None,
        timeout: float,
        cancel: threading.Event | None,
    ) -> int | None:
        for item in self.api.pty_output(sandbox.id, pty_id, until, timeout, cancel):
            if "exit_code" in item:
                code = item["exit_code"]
                return code if isinstance(code, int) and not isinstance(code, bool) else None
            if "error" in item:
                raise streamed_error(item)
            if isinstance(item.get("output"), str):
                on_output(item["output"])
        if cancel is not None and cancel.is_set():
            raise Cancelled("interrupted")
        raise errors.AgentUnavailable("the sandbox service ended the PTY's output without saying how")

    def desktop(self, sandbox: Any, action: str, body: dict[str, Any]) -> dict[str, Any]:
        status = self.api.desktop(sandbox.id, action, body)
        if not isinstance(status, dict) or not isinstance(status.get("status"), str):
            raise errors.Internal("the sandbox service sent a malformed desktop status")
        return status


def streamed_error(item: dict[str, Any]) -> errors.SandboxOperationError:
    """The domain error a streamed answer ended with ({"error": message, "status": HTTP status})."""
    status = item.get("status")
    kind = ERROR_OF.get(status, errors.Internal) if isinstance(status, int) else errors.Internal
    return kind(str(item["error"])[:MAX_MESSAGE])


def checked_policy(value: Any) -> dict[str, Any]:
    """GET .../network as the magics print it (describe_network's shape), from the service's answer."""
    if not isinstance(value, dict) or not isinstance(value.get("description"), str):
        raise errors.Internal("the sandbox service sent a malformed network policy")
    return {**value, "gateway": bool(value.get("gateway"))}


def checked_secret(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise errors.Internal("the sandbox service sent a malformed secret")
    hosts: list[Any] = value["hosts"] if isinstance(value.get("hosts"), list) else []
    return {"name": value["name"], "hosts": [str(h) for h in hosts]}


def checked_pty(value: Any) -> dict[str, Any]:
    """A PTY as the service described it, with the fields the magic prints (the service is trusted
    more than the sandbox, but its answer is still only parsed, never run)."""
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise errors.Internal("the sandbox service sent a malformed PTY")
    number = lambda key, default: value[key] if isinstance(value.get(key), int) else default  # noqa: E731
    return {
        **value,
        "status": str(value.get("status") or "unknown"),
        "exit_code": value.get("exit_code") if isinstance(value.get("exit_code"), int) else None,
        "cols": number("cols", 0),
        "rows": number("rows", 0),
        "cwd": str(value.get("cwd") or ""),
    }
