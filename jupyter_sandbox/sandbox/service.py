"""What the REST API does, without the HTTP: find the caller's sandbox, call its agent, check answers.

Agents are called with async I/O (agent_http.py), each call through its sandbox's gate and with
deadlines; Docker calls run on an executor of their own (limits.py). So one sandbox that freezes,
trickles or floods holds its own gate and nothing the others need. Every failure becomes an
`ApiError` with the HTTP status a person would expect: 404 for a sandbox that is not there (or not
the caller's), 409 for a stopped one, 502 when the agent is gone or answers garbage, 503 when the
sandbox already has as many calls under way as it may, 504 when its agent or Docker missed a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import datetime, timezone
from typing import Any, Callable

from traitlets import Bool, Float, Int, Unicode, Union
from traitlets.config import LoggingConfigurable

from . import binding, git_credentials, network, preview, shapes
from .agent_http import AgentResponse, AgentTimeout, AsyncAgent
from .client import AgentError
from .docker_backend import DockerUnavailable, ImageNotFound, SandboxError
from .git_credentials import Credential, CredentialError, Remote
from .git_proxy import GitCredentialProxy, GitProxyError, run_call
from .limits import Busy, DockerCalls, SandboxGates, UploadBudget
from .manager import OwnerLimit, Sandbox, SandboxManager
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


class SandboxService(LoggingConfigurable):
    max_upload_size = Union(
        [Int(), Unicode()],
        default_value="10g",
        config=True,
        help=(
            "Largest file accepted by PUT .../files/content, e.g. '10g'; larger uploads get 413 before "
            "their body is read."
        ),
    )
    max_multipart_size = Union(
        [Int(), Unicode()],
        default_value="10g",
        config=True,
        help=(
            "Largest multipart body of POST .../files/upload. It is parsed as it arrives and each file "
            "is streamed to the sandbox, so this bounds the transfer, not the server's memory."
        ),
    )
    upload_buffer_per_user = Union(
        [Int(), Unicode()],
        default_value="64m",
        config=True,
        help=(
            "Upload buffers one user may hold in the server at once, e.g. '64m'. Each upload under way "
            "(PUT .../files/content or POST .../files/upload) reserves `upload_window` of it; a user "
            "over it gets 429 until an upload finishes."
        ),
    )
    upload_window = Union(
        [Int(), Unicode()],
        default_value="1m",
        config=True,
        help=(
            "Buffer one upload may hold in the server while the sandbox takes its bytes (a multipart "
            "part header longer than this is refused)."
        ),
    )
    max_calls_per_sandbox = Int(
        8,
        config=True,
        help=(
            "Calls to one sandbox (its agent and its Docker container) under way at once, streams "
            "included. More wait `busy_wait` seconds for a place, then get 503: a frozen or slow "
            "sandbox holds its own places and nothing the other sandboxes need."
        ),
    )
    busy_wait = Float(
        2.0,
        config=True,
        help=("Seconds a call waits for a place among its sandbox's `max_calls_per_sandbox` before 503."),
    )
    agent_connect_timeout = Float(
        5.0, config=True, help=("Seconds to connect to a sandbox's agent before the call fails with 504.")
    )
    agent_timeout = Float(
        60.0,
        config=True,
        help=(
            "Seconds a call to a sandbox's agent may take in all, for calls that have no deadline of "
            "their own (an exec has its command's timeout plus 30 s), before 504."
        ),
    )
    agent_idle_timeout = Float(
        30.0,
        config=True,
        help=(
            "Longest silence of a sandbox's agent in the middle of a call or a stream (download, "
            "followed logs, upload) before it is cut with 504."
        ),
    )
    docker_threads = Int(
        16,
        config=True,
        help=(
            "Threads for Docker Engine calls, apart from the server's shared executor. One sandbox can "
            "use at most `max_calls_per_sandbox` of them."
        ),
    )
    docker_timeout = Float(
        120.0,
        config=True,
        help=(
            "Seconds a Docker Engine call may take before the API call fails with 504 (creating a "
            "sandbox, which may build the image, has `create_timeout`)."
        ),
    )
    create_timeout = Float(
        900.0, config=True, help=("Seconds creating a sandbox may take, image build (first use) included, before 504.")
    )
    start_stopped = Bool(
        False, config=True, help=("Start a stopped sandbox when an API call needs it, instead of answering 409.")
    )
    preview_url_template = Unicode(
        "http://{port}-{sandbox_id}.localhost:{server_port}/",
        config=True,
        help=(
            "Address of a preview. The default works on one machine (browsers resolve *.localhost to "
            "loopback); a hub with a wildcard domain sets e.g. 'https://{port}-{sandbox_id}.preview.example.org/'. "
            "The host part is how the server recognises preview requests."
        ),
    )
    path_form_previews = Bool(
        True,
        config=True,
        help=(
            "Also serve previews at /sandbox/preview/{sandbox_id}/{port}/ on the Jupyter server's own address, "
            "for deployments where preview host names cannot be routed. Links always use "
            "preview_url_template; the path form is a fallback that shares the Jupyter origin (see the README's "
            "security model for what it cannot protect). False: that address answers 404."
        ),
    )
    reap_interval = Float(
        30.0,
        config=True,
        help=(
            "Seconds between checks for idle sandboxes (SandboxManager.idle_timeout) and long-stopped ones "
            "(SandboxManager.auto_delete_after), and for sandboxes whose kernel died without releasing "
            "them (SandboxManager.orphan_grace). 0: none of these checks."
        ),
    )
    pool_interval = Float(
        5.0, config=True, help=("Seconds between checks that the warm pool (SandboxManager.warm_pool_size) is full.")
    )
    server_port = 0
    _busy: set[str]

    def __init__(self, manager: SandboxManager, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manager = manager
        self._busy = set()
        self.gates = SandboxGates(self.max_calls_per_sandbox, self.busy_wait)
        self.docker = DockerCalls(self.docker_threads, self.docker_timeout)
        self.uploads = UploadBudget(
            parse_size(self.upload_buffer_per_user, "upload_buffer_per_user"),
            parse_size(self.upload_window, "upload_window"),
        )
        # Housekeeping (reaper, pool) has its own threads: it never waits behind API calls, nor they behind it.
        self._housekeeping = concurrent.futures.ThreadPoolExecutor(
            max_workers=3, thread_name_prefix="sandbox-housekeeping"
        )
        self.git_proxy = GitCredentialProxy(parent=self, log=self.log)
        self._git_calls = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="sandbox-git")

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Domain errors (Docker, specs, agents, limits) as the ApiError a person should see."""
        try:
            yield
        except Busy as exc:
            raise ApiError(exc.status, exc.message) from None
        except DockerUnavailable as exc:
            raise ApiError(503, str(exc)) from None
        except (SpecError, ImageNotFound) as exc:
            raise ApiError(400, str(exc)) from None
        except OwnerLimit as exc:
            raise ApiError(409, str(exc)) from None
        except SandboxError as exc:
            raise ApiError(404 if "there is no sandbox" in str(exc) else 500, str(exc)) from None
        except AgentTimeout as exc:
            raise ApiError(504, str(exc)) from None
        except AgentError as exc:
            if exc.status is not None and _passed_status(exc.status) != 502:
                raise ApiError(exc.status, str(exc).split(": ", 1)[-1]) from None
            raise ApiError(502, f"the sandbox's agent failed: {exc}") from None

    async def blocking(self, function: Callable, *args: Any, timeout: float | None = None) -> Any:
        """A blocking call (Docker, mostly) on the Docker executor, with its deadline."""
        with self.errors():
            return await self.docker.run(function, *args, timeout=timeout)

    async def awaited(self, awaitable: Awaitable[Any]) -> Any:
        with self.errors():
            return await awaitable

    @contextlib.asynccontextmanager
    async def gate(self, sandbox_id: str) -> AsyncIterator[None]:
        """A place among the sandbox's `max_calls_per_sandbox`, for the whole of one API call."""
        with self.errors():
            release = await self.gates.acquire(sandbox_id)
        try:
            yield
        finally:
            release()

    async def sandbox(self, sandbox_id: str, running: bool = True) -> Sandbox:
        sandbox = await self.blocking(self.manager.get, sandbox_id)
        if sandbox.owner != self.manager.owner:
            raise ApiError(404, f"there is no sandbox {sandbox_id!r}")
        if running and not sandbox.running:
            if not self.start_stopped and not self.manager.was_idle_stopped(sandbox):
                raise ApiError(
                    409,
                    f"sandbox {sandbox_id} is {sandbox.state}; start it first "
                    f"(POST /sandbox/api/sandboxes/{sandbox_id}/start)",
                )
            sandbox = await self.blocking(self.manager.start, sandbox)
            await self.wait_for_agent(sandbox)
        return sandbox

    def agent_for(self, sandbox: Sandbox) -> AsyncAgent:
        with self.errors():
            client = self.manager.agent(sandbox)
        return AsyncAgent(
            sandbox.id,
            client.host,
            client.port,
            client.token,
            connect_timeout=self.agent_connect_timeout,
            idle_timeout=self.agent_idle_timeout,
        )

    async def agent(self, sandbox_id: str) -> AsyncAgent:
        return self.agent_for(await self.sandbox(sandbox_id))

    async def wait_for_agent(self, sandbox: Sandbox, timeout: float = 30) -> dict[str, Any]:
        """Poll a started sandbox's agent until it answers, without holding a thread meanwhile."""
        agent = self.agent_for(sandbox)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await agent.request("GET", "/health", timeout=2)
            except AgentError as exc:
                if time.monotonic() > deadline:
                    with self.errors():
                        raise AgentTimeout(
                            f"sandbox {sandbox.id}'s agent did not come up within {timeout:.0f} s: {exc}"
                        ) from None
                await asyncio.sleep(0.05)

    async def call(
        self,
        sandbox_id: str,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
        shape: str | None = None,
    ) -> Any:
        """Call the agent; with `shape` (a key of shapes.AGENT_SHAPES) the answer is reduced to it."""
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        async with self.gate(sandbox_id):
            agent = await self.agent(sandbox_id)
            answer = await self.awaited(
                agent.request(method, path, body, timeout=self.agent_timeout if timeout is None else timeout)
            )
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
        # Unknown fields were refused already, against the route's schema (server_extension/validation.py).
        overrides: dict[str, Any] = {}
        for key in ("image", "cpu", "pids"):
            if key in body:
                overrides[key] = body[key]
        if "cpu" in overrides and (
            isinstance(overrides["cpu"], bool) or not isinstance(overrides["cpu"], (int, float))
        ):
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
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ApiError(400, f"{key} must map strings to strings")
            overrides[key] = value
        if any(k.startswith(LABEL_PREFIX) for k in overrides.get("labels", {})):
            raise ApiError(400, f"labels starting with {LABEL_PREFIX} are reserved")
        policy = self._policy(body["network"]) if "network" in body else None

        def make() -> Sandbox:
            spec = self.manager.check_allowed(self.manager.default_spec(**overrides))
            return self.manager.create(spec, network_policy=policy)

        sandbox = await self.blocking(make, timeout=self.create_timeout)
        await self.wait_for_agent(sandbox)
        return self.describe(sandbox)

    def _policy(self, value: Any) -> network.EgressPolicy:
        try:
            return self.manager.network_policy(value)
        except network.PolicyError as exc:
            raise ApiError(400, str(exc)) from None

    async def update(self, sandbox_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PATCH: for now the egress policy, changed live."""
        if "network" not in body:
            raise ApiError(400, 'only network can be changed here, e.g. {"network": {"mode": "none"}}')
        policy = self._policy(body["network"])
        async with self.gate(sandbox_id):
            sandbox = await self.sandbox(sandbox_id, running=False)
            await self.blocking(self.manager.set_egress, sandbox, policy)
            return await self._get(sandbox_id)

    async def get(self, sandbox_id: str) -> dict[str, Any]:
        async with self.gate(sandbox_id):
            return await self._get(sandbox_id)

    async def _get(self, sandbox_id: str) -> dict[str, Any]:
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
                agent = self.agent_for(sandbox)
                health = await self.awaited(agent.request("GET", "/health", timeout=5))
                if isinstance(health.get("last_activity"), (int, float)):
                    info["last_activity"] = datetime.fromtimestamp(health["last_activity"], timezone.utc).isoformat()
                inside = usage_of(await self.awaited(agent.request("GET", "/usage", timeout=10)))
                info["usage"]["disk_bytes"] = inside["disk_bytes"]
                info["ports"] = user_ports(inside["ports"])
            except (ApiError, AgentError, SandboxError):
                pass  # a sandbox whose agent does not answer still has a state to show
        return info

    async def delete(self, sandbox_id: str) -> None:
        # No gate: deleting a sandbox whose calls are all stuck is how its owner ends them.
        sandbox = await self.sandbox(sandbox_id, running=False)
        await self.blocking(self.manager.remove, sandbox)
        preview.forget(sandbox_id)
        git_credentials.forget(sandbox_id)

    async def start(self, sandbox_id: str) -> dict[str, Any]:
        async with self.gate(sandbox_id):
            sandbox = await self.sandbox(sandbox_id, running=False)
            started = await self.blocking(self.manager.start, sandbox)
            await self.wait_for_agent(started)
            return self.describe(started)

    async def stop(self, sandbox_id: str) -> dict[str, Any]:
        # No gate, like delete: stopping is the way out for a sandbox that holds all its places.
        sandbox = await self.sandbox(sandbox_id, running=False)
        return self.describe(await self.blocking(self.manager.stop, sandbox))

    async def _in_background(self, name: str, function: Callable[[], dict[str, list[str]]]) -> None:
        """Run one housekeeping task in a thread, never two of the same kind at once."""
        if name in self._busy:
            return
        self._busy.add(name)
        try:
            done = await asyncio.get_running_loop().run_in_executor(self._housekeeping, function)
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

    # -- git --------------------------------------------------------------------------------

    async def git(self, sandbox_id: str, operation: str, body: dict[str, Any], shape: str) -> Any:
        """A POST git operation. clone, pull and push may carry credentials (username + password for
        Basic, or token for Bearer): those never go to the sandbox, the host's proxy adds them to
        requests for the named repository while the call runs."""
        fields = git_credentials.CREDENTIAL_FIELDS
        try:
            credential = Credential.from_body(body)
        except CredentialError as exc:
            raise ApiError(400, str(exc)) from None
        request = {k: v for k, v in body.items() if k not in (*fields, "relay")}
        if operation not in ("clone", "pull", "push"):
            if credential is not None:
                raise ApiError(400, f"git {operation} takes no credentials (only clone, pull and push do)")
            return await self.call(sandbox_id, "POST", f"/git/{operation}", body=request, timeout=180, shape=shape)
        remote: Remote | None = None
        if operation == "clone":
            if not isinstance(body.get("url"), str):
                raise ApiError(400, "url is required")
            if credential is not None:
                remote = self._remote(body["url"])
            request["path"] = body.get("path") or git_credentials.clone_target(body["url"])
            check_path(request["path"])
        else:
            request.pop("url", None)
            if credential is not None:
                # Scoped to what the user named, never to the remote in the sandbox's .git/config.
                remote = (
                    self._remote(body["url"])
                    if body.get("url")
                    else git_credentials.recall(sandbox_id, body.get("path") or ".")
                )
                if remote is None:
                    raise ApiError(
                        400,
                        "say which repository these credentials are for: give url (its https:// "
                        "address); the host only knows the remotes of repositories cloned through this API",
                    )
        key = request.get("path") or "."
        if credential is None:
            answer = await self.call(sandbox_id, "POST", f"/git/{operation}", body=request, timeout=180)
        else:
            try:
                async with self.gate(sandbox_id):
                    sandbox = await self.sandbox(sandbox_id)
                    with self.errors():
                        client = self.manager.agent(sandbox)
                    # The call relays git's connections for as long as git runs: on threads of its own,
                    # not the Docker calls' (git calls are bounded per sandbox by the gate).
                    loop = asyncio.get_running_loop()
                    with self.errors():
                        answer = await loop.run_in_executor(
                            self._git_calls,
                            run_call,
                            self.git_proxy,
                            client,
                            operation,
                            request,
                            remote,
                            credential,
                            180,
                        )
            except GitProxyError as exc:
                raise ApiError(exc.status, exc.message) from None
            except ApiError as exc:
                raise ApiError(exc.status, credential.redact(exc.message)) from None
            answer = credential.redact(answer)
        if operation == "clone":
            git_credentials.remember(sandbox_id, key, body["url"])
        try:
            return shapes.reduce(answer, shapes.AGENT_SHAPES[shape])
        except shapes.ShapeError as exc:
            raise ApiError(502, f"the sandbox's agent sent a malformed answer: {exc}") from None

    @staticmethod
    def _remote(url: Any) -> Remote:
        try:
            return Remote.parse(url)
        except CredentialError as exc:
            raise ApiError(400, str(exc)) from None

    # -- previews ---------------------------------------------------------------------------

    async def create_preview(self, sandbox_id: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.gate(sandbox_id):
            await self.sandbox(sandbox_id, running=False)
        try:
            port = body.get("port")
            token, expires = preview.mint(sandbox_id, port, body.get("expires_in", preview.DEFAULT_EXPIRY))
        except preview.PreviewError as exc:
            raise ApiError(400, str(exc)) from None
        url = self.preview_url_template.format(port=port, sandbox_id=sandbox_id, server_port=self.server_port)
        return {
            "url": url,
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, timezone.utc).isoformat(),
            "browser_url": f"{url}?token={token}",
            "header": "X-Sandbox-Preview-Token",
        }

    async def rotate_previews(self, sandbox_id: str) -> None:
        async with self.gate(sandbox_id):
            await self.sandbox(sandbox_id, running=False)
        preview.rotate(sandbox_id)

    async def ports(self, sandbox_id: str) -> dict[str, Any]:
        usage = usage_of(await self.call(sandbox_id, "GET", "/usage", timeout=10))
        return {"ports": user_ports(usage["ports"])}

    # -- streaming --------------------------------------------------------------------------

    async def download(
        self,
        sandbox_id: str,
        path: str,
        archive: str | None,
        on_head: Callable[[AgentResponse], None],
        on_chunk: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """Stream a file (a folder as an archive) from the agent: `on_head` with the agent's answer
        once it is known good, then `on_chunk` for each piece, the next read only once it is sent."""
        query = {"path": path, **({"format": archive} if archive else {})}
        async with self.gate(sandbox_id):
            agent = await self.agent(sandbox_id)
            response = await self.awaited(agent.open("GET", "/files/content?" + urllib.parse.urlencode(query)))
            try:
                if response.status >= 400:
                    raw = await self.awaited(response.read_all(65536))
                    with self.errors():
                        raise AgentError(f"agent answered {response.status}: {error_text(raw)}", status=response.status)
                on_head(response)
                while True:
                    chunk = await self.awaited(response.read())
                    if not chunk:
                        return
                    await on_chunk(chunk)
            finally:
                response.close()

    async def follow_logs(
        self, sandbox_id: str, path: str, on_line: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        """A session command's followed logs: newline-delimited JSON objects, relayed one by one."""
        async with self.gate(sandbox_id):
            agent = await self.agent(sandbox_id)
            response = await self.awaited(agent.open("GET", path + "?follow=1"))
            try:
                if response.status >= 400:
                    raise ApiError(response.status if response.status < 500 else 502, "the command is not there")
                while True:
                    line = await self.awaited(response.readline(1024 * 1024 + 1))
                    if not line:
                        return
                    try:
                        chunk = json.loads(line)
                    except ValueError:
                        raise ApiError(502, "the sandbox's agent sent malformed logs") from None
                    if not isinstance(chunk, dict):
                        raise ApiError(502, "the sandbox's agent sent malformed logs")
                    await on_line(chunk)
            finally:
                response.close()

    async def open_upload(self, sandbox_id: str, user: str) -> UploadSlot:
        """Room for one upload: a place in the sandbox's gate and a window in the user's budget,
        taken before any of the body is read. Release it with `UploadSlot.close`."""
        with self.errors():
            reservation = self.uploads.reserve(user)
        try:
            with self.errors():
                release = await self.gates.acquire(sandbox_id)
        except BaseException:
            reservation.release()
            raise
        slot = UploadSlot(self, reservation, release)
        try:
            slot.agent = await self.agent(sandbox_id)
        except BaseException:
            slot.close()
            raise
        return slot


class UploadSlot:
    """One upload under way: files written to the agent as their bytes arrive (PUT /files/content
    per file), never more than a chunk of them held here."""

    def __init__(self, service: SandboxService, reservation: Any, release: Callable[[], None]) -> None:
        self.service, self.reservation, self.release = service, reservation, release
        self.agent: AsyncAgent | None = None
        self.file: AgentResponse | None = None
        self._chunked = False

    async def start_file(self, path: str, size: int | None) -> None:
        assert self.agent is not None and self.file is None
        self._chunked = size is None
        self.file = await self.service.awaited(
            self.agent.open(
                "PUT",
                "/files/content?" + urllib.parse.urlencode({"path": path}),
                content_type="application/octet-stream",
                stream_body=size,
            )
        )

    async def send(self, chunk: bytes) -> None:
        if self.file is None or not chunk:
            return
        await self.service.awaited(self.file.write(chunk, chunked=self._chunked))

    async def finish_file(self) -> dict[str, Any]:
        assert self.agent is not None and self.file is not None
        file, self.file = self.file, None
        try:
            answer = await self.service.awaited(self.agent.finish_upload(file, self._chunked))
            body = await self.service.awaited(answer.read_all(65536))
        finally:
            file.close()
        try:
            parsed = json.loads(body)
        except ValueError:
            raise ApiError(502, "the sandbox's agent answered the upload with something that is not JSON") from None
        if answer.status >= 400:
            message = parsed.get("message", "") if isinstance(parsed, dict) else ""
            raise ApiError(_passed_status(answer.status), str(message)[:500] or f"the agent answered {answer.status}")
        if not isinstance(parsed, dict) or not isinstance(parsed.get("size"), int) or isinstance(parsed["size"], bool):
            raise ApiError(502, "the sandbox's agent answered the upload with an unexpected shape")
        return {"path": str(parsed.get("path", "")), "size": parsed["size"]}

    async def move_into_place(self, staged: list[tuple[str, str]], staging: str) -> list[dict[str, Any]]:
        """Files written to staging names (they came before the folder they belong in was known)
        moved to their places, replacing what was there, as an upload does."""
        assert self.agent is not None
        placed = []
        for source, destination in staged:
            try:
                await self.service.awaited(
                    self.agent.request(
                        "DELETE",
                        "/files?" + urllib.parse.urlencode({"path": destination, "recursive": "0"}),
                        timeout=self.service.agent_timeout,
                    )
                )
            except ApiError as exc:
                if exc.status != 404:
                    raise
            answer = await self.service.awaited(
                self.agent.request(
                    "POST",
                    "/files/move",
                    {"source": source, "destination": destination},
                    timeout=self.service.agent_timeout,
                )
            )
            size = answer.get("size")
            placed.append({"path": str(answer.get("path", "")), "size": size if isinstance(size, int) else None})
        await self.service.awaited(
            self.agent.request(
                "DELETE",
                "/files?" + urllib.parse.urlencode({"path": staging, "recursive": "1"}),
                timeout=self.service.agent_timeout,
            )
        )
        return placed

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.release()
        self.reservation.release()


def usage_of(answer: dict[str, Any]) -> dict[str, Any]:
    """Disk used in the home folder and listening ports, as the sandbox reports them (checked)."""
    disk = answer.get("disk") if isinstance(answer.get("disk"), dict) else {}
    ports = answer.get("ports") if isinstance(answer.get("ports"), list) else []
    return {
        "disk_bytes": disk.get("bytes") if isinstance(disk.get("bytes"), int) else None,
        "disk_partial": bool(disk.get("partial")),
        "ports": sorted({p for p in ports if isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536})[:1000],
    }


def error_text(raw: bytes) -> str:
    try:
        message = json.loads(raw).get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return str(message)[:500]
