"""SwarmBackend without a swarm: how it reads the swarm's answers (states, reasons, pins) and the
first lines a sandbox's task runs (no-new-privileges, the files gate)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from jupyter_sandbox.sandbox.docker_backend import SandboxError
from jupyter_sandbox.sandbox.swarm.backend import (
    FILES_LINE,
    LABEL_HOME_NODE,
    LABEL_RELEASED,
    PRELUDE,
    SwarmBackend,
    _pin,
    _preference,
    _task_ports,
)


def backend_with(tasks: list[dict[str, Any]]) -> SwarmBackend:
    backend = SwarmBackend.__new__(SwarmBackend)
    backend._tasks = lambda service_id: tasks  # type: ignore[method-assign]
    return backend


def service(replicas: int = 1, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"ID": "svc", "Spec": {"Labels": dict(labels or {}), "Mode": {"Replicated": {"Replicas": replicas}}}}


def task(state: str, node: str = "n1", task_id: str = "t1", err: str = "") -> dict[str, Any]:
    return {
        "ID": task_id,
        "NodeID": node,
        "DesiredState": "running",
        "CreatedAt": "2026-01-01T00:00:00Z",
        "Status": {"State": state, "Err": err, "ContainerStatus": {"ContainerID": "c1"}},
    }


NODES = {
    "n1": {"hostname": "node1", "addr": "10.0.0.1", "state": "ready", "availability": "active"},
    "n2": {"hostname": "node2", "addr": "10.0.0.2", "state": "ready", "availability": "active"},
}


def test_a_task_runs_only_once_its_files_gate_was_opened() -> None:
    backend = backend_with([task("running")])
    assert backend._state(service(), NODES)[:3] == ("created", "", "node1")
    released = service(labels={LABEL_RELEASED: "t1", LABEL_HOME_NODE: "node1"})
    assert backend._state(released, NODES)[:3] == ("running", "", "node1")


@pytest.mark.parametrize(
    ("nodes", "words"),
    [
        ({**NODES, "n1": {**NODES["n1"], "availability": "drain"}}, "drained"),
        ({**NODES, "n1": {**NODES["n1"], "state": "down"}}, "down"),
        ({"n2": NODES["n2"]}, "left the swarm"),
    ],
)
def test_a_sandbox_whose_home_node_cannot_run_it_is_lost_with_the_reason(nodes: dict[str, Any], words: str) -> None:
    backend = backend_with([task("running")])
    for replicas in (0, 1):  # stopped or not: it cannot run where its files are
        state, reason, node, _ = backend._state(service(replicas, {LABEL_HOME_NODE: "node1"}), nodes)
        assert state == "lost" and "node1" in reason and words in reason and node == "node1"


def test_a_task_placed_away_from_its_home_is_lost_not_run_on_an_empty_home() -> None:
    backend = backend_with([task("running", node="n2")])
    state, reason, _, _ = backend._state(service(labels={LABEL_HOME_NODE: "node1"}), NODES)
    assert state == "lost" and "node1" in reason and "node2" in reason


def test_an_unplaceable_task_is_lost_but_a_routine_pending_one_is_starting() -> None:
    assert backend_with([task("pending")])._state(service(), NODES)[0] == "created"
    state, reason, _, _ = backend_with([task("pending", err="no suitable node (insufficient resources)")])._state(
        service(), NODES
    )
    assert state == "lost" and "no suitable node" in reason


def test_stopped_and_ended_sandboxes_are_exited() -> None:
    assert backend_with([])._state(service(replicas=0), NODES)[0] == "exited"
    assert backend_with([task("complete")])._state(service(), NODES)[0] == "exited"


def test_the_pin_names_the_home_node_once() -> None:
    spec: dict[str, Any] = {"TaskTemplate": {"Placement": {"Constraints": ["node.role==worker", "node.hostname==old"]}}}
    _pin(spec, "node1")
    _pin(spec, "node1")
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==worker", "node.hostname==node1"]
    untouched: dict[str, Any] = {"TaskTemplate": {}}
    _pin(untouched, "")
    assert untouched == {"TaskTemplate": {}}


def test_placement_preferences_are_spread_descriptors_only() -> None:
    assert _preference("spread=node.labels.zone") == {"Spread": {"SpreadDescriptor": "node.labels.zone"}}
    with pytest.raises(SandboxError, match="spread="):
        _preference("binpack")


def run_prelude(stdin: bytes) -> subprocess.CompletedProcess[str]:
    after = "print(open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])"
    return subprocess.run(
        [sys.executable, "-I", "-c", PRELUDE + after], input=stdin.decode(), capture_output=True, text=True, timeout=30
    )


def test_the_task_sets_no_new_privileges_and_waits_for_its_files_before_anything_else() -> None:
    opened = run_prelude(FILES_LINE)
    assert opened.returncode == 0 and opened.stdout.strip() == "1"
    for wrong in (b"", b"open\n", b"files", b"x" * 64):
        refused = run_prelude(wrong)
        assert refused.returncode != 0 and "files gate was not opened" in refused.stderr and not refused.stdout


class Services:
    """The swarm's services API, as rename() uses it."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names  # {service id: name label}
        self.updates: list[str] = []

    def services(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        wanted = filters["label"][0].split("=", 1)[1]
        return [{"ID": sid} for sid, name in self.names.items() if name == wanted]


def test_a_rename_takes_a_name_no_other_sandbox_has_and_may_take_back_its_own() -> None:
    backend = SwarmBackend.__new__(SwarmBackend)
    api = Services({"s1": "jupyter-sandbox-aaa-k-x", "s2": "jupyter-sandbox-bbb"})
    backend.api = api  # type: ignore[assignment]
    backend._service = lambda ref: {"ID": "s1"} if ref in ("jupyter-sandbox-aaa-k-x", "jupyter-sandbox-aaa") else None  # type: ignore[method-assign]
    backend._update = lambda service, change: api.updates.append(service["ID"])  # type: ignore[method-assign]
    assert backend.rename("jupyter-sandbox-aaa-k-x", "jupyter-sandbox-aaa")  # back to its plain name
    assert not backend.rename("jupyter-sandbox-aaa-k-x", "jupyter-sandbox-bbb")  # another's
    assert not backend.rename("jupyter-sandbox-zzz", "jupyter-sandbox-new")  # no such sandbox
    assert api.updates == ["s1"]


def test_a_listed_task_s_host_mode_ports_come_from_its_port_status() -> None:
    task = {
        "Status": {
            "PortStatus": {
                "Ports": [
                    {"Protocol": "tcp", "TargetPort": 8888, "PublishedPort": 30123, "PublishMode": "host"},
                    {"Protocol": "tcp", "TargetPort": 9999, "PublishMode": "host"},  # not published yet
                    {"TargetPort": "8888", "PublishedPort": "1"},  # not numbers: ignored
                ]
            }
        }
    }
    ports = _task_ports(task, "10.0.0.12")
    assert [(p.container_port, p.host_ip, p.host_port, p.protocol) for p in ports] == [
        (8888, "10.0.0.12", 30123, "tcp")
    ]
    assert _task_ports(None, "10.0.0.12") == () and _task_ports({"Status": {}}, "x") == ()


def test_a_node_that_did_not_answer_is_not_asked_again_for_a_while() -> None:
    pings: list[str] = []

    class Silent:
        class client:
            @staticmethod
            def ping() -> None:
                pings.append("node1")
                raise ConnectionError("No route to host")

    backend = SwarmBackend.__new__(SwarmBackend)
    backend._out_of_reach = {}
    backend._node_engine = lambda hostname: Silent  # type: ignore[method-assign,assignment,return-value]
    backend.out_of_reach_seconds = 15.0
    assert backend._answers("node1") is None and backend._answers("node1") is None
    assert pings == ["node1"]  # the second call did not wait for the dead address again
    assert backend._recently_out_of_reach("node1") and not backend._recently_out_of_reach("node0")
    backend.out_of_reach_seconds = 0.0  # the window over: it is asked again
    assert backend._answers("node1") is None and pings == ["node1", "node1"]


def test_a_sandbox_made_again_goes_to_the_node_that_holds_its_home_or_is_refused() -> None:
    class Engine:
        def __init__(self, volumes: set[str]) -> None:
            self.volumes = volumes

        def volume(self, name: str) -> Any:
            return object() if name in self.volumes else None

    engines: dict[str, Engine | None] = {"node0": Engine(set()), "node1": Engine({"home-a"}), "node2": Engine(set())}
    backend = SwarmBackend.__new__(SwarmBackend)
    backend.node_engines = {name: f"tcp://{name}:2375" for name in engines}
    backend._answers = lambda hostname: engines[hostname]  # type: ignore[method-assign,assignment,return-value]
    backend._removed_homes = {}
    backend._pending_volumes = {}
    assert backend._node_holding("home-a") == "node1"  # wherever the scheduler would have put it
    assert backend._node_holding("home-new") == ""  # a new sandbox: the operator's placement alone
    # Its old service was on node1, which does not answer now: refused, never an empty home elsewhere.
    backend._removed_homes = {"home-a": "node1"}
    engines["node1"] = None
    with pytest.raises(SandboxError, match="node1"):
        backend._node_holding("home-a")
    assert backend.volume("home-a") is not None  # not taken for a new home (nor cleaned up as one)
