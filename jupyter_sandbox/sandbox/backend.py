"""What SandboxManager needs from a container engine.

DockerBackend (docker_backend.py) is the real one; tests/unit/fake_backend.py keeps the same methods
in memory, and mypy checks both against this Protocol, so a method the manager starts to call is one
both must have. Every answer is a record (records.py), never the engine's JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any, Callable, Protocol

from .records import ContainerRecord, ImageRecord, PathStat, UsageSample, VolumeRecord


class EventStream(Protocol):
    """The actions ('die', 'oom', 'destroy', 'stop') of one container, as they happen."""

    def __iter__(self) -> Iterator[str]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    def on_this_machine(self) -> bool:
        """Whether sandboxes run on this machine (host cgroups, loop-device homes, nsenter reach them)."""
        ...

    def apply_egress(
        self,
        record: ContainerRecord,
        enforcer: Any,
        policy: Any,
        host_addresses: list[str],
        gateway: tuple[str, int] | None,
    ) -> float:
        """Put an egress policy into the sandbox's network namespace, on the machine that runs it
        (network.Enforcer and network.EgressPolicy; network.EgressError when it cannot)."""
        ...

    # -- networks
    def ensure_network(self, name: str, labels: dict[str, str]) -> None: ...

    def network_gateway(self, name: str) -> str | None: ...

    def remove_network_if_unused(self, name: str) -> bool: ...

    def list_networks(self, label_keys: Iterable[str]) -> list[str]: ...

    # -- containers
    def create_container(
        self,
        *,
        name: str,
        image: str,
        command: list[str],
        labels: dict[str, str],
        env: dict[str, str],
        volume: str,
        mount_point: str,
        network: str,
        ports: Iterable[int],
        cpu: float,
        memory: int,
        pids: int,
        file_size: int,
        nofile: int,
        user: str,
        hostname: str,
        runtime: str | None,
        alias: str | None = None,
        stdin_open: bool = False,
        tmpfs: dict[str, str] | None = None,
        private_dirs: Iterable[str] = (),
    ) -> str: ...

    def put_archive(self, container_id: str, path: str, data: bytes) -> None: ...

    def path_stat(self, container_id: str, path: str) -> PathStat | None: ...

    def probe(self, image: str, labels: dict[str, str]) -> str: ...

    def open_gate(self, container_id: str, line: bytes) -> None: ...

    def start(self, container_id: str) -> None: ...

    def reconnect(self, container_id: str, network: str, alias: str | None = None) -> None: ...

    def stop(self, container_id: str, timeout: int = 5) -> None: ...

    def update_resources(self, container_id: str, cpu: float | None, memory: int | None) -> None: ...

    def usage(self, container_id: str, pid: int | None = None) -> UsageSample | None: ...

    def inspect(self, container_id: str) -> ContainerRecord | None: ...

    def list_containers(
        self, labels: dict[str, str] | None = None, label_keys: Iterable[str] = (), name: str | None = None
    ) -> list[ContainerRecord]: ...

    def rename(self, current_name: str, new_name: str) -> bool: ...

    def remove_container(self, container_id: str) -> None: ...

    def events(self, container_id: str) -> EventStream: ...

    # -- volumes
    def create_volume(self, name: str, labels: dict[str, str], options: dict[str, str] | None = None) -> bool: ...

    def volume(self, name: str) -> VolumeRecord | None: ...

    def list_volumes(self, label_keys: Iterable[str]) -> list[str]: ...

    def volumes_with_labels(self, label_keys: Iterable[str]) -> list[VolumeRecord]: ...

    def remove_volume(self, name: str) -> None: ...

    # -- images
    def image(self, image: str) -> ImageRecord | None: ...

    def image_labels(self, image: str) -> dict[str, str] | None: ...

    def image_env(self, image: str) -> dict[str, str]: ...

    def image_id(self, image: str) -> str | None: ...

    def pull(self, image: str) -> None: ...

    def import_image(self, tar_stream: IO[bytes], repository: str, tag: str) -> None: ...

    def tag(self, image: str, repository: str, tag: str) -> None: ...

    def build(
        self,
        context: bytes,
        tag: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        progress: Callable[[str], None],
    ) -> None: ...

    def run_once(self, image: str, command: list[str]) -> str: ...
