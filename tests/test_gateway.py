"""The egress gateway: domain allow lists, secrets the sandbox never sees, and the connection log.

Real parts only: a Jupyter server, sandboxes, and the upstream sites in a container on a network of
the test's own (tests/gateway_upstream.py: HTTP, HTTPS with a test CA, a package index, an echo of
the request, a DNS listener). The gateway resolves the sites' names through the resolve_overrides
the test configures, so nothing goes to any other address. What runs in the sandbox is
tests/gateway_client.py, as a program there would.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KERNEL_NAME, ROOT, Server, box, exec_command, start_jupyter_server, wait_until
from gateway_support import NAMES, Upstream, upstream_sites
from harness import execute_request
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox import binding, network
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.gateway import control, domains, state, vault
from jupyter_sandbox.sandbox.manager import SandboxManager

RUN = secrets.token_hex(3)
NETWORK, SITES = f"jsbx-gw-{RUN}", f"jsbx-gwup-{RUN}"
ALLOWED = ["pypi.test", "files.pypi.test", "secret.test", "other.test"]
SECRET_VALUE = "sk-live-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def sites(
    docker_backend: DockerBackend, sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Upstream]:
    with upstream_sites(docker_backend, sandbox_image, SITES, tmp_path_factory.mktemp("gateway-sites")) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def server(
    sites: Upstream, docker_backend: DockerBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = tmp_path_factory.mktemp("gateway-config")
    (config / "jupyter_sandbox_config.json").write_text(
        json.dumps(
            {
                "SandboxManager": {
                    "network_name": NETWORK,
                    "warm_pool_size": 0,
                    # The test CA: the sandbox trusts the sites it reaches through plain tunnels.
                    "extra_ca_certs": str(sites.ca_file),
                    "network_deny_domains": ["denied.test", "*.blocked.test"],
                    "max_network_domains": 8,
                },
                "EgressGateway": {
                    "resolve_overrides": {name: sites.address for name in [*NAMES, "denied.test"]},
                    # ... and the gateway trusts them where it re-encrypts (hosts with a secret).
                    "upstream_ca_file": str(sites.ca_file),
                },
            }
        )
    )
    log = tmp_path_factory.mktemp("gateway-log") / "server.log"
    server, process = start_jupyter_server(
        tmp_path_factory.mktemp("gateway-root"), log=log, env={"JUPYTER_CONFIG_DIR": str(config)}
    )
    server.log = log  # type: ignore[attr-defined]
    yield server
    process.terminate()
    process.wait(timeout=60)
    manager = SandboxManager(backend=docker_backend, network_name=NETWORK)
    for sandbox in manager.list(owner=manager.owner):
        manager.remove(sandbox)
    control.stop(NETWORK)
    with binding.host_lock("network"):
        docker_backend.remove_network_if_unused(NETWORK)


def create(server: Server, network_policy: Any) -> str:
    status, answer = server.request("POST", "/sandbox/api/sandboxes", {"network": network_policy}, timeout=300)
    assert status == 201, answer
    sandbox_id = answer["id"]
    client = (ROOT / "tests" / "gateway_client.py").read_bytes()
    status, answer = server.request(
        "PUT",
        box(sandbox_id, "/files/content?path=gwc.py"),
        raw=client,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 200, answer
    return sandbox_id


@pytest.fixture(scope="module")
def sandbox(server: Server) -> Iterator[str]:
    sandbox_id = create(server, {"mode": "allow", "domains": ALLOWED})
    yield sandbox_id
    server.request("DELETE", box(sandbox_id))


def run(server: Server, sandbox_id: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """gateway_client.py in the sandbox; its JSON line."""
    answer = exec_command(server, sandbox_id, "python3 gwc.py " + " ".join(shlex.quote(a) for a in args), timeout)
    lines = [line for line in answer["stdout"].splitlines() if line.startswith("{")]
    assert lines, answer
    return json.loads(lines[-1])


def set_policy(server: Server, sandbox_id: str, value: Any) -> tuple[int, Any]:
    return server.request("PATCH", box(sandbox_id), {"network": value})


def log_entries(server: Server, sandbox_id: str) -> list[dict[str, Any]]:
    status, answer = server.request("GET", box(sandbox_id, "/network/log?limit=500"))
    assert status == 200, answer
    return answer["entries"]


def logged(server: Server, sandbox_id: str, host: str, allowed: bool) -> list[dict[str, Any]]:
    return [e for e in log_entries(server, sandbox_id) if e["host"] == host and e["allowed"] is allowed]


@pytest.fixture
def reset(server: Server, sandbox: str) -> Iterator[None]:
    assert set_policy(server, sandbox, {"mode": "allow", "domains": ALLOWED})[0] == 200
    yield
    set_policy(server, sandbox, {"mode": "allow", "domains": ALLOWED})


# -- policy input ---------------------------------------------------------------------------------


def test_domains_are_normalised_and_bad_ones_refused_unit() -> None:
    assert domains.normalise("PyPI.org.") == "pypi.org"
    assert domains.normalise("münchen.de") == "xn--mnchen-3ya.de"
    assert domains.matches("a.b.npmjs.org", "*.npmjs.org")
    assert not domains.matches("npmjs.org", "*.npmjs.org")
    assert not domains.matches("evilnpmjs.org", "*.npmjs.org")
    assert not domains.matches("npmjs.org.evil", "*.npmjs.org")
    # Cyrillic letters that read as Latin, alone or mixed in, by Unicode and by punycode.
    for bad in ("\u0440\u0430\u0443\u0440\u0430l.com", "p\u0430ypal.com", "xn--80ak6aa92e.com"):
        with pytest.raises(domains.DomainError, match="look-alike"):
            domains.normalise(bad)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["*"], "every domain"),
        (["*.test"], "top-level domain"),
        (["pypi..org"], "empty label"),
        (["-pypi.org"], "not a DNS label"),
        (["https://pypi.org/simple"], "not a domain name"),
        (["pypi.org:443"], "not a domain name"),
        (["py pi.org"], "spaces or control characters"),
        (["pypi.org\n"], "control characters"),
        (["p\u0430ypal.com"], "mixes scripts"),
        (["\u0440\u0430\u0443\u0440\u0430l.com"], "look-alike"),
        (["xn--80ak6aa92e.com"], "look-alike"),
        (["localhost"], "not a full domain name"),
        (["a" * 64 + ".org"], "not a DNS label"),
        ([f"host{i}.example.org" for i in range(9)], "at most 8 domains"),
        (["denied.test"], "deny list"),
        (["x.blocked.test"], "deny list"),
    ],
)
def test_bad_domain_lists_are_refused_with_the_reason(
    server: Server, sandbox: str, reset: None, entries: list[str], message: str
) -> None:
    status, answer = set_policy(server, sandbox, {"mode": "allow", "domains": entries})
    assert status == 400, answer
    assert message in answer["message"]
    # The policy in force is unchanged.
    status, current = server.request("GET", box(sandbox, "/network"))
    assert status == 200 and current["domains"] == ALLOWED


# -- reaching allowed sites -------------------------------------------------------------------------


def test_allowed_domain_over_http_and_https(server: Server, sandbox: str, reset: None) -> None:
    for scheme in ("http", "https"):
        answer = run(server, sandbox, "fetch", f"{scheme}://pypi.test/echo")
        assert answer["status"] == 200, answer
        echoed = json.loads(answer["body"])
        assert echoed["host"] == "pypi.test" and echoed["scheme"] == scheme
        # Plain HTTP goes on without the proxy's own headers.
        assert not any(k.startswith("proxy-") for k in echoed["headers"])
    assert logged(server, sandbox, "pypi.test", True)
    https = [e for e in logged(server, sandbox, "pypi.test", True) if e["port"] == 443]
    assert https and https[-1]["bytes_received"] > 0 and not https[-1]["intercepted"]


def test_pip_install_from_an_https_index_through_the_gateway(server: Server, sandbox: str, reset: None) -> None:
    answer = exec_command(
        server,
        sandbox,
        "python3 -m pip install --no-cache-dir --index-url https://pypi.test/simple/ gwdemo "
        "&& python3 -c 'import gwdemo; print(\"answer\", gwdemo.ANSWER)'",
        timeout=180,
        http_timeout=240,
    )
    assert answer["exit_code"] == 0, answer
    assert "answer 42" in answer["stdout"]
    assert logged(server, sandbox, "files.pypi.test", True)


def test_a_domain_off_the_list_is_refused_with_a_message_naming_the_policy(
    server: Server, sandbox: str, reset: None
) -> None:
    for url in ("https://big.test/echo", "http://big.test/echo"):
        answer = run(server, sandbox, "fetch", url)
        assert answer["status"] in (0, 403), answer
        text = answer.get("error", "") + answer.get("body", "")
        assert "not on the sandbox's network allow list" in text, answer
    blocked = logged(server, sandbox, "big.test", False)
    assert len(blocked) >= 2 and all("allow list" in e["reason"] for e in blocked)
    # The operator's deny list wins even over a name that resolves.
    answer = run(server, sandbox, "fetch", "https://denied.test/echo")
    assert answer["status"] in (0, 403), answer


def test_a_wildcard_matches_subdomains_but_not_look_alikes(server: Server, sandbox: str, reset: None) -> None:
    assert set_policy(server, sandbox, {"mode": "allow", "domains": ["*.pypi.test"]})[0] == 200
    assert run(server, sandbox, "fetch", "https://files.pypi.test/echo")["status"] == 200
    for host in ("pypi.test", "evilpypi.test", "pypi.test.evil", "files.pypi.test.evil"):
        answer = run(server, sandbox, "fetch", f"https://{host}/echo")
        assert answer["status"] != 200, (host, answer)
        assert logged(server, sandbox, host, False), host


def test_the_tls_server_name_must_be_the_connect_host(server: Server, sandbox: str, reset: None) -> None:
    answer = run(server, sandbox, "sni", "pypi.test", "big.test")
    assert answer["tunnel"] and not answer["handshake"], answer
    assert wait_until(
        lambda: any("TLS server name" in e["reason"] for e in logged(server, sandbox, "pypi.test", False)), 10
    )


def test_no_dns_and_no_direct_connection_in_domain_mode(
    server: Server, sandbox: str, sites: Upstream, reset: None
) -> None:
    # Docker's embedded resolver would answer the sandbox's own alias without asking anyone else.
    answer = run(server, sandbox, "udp", network.EMBEDDED_DNS, "53", binding.base_name(sandbox))
    assert "answered" not in answer, answer
    before = sites.dns_queries()
    answer = run(server, sandbox, "udp", sites.address, "53")
    assert "answered" not in answer, answer
    assert sites.dns_queries() == before
    # The allowed site's own address, bypassing the proxy.
    for port in ("443", "80"):
        answer = run(server, sandbox, "direct", sites.address, port)
        assert answer["connected"] is False, answer
    # The gateway's host, on any other port.
    proxy = run(server, sandbox, "fetch", "https://pypi.test/echo")
    assert proxy["status"] == 200


# -- secrets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "TOKEN", "value": "a\r\nX-Evil: 1", "hosts": ["secret.test"]}, "control characters"),
        ({"name": "TOKEN", "value": "tab\there", "hosts": ["secret.test"]}, "printable ASCII"),
        ({"name": "TOKEN", "value": "x" * 9000, "hosts": ["secret.test"]}, "at most 8192"),
        ({"name": "TOKEN", "value": "", "hosts": ["secret.test"]}, "non-empty"),
        ({"name": "1TOKEN", "value": "v", "hosts": ["secret.test"]}, "environment variable name"),
        ({"name": "PATH", "value": "v", "hosts": ["secret.test"]}, "rely on"),
        ({"name": "HTTPS_PROXY", "value": "v", "hosts": ["secret.test"]}, "rely on"),
        ({"name": "TOKEN", "value": "v", "hosts": []}, "hosts"),
        ({"name": "TOKEN", "value": "v", "hosts": ["*.secret.test"]}, "wildcard"),
        ({"name": "TOKEN", "value": "v", "hosts": ["p\u0430ypal.com"]}, "mixes scripts"),
        ({"name": "TOKEN", "value": "v", "hosts": ["secret.test"], "extra": 1}, "unknown"),
    ],
)
def test_bad_secrets_are_refused(server: Server, sandbox: str, body: dict[str, Any], message: str) -> None:
    status, answer = server.request("POST", box(sandbox, "/secrets"), body)
    assert status == 400, answer
    assert message in answer["message"]
    value = body.get("value")
    if isinstance(value, str) and len(value) > 3:
        assert value not in json.dumps(answer)


def test_a_secret_reaches_its_host_and_only_its_host(server: Server, sites: Upstream, reset: None) -> None:
    sandbox_id = create(server, {"mode": "allow", "domains": ALLOWED})
    try:
        status, answer = server.request(
            "POST", box(sandbox_id, "/secrets"), {"name": "API_TOKEN", "value": SECRET_VALUE, "hosts": ["secret.test"]}
        )
        assert status == 201, answer
        assert SECRET_VALUE not in json.dumps(answer)
        placeholder = answer["placeholder"]
        status, listed = server.request("GET", box(sandbox_id, "/secrets"))
        assert status == 200 and [s["name"] for s in listed["secrets"]] == ["API_TOKEN"]
        assert SECRET_VALUE not in json.dumps(listed)
        # Kept on the host, for this user alone.
        path = Path(vault._path(sandbox_id))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # The environment of the sandbox's processes has the placeholder from its next start.
        assert server.request("POST", box(sandbox_id, "/stop"), timeout=120)[0] == 200
        assert server.request("POST", box(sandbox_id, "/start"), timeout=300)[0] == 200
        env = exec_command(server, sandbox_id, "printenv API_TOKEN")
        assert env["stdout"].strip() == placeholder

        headers = ["Authorization: Bearer $API_TOKEN", "X-Api-Key: $API_TOKEN", "X-Custom: k=$API_TOKEN;"]
        answer = run(server, sandbox_id, "fetch", "https://secret.test/echo", *headers)
        assert answer["status"] == 200, answer
        # The site got the value in every header that held the placeholder...
        arrived = sites.requests()[-1]
        assert arrived["host"] == "secret.test" and arrived["scheme"] == "https"
        seen = arrived["headers"]
        assert seen["authorization"] == f"Bearer {SECRET_VALUE}"
        assert seen["x-api-key"] == SECRET_VALUE and seen["x-custom"] == f"k={SECRET_VALUE};"
        # ... and its echo of them reaches the sandbox masked: a host that reflects a header does
        # not hand the sandbox the value.
        echoed = json.loads(answer["body"])["headers"]
        assert echoed["authorization"] == "Bearer " + "*" * len(SECRET_VALUE)
        assert SECRET_VALUE not in answer["body"]
        entry = logged(server, sandbox_id, "secret.test", True)[-1]
        assert entry["intercepted"]

        # Any other host gets the placeholder, and so does the secret's host over plain HTTP.
        for url in ("https://other.test/echo", "http://secret.test/echo"):
            answer = run(server, sandbox_id, "fetch", url, *headers)
            assert answer["status"] == 200, answer
            seen = sites.requests()[-1]["headers"]
            assert seen["authorization"] == f"Bearer {placeholder}" and SECRET_VALUE not in json.dumps(seen)
        # A listener of the sandbox's own (on its loopback, no proxy) hears the placeholder only.
        listener = exec_command(
            server,
            sandbox_id,
            "python3 - <<'EOF'\n"
            "import socket, threading, os, urllib.request\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 8765)); s.listen(1); got = []\n"
            "def serve():\n"
            "    c, _ = s.accept(); got.append(c.recv(65536)); c.sendall(b'HTTP/1.1 204 No\\r\\n\\r\\n'); c.close()\n"
            "t = threading.Thread(target=serve); t.start()\n"
            "r = urllib.request.Request('http://127.0.0.1:8765/', headers={'Authorization': os.environ['API_TOKEN']})\n"
            "try:\n    urllib.request.urlopen(r, timeout=10)\nexcept Exception:\n    pass\n"
            "t.join(); print(got[0].decode())\n"
            "EOF",
        )
        assert placeholder in listener["stdout"] and SECRET_VALUE not in listener["stdout"]

        # Nowhere in the sandbox: environment, its files, any process's /proc.
        # (A pattern that does not match its own command line: one letter in brackets.)
        pattern = shlex.quote(f"{SECRET_VALUE[:-1]}[{SECRET_VALUE[-1]}]")
        search = exec_command(
            server,
            sandbox_id,
            f"grep -rls -- {pattern} /proc/[0-9]*/environ /proc/[0-9]*/cmdline "
            f"/opt/jupyter-sandbox /home/sandbox /tmp /etc 2>/dev/null; env | grep -c -- {pattern}; true",
        )
        assert search["stdout"].strip() == "0", search
        # Never logged: not in the connection log, not in the server's log.
        assert SECRET_VALUE not in json.dumps(log_entries(server, sandbox_id))
        assert SECRET_VALUE.encode() not in Path(server.log).read_bytes()  # type: ignore[attr-defined]

        assert server.request("DELETE", box(sandbox_id, "/secrets/API_TOKEN"))[0] == 204
        assert server.request("DELETE", box(sandbox_id, "/secrets/API_TOKEN"))[0] == 404
        answer = run(server, sandbox_id, "fetch", "https://secret.test/echo", *headers)
        assert SECRET_VALUE not in answer["body"]
        server.request(
            "POST", box(sandbox_id, "/secrets"), {"name": "API_TOKEN", "value": SECRET_VALUE, "hosts": ["secret.test"]}
        )
    finally:
        assert server.request("DELETE", box(sandbox_id), timeout=120)[0] == 204
    # Gone with the sandbox.
    assert not Path(vault._path(sandbox_id)).exists()
    assert not state.log_path(sandbox_id).exists()


# -- live changes and the log -------------------------------------------------------------------------


def test_a_live_change_applies_to_new_connections_and_cuts_forbidden_ones(
    server: Server, sandbox: str, reset: None
) -> None:
    exec_command(server, sandbox, "rm -f stream.out")
    session = f"stream{RUN}"
    assert server.request("POST", box(sandbox, "/sessions"), {"id": session})[0] in (200, 201)
    status, answer = server.request(
        "POST",
        box(sandbox, f"/sessions/{session}/commands"),
        {"command": "python3 gwc.py stream https://other.test/slow 50 > stream.out 2>&1", "run_async": True},
    )
    assert status in (200, 201, 202), answer
    assert wait_until(lambda: "first" in exec_command(server, sandbox, "cat stream.out")["stdout"], 30)
    # pypi.test stays; other.test goes.
    assert set_policy(server, sandbox, {"mode": "allow", "domains": ["pypi.test"]})[0] == 200
    assert wait_until(lambda: '"ended"' in exec_command(server, sandbox, "cat stream.out")["stdout"], 20)
    ended = json.loads(exec_command(server, sandbox, "tail -n 1 stream.out")["stdout"])
    assert ended["ended"] != "time" and ended["got"] < 300, ended
    assert wait_until(lambda: any("cut" in e["reason"] for e in logged(server, sandbox, "other.test", True)), 10)
    assert run(server, sandbox, "fetch", "https://other.test/echo")["status"] != 200
    assert run(server, sandbox, "fetch", "https://pypi.test/echo")["status"] == 200
    # And back: a new connection works at once.
    assert set_policy(server, sandbox, {"mode": "allow", "domains": ["pypi.test", "other.test"]})[0] == 200
    assert run(server, sandbox, "fetch", "https://other.test/echo")["status"] == 200


def test_the_log_shows_each_attempt_and_stays_bounded(server: Server, sandbox: str, reset: None) -> None:
    run(server, sandbox, "fetch", "https://pypi.test/echo")
    run(server, sandbox, "fetch", "https://nowhere.test/echo")
    entries = log_entries(server, sandbox)
    allowed = [e for e in entries if e["host"] == "pypi.test" and e["allowed"]][-1]
    blocked = [e for e in entries if e["host"] == "nowhere.test" and not e["allowed"]][-1]
    for entry in (allowed, blocked):
        assert {"time", "host", "port", "allowed", "bytes_sent", "bytes_received", "reason"} <= set(entry)
        assert entry["port"] == 443
    assert allowed["bytes_received"] > 0 and "allowed by pypi.test" in allowed["reason"]
    status, answer = server.request("GET", box(sandbox, "/network/log?limit=2"))
    assert status == 200 and len(answer["entries"]) == 2 and answer["blocked"] >= 1
    assert server.request("GET", box(sandbox, "/network/log?limit=0"))[0] == 400
    # Bounded: the file never holds more than twice the kept entries.
    log = state.ConnectionLog(limit=5)
    probe = f"probe{RUN}"
    try:
        for number in range(23):
            log.add(probe, {"host": f"h{number}.test", "allowed": False})
        kept = state.read_log(probe, limit=None)
        assert len(kept) < 10 and kept[-1]["host"] == "h22.test"
    finally:
        state.forget(probe)


def test_a_live_switch_from_internet_into_domain_mode_closes_everything_else(server: Server, sites: Upstream) -> None:
    sandbox_id = create(server, "internet")
    try:
        assert set_policy(server, sandbox_id, {"mode": "allow", "domains": ["pypi.test"]})[0] == 200
        assert run(server, sandbox_id, "direct", sites.address, "443")["connected"] is False
        answer = run(server, sandbox_id, "udp", network.EMBEDDED_DNS, "53", binding.base_name(sandbox_id))
        assert "answered" not in answer, answer
        status, info = server.request("GET", box(sandbox_id, "/network"))
        assert status == 200 and info["gateway"] is True and info["domains"] == ["pypi.test"]
    finally:
        server.request("DELETE", box(sandbox_id), timeout=120)


def test_policy_rules_accept_only_the_gateway_on_the_host_unit() -> None:
    policy = network.EgressPolicy("allow", ["203.0.113.0/24"], ["pypi.org"])
    rules = network._rules(policy, 4, ["172.30.0.1"], dns_in_allow_mode=True, gateway=("172.30.0.1", 3128))
    text = [" ".join(r) for r in rules]
    accept = text.index("-p tcp -d 172.30.0.1 --dport 3128 -j ACCEPT")
    assert accept < text.index("-d 172.30.0.1 -j JUPYTER-SANDBOX-REFUSE")
    assert text[0] == f"-d {network.EMBEDDED_DNS} -j JUPYTER-SANDBOX-REFUSE"  # no DNS, whatever dns_in_allow_mode says
    assert text[-1] == "-j JUPYTER-SANDBOX-REFUSE"
    assert not any("--dport 53" in line for line in text)


# -- the magics, in a notebook's kernel -------------------------------------------------------------


async def _cell(
    server: Server, kernel_id: str, code: str, answer: str | None = None, timeout: float = 300
) -> list[dict]:
    """A cell run as JupyterLab runs it, with input allowed: a password request is answered with
    `answer`. Every message of the cell, the front end's input_reply excluded."""
    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?token={server.token}"
    connection = await websocket_connect(url)
    session, msg_id = uuid.uuid4().hex, uuid.uuid4().hex
    request = json.loads(execute_request(code, msg_id, session))
    request["content"]["allow_stdin"] = True
    await connection.write_message(json.dumps(request))
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(connection.read_message(), timeout=timeout)
        assert raw is not None, "the websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if msg["msg_type"] == "input_request":
            assert msg["content"]["password"] is True
            reply = {
                "header": {
                    "msg_id": uuid.uuid4().hex,
                    "msg_type": "input_reply",
                    "username": "test",
                    "session": session,
                    "date": "",
                    "version": "5.3",
                },
                "parent_header": msg["header"],
                "metadata": {},
                "channel": "stdin",
                "content": {"value": answer or ""},
            }
            await connection.write_message(json.dumps(reply))
        idle = any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in seen)
        if idle and any(m["msg_type"] == "execute_reply" for m in seen):
            break
    connection.close()
    return seen


def cell(server: Server, kernel_id: str, code: str, answer: str | None = None) -> tuple[str, list[dict]]:
    seen = asyncio.run(_cell(server, kernel_id, code, answer))
    text = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
    text += "".join(m["content"].get("evalue", "") for m in seen if m["msg_type"] == "error")
    return text, seen


def test_the_magics_set_the_policy_show_the_log_and_take_a_secret_unseen(server: Server, sites: Upstream) -> None:
    status, kernel = server.request("POST", "/api/kernels", {"name": KERNEL_NAME})
    assert status == 201, kernel
    kernel_id = kernel["id"]
    try:
        text, _ = cell(server, kernel_id, "%sandbox network allow pypi.test '*.pypi.test' secret.test 10.99.0.0/16")
        assert "through the egress gateway" in text and "*.pypi.test" in text and "10.99.0.0/16" in text, text
        assert "%sandbox restart" in text  # the proxy settings come with the next start
        text, _ = cell(server, kernel_id, "%sandbox network allow 'p\u0430ypal.com'")
        assert "mixes scripts" in text, text
        value = "magic-" + secrets.token_hex(12)
        text, seen = cell(server, kernel_id, "%sandbox secret set SITE_KEY --host secret.test", answer=value)
        assert "kept SITE_KEY" in text, text
        assert any(m["msg_type"] == "input_request" for m in seen)
        text, _ = cell(server, kernel_id, "%sandbox restart --hard")
        code = (
            "import os, json, urllib.request\n"
            "r = urllib.request.Request('https://secret.test/echo', headers={'X-Api-Key': os.environ['SITE_KEY']})\n"
            "seen = json.load(urllib.request.urlopen(r, timeout=30))['headers']['x-api-key']\n"
            "print('placeholder' if os.environ['SITE_KEY'].startswith('jsbx-secret-') else 'VALUE IN ENV')\n"
            f"print('masked' if seen == {'*' * len(value)!r} else 'not masked')\n"
            "try:\n    urllib.request.urlopen('https://big.test/echo', timeout=30)\n"
            "except Exception as exc:\n    print('refused:', exc)\n"
        )
        text, seen = cell(server, kernel_id, code)
        assert "placeholder" in text and "masked" in text and "not masked" not in text, text
        assert sites.requests()[-1]["headers"]["x-api-key"] == value  # the site got it
        assert "not on the sandbox's network allow list" in text, text
        text, _ = cell(server, kernel_id, "%sandbox network log")
        assert "BLOCKED" in text and "big.test:443" in text and "secret.test:443" in text, text
        text, _ = cell(server, kernel_id, "%sandbox secret list")
        assert "SITE_KEY  for secret.test" in text
        # The value was typed once, into the password field; no output of any cell holds it.
        for code in ("%sandbox secret list", "%sandbox network", "%sandbox status --json"):
            text, seen = cell(server, kernel_id, code)
            assert value not in json.dumps(seen)
        text, _ = cell(server, kernel_id, "%sandbox secret delete SITE_KEY")
        assert "deleted" in text
    finally:
        server.request("DELETE", f"/api/kernels/{kernel_id}", timeout=120)
