"""`jupyter sandbox ...` as a user types it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

JUPYTER = str(Path(sys.executable).with_name("jupyter"))


def sandbox_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [JUPYTER, "sandbox", *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_help_lists_the_subcommands() -> None:
    result = sandbox_cli("--help")
    assert result.returncode == 0
    for word in ("image", "list", "rm", "prune"):
        assert word in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "required"),
        (("explode",), "invalid choice"),
        (("image",), "required"),
        (("image", "build", "--colour", "red"), "unrecognized arguments"),
        (("rm",), "name at least one sandbox ID, or --all"),
    ],
)
def test_bad_arguments_get_a_usage_message(args: tuple[str, ...], message: str) -> None:
    result = sandbox_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.serial
def test_list_rm_and_prune(docker_backend: DockerBackend, sandbox_image: str) -> None:
    manager = SandboxManager(backend=docker_backend)
    running = manager.create(kernel_id="cli-running")
    stopped = manager.create(kernel_id="cli-stopped", start=False)
    try:
        listed = json.loads(sandbox_cli("list", "--json").stdout)
        assert {running.id, stopped.id} <= {entry["id"] for entry in listed}
        table = sandbox_cli("list").stdout
        assert running.id in table and "cli-runn" in table  # kernel ids are shortened, as Docker shortens ids

        pruned = sandbox_cli("prune")
        # At least this test's stopped one (the engine may hold other stopped sandboxes of this user).
        assert pruned.returncode == 0 and re.search(r"removed [1-9]\d* stopped sandboxes", pruned.stdout)
        ids = {s.id for s in manager.list()}
        assert running.id in ids and stopped.id not in ids

        removed = sandbox_cli("rm", running.id)
        assert removed.returncode == 0 and f"removed {running.id}" in removed.stdout
        assert running.id not in {s.id for s in manager.list()}
    finally:
        for sandbox in manager.list():
            if sandbox.kernel_id in ("cli-running", "cli-stopped"):
                manager.remove(sandbox)


def test_rm_of_an_unknown_sandbox_says_so() -> None:
    result = sandbox_cli("rm", "no-such-sandbox")
    assert result.returncode == 1
    assert "there is no sandbox 'no-such-sandbox'" in result.stderr


def test_unreachable_docker_is_a_clear_error() -> None:
    result = sandbox_cli("list", env={"DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert result.returncode == 1
    assert "Docker is not reachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_image_build_is_skipped_when_up_to_date(sandbox_image: str) -> None:
    result = sandbox_cli("image", "build", "--bootstrap")
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout


def test_ensure_docker_explains_when_it_cannot_help(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "ensure-docker.sh"
    result = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:9"},
    )
    assert result.returncode == 1
    assert "no Docker engine answers there" in result.stderr
    assert shutil.which("docker")
