"""Shared fixtures: a real Docker engine, the real sandbox image, real sandbox kernels."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from filelock import FileLock
from harness import execute_request, server_argv
from jupyter_client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import MultiKernelManager
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend, tar_bytes
from jupyter_sandbox.sandbox.image import DEFAULT_IMAGE, build_image
from jupyter_sandbox.sandbox.manager import OWNER_ENV, Sandbox, SandboxManager
from jupyter_sandbox.sandbox.records import ContainerRecord
from jupyter_sandbox.sandbox.spec import LABEL_ID, LABEL_KERNEL_ID

ROOT = Path(__file__).resolve().parents[1]
KERNEL_NAME = "sandbox-python"

# A parallel worker is an owner of its own (the variable reaches the kernels, servers and commands
# its tests start): one worker's servers, with their idle stops, warm pools and reconciliation, then
# leave the sandboxes of another worker's tests alone, as they leave another user's.
if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get(OWNER_ENV):
    os.environ[OWNER_ENV] = f"{getpass.getuser()}-tests-{os.environ['PYTEST_XDIST_WORKER']}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart the Docker engine go last, so that no other test sees it go away."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


# Debian's Chromium, as the browser tests drive it: no sandbox (root), and no traffic of its own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]


def launch_chromium(playwright: Any, args: list[str] = ()) -> Any:
    """A headless Chromium from Debian's package (Playwright's own download is not used)."""
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[*CHROMIUM_ARGS, *args])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for a test module's pages."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def docker_backend() -> DockerBackend:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")], check=True)
    return DockerBackend()


@pytest.fixture(scope="session")
def sandbox_image(docker_backend: DockerBackend) -> str:
    # Tests never try a registry: the base is bootstrapped from Debian packages (or reused). Parallel
    # workers take turns, so that the first builds it and the others find it up to date.
    with FileLock(str(Path(tempfile.gettempdir()) / "jupyter-sandbox-test-image.lock")):
        build_image(docker_backend, lambda line: print(line, file=sys.stderr), tag=DEFAULT_IMAGE, bootstrap=True)
    return DEFAULT_IMAGE


def sandbox_containers(docker_backend: DockerBackend, **labels: str) -> list[ContainerRecord]:
    return docker_backend.list_containers(labels or None, label_keys=[LABEL_ID])


@pytest.fixture(scope="session", autouse=True)
def no_leftovers() -> Iterator[None]:
    """Every test cleans up what it made: at the end no sandbox container or volume remains.

    JUPYTER_SANDBOX_TESTS_SHARED_ENGINE=1 skips the check, for test runs of several checkouts at once on
    one Docker engine (each would see the others' sandboxes). So do the workers of a parallel run: the
    serial pass that follows it (`make test`) checks for all of them at its end."""
    yield
    if os.environ.get("JUPYTER_SANDBOX_TESTS_SHARED_ENGINE") or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:
        backend = DockerBackend()
    except Exception:
        return
    leftovers = sandbox_containers(backend)
    volumes = backend.list_volumes([LABEL_ID])
    assert not leftovers, f"sandbox containers left behind: {[c.name for c in leftovers]}"
    assert not volumes, f"sandbox volumes left behind: {volumes}"


class Run:
    """What one executed cell produced, as a front end would see it."""

    def __init__(self, reply: dict[str, Any], outputs: list[dict[str, Any]]) -> None:
        self.reply = reply
        self.outputs = outputs

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    @property
    def stdout(self) -> str:
        return "".join(
            o["content"]["text"] for o in self.outputs if o["msg_type"] == "stream" and o["content"]["name"] == "stdout"
        )

    @property
    def stderr(self) -> str:
        return "".join(
            o["content"]["text"] for o in self.outputs if o["msg_type"] == "stream" and o["content"]["name"] == "stderr"
        )

    @property
    def error(self) -> dict[str, Any] | None:
        for o in self.outputs:
            if o["msg_type"] == "error":
                return o["content"]
        return None

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [o for o in self.outputs if o["msg_type"] == msg_type]


class SandboxKernel:
    """A sandbox kernel started the way Jupyter Server starts one (MultiKernelManager)."""

    def __init__(self, mkm: MultiKernelManager, kernel_id: str, ready: bool = True) -> None:
        self.mkm = mkm
        self.kernel_id = kernel_id
        self.km = mkm.get_kernel(kernel_id)
        self.client: BlockingKernelClient = self.km.client()
        self.client.start_channels()
        if ready:
            self.client.wait_for_ready(timeout=300)
        else:
            # As a front end that runs a cell at once (Run All on open): only iopub's subscription
            # is waited for, so that the cell's output is not missed.
            time.sleep(1.0)

    def run(
        self,
        code: str,
        timeout: float = 60,
        stdin_hook: Callable[[dict], None] | None = None,
        output_hook: Callable[[dict], None] | None = None,
    ) -> Run:
        outputs: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] not in ("status", "execute_input"):
                outputs.append(msg)
            if output_hook:
                output_hook(msg)

        reply = self.client.execute_interactive(
            code, timeout=timeout, output_hook=hook, allow_stdin=stdin_hook is not None, stdin_hook=stdin_hook
        )
        return Run(reply, outputs)

    def interrupted(self, code: str, interrupt: Callable[[], None], wait: float = 1.0) -> dict[str, Any]:
        """Run `code`, call `interrupt` once it runs, and return the cell's execute reply."""
        msg_id = self.client.execute(code)
        time.sleep(wait)
        interrupt()
        reply = self.client.get_shell_msg(timeout=20)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=20)
        return reply

    def restart(self) -> None:
        self.client.stop_channels()
        self.mkm.restart_kernel(self.kernel_id)
        self.client = self.km.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def shutdown(self) -> None:
        """Shut down as Jupyter does, then wait for the sandbox's release (a process of its own)."""
        self.client.stop_channels()
        if self.kernel_id in self.mkm.list_kernel_ids():
            self.mkm.shutdown_kernel(self.kernel_id)
        assert wait_until(lambda: not releasing(self.kernel_id), timeout=60)


def releasing(kernel_id: str) -> bool:
    """Whether the release of this kernel's sandbox is still under way."""
    found = subprocess.run(
        ["pgrep", "-f", f"jupyter_sandbox.kernel.release {kernel_id}"], capture_output=True, check=False
    )
    return found.returncode == 0


def start_sandbox_kernel(
    extra_env: dict[str, str] | None = None,
    extra_argv: list[str] | None = None,
    tmp_path: Path | None = None,
    ready: bool = True,
) -> SandboxKernel:
    specs = KernelSpecManager()
    kwargs: dict[str, Any] = {"kernel_name": KERNEL_NAME}
    env = {**os.environ, **(extra_env or {})}
    kwargs["env"] = env
    if extra_argv:
        # A private kernelspec with extra command-line config, as an operator would write one.
        assert tmp_path is not None
        spec_dir = tmp_path / "kernels" / "sandbox-test"
        spec_dir.mkdir(parents=True)
        spec = json.loads((ROOT / "share/jupyter/kernels/sandbox-python/kernel.json").read_text())
        spec["argv"] += extra_argv
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        specs.kernel_dirs.insert(0, str(tmp_path / "kernels"))
        kwargs["kernel_name"] = "sandbox-test"
    mkm = MultiKernelManager(kernel_spec_manager=specs)
    kernel_id = mkm.start_kernel(**kwargs)
    return SandboxKernel(mkm, kernel_id, ready=ready)


class RestartableServer:
    """A Jupyter server on one root, stopped and started again as a user restarts it; the arguments
    are start_jupyter_server's (each start logs to a file of its own when `log` is given)."""

    def __init__(
        self,
        root: Path,
        extra_args: list[str] = (),
        log: Path | None = None,
        module: str = "jupyter_server",
        env: dict[str, str] | None = None,
    ) -> None:
        self.root, self.extra_args, self.log, self.module, self.env = root, list(extra_args), log, module, env
        self.server: Server | None = None
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Server:
        self.starts += 1
        log = self.log.with_name(f"{self.log.stem}-{self.starts}.log") if self.log else None
        self.server, self.process = start_jupyter_server(
            self.root, self.extra_args, log=log, module=self.module, env=self.env
        )
        return self.server

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)

    def restart(self) -> Server:
        self.stop()
        return self.start()


@pytest.fixture
def manager(docker_backend: DockerBackend, sandbox_image: str) -> SandboxManager:
    return SandboxManager(backend=docker_backend)


@pytest.fixture
def sandbox(manager: SandboxManager, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A started sandbox whose agent answers, bound to the test module's name as kernel id. The test
    holds that kernel's lease, as a live kernel does, so no server's reconciliation takes it away."""
    lease = binding.KernelLease(request.module.__name__)
    lease.acquire()
    created = manager.create(kernel_id=request.module.__name__)
    manager.wait_for_agent(created)
    yield created
    manager.remove(created)
    lease.release(forget=True)


@pytest.fixture
def sandbox_kernel(sandbox_image: str, docker_backend: DockerBackend) -> Iterator[SandboxKernel]:
    kernel = start_sandbox_kernel()
    yield kernel
    kernel.shutdown()
    assert not sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel.kernel_id})


@pytest.fixture(scope="module")
def shared_kernel(sandbox_image: str, docker_backend: DockerBackend) -> Iterator[SandboxKernel]:
    kernel = start_sandbox_kernel()
    yield kernel
    kernel.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.process: subprocess.Popen | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        raw: bytes | None = None,
        timeout: float = 120,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or bytes); HTTP errors are returned, not raised."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        all_headers = {**({"Authorization": f"token {self.token}"} if auth else {}), **(headers or {})}
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=all_headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as response:
                status, payload, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, payload, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        if "json" in kind and payload:
            return status, json.loads(payload)
        return status, payload


API = "/sandbox/api"


def box(sandbox_id: str, rest: str = "") -> str:
    """The REST path of a sandbox, or of `rest` below it."""
    return f"{API}/sandboxes/{sandbox_id}{rest}"


def q(**params: str) -> str:
    return "?" + urllib.parse.urlencode(params)


def exec_command(server: Server, sandbox_id: str, command: str, timeout: float = 60, http_timeout: float = 120) -> dict:
    """POST .../process/exec, which must answer 200: {exit_code, stdout, stderr, timed_out}."""
    status, answer = server.request(
        "POST", box(sandbox_id, "/process/exec"), {"command": command, "timeout": timeout}, timeout=http_timeout
    )
    assert status == 200, answer
    return answer


def network_subnet(backend: DockerBackend, name: str) -> str:
    """The subnet of a Docker network a test made (for an egress allow list that reaches it)."""
    return backend.client.networks.get(name).attrs["IPAM"]["Config"][0]["Subnet"]


def start_jupyter_server(
    root: Path,
    extra_args: list[str] = (),
    log: Path | None = None,
    module: str = "jupyter_server",
    env: dict[str, str] | None = None,
) -> tuple[Server, subprocess.Popen]:
    """A real Jupyter Server in its own process, as `jupyter lab` runs it, with token auth. `module`
    "jupyterlab" starts JupyterLab itself; `env` adds to the process's environment."""
    port, token = free_port(), secrets.token_hex(16)
    output = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed once the server has its copy
    # No warm pool unless a test asks for one: its sandboxes would outlive the test's.
    pool = [] if any("warm_pool_size" in a for a in extra_args) else ["--SandboxManager.warm_pool_size=0"]
    process = subprocess.Popen(
        server_argv(root, port, token, [*pool, *extra_args], module=module),
        stdout=output,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_PROXY": "127.0.0.1", **(env or {})},
    )
    if not isinstance(output, int):
        output.close()  # the server writes to its own copy of the descriptor
    server = Server(port, token)
    server.process = process

    def up() -> bool:
        try:
            return server.request("GET", "/api/status")[0] == 200
        except OSError:
            return False

    assert wait_until(up, timeout=90), f"{module} did not start"
    return server, process


def lab_args(folder: Path, plugins: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """JupyterLab's command line for a test: user settings and workspaces under `folder`. The
    settings ask no question about fetching news and check for no update (no dialog in the middle of
    a page, no request to the internet), plus `plugins`, {"notebook-extension/tracker": {...}, ...}."""
    settings, workspaces = folder / "settings", folder / "workspaces"
    workspaces.mkdir(parents=True, exist_ok=True)
    every = {"apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}, **(plugins or {})}
    for plugin, values in every.items():
        extension, name = plugin.split("/")
        (settings / "@jupyterlab" / extension).mkdir(parents=True, exist_ok=True)
        (settings / "@jupyterlab" / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    return [f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={workspaces}"]


@pytest.fixture(scope="module")
def jupyter_server(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server, process = start_jupyter_server(tmp_path_factory.mktemp("server-root"))
    yield server
    process.terminate()
    process.wait(timeout=30)


async def execute_over_websocket(server: Server, kernel_id: str, code: str, timeout: float = 120) -> list[dict]:
    """Run a cell as JupyterLab does, over the server's kernel websocket; every message of the cell."""
    url = f"ws://127.0.0.1:{server.base.rsplit(':', 1)[1]}/api/kernels/{kernel_id}/channels?token={server.token}"
    connection = await websocket_connect(url)
    session = uuid.uuid4().hex
    msg_id = uuid.uuid4().hex
    await connection.write_message(execute_request(code, msg_id, session))
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(connection.read_message(), timeout=timeout)
        assert raw is not None, "the websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        seen.append(msg)
        # The reply (shell) and the idle status (iopub) travel on different channels, in any order.
        idle = any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in seen)
        if idle and any(m["msg_type"] == "execute_reply" for m in seen):
            break
    connection.close()
    return seen


def run_over_websocket(server: Server, kernel_id: str, code: str, timeout: float = 120) -> tuple[str, str]:
    """(reply status, everything the cell printed, errors included) for a cell run through the server."""
    seen = asyncio.run(execute_over_websocket(server, kernel_id, code, timeout))
    text = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
    text += "".join(m["content"].get("evalue", "") for m in seen if m["msg_type"] == "error")
    replies = [m["content"]["status"] for m in seen if m["msg_type"] == "execute_reply"]
    return (replies[0] if replies else "no reply"), text


def open_notebook(server: Server, path: str) -> dict[str, Any]:
    """What JupyterLab does when it opens a notebook: a session for its path, with a sandbox kernel."""
    status, session = server.request(
        "POST",
        "/api/sessions",
        {"path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook", "kernel": {"name": KERNEL_NAME}},
    )
    assert status == 201, session
    return session


@contextlib.contextmanager
def git_http_server(backend: DockerBackend, image: str, network_name: str, user: str, token: str) -> Iterator[str]:
    """A git HTTP server with basic auth in its own container, on a network of its own (which
    sandboxes join with SandboxManager.network_name). Yields the repository's URL (by IP address)."""
    client = backend.client
    network = client.networks.create(network_name, driver="bridge", labels={"io.jupyter-sandbox.test": "1"})
    container = None
    try:
        container = client.containers.create(
            image,
            [
                "sh",
                "-c",
                "git init -q --bare /home/sandbox/srv/repo.git && "
                "git -C /home/sandbox/srv/repo.git config http.receivepack true && "
                f"exec python3 /opt/test/git_http_server.py {user} {token} /home/sandbox/srv 8000",
            ],
            name=f"{network_name}-git",
            network=network.id,
            labels={"io.jupyter-sandbox.test": "1"},
        )
        container.put_archive(
            "/",
            tar_bytes({"opt/test/git_http_server.py": ((ROOT / "tests" / "git_http_server.py").read_bytes(), 0o444)}),
        )
        container.start()
        # By address: the host (whose credential proxy carries calls with credentials) cannot resolve
        # container names, the sandbox reaches the address through its egress allow list.
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][network_name]["IPAddress"]
        yield f"http://{address}:8000/repo.git"
    finally:
        if container is not None:
            container.remove(force=True)
        network.remove()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def preview_host(server: Server, sandbox_id: str, port: int) -> str:
    """The Host a browser sends for a sandbox's port through the subdomain-form preview."""
    return f"{port}-{sandbox_id}.localhost:{server.port}"


def fetch(
    server: Server, host: str, path: str, headers: dict | None = None, method: str = "GET", body: bytes | None = None
) -> tuple[int, dict, bytes]:
    """One request to the Jupyter server with this Host (a preview's, say): (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def start_preview_app(server: Server, sandbox_id: str, apps: dict[int, str]) -> None:
    """tests/preview_app.py running in a sandbox, once per port ({port: listening address}), each in a
    session of its own; returns when all of them listen."""
    box = f"/sandbox/api/sandboxes/{sandbox_id}"
    server.request(
        "PUT", f"{box}/files/content?path=preview_app.py", raw=(ROOT / "tests" / "preview_app.py").read_bytes()
    )
    for port, address in apps.items():
        server.request("POST", f"{box}/sessions", {"id": f"app-{port}"})
        server.request(
            "POST",
            f"{box}/sessions/app-{port}/commands",
            {"command": f"python3 preview_app.py {port} {address}", "run_async": True},
        )
    assert wait_until(lambda: set(apps) <= set(server.request("GET", f"{box}/ports")[1].get("ports", [])), timeout=30)


@contextlib.contextmanager
def host_http_server(body: bytes) -> Iterator[int]:
    """An HTTP server on the host's loopback answering every GET with `body`; yields its port."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
