"""SandboxManager: create, find, start, stop and remove sandboxes.

A sandbox is one container plus one named volume for /home/sandbox, both labelled
`io.jupyter-sandbox.*`. Everything the manager knows about a sandbox it reads back from Docker,
so any process of the same user (kernel, server, command line) sees the same sandboxes.
"""

from __future__ import annotations

import builtins
import fnmatch
import functools
import getpass
import hashlib
import ipaddress
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from traitlets import Bool, Enum, Float, Int, List, TraitError, Unicode, Union, validate
from traitlets.config import LoggingConfigurable

from .. import __version__
from . import binding, disk, errors, git_credentials, idle, interpreter, languages, network, preview
from . import secrets as sandbox_secrets
from .agent_client import AgentClient, run_blocking
from .agent_http import AgentError
from .backend import Backend
from .desktop_image import DESKTOP_REPOSITORY
from .disk import DiskStore, HomeDisk
from .docker_backend import DockerBackend, SandboxError, tar_bytes
from .gateway import authority as gateway_authority
from .gateway import control as gateway_control
from .gateway import state as gateway_state
from .gateway import vault as gateway_vault
from .gateway.settings import EgressGateway
from .image import (
    DEFAULT_BASE,
    DEFAULT_IMAGE,
    DEFAULT_REPOSITORY,
    LANGUAGE_REPOSITORIES,
    NODE_IMAGE,
    NODE_REPOSITORY,
    ImageRecipe,
    build_image,
)
from .network import EgressPolicy
from .quotas import Holding, OwnerLimit, QuotaExceeded, SandboxQuota
from .records import ContainerRecord, VolumeRecord
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
    LANGUAGES,
    SANDBOX_HOME,
    SANDBOX_USER_UID,
    SandboxSpec,
    SpecError,
    format_size,
    parse_size,
    readable_size,
)
from .ssh import tokens as ssh_tokens

Progress = Callable[[str], None]

# The root filesystem of a sandbox is read-only; these are the places besides the home that it writes,
# each a tmpfs of bounded size (in memory: it counts toward the sandbox's memory limit).
TMPFS_MOUNTS = ("/tmp", "/var/tmp")
RUN_TMPFS_SIZE = 16 * 1024**2
# Image folders that programs expect to write (matplotlib's config, XDG caches). On a read-only root
# they move into the home, and the agent seeds them there from the image once.
MOVED_TO_HOME = {"MPLCONFIGDIR": f"{SANDBOX_HOME}/.config/matplotlib", "XDG_CACHE_HOME": f"{SANDBOX_HOME}/.cache"}
LABEL_HOME_IMAGE = f"{LABEL_PREFIX}.home-image"
# On a container: what its home is, "ext4" (a filesystem of its own, size-limited) or "volume" (plain).
LABEL_HOME = f"{LABEL_PREFIX}.home"
# The names of the labels its creator gave it (a container also carries its image's labels).
LABEL_USER_LABELS = f"{LABEL_PREFIX}.user-labels"

# Set by the server extension for the kernels it starts: whose warm pool they may claim from.
SERVER_ID_ENV = "JUPYTER_SANDBOX_SERVER_ID"
AGENT_DIR = "/opt/jupyter-sandbox"
AGENT_PACKAGE = "jupyter_sandbox_agent"
# The CA bundle a sandbox trusts when it has one of its own (see _trust_bundle), and the variables
# that point the usual clients at it.
TRUST_BUNDLE = "ca-bundle.pem"
TRUST_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
)


def _host_ca_bundle() -> str:
    """The host's bundle of public roots (the system's, else certifi's)."""
    import ssl

    for candidate in (ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    import certifi

    return str(certifi.where())


# What the host writes to the container's stdin once the egress policy is in force (see start()).
GATE_LINE = b"open\n"
LABEL_PROBE = f"{LABEL_PREFIX}probe"


def agent_command(python: str) -> list[str]:
    """The container's command: the agent, from an interpreter the sandbox user cannot change (an
    absolute path judged by interpreter.py), with -I (no user site, no PYTHON* variables, no current
    folder on sys.path). The agent's first act is to wait at its start gate."""
    return [
        python,
        "-I",
        "-c",
        f"import sys, runpy; sys.path.insert(0, {AGENT_DIR!r}); "
        f"runpy.run_module({AGENT_PACKAGE!r}, run_name='__main__', alter_sys=True)",
    ]


# The default image's command, for reference (and for code that only needs one).
AGENT_COMMAND = agent_command(interpreter.DEFAULT_CANDIDATES[0])


def _quiet(message: str) -> None:
    pass


def _spec_label(spec: SandboxSpec) -> str:
    """The spec as recorded in a sandbox's label (its own labels left out)."""
    return json.dumps({k: v for k, v in spec.to_dict().items() if k != "labels"})


def _tmpfs_size(options: str) -> int:
    """The size= of a tmpfs mount's options, in bytes (0 when not given)."""
    for option in options.split(","):
        key, _, value = option.partition("=")
        if key == "size":
            try:
                return parse_size(value, "size")
            except SpecError:
                return 0
    return 0


def _created_seconds(sandbox: Sandbox) -> float:
    return float(sandbox.created) if sandbox.created.isdigit() else 0.0


class NoSuchSandbox(SandboxError, errors.SandboxNotFound):
    """No sandbox has that id (a SandboxError for the manager's callers, SandboxNotFound for the operations')."""


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
    # What Docker said about the container when this was read: a full inspect for SandboxManager.get(),
    # start() and stop(), a list summary for list(). The manager's readers (limits, uptime, ...) use
    # it rather than asking the engine again; None for a Sandbox made by hand.
    record: ContainerRecord | None = field(default=None, repr=False, compare=False)
    # Its home volume as read once for this Sandbox (the volume outlives containers and its options,
    # labels and mount point never change), so that readers of one operation ask for it once.
    home_volume: VolumeRecord | None = field(default=None, repr=False, compare=False)
    # On a backend of several machines: the node that runs it, the address its agent's published port
    # is reached at from here ('' for 127.0.0.1), and why it is not running when the backend knows.
    node: str = ""
    reach_host: str = ""
    reason: str = ""

    @classmethod
    def from_record(cls, record: ContainerRecord) -> Sandbox:
        sandbox_id = record.labels.get(LABEL_ID, "")
        return cls(
            id=sandbox_id,
            container_id=record.id,
            name=record.name,
            volume=binding.volume_name(sandbox_id),
            state=record.state,
            image=record.image,
            labels=dict(record.labels),
            host_ports=record.loopback_ports(),
            exit_code=None if record.running else record.exit_code,
            oom_killed=not record.running and record.oom_killed,
            created=str(int(record.created)) if record.created else "",
            ip_address=record.ip_address,
            image_id=record.image_id,
            record=record,
            node=record.node,
            reach_host=record.reach_host,
            reason=record.reason,
        )

    def direct_address(self) -> str | None:
        """The container's own address when the host can reach it: the engine is on this machine."""
        docker_host = os.environ.get("DOCKER_HOST", "")
        if self.reach_host:  # on another machine: its own address is that machine's
            return None
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
        return self.reach_host or "127.0.0.1", self.host_ports[AGENT_PORT]

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
        return self.labels.get(LABEL_POOL) == "1" and not self.kernel_id and not self.workspace and not self.binding.api

    @property
    def user_labels(self) -> dict[str, str]:
        """The labels its creator gave it (not the project's own, nor its image's)."""
        try:
            names = json.loads(self.labels.get(LABEL_USER_LABELS, "[]"))
        except ValueError:
            names = []
        return {k: self.labels[k] for k in names if isinstance(k, str) and k in self.labels}

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
            "labels": self.user_labels,
            "owner": self.owner,
            "created": datetime.fromtimestamp(int(self.created), timezone.utc).isoformat()
            if self.created.isdigit()
            else self.created,
            "volume": self.volume,
            "spec": self.spec,
            # Where it runs ('' on the local engine) and why it is not running, when that is known.
            "node": self.node,
            **({"reason": self.reason} if self.reason else {}),
        }


# Lets several independent users of one engine under one OS account (parallel test workers, CI jobs)
# keep their housekeeping apart.
OWNER_ENV = "JUPYTER_SANDBOX_OWNER"


def default_owner() -> str:
    """The owner a process's sandboxes get unless configured: $JUPYTER_SANDBOX_OWNER, else the OS user."""
    return os.environ.get(OWNER_ENV, "").strip() or getpass.getuser()


class SandboxManager(LoggingConfigurable):
    """Creates and tracks sandboxes on the local Docker engine."""

    image = Unicode(
        DEFAULT_IMAGE,
        config=True,
        help=(
            "Image for new sandboxes. Any image with Python 3 and ipykernel works; the default is "
            "built on demand by `jupyter sandbox image build`."
        ),
    )
    typescript_image = Unicode(
        NODE_IMAGE,
        config=True,
        help=(
            "Image for new TypeScript sandboxes (the 'TypeScript (sandbox)' kernel, or "
            '`POST /sandbox/api/sandboxes {"language": "typescript"}`): one with a TypeScript kernel, as '
            "`jupyter sandbox image build --lang node` makes. Always allowed, like `image`."
        ),
    )
    language = Enum(
        list(LANGUAGES),
        default_value="python",
        config=True,
        help=(
            "Kernel language of the sandboxes this process creates when none is asked for; the "
            "TypeScript kernelspec sets it to 'typescript'."
        ),
    )
    base_image = Unicode(
        DEFAULT_BASE,
        config=True,
        help=(
            "Base image the default sandbox image is built on when it is missing. When it cannot be "
            "pulled, a Debian base is bootstrapped with mmdebstrap instead."
        ),
    )
    bootstrap_base = Bool(
        False,
        config=True,
        help=(
            "Do not try to pull base_image: bootstrap a Debian base with mmdebstrap right away. "
            "For machines that reach no image registry."
        ),
    )
    build_missing_image = Bool(
        True,
        config=True,
        help=(
            f"Build an image of the {DEFAULT_REPOSITORY} or {NODE_REPOSITORY} repository (docker/Dockerfile, "
            "the python or node preset) when a sandbox needs it and it is missing. Other images are never built or pulled implicitly."
        ),
    )
    cpu = Float(1.0, config=True, help="vCPUs for each sandbox (a CPU quota, may be fractional).")
    memory = Union(
        [Int(), Unicode()],
        default_value="1g",
        config=True,
        help=(
            "Memory for each sandbox, e.g. '1g'. Swap is not allowed on top of it: a process that "
            "needs more is killed by the kernel's OOM killer inside the sandbox."
        ),
    )
    disk = Union(
        [Int(), Unicode()],
        default_value="3g",
        config=True,
        help=(
            "Size of each sandbox's home, e.g. '3g': a filesystem of its own, so the total of the bytes "
            "(and, one per disk_bytes_per_inode, the files) a sandbox writes is limited. The rest of the "
            "container is read-only apart from /tmp and /var/tmp (tmp_size each)."
        ),
    )
    enforce_disk = Enum(
        ["required", "if-possible", "off"],
        default_value="required",
        config=True,
        help=(
            "'required': a sandbox whose home cannot be a filesystem of its own (this process is not root, "
            "no loop devices, a remote Docker engine) is not created, and the error says why. "
            "'if-possible': it is created with a home of unlimited total size (only the per-file limit "
            "holds), and `%sandbox status` and the API say that the disk limit is NOT enforced. "
            "'off': every new home is a plain Docker volume of unlimited total size (said so likewise)."
        ),
    )
    disk_dir = Unicode(
        "",
        config=True,
        help=(
            "Folder of the sandboxes' home filesystem images (sparse files, one per sandbox). "
            "Default: jupyter_sandbox/disks in the Jupyter data directory. The host needs free space "
            "for the sum of the sizes of the sandboxes' homes."
        ),
    )
    disk_bytes_per_inode = Int(
        16384, config=True, help=("Bytes of home size per inode: a 3 GiB home holds at most 196608 files and folders.")
    )
    tmp_size = Union(
        [Int(), Unicode()],
        default_value="256m",
        config=True,
        help=("Size of the in-memory /tmp and of /var/tmp of each sandbox, e.g. '256m' (counts toward its memory)."),
    )
    pids = Int(512, config=True, help="Most processes and threads a sandbox may run at once.")
    nofile = Int(4096, config=True, help="Most open files per sandbox process.")
    network_name = Unicode(
        "jupyter-sandbox",
        config=True,
        help=(
            "Docker bridge network the sandboxes join. It is created with inter-container traffic "
            "disabled, so sandboxes cannot reach each other."
        ),
    )
    runtime = Unicode(
        "",
        config=True,
        help=("Docker runtime for sandboxes, e.g. 'runsc' for gVisor. Empty: the engine's default (runc)."),
    )
    owner = Unicode(
        config=True,
        help=(
            "Owner label of sandboxes made by this process; housekeeping (warm pool, idle stop, "
            "reconciliation) touches only this owner's. Default: $JUPYTER_SANDBOX_OWNER, else the OS user."
        ),
    )
    max_cpu = Float(4.0, config=True, help="Most vCPUs a notebook may ask for (`%sandbox config --cpu`).")
    max_memory = Union(
        [Int(), Unicode()], default_value="8g", config=True, help="Most memory a notebook may ask for, e.g. '8g'."
    )
    max_pids = Int(4096, config=True, help="Most processes a notebook may ask for.")
    max_disk = Union(
        [Int(), Unicode()],
        default_value="20g",
        config=True,
        help="Largest home a notebook may ask for (`%sandbox config --disk`), e.g. '20g'.",
    )
    default_network = Unicode(
        "internet",
        config=True,
        help=(
            "Egress policy of new sandboxes: 'internet' (public addresses only), 'none', or 'allow' with "
            "default_network_cidrs. Enforced with iptables in the sandbox's network namespace (needs root)."
        ),
    )
    default_network_cidrs = List(
        Unicode(), default_value=[], config=True, help="CIDR blocks for default_network = 'allow'."
    )
    max_egress_cidrs = Int(10, config=True, help="Most CIDR blocks an allow-list egress policy may hold.")
    allow_any_cidr = Bool(
        False,
        config=True,
        help=(
            "Allow allow-list egress policies of any size, 0.0.0.0/0 and ::/0 included. Off: an allow list "
            "is judged by the address space its blocks cover together (see max_egress_allow_v4_prefix)."
        ),
    )
    max_egress_allow_v4_prefix = Int(
        8,
        config=True,
        help=(
            "An allow list may cover, all its IPv4 blocks together, at most as many addresses as one block "
            "of this prefix length (8: a /8, 1/256 of the IPv4 space). 0.0.0.0/1 plus 128.0.0.0/1 is refused."
        ),
    )
    max_egress_allow_v6_prefix = Int(
        32,
        config=True,
        help=("The same for IPv6: an allow list covers at most as many addresses as one block of this length."),
    )
    enforce_egress = Bool(
        True,
        config=True,
        help=(
            "Put each sandbox's egress policy in force before its first process runs (iptables rules in its "
            "network namespace; needs root, nsenter and iptables-restore on the Docker host). When that "
            "fails the sandbox does not start, and says why. False: no enforcement at all (every sandbox "
            "reaches whatever the host reaches, whatever its policy says); only for hosts where that is "
            "acceptable, e.g. a rootless engine on a machine without secrets."
        ),
    )
    nsenter_command = Unicode("nsenter", config=True, help="nsenter on the host (a name on PATH or a path).")
    iptables_restore_command = Unicode(
        "iptables-restore", config=True, help="iptables-restore on the host (a name on PATH or a path)."
    )
    ip6tables_restore_command = Unicode(
        "ip6tables-restore",
        config=True,
        help=(
            "ip6tables-restore on the host. When it is missing, sandboxes start only if their network "
            "namespace has no IPv6 address."
        ),
    )
    default_network_domains = List(
        Unicode(),
        default_value=[],
        config=True,
        help=(
            "Domains for default_network = 'allow' (e.g. ['pypi.org', 'files.pythonhosted.org']), reached "
            "through the egress gateway; may be mixed with default_network_cidrs."
        ),
    )
    max_network_domains = Int(50, config=True, help="Most domains an allow-list egress policy may name.")
    network_deny_cidrs = List(
        Unicode(),
        default_value=[],
        config=True,
        help=(
            "CIDR blocks no allow-list egress policy may reach into, whoever asks (REST, %sandbox network). "
            "Empty here; the sandbox service defaults it to the private and special ranges that mode "
            "'internet' blocks, so that its users cannot open their sandboxes to the hub's own network."
        ),
    )
    network_deny_domains = List(
        Unicode(),
        default_value=[],
        config=True,
        help=(
            "Domains (and '*.suffix' patterns) no sandbox may reach, whatever its allow list says: refused "
            "when a list names them, and at every connection through the gateway."
        ),
    )
    extra_ca_certs = Unicode(
        "",
        config=True,
        help=(
            "A PEM bundle of the operator's CAs (a company's TLS-intercepting proxy, say) that sandboxes "
            "trust besides the public ones: it goes into the bundle that SSL_CERT_FILE, REQUESTS_CA_BUNDLE, "
            "CURL_CA_BUNDLE, PIP_CERT, NODE_EXTRA_CA_CERTS and GIT_SSL_CAINFO name in the sandbox."
        ),
    )
    dns_in_allow_mode = Bool(
        False,
        config=True,
        help=(
            "Let sandboxes with an allow-list policy use Docker's embedded DNS resolver. Off by default: it "
            "forwards queries to the host's resolver, a channel out even to names that resolve to nothing "
            "allowed. Mode 'internet' always has DNS; mode 'none' never."
        ),
    )
    agent_python = List(
        Unicode(),
        default_value=list(interpreter.DEFAULT_CANDIDATES),
        config=True,
        help=(
            "Interpreters in the image that may run the sandbox's agent, in order of preference (absolute "
            "paths). The first one that, with every folder leading to it and its library folders, belongs to "
            "root and is not writable by group or others is used; an image with none is refused."
        ),
    )
    idle_timeout = Float(
        900.0,
        config=True,
        help=(
            "Seconds without use (no running cell, API call, preview request or terminal input) after "
            "which a sandbox is stopped; its files are kept and the next use starts it again. 0: never."
        ),
    )
    auto_delete_after = Float(
        0.0,
        config=True,
        help=("Seconds a sandbox may stay stopped before it is deleted with its files. 0: never (default)."),
    )
    warm_pool_size = Int(
        1,
        config=True,
        help=(
            "Sandboxes of the default spec kept started and waiting, so that a new kernel claims one "
            "instead of creating one (a start in a fraction of a second). Refilled in the background by "
            "the Jupyter server extension. Each costs the memory of an idle sandbox. 0: no pool."
        ),
    )
    orphan_grace = Float(
        60.0,
        config=True,
        help=(
            "Seconds a sandbox's kernel may be gone (its process ended without releasing the sandbox, "
            "e.g. killed) before the server reconciles it: a notebook's sandbox is stopped and kept, "
            "one of a kernel without a notebook is removed."
        ),
    )
    max_sandboxes_per_owner = Int(
        50,
        config=True,
        help=(
            "Most sandboxes one owner (the `owner` label) may have at once, running or stopped, kept "
            "notebook sandboxes included; the warm pool's sandboxes do not count until a kernel claims "
            "one. Creating one more (REST API, kernel start, `jupyter sandbox create`) fails with an "
            "error that says so. 0: no limit."
        ),
    )
    allowed_images = List(
        Unicode(),
        default_value=[f"{DEFAULT_REPOSITORY}:*", f"{DESKTOP_REPOSITORY}:*", f"{NODE_REPOSITORY}:*"],
        config=True,
        help=(
            "Glob patterns of the images a notebook may switch to with `%sandbox config --image`. "
            "The configured default image is always allowed (and by default this project's own images: "
            "the sandbox image, its desktop variant and the node image)."
        ),
    )

    server_id = Unicode(
        config=False,
        help=(
            "The Jupyter server this process belongs to (binding.ServerLease): set by the server "
            "extension, inherited by its kernels. Its housekeeping touches only what is its own."
        ),
    )

    def _owner_default(self) -> str:
        return default_owner()

    def _server_id_default(self) -> str:
        value = os.environ.get(SERVER_ID_ENV, "")
        return value if binding.SERVER_ID_RE.match(value) else ""

    def __init__(self, backend: Backend | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._backend = backend
        self._disk_unavailable: str | bool | None = False  # False: not checked yet
        # Seconds since the epoch of the last use seen on the host side, by sandbox id.
        self._host_activity: dict[str, float] = {}
        # Per image id: which interpreter may run the agent (judging an image costs round trips).
        self._verdicts: dict[str, interpreter.Verdict] = {}
        # Seconds the last egress policy application took (benchmarks read it).
        self.last_egress_seconds: float | None = None
        # Set when the server shuts down: housekeeping makes nothing new from then on.
        self.stopping = False
        self.gateway = EgressGateway(parent=self)
        # The operator's quotas per owner (all unlimited unless configured); see check_quota.
        self.quota = SandboxQuota(parent=self)
        # Held from a quota check to the end of the change it allowed (a container made and started),
        # so that two changes of one owner in this process cannot both take the last place.
        self._quota_lock = threading.RLock()

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = DockerBackend()
        return self._backend

    def _details(self, sandbox: Sandbox) -> ContainerRecord:
        """The full record of the sandbox's container: the one it was read with when that was an
        inspect (one inspect per operation), else a fresh one."""
        record = sandbox.record
        if record is not None and record.inspected and record.id == sandbox.container_id:
            return record
        fresh = self.backend.inspect(sandbox.container_id)
        if fresh is None:
            raise SandboxError(f"there is no sandbox {sandbox.id!r}")
        sandbox.record = fresh
        return fresh

    @property
    def disks(self) -> DiskStore:
        directory = Path(self.disk_dir) if self.disk_dir else sandbox_secrets.state_dir("disks")
        return DiskStore(directory, self.disk_bytes_per_inode)

    # -- specs ------------------------------------------------------------------------------

    def default_spec(self, **overrides: Any) -> SandboxSpec:
        values: dict[str, Any] = {
            "image": self.image,
            "cpu": self.cpu,
            "memory": parse_size(self.memory, "memory"),
            "disk": parse_size(self.disk, "disk"),
            "pids": self.pids,
            "runtime": self.runtime or None,
            "language": self.language,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["language"] == "typescript" and overrides.get("image") is None:
            values["image"] = self.typescript_image
        return SandboxSpec(**values).validate()

    def check_allowed(self, spec: SandboxSpec) -> SandboxSpec:
        """Refuse a spec beyond the operator's maxima or with an image not on the allow list."""
        spec.validate()
        maxima: builtins.list[tuple[str, float, float, Callable[[Any], str]]] = [
            ("cpu", spec.cpu, self.max_cpu, lambda v: f"{v:g} vCPUs"),
            ("memory", spec.memory, parse_size(self.max_memory, "max_memory"), format_size),
            ("pids", spec.pids, self.max_pids, str),
            ("disk", spec.disk, parse_size(self.max_disk, "max_disk"), format_size),
        ]
        for name, value, maximum, show in maxima:
            if value > maximum:
                raise SpecError(f"{name}: {show(value)} is above the operator's maximum of {show(maximum)}")
        always = [self.image, self.typescript_image]
        if spec.image not in always and not any(fnmatch.fnmatchcase(spec.image, p) for p in self.allowed_images):
            raise SpecError(
                f"image: {spec.image!r} is not allowed here; allowed: {', '.join([*always, *self.allowed_images])}"
            )
        return spec

    # -- images -----------------------------------------------------------------------------

    def ensure_image(self, image: str, progress: Progress = _quiet) -> None:
        if self.backend.image_id(image):
            return
        repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        presets = {repo: lang for lang, repo in LANGUAGE_REPOSITORIES.items()}
        if repository not in presets or not self.build_missing_image:
            raise SandboxError(
                f"the image {image!r} is not on this Docker engine; build it "
                "(`jupyter sandbox image build` for the default one, `--lang node` for the TypeScript one) "
                "or choose another image"
            )
        progress(f"the sandbox image {image} is missing; building it (first use only)...")
        build_image(
            self.backend,
            progress,
            tag=image,
            base=self.base_image,
            bootstrap=self.bootstrap_base,
            recipe=ImageRecipe(lang=presets[repository]),
        )

    def resolve_image(self, name: Any) -> Any:
        """An image name as a person gives it: the presets by name ("python": `image`, "node" or
        "typescript": `typescript_image`), anything else as it is."""
        presets = {"python": self.image, "node": self.typescript_image, "typescript": self.typescript_image}
        return presets.get(name, name) if isinstance(name, str) else name

    def check_image_language(self, image: str, language: str) -> None:
        """SpecError when `image`, here already, has no kernel for `language` (one still to be built
        is judged when it is)."""
        labels = self.backend.image_labels(image)
        if labels is not None:
            languages.kernel_argv(labels, language, image)

    def kernel_argv(self, image: str, language: str) -> builtins.list[str] | None:
        """How the agent starts the sandbox's kernel: None for ipykernel, else the image's argv for
        `language` (SandboxError when the image has no such kernel)."""
        return languages.kernel_argv(self.backend.image_labels(image), language, image)

    # -- lifecycle --------------------------------------------------------------------------

    def create(
        self,
        spec: SandboxSpec | None = None,
        kernel_id: str | None = None,
        progress: Progress = _quiet,
        start: bool = True,
        sandbox_id: str | None = None,
        network_policy: EgressPolicy | None = None,
        workspace: str | None = None,
        pool: bool = False,
    ) -> Sandbox:
        """Create a sandbox; with `sandbox_id`, a new container for an existing sandbox's volume.

        `kernel_id` and `workspace` bind it to a kernel and a notebook (binding.py); `pool` marks it
        as made for the warm pool."""
        spec = (spec or self.default_spec()).validate()
        new_sandbox = not sandbox_id  # else a new container for a sandbox that exists already
        wanted = Holding(running=start, cpu=spec.cpu, memory=spec.memory, disk=spec.disk)
        if new_sandbox and not pool:
            self.check_quota(wanted)  # before an image build, too
        self.ensure_image(spec.image, progress)
        self.kernel_argv(spec.image, spec.language)  # an image without the language's kernel is refused here
        python = self.agent_runtime(spec.image).python
        with self._quota_lock:
            if new_sandbox and not pool and self._limited():
                # Again, holding the lock: another change of this owner's may have been made meanwhile.
                self.check_quota(wanted)
            return self._create(spec, kernel_id, progress, start, sandbox_id, network_policy, workspace, pool, python)

    def _create(
        self,
        spec: SandboxSpec,
        kernel_id: str | None,
        progress: Progress,
        start: bool,
        sandbox_id: str | None,
        network_policy: EgressPolicy | None,
        workspace: str | None,
        pool: bool,
        python: str | None,
    ) -> Sandbox:
        new_sandbox = new = sandbox_id is None
        sandbox_id = sandbox_id or secrets.token_hex(6)
        name = binding.Binding(sandbox_id, workspace, binding.check_kernel_id(kernel_id) if kernel_id else None).name
        volume = binding.volume_name(sandbox_id)
        labels = {
            **spec.labels,
            LABEL_ID: sandbox_id,
            LABEL_OWNER: self.owner,
            LABEL_CREATED_BY: f"jupyter-sandbox {__version__}",
            LABEL_SPEC: _spec_label(spec),
            LABEL_USER_LABELS: json.dumps(sorted(spec.labels)),
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
        new_home = self._make_home(sandbox_id, volume, spec.disk)
        limited_home = self._home(sandbox_id) is not None
        labels[LABEL_HOME] = "ext4" if limited_home else "volume"
        moved = self._moved_to_home(spec)
        # spec.env is for the sandbox's own processes only: it travels in the agent's config (see
        # _agent_archive), so that nothing in it (LD_PRELOAD, say) reaches the agent's interpreter.
        env = {"HOME": SANDBOX_HOME, "USER": "sandbox", **{k: target for k, (_, target) in moved.items()}}
        try:
            self._create_container(spec, name, volume, labels, env, binding.base_name(sandbox_id), python)
            if new_sandbox and not pool:
                # Another process (a kernel, the CLI) may have taken the last place meanwhile: this one goes.
                self.check_owner_limit(recount=True)
        except Exception:
            # A new container for a kept sandbox leaves its files alone.
            if new_home:
                self._remove_parts(name, sandbox_id)
            else:
                backend.remove_container(name)
            raise
        if not network.policy_path(sandbox_id).exists():
            network.save(sandbox_id, network_policy or self.default_policy())
        sandbox = self.get(sandbox_id)
        if start:
            try:
                sandbox = self.start(sandbox)
            except SandboxError:
                if new:  # nothing of the user's in it yet; a sandbox that cannot start is no use
                    self.remove(sandbox)
                raise
        self.log.info(
            "created sandbox %s (%s) for kernel %s; home: %s",
            sandbox_id,
            spec.image,
            kernel_id,
            f"{format_size(spec.disk)}, a filesystem of its own"
            if limited_home
            else f"total size NOT limited ({self._disk_unavailable_reason() or 'a plain volume'})",
        )
        return sandbox

    def _limited(self) -> bool:
        """Whether a quota of SandboxQuota applies to this owner (else only the count of sandboxes is bounded)."""
        return not self.quota.limits_for(self.owner).unlimited

    def _count_limit(self) -> int:
        limits = [n for n in (self.max_sandboxes_per_owner, self.quota.limits_for(self.owner).max_sandboxes) if n > 0]
        return min(limits, default=0)

    def holding(self, sandbox: Sandbox, running: bool | None = None, resources: bool = True) -> Holding:
        """What `sandbox` takes from its owner's quota (as if `running`, when given). With
        `resources`, its vCPUs and memory as in force now (they change live, its spec label does not)."""
        cpu, memory = 0.0, 0
        if resources:
            host = self._details(sandbox).host
            cpu, memory = float(host.cpu or 0.0), int(host.memory or 0)
        disk = sandbox.spec.get("disk")
        return Holding(
            running=sandbox.running if running is None else running,
            cpu=cpu,
            memory=memory,
            disk=disk if isinstance(disk, int) and resources else 0,
        )

    def check_quota(self, adding: Holding | None, replacing: Sandbox | None = None) -> None:
        """The one quota check (quotas.py): refuse, with QuotaExceeded, a change by which this owner
        would hold `adding` (instead of what `replacing` holds now) beyond a quota. Called before a
        create, a claim from the pool, a start and a change of limits; a no-op when nothing is limited."""
        limits = self.quota.limits_for(self.owner)
        if limits.unlimited and self.max_sandboxes_per_owner <= 0:
            return
        full = limits.needs_resources
        held: builtins.list[Holding] = []
        replaced: Holding | None = None
        for sandbox in self.list(owner=self.owner):
            if sandbox.pool:
                continue  # the unclaimed pool is nobody's yet
            try:
                holding = self.holding(sandbox, resources=full)
            except SandboxError:
                continue  # removed meanwhile
            held.append(holding)
            if replacing is not None and sandbox.id == replacing.id:
                replaced = holding
        if replacing is not None and replaced is None:
            replaced = self.holding(replacing, resources=full)
            held.append(replaced)
        if adding is not None and not full:
            adding = Holding(running=adding.running, cpu=0.0, memory=0, disk=0)
        self.quota.check(self.owner, held, adding, replaced, extra_count_limit=self.max_sandboxes_per_owner)

    def may_take(self, spec: SandboxSpec) -> bool:
        """Whether this owner may take one more running sandbox of `spec` (a claim from the pool)."""
        try:
            self.check_quota(Holding(running=True, cpu=spec.cpu, memory=spec.memory, disk=spec.disk))
        except QuotaExceeded:
            return False
        return True

    def owned_count(self) -> int:
        """This owner's sandboxes that count against max_sandboxes_per_owner (not the unclaimed pool)."""
        return sum(1 for s in self.list(owner=self.owner) if not s.pool)

    def check_owner_limit(self, recount: bool = False) -> None:
        """The count quota alone. `recount`: after a container was made, whether this owner now has
        more than allowed (another process took the last place at the same time)."""
        limit = self._count_limit()
        if limit <= 0:
            return
        count = self.owned_count()
        if recount:
            if count <= limit:
                return
            count -= 1  # as it was without the one just made
        nothing = Holding(running=False, cpu=0.0, memory=0, disk=0)
        self.quota.check(self.owner, [nothing] * count, nothing, extra_count_limit=self.max_sandboxes_per_owner)

    # -- the home and what else a sandbox may write ---------------------------------------------

    def _disk_unavailable_reason(self) -> str | None:
        if self.enforce_disk == "off":
            return "the operator turned it off (c.SandboxManager.enforce_disk = 'off')"
        if self._disk_unavailable is False:
            docker_host = os.environ.get("DOCKER_HOST", "")
            local = (not docker_host or docker_host.startswith("unix://")) and self.backend.on_this_machine()
            self._disk_unavailable = disk.unavailable_reason(local)
        reason = self._disk_unavailable
        return reason if isinstance(reason, str) and reason else None

    def _make_home(self, sandbox_id: str, volume: str, size: int) -> bool:
        """The home volume: a filesystem of `size` bytes of its own (or, where that cannot be and the
        operator allows it, a plain volume). True when it was made now, False when it was there."""
        labels = {LABEL_ID: sandbox_id, LABEL_OWNER: self.owner}
        if self.backend.volume(volume) is not None:
            self._attach_home(sandbox_id)
            return False
        reason = self._disk_unavailable_reason()
        if reason:
            if self.enforce_disk == "required":
                raise SandboxError(
                    f"the sandbox's disk limit cannot be enforced here: {reason}. Run Jupyter as root on the "
                    "machine of the Docker engine, or set c.SandboxManager.enforce_disk = 'if-possible' to run "
                    "sandboxes whose home has no total size limit"
                )
            self.log.warning("sandbox %s: its home has NO total size limit: %s", sandbox_id, reason)
            self.backend.create_volume(volume, labels)
            return True
        home = self.disks.home(sandbox_id)
        with binding.host_lock(f"disk-{sandbox_id}"):
            try:
                if not home.exists():
                    home.create(size, SANDBOX_USER_UID)
                home.attach()
                self.backend.create_volume(volume, {**labels, LABEL_HOME_IMAGE: str(home.image)}, home.volume_options())
            except Exception:
                home.destroy()
                raise
        return True

    def _home_volume(self, sandbox: Sandbox) -> VolumeRecord | None:
        if sandbox.home_volume is None:
            sandbox.home_volume = self.backend.volume(binding.volume_name(sandbox.id))
        return sandbox.home_volume

    def _home(self, sandbox_id: str, volume: VolumeRecord | None = None) -> HomeDisk | None:
        """The sandbox's own home filesystem, as its volume (`volume`, else read now) records it;
        None for a plain volume."""
        volume = volume or self.backend.volume(binding.volume_name(sandbox_id))
        if volume is None or not self.disks.is_home_volume(sandbox_id, dict(volume.options)):
            return None
        return self.disks.home(sandbox_id, volume.labels.get(LABEL_HOME_IMAGE))

    def _attach_home(self, sandbox_id: str) -> None:
        """Before a start: the home's image on a loop device, and its volume's link pointing there
        (loop devices are gone after a reboot, and numbered anew)."""
        home = self._home(sandbox_id)
        if home is not None:
            with binding.host_lock(f"disk-{sandbox_id}"):
                home.attach()

    def _moved_to_home(self, spec: SandboxSpec) -> dict[str, tuple[str, str]]:
        """{variable: (folder in the image, folder in the home)} for the image's writable folders."""
        image_env = self.backend.image_env(spec.image)
        return {
            name: (image_env[name], target)
            for name, target in MOVED_TO_HOME.items()
            if image_env.get(name, "").startswith("/")
            and not image_env[name].startswith(SANDBOX_HOME + "/")
            and name not in spec.env
        }

    def _tmpfs(self) -> dict[str, str]:
        size = parse_size(self.tmp_size, "tmp_size")
        # exec: pip builds packages in /tmp and runs what it built there; the home allows it anyway.
        mounts = {
            path: f"rw,exec,nosuid,nodev,mode=1777,size={size},nr_inodes={max(1024, size // 16384)}"
            for path in TMPFS_MOUNTS
        }
        mounts["/run"] = f"rw,noexec,nosuid,nodev,mode=755,size={RUN_TMPFS_SIZE},nr_inodes=1024"
        return mounts

    def _create_container(
        self,
        spec: SandboxSpec,
        name: str,
        volume: str,
        labels: dict[str, str],
        env: dict[str, str],
        hostname: str,
        python: str | None = None,
    ) -> str:
        backend = self.backend
        chosen = python or self.agent_runtime(spec.image).python
        if not chosen:  # agent_runtime() refuses an image without one; this keeps it so
            raise SandboxError(f"the image {spec.image!r} has no interpreter that may run the agent")
        command = agent_command(chosen)

        def create() -> str:
            return backend.create_container(
                name=name,
                image=spec.image,
                command=command,
                labels=labels,
                env=env,
                stdin_open=True,
                volume=volume,
                mount_point=SANDBOX_HOME,
                network=self.network_name,
                ports=[AGENT_PORT, *KERNEL_PORTS.values()],
                cpu=spec.cpu,
                memory=spec.memory,
                pids=spec.pids,
                file_size=spec.disk,
                nofile=self.nofile,
                user=f"{SANDBOX_USER_UID}:{SANDBOX_USER_UID}",
                hostname=hostname,
                runtime=spec.runtime,
                alias=hostname,  # the name changes hands (binding.py); this one stays
                tmpfs=self._tmpfs(),
                private_dirs=[AGENT_DIR],
            )

        try:
            return create()
        except SandboxError as exc:
            # The shared network may have been removed by another sandbox's shutdown meanwhile.
            if "network" not in str(exc).lower():
                raise
            self._ensure_network()
            return create()

    def _ensure_network(self) -> None:
        # Docker allows two networks of one name; sandboxes made at once must not make two.
        with binding.host_lock("network"):
            self.backend.ensure_network(self.network_name, {LABEL_CREATED_BY: "jupyter-sandbox"})

    def _drop_network_if_unused(self) -> None:
        with binding.host_lock("network"):
            self.backend.remove_network_if_unused(self.network_name)

    def agent_runtime(self, image: str) -> interpreter.Verdict:
        """The interpreter that may run the agent in `image`, and the folders of the agent's own PATH;
        judged once per image id (interpreter.py) and remembered on the host. SandboxError when the
        image has none."""
        image_id = self.backend.image_id(image)
        if not image_id:
            raise SandboxError(f"the image {image!r} is not on this Docker engine")
        key = f"{interpreter.RULES_VERSION}-{image_id.split(':')[-1]}-{','.join(self.agent_python)}"
        verdict = self._verdicts.get(key)
        path = sandbox_secrets.state_dir("images") / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        if verdict is None:
            try:
                verdict = interpreter.Verdict.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, AttributeError):
                probe = self.backend.probe(image, {LABEL_PROBE: "1", LABEL_OWNER: self.owner})
                try:
                    verdict = interpreter.judge(
                        lambda p: self.backend.path_stat(probe, p), self.agent_python, AGENT_DIR
                    )
                finally:
                    self.backend.remove_container(probe)
                sandbox_secrets.write_state(path, json.dumps(verdict.to_dict()).encode())
            self._verdicts[key] = verdict
        if verdict.python is None:
            raise SandboxError(interpreter.explain(verdict, image))
        return verdict

    def _agent_archive(self, sandbox: Sandbox) -> bytes:
        """The agent's code and config, all root's, to unpack at AGENT_DIR (a private volume of the
        container, as its root filesystem is read-only): put before every start, so whatever an
        earlier run did, the agent starts from the host's files."""
        sandbox_id = sandbox.id
        runtime = self.agent_runtime(sandbox.image_id or sandbox.image)
        recorded_env = sandbox.spec.get("env")
        seeds = list(self._moved_to_home(self.current_spec(sandbox)).values())
        user_env = dict(recorded_env) if isinstance(recorded_env, dict) else {}
        agent_env = {"PATH": ":".join(runtime.path), "HOME": SANDBOX_HOME, "USER": "sandbox", "LANG": "C.UTF-8"}
        files: dict[str, tuple[bytes, int]] = {}
        policy = network.load(sandbox_id)
        bundle = self._trust_bundle(sandbox_id, policy)
        gateway_env: dict[str, str] = {}
        if bundle is not None:
            files[TRUST_BUNDLE] = (bundle, 0o444)
            path = f"{AGENT_DIR}/{TRUST_BUNDLE}"
            gateway_env.update({name: path for name in TRUST_VARIABLES})
        if policy.uses_gateway:
            address, port = self.ensure_gateway()
            proxy = f"http://{address}:{port}"
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
                gateway_env[name] = gateway_env[name.lower()] = proxy
            gateway_env["NO_PROXY"] = gateway_env["no_proxy"] = "localhost,127.0.0.1,::1"
        # The secrets' placeholders, never their values (the gateway puts those in at the edge).
        user_env.update(gateway_vault.environment(sandbox_id))
        user_env.update(gateway_env)
        agent_env.update(gateway_env)
        config = {
            "token": sandbox_secrets.agent_token(sandbox_id),
            "port": AGENT_PORT,
            "kernel": {
                "key": sandbox_secrets.kernel_key(sandbox_id),
                "ports": KERNEL_PORTS,
                "cwd": SANDBOX_HOME,
                "argv": self.kernel_argv(
                    sandbox.image_id or sandbox.image, str(sandbox.spec.get("language") or "python")
                ),
            },
            "runtime_dir": "/tmp/.jupyter-sandbox",
            # The agent's own environment, whole; the sandbox's processes get the container's
            # environment plus the spec's variables.
            "agent_env": agent_env,
            "user_env": user_env,
            "seed": [list(pair) for pair in seeds],
        }
        source = Path(__file__).resolve().parent.parent / "agent"
        files.update({f"{AGENT_PACKAGE}/{p.name}": (p.read_bytes(), 0o444) for p in sorted(source.glob("*.py"))})
        files["agent.json"] = (json.dumps(config).encode(), 0o440)
        dirs = {".": (0o755, 0, 0), AGENT_PACKAGE: (0o755, 0, 0)}
        # Everything belongs to root and is closed to writes; the config is readable by the sandbox
        # user's group (the agent runs as that user), not changeable by it.
        return tar_bytes(files, dirs=dirs, owners={"agent.json": (0, SANDBOX_USER_UID)})

    def recreate(self, sandbox: Sandbox, spec: SandboxSpec, progress: Progress = _quiet) -> Sandbox:
        """A fresh container with a new spec on the same workspace volume (same sandbox id)."""
        spec = spec.validate()
        # A new spec may hold more (vCPUs, memory, disk): refused before anything changes.
        if self._limited():
            wanted = Holding(running=True, cpu=spec.cpu, memory=spec.memory, disk=spec.disk)
            self.check_quota(wanted, replacing=sandbox)
        self.ensure_image(spec.image, progress)
        self.kernel_argv(spec.image, spec.language)  # refused before the old container goes
        home = self._home(sandbox.id)
        if home is not None and disk.round_size(spec.disk) != home.size():
            self.check_disk_size(sandbox, spec.disk)  # refuses a shrink below what is there, before any change
        self.backend.remove_container(sandbox.container_id)
        if home is not None and disk.round_size(spec.disk) != home.size():
            # The container is gone, so its volume is unmounted: the filesystem can be resized offline.
            try:
                with binding.host_lock(f"disk-{sandbox.id}"):
                    home.resize(spec.disk)
                progress(f"the home is now {readable_size(home.size())}")
            except disk.DiskError as exc:
                self.log.warning("sandbox %s: %s", sandbox.id, exc)
                progress(f"the home keeps its size of {readable_size(home.size())}: {exc}")
                spec = replace(spec, disk=home.size())
        return self.create(
            spec, kernel_id=sandbox.kernel_id, progress=progress, sandbox_id=sandbox.id, workspace=sandbox.workspace
        )

    def check_disk_size(self, sandbox: Sandbox, size: int) -> None:
        """Refuse to shrink a home below what its files take (with room for the filesystem's needs)."""
        home = self._home(sandbox.id)
        if home is None:
            return
        usage = home.usage(self._home_mountpoint(sandbox.id))
        if usage is None:
            return
        minimum = home.minimum_size(usage)
        if disk.round_size(size) < minimum:
            raise SpecError(
                f"disk: {readable_size(size)} cannot hold the files in {SANDBOX_HOME} "
                f"({readable_size(usage.used_bytes)} in {usage.used_inodes} files and folders); "
                f"choose at least {readable_size(minimum)} or delete files first"
            )

    def _home_mountpoint(self, sandbox_id: str) -> str | None:
        volume = self.backend.volume(binding.volume_name(sandbox_id))
        return volume.mountpoint or None if volume is not None else None

    def network_policy(self, value: Any) -> EgressPolicy:
        return network.parse_policy(
            value,
            network.Limits(
                max_cidrs=self.max_egress_cidrs,
                allow_any=self.allow_any_cidr,
                max_v4_prefix=self.max_egress_allow_v4_prefix,
                max_v6_prefix=self.max_egress_allow_v6_prefix,
                max_domains=self.max_network_domains,
                deny_domains=tuple(self._deny_domains()),
                deny_cidrs=tuple(self.network_deny_cidrs),
            ),
        )

    @validate("network_deny_cidrs")
    def _valid_deny_cidrs(self, proposal: Any) -> Any:
        for block in proposal["value"]:
            try:
                ipaddress.ip_network(block, strict=False)
            except ValueError:
                raise TraitError(f"SandboxManager.network_deny_cidrs: {block!r} is not a CIDR block") from None
        return proposal["value"]

    def _deny_domains(self) -> list[str]:
        from .gateway import domains

        try:
            return domains.normalise_all(self.network_deny_domains)
        except domains.DomainError as exc:
            raise SandboxError(f"SandboxManager.network_deny_domains: {exc}") from None

    def default_policy(self) -> EgressPolicy:
        if self.default_network != "allow":
            return self.network_policy(self.default_network)
        return self.network_policy(
            {"mode": "allow", "cidrs": self.default_network_cidrs, "domains": self.default_network_domains}
        )

    # -- the egress gateway -------------------------------------------------------------------

    def ensure_gateway(self) -> tuple[str, int]:
        """Where the egress gateway for this manager's network listens (started when it does not run)."""
        address = self.backend.network_gateway(self.network_name)
        if not address:
            raise SandboxError(f"the sandbox network {self.network_name} has no IPv4 gateway address for the gateway")
        settings = self.gateway.settings(
            self.network_name, address, self._deny_domains(), str(sandbox_secrets.secret_path())
        )
        try:
            return gateway_control.ensure_running(settings)
        except (gateway_control.GatewayError, OSError) as exc:
            raise SandboxError(f"the egress gateway could not be started: {exc}") from None

    def _trust_bundle(self, sandbox_id: str, policy: EgressPolicy) -> bytes | None:
        """The CA bundle a sandbox trusts: the host's public roots, the operator's extra CAs and, in
        gateway mode, the sandbox's own CA (its key stays on the host). None: the image's own store."""
        if not policy.uses_gateway and not self.extra_ca_certs:
            return None
        parts = [Path(_host_ca_bundle()).read_bytes()]
        if self.extra_ca_certs:
            try:
                parts.append(Path(self.extra_ca_certs).read_bytes())
            except OSError as exc:
                raise SandboxError(f"SandboxManager.extra_ca_certs: cannot read {self.extra_ca_certs}: {exc}") from None
        if policy.uses_gateway:
            parts.append(gateway_authority.ca_certificate(sandbox_id))
        return b"\n".join(part.rstrip(b"\n") for part in parts) + b"\n"

    def egress(self, sandbox: Sandbox) -> EgressPolicy:
        return network.load(sandbox.id)

    def set_egress(self, sandbox: Sandbox, policy: EgressPolicy) -> None:
        """Keep the policy on the host and enforce it now if the sandbox runs (else at its next start)."""
        network.save(sandbox.id, policy)
        if sandbox.running:
            try:
                self._enforce(sandbox)
            except SandboxError as exc:
                # The rules in force are no longer the policy on record: stop rather than run on them.
                self.backend.stop(sandbox.container_id, timeout=1)
                raise SandboxError(f"{exc}. The sandbox was stopped (its files are kept)") from None

    @property
    def enforcer(self) -> network.Enforcer:
        return network.Enforcer(
            nsenter=self.nsenter_command,
            iptables_restore=self.iptables_restore_command,
            ip6tables_restore=self.ip6tables_restore_command,
            dns_in_allow_mode=self.dns_in_allow_mode,
        )

    def _enforce(self, sandbox: Sandbox, record: ContainerRecord | None = None) -> bool:
        """Put the sandbox's policy in force now; False when the operator turned enforcement off.
        Anything else that keeps it from holding is a SandboxError: callers fail closed. `record`:
        the container as inspected since its process started (else it is inspected now)."""
        policy = network.load(sandbox.id)
        if not self.enforce_egress:
            self.log.warning(
                "sandbox %s: egress policy %s NOT enforced (SandboxManager.enforce_egress is off)",
                sandbox.id,
                policy.mode,
            )
            return False
        info = record or self.backend.inspect(sandbox.container_id)
        pid = info.pid if info is not None else None
        if info is None or not pid:
            raise SandboxError(f"sandbox {sandbox.id} has no running process to put its egress policy on")
        # The host's own addresses on the sandbox network are closed in every mode.
        hosts = [address for net in info.networks for address in (net.gateway, net.ipv6_gateway) if address]
        gateway = None
        if policy.uses_gateway:
            gateway = self.ensure_gateway()
            for net in info.networks:
                if net.network == self.network_name and net.ip_address:
                    # The gateway knows the sandbox by this address (the engine's to give).
                    gateway_state.register(net.ip_address, sandbox.id)
        else:
            gateway_state.unregister(sandbox.id)
        try:
            # On the machine that runs it: nsenter here for the local engine, a swarm node's own.
            self.last_egress_seconds = self.backend.apply_egress(info, self.enforcer, policy, hosts, gateway)
        except network.EgressError as exc:
            raise SandboxError(
                f"the egress policy of sandbox {sandbox.id} ({policy.describe()}) could not be put in force: "
                f"{exc}. The sandbox is not running unrestricted instead: fix the host (root, nsenter and "
                "iptables-restore are needed), or turn enforcement off with SandboxManager.enforce_egress = False "
                "where that is acceptable"
            ) from None
        self.log.debug(
            "sandbox %s: egress policy %s in force after %.3f s", sandbox.id, policy.mode, self.last_egress_seconds
        )
        return True

    def update_live(self, sandbox: Sandbox, cpu: float | None = None, memory: int | None = None) -> Sandbox:
        """Change CPU and memory of a running sandbox without restarting it."""
        with self._quota_lock:
            if self._limited():
                now = self.holding(sandbox, running=True)
                self.check_quota(
                    replace(now, cpu=now.cpu if cpu is None else cpu, memory=now.memory if memory is None else memory),
                    replacing=sandbox,
                )
            self.backend.update_resources(sandbox.container_id, cpu=cpu, memory=memory)
        return self.get(sandbox.id)

    def limits(self, sandbox: Sandbox) -> dict[str, Any]:
        """The limits in force when the sandbox was read (they change live with update_live, which
        returns the sandbox read anew)."""
        host = self._details(sandbox).host
        home = self._home(sandbox.id, self._home_volume(sandbox))
        return {
            "cpu": host.cpu,
            "memory": host.memory,
            "pids": host.pids_limit,
            # The home's size where it is a filesystem of its own; else only the per-file limit holds.
            "disk": home.size() if home is not None and home.exists() else host.ulimits.get("fsize") or 0,
        }

    def disk_enforcement(self, sandbox: Sandbox) -> dict[str, Any]:
        """What limits what the sandbox writes, said plainly, with the home's use (read on the host).

        The home is an ext4 filesystem of its own (disk.py): its size limits bytes and inodes. The root
        filesystem is read-only; /tmp, /var/tmp and /run are size-limited tmpfs. A sandbox whose home
        is a plain volume (enforce_disk = 'if-possible', or made before homes had their own
        filesystem) has only the per-file limit on it."""
        host = self._details(sandbox).host
        per_file = host.ulimits.get("fsize") or 0
        tmpfs = {path: _tmpfs_size(options) for path, options in host.tmpfs.items()}
        writable = ", ".join(f"{path} {readable_size(size)}" for path, size in sorted(tmpfs.items()) if size)
        rest = (
            "the rest of the container is read-only"
            if host.read_only_rootfs
            else "the container's own layer is NOT limited"
        )
        result: dict[str, Any] = {
            "per_file": per_file,
            "tmpfs": tmpfs,
            "read_only_root": host.read_only_rootfs,
        }
        volume = self._home_volume(sandbox)
        home = self._home(sandbox.id, volume)
        usage = None
        if home is not None:
            try:
                usage = home.usage(volume.mountpoint or None if volume is not None else None)
            except disk.DiskError as exc:
                self.log.warning("sandbox %s: %s", sandbox.id, exc)
        if home is not None and usage is not None:
            figures = usage.to_dict()
            result.update(enforced="total", **figures)
            result["note"] = (
                f"home {disk.describe(figures)} (enforced: a filesystem of its own); "
                f"in memory: {writable or 'nothing'}; {rest}"
            )
        else:
            reason = (
                self._disk_unavailable_reason()
                or "its home is a plain Docker volume, made before homes had their own filesystem"
            )
            result.update(
                enforced="per-file",
                limit_bytes=None,
                used_bytes=None,
                limit_inodes=None,
                used_inodes=None,
                reason=reason,
            )
            result["note"] = (
                f"{format_size(per_file)} per file (enforced); total size of the home NOT limited: "
                f"{reason}; in memory: {writable or 'nothing'}; {rest}"
            )
        return result

    def current_spec(self, sandbox: Sandbox) -> SandboxSpec:
        """The sandbox's spec with the limits in force now."""
        recorded = sandbox.spec
        limits = self.limits(sandbox)
        env: dict[str, str] = recorded["env"] if isinstance(recorded.get("env"), dict) else {}
        return SandboxSpec(
            image=sandbox.image,
            cpu=limits["cpu"],
            memory=limits["memory"],
            disk=limits["disk"],
            pids=limits["pids"],
            env=env,
            runtime=recorded.get("runtime") or None,
            language=str(recorded.get("language") or "python"),
        )

    def uptime(self, sandbox: Sandbox) -> float | None:
        """Seconds since its container started (None when it is not running)."""
        record = self._details(sandbox)
        if record.started_at is None:
            return None
        return max(0.0, (datetime.now(timezone.utc) - record.started_at).total_seconds())

    def usage(self, sandbox: Sandbox) -> dict[str, Any]:
        """Live CPU time, memory and process count, from Docker (not from inside the sandbox)."""
        if not sandbox.running:
            return {}
        sample = self.backend.usage(sandbox.container_id, pid=self._details(sandbox).pid)
        return sample.to_dict() if sample is not None else {}

    def start(self, sandbox: Sandbox) -> Sandbox:
        """Start a stopped sandbox with its egress policy in force before its first process runs.

        The container's command is the agent, whose first act is to wait at its start gate (reading
        its stdin, which only the Docker API writes) before it loads anything of the sandbox's. The
        host puts the agent's files, starts the container, puts the policy into its network namespace
        and only when that succeeded writes the gate's line. When the policy cannot be put in force,
        the container is stopped again and the error says why: it never runs unrestricted."""
        if sandbox.running:
            return self.get(sandbox.id)
        with self._quota_lock:
            if not sandbox.pool and self._limited():
                self.check_quota(self.holding(sandbox, running=True), replacing=sandbox)
            return self._start(sandbox)

    def _start(self, sandbox: Sandbox) -> Sandbox:
        runtime = self.agent_runtime(sandbox.image_id or sandbox.image)
        if not self._gated(sandbox, runtime.python):
            # Made by a version whose start had no gate, or for an interpreter no longer judged fit:
            # a new container on the same files.
            self.log.info(
                "sandbox %s: its container's command is not the gated agent from %s; recreating "
                "the container (files are kept)",
                sandbox.id,
                runtime.python,
            )
            return self.recreate(sandbox, self.current_spec(sandbox))
        # The home's image on its loop device before the start (the mount needs it).
        self._attach_home(sandbox.id)
        self.backend.put_archive(sandbox.container_id, AGENT_DIR, self._agent_archive(sandbox))
        self._start_container(sandbox)
        idle.clear(sandbox.id)
        try:
            # One inspect after the start: its process (for the policy) and what start() returns.
            started = self.backend.inspect(sandbox.container_id)
            self._enforce(sandbox, started)
            self.backend.open_gate(sandbox.container_id, GATE_LINE)
        except SandboxError:
            self.backend.stop(sandbox.container_id, timeout=1)
            raise
        if started is None:  # removed meanwhile; _enforce said so unless enforcement is off
            raise SandboxError(f"there is no sandbox {sandbox.id!r}")
        return Sandbox.from_record(started)

    def _gated(self, sandbox: Sandbox, python: str | None = None) -> bool:
        """Whether the container's command is the agent behind its start gate (from `python`)."""
        record = self._details(sandbox)
        command = list(record.command)
        wanted = agent_command(python or command[0]) if command else []
        return record.open_stdin and command == wanted and command[0].startswith("/")

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
        gateway_state.unregister(sandbox.id)  # its address goes back to the engine
        # The same container, read once: no list needed to find it.
        record = self.backend.inspect(sandbox.container_id)
        return Sandbox.from_record(record) if record is not None else self.get(sandbox.id)

    def remove(self, sandbox: Sandbox | str) -> None:
        sandbox_id = sandbox if isinstance(sandbox, str) else sandbox.id
        for summary in self.backend.list_containers({LABEL_ID: sandbox_id}):
            self.backend.remove_container(summary.id)
        self._remove_parts(binding.base_name(sandbox_id), sandbox_id)
        self._drop_network_if_unused()
        # Every way a sandbox goes (REST, magic, kernel shutdown, reaper) ends here, so the host state
        # kept for it goes here too: egress rules, idle marks, preview nonce, remembered git remotes.
        network.forget(sandbox_id)
        # The gateway's part: its record of the sandbox's address, its log, its secrets and its CA.
        gateway_state.forget(sandbox_id)
        gateway_vault.forget(sandbox_id)
        gateway_authority.forget(sandbox_id)
        idle.clear(sandbox_id)
        binding.forget_pool_ready(sandbox_id)
        preview.forget(sandbox_id)
        git_credentials.forget(sandbox_id)
        self.log.info("removed sandbox %s", sandbox_id)

    def _remove_parts(self, container: str, sandbox_id: str) -> None:
        self.backend.remove_container(container)
        self._remove_home(sandbox_id)

    def _remove_home(self, sandbox_id: str) -> None:
        """Remove the home volume and, when it has one, its filesystem image and loop device."""
        ssh_tokens.forget(sandbox_id)  # SSH tokens die with the sandbox
        home = self._home(sandbox_id)
        # The volume can stay busy for a moment after a forced removal.
        for attempt in range(20):
            try:
                self.backend.remove_volume(binding.volume_name(sandbox_id))
                break
            except SandboxError:
                if attempt == 19:
                    raise
                time.sleep(0.1)
        if home is not None:
            with binding.host_lock(f"disk-{sandbox_id}"):
                home.destroy()

    # -- lookups ----------------------------------------------------------------------------

    def list(
        self, owner: str | None = None, kernel_id: str | None = None, workspace: str | None = None
    ) -> builtins.list[Sandbox]:
        labels = {LABEL_OWNER: owner} if owner else {}
        pattern = None
        if kernel_id:
            pattern = binding.kernel_name_pattern(kernel_id)
        elif workspace:
            pattern = binding.workspace_name_pattern(workspace)
        found = [Sandbox.from_record(r) for r in self.backend.list_containers(labels, [LABEL_ID], name=pattern)]
        # Docker's name filter is a search; check the parsed binding exactly.
        if kernel_id:
            found = [s for s in found if s.kernel_id == kernel_id]
        if workspace:
            found = [s for s in found if s.workspace == workspace]
        return found

    def get(self, sandbox_id: str) -> Sandbox:
        """The sandbox as Docker describes it now: one list (to find its container by label, as
        its name changes hands) and one inspect, whose record the readers below use."""
        found = self.backend.list_containers({LABEL_ID: sandbox_id})
        if not found:
            raise NoSuchSandbox(f"there is no sandbox {sandbox_id!r}")
        record = self.backend.inspect(found[0].id)
        if record is None:  # removed between the two calls
            raise NoSuchSandbox(f"there is no sandbox {sandbox_id!r}")
        return Sandbox.from_record(record)

    def owns(self, sandbox_id: str) -> bool:
        """Whether this owner has a sandbox of that id (one engine call, no inspect)."""
        return bool(self.backend.list_containers({LABEL_ID: sandbox_id, LABEL_OWNER: self.owner}, [LABEL_ID]))

    def find_for_kernel(self, kernel_id: str) -> Sandbox | None:
        # This owner's only: a kernel id another caller names (the service's users choose theirs)
        # never reaches someone else's sandbox.
        matches = self.list(owner=self.owner, kernel_id=kernel_id)
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

    def claim(
        self, kernel_id: str, workspace: str | None = None, spec: SandboxSpec | None = None
    ) -> tuple[Sandbox | None, str]:
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
            if spec is not None and self.warm_pool_size > 0 and spec == self.default_spec() and self.may_take(spec):
                # A pool sandbox counts once claimed: over the limit, none is claimed, and the create
                # that follows says why. Only this server's pool, and only a sandbox the pool saw
                # answering: one whose agent still starts would give the kernel's first calls a 502.
                for candidate in self.pool_sandboxes(spec, server=self.server_id):
                    if not binding.pool_ready(candidate.id):
                        continue
                    try:
                        return self.bind(candidate, workspace, kernel_id), "pool"
                    except SandboxError:
                        continue
        return None, ""

    def claim_for_api(self, spec: SandboxSpec) -> Sandbox | None:
        """A free, answering warm-pool sandbox of this server for POST /sandboxes when `spec` is the
        pool's (the default): renamed as the API's (binding.py), so no kernel claims it too. None
        when there is none (the caller creates one)."""
        if self.warm_pool_size <= 0 or spec != self.default_spec():
            return None
        with binding.claim_lock():
            if not self.may_take(spec):
                return None  # the create that follows says why
            for candidate in self.pool_sandboxes(spec, server=self.server_id):
                if not binding.pool_ready(candidate.id):
                    continue
                wanted = binding.Binding(candidate.id, api=True).name
                if self.backend.rename(candidate.name, wanted):
                    return self.get(candidate.id)
        return None

    def lend_to_kernel(self, sandbox: Sandbox, kernel_id: str | None) -> Sandbox:
        """Bind a sandbox of the API to a kernel (or take it back: None) that only borrows it: at
        the kernel's end it goes back to the API, running, instead of being removed (release)."""
        wanted = binding.Binding(
            sandbox.id, kernel_id=binding.check_kernel_id(kernel_id) if kernel_id else None, api=True
        )
        with binding.claim_lock():
            current = self.get(sandbox.id)
            if kernel_id and current.kernel_id and binding.kernel_alive(current.kernel_id):
                raise OwnerLimit(f"sandbox {sandbox.id} is in use by kernel {current.kernel_id}")
            if current.workspace:
                raise OwnerLimit(f"sandbox {sandbox.id} is a notebook's; open the notebook to run code in it")
            if wanted.name != current.name and not self.backend.rename(current.name, wanted.name):
                raise SandboxError(f"sandbox {sandbox.id} changed hands meanwhile")
            return self.get(sandbox.id)

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
        next kernel; one the API lent to the kernel goes back to the API; any other is removed
        with its files, as nothing could find it again."""
        if sandbox.binding.api:
            if sandbox.kernel_id:
                try:
                    self.lend_to_kernel(sandbox, None)
                except (OwnerLimit, SandboxError, NoSuchSandbox) as exc:
                    self.log.info("sandbox %s was not given back to the API: %s", sandbox.id, exc)
            return
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
                self.log.info(
                    "sandbox %s changed hands before its release; left to kernel %s", sandbox.id, sandbox.kernel_id
                )
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

    def pool_sandboxes(
        self, spec: SandboxSpec | None = None, among: builtins.list[Sandbox] | None = None, server: str | None = None
    ) -> builtins.list[Sandbox]:
        """Free, running warm-pool sandboxes of this owner that match `spec` (default: the default),
        found `among` the given ones (default: this owner's now), of the Jupyter server `server`
        ('' for none; default: of any)."""
        spec = spec or self.default_spec()
        wanted = _spec_label(spec)
        image_id = self.backend.image_id(spec.image) or "-"
        among = self.list(owner=self.owner) if among is None else among
        # A pool sandbox with another kind of home (made by an older version, or before the operator
        # changed enforce_disk) is not handed out: its disk limit is not the one in force now.
        home = "volume" if self._disk_unavailable_reason() else "ext4"
        return [
            s
            for s in among
            if s.pool
            and s.running
            and s.labels.get(LABEL_HOME) == home
            and (server is None or s.server == server)
            and s.labels.get(LABEL_SPEC) == wanted
            and s.image_id == image_id
        ]

    def fill_pool(self, progress: Progress = _quiet) -> dict[str, builtins.list[str]]:
        """Bring the warm pool to `warm_pool_size` free sandboxes; drop stale, stopped or extra ones."""
        done: dict[str, builtins.list[str]] = {"created": [], "removed": []}
        spec = self.default_spec()
        mine = self.list(owner=self.owner)
        keep = {s.id for s in self.pool_sandboxes(spec, among=mine, server=self.server_id)[: self.warm_pool_size]}
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

    def drain_pool(self) -> builtins.list[str]:
        """Remove the free warm-pool sandboxes (claimed ones are left to their kernels)."""
        removed = []
        with binding.claim_lock():
            for sandbox in self.list(owner=self.owner):
                if sandbox.pool and sandbox.server == self.server_id:
                    self.remove(sandbox)
                    removed.append(sandbox.id)
        return removed

    def reconcile(self) -> dict[str, builtins.list[str]]:
        """Tidy up after processes that died without releasing their sandboxes.

        A sandbox bound to a kernel that has been gone longer than `orphan_grace` is released as its
        kernel would have (a notebook's stopped and kept, others removed); volumes without a sandbox
        are removed. Sandboxes of live kernels, of notebooks and the pool's are left alone."""
        done: dict[str, builtins.list[str]] = {"released": [], "volumes": []}
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
        for volume in self.backend.volumes_with_labels([LABEL_ID]):
            if volume.labels.get(LABEL_OWNER) != self.owner or volume.labels.get(LABEL_ID) in all_ids:
                continue
            if volume.created is not None and now - volume.created < self.orphan_grace:
                continue  # a sandbox being created makes its volume first
            self._remove_home(volume.labels[LABEL_ID])
            done["volumes"].append(volume.name)
        done["disks"] = self._remove_stray_disks(now)
        return done

    def _remove_stray_disks(self, now: float) -> builtins.list[str]:
        """Home images in disk_dir that no volume mounts (a process ended between making the image
        and its volume): removed after orphan_grace, so that they hold no host space for nothing."""
        store = self.disks
        if not Path(store.directory).is_dir():
            return []
        with_volume = {volume.labels.get(LABEL_ID) for volume in self.backend.volumes_with_labels([LABEL_ID])}
        removed = []
        for image in sorted(Path(store.directory).glob("*.ext4")):
            sandbox_id = image.name[: -len(".ext4")]
            try:
                if sandbox_id in with_volume or now - image.stat().st_mtime < self.orphan_grace:
                    continue
            except FileNotFoundError:
                continue
            with binding.host_lock(f"disk-{sandbox_id}"):
                # Its volume is made under this lock, right after the image: look again, holding it.
                if self.backend.volume(binding.volume_name(sandbox_id)) is not None:
                    continue
                store.home(sandbox_id, image).destroy()
            removed.append(sandbox_id)
        return removed

    def agent(self, sandbox: Sandbox) -> AgentClient:
        """The typed client of a running sandbox's agent (async; blocking callers use run_blocking)."""
        if AGENT_PORT not in sandbox.host_ports:
            raise SandboxError(f"sandbox {sandbox.id} is not running")
        return AgentClient.at(
            sandbox.reach_host or "127.0.0.1",
            sandbox.host_ports[AGENT_PORT],
            sandbox_secrets.agent_token(sandbox.id),
            sandbox.id,
            connect_timeout=10.0,
            idle_timeout=30.0,
            call_timeout=30.0,
        )

    def wait_for_agent(self, sandbox: Sandbox, timeout: float = 30) -> dict[str, Any]:
        # The one wait for an agent (agent_client.AgentClient.wait_until_up), run from blocking code.
        agent = self.agent(sandbox)
        try:
            return run_blocking(lambda: agent.wait_until_up(timeout))
        except errors.SandboxOperationError as exc:
            raise AgentError(exc.message) from None

    def reap(self) -> dict[str, builtins.list[str]]:
        """Stop this owner's idle sandboxes and delete long-stopped ones, as configured."""
        done: dict[str, builtins.list[str]] = {"stopped": [], "deleted": []}
        now = time.time()
        for sandbox in self.list(owner=self.owner):
            if self.stopping:
                break  # the server is shutting down: its exit must not wait for this round
            if sandbox.pool or not self.housekeeps(sandbox):
                continue  # waiting to be claimed is the pool's job; another server's is its own
            if sandbox.running and self.idle_timeout > 0:
                try:
                    agent = self.agent(sandbox)
                    last = run_blocking(functools.partial(agent.health, timeout=5)).get("last_activity")
                except (errors.SandboxOperationError, SandboxError):
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
                # A list summary has no end time: one inspect, of stopped sandboxes only.
                try:
                    finished = self._details(sandbox).finished_at
                except SandboxError:
                    continue
                if finished and (datetime.now(timezone.utc) - finished).total_seconds() > self.auto_delete_after:
                    self.log.info(
                        "sandbox %s stopped longer than %.0f s: deleting it", sandbox.id, self.auto_delete_after
                    )
                    self.remove(sandbox)
                    done["deleted"].append(sandbox.id)
        return done

    def note_activity(self, sandbox_id: str) -> None:
        """Use the agent does not see (a preview reaching its app straight); the idle check counts it."""
        self._host_activity[sandbox_id] = time.time()

    def was_idle_stopped(self, sandbox: Sandbox) -> bool:
        return idle.was_stopped(sandbox.id)

    def prune(self, every_owner: bool = False) -> dict[str, builtins.list[str]]:
        """Remove this owner's stopped sandboxes and volumes without a sandbox (every owner's with
        `every_owner`, an administrator's act), and the network when unused. Another user's stopped
        sandbox holds their files: one user's prune must not take them."""
        removed: dict[str, builtins.list[str]] = {"sandboxes": [], "volumes": []}
        live_volumes = set()
        everyone = self.list()  # a running sandbox of anyone keeps its volume
        for sandbox in everyone:
            if sandbox.running or (not every_owner and sandbox.owner != self.owner):
                live_volumes.add(sandbox.volume)
                continue
            self._remove_parts(sandbox.container_id, sandbox.id)
            removed["sandboxes"].append(sandbox.id)
        for volume in self.backend.volumes_with_labels([LABEL_ID]):
            if not every_owner and volume.labels.get(LABEL_OWNER) != self.owner:
                continue
            if volume.name not in live_volumes:
                self._remove_home(volume.labels[LABEL_ID])
                removed["volumes"].append(volume.name)
        self._drop_network_if_unused()
        return removed
