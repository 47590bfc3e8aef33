"""Every call to the Docker Engine lives here.

The rest of the code asks for what it wants (a hardened container, a labelled volume, an image
built from a context) and gets plain data back, or a `DockerUnavailable` / `SandboxError` whose
message a person can act on.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Callable

import docker.errors
from docker.types import LogConfig, Ulimit

import docker

log = logging.getLogger(__name__)


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

    def __init__(self, timeout: float = 60) -> None:
        try:
            self.client = docker.from_env(timeout=timeout)
            self.client.ping()
        except Exception as exc:  # the SDK raises many kinds for an absent engine
            raise DockerUnavailable(
                f"Docker is not reachable ({_describe_engine()}): {exc}. "
                "Start the Docker engine (or run scripts/ensure-docker.sh as root) and try again."
            ) from None
        self.api = self.client.api

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

    def remove_network_if_unused(self, name: str) -> bool:
        """Remove the network when no container is on it, stopped ones included: the network's own
        list names running containers only, and a kept sandbox stopped on it must start again."""
        for network in self._networks(name):
            try:
                network.reload()
                if network.attrs.get("Containers") or self.api.containers(all=True, filters={"network": [network.id]}):
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
                    {network: self.api.create_endpoint_config(aliases=[alias])}
                )
                if alias
                else None,
            )
        except docker.errors.APIError as exc:
            raise SandboxError(f"Docker refused to create the sandbox: {exc.explanation or exc}") from None
        return created["Id"]

    def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        if not self.api.put_archive(container_id, path, data):
            raise SandboxError(f"could not copy files into the sandbox at {path}")

    def path_stat(self, container_id: str, path: str) -> dict[str, Any] | None:
        """Owner, mode, type and link target of one path in a container (running or not), from the
        first header of the engine's archive of it; None when it does not exist. Only that header is
        read: the rest of the stream (a directory's whole tree) is dropped unread."""
        try:
            response = self.api._get(
                self.api._url("/containers/{0}/archive", container_id),
                params={"path": path},
                stream=True,
                headers={"Accept-Encoding": "identity"},
            )
            self.api._raise_for_status(response)
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
        return {
            "uid": entry.uid,
            "gid": entry.gid,
            "mode": entry.mode & 0o7777,
            "type": kinds.get(entry.type, "other"),
            "link": entry.linkname,
        }

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
            response = self.api._post_json(self.api._url("/containers/{0}/update", container_id), data=body)
            self.api._raise_for_status(response)
        except docker.errors.APIError as exc:
            raise SandboxError(f"Docker could not change the limits: {exc.explanation or exc}") from None

    def usage(self, container_id: str) -> dict[str, Any]:
        """One sample of the container's CPU time, memory and pids.

        Read from the container's cgroup on this host when it can be (instant); otherwise from
        Docker's stats API, which waits for the daemon's next one-second sample.
        """
        info = self.inspect(container_id) or {}
        pid = (info.get("State") or {}).get("Pid")
        sample = cgroup_usage(pid) if pid else None
        if sample is not None:
            return sample
        try:
            stats = self.api.stats(container_id, stream=False, one_shot=True)
        except docker.errors.APIError:
            return {}
        memory = stats.get("memory_stats") or {}
        details = memory.get("stats") or {}
        cache = details.get("total_inactive_file") or details.get("inactive_file") or 0
        return {
            "cpu_seconds": ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0) / 1e9,
            "memory_bytes": max(0, int(memory.get("usage") or 0) - int(cache)),
            "pids": (stats.get("pids_stats") or {}).get("current"),
        }

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            return self.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None

    def list_containers(
        self, labels: dict[str, str] | None = None, label_keys: Iterable[str] = (), name: str | None = None
    ) -> list[dict[str, Any]]:
        """Containers with these labels; `name` is a regular expression Docker matches against names."""
        filters: dict[str, Any] = {"label": [f"{k}={v}" for k, v in (labels or {}).items()] + list(label_keys)}
        if name:
            filters["name"] = [name]
        return self.api.containers(all=True, filters=filters)

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
        try:
            self.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise SandboxError(f"could not remove the sandbox container: {exc.explanation or exc}") from None

    def events(self, container_id: str) -> Iterator[dict[str, Any]]:
        """Die/oom/destroy events of one container, as they happen (blocking generator)."""
        return self.client.events(
            decode=True,
            filters={"container": container_id, "type": "container", "event": ["die", "oom", "destroy", "stop"]},
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

    def volume(self, name: str) -> dict[str, Any] | None:
        """A volume's description (Options, Mountpoint, Labels), or None when there is none."""
        try:
            return self.api.inspect_volume(name)
        except docker.errors.NotFound:
            return None

    def list_volumes(self, label_keys: Iterable[str]) -> list[str]:
        volumes = self.api.volumes(filters={"label": list(label_keys)}).get("Volumes") or []
        return [volume["Name"] for volume in volumes]

    def volumes_with_labels(self, label_keys: Iterable[str]) -> list[tuple[str, dict[str, str], float | None]]:
        """(name, labels, creation time as a Unix timestamp or None) of volumes with these labels."""
        found = []
        for volume in self.api.volumes(filters={"label": list(label_keys)}).get("Volumes") or []:
            created = None
            stamp = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(Z|[+-]\d\d:\d\d)?", volume.get("CreatedAt") or "")
            if stamp:
                zone = stamp.group(2) or "Z"
                created = datetime.fromisoformat(stamp.group(1) + ("+00:00" if zone == "Z" else zone)).timestamp()
            found.append((volume["Name"], volume.get("Labels") or {}, created))
        return found

    def remove_volume(self, name: str) -> None:
        try:
            self.api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not remove the volume {name}: {exc.explanation or exc}") from None

    def list_networks(self, label_keys: Iterable[str]) -> list[str]:
        return [n["Name"] for n in self.api.networks(filters={"label": list(label_keys)})]

    # -- images -----------------------------------------------------------------------------

    def image_labels(self, image: str) -> dict[str, str] | None:
        """The labels of a local image, or None when it is not here."""
        try:
            attrs = self.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            return None
        return (attrs.get("Config") or {}).get("Labels") or {}

    def image_env(self, image: str) -> dict[str, str]:
        """The environment an image sets (its ENV lines); {} when it is not here."""
        try:
            attrs = self.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            return {}
        pairs = (attrs.get("Config") or {}).get("Env") or []
        return dict(pair.split("=", 1) for pair in pairs if "=" in pair)

    def image_id(self, image: str) -> str | None:
        try:
            return self.api.inspect_image(image)["Id"]
        except docker.errors.ImageNotFound:
            return None

    def pull(self, image: str) -> None:
        repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        try:
            self.api.pull(repository, tag=tag or "latest")
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not pull {image}: {exc.explanation or exc}") from None

    def import_image(self, tar_stream: io.RawIOBase, repository: str, tag: str) -> None:
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


def cgroup_usage(pid: int) -> dict[str, Any] | None:
    """CPU, memory and pids of the cgroup that `pid` belongs to (cgroup v1 or v2), or None."""
    try:
        with open(f"/proc/{int(pid)}/cgroup") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    paths = {}
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
    return {"cpu_seconds": cpu_seconds, "memory_bytes": max(0, memory - inactive), "pids": pids}


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
