"""The life of a notebook's sandbox: kept across kernels and servers, the warm pool, reconciliation,
and recovery from faults (a killed server, a restarted Docker engine, many kernels at once)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    open_notebook,
    run_over_websocket,
    sandbox_containers,
    start_jupyter_server,
    start_sandbox_kernel,
    wait_until,
)

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import Sandbox, SandboxManager
from jupyter_sandbox.sandbox.spec import LABEL_ID, LABEL_OWNER

HOSTNAME = "import socket; print(socket.gethostname())"


def sandbox_id_of(text: str) -> str:
    """The sandbox id from a cell that printed the sandbox's host name (jupyter-sandbox-<id>)."""
    line = next(line for line in text.splitlines() if line.startswith(binding.NAME_PREFIX))
    return line[len(binding.NAME_PREFIX) :].strip()


def proxy_processes(kernel_id: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", f"kernel-{kernel_id}.json"], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


@pytest.fixture
def notebook_root(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path


def test_a_notebook_gets_its_files_back_after_close_reopen_and_restart(
    sandbox_image: str, docker_backend: DockerBackend, notebook_root: Path
) -> None:
    server, process = start_jupyter_server(notebook_root)
    manager = SandboxManager(backend=docker_backend)
    sandbox_id = ""
    try:
        session = open_notebook(server, "work/analysis.ipynb")
        status, text = run_over_websocket(
            server, session["kernel"]["id"], f"open('/home/sandbox/results.csv', 'w').write('a,b\\n1,2\\n'); {HOSTNAME}"
        )
        assert status == "ok", text
        sandbox_id = sandbox_id_of(text)
        assert manager.get(sandbox_id).workspace

        # Closing the notebook shuts its kernel down: the sandbox is stopped and kept.
        assert server.request("DELETE", f"/api/sessions/{session['id']}")[0] == 204
        assert wait_until(lambda: not manager.get(sandbox_id).running, timeout=30)
        assert manager.get(sandbox_id).kernel_id is None

        # Another notebook gets a sandbox of its own.
        other = open_notebook(server, "work/other.ipynb")
        status, text = run_over_websocket(
            server, other["kernel"]["id"], f"import os; print(os.path.exists('/home/sandbox/results.csv')); {HOSTNAME}"
        )
        assert status == "ok" and "False" in text, text
        other_id = sandbox_id_of(text)
        assert other_id != sandbox_id

        # Reopening the first notebook: a new kernel, the same workspace.
        session = open_notebook(server, "work/analysis.ipynb")
        kernel_id = session["kernel"]["id"]
        status, text = run_over_websocket(
            server, kernel_id, f"print(open('/home/sandbox/results.csv').read()); {HOSTNAME}"
        )
        assert status == "ok", text
        assert "1,2" in text and sandbox_id_of(text) == sandbox_id
        # The server's API finds it under the new kernel.
        _, listed = server.request("GET", f"/sandbox/api/sandboxes?kernel_id={kernel_id}")
        assert [s["id"] for s in listed["sandboxes"]] == [sandbox_id]

        # A kernel restart keeps it too.
        assert server.request("POST", f"/api/kernels/{kernel_id}/restart")[0] == 200
        status, text = run_over_websocket(server, kernel_id, "print(open('/home/sandbox/results.csv').read())")
        assert status == "ok" and "1,2" in text, text

        # Deleting asks for confirmation, then removes container and files; the next cell starts fresh.
        status, text = run_over_websocket(server, kernel_id, "%sandbox delete")
        assert "--yes" in text and manager.get(sandbox_id)
        status, text = run_over_websocket(server, kernel_id, "%sandbox delete --yes")
        assert status == "ok" and "deleted" in text, text
        assert not sandbox_containers(docker_backend, **{LABEL_ID: sandbox_id})
        assert f"jupyter-sandbox-{sandbox_id}-home" not in docker_backend.list_volumes([LABEL_ID])
        status, text = run_over_websocket(
            server, kernel_id, f"import os; print(os.listdir('/home/sandbox')); {HOSTNAME}"
        )
        assert status == "ok" and "results.csv" not in text, text
        sandbox_id = sandbox_id_of(text)
        for name in ("other", "analysis"):
            _, sessions = server.request("GET", "/api/sessions")
            for entry in sessions:
                if name in entry["path"]:
                    server.request("DELETE", f"/api/sessions/{entry['id']}")
        assert wait_until(lambda: not manager.get(other_id).running and not manager.get(sandbox_id).running, 30)
    finally:
        process.terminate()
        process.wait(timeout=30)
        for sandbox in manager.list(owner=manager.owner):
            if sandbox.workspace:
                manager.remove(sandbox)


def test_delete_magic_bad_input(shared_kernel_for_delete) -> None:
    run = shared_kernel_for_delete.run("%sandbox delete --now")
    assert run.status == "error"
    assert "unrecognized arguments: --now" in run.reply["content"]["evalue"]
    run = shared_kernel_for_delete.run("%sandbox delete --help")
    assert "--yes" in run.stdout


@pytest.fixture
def shared_kernel_for_delete(sandbox_image: str):
    kernel = start_sandbox_kernel()
    kernel.run("1")
    yield kernel
    kernel.shutdown()


def test_status_says_plainly_what_of_the_disk_limit_holds(shared_kernel_for_delete) -> None:
    run = shared_kernel_for_delete.run("%sandbox status")
    disk_line = next(line for line in run.stdout.splitlines() if line.startswith("disk"))
    assert "of 3 GiB used" in disk_line and "of 196608 inodes" in disk_line and "(enforced" in disk_line
    assert "/tmp 256 MiB" in disk_line and "the rest of the container is read-only" in disk_line
    assert "removed when the kernel shuts down" in run.stdout


def test_a_jupyter_server_killed_with_sigkill_loses_nothing(
    sandbox_image: str, docker_backend: DockerBackend, notebook_root: Path
) -> None:
    manager = SandboxManager(backend=docker_backend)
    server, process = start_jupyter_server(notebook_root)
    server_again: subprocess.Popen | None = None
    try:
        session = open_notebook(server, "work/long-job.ipynb")
        kernel_id = session["kernel"]["id"]
        status, text = run_over_websocket(
            server, kernel_id, f"open('/home/sandbox/checkpoint.txt', 'w').write('epoch 7'); {HOSTNAME}"
        )
        assert status == "ok", text
        sandbox_id = sandbox_id_of(text)
        assert proxy_processes(kernel_id)

        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        # The orphaned proxy kernel notices, releases the sandbox (stopped, kept) and exits.
        assert wait_until(lambda: not proxy_processes(kernel_id), timeout=30)
        assert wait_until(lambda: not manager.get(sandbox_id).running, timeout=30)

        server2, server_again = start_jupyter_server(notebook_root)
        session = open_notebook(server2, "work/long-job.ipynb")
        status, text = run_over_websocket(
            server2,
            session["kernel"]["id"],
            f"print(open('/home/sandbox/checkpoint.txt').read()); {HOSTNAME}",
            timeout=30,
        )
        assert status == "ok" and "epoch 7" in text, text
        assert sandbox_id_of(text) == sandbox_id
        assert server2.request("DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")[0] == 204
    finally:
        for running in (process, server_again):
            if running is not None and running.poll() is None:
                running.terminate()
                running.wait(timeout=30)
        for sandbox in manager.list(owner=manager.owner):
            if sandbox.workspace:
                manager.remove(sandbox)


def test_warm_pool_claims_are_atomic(manager: SandboxManager) -> None:
    manager.warm_pool_size = 2
    try:
        filled = manager.fill_pool()
        assert len(filled["created"]) == 2
        assert {s.id for s in manager.pool_sandboxes()} == set(filled["created"])
        results: list[tuple[Sandbox | None, str]] = []
        barrier = threading.Barrier(6)

        def claim(number: int) -> None:
            barrier.wait()
            results.append(manager.claim(f"pool-claimer-{number}", spec=manager.default_spec()))

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        claimed = [sandbox for sandbox, how in results if sandbox is not None]
        assert sorted(how for _, how in results) == ["", "", "", "", "pool", "pool"]
        assert {s.id for s in claimed} == set(filled["created"])  # each taken once, by one kernel
        assert len({s.kernel_id for s in claimed}) == 2
        assert not manager.pool_sandboxes()
        # Refilled; a different spec never takes from the pool.
        assert len(manager.fill_pool()["created"]) == 2
        assert manager.claim("pool-other-spec", spec=manager.default_spec(cpu=0.5)) == (None, "")
    finally:
        for sandbox in manager.list(owner=manager.owner):
            if sandbox.pool or (sandbox.kernel_id or "").startswith("pool-"):
                manager.remove(sandbox)


@pytest.mark.serial
def test_warm_pool_behind_the_server(sandbox_image: str, docker_backend: DockerBackend, tmp_path: Path) -> None:
    manager = SandboxManager(backend=docker_backend)
    log = tmp_path / "server.log"
    server, process = start_jupyter_server(
        tmp_path, ["--SandboxManager.warm_pool_size=2", "--SandboxService.pool_interval=1"], log=log
    )
    # This server's pool (each server has an id, on what it makes): other runs' pools are not its.
    assert wait_until(lambda: "(server " in log.read_text(), timeout=30)
    server_id = re.search(r"\(server ([0-9a-f]+)\)", log.read_text()).group(1)
    manager.server_id = server_id
    kernels: list[str] = []
    try:
        assert wait_until(lambda: len(manager.pool_sandboxes(server=server_id)) == 2, timeout=120)
        pooled = {s.id for s in manager.pool_sandboxes(server=server_id)}
        kernels = [server.request("POST", "/api/kernels", {"name": "sandbox-python"})[1]["id"] for _ in range(2)]
        used = set()
        for kernel_id in kernels:
            status, text = run_over_websocket(server, kernel_id, HOSTNAME)
            assert status == "ok", text
            used.add(sandbox_id_of(text))
        assert used == pooled
        # Refilled in the background; the pool's sandboxes are nobody's in the API.
        assert wait_until(lambda: len(manager.pool_sandboxes(server=server_id)) == 2, timeout=120)
        assert not {s.id for s in manager.pool_sandboxes(server=server_id)} & used
        _, listed = server.request("GET", "/sandbox/api/sandboxes")
        assert {s["id"] for s in listed["sandboxes"]} == used
        for kernel_id in kernels:
            assert server.request("DELETE", f"/api/kernels/{kernel_id}")[0] == 204
    finally:
        process.terminate()
        process.wait(timeout=60)
    # The pool goes with the server; the kernels' sandboxes went with the kernels.
    assert wait_until(
        lambda: not [s for s in manager.list(owner=manager.owner) if s.server == server_id or s.id in used], timeout=30
    )


def test_reconciliation_releases_sandboxes_of_dead_kernels(
    manager: SandboxManager, docker_backend: DockerBackend
) -> None:
    manager.orphan_grace = 0
    notebook = binding.workspace_key(manager.owner, "/somewhere/report.ipynb")
    lease = binding.KernelLease("reconcile-alive")
    assert lease.acquire()
    gone = manager.create(kernel_id="reconcile-gone")
    kept = manager.create(kernel_id="reconcile-gone-notebook", workspace=notebook)
    alive = manager.create(kernel_id="reconcile-alive")
    docker_backend.create_volume(
        binding.volume_name("0bad0bad0bad"), {LABEL_ID: "0bad0bad0bad", LABEL_OWNER: manager.owner}
    )
    # A home image whose volume was never made (its process ended in between) holds host space for nothing.
    stray = manager.disks.home("0bad0bad0bae")
    stray.create(64 * 1024**2, 1000)
    try:
        done = manager.reconcile()
        assert set(done["released"]) == {gone.id, kept.id}
        assert done["volumes"] == [binding.volume_name("0bad0bad0bad")]
        assert "0bad0bad0bae" in done["disks"] and not stray.image.exists()
        assert manager.disks.home(kept.id).exists()
        assert not sandbox_containers(docker_backend, **{LABEL_ID: gone.id})
        assert gone.volume not in docker_backend.list_volumes([LABEL_ID])
        after = manager.get(kept.id)
        assert not after.running and after.kernel_id is None and after.workspace == notebook
        assert kept.volume in docker_backend.list_volumes([LABEL_ID])
        assert manager.get(alive.id).running and manager.get(alive.id).kernel_id == "reconcile-alive"
        # Nothing more to do the second time.
        assert manager.reconcile() == {"released": [], "volumes": [], "disks": []}
    finally:
        lease.release(forget=True)
        for sandbox in (gone, kept, alive):
            manager.remove(sandbox)


@pytest.mark.serial
def test_twenty_kernels_started_and_shut_down_at_once(sandbox_image: str, docker_backend: DockerBackend) -> None:
    with ThreadPoolExecutor(20) as pool:
        kernels = list(pool.map(lambda _: start_sandbox_kernel(), range(20)))
        try:
            runs = list(pool.map(lambda k: k.run(HOSTNAME, timeout=300), kernels))
            assert [r.status for r in runs] == ["ok"] * 20, [r.error for r in runs]
            assert len({sandbox_id_of(r.stdout) for r in runs}) == 20
            assert all(k.run("print(6 * 7)", timeout=60).stdout == "42\n" for k in kernels)
        finally:
            list(pool.map(lambda k: k.shutdown(), kernels))
    assert wait_until(lambda: not sandbox_containers(docker_backend), timeout=60)
    assert not docker_backend.list_volumes([LABEL_ID])


@pytest.mark.disruptive
def test_docker_engine_restart_with_sandboxes_running(sandbox_image: str, docker_backend: DockerBackend) -> None:
    kernel = start_sandbox_kernel(extra_env={"JPY_SESSION_NAME": "engine-restart.ipynb"})
    manager = SandboxManager(backend=docker_backend)
    try:
        run = kernel.run(f"open('/home/sandbox/through-restart.txt', 'w').write('survived'); {HOSTNAME}")
        assert run.status == "ok", run.error
        sandbox_id = sandbox_id_of(run.stdout)
        pids = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False).stdout.split()
        assert pids, "these tests start dockerd themselves (scripts/ensure-docker.sh)"
        for pid in pids:
            os.kill(int(pid), signal.SIGTERM)
        assert wait_until(
            lambda: subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, check=False).returncode != 0,
            timeout=60,
        )
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")], check=True)
        # The notebook gets a message, never a hang, and works again with its files.
        messages = []
        deadline = time.monotonic() + 30
        while True:
            run = kernel.run("print(open('/home/sandbox/through-restart.txt').read())", timeout=60)
            messages.append(run.stdout + (run.error or {}).get("evalue", ""))
            if run.status == "ok" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert run.status == "ok", messages
        assert "survived" in run.stdout
        assert any("sandbox" in message.lower() for message in messages), messages
    finally:
        kernel.shutdown()
    # A notebook's sandbox is kept when its kernel shuts down; this test deletes it.
    kept = manager.get(sandbox_id)
    assert not kept.running
    manager.remove(kept)


def test_two_kernels_of_one_notebook_at_once_make_one_notebook_sandbox(
    sandbox_image: str, docker_backend: DockerBackend
) -> None:
    manager = SandboxManager(backend=docker_backend)
    env = {"JPY_SESSION_NAME": "twice-opened.ipynb"}
    with ThreadPoolExecutor(2) as pool:
        kernels = list(pool.map(lambda _: start_sandbox_kernel(extra_env=env), range(2)))
        try:
            runs = list(pool.map(lambda k: k.run(HOSTNAME, timeout=120), kernels))
            assert [r.status for r in runs] == ["ok", "ok"], [r.error for r in runs]
            ids = {sandbox_id_of(r.stdout) for r in runs}
            assert len(ids) == 2
            kept = [s for s in manager.list(owner=manager.owner) if s.workspace and s.id in ids]
            assert len(kept) == 1  # the other kernel was told and got a sandbox of its own
            assert any("in use by another kernel" in r.stdout for r in runs)
        finally:
            list(pool.map(lambda k: k.shutdown(), kernels))
    leftover = [s for s in manager.list(owner=manager.owner) if s.id in ids]
    assert [s.id for s in leftover] == [kept[0].id] and not leftover[0].running
    manager.remove(leftover[0])
