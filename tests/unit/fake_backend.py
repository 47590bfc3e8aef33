"""An in-memory container engine with the methods of sandbox.backend.Backend.

It keeps containers, volumes, networks and images as records (the same ones DockerBackend returns),
counts every call by method name (`calls`), and behaves as the engine does where the manager relies
on it: names are unique, a rename of a name nobody has answers False, a container cannot be created
on a network that is not there, published ports exist only while a container runs, and a stopped
container has an exit code and an end time. Nothing here runs code; exec-like calls are stubs.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import IO, Any, Callable

from jupyter_sandbox.sandbox.backend import Backend
from jupyter_sandbox.sandbox.docker_backend import ImageNotFound, SandboxError
from jupyter_sandbox.sandbox.records import (
    ContainerRecord,
    EndpointRecord,
    HostConfigRecord,
    ImageRecord,
    MountRecord,
    NetworkRecord,
    PathStat,
    PortBinding,
    UsageSample,
    VolumeRecord,
)


class _NoEvents:
    def __iter__(self) -> Iterator[str]:
        return iter(())

    def close(self) -> None:
        pass


def _image_tree(path: str) -> PathStat | None:
    """Every path of a fake image exists and is root's: folders 0755, interpreters executable files."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if name.startswith("python"):
        return PathStat(uid=0, gid=0, mode=0o755, type="file")
    if "." in name:
        return PathStat(uid=0, gid=0, mode=0o644, type="file")
    return PathStat(uid=0, gid=0, mode=0o755, type="dir")


class FakeBackend:
    def __init__(self, images: Iterable[str] = ()) -> None:
        self.calls: Counter[str] = Counter()
        self.containers: dict[str, ContainerRecord] = {}
        self.volumes: dict[str, VolumeRecord] = {}
        self.networks: dict[str, NetworkRecord] = {}
        self.images: dict[str, ImageRecord] = {}
        self.archives: dict[str, list[str]] = {}  # container id -> paths archives were put at
        self.gates: list[str] = []  # container ids whose start gate was opened
        self._ports = itertools.count(40000)
        self._pids = itertools.count(1000)
        for image in images:
            self.add_image(image)

    def on_this_machine(self) -> bool:
        return True

    def apply_egress(
        self,
        record: ContainerRecord,
        enforcer: Any,
        policy: Any,
        host_addresses: list[str],
        gateway: tuple[str, int] | None,
    ) -> float:
        self.calls["apply_egress"] += 1
        return float(enforcer.apply(record.pid or 0, policy, host_addresses, gateway))

    def add_image(self, name: str, env: dict[str, str] | None = None) -> ImageRecord:
        record = ImageRecord(id=f"sha256:{secrets.token_hex(32)}", env=MappingProxyType(dict(env or {})))
        self.images[name] = record
        return record

    # -- helpers ----------------------------------------------------------------------------

    def _count(self, method: str) -> None:
        self.calls[method] += 1

    def _find(self, container_id: str) -> ContainerRecord | None:
        if container_id in self.containers:
            return self.containers[container_id]
        return next((c for c in self.containers.values() if c.name == container_id), None)

    def _image_record(self, image: str) -> ImageRecord | None:
        return self.images.get(image) or next((i for i in self.images.values() if i.id == image), None)

    # -- networks ---------------------------------------------------------------------------

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        self._count("ensure_network")
        self.networks.setdefault(name, NetworkRecord(id=secrets.token_hex(32), name=name, labels=dict(labels)))

    def remove_network_if_unused(self, name: str) -> bool:
        self._count("remove_network_if_unused")
        if any(c.host.network_mode == name for c in self.containers.values()):
            return False
        self.networks.pop(name, None)
        return True

    def list_networks(self, label_keys: Iterable[str]) -> list[str]:
        self._count("list_networks")
        keys = list(label_keys)
        return [n.name for n in self.networks.values() if all(k in n.labels for k in keys)]

    # -- containers -------------------------------------------------------------------------

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
    ) -> str:
        self._count("create_container")
        found = self._image_record(image)
        if found is None:
            raise ImageNotFound(f"the image {image!r} is not on this Docker engine")
        if network not in self.networks:
            raise SandboxError(f"Docker refused to create the sandbox: network {network} not found")
        if self._find(name) is not None:
            raise SandboxError(f"Docker refused to create the sandbox: the name {name} is in use")
        if volume not in self.volumes:
            self.volumes[volume] = VolumeRecord(name=volume, created=time.time())
        container_id = secrets.token_hex(32)
        self.containers[container_id] = ContainerRecord(
            id=container_id,
            name=name,
            labels=MappingProxyType(dict(labels)),
            state="created",
            image=image,
            image_id=found.id,
            created=time.time(),
            mounts=(
                MountRecord(type="volume", destination=mount_point, name=volume),
                *(MountRecord(type="volume", destination=d, name=secrets.token_hex(32)) for d in private_dirs),
            ),
            inspected=True,
            status="created",
            user=user,
            command=tuple(command),
            open_stdin=stdin_open,
            host=HostConfigRecord(
                nano_cpus=int(cpu * 1e9),
                memory=memory,
                memory_swap=memory,
                pids_limit=pids,
                ulimits=MappingProxyType({"nofile": nofile, "fsize": file_size, "core": 0}),
                tmpfs=MappingProxyType(dict(tmpfs or {})),
                read_only_rootfs=True,
                cap_drop=("ALL",),
                security_opt=("no-new-privileges",),
                init=True,
                network_mode=network,
                runtime=runtime or "runc",
            ),
            # Remembered for start(): which ports to publish.
            ports=tuple(PortBinding(container_port=p, host_ip="", host_port=0) for p in ports),
        )
        return container_id

    def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        self._count("put_archive")
        if self._find(container_id) is None:
            raise SandboxError(f"could not copy files into the sandbox at {path}")
        self.archives.setdefault(container_id, []).append(path)

    def path_stat(self, container_id: str, path: str) -> PathStat | None:
        self._count("path_stat")
        return _image_tree(path) if self._find(container_id) is not None else None

    def probe(self, image: str, labels: dict[str, str]) -> str:
        self._count("probe")
        found = self._image_record(image)
        if found is None:
            raise ImageNotFound(f"the image {image!r} is not on this Docker engine")
        container_id = secrets.token_hex(32)
        self.containers[container_id] = ContainerRecord(
            id=container_id,
            name=f"probe-{container_id[:12]}",
            labels=MappingProxyType(dict(labels)),
            state="created",
            image=image,
            image_id=found.id,
            inspected=True,
        )
        return container_id

    def open_gate(self, container_id: str, line: bytes) -> None:
        self._count("open_gate")
        record = self._find(container_id)
        if record is None or not record.running:
            raise SandboxError("could not reach the sandbox's start gate")
        self.gates.append(record.id)

    def start(self, container_id: str) -> None:
        self._count("start")
        record = self._find(container_id)
        if record is None:
            raise SandboxError("Docker could not start the sandbox: no such container")
        if record.host.network_mode not in self.networks:
            raise SandboxError(f"Docker could not start the sandbox: network {record.host.network_mode} not found")
        if record.running:
            return
        self.containers[record.id] = replace(
            record,
            state="running",
            status="running",
            started_at=datetime.now(timezone.utc),
            finished_at=None,
            exit_code=0,
            pid=next(self._pids),
            ports=tuple(replace(p, host_ip="127.0.0.1", host_port=next(self._ports)) for p in record.ports),
            networks=(EndpointRecord(network=record.host.network_mode, ip_address="", gateway="172.30.0.1"),),
        )

    def reconnect(self, container_id: str, network: str, alias: str | None = None) -> None:
        self._count("reconnect")
        record = self._find(container_id)
        if record is None or network not in self.networks:
            raise SandboxError(f"could not join the sandbox to the network {network}")
        self.containers[record.id] = replace(record, host=replace(record.host, network_mode=network))

    def stop(self, container_id: str, timeout: int = 5) -> None:
        self._count("stop")
        record = self._find(container_id)
        if record is None or not record.running:
            return
        self.containers[record.id] = replace(
            record,
            state="exited",
            status="exited",
            finished_at=datetime.now(timezone.utc),
            exit_code=137,
            pid=None,
            ports=tuple(replace(p, host_ip="", host_port=0) for p in record.ports),
            networks=(),
        )

    def update_resources(self, container_id: str, cpu: float | None, memory: int | None) -> None:
        self._count("update_resources")
        record = self._find(container_id)
        if record is None:
            raise SandboxError("Docker could not change the limits: no such container")
        host = record.host
        if cpu is not None:
            host = replace(host, nano_cpus=int(cpu * 1e9))
        if memory is not None:
            host = replace(host, memory=memory, memory_swap=memory)
        self.containers[record.id] = replace(record, host=host)

    def usage(self, container_id: str, pid: int | None = None) -> UsageSample | None:
        self._count("usage")
        record = self._find(container_id)
        if record is None or not record.running:
            return None
        return UsageSample(cpu_seconds=0.5, memory_bytes=32 * 1024**2, pids=4)

    def inspect(self, container_id: str) -> ContainerRecord | None:
        self._count("inspect")
        record = self._find(container_id)
        if record is None:
            return None
        # Published ports a stopped container has none of (as the engine reports it).
        return replace(record, ports=tuple(p for p in record.ports if p.host_port))

    def list_containers(
        self, labels: dict[str, str] | None = None, label_keys: Iterable[str] = (), name: str | None = None
    ) -> list[ContainerRecord]:
        self._count("list_containers")
        keys = list(label_keys)
        found = []
        for record in self.containers.values():
            if any(record.labels.get(k) != v for k, v in (labels or {}).items()):
                continue
            if any(k not in record.labels for k in keys):
                continue
            if name and not re.search(name, record.name):
                continue
            # A summary: what a list tells, no more.
            found.append(
                ContainerRecord(
                    id=record.id,
                    name=record.name,
                    labels=record.labels,
                    state=record.state,
                    image=record.image,
                    image_id=record.image_id,
                    created=float(int(record.created)),
                    ports=tuple(p for p in record.ports if p.host_port),
                    networks=record.networks,
                    mounts=record.mounts,
                    status=record.status,
                )
            )
        return found

    def rename(self, current_name: str, new_name: str) -> bool:
        self._count("rename")
        record = self._find(current_name)
        if record is None:
            return False
        if self._find(new_name) is not None:
            raise SandboxError(f"could not rename the sandbox container: {new_name} is in use")
        self.containers[record.id] = replace(record, name=new_name)
        return True

    def remove_container(self, container_id: str) -> None:
        self._count("remove_container")
        record = self._find(container_id)
        if record is not None:
            del self.containers[record.id]

    def events(self, container_id: str) -> _NoEvents:
        self._count("events")
        return _NoEvents()

    # -- volumes ----------------------------------------------------------------------------

    def create_volume(self, name: str, labels: dict[str, str], options: dict[str, str] | None = None) -> bool:
        self._count("create_volume")
        if name in self.volumes:
            return False
        self.volumes[name] = VolumeRecord(
            name=name,
            labels=MappingProxyType(dict(labels)),
            options=MappingProxyType(dict(options or {})),
            mountpoint=f"/var/lib/docker/volumes/{name}/_data",
            created=time.time(),
        )
        return True

    def volume(self, name: str) -> VolumeRecord | None:
        self._count("volume")
        return self.volumes.get(name)

    def list_volumes(self, label_keys: Iterable[str]) -> list[str]:
        return [v.name for v in self.volumes_with_labels(label_keys)]

    def volumes_with_labels(self, label_keys: Iterable[str]) -> list[VolumeRecord]:
        self._count("volumes_with_labels")
        keys = list(label_keys)
        return [v for v in self.volumes.values() if all(k in v.labels for k in keys)]

    def remove_volume(self, name: str) -> None:
        self._count("remove_volume")
        if any(m.name == name for c in self.containers.values() for m in c.mounts):
            raise SandboxError(f"could not remove the volume {name}: volume is in use")
        self.volumes.pop(name, None)

    # -- images -----------------------------------------------------------------------------

    def image(self, image: str) -> ImageRecord | None:
        self._count("image")
        return self._image_record(image)

    def image_labels(self, image: str) -> dict[str, str] | None:
        record = self.image(image)
        return None if record is None else dict(record.labels)

    def image_env(self, image: str) -> dict[str, str]:
        record = self.image(image)
        return {} if record is None else dict(record.env)

    def image_id(self, image: str) -> str | None:
        record = self.image(image)
        return None if record is None else record.id

    def pull(self, image: str) -> None:
        raise SandboxError(f"could not pull {image}: the fake engine reaches no registry")

    def import_image(self, tar_stream: IO[bytes], repository: str, tag: str) -> None:
        self.add_image(f"{repository}:{tag}")

    def tag(self, image: str, repository: str, tag: str) -> None:
        found = self._image_record(image)
        if found is None:
            raise ImageNotFound(f"the image {image!r} is not on this Docker engine")
        self.images[f"{repository}:{tag}"] = found

    def build(
        self,
        context: bytes,
        tag: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        progress: Callable[[str], None],
    ) -> None:
        raise SandboxError("the image build failed: the fake engine builds nothing")

    def run_once(self, image: str, command: list[str]) -> str:
        raise SandboxError(f"{' '.join(command)} failed in {image}: the fake engine runs nothing")


def as_backend(fake: FakeBackend) -> Backend:
    """The fake where a Backend is wanted (mypy checks it against the Protocol here)."""
    return fake
