"""The one host-side client of a sandbox's agent: typed methods, one place for deadlines, caps and checks.

Everything the host asks an agent goes through `AgentClient` (async, over the transport in
agent_http.py: every connect, read and call has a deadline and no thread is held while an agent is
slow). Callers that live in a thread of their own (kernel magics and lifecycle, the manager, the git
credential relay) run the SAME coroutines to their end with `run_blocking`; the streamed ones (exec
output, file transfers) also watch a `threading.Event` that the kernel sets on an interrupt.

The agent runs inside the sandbox, so its answers are hostile: each method reduces the answer to the
fields and types its caller may use (`shapes.reduce`, the `checked_*` helpers), and every failure of
the agent becomes a domain error (errors.py) whose message a person can read.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import json
import re
import threading
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Coroutine
from datetime import datetime, timezone
from typing import IO, Any, Callable, TypeVar

from . import errors, shapes
from .agent_http import AgentError, AgentResponse, AgentTimeout, AsyncAgent, error_message

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0
SMALL_ANSWER = 65536
MAX_LOG_LINE = 1024 * 1024
MAX_STREAM_LINE = 1024 * 1024
TRANSFER_CHUNK = 256 * 1024
# A streamed command with no limit of its own says nothing while it computes: its call has this
# deadline instead of the idle one (the user's way out is an interrupt, which sets `cancel`).
UNLIMITED_COMMAND = 30 * 86400.0
CANCEL_POLL = 0.1


class Cancelled(Exception):
    """A streamed operation was cancelled by its caller (the `cancel` event was set)."""


async def cancellable(awaitable: Awaitable[T], cancel: threading.Event | None) -> T:
    """Await `awaitable` unless `cancel` (set from another thread) is set first: then its task is
    cancelled, which closes its connection to the agent, and Cancelled is raised."""
    if cancel is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=CANCEL_POLL)
            if done:
                if cancel.is_set() and task.exception() is not None:
                    raise Cancelled()  # the failure was the cancelled command going away
                return task.result()
            if cancel.is_set():
                raise Cancelled()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


# The agent speaks HTTP; what its refusals mean, as domain errors. A status not listed is the
# caller's error (400) when 4xx, the agent's failure otherwise.
_AGENT_REFUSALS: dict[int, type[errors.SandboxOperationError]] = {
    400: errors.InvalidInput,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.Gone,
    413: errors.PayloadTooLarge,
    429: errors.LimitReached,
    507: errors.InsufficientStorage,
}


def domain_error(exc: AgentError) -> errors.SandboxOperationError:
    """An agent failure (transport or refusal) as the domain error a person is shown."""
    if isinstance(exc, AgentTimeout):
        return errors.TimedOut(str(exc))
    status = exc.status
    if status is not None and status != 401 and (400 <= status < 500 or status == 507):
        return _AGENT_REFUSALS.get(status, errors.InvalidInput)(str(exc).split(": ", 1)[-1])
    return errors.AgentUnavailable(f"the sandbox's agent failed: {exc}")


def malformed(what: str) -> errors.AgentUnavailable:
    return errors.AgentUnavailable(f"the sandbox's agent sent {what}")


def reduced(answer: Any, shape: str) -> Any:
    try:
        return shapes.reduce(answer, shapes.AGENT_SHAPES[shape])
    except shapes.ShapeError as exc:
        raise malformed(f"a malformed answer: {exc}") from None


# -- answer checks ----------------------------------------------------------------------------

_ENTRY_KINDS: dict[str, Any] = {
    "name": str,
    "path": str,
    "type": str,
    "size": int,
    "mode": int,
    "mtime": (int, float),
    "uid": int,
    "gid": int,
    "target": str,
}


def checked_entry(entry: Any) -> dict[str, Any]:
    """A file entry from the agent, reduced to fields of the expected types (mode as octal text)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("path"), str):
        raise malformed("a malformed file entry")
    clean = {
        k: v
        for k, v in entry.items()
        if k in _ENTRY_KINDS and isinstance(v, _ENTRY_KINDS[k]) and not isinstance(v, bool)
    }
    if "mode" in clean:
        clean["mode"] = format(clean["mode"], "o")
    return clean


def checked_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise malformed(f"malformed {what}")
    return value


def checked_listing(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": str(answer.get("path", "")),
        "entries": [checked_entry(e) for e in checked_list(answer.get("entries"), "entries")],
        "truncated": bool(answer.get("truncated")),
    }


def checked_usage(answer: dict[str, Any]) -> dict[str, Any]:
    """Disk used in the home folder and listening ports, as the sandbox reports them (checked)."""
    disk: dict[str, Any] = answer["disk"] if isinstance(answer.get("disk"), dict) else {}
    ports: list[Any] = answer["ports"] if isinstance(answer.get("ports"), list) else []
    return {
        "disk_bytes": disk.get("bytes") if isinstance(disk.get("bytes"), int) else None,
        "disk_partial": bool(disk.get("partial")),
        "ports": sorted({p for p in ports if isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536})[:1000],
    }


def checked_events(answer: dict[str, Any]) -> tuple[int, list[dict[str, Any]]] | None:
    """(seq, events) from the agent's /events answer, or None when it is malformed."""
    seq, events = answer.get("seq"), answer.get("events")
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(events, list):
        return None
    return seq, [event for event in events if isinstance(event, dict)]


def _query(path: str, query: dict[str, Any] | None) -> str:
    if query:
        path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    return path


class _Namespace:
    def __init__(self, client: AgentClient) -> None:
        self.client = client


class Files(_Namespace):
    async def list(self, path: str, recursive: bool = False) -> dict[str, Any]:
        answer = await self.client.call("GET", "/files", {"path": path, "recursive": "1" if recursive else "0"})
        return checked_listing(answer)

    async def stat(self, path: str) -> dict[str, Any]:
        return checked_entry(await self.client.call("GET", "/files/info", {"path": path}))

    async def delete(self, path: str, recursive: bool = False) -> None:
        await self.client.call("DELETE", "/files", {"path": path, "recursive": "1" if recursive else "0"})

    async def mkdir(self, path: str, mode: Any = "755") -> dict[str, Any]:
        return checked_entry(await self.client.call("POST", "/files/folder", body={"path": path, "mode": mode}))

    async def move(self, source: str, destination: str) -> dict[str, Any]:
        answer = await self.client.call("POST", "/files/move", body={"source": source, "destination": destination})
        return checked_entry(answer)

    async def move_staged(self, source: str, destination: str) -> dict[str, Any]:
        """A staged upload moved to its place: {path, size} as an upload answers."""
        answer = await self.client.call("POST", "/files/move", body={"source": source, "destination": destination})
        size = answer.get("size")
        return {"path": str(answer.get("path", "")), "size": size if isinstance(size, int) else None}

    async def set_permissions(self, path: str, mode: Any, owner: Any, group: Any) -> dict[str, Any]:
        body = {"path": path, "mode": mode, "owner": owner, "group": group}
        return checked_entry(await self.client.call("POST", "/files/permissions", body=body))

    async def replace(self, files: builtins.list[str], pattern: Any, new_value: Any) -> dict[str, Any]:
        body = {"files": files, "pattern": pattern, "new_value": new_value}
        answer = await self.client.call("POST", "/files/replace", body=body, timeout=300)
        return {"results": checked_list(answer.get("results"), "results")}

    async def search(self, path: str, pattern: str) -> dict[str, Any]:
        answer = await self.client.call("GET", "/files/search", {"path": path, "pattern": pattern}, timeout=120)
        return {
            "files": [f for f in checked_list(answer.get("files"), "files") if isinstance(f, str)],
            "truncated": bool(answer.get("truncated")),
        }

    async def find(self, path: str, pattern: str) -> dict[str, Any]:
        answer = await self.client.call("GET", "/files/find", {"path": path, "pattern": pattern}, timeout=120)
        matches = [
            m
            for m in checked_list(answer.get("matches"), "matches")
            if isinstance(m, dict)
            and isinstance(m.get("file"), str)
            and isinstance(m.get("line"), int)
            and isinstance(m.get("content"), str)
        ]
        return {
            "matches": matches,
            "timed_out": bool(answer.get("timed_out")),
            "truncated": bool(answer.get("truncated")),
        }

    async def download(self, path: str, archive: str | None = None) -> AgentResponse:
        """The answer to GET /files/content, opened and known good (the caller reads and closes it)."""
        query = {"path": path, **({"format": archive} if archive else {})}
        response = await self.client.open("GET", _query("/files/content", query))
        if response.status >= 400:
            try:
                raw = await self.client.guarded(response.read_all(SMALL_ANSWER))
            finally:
                response.close()
            raise domain_error(AgentError(f"agent answered {response.status}: {error_message(raw)}", response.status))
        return response

    async def open_upload(self, path: str, size: int | None) -> AgentResponse:
        """PUT /files/content with its body still to send (`size` None: chunked)."""
        return await self.client.guarded(
            self.client.transport.open(
                "PUT",
                _query("/files/content", {"path": path}),
                content_type="application/octet-stream",
                stream_body=size,
            )
        )

    async def send(self, upload: AgentResponse, chunk: bytes, chunked: bool) -> None:
        await self.client.guarded(upload.write(chunk, chunked=chunked))

    async def finish_upload(self, upload: AgentResponse, chunked: bool) -> dict[str, Any]:
        """The agent's answer to a finished upload: {path, size}, checked."""
        answer = await self.client.guarded(self.client.transport.finish_upload(upload, chunked))
        body = await self.client.guarded(answer.read_all(SMALL_ANSWER))
        try:
            parsed = json.loads(body)
        except ValueError:
            raise malformed("an answer to the upload that is not JSON") from None
        if answer.status >= 400:
            message = parsed.get("message", "") if isinstance(parsed, dict) else ""
            raise domain_error(
                AgentError(f"agent answered {answer.status}: {str(message)[:500] or answer.status}", answer.status)
            )
        if not isinstance(parsed, dict) or not isinstance(parsed.get("size"), int) or isinstance(parsed["size"], bool):
            raise malformed("an answer to the upload with an unexpected shape")
        return {"path": str(parsed.get("path", "")), "size": parsed["size"]}

    async def download_to(
        self, path: str, destination: IO[bytes], max_bytes: int, cancel: threading.Event | None = None
    ) -> int:
        """Copy a sandbox file into `destination`, never more than `max_bytes`; the bytes copied."""
        return await cancellable(self._download_to(path, destination, max_bytes), cancel)

    async def _download_to(self, path: str, destination: IO[bytes], max_bytes: int) -> int:
        response = await self.download(path)
        try:
            announced = response.header("Content-Length")
            if announced is not None and announced.isdigit() and int(announced) > max_bytes:
                raise errors.PayloadTooLarge(
                    f"{path} is {int(announced):,} bytes, more than the limit of {max_bytes:,}"
                )
            copied = 0
            while True:
                chunk = await self.client.guarded(response.read(TRANSFER_CHUNK))
                if not chunk:
                    return copied
                copied += len(chunk)
                if copied > max_bytes:
                    raise errors.PayloadTooLarge(f"{path} is larger than the limit of {max_bytes:,} bytes")
                destination.write(chunk)
        finally:
            response.close()

    async def upload_from(self, path: str, source: IO[bytes], size: int) -> dict[str, Any]:
        """Send `size` bytes read from `source` to a sandbox file: {path, size} as the agent answers."""
        upload = await self.open_upload(path, size)
        try:
            sent = 0
            while sent < size:
                chunk = source.read(min(TRANSFER_CHUNK, size - sent))
                if not chunk:
                    raise errors.InvalidInput(f"the file to upload ended after {sent:,} of {size:,} bytes")
                await self.send(upload, chunk, chunked=False)
                sent += len(chunk)
            return await self.finish_upload(upload, chunked=False)
        finally:
            upload.close()


class Git(_Namespace):
    async def status(self, repo: str) -> dict[str, Any]:
        return reduced(await self.client.call("GET", "/git/status", {"path": repo}), "git_status")

    async def branches(self, repo: str) -> dict[str, Any]:
        return reduced(await self.client.call("GET", "/git/branches", {"path": repo}), "git_branches")

    async def delete_branch(self, repo: str, name: str) -> dict[str, Any]:
        answer = await self.client.call("DELETE", "/git/branches", {"path": repo, "name": name})
        return reduced(answer, "git_branches")

    async def run(self, operation: str, request: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
        """A POST git operation (clone, checkout, add, commit, push, pull, branches), answer unchecked:
        the caller redacts credentials from it first, then reduces it (`reduced`)."""
        return await self.client.call("POST", f"/git/{operation}", body=request, timeout=timeout)


class Processes(_Namespace):
    async def exec(
        self, command: str | builtins.list[str], cwd: str | None, env: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        answer = await self.client.call(
            "POST",
            "/process/exec",
            body={"command": command, "cwd": cwd, "env": env, "timeout": timeout},
            timeout=timeout + 30,
        )
        if not isinstance(answer.get("exit_code"), int) or isinstance(answer.get("exit_code"), bool):
            raise malformed("a malformed result")
        return {
            "exit_code": answer["exit_code"],
            "timed_out": bool(answer.get("timed_out")),
            "stdout": str(answer.get("stdout", "")),
            "stderr": str(answer.get("stderr", "")),
        }

    async def exec_stream(
        self,
        command: str | builtins.list[str],
        on_output: Callable[[str, str], None],
        cancel: threading.Event | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run a command, calling on_output(stream, text) as its output comes; the exit record
        ({exit_code, timed_out}). Cancelled when `cancel` is set (the agent kills the command when
        its connection goes)."""
        return await cancellable(self._exec_stream(command, on_output, cwd, env, timeout), cancel)

    async def _exec_stream(
        self,
        command: str | builtins.list[str],
        on_output: Callable[[str, str], None],
        cwd: str | None,
        env: dict[str, str] | None,
        timeout: float | None,
    ) -> dict[str, Any]:
        body = json.dumps({"command": command, "cwd": cwd, "env": env or {}, "timeout": timeout, "stream": True})
        deadline = timeout + 30 if timeout else UNLIMITED_COMMAND
        response = await self.client.open("POST", "/process/exec", body.encode(), timeout=deadline)
        try:
            if response.status >= 400:
                raw = await self.client.guarded(response.read_all(SMALL_ANSWER))
                raise domain_error(
                    AgentError(f"agent answered {response.status}: {error_message(raw)}", response.status)
                )
            while True:
                line = await self.client.guarded(response.readline(MAX_STREAM_LINE + 1))
                if not line:
                    raise malformed("output that ended without an exit code")
                try:
                    chunk = json.loads(line)
                except ValueError:
                    raise malformed("malformed output") from None
                if not isinstance(chunk, dict):
                    raise malformed("malformed output")
                if "exit_code" in chunk:
                    code = chunk["exit_code"]
                    if not isinstance(code, int) or isinstance(code, bool):
                        raise malformed("a malformed exit record")
                    return {"exit_code": code, "timed_out": bool(chunk.get("timed_out"))}
                stream, text = chunk.get("stream"), chunk.get("text")
                if stream in ("stdout", "stderr") and isinstance(text, str):
                    on_output(stream, text)
        finally:
            response.close()


class Sessions(_Namespace):
    async def list(self) -> dict[str, Any]:
        return reduced(await self.client.call("GET", "/sessions"), "sessions")

    async def create(self, session_id: Any, cwd: str | None, env: Any) -> dict[str, Any]:
        body = {"id": session_id, "cwd": cwd, "env": env}
        return reduced(await self.client.call("POST", "/sessions", body=body), "session")

    async def get(self, session_id: str) -> dict[str, Any]:
        return reduced(await self.client.call("GET", f"/sessions/{session_id}"), "session")

    async def delete(self, session_id: str) -> None:
        await self.client.call("DELETE", f"/sessions/{session_id}")

    async def run(self, session_id: str, command: Any, run_async: bool) -> dict[str, Any]:
        body = {"command": command, "run_async": run_async}
        answer = await self.client.call("POST", f"/sessions/{session_id}/commands", body=body, timeout=3600)
        return reduced(answer, "command" if run_async else "command_run")

    async def send_input(self, session_id: str, command_id: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.client.call("POST", f"/sessions/{session_id}/commands/{command_id}/input", body=body)
        return reduced(answer, "input")

    async def kill(self, session_id: str, command_id: str) -> dict[str, Any]:
        return reduced(await self.client.call("POST", f"/sessions/{session_id}/commands/{command_id}/kill"), "command")

    async def logs(self, session_id: str, command_id: str) -> dict[str, Any]:
        answer = await self.client.call("GET", f"/sessions/{session_id}/commands/{command_id}/logs")
        return {
            "exit_code": answer.get("exit_code"),
            "stdout": str(answer.get("stdout", "")),
            "stderr": str(answer.get("stderr", "")),
        }

    async def follow_logs(self, session_id: str, command_id: str) -> AsyncIterator[dict[str, Any]]:
        """A command's followed logs: its newline-delimited JSON objects, one by one, each checked."""
        response = await self.client.open("GET", f"/sessions/{session_id}/commands/{command_id}/logs?follow=1")
        try:
            if response.status >= 400:
                if response.status < 500:
                    raise _AGENT_REFUSALS.get(response.status, errors.InvalidInput)("the command is not there")
                raise errors.AgentUnavailable("the command is not there")
            while True:
                line = await self.client.guarded(response.readline(MAX_LOG_LINE + 1))
                if not line:
                    return
                try:
                    chunk = json.loads(line)
                except ValueError:
                    raise malformed("malformed logs") from None
                if not isinstance(chunk, dict):
                    raise malformed("malformed logs")
                yield chunk
        finally:
            response.close()


PTY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def checked_pty(answer: Any) -> dict[str, Any]:
    """A PTY as the agent describes it, checked field by field (its `created` as ISO 8601, UTC)."""
    pty = reduced(answer, "pty")
    if not PTY_ID.fullmatch(pty["id"]) or pty["status"] not in ("running", "exited"):
        raise malformed("a malformed PTY")
    if not (0 < pty["cols"] <= 1000 and 0 < pty["rows"] <= 1000) or len(pty["cwd"]) > 4096:
        raise malformed("a malformed PTY")
    if (pty["status"] == "running") != (pty["exit_code"] is None):
        raise malformed("a malformed PTY")
    try:
        pty["created"] = datetime.fromtimestamp(pty["created"], timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        raise malformed("a malformed PTY") from None
    return pty


class Ptys(_Namespace):
    """Named PTYs (agent/ptys.py). Their output goes over the websocket, not through these calls."""

    async def list(self) -> builtins.list[dict[str, Any]]:
        answer = await self.client.call("GET", "/ptys")
        return [checked_pty(p) for p in checked_list(answer.get("ptys"), "PTYs")]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return checked_pty(await self.client.call("POST", "/ptys", body=body))

    async def get(self, pty_id: str) -> dict[str, Any]:
        return checked_pty(await self.client.call("GET", f"/ptys/{pty_id}"))

    async def kill(self, pty_id: str) -> dict[str, Any]:
        return checked_pty(await self.client.call("DELETE", f"/ptys/{pty_id}", timeout=15))

    async def resize(self, pty_id: str, cols: int, rows: int) -> dict[str, Any]:
        return checked_pty(await self.client.call("POST", f"/ptys/{pty_id}/resize", body={"cols": cols, "rows": rows}))

    async def connect(self, pty_id: str, on_message: Callable[[Any], None] | None = None) -> Any:
        """The agent's /ptys/{id}/connect websocket (tornado's client connection): its recent output,
        then live. What it sends is the sandbox's: read it with ptys.exit_code_of and as opaque bytes."""
        from tornado import httpclient, websocket

        request = httpclient.HTTPRequest(
            f"ws://{self.client.host}:{self.client.port}/ptys/{pty_id}/connect",
            headers={"Authorization": f"token {self.client.token}"},
            connect_timeout=10,
        )
        try:
            return await websocket.websocket_connect(
                request, on_message_callback=on_message, max_message_size=MAX_STREAM_LINE
            )
        except httpclient.HTTPClientError as exc:
            if exc.code == 404:
                raise errors.NotFound(f"there is no PTY {pty_id!r}") from None
            raise errors.AgentUnavailable(f"the sandbox's agent refused the PTY connection: {exc}") from None
        except OSError as exc:
            raise errors.AgentUnavailable(f"could not reach the sandbox's agent: {exc}") from None


class Kernel(_Namespace):
    async def restart(self, timeout: float = 30, announce: bool = False) -> dict[str, Any]:
        """A fresh Python process; with `announce`, an event tells an attached kernel of it."""
        query = {"announce": "1"} if announce else None
        return await self.client.call("POST", "/kernel/restart", query, timeout=timeout)

    async def interrupt(self, timeout: float = 30) -> dict[str, Any]:
        return await self.client.call("POST", "/kernel/interrupt", timeout=timeout)

    async def activity(self, timeout: float = 5) -> dict[str, Any]:
        """Tell the agent the sandbox is in use (a host-side cell ran), for its idle clock."""
        return await self.client.call("POST", "/activity", timeout=timeout)


class AgentClient:
    """One sandbox's agent. Every method is a coroutine; failures are domain errors."""

    def __init__(self, transport: AsyncAgent, call_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sandbox_id = transport.sandbox_id
        self.transport = transport
        self.call_timeout = call_timeout
        self.files = Files(self)
        self.git = Git(self)
        self.processes = Processes(self)
        self.sessions = Sessions(self)
        self.ptys = Ptys(self)
        self.kernel = Kernel(self)

    @classmethod
    def to(cls, sandbox_id: str, where: Any, **timeouts: float) -> AgentClient:
        """The client of the agent at `where` (anything with host, port and token, such as what
        SandboxManager.agent returns); `timeouts`: connect_timeout, idle_timeout, call_timeout."""
        call_timeout = timeouts.pop("call_timeout", DEFAULT_TIMEOUT)
        return cls(AsyncAgent(sandbox_id, where.host, where.port, where.token, **timeouts), call_timeout)

    @classmethod
    def at(cls, host: str, port: int, token: str, sandbox_id: str = "", **timeouts: float) -> AgentClient:
        """The client of the agent listening at host:port (tests and tools that know only an address)."""
        call_timeout = timeouts.pop("call_timeout", DEFAULT_TIMEOUT)
        return cls(AsyncAgent(sandbox_id, host, port, token, **timeouts), call_timeout)

    @property
    def host(self) -> str:
        return self.transport.host

    @property
    def port(self) -> int:
        return self.transport.port

    @property
    def token(self) -> str:
        return self.transport.token

    async def guarded(self, awaitable: Awaitable[T]) -> T:
        """Await a transport step, its failure turned into a domain error."""
        try:
            return await awaitable
        except AgentError as exc:
            raise domain_error(exc) from None

    async def call(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One JSON call, within `timeout` (the client's call timeout when None)."""
        return await self.guarded(
            self.transport.request(method, _query(path, query), body, timeout=timeout or self.call_timeout)
        )

    async def open(
        self, method: str, path: str, body: bytes | None = None, timeout: float | None = None
    ) -> AgentResponse:
        """A streamed answer (with no `timeout`: no overall deadline, the idle one per read)."""
        return await self.guarded(self.transport.open(method, path, body, timeout=timeout))

    async def health(self, timeout: float = 5) -> dict[str, Any]:
        answer = await self.call("GET", "/health", timeout=timeout)
        if isinstance(answer.get("last_activity"), (int, float)) and not isinstance(answer["last_activity"], bool):
            try:
                answer["last_activity_at"] = datetime.fromtimestamp(answer["last_activity"], timezone.utc).isoformat()
            except (OverflowError, OSError, ValueError):
                answer["last_activity_at"] = None
        else:
            answer["last_activity_at"] = None
        return answer

    async def usage(self, timeout: float = 10) -> dict[str, Any]:
        return checked_usage(await self.call("GET", "/usage", timeout=timeout))

    async def events(self, after: int, wait: float) -> tuple[int, list[dict[str, Any]]]:
        answer = await self.call("GET", "/events", {"after": int(after), "timeout": wait}, timeout=wait + 10)
        checked = checked_events(answer)
        if checked is None:
            raise malformed("malformed events")
        return checked

    async def wait_until_up(self, timeout: float = 30, poll: float = 0.05) -> dict[str, Any]:
        """Poll /health until the agent answers (a started sandbox), without holding a thread."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                return await self.call("GET", "/health", timeout=2)
            except errors.SandboxOperationError as exc:  # not up yet, whatever it answered
                if loop.time() > deadline:
                    raise errors.TimedOut(
                        f"sandbox {self.sandbox_id}'s agent did not come up within {timeout:.0f} s: {exc}"
                    ) from None
                await asyncio.sleep(poll)


def run_blocking(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one of the async calls to its end from blocking code (kernel threads, the manager, the
    CLI): on a private loop in this thread, or, when this thread already runs a loop, in a short-lived
    thread of its own. The same coroutines as the async callers', not a second implementation."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-call") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
