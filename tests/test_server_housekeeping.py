"""Reliability of what runs behind the notebooks: a kept sandbox whose Docker network went, warm-pool
claims, two Jupyter servers of one user side by side, and a server stopping with many kernels."""

from __future__ import annotations

import re
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_over_websocket, start_jupyter_server, wait_until
from test_persistence import HOSTNAME, sandbox_id_of

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.agent_client import run_blocking
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

KERNEL = {"name": "sandbox-python"}


@pytest.fixture
def own_network_manager(docker_backend: DockerBackend, sandbox_image: str) -> Iterator[SandboxManager]:
    """A manager on a network of this test's own, so removing it disturbs nobody else's sandboxes."""
    name = f"jupyter-sandbox-nettest-{secrets.token_hex(3)}"
    manager = SandboxManager(backend=docker_backend, network_name=name, warm_pool_size=0)
    yield manager
    for sandbox in manager.list(owner=manager.owner):
        if sandbox.workspace and sandbox.workspace.startswith("feed"):
            manager.remove(sandbox)
    for network in docker_backend.client.networks.list(names=[name]):
        network.remove()


def test_a_kept_sandbox_starts_again_after_its_network_was_removed(
    own_network_manager: SandboxManager, docker_backend: DockerBackend
) -> None:
    manager = own_network_manager
    kept = manager.create(workspace="feed" + secrets.token_hex(10))
    manager.wait_for_agent(kept)
    container = docker_backend.client.containers.get(kept.container_id)
    assert container.exec_run(["sh", "-c", "echo still here > /home/sandbox/kept.txt"], user="1000").exit_code == 0
    manager.release(kept)  # stopped and kept, as when its notebook's kernel shuts down
    # Removing another sandbox leaves the network alone: a stopped sandbox still needs it.
    other = manager.create()
    manager.remove(other)
    assert docker_backend.client.networks.list(names=[manager.network_name])
    # Removed anyway (an older version's cleanup, `docker network prune`): the kept sandbox starts.
    for network in docker_backend.client.networks.list(names=[manager.network_name]):
        network.remove()
    started = manager.start(manager.get(kept.id))
    manager.wait_for_agent(started)
    output = (
        docker_backend.client.containers.get(kept.container_id)
        .exec_run(["cat", "/home/sandbox/kept.txt"], user="1000")
        .output
    )
    assert b"still here" in output
    assert manager.get(kept.id).running


def test_a_kernel_never_claims_a_pool_sandbox_before_its_agent_answered(
    manager: SandboxManager, docker_backend: DockerBackend
) -> None:
    manager.warm_pool_size = 1
    # A server of its own: other pools on the engine (other runs) are not this test's to claim.
    manager.server_id = binding.new_server_id()
    lease = binding.ServerLease(manager.server_id)
    lease.acquire()
    try:
        # Started, as the pool makes it, but not yet seen answering: no kernel takes it.
        pooled = manager.create(pool=True)
        assert manager.claim("pool-early-claim", spec=manager.default_spec()) == (None, "")
        # The pool's next round sees its agent answer; then a kernel takes it.
        assert manager.fill_pool()["created"] == []
        sandbox, how = manager.claim("pool-early-claim", spec=manager.default_spec())
        assert how == "pool" and sandbox is not None and sandbox.id == pooled.id
        agent = manager.agent(sandbox)
        assert run_blocking(lambda: agent.health(timeout=5))
    finally:
        for sandbox in manager.list(owner=manager.owner):
            if (sandbox.pool and sandbox.server == manager.server_id) or sandbox.kernel_id == "pool-early-claim":
                manager.remove(sandbox)
        lease.release(forget=True)


def _server_id(log: Path) -> str:
    """The id a server gave itself (its log says it); other runs' servers on the engine are not it."""
    assert wait_until(lambda: log.exists() and "(server " in log.read_text(), timeout=60)
    return re.search(r"\(server ([0-9a-f]+)\)", log.read_text()).group(1)


@pytest.mark.timeout(600)
def test_two_servers_of_one_user_keep_to_their_own(
    sandbox_image: str, docker_backend: DockerBackend, tmp_path: Path
) -> None:
    manager = SandboxManager(backend=docker_backend)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    housekeeping = ["--SandboxManager.warm_pool_size=1", "--SandboxService.pool_interval=1"]
    server_a, process_a = start_jupyter_server(
        tmp_path / "a",
        [*housekeeping, "--SandboxManager.idle_timeout=3", "--SandboxService.reap_interval=1"],
        log=tmp_path / "a.log",
    )
    processes = [process_a]
    made: list[str] = []
    try:
        a_id = _server_id(tmp_path / "a.log")
        assert wait_until(lambda: manager.pool_sandboxes(server=a_id), timeout=120)
        server_b, process_b = start_jupyter_server(tmp_path / "b", housekeeping, log=tmp_path / "b.log")
        processes.append(process_b)
        b_id = _server_id(tmp_path / "b.log")
        assert wait_until(lambda: manager.pool_sandboxes(server=b_id), timeout=120)
        a_pool = {s.id for s in manager.pool_sandboxes(server=a_id)}

        # B's kernel takes B's pool sandbox, never A's.
        status, kernel = server_b.request("POST", "/api/kernels", KERNEL)
        assert status == 201, kernel
        status, text = run_over_websocket(server_b, kernel["id"], HOSTNAME)
        assert status == "ok", text
        taken = manager.get(sandbox_id_of(text))
        assert taken.server == b_id and taken.id not in a_pool

        # A sandbox made through B's API and one through A's; A's idle reaper stops only its own.
        status, through_b = server_b.request("POST", "/sandbox/api/sandboxes", {})
        assert status == 201, through_b
        status, through_a = server_a.request("POST", "/sandbox/api/sandboxes", {})
        assert status == 201, through_a
        made += [through_a["id"], through_b["id"]]
        assert wait_until(lambda: not manager.get(through_a["id"]).running, timeout=60)
        assert manager.get(through_b["id"]).running  # idle for longer, but not A's
        assert manager.get(taken.id).running  # B's kernel's, idle too

        # B stops: its pool goes, A's stays.
        process_b.send_signal(signal.SIGTERM)
        process_b.wait(timeout=120)
        assert not [s for s in manager.list(owner=manager.owner) if s.pool and s.server == b_id]
        drained = re.search(r"removed the warm pool's sandboxes \[([^\]]*)\]", (tmp_path / "b.log").read_text())
        assert drained, "B's shutdown did not drain its pool"
        assert not a_pool & set(re.findall(r"[0-9a-f]{12}", drained.group(1)))
        # Once B is gone, what it made is anyone's to tidy: A's idle reaper stops B's API sandbox.
        assert wait_until(lambda: not manager.get(through_b["id"]).running, timeout=60)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=120)
        for sandbox_id in made:
            manager.remove(sandbox_id)


@pytest.mark.timeout(600)
# A dozen kernels at once: measured alone, so that other tests' load does not stretch its bound.
@pytest.mark.serial
def test_stopping_a_server_with_a_dozen_kernels_is_bounded_and_cleans_up(
    sandbox_image: str, docker_backend: DockerBackend, tmp_path: Path
) -> None:
    manager = SandboxManager(backend=docker_backend)
    log = tmp_path / "server.log"
    server, process = start_jupyter_server(
        tmp_path, ["--SandboxManager.warm_pool_size=1", "--SandboxService.pool_interval=1"], log=log
    )
    kernels: list[str] = []
    try:
        for _ in range(12):
            status, kernel = server.request("POST", "/api/kernels", KERNEL)
            assert status == 201, kernel
            kernels.append(kernel["id"])
        # Some kernels have their sandbox, others are still bringing theirs up, the pool refills.
        status, text = run_over_websocket(server, kernels[0], HOSTNAME)
        assert status == "ok", text
        process.send_signal(signal.SIGTERM)
        # A hang detector, not a speed figure: the shutdown path ends on its own.
        process.wait(timeout=180)
        server_id = _server_id(log)
        # The pool went with the server, from inside its shutdown path.
        assert not [s for s in manager.list(owner=manager.owner) if s.pool and s.server == server_id]
        assert not binding.server_alive(server_id)
        # Every kernel's sandbox (kernels without a notebook) is released: removed.
        assert wait_until(lambda: not any(manager.find_for_kernel(k) for k in kernels), timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        for kernel_id in kernels:
            for sandbox in manager.list(kernel_id=kernel_id):
                manager.remove(sandbox)
