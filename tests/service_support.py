"""A real sandbox service (`jupyter sandbox service`) in its own process, with a tokens file of users.

Used by tests/test_service.py and benchmarks/service.py. User names carry a suffix of this run's own, so
that two runs on one engine never share an owner (`hub-user:<name>`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY = "jupyter-sandbox service ready at "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "jupyter_sandbox.cli", "service", *args]


def write_tokens(path: Path, users: dict[str, str], mode: int = 0o600) -> None:
    """A tokens file {token: user} with this mode (the service refuses one readable by others)."""
    path.write_text(json.dumps({token: user for user, token in users.items()}))
    path.chmod(mode)


class ServiceProcess:
    """One service on a fixed port, which can be stopped and started again (its sandboxes stay)."""

    def __init__(
        self, folder: Path, users: list[str], config: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.folder = folder
        self.env = env or {}
        suffix = secrets.token_hex(3)
        self.users = {name: f"{name}-{suffix}" for name in users}  # short name -> the service's user name
        self.tokens = {full: secrets.token_hex(24) for full in self.users.values()}
        self.tokens_file = folder / "tokens.json"
        write_tokens(self.tokens_file, self.tokens)
        self.config_file = folder / "service_config.json"
        self.config_file.write_text(json.dumps(config or {}))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = folder / "service.log"
        self.process: subprocess.Popen | None = None

    def token(self, user: str) -> str:
        return self.tokens[self.users[user]]

    def owner(self, user: str) -> str:
        return f"hub-user:{self.users[user]}"

    def start(self, timeout: float = 60) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                service_argv(
                    "--ip=127.0.0.1",
                    f"--port={self.port}",
                    f"--tokens-file={self.tokens_file}",
                    f"--config={self.config_file}",
                ),
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_PROXY": "127.0.0.1", **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if READY in text:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the service ended at start:\n{text}")
            time.sleep(0.1)
        raise RuntimeError(f"the service was not ready in {timeout} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, and its exit status."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


# A real JupyterHub for the service to ask about tokens: its API only. No HTTP proxy is started (none is
# installed where the tests run, and only the hub's API is used): routes are kept in memory instead.
HUB_CONFIG = """
from jupyterhub.proxy import Proxy


class RoutesInMemory(Proxy):
    should_start = False
    routes: dict = {{}}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {{"routespec": routespec, "target": target, "data": data}}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


c.JupyterHub.proxy_class = RoutesInMemory
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{folder}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.pid_file = "{folder}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.services = [{{"name": "sandbox", "api_token": "{service_token}"}}]
# The service's own token may make users and their tokens (the test's admin); a user's token is
# checked by asking the hub who owns it, which any token may ask of itself.
c.JupyterHub.load_roles = [
    {{"name": "sandbox-service", "scopes": ["admin:users", "tokens"], "services": ["sandbox"]}}
]
"""


class HubProcess:
    """`jupyterhub` with the service registered as an external hub service."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hub_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.hub_port}/hub/api"
        self.service_token = secrets.token_hex(24)
        config = folder / "jupyterhub_config.py"
        config.write_text(
            HUB_CONFIG.format(
                public_port=free_port(), hub_port=self.hub_port, folder=folder, service_token=self.service_token
            )
        )
        self.log = folder / "hub.log"
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config)],
                cwd=folder,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_PROXY": "127.0.0.1"},
            )

    def service_env(self) -> dict[str, str]:
        """What the hub gives a service it runs: its API's address and the service's token."""
        return {"JUPYTERHUB_API_URL": self.api_url, "JUPYTERHUB_API_TOKEN": self.service_token}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The hub's REST API with the service's (admin) token."""
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.api_url + path, data=data, method=method, headers={"Authorization": f"token {self.service_token}"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                payload = response.read()
                return response.status, json.loads(payload) if payload else None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyterhub ended:\n{self.log.read_text()}")
            try:
                if self.request("GET", "/")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"jupyterhub was not up in {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
