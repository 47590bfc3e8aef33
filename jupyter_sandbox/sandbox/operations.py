"""The operations layer: one coroutine per thing a user can do with a sandbox, whatever door they came by.

The REST handlers, the `%sandbox` magics, the CLI, the preview proxy and the sidebar (through REST) all
end in a method of `SandboxOperations`. It finds the caller's sandbox, talks to its agent through the
one agent client (agent_client.py) and to Docker through the manager, and raises domain errors
(errors.py) with a message a person reads; what those look like on the wire is the front door's
business (server_extension/handlers/base.py holds the only map to HTTP statuses).

Agents are called with async I/O, each call through its sandbox's gate and with deadlines; Docker
calls run on an executor of their own (limits.py). So one sandbox that freezes, trickles or floods
holds its own gate and nothing the others need.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import json
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Callable

from traitlets import Bool, Float, Int, Unicode, Union
from traitlets.config import LoggingConfigurable

from . import binding, errors, git_credentials, languages, network, preview, ptys
from . import desktop as desktop_checks
from . import secrets as sandbox_secrets
from .agent_client import AgentClient, Cancelled, domain_error, reduced
from .agent_http import AgentError, AgentResponse
from .docker_backend import DockerUnavailable, ImageNotFound, SandboxError
from .gateway import state as gateway_state
from .gateway import vault as gateway_vault
from .git_credentials import Credential, CredentialError, Remote
from .git_proxy import GitCredentialProxy, GitProxyError, run_call
from .limits import DockerCalls, SandboxGates, UploadBudget
from .manager import Sandbox, SandboxManager
from .notebooks import WorkspaceMoves
from .spec import KERNEL_PORTS, LABEL_PREFIX, SandboxSpec, SpecError, parse_size, user_ports

MAX_PATH = 4096
MAX_NAME = 255
PREVIEW_HEADER = "X-Sandbox-Preview-Token"
GIT_OPERATIONS = ("clone", "status", "branches", "checkout", "add", "commit", "push", "pull")
GIT_SHAPES = {
    "clone": "git_clone",
    "commit": "git_commit",
    "push": "git_output",
    "pull": "git_output",
    "add": "git_status",
    "checkout": "git_branches",
    "branches": "git_branches",
}


def check_path(value: Any, what: str = "path", required: bool = True) -> str:
    """A sandbox path as the operations take it: relative to /home/sandbox, or absolute inside the sandbox."""
    if value is None or value == "":
        if required:
            raise errors.InvalidInput(f"{what} is required")
        return ""
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{what} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.InvalidInput(f"{what} is not valid Unicode text") from None
    if len(value) > MAX_PATH or any(len(part) > MAX_NAME for part in value.split("/")):
        raise errors.InvalidInput(f"{what} is too long (at most {MAX_PATH} characters, {MAX_NAME} per name)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise errors.InvalidInput(f"{what} may not contain control characters (NUL, newline, ...)")
    if any(part == ".." for part in value.split("/")):
        raise errors.InvalidInput(f"{what} may not contain '..'; give the path from /home/sandbox or an absolute one")
    if any(part.startswith("-") for part in value.split("/")):
        raise errors.InvalidInput(f"{what} may not have a name starting with '-'")
    return value


NOTEBOOK_ACTIONS = ("rename", "copy", "delete", "session")
MAX_NOTEBOOK_ITEMS = 1000


def _workspace(value: Any) -> str:
    if not isinstance(value, str):
        raise errors.InvalidInput("a workspace key must be a string of hex digits")
    try:
        return binding.check_workspace(value)
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from None


def _kernel_id(value: Any) -> str:
    if not isinstance(value, str):
        raise errors.InvalidInput("a kernel id must be a string")
    try:
        return binding.check_kernel_id(value)
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from None


def _bound(sandbox: Sandbox) -> dict[str, Any]:
    """What the user's server needs back of a sandbox that moved: its id, key and kernel."""
    return {"id": sandbox.id, "workspace": sandbox.workspace, "kernel_id": sandbox.kernel_id}


async def attach_kernel(
    sandbox_id: str,
    language: Any,
    start: Callable[[str, str], Awaitable[Any]],
    lend: Callable[[str, str | None], Awaitable[Any]],
) -> dict[str, Any]:
    """A new kernel for an existing sandbox: lent to a fresh kernel id, the kernel started, the loan
    taken back if it does not start. `lend` is the operations' own, or, on a user's server in hub mode,
    the sandbox service's (the kernel runs beside the user's server, the sandbox at the service)."""
    if language not in (None, "python"):
        raise errors.InvalidInput(f"language must be 'python', got {language!r}")
    kernel_id = str(uuid.uuid4())
    await lend(sandbox_id, kernel_id)
    try:
        await start("sandbox-python", kernel_id)
    except Exception as exc:
        await lend(sandbox_id, None)
        raise errors.Internal(f"the kernel did not start: {exc}") from None
    return {"kernel_id": kernel_id, "sandbox_id": sandbox_id}


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    """Failures of the layers below (Docker, specs, the agent) as the domain error a person should see."""
    try:
        yield
    except errors.SandboxOperationError:
        raise
    except DockerUnavailable as exc:
        raise errors.EngineUnavailable(str(exc)) from None
    except (SpecError, ImageNotFound) as exc:
        raise errors.InvalidInput(str(exc)) from None
    except SandboxError as exc:
        raise errors.Internal(str(exc)) from None
    except AgentError as exc:
        raise domain_error(exc) from None


def describe_exit(exit_code: int | None, oom_killed: bool, memory: str = "") -> str:
    """Why a sandbox's container ended, as a notebook is told."""
    if oom_killed:
        return f"it ran out of memory{f' (limit {memory})' if memory else ''} and was killed"
    if exit_code in (137, -9):
        return "it was killed (SIGKILL)"
    if exit_code is None:
        return "it is gone"
    return f"it exited with code {exit_code}"


IDLE_STOPPED = "it was stopped because nobody used it for a while (its files are kept)"
REMOVED = "it was removed"
KERNEL_EVENT_WAIT = 25.0
BRING_UP_SECONDS = 6 * 3600.0
# How long a kernel's release waits for a bring-up of that kernel still under way (the remote
# release's request waits 300 s for its answer).
RELEASE_WAITS_FOR_BRING_UP = 240.0


@dataclass
class KernelSandbox:
    """A kernel's sandbox, up and answering: what `bring_up_kernel` hands the kernel (locally) or the
    remote kernel (REST). `how`: 'created', 'kernel' (its own again), 'workspace' (its notebook's),
    'pool'; `notes` are what the notebook is told on the way (e.g. a busy notebook sandbox)."""

    sandbox: Sandbox
    how: str
    last_event: int = 0
    notes: list[str] = field(default_factory=list)

    def to_rest(self) -> dict[str, Any]:
        # The inner kernel's key goes to the sandbox's owner only (the route is owner-scoped); the
        # sandbox knows it anyway. No host ports: across machines they mean nothing, the kernel
        # reaches its channels through .../kernel/channels.
        return {
            "sandbox": self.sandbox.to_dict(),
            "how": self.how,
            "last_event": self.last_event,
            "notes": self.notes,
            "memory_limit": self.sandbox.memory_limit,
            "image_id": self.sandbox.image_id,
            "kernel": {
                "key": sandbox_secrets.kernel_key(self.sandbox.id),
                "signature_scheme": "hmac-sha256",
                "channels": list(KERNEL_PORTS),
            },
        }


@dataclass
class PreviewLink:
    """A signed link to a port of a sandbox: the one builder behind REST's POST .../previews and
    `%sandbox preview`."""

    url: str
    token: str
    expires: int
    header: str = PREVIEW_HEADER
    # The path form on the Jupyter server's own address: a name every resolver knows (Python's does
    # not resolve *.localhost), for scripts that send the token header. '' when the path form is off.
    script_url: str = ""

    @property
    def browser_url(self) -> str:
        return f"{self.url}?token={self.token}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "token": self.token,
            "expires_at": datetime.fromtimestamp(self.expires, timezone.utc).isoformat(),
            "browser_url": self.browser_url,
            "header": self.header,
            **({"script_url": self.script_url} if self.script_url else {}),
        }


def preview_link(
    template: str, sandbox_id: str, port: Any, expires_in: Any, server_port: int = 0, script_template: str = ""
) -> PreviewLink:
    """Mint a preview token and its link (`template` is SandboxOperations.preview_url_template;
    `script_template`, when the path form is served, SandboxOperations.script_url_template)."""
    try:
        token, expires = preview.mint(sandbox_id, port, expires_in)
    except preview.PreviewError as exc:
        raise errors.InvalidInput(str(exc)) from None
    fields = {"port": port, "sandbox_id": sandbox_id, "server_port": server_port}
    return PreviewLink(
        template.format(**fields),
        token,
        expires,
        script_url=script_template.format(**fields) if script_template else "",
    )


@dataclass
class ConfigPlan:
    """A change of a sandbox's configuration, checked: the spec it makes and whether it needs a
    fresh container (pids, disk, image and env do; cpu and memory change live)."""

    spec: SandboxSpec
    changed: list[str]
    restart: bool

    def to_rest(self) -> dict[str, Any]:
        """What REST (and `%sandbox config` in hub mode) shows of the plan."""
        return {"changed": self.changed, "restart": self.restart, "cpu": self.spec.cpu, "memory": self.spec.memory}


RESTART_KEYS = {"pids", "disk", "image", "env"}
CONFIG_KEYS = ("cpu", "memory", "pids", "disk", "image", "env")


def config_changes(value: Any) -> dict[str, Any]:
    """A config change as REST sends it (untrusted JSON), in the types plan_config takes: cpu a
    positive number, memory and disk a size ("2g" or bytes), pids a positive whole number, image a
    name, env names to strings. Anything else is refused with what was expected."""
    if not isinstance(value, dict) or not value:
        raise errors.InvalidInput('config is an object of changes, e.g. {"cpu": 2, "memory": "2g"}')
    unknown = set(value) - set(CONFIG_KEYS)
    if unknown:
        raise errors.InvalidInput(
            f"these cannot be changed: {', '.join(sorted(map(str, unknown)))} (choose from {', '.join(CONFIG_KEYS)})"
        )
    changes: dict[str, Any] = {}
    for key, item in value.items():
        number = isinstance(item, (int, float)) and not isinstance(item, bool)
        if key == "cpu":
            if not number or not math.isfinite(item) or item <= 0:
                raise errors.InvalidInput(f"cpu must be a positive number of vCPUs, got {item!r}")
            changes[key] = float(item)
        elif key in ("memory", "disk"):
            if isinstance(item, str):
                try:
                    changes[key] = parse_size(item, key)
                except SpecError as exc:
                    raise errors.InvalidInput(str(exc)) from None
            elif number and isinstance(item, int) and item > 0:
                changes[key] = item
            else:
                raise errors.InvalidInput(f'{key} must be a size such as "2g" or a number of bytes, got {item!r}')
        elif key == "pids":
            if not isinstance(item, int) or isinstance(item, bool) or item <= 0:
                raise errors.InvalidInput(f"pids must be a whole number above zero, got {item!r}")
            changes[key] = item
        elif key == "image":
            if not isinstance(item, str) or not item.strip():
                raise errors.InvalidInput("image must be an image's name")
            changes[key] = item
        else:
            if not isinstance(item, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) for k, v in item.items()
            ):
                raise errors.InvalidInput("env must map variable names to strings")
            changes[key] = dict(item)
    return changes


@dataclass
class SandboxStatus:
    """Everything known about one sandbox at one moment: the one status builder's record, which
    REST (`to_rest`) and `%sandbox status` (`to_magic`) present, each in its documented shape."""

    sandbox: Sandbox
    description: dict[str, Any]
    limits: dict[str, Any]
    disk: dict[str, Any]
    egress: network.EgressPolicy
    network_name: str
    usage: dict[str, Any] = field(default_factory=dict)
    uptime_seconds: float | None = None
    inside: dict[str, Any] | None = None  # the agent's view (disk in home, ports), None when it did not answer
    last_activity: str | None = None

    def to_rest(self) -> dict[str, Any]:
        info = dict(self.description)
        info["network"] = self.egress.to_dict()
        info["limits"] = self.limits
        info["disk"] = self.disk
        info["last_activity"] = self.last_activity
        info["usage"] = dict(self.usage)
        info["uptime_seconds"] = self.uptime_seconds
        info["ports"] = []
        if self.inside is not None:
            info["usage"]["disk_bytes"] = self.inside["disk_bytes"]
            info["ports"] = user_ports(self.inside["ports"])
        return info

    def to_magic(self, cell_timeout: float) -> dict[str, Any]:
        sandbox = self.sandbox
        usage = dict(self.usage)
        if self.inside is not None:
            usage.update(disk_bytes=self.inside["disk_bytes"], disk_partial=self.inside["disk_partial"])
        return {
            "id": sandbox.id,
            "container": sandbox.name,
            "state": sandbox.state,
            "image": sandbox.image,
            "kernel_id": sandbox.kernel_id,
            "workspace": sandbox.workspace,
            "limits": {**self.limits, "cell_timeout": cell_timeout},
            "disk": self.disk,
            "usage": usage,
            "network": {
                "name": self.network_name,
                "inter_sandbox": False,
                "egress": self.egress.describe(),
                **self.egress.to_dict(),
            },
            "ports": self.inside["ports"] if self.inside is not None else [],
            "uptime_seconds": self.uptime_seconds,
        }


class SandboxService(LoggingConfigurable):
    """The operator's knobs of the operations layer, under the config section name they have always had
    (`c.SandboxService.agent_timeout = ...`); `c.SandboxOperations....` works as well."""

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


class SandboxOperations(SandboxService):
    """One method per user-visible operation. Every method is a coroutine and raises only domain errors."""

    server_port = 0
    # Set by the server extension when it serves the path form: its address on the server's own URL.
    script_url_template = ""
    _busy: set[str]

    def __init__(self, manager: SandboxManager, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manager = manager
        self._busy = set()
        # Kernels whose sandbox is being brought up now (how many bring-ups of each): a release waits.
        self._bringing_up: dict[str, int] = {}
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

    async def blocking(self, function: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """A blocking call (Docker, mostly) on the Docker executor, with its deadline."""
        with domain_errors():
            return await self.docker.run(function, *args, timeout=timeout)

    @contextlib.asynccontextmanager
    async def gate(self, sandbox_id: str) -> AsyncIterator[None]:
        """A place among the sandbox's `max_calls_per_sandbox`, for the whole of one operation."""
        release = await self.gates.acquire(sandbox_id)
        try:
            yield
        finally:
            release()

    async def check_owned(self, sandbox_id: str) -> None:
        """Another owner's sandbox, or none, is not found, before anything else of a request is read:
        on the service, whatever the body, the answer for someone else's id is the unknown id's."""
        if not await self.blocking(self.manager.owns, sandbox_id):
            raise errors.SandboxNotFound(f"there is no sandbox {sandbox_id!r}")

    async def sandbox(self, sandbox_id: str, running: bool = True) -> Sandbox:
        """The caller's sandbox; with `running`, started first when the configuration says so."""
        sandbox = await self.blocking(self.manager.get, sandbox_id)
        if sandbox.owner != self.manager.owner:
            raise errors.SandboxNotFound(f"there is no sandbox {sandbox_id!r}")
        if running and not sandbox.running:
            if not self.start_stopped and not self.manager.was_idle_stopped(sandbox):
                raise errors.SandboxStopped(
                    f"sandbox {sandbox_id} is {sandbox.state}; start it first "
                    f"(POST /sandbox/api/sandboxes/{sandbox_id}/start)"
                )
            return await self.start_and_wait(sandbox)
        return sandbox

    def agent_for(self, sandbox: Sandbox) -> AgentClient:
        with domain_errors():
            where = self.manager.agent(sandbox)  # its address and token, with this layer's deadlines
        return AgentClient.to(
            sandbox.id,
            where,
            connect_timeout=self.agent_connect_timeout,
            idle_timeout=self.agent_idle_timeout,
            call_timeout=self.agent_timeout,
        )

    @contextlib.asynccontextmanager
    async def agent(self, sandbox_id: str) -> AsyncIterator[AgentClient]:
        """The running sandbox's agent, inside its gate for the whole of the operation."""
        async with self.gate(sandbox_id):
            yield self.agent_for(await self.sandbox(sandbox_id))

    async def start_and_wait(self, sandbox: Sandbox) -> Sandbox:
        """Start a sandbox and wait until its agent answers: the one start-and-wait."""
        started = await self.blocking(self.manager.start, sandbox)
        await self.agent_for(started).wait_until_up()
        return started

    # -- sandboxes --------------------------------------------------------------------------

    async def list(
        self, kernel_id: str | None = None, every_owner: bool = False, labels: dict[str, str] | None = None
    ) -> list[Sandbox]:
        """The caller's sandboxes (with `every_owner`, the CLI's --all-owners, everyone's and the
        warm pool's too); with `labels`, only those that carry every one of them."""
        if kernel_id is not None:
            try:
                binding.check_kernel_id(kernel_id)
            except ValueError as exc:
                raise errors.InvalidInput(str(exc)) from None
        owner = None if every_owner else self.manager.owner
        found = await self.blocking(lambda: self.manager.list(owner=owner, kernel_id=kernel_id))
        wanted = (labels or {}).items()
        # The warm pool's sandboxes belong to nobody yet.
        return [s for s in found if (every_owner or not s.pool) and wanted <= s.user_labels.items()]

    @staticmethod
    def label_filter(values: builtins.list[str]) -> dict[str, str]:
        """`label=KEY=VALUE` query values as the labels a listing must match."""
        wanted: dict[str, str] = {}
        for value in values:
            key, equals, text = value.partition("=")
            if not key or not equals:
                raise errors.InvalidInput(f"label must be KEY=VALUE, got {value!r}")
            wanted[key] = text
        return wanted

    async def create(self, body: dict[str, Any], progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Create a sandbox and wait for its agent; `progress` hears about an image build."""
        # Unknown fields were refused already, against the route's schema (server_extension/validation.py).
        overrides: dict[str, Any] = {}
        for key in ("image", "cpu", "pids"):
            if key in body:
                overrides[key] = body[key]
        if "cpu" in overrides and (
            isinstance(overrides["cpu"], bool) or not isinstance(overrides["cpu"], (int, float))
        ):
            raise errors.InvalidInput("cpu must be a number")
        if "pids" in overrides and (isinstance(overrides["pids"], bool) or not isinstance(overrides["pids"], int)):
            raise errors.InvalidInput("pids must be a whole number")
        for key in ("memory", "disk"):
            if key in body:
                with domain_errors():
                    overrides[key] = parse_size(body[key], key)
        for key in ("env", "labels"):
            value = body.get(key, {})
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise errors.InvalidInput(f"{key} must map strings to strings")
            overrides[key] = value
        if any(k.startswith(LABEL_PREFIX) for k in overrides.get("labels", {})):
            raise errors.InvalidInput(f"labels starting with {LABEL_PREFIX} are reserved")
        if "language" in body:
            # The kernel the sandbox runs; without an image, the language's configured image.
            with domain_errors():
                overrides["language"] = languages.check_language(body["language"])
        policy = self._policy(body["network"]) if "network" in body else None

        def make() -> tuple[Sandbox, bool]:
            spec = self.manager.check_allowed(self.manager.default_spec(**overrides))
            if not overrides.get("labels") and not overrides.get("env"):
                # The warm pool's spec: one of its sandboxes, started and answering already. (Labels
                # and variables are fixed when a container is made: those need a new one.)
                claimed = self.manager.claim_for_api(spec)
                if claimed is not None:
                    if policy is not None:
                        self.manager.set_egress(claimed, policy)
                    return claimed, True
            if progress is None:
                return self.manager.create(spec, network_policy=policy), False
            return self.manager.create(spec, network_policy=policy, progress=progress), False

        sandbox, claimed = await self.blocking(make, timeout=self.create_timeout)
        agent = self.agent_for(sandbox)
        await agent.wait_until_up()
        if claimed:
            # Its idle clock starts now, not when the pool made it.
            await agent.kernel.activity()
        return sandbox.to_dict()

    async def attach_kernel(
        self, sandbox_id: str, language: Any, start: Callable[[str, str], Awaitable[Any]]
    ) -> dict[str, Any]:
        """A new Jupyter kernel that runs its code in this existing sandbox (the sandbox stays the
        API's: at the kernel's end it is handed back, running). `start(kernel_name, kernel_id)` is
        the Jupyter server's kernel start."""
        return await attach_kernel(sandbox_id, language, start, self.lend)

    async def lend(self, sandbox_id: str, kernel_id: Any) -> dict[str, Any]:
        """Lend this sandbox to the kernel `kernel_id` that only borrows it (at its end the sandbox goes
        back to the API, running), or take it back (None). Hub mode: the user's Jupyter server, which
        starts that kernel, asks the service for this (POST .../lend)."""
        if kernel_id is not None:
            kernel_id = _kernel_id(kernel_id)
        async with self.gate(sandbox_id):
            sandbox = await self.sandbox(sandbox_id, running=kernel_id is not None)
            await self.blocking(self.manager.lend_to_kernel, sandbox, kernel_id)
        return {"sandbox_id": sandbox_id, "kernel_id": kernel_id}

    def _policy(self, value: Any) -> network.EgressPolicy:
        try:
            return self.manager.network_policy(value)
        except network.PolicyError as exc:
            raise errors.InvalidInput(str(exc)) from None

    async def update(self, sandbox_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A change of configuration over REST: the egress policy (live), and/or `config`: limits, env
        or image (`%sandbox config` over REST, the same plan and checks). `dry_run`: only the plan.
        A change that recreates the container is refused while a kernel is attached, unless the
        caller names that kernel (`kernel_id`: the kernel's own `%sandbox config`, which follows the
        new container; anyone else would leave it talking to the old one)."""
        unknown = set(body) - {"network", "config", "dry_run", "kernel_id"}
        if unknown or not ({"network", "config"} & set(body)):
            raise errors.InvalidInput(
                'change network and/or config here, e.g. {"network": {"mode": "none"}} or {"config": {"cpu": 2}}'
                + (f"; unknown field(s): {', '.join(sorted(map(str, unknown)))}" if unknown else "")
            )
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise errors.InvalidInput("dry_run must be true or false")
        if "config" in body and "network" in body:
            raise errors.InvalidInput("change network and config in two requests (a config change may recreate it)")
        if "network" in body:
            if dry_run:
                raise errors.InvalidInput("dry_run is for config changes")
            async with self.gate(sandbox_id):
                sandbox = await self.sandbox(sandbox_id, running=False)
                await self.set_network(sandbox, body["network"])
                return (await self.status_of(await self.sandbox(sandbox_id, running=False))).to_rest()
        changes = config_changes(body["config"])
        async with self.gate(sandbox_id):
            sandbox = await self.sandbox(sandbox_id)
            plan = await self.plan_config(sandbox, changes)
            answer: dict[str, Any] = {"config": plan.to_rest()}
            if dry_run:
                return answer
            caller = body.get("kernel_id")
            if (
                plan.restart
                and sandbox.kernel_id
                and caller != sandbox.kernel_id
                and await self.blocking(binding.kernel_alive, sandbox.kernel_id)
            ):
                raise errors.Conflict(
                    f"sandbox {sandbox_id} has a kernel attached: {', '.join(plan.changed)} need a fresh container, "
                    "which the kernel must follow; run %sandbox config in its notebook, or change cpu/memory (live)"
                )
            progress: builtins.list[str] = []
            after = await self.apply_config(sandbox, plan, progress.append)
            if plan.restart:
                # Done when the new container's agent answers, as a start is: the next call can use it.
                await self.agent_for(after).wait_until_up()
            answer["config"]["progress"] = progress
            answer["sandbox"] = after.to_dict()
            return answer

    async def set_network(self, sandbox: Sandbox, value: Any) -> network.EgressPolicy:
        """The one way a sandbox's egress policy changes (REST PATCH and `%sandbox network`), live."""
        policy = self._policy(value)
        await self.blocking(self.manager.set_egress, sandbox, policy)
        return policy

    # -- network: the policy, the gateway's log and the secrets it adds ---------------------------

    async def network_policy(self, sandbox_id: str) -> dict[str, Any]:
        """The sandbox's egress policy as REST and the magics show it."""
        async with self.gate(sandbox_id):
            sandbox = await self.sandbox(sandbox_id, running=False)
        return self.describe_network(sandbox)

    def describe_network(self, sandbox: Sandbox) -> dict[str, Any]:
        policy = self.manager.egress(sandbox)
        return {**policy.to_dict(), "description": policy.describe(), "gateway": policy.uses_gateway}

    async def network_log(self, sandbox_id: str, limit: Any = 200) -> dict[str, Any]:
        """The newest connection attempts through the gateway, newest last."""
        if isinstance(limit, str) and limit.isdigit():
            limit = int(limit)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10000:
            raise errors.InvalidInput("limit must be a whole number from 1 to 10000")
        async with self.gate(sandbox_id):
            await self.sandbox(sandbox_id, running=False)
        entries = await asyncio.get_running_loop().run_in_executor(
            None, lambda: gateway_state.read_log(sandbox_id, limit=limit)
        )
        return {"entries": entries, "blocked": sum(1 for e in entries if not e.get("allowed"))}

    async def set_secret(self, sandbox_id: str, body: Any) -> dict[str, Any]:
        """Keep a secret on the host for the gateway to add to requests to its hosts. The sandbox sees
        the placeholder (in its environment from its next start), never the value."""
        if not isinstance(body, dict):
            raise errors.InvalidInput('a secret is {"name": ..., "value": ..., "hosts": [...]}')
        unknown = set(body) - {"name", "value", "hosts"}
        if unknown:
            raise errors.InvalidInput(f"unknown field(s) {', '.join(sorted(map(str, unknown)))} (name, value, hosts)")
        async with self.gate(sandbox_id):
            await self.sandbox(sandbox_id, running=False)
            try:
                secret = gateway_vault.put(sandbox_id, body.get("name"), body.get("value"), body.get("hosts"))
            except gateway_vault.SecretError as exc:
                raise errors.InvalidInput(str(exc)) from None
        return {**secret.public(), "note": "the sandbox's processes see the placeholder from its next (re)start"}

    async def list_secrets(self, sandbox_id: str) -> dict[str, Any]:
        async with self.gate(sandbox_id):
            await self.sandbox(sandbox_id, running=False)
        return {"secrets": [s.public() for s in gateway_vault.load(sandbox_id).values()]}

    async def delete_secret(self, sandbox_id: str, name: str) -> None:
        async with self.gate(sandbox_id):
            await self.sandbox(sandbox_id, running=False)
            if not gateway_vault.delete(sandbox_id, name):
                raise errors.NotFound(f"sandbox {sandbox_id} has no secret {name!r}")

    async def plan_config(self, sandbox: Sandbox, changes: dict[str, Any]) -> ConfigPlan:
        """What a change of limits, env or image makes of the sandbox's spec, refused before anything
        changes when the operator does not allow it. `changes`: cpu, memory, pids, disk, image, env."""
        unknown = set(changes) - {"cpu", "memory", "pids", "disk", "image", "env"}
        if unknown:
            raise errors.InvalidInput(f"these cannot be changed: {', '.join(sorted(unknown))}")
        # Read anew: another process (the REST API, another kernel's magic) may have changed it since.
        current = await self.blocking(self.manager.current_spec, await self.blocking(self.manager.get, sandbox.id))
        if "image" in changes:
            changes = {**changes, "image": self.manager.resolve_image(changes["image"])}
        merged = {**current.to_dict(), **changes, "env": {**current.env, **changes.get("env", {})}}
        with domain_errors():
            spec = self.manager.check_allowed(SandboxSpec(**merged))
            if "image" in changes:
                # A TypeScript sandbox needs an image with a TypeScript kernel: refused before any change.
                await self.blocking(self.manager.check_image_language, spec.image, spec.language)
        return ConfigPlan(spec=spec, changed=sorted(changes), restart=bool(set(changes) & RESTART_KEYS))

    async def apply_config(
        self, sandbox: Sandbox, plan: ConfigPlan, progress: Callable[[str], None] | None = None
    ) -> Sandbox:
        """Put a planned change in force: live for cpu and memory, else a fresh container on the same
        home (files kept). The sandbox as it is afterwards."""
        if plan.restart:
            report = progress or (lambda _message: None)
            return await self.blocking(self.manager.recreate, sandbox, plan.spec, report)
        return await self.blocking(
            self.manager.update_live,
            sandbox,
            plan.spec.cpu if "cpu" in plan.changed else None,
            plan.spec.memory if "memory" in plan.changed else None,
        )

    async def stop_sandbox(self, sandbox: Sandbox) -> Sandbox:
        """Stop a sandbox already in hand (files kept; the next use starts it)."""
        return await self.blocking(self.manager.stop, sandbox)

    async def get(self, sandbox_id: str) -> dict[str, Any]:
        """GET /sandboxes/{id}: the status, as REST shows it."""
        async with self.gate(sandbox_id):
            return (await self.status_of(await self.sandbox(sandbox_id, running=False))).to_rest()

    async def status_of(self, sandbox: Sandbox) -> SandboxStatus:
        """The one status builder (REST and `%sandbox status`)."""
        status = SandboxStatus(
            sandbox=sandbox,
            description=sandbox.to_dict(),
            limits=await self.blocking(self.manager.limits, sandbox),
            disk=await self.blocking(self.manager.disk_enforcement, sandbox),
            egress=self.manager.egress(sandbox),
            network_name=self.manager.network_name,
        )
        if sandbox.running:
            status.usage = await self.blocking(self.manager.usage, sandbox)
            status.uptime_seconds = await self.blocking(self.manager.uptime, sandbox)
            try:
                # Passive calls: looking at a sandbox does not count as using it.
                agent = self.agent_for(sandbox)
                status.last_activity = (await agent.health(timeout=5))["last_activity_at"]
                status.inside = await agent.usage(timeout=10)
            except errors.SandboxOperationError:
                pass  # a sandbox whose agent does not answer still has a state to show
        return status

    async def delete(self, sandbox_id: str, every_owner: bool = False) -> None:
        """Delete a sandbox and every piece of host state kept for it (manager.remove forgets them all).
        `every_owner`: the CLI, run by the machine's user, may remove anyone's."""
        # No gate: deleting a sandbox whose calls are all stuck is how its owner ends them.
        if every_owner:
            sandbox = await self.blocking(self.manager.get, sandbox_id)
        else:
            sandbox = await self.sandbox(sandbox_id, running=False)
        await self.blocking(self.manager.remove, sandbox)

    async def start(self, sandbox_id: str) -> dict[str, Any]:
        async with self.gate(sandbox_id):
            sandbox = await self.sandbox(sandbox_id, running=False)
            return (await self.start_and_wait(sandbox)).to_dict()

    async def stop(self, sandbox_id: str) -> dict[str, Any]:
        # No gate, like delete: stopping is the way out for a sandbox that holds all its places.
        sandbox = await self.sandbox(sandbox_id, running=False)
        return (await self.stop_sandbox(sandbox)).to_dict()

    async def restart(self, sandbox_id: str, hard: bool = False) -> Sandbox:
        """The two documented restarts (README, `%sandbox restart [--hard]`), asked for from outside
        the notebook (the REST API): a fresh Python process in the sandbox (files and container
        kept), which an attached kernel is told of and follows; or with `hard` a fresh container on
        the same home volume, refused while a kernel is attached (its relay is connected to the
        old container, and only the kernel's own `%sandbox restart --hard` moves it). Returns the
        sandbox as it is afterwards."""
        if not isinstance(hard, bool):
            raise errors.InvalidInput("hard must be true or false")
        async with self.gate(sandbox_id):
            sandbox = await self.sandbox(sandbox_id)
            if hard and sandbox.kernel_id and await self.blocking(binding.kernel_alive, sandbox.kernel_id):
                raise errors.Conflict(
                    f"sandbox {sandbox_id} has a kernel attached: a hard restart gives it a new container, "
                    "which the kernel must be told of; run %sandbox restart --hard in its notebook, or "
                    'restart with {"hard": false} (a fresh Python process, files kept)'
                )
            return await self.restart_sandbox(sandbox, hard, announce=True)

    async def restart_sandbox(self, sandbox: Sandbox, hard: bool = False, announce: bool = False) -> Sandbox:
        """`restart` for a sandbox already in hand (the kernel's own, for `%sandbox restart`);
        `announce`: an attached kernel is told of a soft restart (it did not ask for it)."""
        if hard:
            # The spec as the container has it now (the REST API may have changed its limits since
            # this Sandbox was read).
            current = await self.blocking(self.manager.get, sandbox.id)
            spec = await self.blocking(self.manager.current_spec, current)
            recreated = await self.blocking(self.manager.recreate, sandbox, spec)
            # Done when the new container's agent answers, as a start is: the next call can use it.
            await self.agent_for(recreated).wait_until_up()
            return recreated
        await self.agent_for(sandbox).kernel.restart(announce=announce)
        return await self.blocking(self.manager.get, sandbox.id)

    # -- a kernel's sandbox -------------------------------------------------------------------
    # The proxy kernel's side of a sandbox, one copy for both kernels: the local one calls these from
    # its threads, the remote one (hub mode) through .../kernels/{id}/sandbox and .../kernel/*.

    async def bring_up_kernel(
        self, kernel_id: Any, workspace: Any = None, progress: Callable[[str], None] | None = None
    ) -> KernelSandbox:
        """The sandbox kernel `kernel_id` runs in (`_bring_up_kernel`), its release meanwhile held off."""
        key = kernel_id if isinstance(kernel_id, str) else ""
        self._bringing_up[key] = self._bringing_up.get(key, 0) + 1
        try:
            return await self._bring_up_kernel(kernel_id, workspace, progress)
        finally:
            left = self._bringing_up.pop(key, 1) - 1
            if left:
                self._bringing_up[key] = left

    async def _bring_up_kernel(
        self, kernel_id: Any, workspace: Any = None, progress: Callable[[str], None] | None = None
    ) -> KernelSandbox:
        """The sandbox kernel `kernel_id` runs in, up and answering: its own again (a restart), its
        notebook's (`workspace`), one from the warm pool, or a new one; started if it was stopped.
        Reattached, its Python process starts afresh (files stay); a pool's is fresh already."""
        if not isinstance(kernel_id, str):
            raise errors.InvalidInput("kernel_id must be a string")
        try:
            binding.check_kernel_id(kernel_id)
            if workspace is not None:
                if not isinstance(workspace, str):
                    raise ValueError("workspace must be a string or null")
                binding.check_workspace(workspace)
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        say = progress or (lambda message: None)
        notes: list[str] = []
        manager = self.manager

        def claim_or_create() -> tuple[Sandbox, str]:
            spec = manager.default_spec()
            # The notebook may have been renamed, moved or deleted since the kernel started: the
            # server notes where its sandbox is now (notebooks.py).
            current = binding.kernel_workspace(kernel_id, workspace)
            # Two kernels of one notebook starting at once must not make two sandboxes for it: the
            # notebook's lock covers finding and making (other notebooks do not wait).
            lock = binding.host_lock(f"workspace-{current}") if current else contextlib.nullcontext()
            with lock:
                sandbox, how = manager.claim(kernel_id, current, spec)
                target = current
                if how.startswith("busy"):
                    note = (
                        f"this notebook's sandbox is in use by another kernel ({how.split()[1]}); "
                        "this kernel gets a sandbox of its own, removed when the kernel shuts down"
                    )
                    notes.append(note)
                    say(note)
                    target = None
                if sandbox is not None:
                    return sandbox, how
                made = manager.create(spec, kernel_id=kernel_id, progress=say, workspace=target)
                # A rename seen while it was being made moves it now.
                return manager.follow_kernel_workspace(made, kernel_id), "created"

        # No deadline of the Docker calls' own: a missing default image is built here, with progress,
        # which takes minutes (the kernel waited for it before too).
        sandbox, how = await self.blocking(claim_or_create, timeout=BRING_UP_SECONDS)
        fresh = how in ("created", "pool")  # its Python process has run nothing yet
        if not sandbox.running:
            say(f"starting sandbox {sandbox.id} again (its files are kept)...")
            sandbox = await self.blocking(manager.start, sandbox)
            fresh = True
        agent = self.agent_for(sandbox)
        with domain_errors():
            health = await agent.wait_until_up(30)
            if not fresh:
                # Reattaching (a kernel restart, a reopened notebook): the inner kernel starts
                # afresh, files stay.
                await agent.kernel.restart()
        last_event = health.get("last_event") if isinstance(health, dict) else 0
        return KernelSandbox(sandbox, how, last_event if isinstance(last_event, int) else 0, notes)

    async def release_kernel(self, kernel_id: Any) -> builtins.list[str]:
        """A kernel is done: its notebook's sandbox is stopped and kept, any other removed (also one
        still being made). The ids of the sandboxes released."""
        if not isinstance(kernel_id, str):
            raise errors.InvalidInput("kernel_id must be a string")
        try:
            binding.check_kernel_id(kernel_id)
        except ValueError as exc:
            raise errors.InvalidInput(str(exc)) from None
        # A kernel shut down while its sandbox is still being made (a server exiting as its kernels
        # start): the release comes once it is made, and finds it.
        deadline = time.monotonic() + RELEASE_WAITS_FOR_BRING_UP
        while kernel_id in self._bringing_up and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        released = []
        for sandbox in await self.blocking(self.manager.list, None, kernel_id):
            if sandbox.owner != self.manager.owner:
                continue
            await self.blocking(self.manager.release, sandbox)
            released.append(sandbox.id)
        return released

    def gone_reason(self, sandbox_id: str, memory: str = "") -> str:
        """Why a kernel's sandbox is no longer running, as its notebook is told (blocking)."""
        try:
            current = self.manager.get(sandbox_id)
        except SandboxError:
            return REMOVED
        if current.state in ("removing", "dead"):
            return REMOVED
        if self.manager.was_idle_stopped(current):
            return IDLE_STOPPED
        return describe_exit(current.exit_code, current.oom_killed, memory or current.memory_limit)

    async def kernel_events(self, sandbox_id: str, after: Any, wait: Any = KERNEL_EVENT_WAIT) -> dict[str, Any]:
        """What happened to a kernel's sandbox since event `after`, waiting up to `wait` seconds for
        something: the agent's events (its Python process died or was restarted) and, once the
        container no longer runs, `gone`: why (OOM, killed, idle stop, removed)."""
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise errors.InvalidInput("after must be a whole number of at least 0")
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 60:
            raise errors.InvalidInput("wait must be from 0 to 60 seconds")
        sandbox = await self.sandbox(sandbox_id, running=False)
        if sandbox.running:
            try:
                seq, events = await self.agent_for(sandbox).events(after, float(wait))
                return {"state": "running", "last_event": seq, "events": events, "gone": None}
            except errors.SandboxOperationError:
                pass  # the agent went away under the wait: look at the container
            try:
                sandbox = await self.blocking(self.manager.get, sandbox_id)
            except errors.SandboxNotFound:
                return {"state": "removed", "last_event": after, "events": [], "gone": REMOVED}
            if sandbox.running:
                return {"state": "running", "last_event": after, "events": [], "gone": None}
        reason = await self.blocking(self.gone_reason, sandbox_id, sandbox.memory_limit)
        return {"state": sandbox.state, "last_event": after, "events": [], "gone": reason}

    async def kernel_action(self, sandbox_id: str, action: str, hard: Any = False) -> dict[str, Any]:
        """interrupt: SIGINT to the running cell; restart: a fresh Python process (files kept), or
        with `hard` a fresh container on the same files (the kernel's own `%sandbox restart --hard`);
        activity: the sandbox is in use (its idle clock). A stopped sandbox is not started by these:
        only the person's next cell starts it (through bring_up_kernel)."""
        if not isinstance(hard, bool) or (hard and action != "restart"):
            raise errors.InvalidInput("hard must be true or false, and only for restart")
        async with self.gate(sandbox_id):
            sandbox = await self._running_kernel_sandbox(sandbox_id)
            if action == "restart":
                after = await self.restart_sandbox(sandbox, hard)
                return after.to_dict()
            agent = self.agent_for(sandbox)
            if action == "interrupt":
                return await agent.kernel.interrupt(timeout=5)
            if action == "activity":
                return await agent.kernel.activity(timeout=5)
        raise errors.InvalidInput(f"unknown kernel action {action!r}")

    async def _running_kernel_sandbox(self, sandbox_id: str) -> Sandbox:
        sandbox = await self.sandbox(sandbox_id, running=False)
        if not sandbox.running:
            raise errors.SandboxStopped(f"sandbox {sandbox_id} is {sandbox.state}; the notebook's next cell starts it")
        return sandbox

    async def kernel_channel(self, sandbox_id: str, channel: Any) -> tuple[AgentClient, int, str | None]:
        """Where one of the inner kernel's channels is reached: the sandbox's agent and the port its
        tunnel (/tunnel/{port}) is asked for, and the kernel it is bound to; through what the backend says reaches the agent, so
        the caller may be on another machine than the sandbox."""
        if channel not in KERNEL_PORTS:
            raise errors.InvalidInput(f"channel must be one of {', '.join(KERNEL_PORTS)}")
        # Not started by a reconnecting channel (the kernel's zmq retries on its own).
        sandbox = await self._running_kernel_sandbox(sandbox_id)
        return self.agent_for(sandbox), KERNEL_PORTS[channel], sandbox.kernel_id

    # -- housekeeping -----------------------------------------------------------------------

    async def _in_background(self, name: str, function: Callable[[], dict[str, builtins.list[str]]]) -> None:
        """Run one housekeeping task in a thread, never two of the same kind at once."""
        if name in self._busy:
            return
        self._busy.add(name)
        try:
            done = await asyncio.get_running_loop().run_in_executor(self._housekeeping, function)
        except (SandboxError, AgentError, SpecError, errors.SandboxOperationError) as exc:
            self.log.warning("jupyter-sandbox %s failed: %s", name, exc)
            return
        except Exception:
            self.log.exception("jupyter-sandbox %s failed", name)
            return
        finally:
            self._busy.discard(name)
        if any(done.values()):
            self.log.info("jupyter-sandbox %s: %s", name, {k: v for k, v in done.items() if v})

    async def reap(self, reconcile_kernels: bool = True) -> None:
        """Reconcile sandboxes of dead kernels (unless `reconcile_kernels` is off: the sandbox service,
        whose users' kernels run elsewhere), then stop idle and delete long-stopped ones."""
        if reconcile_kernels:
            await self._in_background("reconcile", self.manager.reconcile)
        await self._in_background("idle check", self.manager.reap)

    async def fill_pool(self) -> None:
        if self.manager.warm_pool_size > 0:
            await self._in_background("warm pool", self.manager.fill_pool)

    # -- notebooks (hub mode) ------------------------------------------------------------------

    async def follow_notebook(self, body: dict[str, Any]) -> dict[str, Any]:
        """A notebook moved on a user's Jupyter server, told by that server (hub mode: its files are on
        another machine, this side has only the sandboxes). The server sends workspace keys, worked
        out from its own files as its kernels work them out: `rename` {moves: [{from, to}]}, `copy`
        {workspace}, `delete` {workspaces, live_kernels} (a sandbox a running kernel of that server
        uses is kept as the kernel's own), `session` {kernel_id, workspace}. Only the caller's
        sandboxes are looked at (the manager is the caller's)."""
        action = body.get("action")
        if action not in NOTEBOOK_ACTIONS:
            raise errors.InvalidInput(f"action must be one of {', '.join(NOTEBOOK_ACTIONS)}, got {action!r}")
        moves = WorkspaceMoves(self.manager)
        if action == "rename":
            pairs = body.get("moves")
            if not isinstance(pairs, builtins.list) or not 0 < len(pairs) <= MAX_NOTEBOOK_ITEMS:
                raise errors.InvalidInput(f"moves must be a list of 1 to {MAX_NOTEBOOK_ITEMS} {{from, to}} objects")
            checked = []
            for pair in pairs:
                if not isinstance(pair, dict) or set(pair) != {"from", "to"}:
                    raise errors.InvalidInput("each move is an object {from, to} of two workspace keys")
                checked.append((_workspace(pair["from"]), _workspace(pair["to"])))
            done = await self.blocking(moves.rebind, checked)
            return {"moved": [_bound(s) for s in done]}
        if action == "copy":
            done = await self.blocking(moves.detach, _workspace(body.get("workspace")))
            return {"detached": [_bound(s) for s in done]}
        if action == "delete":
            keys = body.get("workspaces")
            live = body.get("live_kernels", [])
            if not isinstance(keys, builtins.list) or not 0 < len(keys) <= MAX_NOTEBOOK_ITEMS:
                raise errors.InvalidInput(f"workspaces must be a list of 1 to {MAX_NOTEBOOK_ITEMS} workspace keys")
            if not isinstance(live, builtins.list) or len(live) > MAX_NOTEBOOK_ITEMS:
                raise errors.InvalidInput(f"live_kernels must be a list of at most {MAX_NOTEBOOK_ITEMS} kernel ids")
            named = frozenset(_kernel_id(k) for k in live)

            def alive(kernel_id: str) -> bool:
                # A kernel the user's server runs, or one whose channels are connected here (its lease).
                return kernel_id in named or binding.kernel_alive(kernel_id)

            removed, kept = await self.blocking(moves.delete, [_workspace(k) for k in keys], alive)
            return {"removed": [_bound(s) for s in removed], "kept": [_bound(s) for s in kept]}
        done = await self.blocking(moves.session, _kernel_id(body.get("kernel_id")), _workspace(body.get("workspace")))
        return {"moved": [_bound(s) for s in done]}

    # -- files ------------------------------------------------------------------------------

    async def list_files(self, sandbox_id: str, path: Any, recursive: bool = False) -> dict[str, Any]:
        path = check_path(path, required=False)
        async with self.agent(sandbox_id) as agent:
            return await agent.files.list(path, recursive)

    async def file_info(self, sandbox_id: str, path: Any) -> dict[str, Any]:
        path = check_path(path)
        async with self.agent(sandbox_id) as agent:
            return await agent.files.stat(path)

    async def delete_file(self, sandbox_id: str, path: Any, recursive: bool = False) -> None:
        path = check_path(path)
        async with self.agent(sandbox_id) as agent:
            await agent.files.delete(path, recursive)

    async def make_folder(self, sandbox_id: str, path: Any, mode: Any = "755") -> dict[str, Any]:
        path = check_path(path)
        async with self.agent(sandbox_id) as agent:
            return await agent.files.mkdir(path, mode)

    async def move_file(self, sandbox_id: str, source: Any, destination: Any) -> dict[str, Any]:
        source, destination = check_path(source, "source"), check_path(destination, "destination")
        async with self.agent(sandbox_id) as agent:
            return await agent.files.move(source, destination)

    async def set_permissions(self, sandbox_id: str, path: Any, mode: Any, owner: Any, group: Any) -> dict[str, Any]:
        path = check_path(path)
        async with self.agent(sandbox_id) as agent:
            return await agent.files.set_permissions(path, mode, owner, group)

    async def replace_in_files(self, sandbox_id: str, files: Any, pattern: Any, new_value: Any) -> dict[str, Any]:
        if not isinstance(files, list) or not files or len(files) > 10_000:
            raise errors.InvalidInput("files must be a list of 1 to 10000 paths")
        checked = [check_path(f, "file") for f in files]
        async with self.agent(sandbox_id) as agent:
            return await agent.files.replace(checked, pattern, new_value)

    async def search_files(self, sandbox_id: str, operation: str, path: Any, pattern: str) -> dict[str, Any]:
        """`search` (file names matching) or `find` (lines matching) under `path`."""
        path = check_path(path, required=False)
        if len(pattern) > 1000:
            raise errors.InvalidInput("pattern is too long (at most 1000 characters)")
        async with self.agent(sandbox_id) as agent:
            if operation == "search":
                return await agent.files.search(path, pattern)
            return await agent.files.find(path, pattern)

    @contextlib.asynccontextmanager
    async def download(self, sandbox_id: str, path: Any, archive: str | None = None) -> AsyncIterator[Download]:
        """A file (a folder as an archive) streamed from the sandbox: read its chunks inside the block."""
        path = check_path(path)
        if archive not in (None, "tar", "zip"):
            raise errors.InvalidInput("format must be tar or zip")
        async with self.agent(sandbox_id) as agent:
            response = await agent.files.download(path, archive)
            try:
                yield Download(agent, response, path, archive)
            finally:
                response.close()

    async def open_upload(self, sandbox_id: str, user: str) -> UploadSlot:
        """Room for one upload: a place in the sandbox's gate and a window in the user's budget,
        taken before any of the body is read. Release it with `UploadSlot.close`."""
        reservation = self.uploads.reserve(user)
        try:
            release = await self.gates.acquire(sandbox_id)
        except BaseException:
            reservation.release()
            raise
        slot = UploadSlot(reservation, release)
        try:
            slot.agent = self.agent_for(await self.sandbox(sandbox_id))
        except BaseException:
            slot.close()
            raise
        return slot

    # -- processes, sessions, commands -------------------------------------------------------

    @staticmethod
    def checked_exec(command: Any, cwd: Any, env: Any, timeout: Any) -> tuple[str, str | None, dict[str, str], float]:
        """An exec request as REST sends it, checked: (command, cwd, env, timeout)."""
        if not isinstance(command, str) or not command.strip():
            raise errors.InvalidInput("command must be a non-empty string")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise errors.InvalidInput("timeout must be between 0 and 3600 seconds")
        folder = check_path(cwd, "cwd", required=False) or None
        env = env or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise errors.InvalidInput("env must map names to strings")
        return command, folder, env, float(timeout)

    async def exec(self, sandbox_id: str, command: Any, cwd: Any, env: Any, timeout: Any) -> dict[str, Any]:
        command, cwd, env, timeout = self.checked_exec(command, cwd, env, timeout)
        async with self.agent(sandbox_id) as agent:
            return await agent.processes.exec(command, cwd, env, timeout)

    async def exec_output(
        self,
        sandbox_id: str,
        body: dict[str, Any],
        on_output: Callable[[str, str], None],
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """POST .../process/exec with "stream": the command's output handed to `on_output` as it comes,
        then {exit_code, timed_out}. `cancel` (the caller went, or was interrupted) kills the command:
        the agent ends it when its connection goes."""
        command, cwd, env, timeout = self.checked_exec(
            body.get("command"), body.get("cwd"), body.get("env"), body.get("timeout", 60)
        )
        async with self.agent(sandbox_id) as agent:
            return await agent.processes.exec_stream(
                command, on_output=on_output, cancel=cancel, cwd=cwd, env=env, timeout=timeout
            )

    async def list_sessions(self, sandbox_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return await agent.sessions.list()

    async def create_session(self, sandbox_id: str, session_id: Any, cwd: Any, env: Any) -> dict[str, Any]:
        cwd = check_path(cwd, "cwd", required=False) or None
        async with self.agent(sandbox_id) as agent:
            return await agent.sessions.create(session_id, cwd, env or {})

    async def get_session(self, sandbox_id: str, session_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return await agent.sessions.get(session_id)

    async def delete_session(self, sandbox_id: str, session_id: str) -> None:
        async with self.agent(sandbox_id) as agent:
            await agent.sessions.delete(session_id)

    async def run_command(self, sandbox_id: str, session_id: str, command: Any, run_async: bool) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return await agent.sessions.run(session_id, command, run_async)

    async def send_input(self, sandbox_id: str, session_id: str, command_id: str, body: dict[str, Any]) -> Any:
        async with self.agent(sandbox_id) as agent:
            return await agent.sessions.send_input(session_id, command_id, body)

    async def kill_command(self, sandbox_id: str, session_id: str, command_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return await agent.sessions.kill(session_id, command_id)

    async def command_logs(self, sandbox_id: str, session_id: str, command_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return await agent.sessions.logs(session_id, command_id)

    async def follow_logs(
        self, sandbox_id: str, session_id: str, command_id: str, on_line: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        """A session command's followed logs, relayed object by object (the next read once it is sent)."""
        async with self.agent(sandbox_id) as agent:
            async for chunk in agent.sessions.follow_logs(session_id, command_id):
                await on_line(chunk)

    async def terminal(self, sandbox_id: str) -> AgentClient:
        """Where a terminal in the sandbox is opened (the agent's /pty websocket). No gate: the
        terminal is a long-lived relay, not a call."""
        return self.agent_for(await self.sandbox(sandbox_id))

    # -- PTYs -------------------------------------------------------------------------------

    async def list_ptys(self, sandbox_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return {"ptys": await agent.ptys.list()}

    async def create_pty(self, sandbox_id: str, body: dict[str, Any]) -> dict[str, Any]:
        request = ptys.checked_request(body)
        async with self.agent(sandbox_id) as agent:
            return await agent.ptys.create(request)

    async def get_pty(self, sandbox_id: str, pty_id: str) -> dict[str, Any]:
        ptys.check_id(pty_id)
        async with self.agent(sandbox_id) as agent:
            return await agent.ptys.get(pty_id)

    async def kill_pty(self, sandbox_id: str, pty_id: str) -> dict[str, Any]:
        ptys.check_id(pty_id)
        async with self.agent(sandbox_id) as agent:
            return await agent.ptys.kill(pty_id)

    async def resize_pty(self, sandbox_id: str, pty_id: str, body: dict[str, Any]) -> dict[str, Any]:
        ptys.check_id(pty_id)
        cols, rows = ptys.checked_size(body.get("cols"), body.get("rows"))
        async with self.agent(sandbox_id) as agent:
            return await agent.ptys.resize(pty_id, cols, rows)

    async def pty_endpoint(self, sandbox_id: str, pty_id: str) -> tuple[AgentClient, dict[str, Any]]:
        """Where a client connects to a PTY (the agent's /ptys/{id}/connect websocket), once the PTY
        is known to exist (an unknown id is a 404 before any upgrade). No gate for the relay itself."""
        ptys.check_id(pty_id)
        async with self.gate(sandbox_id):
            agent = self.agent_for(await self.sandbox(sandbox_id))
            return agent, await agent.ptys.get(pty_id)

    async def pty_send(self, sandbox_id: str, pty_id: str, data: Any) -> int:
        """Type `data` into a running PTY (for callers without a websocket: magics, MCP)."""
        ptys.check_id(pty_id)
        if not isinstance(data, str) or len(data) > ptys.MAX_COMMAND:
            raise errors.InvalidInput("input must be text of at most 64 KiB")
        agent, pty = await self.pty_endpoint(sandbox_id, pty_id)
        if pty["status"] != "running":
            raise errors.Conflict(f"PTY {pty_id!r} has exited (exit code {pty['exit_code']})")
        connection = await agent.ptys.connect(pty_id)
        try:
            await connection.write_message(json.dumps({"type": "input", "data": data}))
        finally:
            connection.close()
        return len(data)

    async def pty_follow(
        self,
        sandbox_id: str,
        pty_id: str,
        on_output: Callable[[str], None],
        until: str | None = None,
        timeout: float = 60,
        cancel: threading.Event | None = None,
    ) -> int | None:
        """A PTY's recent output and then what follows, handed to `on_output` as text, until its
        process exits (its exit code) or `until` appears in the output (None). TimedOut after `timeout`."""
        ptys.check_id(pty_id)
        agent, _ = await self.pty_endpoint(sandbox_id, pty_id)
        frames: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        connection = await agent.ptys.connect(pty_id, frames.put_nowait)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = ""
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    awaited = f"did not print {until!r}" if until else "did not exit"
                    raise errors.TimedOut(f"PTY {pty_id!r} {awaited} within {timeout:g} seconds")
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                try:
                    message = await asyncio.wait_for(frames.get(), min(remaining, 0.2))
                except asyncio.TimeoutError:
                    continue
                if message is None:
                    return (await agent.ptys.get(pty_id))["exit_code"]
                if isinstance(message, bytes):
                    text = message.decode("utf-8", "replace")
                    on_output(text)
                    if until:
                        seen = (seen + text)[-(len(until) + len(text)) :]
                        if until in seen:
                            return None
                    continue
                code = ptys.exit_code_of(message)
                if code is not None:
                    return code
        finally:
            connection.close()

    # -- git --------------------------------------------------------------------------------

    async def git_status(self, sandbox_id: str, repo: Any) -> dict[str, Any]:
        repo = check_path(repo, required=False)
        async with self.agent(sandbox_id) as agent:
            return await agent.git.status(repo)

    async def git_branches(self, sandbox_id: str, repo: Any) -> dict[str, Any]:
        repo = check_path(repo, required=False)
        async with self.agent(sandbox_id) as agent:
            return await agent.git.branches(repo)

    async def git_delete_branch(self, sandbox_id: str, repo: Any, name: str) -> dict[str, Any]:
        repo = check_path(repo, required=False)
        async with self.agent(sandbox_id) as agent:
            return await agent.git.delete_branch(repo, name)

    async def git(self, sandbox_id: str, operation: str, body: dict[str, Any]) -> Any:
        """A POST git operation. clone, pull and push may carry credentials (username + password for
        Basic, or token for Bearer): those never go to the sandbox, the host's proxy adds them to
        requests for the named repository while the call runs."""
        if "path" in body or operation != "clone":
            body = {**body, "path": check_path(body.get("path"), required=False)}
        shape = GIT_SHAPES[operation]
        fields = git_credentials.CREDENTIAL_FIELDS
        try:
            credential = Credential.from_body(body)
        except CredentialError as exc:
            raise errors.InvalidInput(str(exc)) from None
        request = {k: v for k, v in body.items() if k not in (*fields, "relay")}
        if operation not in ("clone", "pull", "push"):
            if credential is not None:
                raise errors.InvalidInput(f"git {operation} takes no credentials (only clone, pull and push do)")
            async with self.agent(sandbox_id) as agent:
                return reduced(await agent.git.run(operation, request), shape)
        remote: Remote | None = None
        if operation == "clone":
            if not isinstance(body.get("url"), str):
                raise errors.InvalidInput("url is required")
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
                    raise errors.InvalidInput(
                        "say which repository these credentials are for: give url (its https:// "
                        "address); the host only knows the remotes of repositories cloned through this API"
                    )
        key = request.get("path") or "."
        if credential is None or remote is None:
            async with self.agent(sandbox_id) as agent:
                answer = await agent.git.run(operation, request)
        else:
            answer = await self._git_with_credential(sandbox_id, operation, request, remote, credential)
        if operation == "clone":
            git_credentials.remember(sandbox_id, key, body["url"])
        return reduced(answer, shape)

    async def _git_with_credential(
        self, sandbox_id: str, operation: str, request: dict[str, Any], remote: Remote, credential: Credential
    ) -> dict[str, Any]:
        try:
            async with self.gate(sandbox_id):
                client = self.agent_for(await self.sandbox(sandbox_id))
                # The call relays git's connections for as long as git runs: on threads of its own,
                # not the Docker calls' (git calls are bounded per sandbox by the gate).
                loop = asyncio.get_running_loop()
                with domain_errors():
                    answer = await loop.run_in_executor(
                        self._git_calls, run_call, self.git_proxy, client, operation, request, remote, credential, 180
                    )
        except GitProxyError as exc:
            raise _proxy_error(exc) from None
        except errors.SandboxOperationError as exc:
            raise type(exc)(credential.redact(exc.message)) from None
        return credential.redact(answer)

    @staticmethod
    def _remote(url: Any) -> Remote:
        try:
            return Remote.parse(url)
        except CredentialError as exc:
            raise errors.InvalidInput(str(exc)) from None

    # -- previews and ports -----------------------------------------------------------------

    def preview_link(self, sandbox_id: str, port: Any, expires_in: Any = preview.DEFAULT_EXPIRY) -> PreviewLink:
        return preview_link(
            self.preview_url_template, sandbox_id, port, expires_in, self.server_port, self.script_url_template
        )

    async def create_preview(
        self, sandbox_id: str, port: Any, expires_in: Any = preview.DEFAULT_EXPIRY
    ) -> dict[str, Any]:
        async with self.gate(sandbox_id):
            await self.sandbox(sandbox_id, running=False)
        return self.preview_link(sandbox_id, port, expires_in).to_dict()

    async def rotate_previews(self, sandbox_id: str) -> None:
        async with self.gate(sandbox_id):
            await self.sandbox(sandbox_id, running=False)
        preview.rotate(sandbox_id)

    async def ports(self, sandbox_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            usage = await agent.usage(timeout=10)
        return {"ports": user_ports(usage["ports"])}

    # -- computer use: the sandbox's virtual desktop ------------------------------------------
    # Requests are checked here (desktop_checks), the agent's answers reduced there too; the desktop's
    # VNC view is a preview link to the noVNC page (the preview proxy's token and own origin), never a
    # published port.

    def desktop_view(self, sandbox_id: str, expires_in: Any = preview.DEFAULT_EXPIRY) -> dict[str, Any]:
        """The noVNC page of a sandbox's desktop, as a preview link (its address with the token)."""
        link = self.preview_link(sandbox_id, desktop_checks.NOVNC_PORT, expires_in).to_dict()
        return {**link, "novnc_url": desktop_checks.novnc_url(link["browser_url"])}

    async def _desktop_status(self, sandbox_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        status = desktop_checks.checked_status(answer)
        if status["status"] == "active":
            status["vnc"] = self.desktop_view(sandbox_id)
        return status

    async def desktop_start(self, sandbox_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        size = desktop_checks.check_start(body or {})
        async with self.agent(sandbox_id) as agent:
            answer = await agent.desktop.action("start", {k: v for k, v in size.items() if v is not None}, timeout=60)
        return await self._desktop_status(sandbox_id, answer)

    async def desktop_stop(self, sandbox_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return desktop_checks.checked_status(await agent.desktop.action("stop", timeout=30))

    async def desktop_status(self, sandbox_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            answer = await agent.desktop.get("status")
        return await self._desktop_status(sandbox_id, answer)

    async def desktop_screenshot(self, sandbox_id: str, options: dict[str, Any]) -> tuple[bytes, str]:
        """A screenshot (or a region of one, scaled, as PNG or JPEG, with the pointer drawn or not):
        (its bytes, its content type)."""
        query = desktop_checks.check_screenshot(options)
        async with self.agent(sandbox_id) as agent:
            data, content_type = await agent.desktop.screenshot(query, desktop_checks.MAX_SCREENSHOT_BYTES)
        return data, desktop_checks.checked_image(data, content_type)

    async def desktop_mouse(self, sandbox_id: str, action: Any, body: dict[str, Any]) -> dict[str, Any]:
        """move, click (button, count), drag (start to end) or scroll (direction, amount): the pointer's place."""
        clean = desktop_checks.check_mouse(action, body)
        async with self.agent(sandbox_id) as agent:
            return desktop_checks.checked_point(await agent.desktop.action(f"mouse/{action}", clean))

    async def desktop_pointer(self, sandbox_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return desktop_checks.checked_point(await agent.desktop.get("mouse"))

    async def desktop_keyboard(self, sandbox_id: str, action: Any, body: dict[str, Any]) -> dict[str, Any]:
        """type (text), press (a key with modifiers) or hotkey ('ctrl+shift+t')."""
        clean = desktop_checks.check_keyboard(action, body)
        # Typing takes its time: each character's delay, within a deadline that allows for it.
        timeout = 60 + len(clean.get("text", "")) * ((clean.get("delay") or 0) + 5) / 1000
        async with self.agent(sandbox_id) as agent:
            answer = await agent.desktop.action(f"keyboard/{action}", clean, timeout=timeout)
        if action == "type":
            typed = answer.get("typed")
            return {"typed": typed if isinstance(typed, int) and not isinstance(typed, bool) else None}
        keys = answer.get("keys")
        return {"keys": keys[:200] if isinstance(keys, str) else None}

    async def desktop_display(self, sandbox_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return desktop_checks.checked_display(await agent.desktop.get("display"))

    async def desktop_windows(self, sandbox_id: str) -> dict[str, Any]:
        async with self.agent(sandbox_id) as agent:
            return desktop_checks.checked_windows(await agent.desktop.get("windows"))

    async def desktop_focus(self, sandbox_id: str, window_id: Any) -> dict[str, Any]:
        window = desktop_checks.check_window_id(window_id)
        async with self.agent(sandbox_id) as agent:
            await agent.desktop.action("windows/focus", {"id": window})
        return {"id": window, "active": True}

    # -- a sandbox already in hand (the kernel's own, for the magics) -------------------------
    # The same calls as above, for a caller that holds its Sandbox and streams to or from the host:
    # inside the sandbox's gate, with this layer's timeouts and domain errors.

    async def exec_streaming(
        self,
        sandbox: Sandbox,
        command: str,
        on_output: Callable[[str, str], None],
        cancel: threading.Event | None = None,
        timeout: float | None = None,
        cwd: Any = None,
    ) -> dict[str, Any]:
        """Run a command (in `cwd`, a sandbox path, when given), its output handed to `on_output` as it
        comes: {exit_code, timed_out}."""
        folder = check_path(cwd, "cwd", required=False) or None
        async with self.gate(sandbox.id):
            agent = self.agent_for(sandbox)
            return await agent.processes.exec_stream(
                command, on_output=on_output, cancel=cancel, timeout=timeout, cwd=folder
            )

    async def list_folder(self, sandbox: Sandbox, path: str) -> dict[str, Any]:
        async with self.gate(sandbox.id):
            return await self.agent_for(sandbox).files.list(path)

    async def upload_from(self, sandbox: Sandbox, path: str, source: IO[bytes], size: int) -> dict[str, Any]:
        async with self.gate(sandbox.id):
            return await self.agent_for(sandbox).files.upload_from(path, source, size)

    async def download_to(
        self, sandbox: Sandbox, path: str, destination: IO[bytes], max_bytes: int, cancel: threading.Event | None
    ) -> int:
        async with self.gate(sandbox.id):
            return await self.agent_for(sandbox).files.download_to(path, destination, max_bytes, cancel)

    async def listening_ports(self, sandbox: Sandbox) -> builtins.list[int]:
        """Ports something in the sandbox listens on, the sandbox's own machinery left out."""
        async with self.gate(sandbox.id):
            usage = await self.agent_for(sandbox).usage(timeout=10)
        return user_ports(usage["ports"])


def _proxy_error(exc: GitProxyError) -> errors.SandboxOperationError:
    """The credential proxy's refusal (git_proxy.py speaks in the statuses its caller answered with)."""
    if exc.status == 413:
        return errors.PayloadTooLarge(exc.message)
    if exc.status == 502:
        return errors.AgentUnavailable(exc.message)
    return errors.InvalidInput(exc.message)


class Download:
    """A download under way: its kind, name and length as the agent announced them, then its chunks."""

    def __init__(self, agent: AgentClient, response: AgentResponse, path: str, archive: str | None) -> None:
        self.agent, self.response, self.path, self.archive = agent, response, path, archive

    @property
    def content_type(self) -> str:
        kind = self.response.header("Content-Type") or "application/octet-stream"
        return kind if kind in ("application/x-tar", "application/zip") else "application/octet-stream"

    @property
    def filename(self) -> str:
        kind = self.response.header("Content-Type") or ""
        return (self.path.rstrip("/").rsplit("/", 1)[-1] or "download") + (
            f".{self.archive or 'tar'}" if "x-tar" in kind or "zip" in kind else ""
        )

    @property
    def length(self) -> int | None:
        length = self.response.header("Content-Length")
        return int(length) if length and length.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.agent.guarded(self.response.read())
            if not chunk:
                return
            yield chunk


class UploadSlot:
    """One upload under way: files written to the agent as their bytes arrive (PUT /files/content
    per file), never more than a chunk of them held here."""

    def __init__(self, reservation: Any, release: Callable[[], None]) -> None:
        self.reservation, self.release = reservation, release
        self.agent: AgentClient | None = None
        self.file: AgentResponse | None = None
        self._chunked = False

    async def start_file(self, path: str, size: int | None) -> None:
        assert self.agent is not None and self.file is None
        self._chunked = size is None
        self.file = await self.agent.files.open_upload(path, size)

    async def send(self, chunk: bytes) -> None:
        if self.file is None or not chunk:
            return
        assert self.agent is not None
        await self.agent.files.send(self.file, chunk, self._chunked)

    async def finish_file(self) -> dict[str, Any]:
        assert self.agent is not None and self.file is not None
        file, self.file = self.file, None
        try:
            return await self.agent.files.finish_upload(file, self._chunked)
        finally:
            file.close()

    async def move_into_place(self, staged: list[tuple[str, str]], staging: str) -> list[dict[str, Any]]:
        """Files written to staging names (they came before the folder they belong in was known)
        moved to their places, replacing what was there, as an upload does."""
        assert self.agent is not None
        placed = []
        for source, destination in staged:
            with contextlib.suppress(errors.NotFound):
                await self.agent.files.delete(destination, recursive=False)
            placed.append(await self.agent.files.move_staged(source, destination))
        await self.agent.files.delete(staging, recursive=True)
        return placed

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.release()
        self.reservation.release()
