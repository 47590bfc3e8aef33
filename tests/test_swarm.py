"""Sandboxes on a Docker Swarm of three engines (tests/swarm_support.py), through the operations
layer the REST API serves: placement, the hardening seen from inside a sandbox on a worker node, a
command on every node, a stop and start that keeps the files, a restarted manager that finds every
sandbox once, a drained node and a killed one.

The tests of this module run in order on one module-scoped swarm (the nodes' setup is most of the
module's time). It is `serial`: three engines and their sandboxes would starve a parallel worker.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from swarm_support import Swarm, swarm_cluster

import docker
from jupyter_sandbox.sandbox import errors
from jupyter_sandbox.sandbox.manager import SandboxManager
from jupyter_sandbox.sandbox.operations import SandboxOperations
from jupyter_sandbox.sandbox.spec import LABEL_ID
from jupyter_sandbox.sandbox.swarm import SwarmBackend

pytestmark = pytest.mark.serial


class Hub:
    """The manager's side: what a sandbox service holds (a backend, a manager, the operations)."""

    def __init__(self, swarm: Swarm, owner: str, network: str) -> None:
        self.swarm = swarm
        self.backend = SwarmBackend(
            manager_url=swarm.manager.engine_url,
            node_engines=swarm.endpoints(),
            enforcer_image=swarm.node_image,
        )
        self.manager = SandboxManager(
            backend=self.backend, owner=owner, network_name=network, enforce_disk="if-possible"
        )
        self.ops = SandboxOperations(self.manager)
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def status(self, sandbox_id: str) -> dict[str, Any]:
        return self.manager.get(sandbox_id).to_dict()

    def sh(self, sandbox_id: str, script: str) -> str:
        result = self.run(self.ops.exec(sandbox_id, script, None, {}, 60))
        assert result["exit_code"] == 0, result
        return str(result["stdout"])

    def close(self) -> None:
        self.loop.close()


@pytest.fixture(scope="module")
def swarm(sandbox_image: str) -> Iterator[Swarm]:
    with swarm_cluster(sandbox_image) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def hub(swarm: Swarm) -> Iterator[Hub]:
    suffix = secrets.token_hex(3)
    made = Hub(swarm, owner=f"swarm-test-{suffix}", network=f"jsb-swarm-sandboxes-{suffix}")
    yield made
    for sandbox in made.manager.list(owner=made.manager.owner):
        made.manager.remove(sandbox)
    made.close()


@pytest.fixture(scope="module")
def placed(hub: Hub) -> dict[str, str]:
    """{node: sandbox id}: sandboxes made until each node runs one (the swarm spreads them)."""
    by_node: dict[str, str] = {}
    for _ in range(6):
        made = hub.run(hub.ops.create({}))
        by_node.setdefault(made["node"], made["id"])
        if len(by_node) == 3:
            break
    return by_node


def tasks_of(swarm: Swarm, hub: Hub, sandbox_id: str) -> list[dict[str, Any]]:
    client = swarm.manager.client()
    services = client.api.services(filters={"label": [f"{LABEL_ID}={sandbox_id}"]})
    return [t for s in services for t in client.api.tasks(filters={"service": s["ID"]})]


def live_tasks(swarm: Swarm, hub: Hub, sandbox_id: str) -> list[dict[str, Any]]:
    return [
        t
        for t in tasks_of(swarm, hub, sandbox_id)
        if t["Status"]["State"] in ("running", "starting", "preparing", "assigned", "accepted", "pending")
    ]


def set_availability(swarm: Swarm, hostname: str, availability: str) -> None:
    for node in swarm.manager.client().nodes.list():
        if node.attrs["Description"]["Hostname"] == hostname:
            spec = node.attrs["Spec"]
            spec["Availability"] = availability
            node.update(spec)


def test_sandboxes_spread_over_the_three_nodes_and_run_commands_on_each(hub: Hub, placed: dict[str, str]) -> None:
    assert sorted(placed) == ["node0", "node1", "node2"]
    for node, sandbox_id in placed.items():
        # What GET /sandbox/api/sandboxes/{id} answers: where it runs, its limits and its use, read on its node.
        status = hub.run(hub.ops.status_of(hub.manager.get(sandbox_id))).to_rest()
        assert status["node"] == node and status["state"] == "running"
        assert (
            status["limits"]["memory"] == status["spec"]["memory"]
            and status["limits"]["pids"] == status["spec"]["pids"]
        )
        assert status["usage"]["memory_bytes"] > 0 and status["usage"]["pids"] > 0
        # A command on each node, and a file in each home, read back later.
        assert hub.sh(sandbox_id, f"echo {node}-{sandbox_id} > ~/mark && cat ~/mark").strip() == f"{node}-{sandbox_id}"


def test_the_hardening_holds_inside_a_sandbox_on_a_worker_node(hub: Hub, swarm: Swarm, placed: dict[str, str]) -> None:
    sandbox_id = placed["node1"]  # node1 is a worker
    others = [node.address for node in swarm.nodes]
    script = (
        "grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status; echo uid=$(id -u); "
        "echo init=$(tr '\\0' '\\n' < /proc/1/cmdline | head -n 1); "
        "touch /planted 2>/dev/null && echo root=writable || echo root=read-only; "
        "echo nofile=$(ulimit -n); echo core=$(ulimit -c); "
        "echo pids=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max); "
        "echo memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max); "
        "python3 - <<'EOF'\n"
        "import json, socket\n"
        f"for host in {json.dumps(others)}:\n"
        "    s = socket.socket(); s.settimeout(3)\n"
        "    try:\n"
        "        s.connect((host, 2375)); print('engine=reached', host)\n"
        "    except OSError:\n"
        "        print('engine=blocked', host)\n"
        "EOF\n"
    )
    seen = hub.sh(sandbox_id, script)
    facts = dict(line.replace(":\t", "=").split("=", 1) for line in seen.splitlines() if "=" in line or ":\t" in line)
    assert facts["NoNewPrivs"] == "1"
    assert int(facts["CapEff"], 16) == 0 and int(facts["CapBnd"], 16) == 0
    assert facts["uid"] == "1000"
    assert facts["init"].endswith("docker-init")  # the sandbox's process is not PID 1
    assert facts["root"] == "read-only"
    assert facts["nofile"] == str(hub.manager.nofile) and facts["core"] == "0"
    spec = hub.status(sandbox_id)["spec"]
    assert facts["pids"] == str(spec["pids"]) and facts["memory"] == str(spec["memory"])
    # No swap beyond the memory limit (the engine's default for a service allows as much again).
    record = hub.manager.get(sandbox_id).record
    assert record is not None and record.host.memory_swap == record.host.memory == spec["memory"]
    # The egress policy is in force on the node: no node's engine is reachable from the sandbox.
    assert seen.count("engine=blocked") == len(others) and "engine=reached" not in seen


def test_a_stopped_sandbox_starts_again_on_its_own_node_with_its_files(hub: Hub, placed: dict[str, str]) -> None:
    sandbox_id = placed["node2"]
    assert hub.run(hub.ops.stop(sandbox_id))["state"] == "exited"
    started = hub.run(hub.ops.start(sandbox_id))
    assert started["node"] == "node2" and started["state"] == "running"
    assert hub.sh(sandbox_id, "cat ~/mark").strip() == f"node2-{sandbox_id}"


def test_a_restarted_manager_finds_every_sandbox_once(hub: Hub, swarm: Swarm, placed: dict[str, str]) -> None:
    before = {s.id: (s.state, s.node) for s in hub.manager.list(owner=hub.manager.owner)}
    again = Hub(swarm, owner=hub.manager.owner, network=hub.manager.network_name)
    try:
        after = {s.id: (s.state, s.node) for s in again.manager.list(owner=again.manager.owner)}
        assert after == before
        for node, sandbox_id in placed.items():
            assert len(live_tasks(swarm, hub, sandbox_id)) == 1
            assert again.sh(sandbox_id, "cat ~/mark").strip() == f"{node}-{sandbox_id}"
    finally:
        again.close()


def test_a_drained_node_s_sandbox_is_reported_lost_and_its_files_wait_there(
    hub: Hub, swarm: Swarm, placed: dict[str, str]
) -> None:
    sandbox_id = placed["node2"]
    set_availability(swarm, "node2", "drain")
    try:
        deadline = time.monotonic() + 30
        while hub.status(sandbox_id)["state"] != "lost" and time.monotonic() < deadline:
            time.sleep(0.5)
        status = hub.status(sandbox_id)
        assert status["state"] == "lost"
        assert "node2" in status["reason"] and "drained" in status["reason"]
        # Never an empty home elsewhere: starting it is refused, saying why.
        with pytest.raises(errors.Conflict, match="node2"):
            hub.run(hub.ops.start(sandbox_id))
        deadline = time.monotonic() + 30
        while live_tasks(swarm, hub, sandbox_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not live_tasks(swarm, hub, sandbox_id)
    finally:
        set_availability(swarm, "node2", "active")
    started = hub.run(hub.ops.start(sandbox_id))
    assert started["node"] == "node2"
    assert hub.sh(sandbox_id, "cat ~/mark").strip() == f"node2-{sandbox_id}"


def test_a_killed_node_s_sandbox_is_reported_lost_and_never_duplicated(
    hub: Hub, swarm: Swarm, placed: dict[str, str]
) -> None:
    victim = placed["node1"]
    swarm.kill(swarm.nodes[1])
    deadline = time.monotonic() + 60
    while hub.status(victim)["state"] != "lost" and time.monotonic() < deadline:
        time.sleep(0.5)
    status = hub.status(victim)
    assert status["state"] == "lost" and "node1" in status["reason"]
    with pytest.raises(errors.SandboxOperationError, match="node1"):
        hub.run(hub.ops.start(victim))
    # Until the swarm has noticed the node is down, and after: no second copy anywhere.
    client = swarm.manager.client()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in client.nodes.list()}
        if states.get("node1") == "down":
            break
        time.sleep(1)
    assert states.get("node1") == "down"
    time.sleep(3)  # the orchestrator's turn to act on the down node
    # (The swarm goes on listing the dead node's task as it last knew it; a copy would be on another node.)
    node1 = next(n.id for n in client.nodes.list() if n.attrs["Description"]["Hostname"] == "node1")
    assert [t for t in live_tasks(swarm, hub, victim) if t.get("NodeID") != node1] == []
    status = hub.status(victim)
    assert status["state"] == "lost" and "node1" in status["reason"]
    # The other nodes' sandboxes are untouched.
    for node in ("node0", "node2"):
        assert hub.sh(placed[node], "cat ~/mark").strip() == f"{node}-{placed[node]}"
    # A lost sandbox can still be deleted (its files on the dead node go with that node).
    hub.run(hub.ops.delete(victim))
    with pytest.raises(errors.NotFound):
        hub.manager.get(victim)
    assert not tasks_of(swarm, hub, victim)
    with pytest.raises(docker.errors.NotFound):
        swarm.manager.client().api.inspect_service(f"jupyter-sandbox-{victim}")
