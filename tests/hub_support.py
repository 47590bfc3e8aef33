"""The example JupyterHub (examples/hub/) for tests: started with scripts/hub.py's own functions, on free
loopback ports, with two system accounts made for the run and removed after it.

A user logs in as a browser does (the hub's login form, its cookies and XSRF field), starts their server
through the hub's API with those cookies, and then holds an API token of their own, which is what the
sidebar's calls, the SDK and the sandbox service see. Everything goes through the hub's proxy, except the
calls a test makes to the service itself (as a user's server makes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from conftest import ROOT, free_port, wait_until
from filelock import FileLock
from harness import execute_request
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.spec import LABEL_OWNER

sys.path.insert(0, str(ROOT / "scripts"))
import hub as hub_script

# The proxy from npm, installed once per machine and shared by test runs (read-only to them).
PROXY_PREFIX = Path(tempfile.gettempdir()) / "jupyter-sandbox-hub-proxy"
SPAWN_TIMEOUT = 120


def owner_of(user: str) -> str:
    """The owner label the service gives a hub user's sandboxes."""
    return f"hub-user:{user}"


class HubUser:
    """One user of the hub: logged in through its login form, with their own API token."""

    def __init__(self, hub: Hub, name: str, password: str) -> None:
        self.hub = hub
        self.name = name
        self.password = password
        self.browser = requests.Session()
        self.browser.trust_env = False  # loopback only: no proxy from the environment
        self.token = ""

    def login(self, password: str | None = None) -> requests.Response:
        """The login form, as a browser fills it in: its _xsrf field and cookie, the user's password."""
        page = self.browser.get(f"{self.hub.base}/hub/login", timeout=30)
        field = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text)
        assert field, "the hub's login page has no _xsrf field"
        return self.browser.post(
            f"{self.hub.base}/hub/login",
            data={
                "username": self.name,
                "password": self.password if password is None else password,
                "_xsrf": field.group(1),
            },
            allow_redirects=False,
            timeout=30,
        )

    def _xsrf(self) -> dict[str, str]:
        return {"X-XSRFToken": self.browser.cookies.get("_xsrf", path="/hub/") or ""}

    def start(self) -> None:
        """Log in, get an API token of this user's (with the cookies, as the hub's token page does) and ask
        the hub to start the server (wait_until_ready waits for it)."""
        answer = self.login()
        assert answer.status_code == 302, f"login of {self.name}: {answer.status_code} {answer.text[:300]}"
        made = self.browser.post(
            f"{self.hub.base}/hub/api/users/{self.name}/tokens",
            json={"note": "test_hub", "expires_in": 3600},
            headers=self._xsrf(),
            timeout=30,
        )
        assert made.status_code == 201, made.text
        self.token = made.json()["token"]
        spawn = self.hub_api("POST", f"/users/{self.name}/server")
        assert spawn.status_code in (201, 202), spawn.text

    def wait_until_ready(self) -> None:
        def ready() -> bool:
            model = self.hub_api("GET", f"/users/{self.name}").json()
            return bool(model.get("servers", {}).get("", {}).get("ready"))

        assert wait_until(ready, timeout=SPAWN_TIMEOUT, interval=0.5), f"{self.name}'s server did not start"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def hub_api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.hub.base}/hub/api{path}", headers=self.auth, timeout=60, **kwargs)

    def server(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        """A request to this user's Jupyter server through the hub's proxy (/user/<name>/...)."""
        headers = {"Authorization": f"token {token or self.token}", **kwargs.pop("headers", {})}
        return requests.request(
            method,
            f"{self.hub.base}/user/{self.name}{path}",
            headers=headers,
            timeout=kwargs.pop("timeout", 120),
            **kwargs,
        )

    def service(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        """A request to the sandbox service itself, with this user's token (or `token`)."""
        headers = {"Authorization": f"token {token or self.token}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.hub.service_url}{path}", headers=headers, timeout=kwargs.pop("timeout", 120), **kwargs
        )

    def start_kernel(self, name: str) -> str:
        started = self.server("POST", "/api/kernels", json={"name": name})
        assert started.status_code == 201, started.text
        return started.json()["id"]

    def open_notebook(self, path: str) -> str:
        """What JupyterLab does when it opens a notebook: a session for its path, with a sandbox kernel;
        the kernel's id."""
        made = self.server(
            "POST",
            "/api/sessions",
            json={"path": path, "name": path, "type": "notebook", "kernel": {"name": "sandbox-python"}},
        )
        assert made.status_code == 201, made.text
        return made.json()["kernel"]["id"]

    def run(self, kernel_id: str, code: str, timeout: float = 120) -> tuple[str, str]:
        """(reply status, what the cell printed, errors included), run over the kernel's websocket as
        JupyterLab runs it, through the hub's proxy."""
        return asyncio.run(self._run(kernel_id, code, timeout))

    async def _run(self, kernel_id: str, code: str, timeout: float) -> tuple[str, str]:
        url = f"ws://127.0.0.1:{self.hub.port}/user/{self.name}/api/kernels/{kernel_id}/channels"
        connection = await websocket_connect(HTTPRequest(url, headers=self.auth, request_timeout=timeout))
        msg_id = uuid.uuid4().hex
        await connection.write_message(execute_request(code, msg_id, uuid.uuid4().hex, username=self.name))
        seen: list[dict] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(connection.read_message(), timeout=max(0.1, deadline - time.monotonic()))
                assert raw is not None, "the kernel's websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                seen.append(msg)
                idle = any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in seen)
                if idle and any(m["msg_type"] == "execute_reply" for m in seen):
                    break
        finally:
            connection.close()
        text = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
        text += "".join(m["content"].get("evalue", "") for m in seen if m["msg_type"] == "error")
        replies = [m["content"]["status"] for m in seen if m["msg_type"] == "execute_reply"]
        return (replies[0] if replies else "no reply"), text


class Hub:
    def __init__(self, port: int, service_port: int, state: Path, process: Any, log: Path) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.service_url = f"http://127.0.0.1:{service_port}"
        self.service_port = service_port
        self.state = state
        self.process = process
        self.log = log
        self.users: dict[str, HubUser] = {}

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def remove_sandboxes_of(backend: DockerBackend, users: Sequence[str]) -> None:
    """What the hub's users left on the engine: their containers and volumes (by owner label)."""
    for user in users:
        label = f"{LABEL_OWNER}={owner_of(user)}"
        for container in backend.client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        for volume in backend.client.volumes.list(filters={"label": label}):
            with contextlib.suppress(Exception):
                volume.remove(force=True)


@contextlib.contextmanager
def running_hub(
    backend: DockerBackend, service_args: Sequence[str] = (), users: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[Hub]:
    """The example hub with `users` new accounts (names unique to this run), the sandbox service started
    by it with `service_args`; everything is stopped and removed afterwards."""
    suffix = secrets.token_hex(3)
    names = [f"sbx{chr(ord('a') + i)}-{suffix}" for i in range(users)]
    # Readable by the users (their server's Python lives here), the hub's state below it is not.
    public = Path(tempfile.mkdtemp(prefix="jupyter-sandbox-hub-"))
    public.chmod(0o755)
    state = public / "state"
    log = public / "hub.log"
    process = None
    try:
        for name in names:
            hub_script.ensure_user(name)
        passwords = hub_script.write_state(state, names, keep=False)
        with FileLock(str(PROXY_PREFIX) + ".lock"):
            proxy = hub_script.install_proxy(PROXY_PREFIX)
        venv = Path(sys.prefix)
        users_bin = hub_script.users_python(venv, public / "users-venv")
        port, service_port = free_port(), free_port()
        env = hub_script.hub_environment(
            state=state,
            venv_bin=venv / "bin",
            users_bin=users_bin,
            proxy=proxy,
            port=port,
            service_port=service_port,
            api_port=free_port(),
            proxy_api_port=free_port(),
            service_args=service_args,
        )
        # The hub passes on only named variables: the owner a test worker sets reaches neither the users'
        # servers nor the service (which names its users' sandboxes itself).
        process = hub_script.start_hub(venv / "bin", state, {**env, **(extra_env or {})}, log)
        hub = Hub(port, service_port, state, process, log)
        assert hub_script.wait_for_hub(port, process), f"the hub did not start:\n{hub.log_tail()}"

        def service_up() -> bool:
            try:
                return requests.get(f"{hub.service_url}/sandbox/api/sandboxes", timeout=2).status_code in (401, 403)
            except requests.RequestException:
                return False

        assert wait_until(service_up, timeout=60, interval=0.2), f"the sandbox service did not start:\n{hub.log_tail()}"
        hub.users = {name: HubUser(hub, name, passwords[name]) for name in names}
        yield hub
    finally:
        if process is not None:
            hub_script.stop_hub(process)
            hub_script.stop_proxy(state)
        try:
            remove_sandboxes_of(backend, names)
        finally:
            # The accounts go even when the engine is unreachable at this moment.
            for name in names:
                hub_script.remove_user(name)
        # The last run's log (hub, service, users' servers), for a failure's post-mortem.
        with contextlib.suppress(OSError):
            shutil.copyfile(log, Path(tempfile.gettempdir()) / "jupyter-sandbox-hub-last.log")
        shutil.rmtree(public, ignore_errors=True)
