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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import wait_until
from hub_support import Hub, HubUser, owner_of, running_hub
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.spec import LABEL_ID, LABEL_OWNER
from jupyter_sandbox.server_extension.handlers import api_routes

MAX_SANDBOXES = 2
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
    """Deleted, once its kernel (shut down a moment ago, maybe) has let go of it."""
    answers: list[requests.Response] = []

    def gone() -> bool:
        answers.append(user.server("DELETE", f"{API}/sandboxes/{sandbox_id}"))
        return answers[-1].status_code in (200, 204, 404)

    assert wait_until(gone, timeout=60, interval=1), answers[-1].text


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
    # As JupyterLab opens a notebook: a session for its path, with the sandbox kernel.
    kernels = {user.name: user.open_notebook("analysis.ipynb") for user in (alice, bob)}
    sandboxes: dict[str, str] = {}
    try:
        cell = "import os, getpass\nprint(getpass.getuser(), os.path.exists('/var/run/docker.sock'), 6 * 7)"
        # Both at once, as two users of one hub work.
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda user: user.run(kernels[user.name], cell, timeout=180), (alice, bob)))
        for status, out in results:
            assert status == "ok", out
            assert out.split() == ["sandbox", "False", "42"], out
        # Each one's kernel's sandbox is on the engine as theirs, and each user sees only their own.
        for user in (alice, bob):
            listed = user.server("GET", f"{API}/sandboxes").json()["sandboxes"]
            mine = [s for s in listed if s.get("kernel_id") == kernels[user.name]]
            assert len(mine) == 1, listed
            sandboxes[user.name] = mine[0]["id"]
            others = [s for s in listed if s.get("kernel_id") in set(kernels.values()) - {kernels[user.name]}]
            assert others == []
            on_engine = docker_backend.list_containers({LABEL_ID: mine[0]["id"]}, label_keys=[LABEL_OWNER])
            assert [c.labels.get(LABEL_OWNER) for c in on_engine] == [owner_of(user.name)]
    finally:
        for user in (alice, bob):
            user.server("DELETE", f"/api/kernels/{kernels[user.name]}")
            # A notebook's sandbox outlives its kernel (stopped, for the notebook's next kernel): the
            # quota test below counts from none.
            if user.name in sandboxes:
                delete_sandbox(user, sandboxes[user.name])


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


# A well-formed request for each route and method of a sandbox (so that what answers is the ownership
# check, not the input's): (method, path below the sandbox, query, JSON body or raw bytes).
GIT_BODY = {"path": "repo"}
WELL_FORMED: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", "", {}, None),
    ("PATCH", "", {}, {"network": {"mode": "none"}}),
    ("DELETE", "", {}, None),
    ("POST", "/start", {}, {}),
    ("POST", "/stop", {}, {}),
    ("POST", "/restart", {}, {}),
    ("POST", "/kernel", {}, {}),
    ("POST", "/lend", {}, {"kernel_id": "k1"}),
    ("GET", "/kernel/events", {"after": "0", "wait": "0"}, None),
    ("POST", "/kernel/interrupt", {}, {}),
    ("POST", "/kernel/restart", {}, {}),
    ("POST", "/kernel/activity", {}, {}),
    ("GET", "/files", {"path": "."}, None),
    ("DELETE", "/files", {"path": "mine.txt"}, None),
    ("GET", "/files/info", {"path": "mine.txt"}, None),
    ("GET", "/files/content", {"path": "mine.txt"}, None),
    ("PUT", "/files/content", {"path": "new.txt"}, b"alice was here"),
    ("POST", "/files/folder", {}, {"path": "made-by-alice"}),
    ("POST", "/files/move", {}, {"source": "mine.txt", "destination": "moved.txt"}),
    ("POST", "/files/permissions", {}, {"path": "mine.txt", "mode": "777"}),
    ("POST", "/files/replace", {}, {"files": ["mine.txt"], "pattern": "bob", "new_value": "alice"}),
    ("GET", "/files/search", {"path": ".", "pattern": "bob"}, None),
    ("GET", "/files/find", {"path": ".", "pattern": "bob"}, None),
    ("POST", "/process/exec", {}, {"command": "touch /home/sandbox/owned"}),
    ("GET", "/sessions", {}, None),
    ("POST", "/sessions", {}, {"id": "s1"}),
    ("GET", "/sessions/s1", {}, None),
    ("DELETE", "/sessions/s1", {}, None),
    ("POST", "/sessions/s1/commands", {}, {"command": "true", "run_async": True}),
    ("GET", "/sessions/s1/commands/abc123/logs", {}, None),
    ("POST", "/sessions/s1/commands/abc123/input", {}, {"data": "x\n"}),
    ("POST", "/sessions/s1/commands/abc123/kill", {}, {}),
    ("GET", "/ptys", {}, None),
    ("POST", "/ptys", {}, {"cols": 80, "rows": 24}),
    ("GET", "/ptys/p1", {}, None),
    ("DELETE", "/ptys/p1", {}, None),
    ("POST", "/ptys/p1/resize", {}, {"cols": 80, "rows": 24}),
    ("POST", "/ptys/p1/input", {}, {"data": "ls\n"}),
    ("GET", "/ptys/p1/output", {"timeout": "1"}, None),
    ("GET", "/git/status", {"path": "repo"}, None),
    ("GET", "/git/branches", {"path": "repo"}, None),
    ("POST", "/git/clone", {}, {"url": "http://127.0.0.1:9/none.git", "path": "repo"}),
    ("POST", "/git/branches", {}, {**GIT_BODY, "name": "b1"}),
    ("DELETE", "/git/branches", {"path": "repo", "name": "b1"}, None),
    ("POST", "/git/checkout", {}, {**GIT_BODY, "name": "main"}),
    ("POST", "/git/add", {}, {**GIT_BODY, "files": ["."]}),
    ("POST", "/git/commit", {}, {**GIT_BODY, "message": "m", "author": "a", "email": "a@example.org"}),
    ("POST", "/git/push", {}, GIT_BODY),
    ("POST", "/git/pull", {}, GIT_BODY),
    ("POST", "/previews", {}, {"port": 8123}),
    ("DELETE", "/previews", {}, None),
    ("GET", "/ports", {}, None),
    ("POST", "/ssh", {}, {}),
    ("DELETE", "/ssh", {}, None),
    ("GET", "/network", {}, None),
    ("GET", "/network/log", {}, None),
    ("GET", "/secrets", {}, None),
    ("POST", "/secrets", {}, {"name": "MY_SECRET", "value": "v", "hosts": ["example.org"]}),
    ("DELETE", "/secrets/MY_SECRET", {}, None),
    ("GET", "/desktop", {}, None),
    ("POST", "/desktop/start", {}, {}),
    ("POST", "/desktop/stop", {}, {}),
    ("GET", "/desktop/screenshot", {}, None),
    ("GET", "/desktop/mouse", {}, None),
    ("POST", "/desktop/mouse", {}, {"action": "move", "x": 1, "y": 1}),
    ("POST", "/desktop/mouse/click", {}, {"x": 1, "y": 1}),
    ("POST", "/desktop/keyboard", {}, {"action": "type", "text": "x"}),
    ("POST", "/desktop/keyboard/type", {}, {"text": "x"}),
    ("GET", "/desktop/display", {}, None),
    ("GET", "/desktop/windows", {}, None),
    ("POST", "/desktop/windows/focus", {}, {"id": 1}),
]
WEBSOCKETS = ["/pty", "/ptys/p1/connect", "/kernel/channels?channel=shell"]


def _covered_routes() -> tuple[set[str], set[str]]:
    """The API's sandbox routes (regexes, below the sandbox) that WELL_FORMED and WEBSOCKETS reach."""
    box = "/sandbox/api/sandboxes/" + "0" * 12
    paths = [suffix for _, suffix, _, _ in WELL_FORMED] + [w.split("?")[0] for w in WEBSOCKETS]
    patterns = [pattern for pattern, _, _ in api_routes("/", None) if "(?P<sandbox_id>" in pattern]  # type: ignore[arg-type]
    return {p for p in patterns if any(re.fullmatch(p, box + suffix) for suffix in paths)}, set(patterns)


def _upload(user: HubUser, target: Any, sandbox_id: str) -> requests.Response:
    files = {"path": (None, "."), "file": ("up.txt", b"uploaded", "text/plain")}
    return target(user, "POST", f"{API}/sandboxes/{sandbox_id}/files/upload", files=files)


@pytest.fixture(scope="module")
def bobs_sandbox(bob: HubUser) -> Iterator[str]:
    made = create_sandbox(bob)["id"]
    yield made
    delete_sandbox(bob, made)


def test_another_users_sandbox_is_404_on_every_route(hub: Hub, alice: HubUser, bob: HubUser, bobs_sandbox: str) -> None:
    bobs = bobs_sandbox
    assert bob.server("PUT", f"{API}/sandboxes/{bobs}/files/content?path=mine.txt", data=b"bob's").status_code in (
        200,
        201,
        204,
    )
    covered, every = _covered_routes()
    assert covered | {p for p in every if p.endswith("/files/upload")} == every, sorted(every - covered)
    nobody = secrets.token_hex(6)  # an id no sandbox has
    wrong, same = [], []
    for method, suffix, query, body in WELL_FORMED:
        raw = body if isinstance(body, bytes) else None
        payload = None if isinstance(body, bytes) or body is None else body
        # To the service with alice's token, and through alice's own server (its forwarder).
        for where, call in (("service", HubUser.service), ("alice's server", HubUser.server)):
            answer = call(alice, method, f"{API}/sandboxes/{bobs}{suffix}", params=query, json=payload, data=raw)
            if answer.status_code == 404:
                continue
            # Refused before any sandbox is looked up (a feature the service does not offer): then an
            # id that exists nowhere gets the very same answer, and nothing tells bob's sandbox apart.
            unknown = call(alice, method, f"{API}/sandboxes/{nobody}{suffix}", params=query, json=payload, data=raw)
            if (unknown.status_code, unknown.text.replace(nobody, bobs)) == (answer.status_code, answer.text):
                same.append(f"{method} {suffix} ({where}): {answer.status_code}")
            else:
                wrong.append(f"{method} {suffix} ({where}): {answer.status_code} {answer.text[:160]}")
    for call in (HubUser.service, HubUser.server):
        answer = _upload(alice, call, bobs)
        if answer.status_code != 404:
            wrong.append(f"POST /files/upload: {answer.status_code} {answer.text[:160]}")
    assert wrong == [], "\n".join(wrong)
    # Only the SSH gateway (not run by the service) may answer the same for every id.
    assert all(" /ssh " in line for line in same), "\n".join(same)
    # Alice's list and kernel filter show none of bob's; bob's sandbox and file are untouched.
    assert bobs not in json.dumps(alice.service("GET", f"{API}/sandboxes").json())
    assert bobs not in json.dumps(alice.server("GET", f"{API}/sandboxes").json())
    still = bob.server("GET", f"{API}/sandboxes/{bobs}")
    assert still.status_code == 200 and still.json()["state"] == "running", still.text
    assert bob.server("GET", f"{API}/sandboxes/{bobs}/files/content?path=mine.txt").content == b"bob's"
    looked = bob.server("POST", f"{API}/sandboxes/{bobs}/process/exec", json={"command": "ls -A /home/sandbox"})
    assert looked.status_code == 200 and "owned" not in looked.json()["stdout"].split(), looked.text
    assert not {"moved.txt", "new.txt", "made-by-alice", "up.txt"} & set(looked.json()["stdout"].split())

    async def websocket_refused(url: str) -> int:
        try:
            connection = await websocket_connect(HTTPRequest(url, headers=alice.auth))
        except Exception as exc:  # tornado raises HTTPClientError with the refused upgrade's status
            return getattr(exc, "code", 0)
        connection.close()
        return 101

    for suffix in WEBSOCKETS:
        for base in (f"ws://127.0.0.1:{hub.service_port}", f"ws://127.0.0.1:{hub.port}/user/{alice.name}"):
            url = f"{base}{API}/sandboxes/{bobs}{suffix}"
            assert asyncio.run(websocket_refused(url)) == 404, url


def test_the_quota_refuses_the_next_sandbox(hub: Hub, alice: HubUser, bob: HubUser, bobs_sandbox: str) -> None:
    made: list[str] = []
    try:
        # One more than the quota, all at once: the quota holds under concurrent requests too.
        with ThreadPoolExecutor(MAX_SANDBOXES + 1) as pool:
            answers = list(
                pool.map(
                    lambda _: alice.server("POST", f"{API}/sandboxes", json={"labels": {"test": "hub-quota"}}),
                    range(MAX_SANDBOXES + 1),
                )
            )
        made = [a.json()["id"] for a in answers if a.status_code == 201]
        refused = [a for a in answers if a.status_code != 201]
        assert len(made) == MAX_SANDBOXES and len(refused) == 1, [(a.status_code, a.text[:200]) for a in answers]
        assert refused[0].status_code == 409, refused[0].text
        message = refused[0].json()["message"]
        # It says which quota and how to free it.
        assert str(MAX_SANDBOXES) in message and "sandbox" in message.lower() and "delete" in message.lower(), message
        # The same refusal straight from the service, with alice's token.
        again = alice.service("POST", f"{API}/sandboxes", json={})
        assert again.status_code == 409 and again.json()["message"] == message
        # Bob's quota is his own: he holds one sandbox, and may make another while alice is at her limit.
        bobs_second = create_sandbox(bob)["id"]
        delete_sandbox(bob, bobs_second)
    finally:
        for sandbox in made:
            delete_sandbox(alice, sandbox)
