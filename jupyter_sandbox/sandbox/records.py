"""What the code reads from Docker, as typed, immutable records.

docker_backend.py is the only module that sees the engine's JSON; it turns each answer into one of
these records, and everything else (manager, disk, network, image, the server extension, tests) reads
fields. A field the engine left out gets the neutral default below rather than a KeyError somewhere
far from the call, and the two shapes Docker describes a container in (a list summary and a full
inspect) become one type, with `inspected` saying which fields are filled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class PortBinding:
    """A container port published on the host."""

    container_port: int
    host_ip: str
    host_port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class MountRecord:
    type: str
    destination: str
    name: str = ""
    source: str = ""
    read_write: bool = True


@dataclass(frozen=True)
class EndpointRecord:
    """The container's place on one network."""

    network: str
    ip_address: str = ""
    gateway: str = ""
    ipv6_gateway: str = ""


@dataclass(frozen=True)
class HostConfigRecord:
    """The limits and hardening a container was made with (some change live: cpu, memory)."""

    nano_cpus: int = 0
    memory: int = 0
    memory_swap: int = 0
    pids_limit: int = 0
    # {ulimit name: hard limit}
    ulimits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # {path: mount options}
    tmpfs: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    read_only_rootfs: bool = False
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    privileged: bool = False
    init: bool = False
    network_mode: str = ""
    binds: tuple[str, ...] = ()
    log_type: str = ""
    log_options: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    ipc_mode: str = ""
    runtime: str = ""

    @property
    def cpu(self) -> float:
        return self.nano_cpus / 1e9


@dataclass(frozen=True)
class ContainerRecord:
    """One container. From a list summary only the first group of fields is known (`inspected` is
    False); an inspect fills them all."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: str
    # The image as it was asked for (a tag), and the id it resolved to.
    image: str
    image_id: str = ""
    # Seconds since the epoch.
    created: float = 0.0
    ports: tuple[PortBinding, ...] = ()
    networks: tuple[EndpointRecord, ...] = ()
    mounts: tuple[MountRecord, ...] = ()
    inspected: bool = False
    # Known from an inspect only.
    status: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    pid: int | None = None
    user: str = ""
    command: tuple[str, ...] = ()
    open_stdin: bool = False
    host: HostConfigRecord = field(default_factory=HostConfigRecord)
    # Where it runs, for a backend of several machines (the swarm node's name; '' on the local engine),
    # the address its published ports are reached at from this machine ('' for 127.0.0.1), and why it
    # is not running when the backend knows (a lost node, say).
    node: str = ""
    reach_host: str = ""
    reason: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def ip_address(self) -> str:
        """The address on the first network it is on ('' when on none)."""
        return next((n.ip_address for n in self.networks if n.ip_address), "")

    def loopback_ports(self) -> dict[int, int]:
        """{container port: host port} of the ports published on the host's loopback only (or, on a
        backend of several machines, on the node's address that `reach_host` names)."""
        reachable = ("127.0.0.1", "", *((self.reach_host,) if self.reach_host else ()))
        return {p.container_port: p.host_port for p in self.ports if p.host_ip in reachable}

    def uptime(self, now: datetime | None = None) -> float | None:
        if not self.running or self.started_at is None:
            return None
        return max(0.0, ((now or datetime.now(timezone.utc)) - self.started_at).total_seconds())


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    options: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    mountpoint: str = ""
    # Seconds since the epoch, None when the engine did not say.
    created: float | None = None


@dataclass(frozen=True)
class NetworkRecord:
    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # Running containers attached now (the engine's network inspect names running ones only).
    containers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageRecord:
    id: str
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class PathStat:
    """One path in a container, from the header of the engine's archive of it."""

    uid: int
    gid: int
    mode: int
    type: str  # 'dir', 'file', 'symlink' or 'other'
    link: str = ""


@dataclass(frozen=True)
class UsageSample:
    """One sample of a container's CPU time, memory (without reclaimable cache) and pids."""

    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    pids: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cpu_seconds": self.cpu_seconds, "memory_bytes": self.memory_bytes, "pids": self.pids}
