"""A Backend that places sandboxes on the nodes of a Docker Swarm.

A sandbox is a swarm service of one task; the swarm's scheduler chooses its node from the resources
it reserves and the operator's constraints and placement preferences. What the manager asks of "the
container" goes to the engine of the node that runs the task (the operator lists the nodes' engine
endpoints in `SwarmBackend.node_engines`): archives in, the start gate, stats, events, limits.

How the hardening of a local sandbox is kept on a node (Docker 20.10's service API):
- read-only root, tmpfs sizes, the user, init, cap drop ALL, ulimits and the pids limit are fields
  of the service's container spec and are set there;
- no-new-privileges is not: the task's command first sets it on itself (prctl) and exits when it
  cannot, before anything else runs (`PRELUDE`);
- the task's command then waits, before the agent is even imported, until the host has put the
  agent's files in (the files gate): a task the swarm started on its own (a node drained, say) never
  runs anything of the sandbox's;
- the egress policy is put into the task's network namespace on its node, by a short-lived helper
  container of `enforcer_image` sharing that namespace, before the agent's own start gate opens.

Homes are volumes on the node that runs the sandbox. A sandbox is pinned to the node of its first
placement when it stops; a task that is (or would be) anywhere else is reported `lost` with the reason,
never started on an empty home. The files of a node that is drained or lost stay on that node.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import IO, Any, Callable

import docker.errors
from traitlets import Dict, Float, List, Unicode
from traitlets.config import Configurable

import docker

from .. import errors, network
from ..docker_backend import ContainerEvents, DockerBackend, SandboxError, _usage, tar_bytes
from ..records import (
    ContainerRecord,
    ImageRecord,
    PathStat,
    PortBinding,
    UsageSample,
    VolumeRecord,
)

log = logging.getLogger(__name__)

LABEL_PREFIX = "io.jupyter-sandbox."
# On the service (not its tasks): the sandbox's name (binding.py; services cannot be renamed), the
# node that holds its home, and the task whose files gate the host has opened.
LABEL_NAME = f"{LABEL_PREFIX}name"
LABEL_HOME_NODE = f"{LABEL_PREFIX}swarm.home-node"
LABEL_RELEASED = f"{LABEL_PREFIX}swarm.released"
LABEL_SWARM = f"{LABEL_PREFIX}swarm"

FILES_LINE = b"files\n"
# Runs first in the task's interpreter (-I -c): no-new-privileges on itself, then the files gate.
PRELUDE = (
    "import ctypes as _c, os as _o\n"
    "if _c.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:\n"
    "    raise SystemExit('sandbox: no-new-privileges could not be set')\n"
    "_l = b''\n"
    "while not _l.endswith(b'\\n') and len(_l) < 16:\n"
    "    _b = _o.read(0, 1)\n"
    "    if not _b:\n"
    "        raise SystemExit('sandbox: the files gate was not opened')\n"
    "    _l += _b\n"
    f"if _l != {FILES_LINE!r}:\n"
    "    raise SystemExit('sandbox: the files gate was not opened')\n"
    "del _c, _o, _l\n"
)
# The helper that puts an egress policy into a task's namespace (a fixed script, no input in it).
ENFORCE_SCRIPT = (
    "iptables-restore -w < /rules/v4 && { ip6tables-restore -w < /rules/v6 || ! grep -qv ' lo$' /proc/net/if_inet6; }"
)
RUNNING_STATES = {"running"}
STARTING_STATES = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}


class SandboxLost(SandboxError, errors.Conflict):
    """The sandbox cannot run where its files are (its node is drained, down or gone): a 409 whose
    message says which node and why."""


class SwarmBackend(Configurable):
    """Sandboxes as one-task services of a Docker Swarm (see the module's docstring)."""

    manager_url = Unicode(
        "",
        config=True,
        help="Engine URL of a swarm manager (tcp://host:2376 with TLS, unix://...); '' for DOCKER_HOST or "
        "the local socket.",
    )
    node_engines = Dict(
        value_trait=Unicode(),
        config=True,
        help="{node hostname: engine URL} of every node that may run sandboxes. Archives, the start gate, "
        "stats, events and egress rules go to the engine of the node that runs the sandbox.",
    )
    constraints = List(
        Unicode(),
        config=True,
        help="Placement constraints of every sandbox, in swarm syntax, e.g. ['node.labels.sandboxes==yes', "
        "'node.role==worker'].",
    )
    placement_preferences = List(
        Unicode(),
        config=True,
        help="Placement preferences, e.g. ['spread=node.labels.zone'].",
    )
    reserve_fraction = Float(
        1.0,
        config=True,
        help="What a sandbox reserves on its node, as a fraction of its CPU and memory limits (the "
        "scheduler places by reservations; 1.0 never overcommits).",
    )
    enforcer_image = Unicode(
        "",
        config=True,
        help="An image present on every node with iptables-restore and ip6tables-restore; a short-lived "
        "container of it puts each sandbox's egress policy into the sandbox's network namespace on its node. "
        "Required unless SandboxManager.enforce_egress is off.",
    )
    start_timeout = Float(90.0, config=True, help="Seconds a sandbox's task may take to be placed and running.")
    out_of_reach_seconds = Float(
        15.0,
        config=True,
        help="Seconds a node whose engine did not answer is taken as out of reach without asking it again "
        "(a dead machine's address takes seconds to fail, which every call would wait for otherwise).",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.manager_url:
            client = docker.DockerClient(base_url=self.manager_url, timeout=60)
        else:
            client = docker.from_env(timeout=60)
        self.manager = DockerBackend(client=client)
        self.api = self.manager.api
        self._nodes: dict[str, DockerBackend] = {}
        self._pending_volumes: dict[str, dict[str, str]] = {}
        self._removed_homes: dict[str, str] = {}  # home volume -> its node, for a service just removed
        self._lock = threading.Lock()
        self._out_of_reach: dict[str, float] = {}  # hostname -> when its engine last failed to answer

    # -- nodes -----------------------------------------------------------------------------

    def on_this_machine(self) -> bool:
        return False  # sandboxes run on other machines: no host paths, loop devices or cgroups of theirs

    def _node_names(self) -> dict[str, dict[str, Any]]:
        """{node id: {'hostname', 'addr', 'state', 'availability'}} as the swarm sees its nodes now."""
        nodes = {}
        for item in self.api.nodes():
            status = item.get("Status") or {}
            nodes[str(item.get("ID"))] = {
                "hostname": str((item.get("Description") or {}).get("Hostname") or ""),
                "addr": str(status.get("Addr") or ""),
                "state": str(status.get("State") or "unknown"),
                "availability": str((item.get("Spec") or {}).get("Availability") or ""),
            }
        return nodes

    def _recently_out_of_reach(self, hostname: str) -> bool:
        seen = self._out_of_reach.get(hostname)
        return seen is not None and time.monotonic() - seen < self.out_of_reach_seconds

    def _answers(self, hostname: str) -> DockerBackend | None:
        """The node's engine if it answers a ping now; None (remembered for out_of_reach_seconds) if not."""
        if self._recently_out_of_reach(hostname):
            return None
        try:
            engine = self._node_engine(hostname)
            engine.client.ping()
        except Exception as exc:  # unreachable in any way
            log.warning("swarm node %s is out of reach: %s", hostname, exc)
            self._out_of_reach[hostname] = time.monotonic()
            return None
        self._out_of_reach.pop(hostname, None)
        return engine

    def _node_engine(self, hostname: str) -> DockerBackend:
        with self._lock:
            engine = self._nodes.get(hostname)
            if engine is None:
                url = self.node_engines.get(hostname)
                if not url:
                    raise SandboxError(
                        f"the swarm node {hostname!r} has no engine endpoint in SwarmBackend.node_engines; add it"
                    )
                try:
                    engine = DockerBackend(client=docker.DockerClient(base_url=url, timeout=60))
                except Exception as exc:  # any failure to reach it: the node does not answer
                    raise SandboxError(f"the engine of the swarm node {hostname} does not answer: {exc}") from None
                self._nodes[hostname] = engine
            return engine

    def _address_of(self, hostname: str) -> str:
        url = self.node_engines.get(hostname, "")
        match = re.match(r"^(?:tcp|https?)://\[?([^\]/]+?)\]?:\d+", url)
        return match.group(1) if match else ""

    # -- services --------------------------------------------------------------------------

    def _service(self, ref: str) -> dict[str, Any] | None:
        """A sandbox's service by its id, its service name or its sandbox name."""
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            found = self.api.inspect_service(ref)
            if LABEL_SWARM in ((found.get("Spec") or {}).get("Labels") or {}):
                return found
        for item in self.api.services(filters={"label": [f"{LABEL_NAME}={ref}"]}):
            return item
        return None

    def _tasks(self, service_id: str) -> list[dict[str, Any]]:
        try:
            return self.api.tasks(filters={"service": service_id})
        except docker.errors.NotFound:
            return []  # the service is gone

    def _current_task(self, service: dict[str, Any]) -> dict[str, Any] | None:
        """The task the swarm wants running now (the newest whose desired state is running)."""
        tasks = [t for t in self._tasks(service["ID"]) if t.get("DesiredState") == "running"]
        tasks.sort(key=lambda t: str(t.get("CreatedAt") or ""))
        return tasks[-1] if tasks else None

    def _replicas(self, service: dict[str, Any]) -> int:
        return int((((service.get("Spec") or {}).get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)

    def _task_container(self, task: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
        """(node hostname, container id) of a running task."""
        container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        node = nodes.get(str(task.get("NodeID") or ""), {})
        if not container or not node:
            return None
        return node["hostname"], str(container)

    def _state(self, service: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> tuple[str, str, str, dict | None]:
        """(state, reason, node hostname, task) of a sandbox's service, in the manager's words."""
        labels = (service.get("Spec") or {}).get("Labels") or {}
        home = labels.get(LABEL_HOME_NODE, "")
        home_node = next((n for n in nodes.values() if n["hostname"] == home), None)
        if home and home_node is None:
            return "lost", f"its files were on the node {home}, which has left the swarm", home, None
        if home_node is not None and home_node["state"] != "ready":
            return "lost", f"its files are on the node {home}, which is {home_node['state']}", home, None
        if home_node is not None and home_node["availability"] == "drain":
            return "lost", f"its files are on the node {home}, which is drained", home, None
        if self._replicas(service) == 0:
            return "exited", "", home, None
        task = self._current_task(service)
        if task is None:
            return "exited", "", home, None
        node = nodes.get(str(task.get("NodeID") or ""), {})
        hostname = node.get("hostname", "")
        if home and hostname and hostname != home:
            return "lost", f"its files are on the node {home}; the swarm placed it on {hostname} instead", home, task
        state = str((task.get("Status") or {}).get("State") or "")
        if state in RUNNING_STATES:
            released = labels.get(LABEL_RELEASED) == str(task.get("ID"))
            return ("running" if released else "created"), "", hostname, task
        if state in STARTING_STATES:
            message = ""
            failure = str((task.get("Status") or {}).get("Err") or "")
            if state == "pending" and failure:  # e.g. "no suitable node (...)"; a bare Message is routine
                message = failure
                return "lost", f"the swarm cannot place it: {message}", hostname or home, task
            return "created", "", hostname, task
        return "exited", str((task.get("Status") or {}).get("Err") or ""), hostname, task

    def _update(self, service: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
        """Change a service's spec at the version read (a concurrent change makes this fail)."""
        spec = service["Spec"]
        change(spec)
        task_template = spec.get("TaskTemplate")
        self.api.update_service(
            service["ID"],
            version=int(service["Version"]["Index"]),
            task_template=task_template,
            name=spec.get("Name"),
            labels=spec.get("Labels"),
            mode=spec.get("Mode"),
            networks=task_template.get("Networks"),
            endpoint_spec=spec.get("EndpointSpec"),
            fetch_current_spec=False,
        )

    def _running(self, ref: str, bring_up: bool = True) -> tuple[dict[str, Any], str, str, DockerBackend]:
        """(service, node hostname, container id, node engine) of a sandbox whose task runs; with
        `bring_up`, a stopped one is started on its home node first."""
        service = self._service(ref)
        if service is None:
            raise SandboxError(f"there is no sandbox {ref!r}")
        state, reason, _, _ = self._state(service, self._node_names())
        if state == "lost":  # before a new task is asked for: it could only wait, unplaceable
            raise SandboxLost(
                f"sandbox {(service['Spec'].get('Labels') or {}).get(f'{LABEL_PREFIX}id', ref)} cannot run: "
                f"{reason}. Its files stay on that node; make the node active again "
                "(docker node update --availability active) to start it, or delete the sandbox"
            )
        if self._replicas(service) == 0 or self._current_task(service) is None:
            if not bring_up:
                raise SandboxError(f"sandbox {ref} is not running")
            # A new task, on the home node: its old one ended (a stop, a drain, its process) and the
            # swarm starts none by itself (restart condition none).
            home = ((service.get("Spec") or {}).get("Labels") or {}).get(LABEL_HOME_NODE, "")

            def bring(spec: dict[str, Any]) -> None:
                spec["Mode"]["Replicated"]["Replicas"] = 1
                _pin(spec, home)
                template = spec["TaskTemplate"]
                template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1

            self._update(service, bring)
        deadline = time.monotonic() + self.start_timeout
        while True:
            service = self._service(ref) or service
            nodes = self._node_names()
            state, reason, _, task = self._state(service, nodes)
            sandbox = ((service.get("Spec") or {}).get("Labels") or {}).get(f"{LABEL_PREFIX}id", ref)
            if state == "lost":
                raise SandboxLost(
                    f"sandbox {sandbox} cannot run: {reason}. Its files stay on that node; make the node active "
                    "again (docker node update --availability active) to start it, or delete the sandbox"
                )
            if task is not None and (task.get("Status") or {}).get("State") in RUNNING_STATES:
                where = self._task_container(task, nodes)
                if where is not None:
                    engine = self._answers(where[0])
                    if engine is None:
                        raise SandboxLost(
                            f"sandbox {sandbox} cannot be reached: its node {where[0]} does not answer; its files "
                            "are on that node"
                        )
                    return service, where[0], where[1], engine
            if state == "exited" and task is None and self._replicas(service) > 0 and time.monotonic() > deadline:
                raise SandboxError(f"sandbox {sandbox}: its task ended ({reason or 'no reason given'})")
            if time.monotonic() > deadline:
                raise SandboxError(f"sandbox {sandbox} was not running on a node within {self.start_timeout:.0f} s")
            time.sleep(0.2)

    # -- networks --------------------------------------------------------------------------

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """A swarm-scoped bridge network: on each node a local bridge whose containers cannot talk to
        each other, as for a local sandbox."""
        if any(n.get("Name") == name for n in self.api.networks(names=[name])):
            return
        try:
            self.api.create_network(
                name,
                driver="bridge",
                scope="swarm",
                labels=labels,
                options={"com.docker.network.bridge.enable_icc": "false"},
                check_duplicate=True,
            )
        except docker.errors.APIError as exc:
            if not any(n.get("Name") == name for n in self.api.networks(names=[name])):
                raise SandboxError(f"could not create the sandbox network {name}: {exc.explanation or exc}") from None

    def network_gateway(self, name: str) -> str | None:
        return None  # the egress gateway (domain lists) runs on the manager's machine only

    def remove_network_if_unused(self, name: str) -> bool:
        for item in self.api.networks(names=[name]):
            if item.get("Name") != name:
                continue
            try:
                self.api.remove_network(item["Id"])
            except docker.errors.APIError:
                return False  # a service still uses it
        return True

    def list_networks(self, label_keys: Iterable[str]) -> list[str]:
        return self.manager.list_networks(label_keys)

    # -- sandboxes ("containers") ----------------------------------------------------------

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
        """A service of one task with the sandbox's hardening; its task starts at once and waits at
        its files gate. Only the first of `ports` (the agent's) is published, on its node: the
        kernel's channels are reached through the agent."""
        if runtime:
            raise SandboxError(
                f"swarm services cannot choose a runtime ({runtime}); make it the default runtime of the nodes "
                "that should run sandboxes and constrain sandboxes to them"
            )
        if self.manager.image(image) is None:
            raise SandboxError(
                f"the image {image!r} is not on the swarm manager's engine; load it on every node that may run "
                "sandboxes (no registry is assumed)"
            )
        if len(command) != 4 or command[1:3] != ["-I", "-c"]:
            raise SandboxError("the sandbox's command is not the agent's; the swarm backend cannot gate it")
        service_name = alias or hostname or name
        # A sandbox made again (a hard restart, a new image or limits) keeps its home volume, which is
        # on one node only: its new task goes there, never to a node that would give it an empty home.
        home = self._node_holding(volume)
        mounts: list[dict[str, Any]] = [
            {
                "Type": "volume",
                "Source": volume,
                "Target": mount_point,
                "VolumeOptions": {"Labels": dict(self._pending_volumes.get(volume, {}))},
            },
        ]
        for path in private_dirs:
            mounts.append({"Type": "volume", "Target": path})
        for path, options in (tmpfs or {}).items():
            size = re.search(r"(?:^|,)size=(\d+)", options)
            mode = re.search(r"(?:^|,)mode=([0-7]+)", options)
            mounts.append(
                {
                    "Type": "tmpfs",
                    "Target": path,
                    "TmpfsOptions": {
                        **({"SizeBytes": int(size.group(1))} if size else {}),
                        **({"Mode": int(mode.group(1), 8)} if mode else {}),
                    },
                }
            )
        agent_port = next(iter(ports))
        container_spec = {
            "Image": image,
            "Command": command[:3],
            "Args": [PRELUDE + command[3]],
            "Hostname": hostname,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": labels,
            "User": user,
            "Dir": mount_point,
            "OpenStdin": bool(stdin_open),
            "ReadOnly": True,
            "Init": True,
            "Mounts": mounts,
            "CapabilityDrop": ["ALL"],
            "Ulimits": [
                {"Name": "nofile", "Soft": nofile, "Hard": nofile},
                {"Name": "fsize", "Soft": file_size, "Hard": file_size},
                {"Name": "core", "Soft": 0, "Hard": 0},
            ],
            "StopGracePeriod": 5_000_000_000,
        }
        reserve = max(0.0, min(1.0, self.reserve_fraction))
        task_template = {
            "ContainerSpec": container_spec,
            "Resources": {
                "Limits": {"NanoCPUs": int(cpu * 1e9), "MemoryBytes": int(memory), "Pids": int(pids)},
                "Reservations": {"NanoCPUs": int(cpu * 1e9 * reserve), "MemoryBytes": int(memory * reserve)},
            },
            # A task that ends stays ended: the swarm never starts a second copy of a sandbox.
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Placement": {
                "Constraints": [*self.constraints, *([f"node.hostname=={home}"] if home else [])],
                "Preferences": [_preference(p) for p in self.placement_preferences],
            },
            "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m", "max-file": "2"}},
            "Networks": [{"Target": network, **({"Aliases": [alias]} if alias else {})}],
        }
        service_labels = {**labels, LABEL_NAME: name, LABEL_SWARM: "1", **({LABEL_HOME_NODE: home} if home else {})}
        try:
            created = self.api._post_json(  # type: ignore[attr-defined]  # the SDK's create_service cannot set Ulimits or CapabilityDrop
                self.api._url("/services/create"),  # type: ignore[attr-defined]
                data={
                    "Name": service_name,
                    "Labels": service_labels,
                    "TaskTemplate": task_template,
                    "Mode": {"Replicated": {"Replicas": 1}},
                    "EndpointSpec": {
                        "Mode": "vip",
                        "Ports": [{"Protocol": "tcp", "TargetPort": int(agent_port), "PublishMode": "host"}],
                    },
                },
            )
            body = self.api._result(created, json=True)  # type: ignore[attr-defined]
        except docker.errors.APIError as exc:
            raise SandboxError(f"the swarm refused to create the sandbox: {exc.explanation or exc}") from None
        self._pending_volumes.pop(volume, None)
        self._removed_homes.pop(volume, None)
        return str(body["ID"])

    def _node_holding(self, volume: str) -> str:
        """The node whose engine holds `volume` ("" for a new one). Refused when the node the volume was
        on a moment ago (its sandbox's old service, just removed) does not answer now: its files are
        there, and a task elsewhere would start with an empty home."""
        for hostname in self.node_engines:
            engine = self._answers(hostname)
            if engine is not None and engine.volume(volume) is not None:
                return hostname
        was = self._removed_homes.get(volume)
        if was:
            raise SandboxLost(
                f"the files of this sandbox are on the node {was}, which does not answer; make it reachable "
                "again to start the sandbox there"
            )
        return ""

    def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        _, _, container, engine = self._running(container_id)
        engine.put_archive(container, path, data)

    def path_stat(self, container_id: str, path: str) -> PathStat | None:
        if self._service(container_id) is None:
            return self.manager.path_stat(container_id, path)  # a probe, on the manager's engine
        _, _, container, engine = self._running(container_id)
        return engine.path_stat(container, path)

    def probe(self, image: str, labels: dict[str, str]) -> str:
        return self.manager.probe(image, labels)

    def open_gate(self, container_id: str, line: bytes) -> None:
        _, _, container, engine = self._running(container_id, bring_up=False)
        engine.open_gate(container, line)

    def start(self, container_id: str) -> None:
        """Open the files gate of the sandbox's task (its files are in) and note its home node."""
        service, hostname, container, engine = self._running(container_id)
        task = self._current_task(service)
        # Services cannot set the swap limit, and the engine's default lets a task swap as much again as
        # its memory: memory + swap = memory, as for a local sandbox, before anything of its runs.
        memory = (((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Resources") or {}).get("Limits") or {}
        if memory.get("MemoryBytes"):
            engine.update_resources(container, None, int(memory["MemoryBytes"]))
        engine.open_gate(container, FILES_LINE)
        labels = dict((service.get("Spec") or {}).get("Labels") or {})
        labels[LABEL_RELEASED] = str((task or {}).get("ID") or "")
        labels.setdefault(LABEL_HOME_NODE, hostname)
        self._retry_update(container_id, lambda spec: spec.update(Labels=labels | {}))

    def _retry_update(self, ref: str, change: Callable[[dict[str, Any]], None]) -> None:
        for attempt in range(5):
            service = self._service(ref)
            if service is None:
                raise SandboxError(f"there is no sandbox {ref!r}")
            try:
                self._update(service, change)
                return
            except docker.errors.APIError as exc:
                if "out of sequence" not in str(exc) or attempt == 4:
                    raise SandboxError(f"the swarm could not update sandbox {ref}: {exc.explanation or exc}") from None

    def reconnect(self, container_id: str, network: str, alias: str | None = None) -> None:
        return None  # the service names its network; the swarm joins each task to it

    def stop(self, container_id: str, timeout: int = 5) -> None:
        """Scale to no task, pinned from now on to the node that holds its home."""
        service = self._service(container_id)
        if service is None:
            return
        home = ((service.get("Spec") or {}).get("Labels") or {}).get(LABEL_HOME_NODE)

        def change(spec: dict[str, Any]) -> None:
            spec["Mode"]["Replicated"]["Replicas"] = 0
            _pin(spec, str(home or ""))

        self._retry_update(container_id, change)
        deadline = time.monotonic() + timeout + 20
        while time.monotonic() < deadline:
            tasks = [
                t
                for t in self._tasks(service["ID"])
                if (t.get("Status") or {}).get("State") in RUNNING_STATES | STARTING_STATES
            ]
            if not tasks:
                return
            time.sleep(0.2)

    def update_resources(self, container_id: str, cpu: float | None, memory: int | None) -> None:
        """Live, on the task's container (a change of the service's spec would restart the task)."""
        _, _, container, engine = self._running(container_id, bring_up=False)
        engine.update_resources(container, cpu, memory)

    def usage(self, container_id: str, pid: int | None = None) -> UsageSample | None:
        try:
            _, _, container, engine = self._running(container_id, bring_up=False)
            return _usage(engine.api.stats(container, stream=False, one_shot=True))
        except (SandboxError, docker.errors.APIError):
            return None

    def inspect(self, container_id: str) -> ContainerRecord | None:
        service = self._service(container_id)
        if service is None:
            return self.manager.inspect(container_id)  # a probe
        nodes = self._node_names()
        state, reason, hostname, task = self._state(service, nodes)
        detail = None
        if task is not None and state in ("running", "created"):
            where = self._task_container(task, nodes)
            if where is not None and self._recently_out_of_reach(where[0]):
                state, reason = "lost", f"its node {where[0]} does not answer"
            elif where is not None:
                try:
                    detail = self._node_engine(where[0]).inspect(where[1])
                except Exception as exc:  # the node's engine, unreachable in any way
                    # The swarm notices a dead node some seconds later; this engine's silence is news now.
                    self._out_of_reach[where[0]] = time.monotonic()
                    state, reason = "lost", f"its node {where[0]} does not answer ({exc.__class__.__name__})"
        return self._record(service, state, reason, hostname, detail, task)

    def _record(
        self,
        service: dict[str, Any],
        state: str,
        reason: str,
        hostname: str,
        detail: ContainerRecord | None,
        task: dict[str, Any] | None,
    ) -> ContainerRecord:
        spec = service.get("Spec") or {}
        labels = dict(spec.get("Labels") or {})
        container_spec = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        args = list(container_spec.get("Args") or [])
        command = [*list(container_spec.get("Command") or []), *args]
        if command and command[-1].startswith(PRELUDE):
            command[-1] = command[-1][len(PRELUDE) :]
        address = self._address_of(hostname) if hostname else ""
        if detail is not None:
            ports = tuple(PortBinding(p.container_port, address, p.host_port, p.protocol) for p in detail.ports)
        else:
            # A list summary reads no node engine: the task's own port status says where its host-mode
            # port is published, so a listed sandbox is reachable as an inspected one (a kernel's
            # restart finds its sandbox by a listing, then calls its agent).
            ports = _task_ports(task, address) if state == "running" else ()
        created = _swarm_time(service.get("CreatedAt"))
        base = dict(
            id=str(service["ID"]),
            name=labels.get(LABEL_NAME, str(spec.get("Name") or "")),
            labels=labels,
            state=state,
            image=str(container_spec.get("Image") or "").split("@")[0],
            image_id=detail.image_id if detail else "",
            created=created,
            ports=ports,
            networks=detail.networks if detail else (),
            mounts=detail.mounts if detail else (),
            inspected=True,
            status=reason or state,
            command=tuple(command),
            open_stdin=bool(container_spec.get("OpenStdin")),
            user=str(container_spec.get("User") or ""),
            node=hostname,
            reach_host=address,
            reason=reason,
        )
        if detail is not None:
            base.update(
                started_at=detail.started_at,
                finished_at=detail.finished_at,
                exit_code=detail.exit_code,
                oom_killed=detail.oom_killed,
                pid=detail.pid,
                host=detail.host,
            )
        elif task is not None:
            exit_code = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ExitCode")
            base.update(exit_code=exit_code if isinstance(exit_code, int) else None)
        return ContainerRecord(**base)

    def list_containers(
        self, labels: dict[str, str] | None = None, label_keys: Iterable[str] = (), name: str | None = None
    ) -> list[ContainerRecord]:
        filters = [f"{k}={v}" for k, v in (labels or {}).items()] + [*label_keys, LABEL_SWARM]
        services = self.api.services(filters={"label": filters})
        if name:
            pattern = re.compile(name)
            services = [
                s for s in services if pattern.search(((s.get("Spec") or {}).get("Labels") or {}).get(LABEL_NAME, ""))
            ]
        if not services:
            return []
        nodes = self._node_names()
        records = []
        for service in services:
            state, reason, hostname, task = self._state(service, nodes)
            records.append(self._record(service, state, reason, hostname, None, task))
        return records

    def rename(self, current_name: str, new_name: str) -> bool:
        """The sandbox's name is a label of its service (services cannot be renamed); the change is
        made at the version read, so of two renames at once one fails, as with container names."""
        service = self._service(current_name)
        if service is None:
            return False
        # Names are the name labels (a service's own name is its sandbox's base name, which a sandbox
        # may take back: that is not another one's).
        taken = self.api.services(filters={"label": [f"{LABEL_NAME}={new_name}"]})
        if any(other["ID"] != service["ID"] for other in taken):
            return False
        try:
            self._update(service, lambda spec: spec["Labels"].update({LABEL_NAME: new_name}))
        except docker.errors.APIError:
            return False
        return True

    def remove_container(self, container_id: str) -> None:
        service = self._service(container_id)
        if service is None:
            with contextlib.suppress(SandboxError):
                self.manager.remove_container(container_id)  # a probe
            return
        nodes = self._node_names()
        containers = [w for w in (self._task_container(t, nodes) for t in self._tasks(service["ID"])) if w]
        spec = service.get("Spec") or {}
        home = (spec.get("Labels") or {}).get(LABEL_HOME_NODE)
        for mount in ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Mounts") or []:
            if home and mount.get("Type") == "volume" and mount.get("Source"):
                self._removed_homes[str(mount["Source"])] = str(home)  # where a re-creation must go
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_service(service["ID"])
        # The tasks' containers go with the service, a little later (and their anonymous volumes): wait,
        # so that the home volume can go next.
        deadline = time.monotonic() + 20
        for hostname, container in containers:
            if self._recently_out_of_reach(hostname):
                continue  # a node out of reach takes its container with it
            with contextlib.suppress(Exception):
                engine = self._node_engine(hostname)
                while time.monotonic() < deadline and engine.inspect(container) is not None:
                    time.sleep(0.2)

    def events(self, container_id: str) -> ContainerEvents:
        _, _, container, engine = self._running(container_id, bring_up=False)
        return ContainerEvents(engine.api.events(decode=True, filters={"container": container, "type": "container"}))

    # -- egress, on the node ---------------------------------------------------------------

    def apply_egress(
        self,
        record: ContainerRecord,
        enforcer: network.Enforcer,
        policy: network.EgressPolicy,
        host_addresses: list[str],
        gateway: tuple[str, int] | None,
    ) -> float:
        if gateway is not None or policy.uses_gateway:
            raise network.EgressError(
                "domain allow lists need the egress gateway, which runs on the manager's machine only; use CIDR "
                "allow lists for sandboxes on swarm nodes"
            )
        if not self.enforcer_image:
            raise network.EgressError(
                "SwarmBackend.enforcer_image is not set: no image on the nodes can put the policy in force"
            )
        started = time.monotonic()
        _, hostname, container, engine = self._running(record.id, bring_up=False)
        rules = {
            f"rules/v{version}": (
                network.restore_input(
                    network.rules(policy, version, host_addresses, enforcer.dns_in_allow_mode, None)
                ).encode(),
                0o600,
            )
            for version in (4, 6)
        }
        api = engine.api
        try:
            helper = api.create_container(
                image=self.enforcer_image,
                command=["sh", "-c", ENFORCE_SCRIPT],
                labels={f"{LABEL_PREFIX}egress-helper": record.id},
                host_config=api.create_host_config(
                    network_mode=f"container:{container}", cap_drop=["ALL"], cap_add=["NET_ADMIN", "NET_RAW"]
                ),
            )["Id"]
        except docker.errors.APIError as exc:
            raise network.EgressError(
                f"the node {hostname} could not run the egress helper: {exc.explanation or exc}"
            ) from None
        try:
            api.put_archive(helper, "/", tar_bytes(rules, dirs={"rules": (0o700, 0, 0)}))
            api.start(helper)
            result = api.wait(helper, timeout=network.COMMAND_TIMEOUT)
            if int(result.get("StatusCode", 1)) != 0:
                output = api.logs(helper, stdout=True, stderr=True).decode(errors="replace").strip().splitlines()
                raise network.EgressError(
                    f"the egress rules failed on the node {hostname}: {output[-1] if output else 'no message'}"
                )
        except (docker.errors.APIError, OSError) as exc:
            raise network.EgressError(f"the egress helper failed on the node {hostname}: {exc}") from None
        finally:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(helper, force=True)
        return time.monotonic() - started

    # -- volumes (on the nodes) ------------------------------------------------------------

    def _engines(self) -> list[DockerBackend]:
        """The engines of the nodes that answer now (a lost node's volumes are out of reach)."""
        return [engine for engine in map(self._answers, self.node_engines) if engine is not None]

    def create_volume(self, name: str, labels: dict[str, str], options: dict[str, str] | None = None) -> bool:
        """Homes are made on the node the swarm chooses, when its task starts there: remember the labels
        for the service's mount (options, i.e. a size-limited home, are not possible on a node)."""
        if options:
            raise SandboxError("a home of a limited size cannot be made on a swarm node; use plain volumes")
        self._pending_volumes[name] = dict(labels)
        return True

    def volume(self, name: str) -> VolumeRecord | None:
        for engine in self._engines():
            with contextlib.suppress(docker.errors.APIError):
                found = engine.volume(name)
                if found is not None:
                    return found
        if name in self._pending_volumes:
            return VolumeRecord(name=name, labels=dict(self._pending_volumes[name]))
        if name in self._removed_homes:
            # On the node its sandbox's service was on a moment ago, which does not answer now: it is
            # there all the same (so nothing takes it for a new home, nor cleans it up as one).
            return VolumeRecord(name=name)
        return None

    def list_volumes(self, label_keys: Iterable[str]) -> list[str]:
        keys = list(label_keys)
        names: set[str] = set()
        for engine in self._engines():
            with contextlib.suppress(docker.errors.APIError, SandboxError):
                names.update(engine.list_volumes(keys))
        return sorted(names)

    def volumes_with_labels(self, label_keys: Iterable[str]) -> list[VolumeRecord]:
        keys = list(label_keys)
        found: dict[str, VolumeRecord] = {}
        for engine in self._engines():
            with contextlib.suppress(docker.errors.APIError, SandboxError):
                for volume in engine.volumes_with_labels(keys):
                    found.setdefault(volume.name, volume)
        return list(found.values())

    def remove_volume(self, name: str) -> None:
        self._pending_volumes.pop(name, None)
        self._removed_homes.pop(name, None)
        for engine in self._engines():
            with contextlib.suppress(docker.errors.APIError):
                if engine.volume(name) is not None:
                    engine.remove_volume(name)

    # -- images (the manager's engine; every node must hold the same) ------------------------

    def image(self, image: str) -> ImageRecord | None:
        return self.manager.image(image)

    def image_labels(self, image: str) -> dict[str, str] | None:
        return self.manager.image_labels(image)

    def image_env(self, image: str) -> dict[str, str]:
        return self.manager.image_env(image)

    def image_id(self, image: str) -> str | None:
        return self.manager.image_id(image)

    def pull(self, image: str) -> None:
        for engine in [self.manager, *self._engines()]:
            engine.pull(image)

    def import_image(self, tar_stream: IO[bytes], repository: str, tag: str) -> None:
        self.manager.import_image(tar_stream, repository, tag)

    def tag(self, image: str, repository: str, tag: str) -> None:
        self.manager.tag(image, repository, tag)

    def build(
        self,
        context: bytes,
        tag: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        progress: Callable[[str], None],
    ) -> None:
        raise SandboxError(
            "images are not built on a swarm: build the sandbox image on one engine and load it on every node"
        )

    def run_once(self, image: str, command: list[str]) -> str:
        return self.manager.run_once(image, command)


def _pin(spec: dict[str, Any], home: str) -> None:
    """Constrain a service's tasks to the node that holds its home (none before its first placement)."""
    if not home:
        return
    placement = spec["TaskTemplate"].setdefault("Placement", {})
    kept = [c for c in placement.get("Constraints") or [] if not c.startswith("node.hostname==")]
    placement["Constraints"] = [*kept, f"node.hostname=={home}"]


def _preference(text: str) -> dict[str, Any]:
    kind, _, descriptor = text.partition("=")
    if kind.strip() != "spread" or not descriptor.strip():
        raise SandboxError(f"SwarmBackend.placement_preferences: {text!r} is not 'spread=<node label>'")
    return {"Spread": {"SpreadDescriptor": descriptor.strip()}}


def _task_ports(task: dict[str, Any] | None, address: str) -> tuple[PortBinding, ...]:
    """The ports a task published in host mode on its node, from the swarm's task status."""
    status = ((task or {}).get("Status") or {}).get("PortStatus") or {}
    found = []
    for port in status.get("Ports") or ():
        target, published = port.get("TargetPort"), port.get("PublishedPort")
        if isinstance(target, int) and isinstance(published, int) and published > 0:
            found.append(PortBinding(target, address, published, str(port.get("Protocol") or "tcp")))
    return tuple(found)


def _swarm_time(value: Any) -> float:
    from ..docker_backend import docker_time

    stamp = docker_time(value)
    return stamp.timestamp() if stamp else 0.0
