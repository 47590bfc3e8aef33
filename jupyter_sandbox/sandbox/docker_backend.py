"""Every call to the Docker Engine lives here.

The rest of the code asks for what it wants (a hardened container, a labelled volume, an image
built from a context) and gets typed records back (records.py), or a `DockerUnavailable` /
`SandboxError` whose message a person can act on. This is the only module that reads the engine's
JSON: the `_container_*`, `_volume` and `_image` functions below turn it into records.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from types import MappingProxyType
from typing import IO, Any, Callable

import docker.errors
from docker.types import LogConfig, Ulimit

import docker

from .records import (
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

log = logging.getLogger(__name__)

# A forced removal the engine may refuse for a moment and then accept (see remove_container).
REMOVE_ATTEMPTS = 4
TRANSIENT_REMOVAL = ("did not receive an exit event", "could not kill", "is restarting", "is paused")


class SandboxError(RuntimeError):
    """Something about a sandbox failed; the message is meant for the user."""


class DockerUnavailable(SandboxError):
    """The Docker Engine cannot be reached."""


class ImageNotFound(SandboxError):
    """The image a sandbox asks for is not on this Docker Engine."""


def _describe_engine() -> str:
    host = os.environ.get("DOCKER_HOST")
    return f"DOCKER_HOST={host}" if host else "the local Docker socket"


class DockerBackend:
    """A thin, typed wrapper over the docker SDK."""

    def __init__(self, timeout: float = 60, client: docker.DockerClient | None = None) -> None:
        try:
            # `client`: another engine than DOCKER_HOST's (a swarm node's, see sandbox/swarm/).
            self.client = client or docker.from_env(timeout=int(timeout))
            self.client.ping()
        except Exception as exc:  # the SDK raises many kinds for an absent engine
            raise DockerUnavailable(
                f"Docker is not reachable ({_describe_engine()}): {exc}. "
                "Start the Docker engine (or run scripts/ensure-docker.sh as root) and try again."
            ) from None
        self.api = self.client.api

    def on_this_machine(self) -> bool:
        """Whether the engine's containers run on this machine (host cgroups, loop devices, nsenter)."""
        # The SDK names a unix socket (or a Windows pipe) http+docker://; a TCP engine http(s)://host.
        return str(getattr(self.api, "base_url", "")).startswith("http+docker://")

    def apply_egress(
        self,
        record: ContainerRecord,
        enforcer: Any,
        policy: Any,
        host_addresses: list[str],
        gateway: tuple[str, int] | None,
    ) -> float:
        """Put `policy` into the network namespace of the container's process, from this machine."""
        if not record.pid:
            from .network import EgressError

            raise EgressError("the sandbox has no running process")
        return float(enforcer.apply(record.pid, policy, host_addresses, gateway))

    # -- networks ---------------------------------------------------------------------------

    def _networks(self, name: str) -> list[Any]:
        # Docker's name filter also matches parts of names; keep exact matches only.
        return [n for n in self.client.networks.list(names=[name]) if n.name == name]

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """A bridge network whose containers cannot talk to each other (callers hold a lock)."""
        if self._networks(name):
            return
        try:
            self.client.networks.create(
                name,
                driver="bridge",
                labels=labels,
                options={"com.docker.network.bridge.enable_icc": "false"},
                check_duplicate=True,
            )
        except docker.errors.APIError as exc:
            # Another process may have created it at the same moment.
            if not self._networks(name):
                raise SandboxError(f"could not create the sandbox network {name}: {exc}") from None

    def network_gateway(self, name: str) -> str | None:
        """The host's IPv4 address on a bridge network (where the egress gateway listens), if any."""
        for network in self._networks(name):
            for config in _list(_dict(network.attrs.get("IPAM")).get("Config")):
                gateway = str(_dict(config).get("Gateway") or "")
                if gateway and ":" not in gateway:
                    return gateway
        return None

    def remove_network_if_unused(self, name: str) -> bool:
        """Remove the network when no container is on it, stopped ones included: the network's own
        list names running containers only, and a kept sandbox stopped on it must start again."""
        for network in self._networks(name):
            try:
                network.reload()
                if _network(network.attrs).containers or self.api.containers(
                    all=True, filters={"network": [network.id]}
                ):
                    return False
                network.remove()
            except docker.errors.NotFound:
                continue  # another process removed it first
            except docker.errors.APIError:
                return False  # a container joined meanwhile
        return True

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
        """Create (not start) a container with every hardened default; return its id.

        Its root filesystem is read-only: what the sandbox writes goes to the home volume (whose size
        the caller chose), to the `tmpfs` mounts ({path: mount options}, sizes included) or nowhere.
        Each of `private_dirs` is an anonymous volume, removed with the container, for files the host
        puts in with put_archive before the start (Docker refuses archives into a read-only root)."""
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise ImageNotFound(
                f"the image {image!r} is not on this Docker engine; build it with "
                "`jupyter sandbox image build` or choose another image"
            ) from None
        host_config = self.api.create_host_config(
            binds={volume: {"bind": mount_point, "mode": "rw"}},
            read_only=True,
            tmpfs=dict(tmpfs or {}),
            port_bindings={port: ("127.0.0.1", None) for port in ports},
            network_mode=network,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=pids,
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(cpu * 1e9),
            ulimits=[
                Ulimit(name="nofile", soft=nofile, hard=nofile),
                Ulimit(name="fsize", soft=file_size, hard=file_size),
                Ulimit(name="core", soft=0, hard=0),
            ],
            init=True,
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "2"}),
            privileged=False,
            ipc_mode="private",
            runtime=runtime,
        )
        try:
            created = self.api.create_container(
                image=image,
                command=command,
                name=name,
                hostname=hostname,
                user=user,
                labels=labels,
                environment=env,
                ports=list(ports),
                volumes=list(private_dirs) or None,
                host_config=host_config,
                working_dir=mount_point,
                # The start gate (manager.py) waits on stdin, which only the Docker API can write to.
                stdin_open=stdin_open,
                networking_config=self.api.create_networking_config(
                    {network: self.api.create_endpoint_config(aliases=[alias])}  # type: ignore[arg-type]
                )
                if alias
                else None,
            )
        except docker.errors.APIError as exc:
            raise SandboxError(f"Docker refused to create the sandbox: {exc.explanation or exc}") from None
        return str(created["Id"])

    def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        if not self.api.put_archive(container_id, path, data):
            raise SandboxError(f"could not copy files into the sandbox at {path}")

    def path_stat(self, container_id: str, path: str) -> PathStat | None:
        """Owner, mode, type and link target of one path in a container (running or not), from the
        first header of the engine's archive of it; None when it does not exist. Only that header is
        read: the rest of the stream (a directory's whole tree) is dropped unread."""
        try:
            response = self.api._get(  # type: ignore[attr-defined]  # the SDK has no public call for it
                self.api._url("/containers/{0}/archive", container_id),  # type: ignore[attr-defined]  # the SDK has no public call for it
                params={"path": path},
                stream=True,
                headers={"Accept-Encoding": "identity"},
            )
            self.api._raise_for_status(response)  # type: ignore[attr-defined]  # the SDK has no public call for it
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not look at {path} in the sandbox: {exc.explanation or exc}") from None
        try:
            head = b""
            while len(head) < tarfile.BLOCKSIZE:
                more = response.raw.read(tarfile.BLOCKSIZE - len(head))
                if not more:
                    break
                head += more
            try:
                entry = tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
            except tarfile.TarError:
                raise SandboxError(
                    f"could not look at {path} in the sandbox: the engine's answer is no archive"
                ) from None
        finally:
            response.close()
        kinds = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file"}
        return PathStat(
            uid=entry.uid,
            gid=entry.gid,
            mode=entry.mode & 0o7777,
            type=kinds.get(entry.type, "other"),
            link=entry.linkname,
        )

    def probe(self, image: str, labels: dict[str, str]) -> str:
        """A container of `image` that is never started (no network), only looked at; the caller
        removes it."""
        try:
            return self.api.create_container(
                image=image,
                command=["/"],
                labels=labels,
                network_disabled=True,
                host_config=self.api.create_host_config(network_mode="none"),
            )["Id"]
        except docker.errors.ImageNotFound:
            raise ImageNotFound(f"the image {image!r} is not on this Docker engine") from None
        except docker.errors.APIError as exc:
            raise SandboxError(
                f"Docker refused to create a container to look at {image}: {exc.explanation or exc}"
            ) from None

    def open_gate(self, container_id: str, line: bytes) -> None:
        """Write one line to the container's stdin (what its start gate waits for)."""
        try:
            stream = self.api.attach_socket(container_id, params={"stdin": 1, "stream": 1})
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not reach the sandbox's start gate: {exc.explanation or exc}") from None
        try:
            raw = getattr(stream, "_sock", stream)
            raw.sendall(line)
        except OSError as exc:
            raise SandboxError(f"could not open the sandbox's start gate: {exc.strerror or exc}") from None
        finally:
            stream.close()

    def start(self, container_id: str) -> None:
        try:
            self.api.start(container_id)
        except docker.errors.APIError as exc:
            raise SandboxError(f"Docker could not start the sandbox: {exc.explanation or exc}") from None

    def reconnect(self, container_id: str, network: str, alias: str | None = None) -> None:
        """Join a container to `network` afresh (its old endpoint may name a network that is gone)."""
        try:
            self.api.disconnect_container_from_network(container_id, network, force=True)
        except docker.errors.APIError:
            pass  # not on it: nothing to leave
        try:
            self.api.connect_container_to_network(container_id, network, aliases=[alias] if alias else None)
        except docker.errors.APIError as exc:
            raise SandboxError(
                f"could not join the sandbox to the network {network}: {exc.explanation or exc}"
            ) from None

    def stop(self, container_id: str, timeout: int = 5) -> None:
        try:
            self.api.stop(container_id, timeout=timeout)
        except docker.errors.NotFound:
            pass

    def update_resources(self, container_id: str, cpu: float | None, memory: int | None) -> None:
        body: dict[str, Any] = {}
        if cpu is not None:
            body["NanoCpus"] = int(cpu * 1e9)
        if memory is not None:
            body.update(Memory=memory, MemorySwap=memory)
        if not body:
            return
        # The SDK's update_container() cannot set NanoCpus, which is how the limit was created.
        try:
            response = self.api._post_json(self.api._url("/containers/{0}/update", container_id), data=body)  # type: ignore[attr-defined]  # the SDK has no public call for it
            self.api._raise_for_status(response)  # type: ignore[attr-defined]  # the SDK has no public call for it
        except docker.errors.APIError as exc:
            raise SandboxError(f"Docker could not change the limits: {exc.explanation or exc}") from None

    def usage(self, container_id: str, pid: int | None = None) -> UsageSample | None:
        """One sample of the container's CPU time, memory and pids (None when there is none).

        Read from the container's cgroup on this host when it can be (instant; `pid`, its main
        process, saves an inspect when the caller has one); otherwise from Docker's stats API,
        which waits for the daemon's next one-second sample.
        """
        if pid is None:
            record = self.inspect(container_id)
            pid = record.pid if record is not None else None
        sample = cgroup_usage(pid) if pid else None
        if sample is not None:
            return sample
        try:
            stats = self.api.stats(container_id, stream=False, one_shot=True)
        except docker.errors.APIError:
            return None
        return _usage(stats)

    def inspect(self, container_id: str) -> ContainerRecord | None:
        """Everything about one container (by id or name); None when there is none."""
        try:
            return _container_inspect(self.api.inspect_container(container_id))
        except docker.errors.NotFound:
            return None

    def list_containers(
        self, labels: dict[str, str] | None = None, label_keys: Iterable[str] = (), name: str | None = None
    ) -> list[ContainerRecord]:
        """Containers with these labels (as summaries: `inspected` is False); `name` is a regular
        expression Docker matches against names."""
        filters: dict[str, Any] = {"label": [f"{k}={v}" for k, v in (labels or {}).items()] + list(label_keys)}
        if name:
            filters["name"] = [name]
        return [_container_summary(item) for item in self.api.containers(all=True, filters=filters)]

    def rename(self, current_name: str, new_name: str) -> bool:
        """Rename a container given by its current name; False when no container has that name now."""
        try:
            self.api.rename(current_name, new_name)
            return True
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not rename the sandbox container: {exc.explanation or exc}") from None

    def remove_container(self, container_id: str) -> None:
        # A forced removal kills the container first; on a loaded machine the engine can give up
        # waiting for the exit ("could not kill ... did not receive an exit event") or still be
        # stopping it. Both pass within seconds, and a sandbox left behind here would be nobody's.
        for attempt in range(1, REMOVE_ATTEMPTS + 1):
            try:
                self.api.remove_container(container_id, force=True, v=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                text = str(exc)
                if "already in progress" in text:
                    return
                if attempt == REMOVE_ATTEMPTS or not any(sign in text for sign in TRANSIENT_REMOVAL):
                    raise SandboxError(f"could not remove the sandbox container: {exc.explanation or exc}") from None
                log.info("removing container %s: %s; trying again", container_id[:12], exc.explanation or exc)
                time.sleep(0.5 * attempt)

    def events(self, container_id: str) -> ContainerEvents:
        """Die/oom/destroy/stop events of one container, as they happen (blocking; close() ends it)."""
        return ContainerEvents(
            self.client.events(
                decode=True,
                filters={"container": container_id, "type": "container", "event": ["die", "oom", "destroy", "stop"]},
            )
        )

    # -- volumes ----------------------------------------------------------------------------

    def create_volume(self, name: str, labels: dict[str, str], options: dict[str, str] | None = None) -> bool:
        """A `local` volume (with these driver options, e.g. a device to mount); False when it was
        there already (its options are then whatever they were made with)."""
        try:
            self.client.volumes.get(name)
            return False
        except docker.errors.NotFound:
            pass
        try:
            self.client.volumes.create(name=name, driver="local", driver_opts=options or None, labels=labels)
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not create the volume {name}: {exc.explanation or exc}") from None
        return True

    def volume(self, name: str) -> VolumeRecord | None:
        """A volume's description (options, mount point, labels), or None when there is none."""
        try:
            return _volume(self.api.inspect_volume(name))
        except docker.errors.NotFound:
            return None

    def list_volumes(self, label_keys: Iterable[str]) -> list[str]:
        return [volume.name for volume in self.volumes_with_labels(label_keys)]

    def volumes_with_labels(self, label_keys: Iterable[str]) -> list[VolumeRecord]:
        """The volumes with these labels."""
        return [_volume(item) for item in self.api.volumes(filters={"label": list(label_keys)}).get("Volumes") or []]

    def remove_volume(self, name: str) -> None:
        try:
            self.api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not remove the volume {name}: {exc.explanation or exc}") from None

    def list_networks(self, label_keys: Iterable[str]) -> list[str]:
        return [_network(item).name for item in self.api.networks(filters={"label": list(label_keys)})]

    # -- images -----------------------------------------------------------------------------

    def image(self, image: str) -> ImageRecord | None:
        """A local image (by name or id), or None when it is not here."""
        try:
            return _image(self.api.inspect_image(image))
        except docker.errors.ImageNotFound:
            return None

    def image_labels(self, image: str) -> dict[str, str] | None:
        """The labels of a local image, or None when it is not here."""
        record = self.image(image)
        return None if record is None else dict(record.labels)

    def image_env(self, image: str) -> dict[str, str]:
        """The environment an image sets (its ENV lines); {} when it is not here."""
        record = self.image(image)
        return {} if record is None else dict(record.env)

    def image_id(self, image: str) -> str | None:
        record = self.image(image)
        return None if record is None else record.id

    def pull(self, image: str) -> None:
        repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        try:
            self.api.pull(repository, tag=tag or "latest")
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not pull {image}: {exc.explanation or exc}") from None

    def import_image(self, tar_stream: IO[bytes], repository: str, tag: str) -> None:
        self.api.import_image_from_data(tar_stream.read(), repository=repository, tag=tag)

    def tag(self, image: str, repository: str, tag: str) -> None:
        self.api.tag(image, repository, tag=tag)

    def build(
        self,
        context: bytes,
        tag: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        progress: Callable[[str], None],
    ) -> None:
        stream = self.api.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            tag=tag,
            buildargs=buildargs,
            labels=labels,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise SandboxError(f"the image build failed: {chunk['error'].strip()}")
            text = chunk.get("stream")
            if text and text.strip():
                progress(text.rstrip("\n"))

    def run_once(self, image: str, command: list[str]) -> str:
        """Run a throwaway container without network and return its output."""
        try:
            output = self.client.containers.run(image, command, remove=True, network_mode="none", user="65534:65534")
        except docker.errors.ContainerError as exc:
            raise SandboxError(f"{' '.join(command)} failed in {image}: {exc.stderr!r}") from None
        return output.decode("utf-8", "replace")


class ContainerEvents:
    """The actions ('die', 'oom', 'destroy', 'stop') of one container's events, as they happen."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[str]:
        for event in self._stream:
            if isinstance(event, dict):
                yield str(event.get("status") or event.get("Action") or "")

    def close(self) -> None:
        self._stream.close()


# -- the engine's JSON, turned into records ---------------------------------------------------------
# Everything below reads answers of the local engine defensively: a field missing or of another type
# becomes the record's neutral default, never an exception in the middle of an operation.


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list (anything else in it is skipped)."""
    return [item for item in _list(value) if isinstance(item, dict)]


def _str_map(value: Any) -> MappingProxyType[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in _dict(value).items()})


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def docker_time(value: Any) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds, which fromisoformat() does not take, and a zone);
    None for the zero time it gives a container never started."""
    match = re.match(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", value if isinstance(value, str) else ""
    )
    if not match or value.startswith("0001-"):
        return None
    zone = match.group(3) or "Z"
    stamp = datetime.fromisoformat(match.group(1) + (match.group(2) or ".0")[:7] + ("+00:00" if zone == "Z" else zone))
    return stamp.astimezone(timezone.utc)


def _endpoints(settings: Any) -> tuple[EndpointRecord, ...]:
    return tuple(
        EndpointRecord(
            network=str(name),
            ip_address=str(_dict(net).get("IPAddress") or ""),
            gateway=str(_dict(net).get("Gateway") or ""),
            ipv6_gateway=str(_dict(net).get("IPv6Gateway") or ""),
        )
        for name, net in _dict(_dict(settings).get("Networks")).items()
    )


def _mounts(value: Any) -> tuple[MountRecord, ...]:
    return tuple(
        MountRecord(
            type=str(m.get("Type") or ""),
            destination=str(m.get("Destination") or ""),
            name=str(m.get("Name") or ""),
            source=str(m.get("Source") or ""),
            read_write=bool(m.get("RW", True)),
        )
        for m in _dicts(value)
    )


def _container_summary(item: dict[str, Any]) -> ContainerRecord:
    """A container as GET /containers/json describes it."""
    ports = []
    for entry in _dicts(item.get("Ports")):
        if entry.get("PublicPort") and entry.get("PrivatePort"):
            ports.append(
                PortBinding(
                    container_port=int(entry["PrivatePort"]),
                    host_ip=str(entry.get("IP") or ""),
                    host_port=int(entry["PublicPort"]),
                    protocol=str(entry.get("Type") or "tcp"),
                )
            )
    names = _list(item.get("Names"))
    created = item.get("Created")
    return ContainerRecord(
        id=str(item.get("Id") or ""),
        name=str(names[0] if names else "/?").lstrip("/"),
        labels=_str_map(item.get("Labels")),
        state=str(item.get("State") or "unknown"),
        image=str(item.get("Image") or ""),
        image_id=str(item.get("ImageID") or ""),
        created=float(created) if isinstance(created, (int, float)) else 0.0,
        ports=tuple(ports),
        networks=_endpoints(item.get("NetworkSettings")),
        mounts=_mounts(item.get("Mounts")),
        status=str(item.get("Status") or ""),
    )


def _host_config(host: dict[str, Any]) -> HostConfigRecord:
    log_config = _dict(host.get("LogConfig"))
    return HostConfigRecord(
        nano_cpus=_int(host.get("NanoCpus")),
        memory=_int(host.get("Memory")),
        memory_swap=_int(host.get("MemorySwap")),
        pids_limit=_int(host.get("PidsLimit")),
        ulimits=MappingProxyType(
            {u["Name"]: _int(u.get("Hard")) for u in _dicts(host.get("Ulimits")) if isinstance(u.get("Name"), str)}
        ),
        tmpfs=_str_map(host.get("Tmpfs")),
        read_only_rootfs=bool(host.get("ReadonlyRootfs")),
        cap_drop=tuple(map(str, _list(host.get("CapDrop")))),
        security_opt=tuple(map(str, _list(host.get("SecurityOpt")))),
        privileged=bool(host.get("Privileged")),
        init=bool(host.get("Init")),
        network_mode=str(host.get("NetworkMode") or ""),
        binds=tuple(map(str, _list(host.get("Binds")))),
        log_type=str(log_config.get("Type") or ""),
        log_options=_str_map(log_config.get("Config")),
        ipc_mode=str(host.get("IpcMode") or ""),
        runtime=str(host.get("Runtime") or ""),
    )


def _container_inspect(info: dict[str, Any]) -> ContainerRecord:
    """A container as GET /containers/{id}/json describes it."""
    state = _dict(info.get("State"))
    config = _dict(info.get("Config"))
    ports = []
    for key, bindings in _dict(_dict(info.get("NetworkSettings")).get("Ports")).items():
        port, _, protocol = str(key).partition("/")
        for binding in _dicts(bindings):
            if port.isdigit() and str(binding.get("HostPort") or "").isdigit():
                ports.append(
                    PortBinding(
                        container_port=int(port),
                        host_ip=str(binding.get("HostIp") or ""),
                        host_port=int(binding["HostPort"]),
                        protocol=protocol or "tcp",
                    )
                )
    created = docker_time(info.get("Created"))
    pid = _int(state.get("Pid"))
    exit_code = state.get("ExitCode")
    return ContainerRecord(
        id=str(info.get("Id") or ""),
        name=str(info.get("Name") or "/?").lstrip("/"),
        labels=_str_map(config.get("Labels")),
        state=str(state.get("Status") or "unknown"),
        image=str(config.get("Image") or ""),
        image_id=str(info.get("Image") or ""),
        created=created.timestamp() if created else 0.0,
        ports=tuple(ports),
        networks=_endpoints(info.get("NetworkSettings")),
        mounts=_mounts(info.get("Mounts")),
        inspected=True,
        status=str(state.get("Status") or ""),
        started_at=docker_time(state.get("StartedAt")),
        finished_at=docker_time(state.get("FinishedAt")),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
        oom_killed=bool(state.get("OOMKilled")),
        pid=pid or None,
        user=str(config.get("User") or ""),
        command=tuple(map(str, _list(config.get("Cmd")))),
        open_stdin=bool(config.get("OpenStdin")),
        host=_host_config(_dict(info.get("HostConfig"))),
    )


def _volume(item: dict[str, Any]) -> VolumeRecord:
    created = docker_time(item.get("CreatedAt"))
    return VolumeRecord(
        name=str(item.get("Name") or ""),
        labels=_str_map(item.get("Labels")),
        options=_str_map(item.get("Options")),
        mountpoint=str(item.get("Mountpoint") or ""),
        created=created.timestamp() if created else None,
    )


def _network(item: dict[str, Any]) -> NetworkRecord:
    return NetworkRecord(
        id=str(item.get("Id") or ""),
        name=str(item.get("Name") or ""),
        labels=_str_map(item.get("Labels")),
        containers=tuple(_dict(item.get("Containers"))),
    )


def _image(item: dict[str, Any]) -> ImageRecord:
    config = _dict(item.get("Config"))
    pairs = [str(pair) for pair in _list(config.get("Env"))]
    return ImageRecord(
        id=str(item.get("Id") or ""),
        labels=_str_map(config.get("Labels")),
        env=MappingProxyType(dict(pair.split("=", 1) for pair in pairs if "=" in pair)),
    )


def _usage(stats: dict[str, Any]) -> UsageSample:
    memory = _dict(stats.get("memory_stats"))
    details = _dict(memory.get("stats"))
    cache = _int(details.get("total_inactive_file")) or _int(details.get("inactive_file"))
    pids = _dict(stats.get("pids_stats")).get("current")
    return UsageSample(
        cpu_seconds=_int(_dict(_dict(stats.get("cpu_stats")).get("cpu_usage")).get("total_usage")) / 1e9,
        memory_bytes=max(0, _int(memory.get("usage")) - cache),
        pids=pids if isinstance(pids, int) else None,
    )


def _read_number(path: str, key: str | None = None) -> int | None:
    try:
        with open(path) as handle:
            if key is None:
                return int(handle.read().split()[0])
            for line in handle:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_usage(pid: int) -> UsageSample | None:
    """CPU, memory and pids of the cgroup that `pid` belongs to (cgroup v1 or v2), or None."""
    try:
        with open(f"/proc/{int(pid)}/cgroup") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") or [""]:
            paths[controller] = path
    root = "/sys/fs/cgroup"
    if "memory" in paths:  # v1: one hierarchy per controller
        memory = _read_number(f"{root}/memory{paths['memory']}/memory.usage_in_bytes")
        inactive = _read_number(f"{root}/memory{paths['memory']}/memory.stat", "total_inactive_file") or 0
        cpu = _read_number(f"{root}/cpuacct{paths.get('cpuacct', paths.get('cpu,cpuacct', ''))}/cpuacct.usage")
        pids = _read_number(f"{root}/pids{paths.get('pids', '')}/pids.current")
        cpu_seconds = None if cpu is None else cpu / 1e9
    elif "" in paths:  # v2: one unified hierarchy
        base = f"{root}{paths['']}"
        memory = _read_number(f"{base}/memory.current")
        inactive = _read_number(f"{base}/memory.stat", "inactive_file") or 0
        usec = _read_number(f"{base}/cpu.stat", "usage_usec")
        pids = _read_number(f"{base}/pids.current")
        cpu_seconds = None if usec is None else usec / 1e6
    else:
        return None
    if memory is None or pids is None or cpu_seconds is None:
        return None
    return UsageSample(cpu_seconds=cpu_seconds, memory_bytes=max(0, memory - inactive), pids=pids)


def tar_bytes(
    files: dict[str, tuple[bytes, int]],
    dirs: dict[str, tuple[int, int, int]] | None = None,
    owners: dict[str, int | tuple[int, int]] | None = None,
) -> bytes:
    """A plain (uncompressed) tar: files as {path: (data, mode)}, dirs as {path: (mode, uid, gid)}.

    Files belong to root unless `owners` names another uid (and the same gid), or a (uid, gid), for them.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, (mode, duid, dgid) in (dirs or {}).items():
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, duid, dgid
            archive.addfile(info)
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            owner = (owners or {}).get(path, 0)
            uid, gid = owner if isinstance(owner, tuple) else (owner, owner)
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
