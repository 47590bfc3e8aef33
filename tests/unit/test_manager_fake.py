"""SandboxManager's decisions against an in-memory engine: claims, the warm pool, reconcile, reap,
prune, delete, and how many engine calls each operation costs. No Docker engine is needed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fake_backend import FakeBackend, as_backend

from jupyter_sandbox.sandbox import binding, network, notebooks
from jupyter_sandbox.sandbox import secrets as sandbox_secrets
from jupyter_sandbox.sandbox.docker_backend import SandboxError, _container_inspect, _container_summary, docker_time
from jupyter_sandbox.sandbox.image import DEFAULT_IMAGE
from jupyter_sandbox.sandbox.manager import OwnerLimit, Sandbox, SandboxManager
from jupyter_sandbox.sandbox.spec import AGENT_PORT, LABEL_ID, LABEL_OWNER


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend(images=[DEFAULT_IMAGE])


@pytest.fixture
def manager(fake: FakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxManager]:
    # Host state (locks, leases, policies, verdicts) in a folder of this test's own; no engine anywhere.
    monkeypatch.setenv(sandbox_secrets.SECRET_ENV, str(tmp_path / "state" / "host.secret"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    manager = SandboxManager(
        backend=as_backend(fake),
        owner="alice",
        enforce_disk="off",  # no loop devices here: homes are plain volumes
        enforce_egress=False,  # no network namespace to put rules in
        warm_pool_size=1,
        orphan_grace=0,
    )
    manager.server_id = secrets.token_hex(8)
    # The agent would answer over HTTP; here it is taken as answering.
    monkeypatch.setattr(manager, "wait_for_agent", lambda sandbox, timeout=30: {"status": "ok"})
    yield manager


def kernel_id() -> str:
    return f"k{secrets.token_hex(6)}"


def test_a_kernel_claims_a_ready_pool_sandbox_once(manager: SandboxManager, fake: FakeBackend) -> None:
    filled = manager.fill_pool()
    assert len(filled["created"]) == 1
    pooled = manager.get(filled["created"][0])
    assert pooled.pool and pooled.running and fake.gates == [pooled.container_id]

    first = kernel_id()
    claimed, how = manager.claim(first, spec=manager.default_spec())
    assert how == "pool" and claimed is not None and claimed.id == pooled.id
    assert claimed.kernel_id == first and not claimed.pool
    # The same kernel asking again (a restart) gets its own back; another kernel does not get it.
    assert manager.claim(first, spec=manager.default_spec()) == (claimed, "kernel")
    assert manager.claim(kernel_id(), spec=manager.default_spec()) == (None, "")
    # Another spec than the pool's is never served from it.
    manager.fill_pool()
    bigger = manager.default_spec(memory=2 * 1024**3)
    assert manager.claim(kernel_id(), spec=bigger) == (None, "")


def test_a_pool_sandbox_not_seen_answering_is_not_claimed(manager: SandboxManager) -> None:
    made = manager.fill_pool()["created"][0]
    binding.forget_pool_ready(made)
    assert manager.claim(kernel_id(), spec=manager.default_spec()) == (None, "")


def test_a_notebook_keeps_its_sandbox_and_a_live_kernel_keeps_it_busy(manager: SandboxManager) -> None:
    workspace = secrets.token_hex(12)
    first = kernel_id()
    made = manager.create(kernel_id=first, workspace=workspace)
    assert made.workspace == workspace and made.kernel_id == first and made.running

    lease = binding.KernelLease(first)
    assert lease.acquire(blocking=False)
    try:
        assert manager.claim(kernel_id(), workspace=workspace) == (None, f"busy {first}")
    finally:
        lease.release()

    # The first kernel is done: the notebook's sandbox is stopped and kept, bound to the notebook only.
    manager.release(made)
    kept = manager.get(made.id)
    assert not kept.running and kept.workspace == workspace and kept.kernel_id is None
    second = kernel_id()
    taken, how = manager.claim(second, workspace=workspace)
    assert how == "workspace" and taken is not None and taken.id == made.id and taken.kernel_id == second


def test_the_owner_limit_counts_claimed_sandboxes_not_the_pool(manager: SandboxManager) -> None:
    manager.max_sandboxes_per_owner = 2
    manager.fill_pool()
    manager.create(kernel_id=kernel_id())
    manager.create(kernel_id=kernel_id())
    with pytest.raises(OwnerLimit, match="max_sandboxes_per_owner = 2"):
        manager.create(kernel_id=kernel_id())
    # At the limit, the pool's sandbox is not handed out either (it would count once claimed).
    assert manager.claim(kernel_id(), spec=manager.default_spec()) == (None, "")
    assert len(manager.pool_sandboxes(server=manager.server_id)) == 1


def test_the_pool_is_drained_of_free_sandboxes_only(manager: SandboxManager, fake: FakeBackend) -> None:
    manager.warm_pool_size = 2
    made = manager.fill_pool()["created"]
    assert len(made) == 2
    owner = kernel_id()
    claimed, _ = manager.claim(owner, spec=manager.default_spec())
    assert claimed is not None
    removed = manager.drain_pool()
    assert len(removed) == 1 and claimed.id not in removed
    assert [s.id for s in manager.list()] == [claimed.id]
    assert set(fake.volumes) == {claimed.volume}


def test_a_full_pool_is_left_alone_and_a_stale_one_replaced(manager: SandboxManager) -> None:
    first = manager.fill_pool()["created"]
    assert manager.fill_pool() == {"created": [], "removed": []}
    manager.cpu = 0.5  # the operator changed the default spec: the old pool sandbox no longer fits
    again = manager.fill_pool()
    assert again["removed"] == first and len(again["created"]) == 1


def test_reconcile_releases_sandboxes_of_gone_kernels(manager: SandboxManager, fake: FakeBackend) -> None:
    alive, gone, gone_with_notebook = kernel_id(), kernel_id(), kernel_id()
    lease = binding.KernelLease(alive)
    assert lease.acquire(blocking=False)
    try:
        live = manager.create(kernel_id=alive)
        lost = manager.create(kernel_id=gone)
        notebook = manager.create(kernel_id=gone_with_notebook, workspace=secrets.token_hex(12))
        # A volume no sandbox has (a process ended while making one).
        fake.create_volume(binding.volume_name("abcdef012345"), {LABEL_ID: "abcdef012345", LABEL_OWNER: "alice"})
        done = manager.reconcile()
    finally:
        lease.release()
    assert set(done["released"]) == {lost.id, notebook.id}
    assert done["volumes"] == [binding.volume_name("abcdef012345")]
    ids = {s.id for s in manager.list()}
    assert ids == {live.id, notebook.id}
    kept = manager.get(notebook.id)
    assert not kept.running and kept.kernel_id is None and kept.workspace
    assert manager.get(live.id).running


def test_reconcile_leaves_another_owners_and_another_live_servers_sandboxes(
    manager: SandboxManager, fake: FakeBackend
) -> None:
    theirs = SandboxManager(backend=as_backend(fake), owner="bob", enforce_disk="off", enforce_egress=False)
    other = theirs.create(kernel_id=kernel_id())
    assert manager.reconcile()["released"] == []
    assert theirs.get(other.id).running


def test_reap_stops_idle_sandboxes_and_deletes_long_stopped_ones(
    manager: SandboxManager, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.idle_timeout = 60
    manager.auto_delete_after = 3600
    idle = manager.create(kernel_id=kernel_id())
    busy = manager.create(kernel_id=kernel_id())
    old = manager.stop(manager.create(kernel_id=kernel_id()))
    recent = manager.stop(manager.create(kernel_id=kernel_id()))
    record = fake.containers[old.container_id]
    assert record.finished_at is not None
    fake.containers[old.container_id] = replace(record, finished_at=record.finished_at - timedelta(hours=2))

    class Agent:
        def __init__(self, sandbox: Sandbox) -> None:
            self.sandbox = sandbox

        async def health(self, timeout: float = 5) -> dict[str, Any]:
            last = time.time() - (600 if self.sandbox.id == idle.id else 1)
            return {"status": "ok", "last_activity": last}

    monkeypatch.setattr(manager, "agent", Agent)
    done = manager.reap()
    assert done == {"stopped": [idle.id], "deleted": [old.id]}
    assert not manager.get(idle.id).running and manager.was_idle_stopped(manager.get(idle.id))
    assert manager.get(busy.id).running and not manager.get(recent.id).running
    with pytest.raises(SandboxError, match="there is no sandbox"):
        manager.get(old.id)


def test_prune_removes_stopped_sandboxes_and_stray_volumes(manager: SandboxManager, fake: FakeBackend) -> None:
    running = manager.create(kernel_id=kernel_id())
    stopped = manager.stop(manager.create(kernel_id=kernel_id()))
    fake.create_volume(binding.volume_name("0123456789ab"), {LABEL_ID: "0123456789ab", LABEL_OWNER: "alice"})
    removed = manager.prune()
    assert removed["sandboxes"] == [stopped.id]
    # The stopped sandbox's home goes with it; the stray volume is found among the rest.
    assert removed["volumes"] == [binding.volume_name("0123456789ab")] and stopped.volume not in fake.volumes
    assert [s.id for s in manager.list()] == [running.id] and set(fake.volumes) == {running.volume}


def test_prune_takes_only_the_owners_unless_told_every_owner(manager: SandboxManager, fake: FakeBackend) -> None:
    bob = SandboxManager(backend=as_backend(fake), owner="bob", enforce_disk="off", enforce_egress=False)
    bobs = bob.stop(bob.create(kernel_id=kernel_id()))
    fake.create_volume(binding.volume_name("0123456789cd"), {LABEL_ID: "0123456789cd", LABEL_OWNER: "bob"})
    mine = manager.stop(manager.create(kernel_id=kernel_id()))
    assert manager.prune()["sandboxes"] == [mine.id]
    assert bob.get(bobs.id) and binding.volume_name("0123456789cd") in fake.volumes
    removed = manager.prune(every_owner=True)
    assert removed["sandboxes"] == [bobs.id] and binding.volume_name("0123456789cd") in removed["volumes"]


def test_delete_removes_every_part(manager: SandboxManager, fake: FakeBackend) -> None:
    pooled = manager.get(manager.fill_pool()["created"][0])
    assert network.policy_path(pooled.id).exists() and binding.pool_ready(pooled.id)
    manager.remove(pooled)
    assert not fake.containers and not fake.volumes
    assert manager.network_name not in fake.networks  # nothing else on it
    assert not network.policy_path(pooled.id).exists() and not binding.pool_ready(pooled.id)
    with pytest.raises(SandboxError, match="there is no sandbox"):
        manager.get(pooled.id)


def test_each_operation_reads_the_container_once(manager: SandboxManager, fake: FakeBackend) -> None:
    made = manager.create(kernel_id=kernel_id())

    def costs(operation: Any) -> dict[str, int]:
        fake.calls.clear()
        operation()
        return {"inspect": fake.calls["inspect"], "list": fake.calls["list_containers"]}

    def status() -> None:
        # What `%sandbox status` and GET /sandboxes/{id} read: all of it from one inspect.
        sandbox = manager.get(made.id)
        manager.limits(sandbox)
        manager.disk_enforcement(sandbox)
        manager.current_spec(sandbox)
        assert manager.uptime(sandbox) is not None
        assert manager.usage(sandbox)["pids"] == 4

    assert costs(status) == {"inspect": 1, "list": 1}
    assert fake.calls["volume"] == 1  # the home volume, too, is read once
    assert costs(lambda: manager.get(made.id)) == {"inspect": 1, "list": 1}
    assert costs(manager.list) == {"inspect": 0, "list": 1}
    stopped: list[Sandbox] = []
    assert costs(lambda: stopped.append(manager.stop(made))) == {"inspect": 1, "list": 0}
    assert not stopped[0].running and stopped[0].exit_code == 137
    assert costs(lambda: manager.start(stopped[0])) == {"inspect": 1, "list": 0}
    started = manager.get(made.id)
    assert started.running and AGENT_PORT in started.host_ports
    assert costs(lambda: manager.remove(started)) == {"inspect": 0, "list": 1}


def test_a_sandbox_read_with_its_record_answers_from_it(manager: SandboxManager, fake: FakeBackend) -> None:
    made = manager.create(kernel_id=kernel_id())
    updated = manager.update_live(made, cpu=0.5, memory=512 * 1024**2)
    assert manager.limits(updated)["cpu"] == 0.5 and manager.limits(updated)["memory"] == 512 * 1024**2
    # A Sandbox made by hand (no record) is read from the engine when asked.
    bare = Sandbox(made.id, made.container_id, made.name, made.volume, "running", made.image, dict(made.labels))
    fake.calls.clear()
    assert manager.limits(bare)["cpu"] == 0.5 and fake.calls["inspect"] == 1


# -- the engine's JSON, parsed once -----------------------------------------------------------------


def test_odd_or_missing_fields_become_defaults_not_errors() -> None:
    empty = _container_inspect({})
    assert empty.inspected and empty.state == "unknown" and empty.host.nano_cpus == 0 and empty.pid is None
    odd = _container_inspect(
        {
            "Id": "c1",
            "Name": "/box",
            "State": {"Status": "exited", "ExitCode": True, "Pid": "12", "StartedAt": "0001-01-01T00:00:00Z"},
            "Config": {"Labels": None, "Cmd": "not a list", "User": 5},
            "HostConfig": {
                "NanoCpus": "lots",
                "Ulimits": [{"Name": "fsize", "Hard": 7}, "junk", {"Hard": 1}],
                "Tmpfs": [],
            },
            "NetworkSettings": {"Ports": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "x"}], "9/tcp": None}},
            "Mounts": [None, {"Type": "volume", "Destination": "/home/sandbox"}],
        }
    )
    assert odd.name == "box" and odd.exit_code is None and odd.pid is None and odd.started_at is None
    assert odd.command == () and odd.labels == {} and odd.ports == ()
    assert odd.host.nano_cpus == 0 and odd.host.ulimits == {"fsize": 7} and odd.host.tmpfs == {}
    assert [m.destination for m in odd.mounts] == ["/home/sandbox"]
    summary = _container_summary(
        {
            "Id": "c2",
            "Names": ["/jupyter-sandbox-abc"],
            "State": "running",
            "Created": 1700000000,
            "Ports": [{"IP": "127.0.0.1", "PrivatePort": 8888, "PublicPort": 32768}, {"PrivatePort": 9}],
            "NetworkSettings": {"Networks": {"jupyter-sandbox": {"IPAddress": "172.18.0.2"}}},
        }
    )
    assert summary.loopback_ports() == {8888: 32768} and summary.ip_address == "172.18.0.2"
    assert not summary.inspected and summary.created == 1700000000.0


def test_docker_times_with_nanoseconds_and_zones() -> None:
    stamp = docker_time("2026-12-01T13:04:12.123456789+01:00")
    assert stamp == datetime(2026, 12, 1, 12, 4, 12, 123456, tzinfo=timezone.utc)
    assert docker_time("2026-12-01T13:04:12Z") == datetime(2026, 12, 1, 13, 4, 12, tzinfo=timezone.utc)
    assert docker_time("0001-01-01T00:00:00Z") is None and docker_time(None) is None and docker_time("soon") is None


def test_a_notebook_gone_is_its_owners_business_only(
    manager: SandboxManager, fake: FakeBackend, tmp_path: Path
) -> None:
    """Every owner's notebook records share the host's state folder (several servers, a service's
    users): another owner's check never forgets, detaches or moves them; the owner's own does."""
    notebook = tmp_path / "work" / "notes.ipynb"
    notebook.parent.mkdir()
    notebook.write_text("{}")
    path = str(notebook.resolve())
    workspace = binding.workspace_key(manager.owner, path)
    notebooks.remember_start(workspace, path)
    sandbox = manager.create(workspace=workspace)
    bob = SandboxManager(backend=as_backend(fake), owner="bob", enforce_disk="off", enforce_egress=False)
    notebook.unlink()  # gone outside Jupyter

    assert notebooks.NotebookSandboxes(bob, str(tmp_path)).tidy() == []
    notebooks.NotebookSandboxes(bob, str(tmp_path)).moved("work", "elsewhere")
    assert binding.notebook_record(workspace) is not None and manager.get(sandbox.id).workspace == workspace

    assert notebooks.NotebookSandboxes(manager, str(tmp_path)).tidy() == [sandbox.id]
    assert manager.get(sandbox.id).workspace != workspace and binding.notebook_record(workspace) is None
