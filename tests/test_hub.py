"""Two users through a real JupyterHub (examples/hub/): logins through the hub's proxy, each user's server
as their own account in hub mode, the sandbox service as the hub's service and the only holder of the engine.

One hub for the module (its start, two logins and two servers are most of the time): the tests share it
and clean up what they make.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import wait_until
from hub_support import Hub, HubUser, owner_of, running_hub
from tornado import web
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.spec import LABEL_ID, LABEL_OWNER
from jupyter_sandbox.server_extension.handlers import api_routes

MAX_SANDBOXES = 3
API = "/sandbox/api"


@pytest.fixture(scope="module")
def hub(docker_backend: DockerBackend, sandbox_image: str) -> Iterator[Hub]:
    service_args = [
        f"--SandboxQuota.max_sandboxes={MAX_SANDBOXES}",
        "--SandboxManager.warm_pool_size=0",
    ]
    with running_hub(docker_backend, service_args) as started:
        # Both servers start at once, as two users logging in at the same time.
        for user in started.users.values():
            user.start()
        for user in started.users.values():
            user.wait_until_ready()
        yield started


@pytest.fixture(scope="module")
def alice(hub: Hub) -> HubUser:
    return next(iter(hub.users.values()))


@pytest.fixture(scope="module")
def bob(hub: Hub) -> HubUser:
    return list(hub.users.values())[1]


def create_sandbox(user: HubUser, **body: Any) -> dict[str, Any]:
    """A sandbox made through the user's own server (the sidebar's and the SDK's way in hub mode)."""
    made = user.server("POST", f"{API}/sandboxes", json={"labels": {"test": "hub"}, **body})
    assert made.status_code == 201, made.text
    return made.json()


def delete_sandbox(user: HubUser, sandbox_id: str) -> None:
    user.server("DELETE", f"{API}/sandboxes/{sandbox_id}")


def test_each_user_logs_in_with_their_own_password_only(hub: Hub, alice: HubUser, bob: HubUser) -> None:
    intruder = HubUser(hub, alice.name, bob.password)
    refused = intruder.login()
    # A refused login is the form again, with no session cookie.
    assert refused.status_code in (200, 403) and "jupyterhub-hub-login" not in intruder.browser.cookies
    assert HubUser(hub, bob.name, "").login().status_code in (200, 403)
    assert HubUser(hub, f"nobody-{secrets.token_hex(3)}", "x").login().status_code in (200, 403)
    # Logged in, each reaches their own server only: the hub's proxy sends bob's token away from alice's.
    assert alice.server("GET", "/api/status").status_code == 200
    assert alice.server("GET", "/api/status", token=bob.token).status_code in (403, 404)
    assert alice.hub_api("GET", f"/users/{bob.name}").status_code == 404


ENV_CHECK = r"""
import base64, grp, json, os, pwd, socket, stat, time
found = {"uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name,
         "groups": sorted(grp.getgrgid(g).gr_name for g in os.getgroups()),
         "engine_env": sorted(k for k in os.environ if k.startswith(("DOCKER", "CONTAINERD")) ),
         "docker_config": [p for p in (os.path.expanduser("~/.docker"), "/etc/docker/daemon.json", "/root/.docker")
                           if os.access(p, os.R_OK)]}
# Every listening Unix socket on the machine (/proc/net/unix names them all): which ones this account can
# open, and whether any of them answers as a container engine.
paths = set()
with open("/proc/net/unix") as table:
    for line in table.read().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7].startswith("/"):
            paths.add(parts[7])
paths |= {"/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"}
opened = {}
for path in sorted(paths):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
    except OSError as exc:
        continue
    try:
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
        opened[path] = s.recv(400).decode("latin-1")
    except OSError as exc:
        opened[path] = type(exc).__name__
    finally:
        s.close()
found["sockets"] = opened
tcp = {}
for port in (2375, 2376):
    s = socket.socket()
    s.settimeout(1)
    tcp[port] = s.connect_ex(("127.0.0.1", port)) == 0
    s.close()
found["engine_tcp"] = tcp
# Every file this account can read in the places secrets get left, and every process's command line and
# environment it can see: which of the secrets (given as SECRETS) appear in them.
SECRETS = {name: base64.b64decode(value).decode()[::-1] for name, value in HUB_TEST_SECRETS.items()}
leaks, read, deadline = [], 0, time.monotonic() + 40
def look(path, data):
    for name, value in SECRETS.items():
        if value and value.encode() in data:
            leaks.append((name, path))
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as handle:
                    look(f"/proc/{pid}/{part}", handle.read())
            except OSError:
                pass
for top in ("/tmp", "/var/tmp", "/dev/shm", "/run", "/home", "/etc", "/opt", "/srv", "/var/lib", "/var/log"):
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("node_modules", ".venv", "site-packages", ".git", "__pycache__")]
        if time.monotonic() > deadline:
            break
        for name in files:
            path = os.path.join(folder, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode) or os.path.getsize(path) > 1 << 20:
                    continue
                with open(path, "rb") as handle:
                    look(path, handle.read())
                read += 1
            except OSError:
                pass
found["leaks"], found["files_read"] = leaks, read
found["state_readable"] = os.access(HUB_TEST_STATE, os.R_OK | os.X_OK)
print(json.dumps(found))
"""


def _process_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _hub_secrets(hub: Hub, bob: HubUser) -> dict[str, str]:
    """What the hub's side holds that no user may see: the service's and the proxy's tokens, the hub's
    cookie secret, and the other user's tokens (their API token and their server's)."""
    found = {
        "cookie secret": (hub.state / "jupyterhub_cookie_secret").read_text().strip(),
        f"{bob.name}'s API token": bob.token,
        f"{bob.name}'s password": bob.password,
    }
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = _process_environ(int(pid))
        except OSError:
            continue
        if env.get("JUPYTERHUB_SERVICE_NAME") == "sandbox" and str(hub.service_port) in env.get(
            "JUPYTERHUB_SERVICE_URL", ""
        ):
            found["the service's hub token"] = env.get("JUPYTERHUB_API_TOKEN", "")
        if "configurable-http-proxy" in cmdline and env.get("JUPYTER_SANDBOX_HUB_PORT") == str(hub.port):
            found["the proxy's token"] = env.get("CONFIGPROXY_AUTH_TOKEN", "")
        if env.get("JUPYTERHUB_USER") == bob.name and "jupyterhub.singleuser" in cmdline:
            found[f"{bob.name}'s server token"] = env.get("JUPYTERHUB_API_TOKEN", "")
    assert found.get("the service's hub token") and found.get(f"{bob.name}'s server token"), sorted(found)
    return {name: value for name, value in found.items() if value}


def test_a_users_server_holds_no_engine_socket_or_credential(hub: Hub, alice: HubUser, bob: HubUser) -> None:
    secrets_ = _hub_secrets(hub, bob)
    kernel = alice.start_kernel("python3")  # a plain local kernel: it runs as alice's server does
    try:
        # Encoded (reversed, base64): the cell's text lands in alice's IPython history, which she can read,
        # and the secrets themselves must not.
        encoded = {name: base64.b64encode(value[::-1].encode()).decode() for name, value in secrets_.items()}
        code = f"HUB_TEST_SECRETS = {encoded!r}\nHUB_TEST_STATE = {str(hub.state)!r}\n" + ENV_CHECK
        status, out = alice.run(kernel, code, timeout=120)
    finally:
        alice.server("DELETE", f"/api/kernels/{kernel}")
    assert status == "ok", out
    found = json.loads(out.strip().splitlines()[-1])
    assert found["user"] == alice.name and found["uid"] != 0
    assert "docker" not in found["groups"] and "root" not in found["groups"]
    assert found["engine_env"] == [] and found["docker_config"] == []
    engines = {path: answer for path, answer in found["sockets"].items() if "Api-Version" in answer or "docker" in path}
    assert engines == {}, f"{alice.name}'s server can open an engine's socket: {engines}"
    assert not any(found["engine_tcp"].values())
    assert found["leaks"] == [], f"{alice.name} can read secrets of the hub's side: {found['leaks']}"
    assert found["files_read"] > 0 and found["state_readable"] is False
    # Hub mode: the server was told where the service is, and its token is alice's own.
    kernel = alice.start_kernel("python3")
    try:
        status, out = alice.run(
            kernel, "import os; print(os.environ.get('JUPYTER_SANDBOX_SERVICE_URL'), os.environ['JUPYTERHUB_USER'])"
        )
    finally:
        alice.server("DELETE", f"/api/kernels/{kernel}")
    assert out.split() == [hub.service_url, alice.name]


def test_each_user_runs_cells_in_their_own_sandbox(
    hub: Hub, alice: HubUser, bob: HubUser, docker_backend: DockerBackend
) -> None:
    kernels = {user.name: user.start_kernel("sandbox-python") for user in (alice, bob)}
    try:
        for user in (alice, bob):
            status, out = user.run(
                kernels[user.name],
                "import os, getpass\nprint(getpass.getuser(), os.path.exists('/var/run/docker.sock'), 6 * 7)",
                timeout=180,
            )
            assert status == "ok", out
            assert out.split() == ["sandbox", "False", "42"], out
        # Each one's kernel's sandbox is on the engine as theirs, and each user sees only their own.
        for user in (alice, bob):
            listed = user.server("GET", f"{API}/sandboxes").json()["sandboxes"]
            mine = [s for s in listed if s.get("kernel_id") == kernels[user.name]]
            assert len(mine) == 1, listed
            others = [s for s in listed if s.get("kernel_id") in set(kernels.values()) - {kernels[user.name]}]
            assert others == []
            on_engine = docker_backend.list_containers({LABEL_ID: mine[0]["id"]}, label_keys=[LABEL_OWNER])
            assert [c.labels.get(LABEL_OWNER) for c in on_engine] == [owner_of(user.name)]
    finally:
        for user in (alice, bob):
            user.server("DELETE", f"/api/kernels/{kernels[user.name]}")


PREVIEW_APP = "import http.server, socketserver\n" + (
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'preview of ' + self.path.encode())\n"
    "socketserver.TCPServer(('127.0.0.1', 8123), H).serve_forever()\n"
)


def test_previews_and_terminals_through_the_hub(hub: Hub, alice: HubUser, bob: HubUser) -> None:
    sandbox = create_sandbox(alice)["id"]
    box = f"{API}/sandboxes/{sandbox}"
    try:
        assert alice.server("PUT", f"{box}/files/content?path=app.py", data=PREVIEW_APP.encode()).status_code in (
            200,
            201,
            204,
        )
        assert alice.server("POST", f"{box}/sessions", json={"id": "app"}).status_code in (200, 201)
        run = alice.server(
            "POST", f"{box}/sessions/app/commands", json={"command": "python3 app.py", "run_async": True}
        )
        assert run.status_code in (200, 201, 202), run.text
        assert wait_until(lambda: 8123 in alice.server("GET", f"{box}/ports").json().get("ports", []), timeout=30)
        made = alice.server("POST", f"{box}/previews", json={"port": 8123})
        assert made.status_code == 201, made.text
        link = made.json()
        # The link is on the service's own origin (its own port, a host of its own), not the user's server.
        assert link["url"] == f"http://8123-{sandbox}.localhost:{hub.service_port}/", link
        page = requests.get(
            f"http://127.0.0.1:{hub.service_port}/hello?token={link['token']}",
            headers={"Host": f"8123-{sandbox}.localhost:{hub.service_port}"},
            allow_redirects=True,
            timeout=30,
        )
        assert page.status_code == 200 and page.text.startswith("preview of /hello"), page.text[:300]
        # Without the token, or with bob's API token, the preview is not served.
        bare = requests.get(
            f"http://127.0.0.1:{hub.service_port}/hello",
            headers={"Host": f"8123-{sandbox}.localhost:{hub.service_port}"},
            timeout=30,
        )
        assert "preview of" not in bare.text
        as_bob = requests.get(
            f"http://127.0.0.1:{hub.service_port}/hello",
            headers={"Host": f"8123-{sandbox}.localhost:{hub.service_port}", "Authorization": f"token {bob.token}"},
            timeout=30,
        )
        assert "preview of" not in as_bob.text

        # A terminal into the sandbox, through alice's server (the sidebar's terminal in hub mode).
        pty = alice.server("POST", f"{box}/ptys", json={"id": "term", "cols": 100, "rows": 30})
        assert pty.status_code == 201, pty.text

        async def terminal() -> str:
            url = f"ws://127.0.0.1:{hub.port}/user/{alice.name}{box}/ptys/term/connect"
            connection = await websocket_connect(HTTPRequest(url, headers=alice.auth))
            await connection.write_message(json.dumps({"type": "input", "data": "echo hub-$((6*7)); whoami\n"}))
            seen, deadline = "", time.monotonic() + 30
            while "hub-42" not in seen or "sandbox" not in seen.split("hub-42", 1)[-1]:
                message = await asyncio.wait_for(
                    connection.read_message(), timeout=max(0.1, deadline - time.monotonic())
                )
                assert message is not None, seen
                if isinstance(message, bytes):
                    seen += message.decode(errors="replace")
            connection.close()
            return seen

        assert "hub-42" in asyncio.run(terminal())
    finally:
        delete_sandbox(alice, sandbox)


def _sample_paths(sandbox_id: str) -> list[tuple[str, type]]:
    """Every sandbox route of the API with `sandbox_id` in it (each alternative of an action, a sample
    value for the other parts), with its handler class."""
    samples = {"session_id": "s1", "command_id": "abc123", "pty_id": "p1", "name": "MY_SECRET", "rest": "x"}
    out = []
    for pattern, handler, _ in api_routes("/", None):  # type: ignore[arg-type]
        if "(?P<sandbox_id>" not in pattern:
            continue
        expansions = [pattern]
        while any("(?P<" in p for p in expansions):
            grown = []
            for p in expansions:
                match = re.search(r"\(\?P<(\w+)>([^()]*)\)", p)
                if not match:
                    grown.append(p)
                    continue
                name, body = match.group(1), match.group(2)
                if name == "sandbox_id":
                    values = [sandbox_id]
                elif re.fullmatch(r"[\w-]+(\|[\w-]+)*", body):
                    values = body.split("|")
                else:
                    values = [samples.get(name, "x")]
                grown += [p[: match.start()] + v + p[match.end() :] for v in values]
            expansions = grown
        out += [(p.rstrip("$"), handler) for p in expansions]
    return out


def _methods(handler: type) -> list[str]:
    return [
        m.upper()
        for m in ("get", "post", "put", "patch", "delete")
        if getattr(handler, m) is not getattr(web.RequestHandler, m)
    ]


def test_another_users_sandbox_is_404_on_every_route(hub: Hub, alice: HubUser, bob: HubUser) -> None:
    bobs = create_sandbox(bob)["id"]
    try:
        assert bob.server("PUT", f"{API}/sandboxes/{bobs}/files/content?path=mine.txt", data=b"bob's").status_code in (
            200,
            201,
            204,
        )
        routes = _sample_paths(bobs)
        assert len(routes) > 30
        checked = 0
        for path, handler in routes:
            for method in _methods(handler):
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                # To the service with alice's token, and through alice's own server (its forwarder).
                for answer in (
                    alice.service(method, path, data=body, timeout=60),
                    alice.server(method, path, data=body, timeout=60),
                ):
                    assert answer.status_code == 404, f"{method} {path}: {answer.status_code} {answer.text[:200]}"
                    assert (
                        bobs not in answer.text
                        or "not found" in answer.text.lower()
                        or "no sandbox" in answer.text.lower()
                    )
                    checked += 1
        assert checked > 60
        # Alice's list and kernel filter show none of bob's; bob's sandbox and file are untouched.
        assert bobs not in json.dumps(alice.service("GET", f"{API}/sandboxes").json())
        assert bobs not in json.dumps(alice.server("GET", f"{API}/sandboxes").json())
        still = bob.server("GET", f"{API}/sandboxes/{bobs}")
        assert still.status_code == 200 and still.json()["status"] == "running", still.text
        assert bob.server("GET", f"{API}/sandboxes/{bobs}/files/content?path=mine.txt").content == b"bob's"

        async def websocket_refused(url: str) -> int:
            try:
                connection = await websocket_connect(HTTPRequest(url, headers=alice.auth))
            except Exception as exc:  # tornado raises HTTPClientError with the refused upgrade's status
                return getattr(exc, "code", 0)
            connection.close()
            return 101

        for url in (
            f"ws://127.0.0.1:{hub.service_port}{API}/sandboxes/{bobs}/pty",
            f"ws://127.0.0.1:{hub.port}/user/{alice.name}{API}/sandboxes/{bobs}/pty",
            f"ws://127.0.0.1:{hub.service_port}{API}/sandboxes/{bobs}/kernel/channels",
        ):
            assert asyncio.run(websocket_refused(url)) == 404, url
    finally:
        delete_sandbox(bob, bobs)


def test_the_quota_refuses_the_next_sandbox(hub: Hub, alice: HubUser, bob: HubUser) -> None:
    made: list[str] = []
    try:
        while True:
            answer = alice.server("POST", f"{API}/sandboxes", json={"labels": {"test": "hub-quota"}})
            if answer.status_code != 201:
                break
            made.append(answer.json()["id"])
            assert len(made) <= MAX_SANDBOXES, "the quota let more sandboxes through than it allows"
        assert len(made) >= 1
        assert answer.status_code == 409, answer.text
        message = answer.json()["message"]
        assert str(MAX_SANDBOXES) in message and "sandbox" in message.lower() and "delete" in message.lower(), message
        # The same refusal straight from the service; bob's quota is his own.
        assert alice.service("POST", f"{API}/sandboxes", json={}).status_code == 409
        bobs = create_sandbox(bob)["id"]
        delete_sandbox(bob, bobs)
        # Freeing one lets the next one in.
        delete_sandbox(alice, made.pop())
        again = alice.server("POST", f"{API}/sandboxes", json={"labels": {"test": "hub-quota"}})
        assert again.status_code == 201, again.text
        made.append(again.json()["id"])
    finally:
        for sandbox in made:
            delete_sandbox(alice, sandbox)
