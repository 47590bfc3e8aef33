"""The first ten minutes, as a newcomer meets them at the command line: `--version`, `doctor`, `list`
with the notebook's name, and `start | stop | exec | shell ID`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SandboxKernel, Server, start_jupyter_server, start_preview_app, start_sandbox_kernel

from jupyter_sandbox import __version__
from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

JUPYTER = str(Path(sys.executable).with_name("jupyter"))


def sandbox_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [JUPYTER, "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    result = sandbox_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"jupyter-sandbox {__version__}"


def test_doctor_passes_on_a_ready_machine(sandbox_image: str) -> None:
    result = sandbox_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for part in (
        "Docker engine",
        "sandbox image",
        "sandbox network",
        "egress enforcement",
        "Node.js",
        "server extension",
        "JupyterLab sidebar",
        "kernelspec",
    ):
        line = next(line for line in lines if part in line)
        assert line.split()[0] in ("ok", "warn"), line
    assert sandbox_image in result.stdout
    assert lines[-1] == "all checks passed"


def test_doctor_says_what_to_do_when_the_engine_is_missing(tmp_path: Path) -> None:
    result = sandbox_cli("doctor", env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    engine = next(i for i, line in enumerate(lines) if "Docker engine" in line)
    assert lines[engine].split()[0] == "FAIL" and "no-such.sock" in lines[engine]
    assert "start it" in lines[engine + 1] and "DOCKER_HOST" in lines[engine + 1]
    # What needs the engine is not reported as a second, third failure of its own.
    assert next(line for line in lines if "sandbox image" in line).split()[0] == "skip"
    assert "Traceback" not in result.stderr
    assert "1 check(s) failed" in lines[-1]


def test_doctor_reports_a_missing_image(docker_backend: DockerBackend, tmp_path: Path) -> None:
    config = tmp_path / "jupyter_sandbox_config.json"
    config.write_text(json.dumps({"SandboxManager": {"image": f"jupyter-sandbox/absent:{uuid.uuid4().hex[:8]}"}}))
    result = sandbox_cli("doctor", env={"JUPYTER_CONFIG_DIR": str(tmp_path)})
    image = next(line for line in result.stdout.splitlines() if "sandbox image" in line)
    assert image.split()[0] == "FAIL" and "is not on this engine" in image
    assert "jupyter sandbox image build" in result.stdout
    assert result.returncode == 1


def test_list_start_stop_exec_and_shell(docker_backend: DockerBackend, sandbox_image: str, tmp_path: Path) -> None:
    manager = SandboxManager(backend=docker_backend)
    notebook = tmp_path / "analysis" / "first-steps.ipynb"
    workspace = binding.workspace_key(manager.owner, str(notebook))
    binding.remember_notebook(workspace, str(notebook), seen=True)
    sandbox = manager.create(workspace=workspace)
    try:
        table = sandbox_cli("list").stdout.splitlines()
        header, row = table[0], next(line for line in table if line.startswith(sandbox.id))
        assert header.split() == ["ID", "STATE", "NOTEBOOK", "KERNEL", "IMAGE"]
        assert "first-steps.ipynb" in row and "running" in row
        # Columns line up: each starts where its heading does.
        assert row.index(sandbox.image) == header.index("IMAGE")

        ran = sandbox_cli("exec", sandbox.id, "--cwd", "/tmp", "--", "sh", "-c", "pwd; echo oops >&2; exit 3")
        assert ran.returncode == 3
        assert ran.stdout.strip() == "/tmp" and ran.stderr.strip() == "oops"
        assert sandbox_cli("exec", sandbox.id, "echo $((6 * 7)) | tr 4 x").stdout.strip() == "x2"

        shell = sandbox_cli("shell", sandbox.id, stdin="echo in-$(pwd)-as-$(id -u)\nexit\n")
        assert shell.returncode == 0 and "in-/home/sandbox-as-1000" in shell.stdout

        stopped = sandbox_cli("stop", sandbox.id)
        assert stopped.returncode == 0 and f"jupyter sandbox start {sandbox.id}" in stopped.stdout
        assert manager.get(sandbox.id).state != "running"
        refused = sandbox_cli("exec", sandbox.id, "--", "true")
        assert refused.returncode == 1 and f"start it first: jupyter sandbox start {sandbox.id}" in refused.stderr

        started = sandbox_cli("start", sandbox.id)
        assert started.returncode == 0 and started.stdout.strip() == f"started {sandbox.id}"
        assert sandbox_cli("exec", sandbox.id, "--", "true").returncode == 0
    finally:
        manager.remove(manager.get(sandbox.id))
        binding.forget_notebook(workspace)


def test_lifecycle_commands_on_an_unknown_id() -> None:
    for command in ("start", "stop", "exec", "shell"):
        result = sandbox_cli(command, "000000000000")
        assert result.returncode == 1, command
        assert "000000000000" in result.stderr and "Traceback" not in result.stderr, result.stderr


# -- the magics, in the user's words -------------------------------------------------------------


@pytest.fixture(scope="module")
def host_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notebook-folder")
    (root / "a.txt").write_text("alpha")
    (root / "b.txt").write_text("beta")
    (root / "project" / "src").mkdir(parents=True)
    (root / "project" / "README").write_text("read me")
    (root / "project" / "src" / "main.py").write_text("print(1)")
    (root / "project" / ".env").write_text("SECRET=1")
    (root / "project" / "outside").symlink_to("/etc/passwd")
    (root / "escape").symlink_to("/etc")
    return root


@pytest.fixture(scope="module")
def magic_kernel(
    sandbox_image: str, host_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxKernel]:
    kernel = start_sandbox_kernel(
        extra_argv=[f"--SandboxKernel.host_root={host_root}"], tmp_path=tmp_path_factory.mktemp("spec")
    )
    yield kernel
    kernel.shutdown()


def error_of(run: Any) -> str:
    assert run.status == "error", run.stdout
    return run.reply["content"]["evalue"]


def test_exec_runs_in_the_folder_given(magic_kernel: SandboxKernel) -> None:
    magic_kernel.run("import os; os.makedirs('/home/sandbox/work/deeper', exist_ok=True)")
    assert magic_kernel.run("%sandbox exec --cwd work/deeper pwd").stdout.strip() == "/home/sandbox/work/deeper"
    assert magic_kernel.run("%sandbox exec --timeout 30 --cwd /tmp -- pwd").stdout.strip() == "/tmp"
    run = magic_kernel.run("%%sandbox exec --cwd /etc\npwd")
    assert run.stdout.strip() == "/etc"
    message = error_of(magic_kernel.run("%sandbox exec --cwd /no/such/place pwd"))
    assert "/no/such/place" in message and "agent" not in message


def test_upload_several_files_and_a_folder(magic_kernel: SandboxKernel) -> None:
    run = magic_kernel.run("%sandbox upload a.txt b.txt --to inbox")
    assert run.status == "ok", run.error
    assert "uploaded 2 files (9 bytes) to inbox" in run.stdout
    run = magic_kernel.run("%sandbox upload project")
    assert run.status == "ok", run.error
    assert "uploaded 2 files" in run.stdout
    listed = magic_kernel.run(
        "import os\nfor top, _, files in sorted(os.walk('/home/sandbox')):\n"
        "    print(*(os.path.join(top, f) for f in sorted(files) if 'inbox' in top or 'project' in top), sep='\\n')"
    ).stdout.split()
    assert sorted(listed) == [
        "/home/sandbox/inbox/a.txt",
        "/home/sandbox/inbox/b.txt",
        "/home/sandbox/project/README",
        "/home/sandbox/project/src/main.py",
    ]  # no hidden file, no link out of the folder
    # The one-file form still names the file's new path.
    run = magic_kernel.run("%sandbox upload a.txt /home/sandbox/renamed.txt")
    assert "uploaded a.txt (5 bytes) to /home/sandbox/renamed.txt" in run.stdout
    assert "leads outside" in error_of(magic_kernel.run("%sandbox upload escape"))


def test_ls_shows_a_clean_path_and_plain_messages(magic_kernel: SandboxKernel) -> None:
    run = magic_kernel.run("%sandbox ls /home/sandbox/../..")
    assert run.stdout.splitlines()[0] == "/:"
    message = error_of(magic_kernel.run("%sandbox ls /no/such/folder"))
    assert "does not exist" in message and "agent" not in message and "404" not in message


# -- the REST API: every error JSON, a missing token named -----------------------------------------


@pytest.fixture(scope="module")
def api(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server, process = start_jupyter_server(tmp_path_factory.mktemp("api-root"))
    yield server
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/sandboxes/not-an-id"),
        ("DELETE", "/sandboxes/ABCDEF012345"),
        ("POST", "/sandboxes/0123/start"),
        ("GET", "/sandboxes/zzzzzzzzzzzz/files?path=x"),
    ],
)
def test_a_malformed_sandbox_id_gets_a_json_404(api: Server, method: str, path: str) -> None:
    status, body = api.request(method, f"/sandbox/api{path}", body={} if method == "POST" else None)
    assert status == 404 and isinstance(body, dict), body
    assert "sandbox id is 12 lowercase hex characters" in body["message"]


def test_an_unknown_api_path_gets_a_json_404(api: Server) -> None:
    status, body = api.request("GET", "/sandbox/api/no-such-thing")
    assert status == 404 and isinstance(body, dict) and "openapi.json" in body["message"]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_request_without_a_token_is_told_it_needs_one(api: Server, method: str) -> None:
    for path in ("/sandboxes", "/sandboxes/0123456789ab", "/sandboxes/not-an-id"):
        status, body = api.request(method, f"/sandbox/api{path}", body={} if method == "POST" else None, auth=False)
        assert status == 403 and isinstance(body, dict), (path, body)
        assert "needs the Jupyter server's token" in body["message"] and "_xsrf" not in body["message"]


def test_a_preview_has_a_url_a_script_can_use(api: Server) -> None:
    status, created = api.request("POST", "/sandbox/api/sandboxes", {})
    assert status == 201, created
    sandbox_id = created["id"]
    try:
        start_preview_app(api, sandbox_id, {8000: "127.0.0.1"})
        status, link = api.request("POST", f"/sandbox/api/sandboxes/{sandbox_id}/previews", {"port": 8000})
        assert status == 201, link
        assert ".localhost" in link["url"]
        script_url = link["script_url"]
        assert script_url.endswith(f"/sandbox/preview/{sandbox_id}/8000/")
        # Python's own resolver and HTTP client, no Host header set by hand.
        request = urllib.request.Request(script_url, headers={link["header"]: link["token"]})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=60) as response:
            assert response.status == 200 and b"hello from the sandbox" in response.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(script_url, timeout=60)
        assert refused.value.code in (401, 403)
    finally:
        api.request("DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")
