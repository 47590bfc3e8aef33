"""What the REST API does, without the HTTP: find the caller's sandbox, call its agent, check answers.

Blocking work (Docker, the agent over HTTP) runs in a thread pool so the server's event loop never
waits on a sandbox. Every failure becomes an `ApiError` with the HTTP status a person would expect:
404 for a sandbox that is not there (or not the caller's), 409 for a stopped one, 502 when the agent
is gone or answers garbage.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import urllib.parse
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from traitlets import Bool, Float, Int, Unicode, Union
from traitlets.config import LoggingConfigurable

from . import binding, network, preview, shapes
from .client import AgentError, StreamingAgentClient
from .docker_backend import DockerUnavailable, ImageNotFound, SandboxError
from .manager import Sandbox, SandboxManager
from .spec import LABEL_PREFIX, SpecError, parse_size, user_ports

MAX_PATH = 4096
MAX_NAME = 255


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_path(value: Any, what: str = "path", required: bool = True) -> str:
    """A sandbox path as the API takes it: relative to /home/sandbox, or absolute inside the sandbox."""
    if value is None or value == "":
        if required:
            raise ApiError(400, f"{what} is required")
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{what} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{what} is not valid Unicode text") from None
    if len(value) > MAX_PATH or any(len(part) > MAX_NAME for part in value.split("/")):
        raise ApiError(400, f"{what} is too long (at most {MAX_PATH} characters, {MAX_NAME} per name)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ApiError(400, f"{what} may not contain control characters (NUL, newline, ...)")
    if any(part == ".." for part in value.split("/")):
        raise ApiError(400, f"{what} may not contain '..'; give the path from /home/sandbox or an absolute one")
    if any(part.startswith("-") for part in value.split("/")):
        raise ApiError(400, f"{what} may not have a name starting with '-'")
    return value


def _passed_status(status: int) -> int:
    """The agent's error status as the API answers it: the caller's errors (4xx) and a full home (507)
    as they are, any other failure of the agent as 502."""
    return status if 400 <= status < 500 or status == 507 else 502


class AgentUpload:
    """An upload streamed to the agent over a plain async TCP stream.

    Each chunk is written as it arrives and the next is read only once it has been handed to the
    socket, so memory stays flat whatever the size, with no thread hop per chunk.
    """

    def __init__(self, host: str, port: int, token: str, path: str, size: int | None) -> None:
        self.host, self.port, self.token, self.path, self.size = host, port, token, path, size
        self.chunked = size is None
        self.stream: Any = None

    async def open(self) -> None:
        from tornado.tcpclient import TCPClient

        self.stream = await TCPClient().connect(self.host, self.port)
        framing = "Transfer-Encoding: chunked" if self.chunked else f"Content-Length: {self.size}"
        head = (f"PUT /files/content?{urllib.parse.urlencode({'path': self.path})} HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\nAuthorization: token {self.token}\r\n"
                f"Content-Type: application/octet-stream\r\n{framing}\r\nConnection: close\r\n\r\n")
        await self.stream.write(head.encode())

    async def send(self, chunk: bytes) -> None:
        from tornado.iostream import StreamClosedError

        try:
            if self.chunked:
                await self.stream.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            else:
                await self.stream.write(chunk)
        except StreamClosedError:
            raise ApiError(502, "the sandbox's agent closed the upload") from None

    async def finish(self) -> dict[str, Any]:
        from tornado import httputil
        from tornado.iostream import StreamClosedError

        try:
            if self.chunked:
                await self.stream.write(b"0\r\n\r\n")
            head = await self.stream.read_until(b"\r\n\r\n", max_bytes=65536)
            start, _, rest = head.decode("latin-1").partition("\r\n")
            status = httputil.parse_response_start_line(start).code
            headers = httputil.HTTPHeaders.parse(rest)
            length = int(headers.get("Content-Length", "0"))
            if length > 65536:
                raise ApiError(502, "the sandbox's agent sent an over-long answer")
            body = await self.stream.read_bytes(length) if length else b""
        except (StreamClosedError, httputil.HTTPInputError, ValueError):
            raise ApiError(502, "the sandbox's agent did not answer the upload properly") from None
        finally:
            self.close()
        try:
            answer = json.loads(body)
        except ValueError:
            raise ApiError(502, "the sandbox's agent answered with something that is not JSON") from None
        if status >= 400:
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            raise ApiError(_passed_status(status), str(message)[:500] or f"the agent answered {status}")
        if not isinstance(answer, dict) or not isinstance(answer.get("size"), int):
            raise ApiError(502, "the sandbox's agent answered with an unexpected shape")
        return answer

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


class SandboxService(LoggingConfigurable):
    max_upload_size = Union([Int(), Unicode()], default_value="10g", config=True, help=(
        "Largest file accepted by PUT .../files/content, e.g. '10g'; larger uploads get 413 before "
        "their body is read."))
    max_multipart_size = Union([Int(), Unicode()], default_value="100m", config=True, help=(
        "Largest multipart body of POST .../files/upload (it is held in memory while parsed)."))
    start_stopped = Bool(False, config=True, help=(
        "Start a stopped sandbox when an API call needs it, instead of answering 409."))
    preview_url_template = Unicode("http://{port}-{sandbox_id}.localhost:{server_port}/", config=True, help=(
        "Address of a preview. The default works on one machine (browsers resolve *.localhost to "
        "loopback); a hub with a wildcard domain sets e.g. 'https://{port}-{sandbox_id}.preview.example.org/'. "
        "The host part is how the server recognises preview requests."))
    reap_interval = Float(30.0, config=True, help=(
        "Seconds between checks for idle sandboxes (SandboxManager.idle_timeout) and long-stopped ones "
        "(SandboxManager.auto_delete_after), and for sandboxes whose kernel died without releasing "
        "them (SandboxManager.orphan_grace). 0: none of these checks."))
    pool_interval = Float(5.0, config=True, help=(
        "Seconds between checks that the warm pool (SandboxManager.warm_pool_size) is full."))
    server_port = 0
    _busy: set[str]

    def __init__(self, manager: SandboxManager, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manager = manager
        self._busy = set()

    # -- plumbing ---------------------------------------------------------------------------

    async def blocking(self, function: Callable, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, function, *args)
        except DockerUnavailable as exc:
            raise ApiError(503, str(exc)) from None
        except (SpecError, ImageNotFound) as exc:
            raise ApiError(400, str(exc)) from None
        except SandboxError as exc:
            raise ApiError(404 if "there is no sandbox" in str(exc) else 500, str(exc)) from None
        except AgentError as exc:
            if exc.status is not None and _passed_status(exc.status) != 502:
                raise ApiError(exc.status, str(exc).split(": ", 1)[-1]) from None
            raise ApiError(502, f"the sandbox's agent failed: {exc}") from None

    async def sandbox(self, sandbox_id: str, running: bool = True) -> Sandbox:
        sandbox = await self.blocking(self.manager.get, sandbox_id)
        if sandbox.owner != self.manager.owner:
            raise ApiError(404, f"there is no sandbox {sandbox_id!r}")
        if running and not sandbox.running:
            if not self.start_stopped and not self.manager.was_idle_stopped(sandbox):
                raise ApiError(409, f"sandbox {sandbox_id} is {sandbox.state}; start it first "
                                    f"(POST /sandbox/api/sandboxes/{sandbox_id}/start)")
            sandbox = await self.blocking(self.manager.start, sandbox)
            await self.blocking(self.manager.wait_for_agent, sandbox)
        return sandbox

    async def agent(self, sandbox_id: str) -> StreamingAgentClient:
        return self.manager.agent(await self.sandbox(sandbox_id))

    async def call(self, sandbox_id: str, method: str, path: str, query: dict[str, Any] | None = None,
                   body: dict[str, Any] | None = None, timeout: float = 60, shape: str | None = None) -> Any:
        """Call the agent; with `shape` (a key of shapes.AGENT_SHAPES) the answer is reduced to it."""
        client = await self.agent(sandbox_id)
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        answer = await self.blocking(lambda: client.request(method, path, body, timeout=timeout))
        if shape is None:
            return answer
        try:
            return shapes.reduce(answer, shapes.AGENT_SHAPES[shape])
        except shapes.ShapeError as exc:
            raise ApiError(502, f"the sandbox's agent sent a malformed answer: {exc}") from None

    # -- sandboxes --------------------------------------------------------------------------

    def describe(self, sandbox: Sandbox) -> dict[str, Any]:
        return sandbox.to_dict()

    async def list(self, kernel_id: str | None) -> list[dict[str, Any]]:
        if kernel_id is not None:
            try:
                binding.check_kernel_id(kernel_id)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        found = await self.blocking(lambda: self.manager.list(owner=self.manager.owner, kernel_id=kernel_id))
        # The warm pool's sandboxes belong to nobody yet.
        return [self.describe(s) for s in found if not s.pool]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"image", "cpu", "memory", "disk", "pids", "env", "labels", "network"}
        unknown = set(body) - allowed
        if unknown:
            raise ApiError(400, f"unknown fields: {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
        overrides: dict[str, Any] = {}
        for key in ("image", "cpu", "pids"):
            if key in body:
                overrides[key] = body[key]
        if "cpu" in overrides and (isinstance(overrides["cpu"], bool) or not isinstance(overrides["cpu"], (int, float))):
            raise ApiError(400, "cpu must be a number")
        if "pids" in overrides and (isinstance(overrides["pids"], bool) or not isinstance(overrides["pids"], int)):
            raise ApiError(400, "pids must be a whole number")
        for key in ("memory", "disk"):
            if key in body:
                try:
                    overrides[key] = parse_size(body[key], key)
                except SpecError as exc:
                    raise ApiError(400, str(exc)) from None
        for key in ("env", "labels"):
            value = body.get(key, {})
            if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise ApiError(400, f"{key} must map strings to strings")
            overrides[key] = value
        if any(k.startswith(LABEL_PREFIX) for k in overrides.get("labels", {})):
            raise ApiError(400, f"labels starting with {LABEL_PREFIX} are reserved")
        policy = self._policy(body["network"]) if "network" in body else None

        def make() -> Sandbox:
            spec = self.manager.check_allowed(self.manager.default_spec(**overrides))
            sandbox = self.manager.create(spec, network_policy=policy)
            self.manager.wait_for_agent(sandbox)
            return sandbox

        return self.describe(await self.blocking(make))

    def _policy(self, value: Any) -> "network.EgressPolicy":
        try:
            return self.manager.network_policy(value)
        except network.PolicyError as exc:
            raise ApiError(400, str(exc)) from None

    async def update(self, sandbox_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PATCH: for now the egress policy, changed live."""
        unknown = set(body) - {"network"}
        if unknown or not body:
            raise ApiError(400, "only network can be changed here, e.g. {\"network\": {\"mode\": \"none\"}}")
        sandbox = await self.sandbox(sandbox_id, running=False)
        policy = self._policy(body["network"])
        await self.blocking(self.manager.set_egress, sandbox, policy)
        return await self.get(sandbox_id)

    async def get(self, sandbox_id: str) -> dict[str, Any]:
        sandbox = await self.sandbox(sandbox_id, running=False)
        info = self.describe(sandbox)
        info["network"] = self.manager.egress(sandbox).to_dict()
        info["limits"] = await self.blocking(self.manager.limits, sandbox)
        info["disk"] = await self.blocking(self.manager.disk_enforcement, sandbox)
        info["last_activity"] = None
        info["usage"], info["uptime_seconds"], info["ports"] = {}, None, []
        if sandbox.running:
            info["usage"] = await self.blocking(self.manager.usage, sandbox)
            info["uptime_seconds"] = await self.blocking(self.manager.uptime, sandbox)
            try:
                # Passive calls: looking at a sandbox does not count as using it.
                health = await self.blocking(lambda: self.manager.agent(sandbox).health(timeout=5))
                if isinstance(health.get("last_activity"), (int, float)):
                    info["last_activity"] = datetime.fromtimestamp(health["last_activity"], timezone.utc).isoformat()
                inside = await self.blocking(lambda: self.manager.agent(sandbox).usage())
                info["usage"]["disk_bytes"] = inside["disk_bytes"]
                info["ports"] = user_ports(inside["ports"])
            except (ApiError, AgentError, SandboxError):
                pass  # a sandbox whose agent does not answer still has a state to show
        return info

    async def delete(self, sandbox_id: str) -> None:
        sandbox = await self.sandbox(sandbox_id, running=False)
        await self.blocking(self.manager.remove, sandbox)
        preview.forget(sandbox_id)

    async def start(self, sandbox_id: str) -> dict[str, Any]:
        sandbox = await self.sandbox(sandbox_id, running=False)

        def start() -> Sandbox:
            started = self.manager.start(sandbox)
            self.manager.wait_for_agent(started)
            return started

        return self.describe(await self.blocking(start))

    async def stop(self, sandbox_id: str) -> dict[str, Any]:
        sandbox = await self.sandbox(sandbox_id, running=False)
        return self.describe(await self.blocking(self.manager.stop, sandbox))

    async def _in_background(self, name: str, function: Callable[[], dict[str, list[str]]]) -> None:
        """Run one housekeeping task in a thread, never two of the same kind at once."""
        if name in self._busy:
            return
        self._busy.add(name)
        try:
            done = await asyncio.get_running_loop().run_in_executor(None, function)
        except (SandboxError, AgentError, SpecError) as exc:
            self.log.warning("jupyter-sandbox %s failed: %s", name, exc)
            return
        except Exception:
            self.log.exception("jupyter-sandbox %s failed", name)
            return
        finally:
            self._busy.discard(name)
        if any(done.values()):
            self.log.info("jupyter-sandbox %s: %s", name, {k: v for k, v in done.items() if v})

    async def reap(self) -> None:
        """Reconcile sandboxes of dead kernels, then stop idle and delete long-stopped ones."""
        await self._in_background("reconcile", self.manager.reconcile)
        await self._in_background("idle check", self.manager.reap)

    async def fill_pool(self) -> None:
        if self.manager.warm_pool_size > 0:
            await self._in_background("warm pool", self.manager.fill_pool)

    # -- previews ---------------------------------------------------------------------------

    async def create_preview(self, sandbox_id: str, body: dict[str, Any]) -> dict[str, Any]:
        await self.sandbox(sandbox_id, running=False)
        try:
            port = body.get("port")
            token, expires = preview.mint(sandbox_id, port, body.get("expires_in", preview.DEFAULT_EXPIRY))
        except preview.PreviewError as exc:
            raise ApiError(400, str(exc)) from None
        url = self.preview_url_template.format(port=port, sandbox_id=sandbox_id, server_port=self.server_port)
        return {"url": url, "token": token, "expires_at": datetime.fromtimestamp(expires, timezone.utc).isoformat(),
                "browser_url": f"{url}?token={token}", "header": "X-Sandbox-Preview-Token"}

    async def rotate_previews(self, sandbox_id: str) -> None:
        await self.sandbox(sandbox_id, running=False)
        preview.rotate(sandbox_id)

    async def ports(self, sandbox_id: str) -> dict[str, Any]:
        client = await self.agent(sandbox_id)
        usage = await self.blocking(client.usage)
        return {"ports": user_ports(usage["ports"])}

    # -- streaming --------------------------------------------------------------------------

    async def open_download(self, sandbox_id: str, path: str, archive: str | None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """An open response from the agent; read it in chunks with `read_chunk`."""
        client = await self.agent(sandbox_id)
        query = {"path": path, **({"format": archive} if archive else {})}

        def open_() -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
            connection = http.client.HTTPConnection(client.host, client.port, timeout=60)
            try:
                connection.request("GET", "/files/content?" + urllib.parse.urlencode(query),
                                   headers={"Authorization": f"token {client.token}"})
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                raise AgentError(f"agent not reachable: {exc}") from None
            if response.status >= 400:
                raw = response.read(65536)
                connection.close()
                try:
                    message = json.loads(raw).get("message", "")
                except (ValueError, AttributeError):
                    message = ""
                raise AgentError(f"agent answered {response.status}: {str(message)[:500]}", status=response.status)
            return connection, response

        return await self.blocking(open_)

    async def read_chunk(self, response: http.client.HTTPResponse, size: int = 256 * 1024) -> bytes:
        def read() -> bytes:
            try:
                return response.read(size)
            except (OSError, http.client.HTTPException) as exc:
                raise AgentError(f"the download broke off: {exc}") from None

        return await self.blocking(read)

    async def open_upload(self, sandbox_id: str, path: str, size: int | None) -> "AgentUpload":
        """A PUT to the agent whose body the caller writes chunk by chunk, asynchronously."""
        client = await self.agent(sandbox_id)
        upload = AgentUpload(client.host, client.port, client.token, path, size)
        try:
            await upload.open()
        except OSError as exc:
            raise ApiError(502, f"the sandbox's agent is not reachable: {exc}") from None
        return upload

    async def upload_files(self, sandbox_id: str, files: Iterable[tuple[str, bytes]]) -> list[dict[str, Any]]:
        client = await self.agent(sandbox_id)
        results = []
        for path, data in files:
            results.append(await self.blocking(client.upload, path, io.BytesIO(data), len(data)))
        return results
