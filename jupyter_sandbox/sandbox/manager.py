"""SandboxManager: create, find, start, stop and remove sandboxes.

A sandbox is one container plus one named volume for /home/sandbox, both labelled
`io.jupyter-sandbox.*`. Everything the manager knows about a sandbox it reads back from Docker,
so any process of the same user (kernel, server, command line) sees the same sandboxes.
"""

from __future__ import annotations

import fnmatch
import getpass
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from traitlets import Bool, Float, Int, List, Unicode, Union
from traitlets.config import LoggingConfigurable

from .. import __version__
from . import binding, idle, network
from . import secrets as sandbox_secrets
from .client import AgentError, StreamingAgentClient
from .docker_backend import DockerBackend, SandboxError, tar_bytes
from .image import DEFAULT_BASE, DEFAULT_IMAGE, DEFAULT_REPOSITORY, build_image
from .network import EgressPolicy
from .spec import (
    AGENT_PORT,
    KERNEL_PORTS,
    LABEL_CREATED_BY,
    LABEL_ID,
    LABEL_KERNEL_ID,
    LABEL_OWNER,
    LABEL_POOL,
    LABEL_PREFIX,
    LABEL_SERVER,
    LABEL_SPEC,
    SANDBOX_HOME,
    SANDBOX_USER_UID,
    SandboxSpec,
    SpecError,
    format_size,
    parse_size,
)

Progress = Callable[[str], None]

# Set by the server extension for the kernels it starts: whose warm pool they may claim from.
SERVER_ID_ENV = "JUPYTER_SANDBOX_SERVER_ID"
AGENT_DIR = "/opt/jupyter-sandbox"
AGENT_PACKAGE = "jupyter_sandbox_agent"
# Started with -I so that nothing in the sandbox's environment changes how the agent is imported.
AGENT_COMMAND = [
    "python3", "-I", "-c",
    f"import sys, runpy; sys.path.insert(0, {AGENT_DIR!r}); "
    f"runpy.run_module({AGENT_PACKAGE!r}, run_name='__main__', alter_sys=True)",
]


def _quiet(message: str) -> None:
    pass


def _spec_label(spec: SandboxSpec) -> str:
    """The spec as recorded in a sandbox's label (its own labels left out)."""
    return json.dumps({k: v for k, v in spec.to_dict().items() if k != "labels"})


def _created_seconds(sandbox: "Sandbox") -> float:
    return float(sandbox.created) if sandbox.created.isdigit() else 0.0


def _docker_time(value: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which fromisoformat() does not take."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", value)
    if not match or value.startswith("0001-"):
        return None
    return datetime.fromisoformat(match.group(1) + (match.group(2) or ".0")[:7]).replace(tzinfo=timezone.utc)


@dataclass
class Sandbox:
    """A sandbox as Docker describes it right now."""

    id: str
    container_id: str
    name: str
    volume: str
    state: str
    image: str
    labels: dict[str, str]
    host_ports: dict[int, int] = field(default_factory=dict)
    exit_code: int | None = None
    oom_killed: bool = False
    created: str = ""
    ip_address: str = ""
    image_id: str = ""

    def direct_address(self) -> str | None:
        """The container's own address when the host can reach it: the engine is on this machine."""
        docker_host = os.environ.get("DOCKER_HOST", "")
        if self.ip_address and (not docker_host or docker_host.startswith("unix://")):
            return self.ip_address
        return None

    def agent_endpoint(self) -> tuple[str, int]:
        """Where the host reaches the agent: the container's bridge address when the engine is on this
        machine (no userland port proxy in the way), else the port published on 127.0.0.1."""
        address = self.direct_address()
        if address:
            return address, AGENT_PORT
        if AGENT_PORT not in self.host_ports:
            raise SandboxError(f"sandbox {self.id} is not running")
        return "127.0.0.1", self.host_ports[AGENT_PORT]

    @property
    def binding(self) -> binding.Binding:
        return binding.parse_name(self.name) or binding.Binding(self.id)

    @property
    def kernel_id(self) -> str | None:
        """The kernel using this sandbox now (its name says; see binding.py)."""
        return self.binding.kernel_id

    @property
    def workspace(self) -> str | None:
        """The notebook workspace this sandbox keeps, if any."""
        return self.binding.workspace

    @property
    def pool(self) -> bool:
        """Made for the warm pool and not claimed yet."""
        return self.labels.get(LABEL_POOL) == "1" and not self.kernel_id and not self.workspace

    @property
    def owner(self) -> str:
        return self.labels.get(LABEL_OWNER, "")

    @property
    def server(self) -> str:
        """The Jupyter server that made it ('' for the command line or a kernel of no server)."""
        return self.labels.get(LABEL_SERVER, "")

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def spec(self) -> dict[str, Any]:
        try:
            return json.loads(self.labels.get(LABEL_SPEC, "{}"))
        except ValueError:
            return {}

    @property
    def memory_limit(self) -> str:
        """The memory limit as a person reads it, e.g. '1 GiB' ('' when unknown)."""
        memory = self.spec.get("memory")
        return format_size(memory) if isinstance(memory, int) else ""

    def kernel_connection(self) -> dict[str, Any]:
        """Connection info for the inner ipykernel, as seen from the host."""
        info: dict[str, Any] = {
            "transport": "tcp",
            "ip": "127.0.0.1",
            "key": sandbox_secrets.kernel_key(self.id),
            "signature_scheme": "hmac-sha256",
        }
        for channel, port in KERNEL_PORTS.items():
            if port not in self.host_ports:
                raise SandboxError(f"sandbox {self.id} has no published {channel} port; is it running?")
            info[f"{channel}_port"] = self.host_ports[port]
        return info

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "image": self.image,
            "kernel_id": self.kernel_id,
            "workspace": self.workspace,
            "pool": self.pool,
            "owner": self.owner,
            "created": datetime.fromtimestamp(int(self.created), timezone.utc).isoformat() if self.created.isdigit() else self.created,
            "volume": self.volume,
            "spec": self.spec,
        }


class SandboxManager(LoggingConfigurable):
    """Creates and tracks sandboxes on the local Docker engine."""

    image = Unicode(DEFAULT_IMAGE, config=True, help=(
        "Image for new sandboxes. Any image with Python 3 and ipykernel works; the default is "
        "built on demand by `jupyter sandbox image build`."))
    base_image = Unicode(DEFAULT_BASE, config=True, help=(
        "Base image the default sandbox image is built on when it is missing. When it cannot be "
        "pulled, a Debian base is bootstrapped with mmdebstrap instead."))
    bootstrap_base = Bool(False, config=True, help=(
        "Do not try to pull base_image: bootstrap a Debian base with mmdebstrap right away. "
        "For machines that reach no image registry."))
    build_missing_image = Bool(True, config=True, help=(
        f"Build an image of the {DEFAULT_REPOSITORY} repository (docker/Dockerfile) when a sandbox "
        "needs it and it is missing. Other images are never built or pulled implicitly."))
    cpu = Float(1.0, config=True, help="vCPUs for each sandbox (a CPU quota, may be fractional).")
    memory = Union([Int(), Unicode()], default_value="1g", config=True, help=(
        "Memory for each sandbox, e.g. '1g'. Swap is not allowed on top of it: a process that "
        "needs more is killed by the kernel's OOM killer inside the sandbox."))
    disk = Union([Int(), Unicode()], default_value="3g", config=True, help=(
        "Largest file a sandbox process may write (RLIMIT_FSIZE), e.g. '3g'."))
    pids = Int(512, config=True, help="Most processes and threads a sandbox may run at once.")
    nofile = Int(4096, config=True, help="Most open files per sandbox process.")
    network_name = Unicode("jupyter-sandbox", config=True, help=(
        "Docker bridge network the sandboxes join. It is created with inter-container traffic "
        "disabled, so sandboxes cannot reach each other."))
    runtime = Unicode("", config=True, help=(
        "Docker runtime for sandboxes, e.g. 'runsc' for gVisor. Empty: the engine's default (runc)."))
    owner = Unicode(config=True, help="Owner label of sandboxes made by this process. Default: the OS user.")
    max_cpu = Float(4.0, config=True, help="Most vCPUs a notebook may ask for (`%sandbox config --cpu`).")
    max_memory = Union([Int(), Unicode()], default_value="8g", config=True,
                       help="Most memory a notebook may ask for, e.g. '8g'.")
    max_pids = Int(4096, config=True, help="Most processes a notebook may ask for.")
    max_disk = Union([Int(), Unicode()], default_value="20g", config=True,
                     help="Largest per-file size limit a notebook may ask for, e.g. '20g'.")
    default_network = Unicode("internet", config=True, help=(
        "Egress policy of new sandboxes: 'internet' (public addresses only), 'none', or 'allow' with "
        "default_network_cidrs. Enforced with iptables in the sandbox's network namespace (needs root)."))
    default_network_cidrs = List(Unicode(), default_value=[], config=True,
                                 help="CIDR blocks for default_network = 'allow'.")
    max_egress_cidrs = Int(10, config=True, help="Most CIDR blocks an allow-list egress policy may hold.")
    allow_any_cidr = Bool(False, config=True, help="Allow 0.0.0.0/0 or ::/0 in an allow-list egress policy.")
    idle_timeout = Float(900.0, config=True, help=(
        "Seconds without use (no running cell, API call, preview request or terminal input) after "
        "which a sandbox is stopped; its files are kept and the next use starts it again. 0: never."))
    auto_delete_after = Float(0.0, config=True, help=(
        "Seconds a sandbox may stay stopped before it is deleted with its files. 0: never (default)."))
    warm_pool_size = Int(1, config=True, help=(
        "Sandboxes of the default spec kept started and waiting, so that a new kernel claims one "
        "instead of creating one (a start in a fraction of a second). Refilled in the background by "
        "the Jupyter server extension. Each costs the memory of an idle sandbox. 0: no pool."))
    orphan_grace = Float(60.0, config=True, help=(
        "Seconds a sandbox's kernel may be gone (its process ended without releasing the sandbox, "
        "e.g. killed) before the server reconciles it: a notebook's sandbox is stopped and kept, "
        "one of a kernel without a notebook is removed."))
    allowed_images = List(Unicode(), default_value=[f"{DEFAULT_REPOSITORY}:*"], config=True, help=(
        "Glob patterns of the images a notebook may switch to with `%sandbox config --image`. "
        "The configured default image is always allowed."))

    server_id = Unicode(config=False, help=(
        "The Jupyter server this process belongs to (binding.ServerLease): set by the server "
        "extension, inherited by its kernels. Its housekeeping touches only what is its own."))

    def _owner_default(self) -> str:
        return getpass.getuser()

    def _server_id_default(self) -> str:
        value = os.environ.get(SERVER_ID_ENV, "")
        return value if binding.SERVER_ID_RE.match(value) else ""

    def __init__(self, backend: DockerBackend | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._backend = backend
        self._storage: dict[str, str] | None = None
        # Seconds since the epoch of the last use seen on the host side, by sandbox id.
        self._host_activity: dict[str, float] = {}
        # Set when the server shuts down: housekeeping makes nothing new from then on.
        self.stopping = False

    @property
    def backend(self) -> DockerBackend:
        if self._backend is None:
            self._backend = DockerBackend()
        return self._backend

    # -- specs ------------------------------------------------------------------------------

    def default_spec(self, **overrides: Any) -> SandboxSpec:
        values: dict[str, Any] = {
            "image": self.image,
            "cpu": self.cpu,
            "memory": parse_size(self.memory, "memory"),
            "disk": parse_size(self.disk, "disk"),
            "pids": self.pids,
            "runtime": self.runtime or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return SandboxSpec(**values).validate()

    def check_allowed(self, spec: SandboxSpec) -> SandboxSpec:
        """Refuse a spec beyond the operator's maxima or with an image not on the allow list."""
        spec.validate()
        maxima = [
            ("cpu", spec.cpu, self.max_cpu, lambda v: f"{v:g} vCPUs"),
            ("memory", spec.memory, parse_size(self.max_memory, "max_memory"), format_size),
            ("pids", spec.pids, self.max_pids, str),
            ("disk", spec.disk, parse_size(self.max_disk, "max_disk"), format_size),
        ]
        for name, value, maximum, show in maxima:
            if value > maximum:
                raise SpecError(f"{name}: {show(value)} is above the operator's maximum of {show(maximum)}")
        if spec.image != self.image and not any(fnmatch.fnmatchcase(spec.image, p) for p in self.allowed_images):
            raise SpecError(f"image: {spec.image!r} is not allowed here; allowed: "
                            f"{', '.join([self.image, *self.allowed_images])}")
        return spec

    # -- images -----------------------------------------------------------------------------

    def ensure_image(self, image: str, progress: Progress = _quiet) -> None:
        if self.backend.image_id(image):
            return
        repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        if repository != DEFAULT_REPOSITORY or not self.build_missing_image:
            raise SandboxError(
                f"the image {image!r} is not on this Docker engine; build it "
                "(`jupyter sandbox image build` for the default one) or choose another image")
        progress(f"the sandbox image {image} is missing; building it (first use only)...")
        build_image(self.backend, progress, tag=image, base=self.base_image, bootstrap=self.bootstrap_base)

    # -- lifecycle --------------------------------------------------------------------------

    def create(self, spec: SandboxSpec | None = None, kernel_id: str | None = None,
               progress: Progress = _quiet, start: bool = True, sandbox_id: str | None = None,
               network_policy: EgressPolicy | None = None, workspace: str | None = None,
               pool: bool = False) -> Sandbox:
        """Create a sandbox; with `sandbox_id`, a new container for an existing sandbox's volume.

        `kernel_id` and `workspace` bind it to a kernel and a notebook (binding.py); `pool` marks it
        as made for the warm pool."""
        spec = (spec or self.default_spec()).validate()
        self.ensure_image(spec.image, progress)
        sandbox_id = sandbox_id or secrets.token_hex(6)
        name = binding.Binding(sandbox_id, workspace, binding.check_kernel_id(kernel_id) if kernel_id else None).name
        volume = binding.volume_name(sandbox_id)
        labels = {
            **spec.labels,
            LABEL_ID: sandbox_id,
            LABEL_OWNER: self.owner,
            LABEL_CREATED_BY: f"jupyter-sandbox {__version__}",
            LABEL_SPEC: _spec_label(spec),
        }
        if kernel_id:
            labels[LABEL_KERNEL_ID] = kernel_id  # the kernel it was made for; who has it now is in its name
        if pool:
            labels[LABEL_POOL] = "1"
        if self.server_id:
            labels[LABEL_SERVER] = self.server_id
        for key in labels:
            if key.startswith(LABEL_PREFIX) and key in spec.labels:
                raise SpecError(f"labels: {key} is reserved")
        backend = self.backend
        self._ensure_network()
        backend.create_volume(volume, {LABEL_ID: sandbox_id, LABEL_OWNER: self.owner})
        env = {"HOME": SANDBOX_HOME, "USER": "sandbox", **spec.env}
        try:
            container_id = self._create_container(spec, name, volume, labels, env, binding.base_name(sandbox_id))
            backend.put_archive(container_id, "/", self._agent_archive(sandbox_id))
        except Exception:
            self._remove_parts(name, volume)
            raise
        if not network.policy_path(sandbox_id).exists():
            network.save(sandbox_id, network_policy or self.network_policy(
                {"mode": self.default_network, "cidrs": self.default_network_cidrs} if self.default_network == "allow"
                else self.default_network))
        sandbox = self.get(sandbox_id)
        if start:
            sandbox = self.start(sandbox)
        self.log.info("created sandbox %s (%s) for kernel %s; disk: %s", sandbox_id, spec.image, kernel_id,
                      self.disk_enforcement(spec.disk)["note"])
        return sandbox

    def _create_container(self, spec: SandboxSpec, name: str, volume: str, labels: dict[str, str],
                          env: dict[str, str], hostname: str) -> str:
        backend = self.backend
        arguments = dict(
            name=name, image=spec.image, command=AGENT_COMMAND, labels=labels, env=env,
            volume=volume, mount_point=SANDBOX_HOME, network=self.network_name,
            ports=[AGENT_PORT, *KERNEL_PORTS.values()], cpu=spec.cpu, memory=spec.memory,
            pids=spec.pids, file_size=spec.disk, nofile=self.nofile,
            user=f"{SANDBOX_USER_UID}:{SANDBOX_USER_UID}", hostname=hostname, runtime=spec.runtime,
            alias=hostname,  # the name changes hands (binding.py); this one stays
        )
        try:
            return backend.create_container(**arguments)
        except SandboxError as exc:
            # The shared network may have been removed by another sandbox's shutdown meanwhile.
            if "network" not in str(exc).lower():
                raise
            self._ensure_network()
            return backend.create_container(**arguments)

    def _ensure_network(self) -> None:
        # Docker allows two networks of one name; sandboxes made at once must not make two.
        with binding.host_lock("network"):
            self.backend.ensure_network(self.network_name, {LABEL_CREATED_BY: "jupyter-sandbox"})

    def _drop_network_if_unused(self) -> None:
        with binding.host_lock("network"):
            self.backend.remove_network_if_unused(self.network_name)

    def _agent_archive(self, sandbox_id: str) -> bytes:
        config = {
            "token": sandbox_secrets.agent_token(sandbox_id),
            "port": AGENT_PORT,
            "kernel": {"key": sandbox_secrets.kernel_key(sandbox_id), "ports": KERNEL_PORTS, "cwd": SANDBOX_HOME},
            "runtime_dir": "/tmp/.jupyter-sandbox",
        }
        source = Path(__file__).resolve().parent.parent / "agent"
        prefix = AGENT_DIR.lstrip("/")
        files = {f"{prefix}/{AGENT_PACKAGE}/{path.name}": (path.read_bytes(), 0o444)
                 for path in sorted(source.glob("*.py"))}
        files[f"{prefix}/agent.json"] = (json.dumps(config).encode(), 0o400)
        dirs = {
            prefix: (0o755, 0, 0),
            f"{prefix}/{AGENT_PACKAGE}": (0o755, 0, 0),
            # The home volume must belong to the sandbox user even on images that lack one.
            SANDBOX_HOME.lstrip("/"): (0o755, SANDBOX_USER_UID, SANDBOX_USER_UID),
        }
        # The agent's code belongs to root; only its config must be readable by the sandbox user.
        return tar_bytes(files, dirs=dirs, owners={f"{prefix}/agent.json": SANDBOX_USER_UID})

    def recreate(self, sandbox: Sandbox, spec: SandboxSpec, progress: Progress = _quiet) -> Sandbox:
        """A fresh container with a new spec on the same workspace volume (same sandbox id)."""
        spec = spec.validate()
        self.ensure_image(spec.image, progress)
        self.backend.remove_container(sandbox.container_id)
        return self.create(spec, kernel_id=sandbox.kernel_id, progress=progress, sandbox_id=sandbox.id,
                           workspace=sandbox.workspace)

    def network_policy(self, value: Any) -> EgressPolicy:
        return network.parse_policy(value, self.max_egress_cidrs, self.allow_any_cidr)

    def egress(self, sandbox: Sandbox) -> EgressPolicy:
        return network.load(sandbox.id)

    def set_egress(self, sandbox: Sandbox, policy: EgressPolicy) -> None:
        """Keep the policy on the host and enforce it now if the sandbox runs (else at its next start)."""
        network.save(sandbox.id, policy)
        if sandbox.running:
            self._enforce(sandbox, strict=True)

    def _enforce(self, sandbox: Sandbox, strict: bool = False) -> bool:
        pid = ((self.backend.inspect(sandbox.container_id) or {}).get("State") or {}).get("Pid")
        if not pid:
            return False
        try:
            network.apply(pid, network.load(sandbox.id))
            return True
        except network.EgressError as exc:
            if strict:
                raise SandboxError(str(exc)) from None
            self.log.warning("sandbox %s: egress policy NOT enforced: %s", sandbox.id, exc)
            return False

    def update_live(self, sandbox: Sandbox, cpu: float | None = None, memory: int | None = None) -> Sandbox:
        """Change CPU and memory of a running sandbox without restarting it."""
        self.backend.update_resources(sandbox.container_id, cpu=cpu, memory=memory)
        return self.get(sandbox.id)

    def limits(self, sandbox: Sandbox) -> dict[str, Any]:
        """The limits in force now, read from Docker (they change live with update_live)."""
        info = self.backend.inspect(sandbox.container_id) or {}
        host = info.get("HostConfig") or {}
        ulimits = {u.get("Name"): u.get("Hard") for u in host.get("Ulimits") or []}
        return {
            "cpu": (host.get("NanoCpus") or 0) / 1e9,
            "memory": host.get("Memory") or 0,
            "pids": host.get("PidsLimit") or 0,
            "disk": ulimits.get("fsize") or 0,
        }

    def disk_enforcement(self, per_file: int) -> dict[str, Any]:
        """What of the disk limit holds on this engine, said plainly.

        The per-file limit (RLIMIT_FSIZE) always holds. A limit on the total is not set: the home is a
        volume of Docker's `local` driver, which has no size option for a disk-backed volume, and
        the container's own layer can only be capped by overlay2 on xfs with project quotas."""
        if self._storage is None:
            try:
                self._storage = self.backend.storage()
            except Exception:  # an engine that does not say is treated as one that cannot
                self._storage = {"driver": "unknown", "backing": "unknown"}
        where = f"{self._storage.get('driver') or 'unknown'} on {self._storage.get('backing') or 'unknown'}"
        return {
            "per_file": per_file,
            "total": None,
            "enforced": "per-file",
            "storage": where,
            "note": (f"{format_size(per_file)} per file (enforced); total size NOT limited: the home volume "
                     f"uses Docker's local driver, which cannot cap a volume's size (storage: {where})"),
        }

    def current_spec(self, sandbox: Sandbox) -> SandboxSpec:
        """The sandbox's spec with the limits in force now."""
        recorded = sandbox.spec
        limits = self.limits(sandbox)
        env = recorded.get("env") if isinstance(recorded.get("env"), dict) else {}
        return SandboxSpec(image=sandbox.image, cpu=limits["cpu"], memory=limits["memory"], disk=limits["disk"],
                           pids=limits["pids"], env=env, runtime=recorded.get("runtime") or None)

    def uptime(self, sandbox: Sandbox) -> float | None:
        info = self.backend.inspect(sandbox.container_id) or {}
        started = _docker_time((info.get("State") or {}).get("StartedAt") or "")
        return None if started is None else max(0.0, (datetime.now(timezone.utc) - started).total_seconds())

    def usage(self, sandbox: Sandbox) -> dict[str, Any]:
        """Live CPU time, memory and process count, from Docker (not from inside the sandbox)."""
        return self.backend.usage(sandbox.container_id) if sandbox.running else {}

    def start(self, sandbox: Sandbox) -> Sandbox:
        if not sandbox.running:
            self._start_container(sandbox)
            idle.clear(sandbox.id)
            self._enforce(sandbox)
        return self.get(sandbox.id)

    def _start_container(self, sandbox: Sandbox) -> None:
        """Start a kept container. Its network may have been removed meanwhile (another sandbox's
        removal, `docker network prune`): then make the network again and join the container to it."""
        self._ensure_network()
        try:
            self.backend.start(sandbox.container_id)
            return
        except SandboxError as exc:
            if "network" not in str(exc).lower():
                raise
            self.log.info("sandbox %s: its network is gone (%s); joining it to a new one", sandbox.id, exc)
        self._ensure_network()
        self.backend.reconnect(sandbox.container_id, self.network_name, alias=binding.base_name(sandbox.id))
        self.backend.start(sandbox.container_id)

    def stop(self, sandbox: Sandbox) -> Sandbox:
        self.backend.stop(sandbox.container_id)
        return self.get(sandbox.id)

    def remove(self, sandbox: Sandbox | str) -> None:
        sandbox_id = sandbox if isinstance(sandbox, str) else sandbox.id
        for summary in self.backend.list_containers({LABEL_ID: sandbox_id}):
            self.backend.remove_container(summary["Id"])
        self._remove_parts(binding.base_name(sandbox_id), binding.volume_name(sandbox_id))
        self._drop_network_if_unused()
        network.forget(sandbox_id)
        idle.clear(sandbox_id)
        binding.forget_pool_ready(sandbox_id)
        self.log.info("removed sandbox %s", sandbox_id)

    def _remove_parts(self, container: str, volume: str) -> None:
        self.backend.remove_container(container)
        # The volume can stay busy for a moment after a forced removal.
        for attempt in range(20):
            try:
                self.backend.remove_volume(volume)
                return
            except SandboxError:
                if attempt == 19:
                    raise
                time.sleep(0.1)

    # -- lookups ----------------------------------------------------------------------------

    def _from_summary(self, summary: dict[str, Any]) -> Sandbox:
        labels = summary.get("Labels") or {}
        ports: dict[int, int] = {}
        for entry in summary.get("Ports") or []:
            if entry.get("PublicPort") and entry.get("IP") in ("127.0.0.1", None):
                ports[int(entry["PrivatePort"])] = int(entry["PublicPort"])
        name = (summary.get("Names") or ["/?"])[0].lstrip("/")
        return Sandbox(
            id=labels.get(LABEL_ID, ""),
            container_id=summary["Id"],
            name=name,
            volume=binding.volume_name(labels.get(LABEL_ID, "")),
            state=summary.get("State", "unknown"),
            image=summary.get("Image", ""),
            labels=labels,
            host_ports=ports,
            created=str(summary.get("Created", "")),
            image_id=str(summary.get("ImageID") or ""),
            ip_address=next((n.get("IPAddress") or "" for n in ((summary.get("NetworkSettings") or {})
                                                               .get("Networks") or {}).values()), ""),
        )

    def list(self, owner: str | None = None, kernel_id: str | None = None,
             workspace: str | None = None) -> list[Sandbox]:
        labels = {LABEL_OWNER: owner} if owner else {}
        pattern = None
        if kernel_id:
            pattern = binding.kernel_name_pattern(kernel_id)
        elif workspace:
            pattern = binding.workspace_name_pattern(workspace)
        found = [self._from_summary(s) for s in self.backend.list_containers(labels, [LABEL_ID], name=pattern)]
        # Docker's name filter is a search; check the parsed binding exactly.
        if kernel_id:
            found = [s for s in found if s.kernel_id == kernel_id]
        if workspace:
            found = [s for s in found if s.workspace == workspace]
        return found

    def get(self, sandbox_id: str) -> Sandbox:
        found = self.backend.list_containers({LABEL_ID: sandbox_id})
        if not found:
            raise SandboxError(f"there is no sandbox {sandbox_id!r}")
        sandbox = self._from_summary(found[0])
        if not sandbox.running:
            details = self.backend.inspect(sandbox.container_id) or {}
            state = details.get("State") or {}
            sandbox.exit_code = state.get("ExitCode")
            sandbox.oom_killed = bool(state.get("OOMKilled"))
        return sandbox

    def find_for_kernel(self, kernel_id: str) -> Sandbox | None:
        matches = self.list(kernel_id=kernel_id)
        return matches[0] if matches else None

    def find_for_workspace(self, workspace: str) -> Sandbox | None:
        matches = self.list(owner=self.owner, workspace=workspace)
        return matches[0] if matches else None

    # -- who has a sandbox: claims, release, the warm pool ------------------------------------

    def bind(self, sandbox: Sandbox, workspace: str | None, kernel_id: str | None) -> Sandbox:
        """Give a sandbox to a kernel and/or notebook (or take it back) by renaming its container."""
        wanted = binding.Binding(sandbox.id, workspace, binding.check_kernel_id(kernel_id) if kernel_id else None)
        if wanted.name != sandbox.name and not self.backend.rename(sandbox.name, wanted.name):
            raise SandboxError(f"sandbox {sandbox.id} changed hands meanwhile")
        return self.get(sandbox.id)

    def claim(self, kernel_id: str, workspace: str | None = None,
              spec: SandboxSpec | None = None) -> tuple[Sandbox | None, str]:
        """Find the sandbox a starting kernel should use, without creating one.

        In order: the kernel's own (a restart), its notebook's (reopened, or after a server restart),
        a free one from the warm pool when `spec` is the pool's. Returns (sandbox, how) with how in
        'kernel', 'workspace', 'pool'; or (None, '') to create one, or (None, 'busy <kernel id>')
        when the notebook's sandbox is in use by another kernel that is alive."""
        with binding.claim_lock():
            own = self.find_for_kernel(kernel_id)
            if own is not None:
                return own, "kernel"
            # The notebook may have moved since the kernel started (notebooks.py notes it).
            workspace = binding.kernel_workspace(kernel_id, workspace)
            if workspace:
                kept = self.find_for_workspace(workspace)
                if kept is not None:
                    if kept.kernel_id and binding.kernel_alive(kept.kernel_id):
                        return None, f"busy {kept.kernel_id}"
                    return self.bind(kept, workspace, kernel_id), "workspace"
            if spec is not None and self.warm_pool_size > 0 and spec == self.default_spec():
                # Only this server's pool, and only a sandbox the pool saw answering: one whose agent
                # still starts would give the kernel's first calls (and the sidebar's) a 502.
                for candidate in self.pool_sandboxes(spec, server=self.server_id):
                    if not binding.pool_ready(candidate.id):
                        continue
                    try:
                        return self.bind(candidate, workspace, kernel_id), "pool"
                    except SandboxError:
                        continue
        return None, ""

    def follow_kernel_workspace(self, sandbox: Sandbox, kernel_id: str) -> Sandbox:
        """After a kernel made its sandbox: if its notebook moved meanwhile, the sandbox goes with it."""
        with binding.claim_lock():
            current = self.get(sandbox.id)
            if current.kernel_id != kernel_id:
                return current
            workspace = binding.kernel_workspace(kernel_id, current.workspace)
            if workspace == current.workspace:
                return current
            if workspace and self.find_for_workspace(workspace) is not None:
                workspace = None  # taken by another sandbox meanwhile: this one stays the kernel's own
            return self.bind(current, workspace, kernel_id)

    def release(self, sandbox: Sandbox) -> None:
        """A kernel is done with its sandbox: a notebook's is stopped and kept for the notebook's
        next kernel; any other is removed with its files, as nothing could find it again."""
        if not sandbox.workspace:
            # A kernel's own sandbox: nothing else can take it (no notebook, not in the pool), so no
            # lock, which twenty kernels shutting down at once would queue on.
            self.remove(sandbox)
            return
        kernel_id = sandbox.kernel_id
        with binding.claim_lock():
            # Read it again: its notebook may have moved or been deleted since it was listed, and the
            # notebook's next kernel may have taken it over already (then it is not ours to release).
            sandbox = self.get(sandbox.id)
            if sandbox.kernel_id != kernel_id:
                self.log.info("sandbox %s changed hands before its release; left to kernel %s", sandbox.id,
                              sandbox.kernel_id)
                return
            if sandbox.workspace:
                sandbox = self.bind(sandbox, sandbox.workspace, None)
        if sandbox.workspace:
            self.backend.stop(sandbox.container_id, timeout=2)
            self.log.info("kept sandbox %s of workspace %s (stopped)", sandbox.id, sandbox.workspace)
        else:
            self.remove(sandbox)

    # -- whose housekeeping -------------------------------------------------------------------

    def _server_is_mine(self, server_id: str) -> bool:
        """What a server made is its own while it runs; what no server made, or a server now gone
        made, is everyone's."""
        return not server_id or server_id == self.server_id or not binding.server_alive(server_id)

    def housekeeps(self, sandbox: Sandbox) -> bool:
        """Whether this process's housekeeping (pool, idle reaper, reconciliation) may touch it: it
        is this owner's, and the server of its kernel (or, without a kernel, the server that made it)
        is this one, none, or gone."""
        if sandbox.owner != self.owner:
            return False
        if sandbox.kernel_id:
            return self._server_is_mine(binding.kernel_server(sandbox.kernel_id))
        return self._server_is_mine(sandbox.server)

    def pool_sandboxes(self, spec: SandboxSpec | None = None, among: list[Sandbox] | None = None,
                       server: str | None = None) -> list[Sandbox]:
        """Free, running warm-pool sandboxes of this owner that match `spec` (default: the default),
        found `among` the given ones (default: this owner's now), of the Jupyter server `server`
        ('' for none; default: of any)."""
        spec = spec or self.default_spec()
        wanted = _spec_label(spec)
        image_id = self.backend.image_id(spec.image) or "-"
        among = self.list(owner=self.owner) if among is None else among
        return [s for s in among if s.pool and s.running and (server is None or s.server == server)
                and s.labels.get(LABEL_SPEC) == wanted and s.image_id == image_id]

    def fill_pool(self, progress: Progress = _quiet) -> dict[str, list[str]]:
        """Bring the warm pool to `warm_pool_size` free sandboxes; drop stale, stopped or extra ones."""
        done: dict[str, list[str]] = {"created": [], "removed": []}
        spec = self.default_spec()
        mine = self.list(owner=self.owner)
        keep = {s.id for s in self.pool_sandboxes(spec, among=mine, server=self.server_id)[:self.warm_pool_size]}
        for sandbox in mine:
            # Another running server's pool is its own; a gone server's is stale.
            if not sandbox.pool or sandbox.id in keep or not self.housekeeps(sandbox):
                continue
            with binding.claim_lock():
                try:
                    still_free = self.get(sandbox.id).pool  # a kernel may have claimed it meanwhile
                except SandboxError:
                    continue
                if still_free:
                    self.remove(sandbox)
                    done["removed"].append(sandbox.id)
        for sandbox_id in keep:
            if not binding.pool_ready(sandbox_id) and not self.stopping:
                # Made by a fill that did not see it answer (a server stopped meanwhile): see now.
                self.wait_for_agent(self.get(sandbox_id))
                binding.mark_pool_ready(sandbox_id)
        for _ in range(max(0, self.warm_pool_size - len(keep))):
            if self.stopping:
                break
            sandbox = self.create(spec, progress=progress, pool=True)
            self.wait_for_agent(sandbox)
            binding.mark_pool_ready(sandbox.id)
            done["created"].append(sandbox.id)
        return done

    def drain_pool(self) -> list[str]:
        """Remove the free warm-pool sandboxes (claimed ones are left to their kernels)."""
        removed = []
        with binding.claim_lock():
            for sandbox in self.list(owner=self.owner):
                if sandbox.pool and sandbox.server == self.server_id:
                    self.remove(sandbox)
                    removed.append(sandbox.id)
        return removed

    def reconcile(self) -> dict[str, list[str]]:
        """Tidy up after processes that died without releasing their sandboxes.

        A sandbox bound to a kernel that has been gone longer than `orphan_grace` is released as its
        kernel would have (a notebook's stopped and kept, others removed); volumes without a sandbox
        are removed. Sandboxes of live kernels, of notebooks and the pool's are left alone."""
        done: dict[str, list[str]] = {"released": [], "volumes": []}
        now = time.time()
        everyone = self.list()
        for sandbox in everyone:
            if self.stopping:
                return done
            kernel_id = sandbox.kernel_id
            if not kernel_id or not self.housekeeps(sandbox) or binding.kernel_alive(kernel_id):
                continue
            if now - binding.lease_seen(kernel_id, default=_created_seconds(sandbox)) < self.orphan_grace:
                continue
            self.log.info("sandbox %s: its kernel %s is gone; releasing it", sandbox.id, kernel_id)
            try:
                self.release(sandbox)
                binding.forget_lease(kernel_id)
                done["released"].append(sandbox.id)
            except SandboxError as exc:
                self.log.warning("could not release sandbox %s: %s", sandbox.id, exc)
        all_ids = {s.id for s in everyone}
        for volume, labels, created in self.backend.volumes_with_labels([LABEL_ID]):
            if labels.get(LABEL_OWNER) != self.owner or labels.get(LABEL_ID) in all_ids:
                continue
            if created is not None and now - created < self.orphan_grace:
                continue  # a sandbox being created makes its volume first
            self.backend.remove_volume(volume)
            done["volumes"].append(volume)
        return done

    def agent(self, sandbox: Sandbox) -> StreamingAgentClient:
        if AGENT_PORT not in sandbox.host_ports:
            raise SandboxError(f"sandbox {sandbox.id} is not running")
        return StreamingAgentClient(sandbox.host_ports[AGENT_PORT], sandbox_secrets.agent_token(sandbox.id))

    def wait_for_agent(self, sandbox: Sandbox, timeout: float = 30) -> dict[str, Any]:
        client = self.agent(sandbox)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return client.health(timeout=2)
            except AgentError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def reap(self) -> dict[str, list[str]]:
        """Stop this owner's idle sandboxes and delete long-stopped ones, as configured."""
        done: dict[str, list[str]] = {"stopped": [], "deleted": []}
        now = time.time()
        for sandbox in self.list(owner=self.owner):
            if self.stopping:
                break  # the server is shutting down: its exit must not wait for this round
            if sandbox.pool or not self.housekeeps(sandbox):
                continue  # waiting to be claimed is the pool's job; another server's is its own
            if sandbox.running and self.idle_timeout > 0:
                try:
                    last = self.agent(sandbox).health(timeout=5).get("last_activity")
                except (AgentError, SandboxError):
                    continue
                if not isinstance(last, (int, float)):
                    continue
                last = max(last, self._host_activity.get(sandbox.id, 0.0))
                if now - last > self.idle_timeout:
                    self.log.info("sandbox %s idle for %.0f s: stopping it (files are kept)", sandbox.id, now - last)
                    idle.mark_stopped(sandbox.id)
                    self.stop(sandbox)
                    done["stopped"].append(sandbox.id)
            elif not sandbox.running and self.auto_delete_after > 0:
                finished = _docker_time(((self.backend.inspect(sandbox.container_id) or {}).get("State") or {})
                                        .get("FinishedAt") or "")
                if finished and (datetime.now(timezone.utc) - finished).total_seconds() > self.auto_delete_after:
                    self.log.info("sandbox %s stopped longer than %.0f s: deleting it", sandbox.id, self.auto_delete_after)
                    self.remove(sandbox)
                    done["deleted"].append(sandbox.id)
        return done

    def note_activity(self, sandbox_id: str) -> None:
        """Use the agent does not see (a preview reaching its app straight); the idle check counts it."""
        self._host_activity[sandbox_id] = time.time()

    def was_idle_stopped(self, sandbox: Sandbox) -> bool:
        return idle.was_stopped(sandbox.id)

    def prune(self) -> dict[str, list[str]]:
        """Remove stopped sandboxes, volumes without a sandbox and the network when unused."""
        removed: dict[str, list[str]] = {"sandboxes": [], "volumes": []}
        live_volumes = set()
        for sandbox in self.list():
            if sandbox.running:
                live_volumes.add(sandbox.volume)
                continue
            self._remove_parts(sandbox.container_id, sandbox.volume)
            removed["sandboxes"].append(sandbox.id)
        for volume in self.backend.list_volumes([LABEL_ID]):
            if volume not in live_volumes:
                self.backend.remove_volume(volume)
                removed["volumes"].append(volume)
        self._drop_network_if_unused()
        return removed
