"""Three Docker engines as the nodes of one swarm, on this machine, for tests/test_swarm.py and
benchmarks/swarm.py.

Each node is a privileged container of an engine image bootstrapped from Debian packages
(docker/engine-node/), on a bridge network made for it; the host reaches the nodes' engines on their
addresses on that network, and nothing else. A node's image store is a labelled volume kept between
runs (`jupyter-sandbox-swarm-node-<n>`), so the sandbox image is loaded into it once, not per run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
from filelock import FileLock

import docker
from jupyter_sandbox.sandbox.image import _apt_sources_file, _debian_suite

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "docker" / "engine-node"
NODE_REPOSITORY = "jupyter-sandbox/engine-node"
# Labels of what this module leaves on the host's engine on purpose: the node image and the nodes'
# image stores (reused by the next run). Everything else it makes is removed at the end.
CACHE_LABEL = "io.jupyter-sandbox.test-cache"
STORE_VOLUME = "jupyter-sandbox-swarm-node-{index}"
NODE_LABEL = "io.jupyter-sandbox.test-swarm"
ENGINE_PORT = 2375


def _log(message: str) -> None:
    print(f"[swarm] {message}", file=sys.stderr, flush=True)


def node_image_tag() -> str:
    """The node image's tag: a hash of its packages, its entry script and the apt sources used."""
    digest = hashlib.sha256()
    for path in sorted(NODE_DIR.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    sources = _apt_sources_file()
    if sources:
        digest.update(Path(sources).read_bytes())
    return f"{NODE_REPOSITORY}:{digest.hexdigest()[:12]}"


def build_node_image(client: docker.DockerClient) -> str:
    """The engine node's image, bootstrapped with mmdebstrap from Debian packages and `docker import`ed
    (no registry is needed); built once per content hash."""
    tag = node_image_tag()
    with FileLock(str(Path(tempfile.gettempdir()) / "jupyter-sandbox-engine-node.lock")):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(tag)
            return tag
        packages = [
            line.strip()
            for line in (NODE_DIR / "packages.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        command = [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            f"--customize-hook=copy-in {NODE_DIR / 'engine-node'} /usr/local/bin",
            "--format=tar",
            _debian_suite(),
            "-",
        ]
        sources = _apt_sources_file()
        if sources:
            command.append(sources)
        _log(f"bootstrapping the engine node image {tag} with mmdebstrap (about a minute)")
        repository, _, version = tag.partition(":")
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            client.api.import_image_from_data(
                proc.stdout.read(),
                repository=repository,
                tag=version,
                changes=[
                    'CMD ["/usr/local/bin/engine-node"]',
                    "VOLUME /var/lib/docker",
                    f"LABEL {CACHE_LABEL}=engine-node",
                ],
            )
            _, stderr = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"mmdebstrap failed: {stderr.decode(errors='replace')[-2000:]}")
        return tag


@dataclass
class Node:
    index: int
    container: str
    address: str

    @property
    def engine_url(self) -> str:
        return f"tcp://{self.address}:{ENGINE_PORT}"

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.engine_url, timeout=timeout)


@dataclass
class Swarm:
    """Nodes of one swarm; nodes[0] is its manager."""

    network: str
    nodes: list[Node] = field(default_factory=list)
    node_image: str = ""
    host: docker.DockerClient = field(default_factory=docker.from_env)

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def node_of(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.client().info()["Swarm"]["NodeID"] == node_id:
                return node
        raise KeyError(node_id)

    def endpoints(self) -> dict[str, str]:
        """{node hostname: engine URL}, what SwarmBackend.node_engines takes."""
        return {f"node{node.index}": node.engine_url for node in self.nodes}

    def kill(self, node: Node) -> None:
        """The node's machine is gone at once: its engine and everything on it."""
        self.host.api.kill(node.container)


_CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]


def _missing_capabilities() -> list[str]:
    """Capabilities outside this process's bounding set (a container cannot be given them)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            bits = int(line.split()[1], 16)
            return [name for bit, name in enumerate(_CAPABILITIES) if not bits >> bit & 1]
    return []


def _wait_engine(node: Node, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            node.client(timeout=5).ping()
            return
        except Exception:
            if time.monotonic() > deadline:
                logs = subprocess.run(
                    ["docker", "logs", "--tail", "30", node.container], capture_output=True, text=True
                )
                raise RuntimeError(f"node {node.index}'s engine did not come up: {logs.stdout}{logs.stderr}") from None
            time.sleep(0.3)


def _load_image(host: docker.DockerClient, nodes: list[Node], image: str) -> None:
    """The sandbox image on every node whose store does not hold it yet (by id)."""
    wanted = host.images.get(image).id
    missing = []
    for node in nodes:
        try:
            have = node.client().images.get(image).id
        except docker.errors.ImageNotFound:
            have = None
        if have != wanted:
            missing.append(node)
    if not missing:
        return
    _log(f"loading {image} into nodes {[n.index for n in missing]} (once; their stores are kept)")
    # One `docker save` streamed into each node's `docker load`, the stores then keep it.
    for node in missing:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "--host", node.engine_url, "load", "--quiet"],
            stdin=save.stdout,
            capture_output=True,
            timeout=600,
        )
        save.wait(timeout=60)
        if load.returncode != 0:
            raise RuntimeError(f"could not load {image} into node {node.index}: {load.stderr!r}")


def _clean_node(node: Node) -> None:
    """A node's engine is the test's alone: what a crashed earlier run left on it goes."""
    client = node.client()
    for container in client.containers.list(all=True):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    for volume in client.volumes.list():
        with contextlib.suppress(docker.errors.APIError):
            volume.remove(force=True)


@contextlib.contextmanager
def swarm_cluster(image: str, count: int = 3) -> Iterator[Swarm]:
    """`count` engines in containers on a bridge network of their own, joined into one swarm, each
    with `image` loaded; all removed at the end but the nodes' image stores."""
    host = docker.from_env(timeout=120)
    tag = build_node_image(host)
    suffix = secrets.token_hex(3)
    network = f"jsb-swarm-{suffix}"
    host.networks.create(network, driver="bridge", labels={NODE_LABEL: suffix})
    swarm = Swarm(network=network, host=host)
    # Stores are shared between runs, not between two runs at once.
    lock = FileLock(str(Path(tempfile.gettempdir()) / "jupyter-sandbox-swarm-nodes.lock"))
    lock.acquire(timeout=1800)
    try:
        for index in range(count):
            volume = STORE_VOLUME.format(index=index)
            try:
                host.volumes.get(volume)
            except docker.errors.NotFound:
                host.volumes.create(volume, labels={CACHE_LABEL: "swarm-node-store"})
            container = host.containers.run(
                tag,
                name=f"jsb-swarm-{suffix}-node{index}",
                hostname=f"node{index}",
                detach=True,
                # All the capabilities this machine grants (privileged=True asks for some it may not),
                # no seccomp or AppArmor profile and every device: what an engine needs to run.
                cap_add=["ALL"],
                cap_drop=_missing_capabilities(),
                security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                device_cgroup_rules=["a *:* rwm"],
                network=network,
                labels={NODE_LABEL: suffix},
                volumes={volume: {"bind": "/var/lib/docker", "mode": "rw"}},
                tmpfs={"/run": "", "/tmp": ""},
            )
            container.reload()
            address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
            swarm.nodes.append(Node(index, str(container.id), address))
        for node in swarm.nodes:
            _wait_engine(node)
            _clean_node(node)
        manager = swarm.manager.client()
        # A one-second heartbeat: a killed node is known down in seconds, not half a minute.
        manager.swarm.init(
            advertise_addr=swarm.manager.address,
            listen_addr=f"{swarm.manager.address}:2377",
            dispatcher_heartbeat_period=1_000_000_000,
        )
        manager.swarm.reload()
        worker_token = manager.swarm.attrs["JoinTokens"]["Worker"]
        for node in swarm.nodes[1:]:
            node.client().swarm.join(
                remote_addrs=[f"{swarm.manager.address}:2377"],
                join_token=worker_token,
                advertise_addr=node.address,
                listen_addr=f"{node.address}:2377",
            )
        _load_image(host, swarm.nodes, image)
        _load_image(host, swarm.nodes, tag)  # the egress helper's image (iptables), see SwarmBackend
        swarm.node_image = tag
        deadline = time.monotonic() + 60
        while sum(1 for n in manager.nodes.list() if n.attrs["Status"]["State"] == "ready") < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the swarm's nodes did not all become ready")
            time.sleep(0.3)
        yield swarm
    finally:
        for node in swarm.nodes:
            with contextlib.suppress(docker.errors.APIError):
                host.api.remove_container(node.container, force=True, v=False)
        with contextlib.suppress(docker.errors.APIError):
            host.networks.get(network).remove()
        lock.release()


if __name__ == "__main__":  # a quick look by hand: python tests/swarm_support.py
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    started = time.monotonic()
    import json
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with swarm_cluster(sys.argv[1] if len(sys.argv) > 1 else "jupyter-sandbox/python:0.1.0") as cluster:
        print("up after", round(time.monotonic() - started, 1), "s:", cluster.endpoints())
        for n in cluster.manager.client().nodes.list():
            print(n.attrs["Description"]["Hostname"], n.attrs["Spec"]["Role"], n.attrs["Status"]["State"])
        if "--hold" in sys.argv:  # keep it up for trying things by hand, until SIGTERM
            Path("/tmp/jupyter-sandbox-swarm.json").write_text(
                json.dumps(
                    {
                        "endpoints": cluster.endpoints(),
                        "manager": cluster.manager.engine_url,
                        "node_image": cluster.node_image,
                        "containers": [n.container for n in cluster.nodes],
                    }
                )
            )
            while True:
                time.sleep(3600)
