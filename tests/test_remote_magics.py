# ruff: noqa: F811  (the fixtures imported from test_remote_kernel are parameters by name)
"""Every `%sandbox` magic in hub mode: the proxy kernel reaches no engine (DOCKER_HOST names a socket
that does not exist) and runs `%sandbox config`, `network`, `secret`, `pty`, `desktop` and `exec`
through the real sandbox service, with the output and errors single-machine mode gives; Bob's token
sees nothing of what Alice's magics made. The service, the kernel and the notebook folder are
tests/test_remote_kernel.py's fixtures (one service and one kernel for this module)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import SandboxKernel, Server, box, wait_until
from service_support import ServiceProcess
from test_remote_kernel import (  # noqa: F401  (fixtures, used by name)
    hub_kernel,
    notebook_folder,
    service,
    service_process,
    status_json,
)

from jupyter_sandbox.sandbox.network import EgressPolicy


@pytest.fixture(scope="module")
def bob(service_process: ServiceProcess) -> Server:
    return Server(service_process.port, service_process.token("bob"))


def settled(kernel: SandboxKernel, line: str, **kwargs: Any) -> Any:
    """The line's run; run again when it was aborted by the stop-on-error of the failed cell before it
    (a request that reached the kernel while it was aborting the queue: the front end's choice, not
    this line's answer)."""
    run = kernel.run(line, **kwargs)
    return kernel.run(line, **kwargs) if run.status == "aborted" else run


def ok(kernel: SandboxKernel, line: str, **kwargs: Any) -> str:
    run = settled(kernel, line, **kwargs)
    assert run.status == "ok", (line, run.error, run.stdout)
    return run.stdout


def refused(kernel: SandboxKernel, line: str) -> str:
    run = settled(kernel, line)
    assert run.status == "error", (line, run.stdout)
    return str((run.error or {}).get("evalue"))


def test_network_shown_changed_logged_and_refused_as_locally(hub_kernel: SandboxKernel, bob: Server) -> None:
    sandbox_id = status_json(hub_kernel)["id"]
    assert ok(hub_kernel, "%sandbox network") == f"network: {EgressPolicy(mode='internet').describe()}\n"
    assert ok(hub_kernel, "%sandbox network none") == f"network: {EgressPolicy(mode='none').describe()}\n"
    assert status_json(hub_kernel)["network"]["mode"] == "none"
    assert ok(hub_kernel, "%sandbox network log") == "no connections through the egress gateway yet\n"
    # Bad input: refused by the magic's parser, or by the service with the operations layer's words.
    assert "invalid choice: 'everything'" in refused(hub_kernel, "%sandbox network everything")
    assert "takes no domains" in refused(hub_kernel, "%sandbox network none example.org")
    assert "300.1.2.3/8" in refused(hub_kernel, "%sandbox network allow 300.1.2.3/8")
    assert status_json(hub_kernel)["network"]["mode"] == "none"
    for path in ("/network", "/network/log"):
        assert bob.request("GET", box(sandbox_id, path))[0] == 404
    assert bob.request("PATCH", box(sandbox_id), {"network": {"mode": "internet"}})[0] == 404
    assert ok(hub_kernel, "%sandbox network internet") == f"network: {EgressPolicy(mode='internet').describe()}\n"


def test_a_secret_typed_at_the_prompt_goes_to_the_service_only(
    hub_kernel: SandboxKernel, bob: Server, service: Server, service_process: ServiceProcess
) -> None:
    sandbox_id = status_json(hub_kernel)["id"]
    value = "hub-secret-" + "7f3a9c" * 4
    prompts: list[dict[str, Any]] = []

    def answer(message: dict[str, Any]) -> None:
        prompts.append(message["content"])
        hub_kernel.client.input(value)

    out = ok(hub_kernel, "%sandbox secret set API_TOKEN --host api.example.test", stdin_hook=answer)
    assert prompts and prompts[0]["password"] is True
    assert "kept API_TOKEN on the host for api.example.test" in out and value not in out
    assert ok(hub_kernel, "%sandbox secret list") == "API_TOKEN  for api.example.test\n"
    # The sandbox has no way to the value (its environment holds at most a placeholder) ...
    inside = ok(hub_kernel, "import os; print(sorted(v for v in os.environ.values() if 'hub-secret' in v))")
    assert inside == "[]\n"
    # ... and the service keeps no log of it.
    assert value not in service_process.log.read_text(errors="replace")
    # Bob's token sees neither the secret nor its name, and cannot delete it.
    status, body = bob.request("GET", box(sandbox_id, "/secrets"))
    assert status == 404 and "API_TOKEN" not in str(body)
    assert bob.request("DELETE", box(sandbox_id, "/secrets/API_TOKEN"))[0] == 404
    assert "needs the secret's NAME" in refused(hub_kernel, "%sandbox secret delete")
    assert "no secret 'NOPE'" in refused(hub_kernel, "%sandbox secret delete NOPE")
    assert ok(hub_kernel, "%sandbox secret delete API_TOKEN") == "deleted the secret API_TOKEN\n"
    assert ok(hub_kernel, "%sandbox secret list") == "no secrets\n"
    assert service.request("GET", box(sandbox_id, "/secrets"))[1] == {"secrets": []}


def test_config_live_and_by_a_fresh_container_that_the_kernel_follows(
    hub_kernel: SandboxKernel, service: Server, bob: Server
) -> None:
    before = status_json(hub_kernel)
    assert ok(hub_kernel, "%sandbox config --cpu 1.5") == "changed live: cpu 1.5 vCPU\n"
    assert status_json(hub_kernel)["limits"]["cpu"] == 1.5
    # Bad input: the parser's refusals, and the operations layer's (through the service).
    assert "must be a positive number" in refused(hub_kernel, "%sandbox config --cpu -1")
    assert "at least 16 MiB" in refused(hub_kernel, "%sandbox config --memory 1m")
    # Someone else (Bob, or Alice's own token from outside the kernel) cannot recreate it under the kernel.
    assert bob.request("PATCH", box(before["id"]), {"config": {"pids": 300}})[0] == 404
    status, body = service.request("PATCH", box(before["id"]), {"config": {"pids": 300}})
    assert status == 409 and "kernel attached" in body["message"]
    status, body = service.request("PATCH", box(before["id"]), {"config": {"cpu": "two"}})
    assert status == 400 and "cpu must be a positive number" in body["message"]
    ok(hub_kernel, "kept = 1\nopen('/home/sandbox/config-kept.txt', 'w').write('files stay')")
    out = ok(hub_kernel, "%sandbox config --pids 300 --env STAGE=hub", timeout=180)
    assert out.startswith("restarting the sandbox to apply env, pids (files in /home/sandbox are kept")
    # The kernel follows the new container: variables gone, files and the new limits and env there.
    check = "import os\nprint('kept' in globals(), open('/home/sandbox/config-kept.txt').read(), os.environ['STAGE'])"
    assert ok(hub_kernel, check, timeout=120) == "False files stay hub\n"
    after = status_json(hub_kernel)
    assert after["id"] == before["id"] and after["limits"]["pids"] == 300 and after["limits"]["cpu"] == 1.5


def test_ptys_created_typed_into_followed_and_killed(hub_kernel: SandboxKernel, bob: Server) -> None:
    sandbox_id = status_json(hub_kernel)["id"]
    out = ok(hub_kernel, "%sandbox pty create --id hubpty --cols 100 --rows 30")
    assert out.startswith("PTY hubpty running in /home/sandbox (100x30)")
    assert ok(hub_kernel, "%sandbox pty send hubpty 'echo pty-$((6*7))\\n'") == "sent 18 characters to PTY hubpty\n"
    assert "pty-42" in ok(hub_kernel, "%sandbox pty wait hubpty --for pty-42 --timeout 20")
    listed = ok(hub_kernel, "%sandbox pty list")
    assert listed.startswith("hubpty") and "100x30" in listed and "running" in listed
    # What the operations layer refuses, in its words; an unknown PTY is one Alice does not have.
    assert "did not exit within 1 seconds" in refused(hub_kernel, "%sandbox pty wait hubpty --timeout 1")
    assert "nope" in refused(hub_kernel, "%sandbox pty send nope 'x'")
    assert "unknown action 'open'" in refused(hub_kernel, "%sandbox pty open")
    for method, path, body in (
        ("GET", "/ptys", None),
        ("POST", "/ptys/hubpty/input", {"data": "exit\n"}),
        ("GET", "/ptys/hubpty/output?timeout=1", None),
        ("DELETE", "/ptys/hubpty", None),
    ):
        assert bob.request(method, box(sandbox_id, path), body)[0] == 404, path
    assert ok(hub_kernel, "%sandbox pty kill hubpty").startswith("PTY hubpty killed")
    assert "exited" in ok(hub_kernel, "%sandbox pty list")


def test_an_interrupt_stops_following_a_pty(hub_kernel: SandboxKernel) -> None:
    ok(hub_kernel, "%sandbox pty create --id quiet")
    reply = hub_kernel.interrupted("%sandbox pty wait quiet --timeout 120", hub_kernel.km.interrupt_kernel, wait=2)
    assert reply["content"]["status"] == "error"
    assert "stopped waiting" in reply["content"]["evalue"] + str(reply["content"].get("traceback"))
    assert ok(hub_kernel, "%sandbox pty kill quiet").startswith("PTY quiet killed")


def test_desktop_answers_as_locally_and_ssh_says_what_to_use(hub_kernel: SandboxKernel) -> None:
    sandbox_id = status_json(hub_kernel)["id"]
    assert ok(hub_kernel, "%sandbox desktop status") == f"desktop of sandbox {sandbox_id}: inactive (1280x800)\n"
    # The default image has no desktop: the agent's refusal, through the service, as locally.
    message = refused(hub_kernel, "%sandbox desktop start")
    assert message.startswith("%sandbox desktop: this sandbox's image has no desktop"), message
    assert "WIDTHxHEIGHT" in refused(hub_kernel, "%sandbox desktop start --size big")
    message = refused(hub_kernel, "%sandbox ssh")
    assert "no SSH gateway" in message and "%sandbox pty" in message


def test_exec_output_streams_as_it_comes_and_an_interrupt_stops_the_command(
    hub_kernel: SandboxKernel, bob: Server
) -> None:
    sandbox_id = status_json(hub_kernel)["id"]
    status, body = bob.request("POST", box(sandbox_id, "/process/exec"), {"command": "id", "stream": True})
    assert status == 404 and "uid" not in str(body)
    arrivals: list[float] = []

    def seen(message: dict[str, Any]) -> None:
        if message["msg_type"] == "stream" and "tick" in message["content"]["text"]:
            arrivals.append(time.monotonic())

    run = hub_kernel.run("%sandbox exec for i in 1 2 3; do echo tick$i; sleep 1; done", output_hook=seen)
    assert run.status == "ok", run.error
    assert run.stdout.split() == ["tick1", "tick2", "tick3"]
    # Streamed: the first line came well before the last (not all at the command's end).
    assert len(arrivals) >= 2 and arrivals[-1] - arrivals[0] >= 1.0
    started = threading.Event()

    def interrupt() -> None:
        started.set()
        hub_kernel.km.interrupt_kernel()

    reply = hub_kernel.interrupted("%sandbox exec echo $$ > /tmp/long.pid; sleep 300", interrupt, wait=2)
    assert started.is_set() and reply["content"]["status"] == "error"
    # The command itself was stopped in the sandbox, not only waited for.
    check = "import os\npid = open('/tmp/long.pid').read().strip()\nprint(os.path.exists(f'/proc/{pid}'))"
    assert wait_until(lambda: hub_kernel.run(check).stdout == "False\n", timeout=20, interval=0.5)
    assert "exited with code 3" in refused(hub_kernel, "%sandbox exec exit 3")
