"""The wheel carries the kernelspec and the image's build context; pip install alone is enough."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from harness import layered_venv

ROOT = Path(__file__).resolve().parents[1]


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
    )
    assert found.stdout.strip().startswith(str(venv))
