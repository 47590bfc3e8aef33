"""The sandbox core against the real Docker engine: hardened containers, the agent, cleanup."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from jupyter_sandbox.sandbox import errors
from jupyter_sandbox.sandbox import secrets as sandbox_secrets
from jupyter_sandbox.sandbox.agent_client import AgentClient, run_blocking
from jupyter_sandbox.sandbox.docker_backend import DockerBackend, DockerUnavailable, SandboxError
from jupyter_sandbox.sandbox.image import build_image
from jupyter_sandbox.sandbox.manager import AGENT_PORT, Sandbox, SandboxManager
from jupyter_sandbox.sandbox.spec import KERNEL_PORTS, LABEL_ID, LABEL_KERNEL_ID, LABEL_OWNER, SpecError


def test_container_has_every_hardened_default(sandbox: Sandbox, docker_backend: DockerBackend) -> None:
    info = docker_backend.inspect(sandbox.container_id)
    assert info is not None and info.inspected
    host = info.host
    assert info.user == "1000:1000"
    assert host.cap_drop == ("ALL",)
    assert "no-new-privileges" in host.security_opt
    assert host.privileged is False
    assert host.pids_limit == 512
    assert host.memory == 1024**3 and host.memory_swap == 1024**3
    assert host.nano_cpus == 10**9
    assert host.init is True
    assert dict(host.ulimits) == {"nofile": 4096, "fsize": 3 * 1024**3, "core": 0}
    assert host.log_options["max-size"] == "1m"
    assert host.network_mode == "jupyter-sandbox"
    assert all(not b.startswith("/") for b in host.binds)
    # The home (a filesystem of its own) and the agent's private volume; the root is read-only and
    # the only other writable places are size-limited tmpfs.
    mounts = {m.destination: m for m in info.mounts}
    assert set(mounts) == {"/home/sandbox", "/opt/jupyter-sandbox"}
    assert all(m.type == "volume" for m in mounts.values())
    assert mounts["/home/sandbox"].name == f"jupyter-sandbox-{sandbox.id}-home"
    assert host.read_only_rootfs is True
    assert set(host.tmpfs) == {"/tmp", "/var/tmp", "/run"}
    assert all("size=" in options for options in host.tmpfs.values())
    assert {p.container_port for p in info.ports} == {AGENT_PORT, *KERNEL_PORTS.values()}
    assert all(p.host_ip == "127.0.0.1" for p in info.ports)
    labels = info.labels
    assert labels[LABEL_ID] == sandbox.id and labels[LABEL_KERNEL_ID] == "test_sandbox_core" and labels[LABEL_OWNER]
    # No secret is kept where `docker inspect` shows it (all of its answer, not only what is parsed).
    raw = docker_backend.api.inspect_container(sandbox.container_id)
    assert sandbox_secrets.agent_token(sandbox.id) not in json.dumps(raw)


def test_network_keeps_sandboxes_apart(sandbox: Sandbox, docker_backend: DockerBackend) -> None:
    network = docker_backend.client.networks.get("jupyter-sandbox")
    assert network.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"


def test_agent_requires_the_token(sandbox: Sandbox) -> None:
    port = sandbox.host_ports[AGENT_PORT]
    for headers in ({}, {"Authorization": "token wrong"}, {"Authorization": "Bearer " + "0" * 64}):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 401
        assert "token" in json.loads(caught.value.read())["message"]
    with pytest.raises(errors.AgentUnavailable) as caught:
        run_blocking(lambda: AgentClient.at("127.0.0.1", port, "not-the-token").health())
    assert "401" in caught.value.message


def test_agent_health_restart_interrupt_and_bad_input(sandbox: Sandbox, manager: SandboxManager) -> None:
    client = manager.agent(sandbox)
    health = run_blocking(lambda: client.health())
    assert health["status"] == "ok" and health["kernel"]["running"] is True
    generation = health["kernel"]["generation"]
    assert run_blocking(lambda: client.kernel.restart())["generation"] == generation + 1
    assert run_blocking(lambda: client.kernel.interrupt())["kernel"]["running"] is True
    with pytest.raises(errors.NotFound) as caught:
        run_blocking(lambda: client.call("POST", "/kernel/explode"))
    assert "unknown kernel action" in caught.value.message
    with pytest.raises(errors.InvalidInput):
        run_blocking(lambda: client.call("GET", "/events?after=soon"))


def test_agent_files_are_not_writable_by_the_sandbox_user(sandbox: Sandbox, docker_backend: DockerBackend) -> None:
    result = docker_backend.client.containers.get(sandbox.container_id).exec_run(
        ["sh", "-c", "touch /opt/jupyter-sandbox/jupyter_sandbox_agent/server.py; stat -c '%u %a' /home/sandbox"],
        user="1000",
    )
    assert b"Permission denied" in result.output
    assert "1000 755" in result.output.decode().splitlines()


def test_list_get_remove(manager: SandboxManager) -> None:
    created = manager.create(kernel_id="list-test", start=False)
    try:
        assert created.state == "created"
        assert created.id in {s.id for s in manager.list(owner=manager.owner)}
        assert manager.find_for_kernel("list-test").id == created.id
    finally:
        manager.remove(created)
    assert manager.find_for_kernel("list-test") is None
    with pytest.raises(SandboxError, match="no sandbox"):
        manager.get(created.id)


@pytest.mark.serial
def test_bad_spec_is_refused_before_anything_is_made(manager: SandboxManager, docker_backend: DockerBackend) -> None:
    before = docker_backend.list_volumes([LABEL_ID])
    with pytest.raises(SpecError, match="memory"):
        manager.default_spec(memory=1)
    with pytest.raises(SandboxError, match="not on this Docker engine"):
        manager.create(manager.default_spec(image="jupyter-sandbox/absent:0"))
    assert docker_backend.list_volumes([LABEL_ID]) == before


def test_unreachable_docker_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(DockerUnavailable, match=r"Docker is not reachable .*DOCKER_HOST=tcp://127\.0\.0\.1:9"):
        DockerBackend(timeout=5)


def test_unchanged_image_is_not_rebuilt(docker_backend: DockerBackend, sandbox_image: str) -> None:
    lines: list[str] = []
    result = build_image(docker_backend, lines.append, tag=sandbox_image, bootstrap=True)
    assert result.built is False
    assert any("up to date" in line for line in lines)


def test_image_contents(docker_backend: DockerBackend, sandbox_image: str) -> None:
    output = docker_backend.run_once(
        sandbox_image,
        [
            "sh",
            "-c",
            "getent passwd 1000 | cut -d: -f1,6; git --version >/dev/null && echo git; ps --version >/dev/null && echo ps; "
            "test -s /etc/ssl/certs/ca-certificates.crt && echo certs; "
            "python3 -c 'import ipykernel, numpy, pandas, matplotlib; print(\"python ok\")'",
        ],
    )
    assert output.split() == ["sandbox:/home/sandbox", "git", "ps", "certs", "python", "ok"]
