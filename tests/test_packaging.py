"""The wheel carries the kernelspec and the image's build context; pip install alone is enough."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from harness import layered_venv

ROOT = Path(__file__).resolve().parents[1]
# The installed copy is under test, never a source tree that PYTHONPATH names.
INSTALLED_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    return next(out.glob("jupyter_sandbox-*.whl"))


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    kernelspec = [n for n in names if n.endswith("share/jupyter/kernels/sandbox-python/kernel.json")]
    assert kernelspec and ".data/data/" in kernelspec[0]
    for required in (
        "jupyter_sandbox/_docker/Dockerfile",
        "jupyter_sandbox/_docker/requirements.txt",
        "jupyter_sandbox/agent/__main__.py",
        "jupyter_sandbox/kernel/relay.py",
    ):
        assert required in names
    # The JupyterLab extension ships prebuilt, with the server extension enabled by a config file.
    lab = [n for n in names if "share/jupyter/labextensions/jupyter-sandbox/" in n]
    assert any(n.endswith("/package.json") for n in lab) and any("/static/remoteEntry." in n for n in lab)
    assert any(n.endswith("/install.json") for n in lab)
    assert any(n.endswith("etc/jupyter/jupyter_server_config.d/jupyter_sandbox.json") for n in names)
    spec = json.loads(zipfile.ZipFile(wheel).read(kernelspec[0]))
    assert spec["display_name"] == "Python 3 (sandbox)"
    assert spec["argv"][:3] == ["python", "-m", "jupyter_sandbox.kernel"]


def test_pip_install_makes_the_kernel_appear(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # The dependencies come from this test run's environment; the wheel itself is installed fresh.
    python = layered_venv(venv)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True, timeout=300)
    listing = subprocess.run(
        [str(python), "-m", "jupyter_client.kernelspecapp", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    specs = json.loads(listing.stdout)["kernelspecs"]
    assert specs["sandbox-python"]["resource_dir"].startswith(str(venv))
    assert specs["sandbox-python"]["spec"]["display_name"] == "Python 3 (sandbox)"
    labextensions = subprocess.run(
        [str(python), "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    line = next(
        line for line in (labextensions.stdout + labextensions.stderr).splitlines() if "jupyter-sandbox" in line
    )
    assert "enabled" in line and "OK" in line, line
    # The installed package finds its Dockerfile without the source tree.
    found = subprocess.run(
        [str(python), "-c", "from jupyter_sandbox.sandbox.image import build_context_dir; print(build_context_dir())"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=INSTALLED_ENV,
    )
    assert found.stdout.strip().startswith(str(venv))


def _clean_clone(destination: Path) -> Path:
    """The tracked files as they are now (what a fresh clone of this state holds): nothing built, no
    node_modules, no venv."""
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True, timeout=60
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in tracked)):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def _normalized(wheel: zipfile.ZipFile) -> list[str]:
    return sorted(re.sub(r"\.[0-9a-f]{16}\.js$", ".js", name) for name in wheel.namelist())


def _bare_env(venv: Path) -> dict[str, str]:
    """Only the fresh venv, Node and the system's tools on PATH: no JupyterLab, no jlpm."""
    env = {k: v for k, v in INSTALLED_ENV.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    return env


def test_sdist_builds_the_wheel_with_only_python_and_node(wheel: Path, tmp_path: Path) -> None:
    """From a clean clone: the sdist builds in a venv that has only `build`, and the wheel built from that
    sdist (its isolated build env brings hatchling, hatch-jupyter-builder and jupyter-builder's jlpm; the
    yarn packages come from yarn's cache) installs into another venv with all three parts visible."""
    source = _clean_clone(tmp_path / "clone")
    builder = tmp_path / "builder"
    subprocess.run([sys.executable, "-m", "venv", str(builder)], check=True, capture_output=True, timeout=300)
    env = _bare_env(builder)
    assert shutil.which("jlpm", path=env["PATH"]) is None and shutil.which("jupyter", path=env["PATH"]) is None
    subprocess.run(
        [str(builder / "bin" / "python"), "-m", "pip", "install", "--quiet", "build"], env=env, check=True, timeout=300
    )
    dist = tmp_path / "dist"
    built = subprocess.run(
        [str(builder / "bin" / "python"), "-m", "build", "--outdir", str(dist), str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    sdist = next(dist.glob("jupyter_sandbox-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    top = members[0].split("/")[0]
    for required in (
        "pyproject.toml",
        "labextension/package.json",
        "labextension/yarn.lock",
        "labextension/.yarnrc.yml",
        "labextension/tsconfig.json",
        "labextension/src/index.ts",
        "labextension/style/index.css",
        "share/jupyter/kernels/sandbox-python/kernel.json",
        "share/jupyter/kernels/sandbox-python/logo-64x64.png",
        "docker/Dockerfile",
    ):
        assert f"{top}/{required}" in members, required
    # Sources only: the built front end is the wheel's, never the sdist's.
    assert not any(m.startswith(f"{top}/jupyter_sandbox/labextension/") for m in members)

    from_sdist = next(dist.glob("jupyter_sandbox-*.whl"))
    # The wheel built from the sdist has what the wheel built from the tree has (the bundle's chunk
    # names carry a content hash of their own, which the build folder's path may change).
    with zipfile.ZipFile(wheel) as ours, zipfile.ZipFile(from_sdist) as theirs:
        assert _normalized(theirs) == _normalized(ours)

    venv = tmp_path / "venv"
    python = layered_venv(venv)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(from_sdist)], check=True, timeout=300
    )

    def run(*module: str) -> str:
        done = subprocess.run(
            [str(python), "-m", *module],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
            timeout=120,
            env=INSTALLED_ENV,
        )
        return done.stdout + done.stderr

    line = next(line for line in run("jupyterlab.labextensions", "list").splitlines() if "jupyter-sandbox" in line)
    assert "enabled" in line and "OK" in line, line
    server = run("jupyter_server.extension.serverextension", "list")
    line = next(line for line in server.splitlines() if line.strip().startswith("jupyter_sandbox"))
    assert "enabled" in line, server
    specs = json.loads(run("jupyter_client.kernelspecapp", "list", "--json"))["kernelspecs"]
    assert specs["sandbox-python"]["resource_dir"].startswith(str(venv))
    assert (Path(specs["sandbox-python"]["resource_dir"]) / "logo-64x64.png").is_file()
