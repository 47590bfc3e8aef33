"""Egress policy, tested only against targets this test makes: network namespaces on this machine."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import Server, wait_until

from jupyter_sandbox.sandbox.agent_client import run_blocking
from jupyter_sandbox.sandbox.manager import Sandbox, SandboxManager

TARGETS = {"inside": ("jsbx-t1", "10.231.5"), "outside": ("jsbx-t2", "10.231.6")}
TARGET_PORT = 8080


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, str]]:
    """Two hosts in network namespaces, each serving HTTP: one will be in the allowed CIDR, one not."""
    servers, made = [], []
    try:
        for index, (name, prefix) in enumerate(TARGETS.values(), 1):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["ip", "link", "del", f"jsbx-h{index}"], capture_output=True)
            ip("netns", "add", name)
            made.append((name, f"jsbx-h{index}"))
            ip("link", "add", f"jsbx-h{index}", "type", "veth", "peer", "name", f"jsbx-n{index}")
            ip("link", "set", f"jsbx-n{index}", "netns", name)
            ip("addr", "add", f"{prefix}.1/24", "dev", f"jsbx-h{index}")
            ip("link", "set", f"jsbx-h{index}", "up")
            for args in (
                ["addr", "add", f"{prefix}.2/24", "dev", f"jsbx-n{index}"],
                ["link", "set", f"jsbx-n{index}", "up"],
                ["link", "set", "lo", "up"],
                ["route", "add", "default", "via", f"{prefix}.1"],
            ):
                ip("netns", "exec", name, "ip", *args)
            servers.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        name,
                        sys.executable,
                        "-m",
                        "http.server",
                        str(TARGET_PORT),
                        "--bind",
                        f"{prefix}.2",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        addresses = {key: f"{prefix}.2" for key, (_, prefix) in TARGETS.items()}

        def serving() -> bool:
            try:
                for address in addresses.values():
                    socket.create_connection((address, TARGET_PORT), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_until(serving, timeout=20), "the target servers did not start"
        yield addresses
    finally:
        for server in servers:
            server.kill()
            server.wait()
        for name, link in made:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def host_listener() -> Iterator[int]:
    """A server on every host address, standing for the Jupyter server and anything else on the host."""

    class Host(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", 0), Host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def reaches(manager: SandboxManager, sandbox: Sandbox, host: str, port: int) -> bool:
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3).close()"
    agent = manager.agent(manager.get(sandbox.id))
    result = run_blocking(lambda: agent.processes.exec(["python3", "-c", code], None, {}, 10))
    return result["exit_code"] == 0


def resolves(manager: SandboxManager, sandbox: Sandbox, name: str) -> bool:
    agent = manager.agent(manager.get(sandbox.id))
    result = run_blocking(lambda: agent.processes.exec(["getent", "hosts", name], None, {}, 10))
    return result["exit_code"] == 0


def gateway(manager: SandboxManager, sandbox: Sandbox) -> str:
    info = manager.backend.inspect(sandbox.container_id)
    assert info is not None
    return info.networks[0].gateway


def test_the_targets_are_reachable_without_a_policy(targets: dict[str, str]) -> None:
    for address in targets.values():
        with socket.create_connection((address, TARGET_PORT), timeout=3):
            pass


def test_modes_switch_live_and_survive_a_restart(
    manager: SandboxManager, sandbox: Sandbox, targets: dict[str, str], host_listener: int
) -> None:
    peer = manager.create(kernel_id="network-peer")
    try:
        # internet (the default): private targets and the host are blocked, DNS works
        assert manager.egress(sandbox).mode == "internet"
        assert not reaches(manager, sandbox, targets["inside"], TARGET_PORT)
        assert not reaches(manager, sandbox, gateway(manager, sandbox), host_listener)
        assert resolves(manager, sandbox, peer.name)

        manager.set_egress(sandbox, manager.network_policy({"mode": "allow", "cidrs": ["10.231.5.0/24"]}))
        assert reaches(manager, sandbox, targets["inside"], TARGET_PORT)
        assert not reaches(manager, sandbox, targets["outside"], TARGET_PORT)

        manager.set_egress(sandbox, manager.network_policy("none"))
        assert not reaches(manager, sandbox, targets["inside"], TARGET_PORT)
        assert not resolves(manager, sandbox, peer.name)

        stopped = manager.stop(sandbox)
        started = manager.start(stopped)
        manager.wait_for_agent(started)
        assert not reaches(manager, started, targets["inside"], TARGET_PORT)
        assert not resolves(manager, started, peer.name)

        manager.set_egress(started, manager.network_policy("internet"))
        assert resolves(manager, started, peer.name)
        assert not reaches(manager, started, targets["outside"], TARGET_PORT)
    finally:
        manager.remove(peer)


def test_the_sandbox_cannot_undo_its_policy(manager: SandboxManager, sandbox: Sandbox) -> None:
    manager.set_egress(sandbox, manager.network_policy("none"))
    agent = manager.agent(sandbox)
    command = 'python3 -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)"'
    result = run_blocking(lambda: agent.processes.exec(command, None, {}, 10))
    assert result["exit_code"] != 0 and "Operation not permitted" in result["stderr"]


@pytest.mark.parametrize(
    "value, message",
    [
        ({"mode": "allow", "cidrs": ["10.0.0.0/33"]}, "not a CIDR block"),
        ({"mode": "allow", "cidrs": ["not-an-address"]}, "not a CIDR block"),
        ({"mode": "allow", "cidrs": [f"10.0.{i}.0/24" for i in range(11)]}, "at most 10"),
        ({"mode": "allow", "cidrs": ["0.0.0.0/0"]}, "would allow everything"),
        ({"mode": "allow", "cidrs": []}, "at least one"),
        ({"mode": "everything"}, "must be one of"),
        ({"mode": "internet", "cidrs": ["10.0.0.0/8"]}, "only go with mode allow"),
        (42, "network must be"),
    ],
)
def test_bad_policies_are_refused(manager: SandboxManager, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        manager.network_policy(value)


def test_five_cidrs_as_in_the_article(manager: SandboxManager) -> None:
    policy = manager.network_policy(
        {"mode": "allow", "cidrs": [f"203.0.{i}.0/24" for i in range(5)] + ["2001:db8::/48"]}
    )
    assert len(policy.cidrs) == 6


def test_policy_through_the_api_and_the_magic(jupyter_server: Server, targets: dict[str, str]) -> None:
    import asyncio

    from conftest import execute_over_websocket

    status, created = jupyter_server.request("POST", "/sandbox/api/sandboxes", {"network": "none"})
    assert status == 201, created
    box = f"/sandbox/api/sandboxes/{created['id']}"
    try:
        assert jupyter_server.request("GET", box)[1]["network"] == {"mode": "none", "cidrs": []}
        status, info = jupyter_server.request("PATCH", box, {"network": {"mode": "allow", "cidrs": ["10.231.5.0/24"]}})
        assert status == 200 and info["network"]["cidrs"] == ["10.231.5.0/24"]
        status, result = jupyter_server.request(
            "POST",
            f"{box}/process/exec",
            {
                "command": (
                    f"python3 -c \"import socket; socket.create_connection(('{targets['inside']}', {TARGET_PORT}), timeout=3)\""
                )
            },
        )
        assert result["exit_code"] == 0
        for body, message in (
            ({"network": {"mode": "allow", "cidrs": ["0.0.0.0/0"]}}, "everything"),
            ({"network": "bogus"}, "must be one of"),
            ({"cpu": 2}, "unknown fields: cpu; this route takes: config, dry_run, kernel_id, network"),
        ):
            status, error = jupyter_server.request("PATCH", box, body)
            assert status == 400 and message in error["message"]
    finally:
        jupyter_server.request("DELETE", box)

    status, kernel = jupyter_server.request("POST", "/api/kernels", {"name": "sandbox-python"})
    try:
        asyncio.run(execute_over_websocket(jupyter_server, kernel["id"], "print('sandbox up')"))
        seen = asyncio.run(execute_over_websocket(jupyter_server, kernel["id"], "%sandbox network none\n%sandbox"))
        text = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
        assert "network: none" in text and "network   none" in text
        seen = asyncio.run(execute_over_websocket(jupyter_server, kernel["id"], "%sandbox network allow 1.2.3.4/40"))
        errors = [m["content"]["evalue"] for m in seen if m["msg_type"] == "error"]
        assert errors and "not a CIDR block" in errors[0]
        # Two halves are everything, too.
        seen = asyncio.run(
            execute_over_websocket(jupyter_server, kernel["id"], "%sandbox network allow 0.0.0.0/1 128.0.0.0/1")
        )
        errors = [m["content"]["evalue"] for m in seen if m["msg_type"] == "error"]
        assert errors and "more than one /8 block" in errors[0]
    finally:
        jupyter_server.request("DELETE", f"/api/kernels/{kernel['id']}")
