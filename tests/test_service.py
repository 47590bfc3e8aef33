"""The sandbox service (`jupyter sandbox service`) as its users and an attacker among them see it: a real
service process on the shared engine, with a tokens file of users whose names are this run's own.

Alice makes a sandbox and runs a command; Bob, another user, gets for every route and every method
(websockets too) of Alice's sandbox the very answer an id nobody has gets, and does not see it listed;
absent and bad tokens are told what to send; nothing but the sandbox API is served; quotas refuse the
next sandbox and the next start with a message that says how to free one; a restarted service finds
every user's sandboxes again; a preview link made through the service opens; the CLI refuses bad input.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, box, exec_command, fetch, preview_host, start_preview_app, wait_until
from service_support import HubProcess, ServiceProcess, service_argv, write_tokens
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.spec import LABEL_ID
from jupyter_sandbox.server_extension.handlers import api_routes
from jupyter_sandbox.service import main as service_main

UNKNOWN_ID = "0123456789ab"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Values for the other parts of a route: any a client could send.
SAMPLES = {"session_id": "s1", "command_id": "c1", "pty_id": "p1", "name": "TOKEN", "rest": "nothing/here"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A real JupyterHub, started beside the service (it is waited for only where it is used)."""
    process = HubProcess(tmp_path_factory.mktemp("hub"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def service(sandbox_image: str, hub: HubProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    folder = tmp_path_factory.mktemp("service")
    config: dict[str, Any] = {
        "SandboxManager": {"warm_pool_size": 0},
        # The hub's answers are kept a second: a revoked token stops working that soon.
        "ServiceIdentityProvider": {"hub_cache_seconds": 1},
    }
    # Users of the tokens file and, through the hub, the hub's users: both at once.
    process = ServiceProcess(folder, ["alice", "bob", "carol"], config, env=hub.service_env())
    # Carol's quota, by her name on the service (the suffix is this run's).
    config["SandboxQuota"] = {"overrides": {process.users["carol"]: {"max_running": 1, "max_sandboxes": 2}}}
    process.config_file.write_text(json.dumps(config))
    process.start()
    yield process
    try:
        for user in process.users:
            client = as_user(process, user)
            status, listing = client.request("GET", "/sandbox/api/sandboxes")
            for sandbox in listing.get("sandboxes", []) if status == 200 else []:
                client.request("DELETE", box(sandbox["id"]))
    finally:
        process.stop()


def as_user(service: ServiceProcess, user: str) -> Server:
    """A client of the service with `user`'s token (the Server helper's requests, to the service)."""
    return Server(service.port, service.token(user))


@pytest.fixture(scope="module")
def alices(service: ServiceProcess) -> str:
    status, made = as_user(service, "alice").request("POST", "/sandbox/api/sandboxes", {})
    assert status in (200, 201), made
    return str(made["id"])


def test_alice_creates_a_sandbox_and_runs_a_command(service: ServiceProcess, alices: str) -> None:
    alice = as_user(service, "alice")
    answer = exec_command(alice, alices, "echo hello from $(id -un)")
    assert answer["exit_code"] == 0 and answer["stdout"] == "hello from sandbox\n"
    status, listing = alice.request("GET", "/sandbox/api/sandboxes")
    assert status == 200 and [s["id"] for s in listing["sandboxes"]] == [alices]
    # The operator's network is not hers to open: no allow list reaches a private range.
    for block in ("10.1.2.0/24", "172.17.0.1/32", "192.168.0.0/16", "fd00::/64"):
        status, refused = alice.request("PATCH", box(alices), {"network": {"mode": "allow", "cidrs": [block]}})
        assert status == 400 and "does not let sandboxes reach" in refused["message"], (block, refused)
    # The engine's labels say whose it is.
    [record] = DockerBackend().list_containers({LABEL_ID: alices})
    assert record.labels["io.jupyter-sandbox.owner"] == service.owner("alice")


def route_paths(sandbox_id: str) -> list[str]:
    """Every route of the API (the route table itself, not a copy), with `sandbox_id` and sample values
    in its groups; a group of alternatives (start|stop|restart) gives one path per alternative."""
    paths = []
    for pattern, _handler, _args in api_routes("/", None):  # type: ignore[arg-type]
        expanded = [pattern]
        for name, body in re.findall(r"\(\?P<(\w+)>([^()]*(?:\([^()]*\)[^()]*)*)\)", pattern):
            group = f"(?P<{name}>{body})"
            if name == "sandbox_id":
                values = [sandbox_id]
            elif re.fullmatch(r"[\w|-]+", body):
                values = body.split("|")
            else:
                values = [SAMPLES.get(name, "x1")]
            expanded = [path.replace(group, value, 1) for path in expanded for value in values]
        for path in expanded:
            if sandbox_id in path or path.endswith("nothing/here"):
                paths.append(path.replace("\\", ""))
    return sorted(set(paths))


async def upgrade_status(url: str, token: str) -> int:
    """The HTTP status a websocket upgrade gets (101 when it is accepted)."""
    try:
        connection = await websocket_connect(
            HTTPRequest(url, headers={"Authorization": f"token {token}"}, request_timeout=30)
        )
    except HTTPClientError as exc:
        return exc.code
    connection.close()
    return 101


def answer_without_id(answer: tuple[int, Any], sandbox_id: str) -> tuple[int, str]:
    status, body = answer
    text = json.dumps(body) if isinstance(body, (dict, list)) else repr(body)
    return status, text.replace(sandbox_id, "ID")


def test_bob_gets_for_every_route_of_alices_sandbox_what_an_unknown_id_gets(
    service: ServiceProcess, alices: str
) -> None:
    bob = as_user(service, "bob")
    query = "?path=notes.txt&pattern=x&name=main"
    paths = route_paths(alices)
    assert len(paths) > 40  # the whole table, not a few routes
    differences: list[Any] = []
    successes: list[Any] = []
    statuses = set()
    for path in paths:
        for method in METHODS:
            # An empty object, and a body no route takes: neither tells Alice's id from an unknown one.
            body = (b"{}" if len(statuses) % 2 else b"not json") if method in ("POST", "PUT", "PATCH") else None
            on_alices = bob.request(method, path + query, raw=body, timeout=60)
            on_nobodys = bob.request(method, path.replace(alices, UNKNOWN_ID) + query, raw=body, timeout=60)
            statuses.add(on_alices[0])
            if on_alices[0] != 404:
                successes.append((method, path, on_alices))
            if answer_without_id(on_alices, alices) != answer_without_id(on_nobodys, UNKNOWN_ID):
                differences.append((method, path, on_alices, on_nobodys))
    assert not differences, differences[:5]
    assert not successes, successes  # 404, whatever the method and body: never a hint that it exists
    status, message = bob.request("GET", box(alices))
    assert status == 404 and message == {"message": f"there is no sandbox {alices!r}"}

    async def every_upgrade() -> list[tuple[str, int, int]]:
        results = []
        for path in paths:
            url = f"ws://127.0.0.1:{service.port}{path}"
            results.append(
                (
                    path,
                    await upgrade_status(url, service.token("bob")),
                    await upgrade_status(url.replace(alices, UNKNOWN_ID), service.token("bob")),
                )
            )
        return results

    upgrades = asyncio.run(every_upgrade())
    assert all(mine == nobodys == 404 for _, mine, nobodys in upgrades), upgrades
    assert dict((p, s) for p, s, _ in upgrades)[box(alices, "/pty")] == 404
    # Bob's list does not show it, with or without filters; Alice's sandbox is as it was.
    for listing_path in ("/sandbox/api/sandboxes", "/sandbox/api/sandboxes?label=a=b"):
        status, listing = bob.request("GET", listing_path)
        assert status == 200 and alices not in json.dumps(listing)
    alice = as_user(service, "alice")
    assert alice.request("GET", box(alices))[1]["state"] == "running"
    assert exec_command(alice, alices, "echo still here")["stdout"] == "still here\n"


def test_absent_and_bad_tokens_are_told_what_to_send(service: ServiceProcess, alices: str) -> None:
    nobody = Server(service.port, "")
    status, answer = nobody.request("GET", "/sandbox/api/sandboxes", auth=False)
    assert status == 401 and "Authorization: token <token>" in answer["message"]
    for header in ("token not-a-token-of-anyone-here", f"token {service.token('alice')}x", "Basic YWxpY2U6eA=="):
        for method, path in (("GET", "/sandbox/api/sandboxes"), ("POST", box(alices, "/process/exec"))):
            status, answer = nobody.request(method, path, {"command": "id"}, headers={"Authorization": header})
            assert status == 401, (header, answer)
            assert "Authorization: token <token>" in answer["message"]
    status, answer = nobody.request("GET", box(alices), headers={"Authorization": "token wrong-wrong-wrong-wrong"})
    assert "not valid" in answer["message"]
    assert asyncio.run(upgrade_status(f"ws://127.0.0.1:{service.port}{box(alices, '/pty')}", "wrong")) == 401
    # The same token as a bearer token is the same user.
    status, listing = nobody.request(
        "GET", "/sandbox/api/sandboxes", headers={"Authorization": f"Bearer {service.token('alice')}"}
    )
    assert status == 200 and [s["id"] for s in listing["sandboxes"]] == [alices]


def test_nothing_but_the_sandbox_api_is_served(service: ServiceProcess) -> None:
    alice = as_user(service, "alice")
    for path in (
        "/api/contents",
        "/api/kernels",
        "/api/terminals",
        "/api/sessions",
        "/api/status",
        "/terminals/websocket/1",
        "/lab",
        "/tree",
        "/files/etc/passwd",
        "/login",
        "/",
    ):
        for method in ("GET", "POST"):
            status, answer = alice.request(method, path, raw=b"{}" if method == "POST" else None)
            assert status == 404, (method, path, status)
            assert "only /sandbox/api" in answer["message"]
    url = f"ws://127.0.0.1:{service.port}/terminals/websocket/1"
    assert asyncio.run(upgrade_status(url, service.token("alice"))) == 404


def test_quotas_refuse_the_next_sandbox_and_the_next_start_and_say_how_to_free_one(
    service: ServiceProcess,
) -> None:
    carol = as_user(service, "carol")  # at most 1 running and 2 in all
    status, first = carol.request("POST", "/sandbox/api/sandboxes", {})
    assert status in (200, 201), first
    status, refused = carol.request("POST", "/sandbox/api/sandboxes", {})
    assert status == 409
    assert "max_running = 1" in refused["message"] and "(you have 1)" in refused["message"]
    assert "stop one" in refused["message"] and "/stop" in refused["message"]
    assert carol.request("POST", box(first["id"], "/stop"))[0] == 200
    status, second = carol.request("POST", "/sandbox/api/sandboxes", {})
    assert status in (200, 201), second
    status, refused = carol.request("POST", box(first["id"], "/start"))
    assert status == 409 and "max_running = 1" in refused["message"]
    assert carol.request("POST", box(second["id"], "/stop"))[0] == 200
    status, refused = carol.request("POST", "/sandbox/api/sandboxes", {})
    assert status == 409
    assert "max_sandboxes = 2" in refused["message"] and "already has 2 sandboxes" in refused["message"]
    assert "delete one" in refused["message"]
    # Other users' quotas are their own: Bob has none but the defaults.
    assert carol.request("POST", box(first["id"], "/start"))[0] == 200
    for made in (first, second):
        assert carol.request("DELETE", box(made["id"]))[0] == 204


def test_a_preview_link_made_through_the_service_opens(service: ServiceProcess, alices: str) -> None:
    alice = as_user(service, "alice")
    start_preview_app(alice, alices, {8000: "127.0.0.1"})
    status, link = alice.request("POST", box(alices, "/previews"), {"port": 8000})
    assert status in (200, 201), link
    assert link["url"] == f"http://8000-{alices}.localhost:{service.port}/"
    host = preview_host(alice, alices, 8000)
    status, _, page = fetch(alice, host, "/echo", headers={"X-Sandbox-Preview-Token": link["token"]})
    assert status == 200 and json.loads(page)["path"] == "/echo"
    # Without the token, or with Alice's API token instead of the link's: no app.
    for headers in ({}, {"Authorization": f"token {service.token('alice')}"}):
        status, _, page = fetch(alice, host, "/echo", headers=headers)
        assert status in (401, 403) and b'"headers"' not in page


def test_a_restarted_service_finds_every_users_sandboxes(service: ServiceProcess, alices: str) -> None:
    bob = as_user(service, "bob")
    status, bobs = bob.request("POST", "/sandbox/api/sandboxes", {})
    assert status in (200, 201), bobs
    before = {user: as_user(service, user).request("GET", "/sandbox/api/sandboxes")[1] for user in ("alice", "bob")}
    assert service.stop() == 0
    assert "jupyter-sandbox service stopped" in service.log.read_text()
    # Stopping the service removes nothing and stops nothing.
    engine = DockerBackend()
    for sandbox_id in (alices, bobs["id"]):
        [record] = engine.list_containers({LABEL_ID: sandbox_id})
        assert record.state == "running"
    service.start()
    for user in ("alice", "bob"):
        status, after = as_user(service, user).request("GET", "/sandbox/api/sandboxes")
        assert status == 200
        assert sorted(s["id"] for s in after["sandboxes"]) == sorted(s["id"] for s in before[user]["sandboxes"])
    assert exec_command(bob, bobs["id"], "echo back")["stdout"] == "back\n"
    # One container per sandbox, still, after the restarted service's first housekeeping round.
    time.sleep(1.5)
    for sandbox_id in (alices, bobs["id"]):
        assert len(engine.list_containers({LABEL_ID: sandbox_id})) == 1
    assert bob.request("DELETE", box(bobs["id"]))[0] == 204


def test_bad_command_lines_are_refused_with_what_to_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = tmp_path / "good.json"
    write_tokens(good, {"alice": "a" * 32})
    shared = tmp_path / "shared.json"
    write_tokens(shared, {"alice": "a" * 32}, mode=0o644)
    short = tmp_path / "short.json"
    write_tokens(short, {"alice": "abc"})
    not_json = tmp_path / "not.json"
    not_json.write_text("{alice")
    not_json.chmod(0o600)
    bad_name = tmp_path / "bad-name.json"
    write_tokens(bad_name, {"../root": "b" * 32})
    broken = tmp_path / "broken_config.py"
    broken.write_text("c.SandboxQuota.max_running = (\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    cases = {
        "world-readable": ([f"--tokens-file={shared}"], "chmod 600"),
        "port too big": ([f"--tokens-file={good}", "--port=70000"], "65535"),
        "no users": ([], "knows no users"),
        "missing": ([f"--tokens-file={tmp_path / 'absent.json'}"], "does not exist"),
        "a folder": ([f"--tokens-file={tmp_path}"], "not a regular file"),
        "not JSON": ([f"--tokens-file={not_json}"], "not valid JSON"),
        "short token": ([f"--tokens-file={short}"], "shorter than 16"),
        "bad user name": ([f"--tokens-file={bad_name}"], "cannot own sandboxes"),
        "port not a number": ([f"--tokens-file={good}", "--port=eighty"], "expected an int"),
        "port in use": ([f"--tokens-file={good}", f"--port={busy.getsockname()[1]}"], "cannot listen"),
        "broken config": ([f"--tokens-file={good}", f"--config={broken}"], "cannot be read"),
        "config not there": ([f"--tokens-file={good}", f"--config={tmp_path / 'nope.py'}"], "does not exist"),
        "unknown engine": ([f"--tokens-file={good}", "--backend=nomad"], "backend must be one of docker"),
    }
    # The first few as `jupyter sandbox service` runs them (a process each, at once); the rest through
    # the same entry point in this process (each process costs seconds of imports on a busy machine).
    through_processes = ["world-readable"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    runs = {
        name: subprocess.Popen(
            service_argv(*cases[name][0], "--ip=127.0.0.1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        for name in through_processes
    }
    try:
        for name in cases:
            if name in runs:
                continue
            code = service_main([*cases[name][0], "--ip=127.0.0.1"])
            captured = capsys.readouterr()
            text = captured.out + captured.err
            assert code != 0 and cases[name][1] in text and "Traceback" not in text, (name, text)
        for name, process in runs.items():
            output, _ = process.communicate(timeout=120)
            text = output.decode(errors="replace")
            assert process.returncode not in (0, None), (name, text)
            assert cases[name][1] in text and "Traceback" not in text, (name, text)
    finally:
        busy.close()
        for process in runs.values():
            if process.poll() is None:
                process.kill()


def test_a_token_taken_out_of_the_tokens_file_stops_working(service: ServiceProcess) -> None:
    carol = as_user(service, "carol")
    assert carol.request("GET", "/sandbox/api/sandboxes")[0] == 200
    remaining = {name: token for name, token in service.tokens.items() if name != service.users["carol"]}
    try:
        write_tokens(service.tokens_file, remaining)
        assert wait_until(lambda: carol.request("GET", "/sandbox/api/sandboxes")[0] == 401, timeout=10)
        assert as_user(service, "alice").request("GET", "/sandbox/api/sandboxes")[0] == 200
    finally:
        write_tokens(service.tokens_file, service.tokens)
    assert wait_until(lambda: carol.request("GET", "/sandbox/api/sandboxes")[0] == 200, timeout=10)


def test_a_jupyterhub_token_is_its_user_until_the_hub_revokes_it(service: ServiceProcess, hub: HubProcess) -> None:
    hub.wait_until_up()
    name = f"dana-{service.users['alice'].rsplit('-', 1)[1]}"
    assert hub.request("POST", f"/users/{name}")[0] == 201
    status, issued = hub.request("POST", f"/users/{name}/tokens", {"expires_in": 600, "note": "test_service"})
    assert status == 201, issued
    dana = Server(service.port, issued["token"])
    status, made = dana.request("POST", "/sandbox/api/sandboxes", {})
    assert status in (200, 201), made
    try:
        assert made["owner"] == f"hub-user:{name}"
        status, listing = dana.request("GET", "/sandbox/api/sandboxes")
        assert status == 200 and [s["id"] for s in listing["sandboxes"]] == [made["id"]]
        # Users of the tokens file and of the hub are apart, as any two users are.
        assert as_user(service, "alice").request("GET", box(made["id"]))[0] == 404
        # A service's token is no user's: it owns no sandboxes.
        assert Server(service.port, hub.service_token).request("GET", "/sandbox/api/sandboxes")[0] == 401
    finally:
        assert dana.request("DELETE", box(made["id"]))[0] == 204
    assert hub.request("DELETE", f"/users/{name}/tokens/{issued['id']}")[0] == 204
    assert wait_until(lambda: dana.request("GET", "/sandbox/api/sandboxes")[0] == 401, timeout=10)
    hub.request("DELETE", f"/users/{name}")
