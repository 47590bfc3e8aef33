"""Sandboxes on a Docker Swarm of three engines (tests/swarm_support.py), through the operations
layer the REST API serves: placement, the hardening seen from inside a sandbox on a worker node, a
command on every node, a stop and start that keeps the files, a restarted manager that finds every
sandbox once, a drained node and a killed one. Then the same swarm behind a real sandbox service
(`jupyter sandbox service`, c.SandboxServiceApp.backend = 'swarm', two users): two users' sandboxes
spread over the nodes and scoped to each, a restarted service, and a hub-mode proxy kernel (no engine
of its own) whose inner kernel runs on a worker node, reached through the service's channel route;
the drained and killed nodes are then seen through the service's API too.

The tests of this module run in order on one module-scoped swarm (the nodes' setup is most of the
module's time). It is `serial`: three engines and their sandboxes would starve a parallel worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import API, KERNEL_NAME, SandboxKernel, Server, box, wait_until
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import MultiKernelManager
from service_support import ServiceProcess
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


# -- the sandbox service on the swarm ------------------------------------------------------------

NO_ENGINE = "unix:///nonexistent/sandbox-test/docker.sock"


@pytest.fixture(scope="module")
def service_process(swarm: Swarm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """`jupyter sandbox service` with the swarm backend, as an operator configures it, for Alice and Bob."""
    config = {
        "SandboxServiceApp": {"backend": "swarm"},
        "SwarmBackend": {
            "manager_url": swarm.manager.engine_url,
            "node_engines": swarm.endpoints(),
            "enforcer_image": swarm.node_image,
            # Three nodes of this 2-core machine: the service's sandboxes reserve a tenth of their CPUs
            # and memory (the module's other sandboxes reserve theirs whole), so that all fit.
            "reserve_fraction": 0.1,
        },
        "SandboxManager": {
            "warm_pool_size": 0,
            "enforce_disk": "if-possible",
            "network_name": f"jsb-swarm-service-{secrets.token_hex(3)}",
        },
    }
    process = ServiceProcess(tmp_path_factory.mktemp("swarm-service"), ["alice", "bob"], config)
    process.start()
    yield process
    try:
        for user in process.users:
            client = Server(process.port, process.token(user))
            status, listing = client.request("GET", f"{API}/sandboxes")
            for sandbox in listing.get("sandboxes", []) if status == 200 else []:
                client.request("DELETE", box(sandbox["id"]))
    finally:
        process.stop()


@pytest.fixture(scope="module")
def alice(service_process: ServiceProcess) -> Server:
    return Server(service_process.port, service_process.token("alice"))


@pytest.fixture(scope="module")
def bob(service_process: ServiceProcess) -> Server:
    return Server(service_process.port, service_process.token("bob"))


def api_exec(user: Server, sandbox_id: str, command: str) -> str:
    status, result = user.request("POST", box(sandbox_id, "/process/exec"), {"command": command, "timeout": 60})
    assert status == 200 and result["exit_code"] == 0, (status, result)
    return str(result["stdout"])


@pytest.fixture(scope="module")
def alice_placed(alice: Server) -> dict[str, str]:
    """{node: sandbox id} of Alice's, made through the service until each node runs one."""
    by_node: dict[str, str] = {}
    for _ in range(6):
        status, made = alice.request("POST", f"{API}/sandboxes", {})
        assert status == 201, made
        by_node.setdefault(made["node"], made["id"])
        if len(by_node) == 3:
            break
    return by_node


@pytest.fixture(scope="module")
def bobs(bob: Server) -> dict[str, Any]:
    status, made = bob.request("POST", f"{API}/sandboxes", {})
    assert status == 201, made
    return made


def test_the_service_spreads_two_users_sandboxes_over_the_nodes_and_keeps_each_to_its_owner(
    swarm: Swarm,
    hub: Hub,
    alice: Server,
    bob: Server,
    alice_placed: dict[str, str],
    bobs: dict[str, Any],
    service_process: ServiceProcess,
) -> None:
    assert sorted(alice_placed) == ["node0", "node1", "node2"]
    assert bobs["node"] in ("node0", "node1", "node2")
    for node, sandbox_id in alice_placed.items():
        status, seen = alice.request("GET", box(sandbox_id))
        assert status == 200 and seen["node"] == node and seen["state"] == "running"
        assert api_exec(alice, sandbox_id, f"echo {node} > ~/mark && cat ~/mark; id -u").split() == [node, "1000"]
        # The engine's labels say whose it is.
        labels = swarm.manager.client().api.inspect_service(f"jupyter-sandbox-{sandbox_id}")["Spec"]["Labels"]
        assert service_process.owner("alice") in labels.values()
    assert api_exec(bob, bobs["id"], "echo bob > ~/mark && cat ~/mark").strip() == "bob"
    # Bob gets a 404 for each of Alice's, on the node it runs on or not, as for an id that does not exist.
    for sandbox_id in alice_placed.values():
        for method, path, body in (
            ("GET", box(sandbox_id), None),
            ("POST", box(sandbox_id, "/process/exec"), {"command": "id"}),
            ("POST", box(sandbox_id, "/stop"), {}),
            ("DELETE", box(sandbox_id), None),
        ):
            assert bob.request(method, path, body)[0] == 404, (method, path)
    assert alice.request("GET", box(bobs["id"]))[0] == 404
    listed = {s["id"] for s in bob.request("GET", f"{API}/sandboxes")[1]["sandboxes"]}
    assert listed == {bobs["id"]}
    listed = {s["id"] for s in alice.request("GET", f"{API}/sandboxes")[1]["sandboxes"]}
    assert listed == set(alice_placed.values())
    # The direct manager's sandboxes (another owner on the same swarm) are nobody's here.
    for other in hub.manager.list(owner=hub.manager.owner):
        assert alice.request("GET", box(other.id))[0] == 404


def test_a_restarted_service_finds_every_sandbox_once_and_loses_none(
    swarm: Swarm,
    hub: Hub,
    alice: Server,
    bob: Server,
    alice_placed: dict[str, str],
    bobs: dict[str, Any],
    service_process: ServiceProcess,
) -> None:
    def listing(user: Server) -> dict[str, tuple[str, str]]:
        status, answer = user.request("GET", f"{API}/sandboxes")
        assert status == 200, answer
        return {s["id"]: (s["state"], s["node"]) for s in answer["sandboxes"]}

    before = {"alice": listing(alice), "bob": listing(bob)}
    assert service_process.stop() == 0
    for attempt in range(5):
        # On the same port (the users' clients keep it); an ephemeral port of this busy machine's
        # outgoing connections may hold it for a moment.
        try:
            service_process.start()
            break
        except RuntimeError as exc:
            if "Address already in use" not in str(exc) or attempt == 4:
                raise
            time.sleep(2)
    assert {"alice": listing(alice), "bob": listing(bob)} == before
    for node, sandbox_id in alice_placed.items():
        assert len(live_tasks(swarm, hub, sandbox_id)) == 1
        assert api_exec(alice, sandbox_id, "cat ~/mark").strip() == node
    assert len(live_tasks(swarm, hub, bobs["id"])) == 1
    assert api_exec(bob, bobs["id"], "cat ~/mark").strip() == "bob"


@pytest.fixture(scope="module")
def notebook_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("swarm-notebooks")
    (folder / "on-a-worker.ipynb").write_text("{}")
    return folder


def releasing(kernel_id: str) -> bool:
    found = subprocess.run(
        ["pgrep", "-f", f"jupyter_sandbox.remote.release {kernel_id}"], capture_output=True, check=False, timeout=10
    )
    return found.returncode == 0


def shut_down(kernel: SandboxKernel) -> None:
    kernel.client.stop_channels()
    kernel.mkm.shutdown_kernel(kernel.kernel_id)
    time.sleep(0.5)
    assert wait_until(lambda: not releasing(kernel.kernel_id), timeout=60)


def kernel_status(kernel: SandboxKernel) -> dict[str, Any]:
    run = kernel.run("%sandbox status --json")
    assert run.status == "ok", run.error
    return dict(json.loads(run.stdout))


@pytest.fixture(scope="module")
def worker_kernel(swarm: Swarm, alice: Server, notebook_folder: Path) -> Iterator[SandboxKernel]:
    """A hub-mode proxy kernel of Alice's with no engine of its own, whose sandbox the swarm placed on a
    worker node: the manager node is paused (it keeps what it runs, takes nothing new) while it starts."""
    env = {
        **os.environ,
        "JUPYTER_SANDBOX_SERVICE_URL": alice.base,
        "JUPYTER_SANDBOX_SERVICE_TOKEN": alice.token,
        "DOCKER_HOST": NO_ENGINE,
        "JPY_SESSION_NAME": "on-a-worker.ipynb",
    }
    env.pop("DOCKER_CONFIG", None)
    set_availability(swarm, "node0", "pause")
    try:
        mkm = MultiKernelManager(kernel_spec_manager=KernelSpecManager())
        kernel_id = mkm.start_kernel(kernel_name=KERNEL_NAME, env=env, cwd=str(notebook_folder))
        kernel = SandboxKernel(mkm, kernel_id)
        first = kernel.run("print(6 * 7)", timeout=180)
    finally:
        set_availability(swarm, "node0", "active")
    kernel.first = first  # type: ignore[attr-defined]
    yield kernel
    if kernel.kernel_id in kernel.mkm.list_kernel_ids():
        shut_down(kernel)


def test_a_hub_kernel_s_first_cell_runs_on_a_worker_node_through_the_service(
    worker_kernel: SandboxKernel, alice: Server
) -> None:
    first = worker_kernel.first  # type: ignore[attr-defined]
    assert first.status == "ok", first.error
    assert first.stdout == "42\n"
    info = kernel_status(worker_kernel)
    status, seen = alice.request("GET", box(info["id"]))
    assert status == 200 and seen["node"] in ("node1", "node2"), seen
    pid = worker_kernel.km.provisioner.pid  # type: ignore[union-attr]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"DOCKER_HOST={NO_ENGINE}".encode() in environ
    run = worker_kernel.run("import socket, os; print(socket.gethostname() != '', os.getuid())")
    assert run.stdout.split() == ["True", "1000"]


def test_input_interrupt_and_widgets_reach_the_kernel_on_the_worker(worker_kernel: SandboxKernel) -> None:
    run = worker_kernel.run(
        "name = input('who? ')\nprint('hello', name)", stdin_hook=lambda m: worker_kernel.client.input("Ada")
    )
    assert run.status == "ok", run.error
    assert run.stdout.strip().endswith("hello Ada")
    reply = worker_kernel.interrupted("import time\ntime.sleep(120)", worker_kernel.km.interrupt_kernel, wait=1.5)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    assert worker_kernel.run("print('after')").stdout == "after\n"
    run = worker_kernel.run("import ipywidgets as w\ns = w.IntSlider(value=3)\ns")
    assert run.status == "ok", run.error
    views = [
        o
        for o in run.of_type("execute_result") + run.of_type("display_data")
        if "application/vnd.jupyter.widget-view+json" in o["content"]["data"]
    ]
    model_id = views[0]["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    msg = worker_kernel.client.session.msg(
        "comm_msg", {"comm_id": model_id, "data": {"method": "update", "state": {"value": 9}, "buffer_paths": []}}
    )
    worker_kernel.client.shell_channel.send(msg)
    assert wait_until(lambda: worker_kernel.run("print(s.value)").stdout.strip() == "9", timeout=15, interval=0.2)


def test_a_restart_of_the_kernel_on_the_worker_keeps_its_files_and_node(
    worker_kernel: SandboxKernel, alice: Server
) -> None:
    before = kernel_status(worker_kernel)
    node = alice.request("GET", box(before["id"]))[1]["node"]
    worker_kernel.run("kept = 5\nopen('/home/sandbox/kept.txt', 'w').write('still here')")
    worker_kernel.restart()
    run = worker_kernel.run("print('kept' in dir(), open('/home/sandbox/kept.txt').read())")
    assert run.stdout == "False still here\n"
    assert kernel_status(worker_kernel)["id"] == before["id"]
    # The notebook's hard restart: a fresh container, on the node its files are on.
    run = worker_kernel.run("%sandbox restart --hard")
    assert run.status == "ok", run.error
    run = worker_kernel.run("print(open('/home/sandbox/kept.txt').read())")
    assert run.stdout == "still here\n", (run.reply["content"], run.outputs)
    assert alice.request("GET", box(before["id"]))[1]["node"] == node
    # Done with it before the nodes are drained and killed; its sandbox goes with it.
    shut_down(worker_kernel)
    assert alice.request("DELETE", box(before["id"]))[0] == 204


def api_state(user: Server, sandbox_id: str) -> dict[str, Any]:
    status, seen = user.request("GET", box(sandbox_id))
    assert status == 200, seen
    return dict(seen)


def test_a_drained_node_s_sandbox_is_reported_lost_and_its_files_wait_there(
    hub: Hub, swarm: Swarm, placed: dict[str, str], alice: Server, alice_placed: dict[str, str]
) -> None:
    sandbox_id = placed["node2"]
    alices = alice_placed["node2"]
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
        # The same through the service's API, for Alice's sandbox on that node.
        assert wait_until(lambda: api_state(alice, alices)["state"] == "lost", timeout=30, interval=0.5)
        seen = api_state(alice, alices)
        assert seen["node"] == "node2" and "node2" in seen["reason"] and "drained" in seen["reason"]
        code, refused = alice.request("POST", box(alices, "/start"), {})
        assert code == 409 and "node2" in refused["message"], (code, refused)
        deadline = time.monotonic() + 30
        while live_tasks(swarm, hub, sandbox_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not live_tasks(swarm, hub, sandbox_id)
    finally:
        set_availability(swarm, "node2", "active")
    started = hub.run(hub.ops.start(sandbox_id))
    assert started["node"] == "node2"
    assert hub.sh(sandbox_id, "cat ~/mark").strip() == f"node2-{sandbox_id}"
    code, again = alice.request("POST", box(alices, "/start"), {})
    assert code == 200 and again["node"] == "node2" and again["state"] == "running", again
    assert api_exec(alice, alices, "cat ~/mark").strip() == "node2"


def test_a_killed_node_s_sandbox_is_reported_lost_and_never_duplicated(
    hub: Hub, swarm: Swarm, placed: dict[str, str], alice: Server, alice_placed: dict[str, str]
) -> None:
    victim = placed["node1"]
    alices = alice_placed["node1"]
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
    # Through the service's API: Alice's sandbox on the dead node is lost, saying where; a start is
    # refused with that reason; her others run; none was copied elsewhere.
    seen = api_state(alice, alices)
    assert seen["state"] == "lost" and "node1" in seen["reason"], seen
    code, refused = alice.request("POST", box(alices, "/start"), {})
    assert code in (409, 503) and "node1" in refused["message"], (code, refused)
    assert [t for t in live_tasks(swarm, hub, alices) if t.get("NodeID") != node1] == []
    for node in ("node0", "node2"):
        assert api_exec(alice, alice_placed[node], "cat ~/mark").strip() == node
    assert alice.request("DELETE", box(alices))[0] == 204
    assert alice.request("GET", box(alices))[0] == 404
    # A lost sandbox can still be deleted (its files on the dead node go with that node).
    hub.run(hub.ops.delete(victim))
    with pytest.raises(errors.NotFound):
        hub.manager.get(victim)
    assert not tasks_of(swarm, hub, victim)
    with pytest.raises(docker.errors.NotFound):
        swarm.manager.client().api.inspect_service(f"jupyter-sandbox-{victim}")
