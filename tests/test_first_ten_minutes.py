"""The first ten minutes, as a newcomer meets them at the command line: `--version`, `doctor`, `list`
with the notebook's name, and `start | stop | exec | shell ID`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

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
