"""The sandbox kernelspec's provisioner: a kernel launched while a server extension has registered
itself gets that server's id and preview template in its environment; with nothing registered (a
client with no server: nbclient, papermill, jupyter console) it gets nothing added. The server's own
environment is never changed. Real kernel processes, launched by jupyter_client; no Docker."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import tomllib
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_client.provisioning import KernelProvisionerFactory

from jupyter_sandbox.kernel import provisioner
from jupyter_sandbox.kernel.magics import PREVIEW_TEMPLATE_ENV
from jupyter_sandbox.sandbox.manager import SERVER_ID_ENV

ROOT = Path(__file__).resolve().parents[2]
GROUP = "jupyter_client.kernel_provisioners"

# A stand-in kernel: writes the environment it was given, then waits to be shut down.
DUMP_ENV = "import json, os, sys, time; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ))); time.sleep(60)"


@pytest.fixture
def spec_manager(tmp_path: Path) -> Iterator[KernelSpecManager]:
    """A kernelspec naming the provisioner as the shipped one does, and the provisioner known to
    jupyter_client by its pyproject entry point (the shared environment's package metadata may
    predate it: it is put in the factory's cache, where an installed entry point is loaded to)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"][GROUP][provisioner.PROVISIONER_NAME]
    factory = KernelProvisionerFactory.instance()
    known = factory.provisioners.get(provisioner.PROVISIONER_NAME)
    factory.provisioners[provisioner.PROVISIONER_NAME] = EntryPoint(provisioner.PROVISIONER_NAME, target, GROUP)
    shipped = json.loads((ROOT / "share/jupyter/kernels/sandbox-python/kernel.json").read_text())
    spec = {**shipped, "argv": [sys.executable, "-c", DUMP_ENV, str(tmp_path / "env.json")]}
    spec_dir = tmp_path / "kernels" / "dump-env"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    try:
        yield specs
    finally:
        provisioner.unregister()
        if known is None:
            factory.provisioners.pop(provisioner.PROVISIONER_NAME, None)
        else:
            factory.provisioners[provisioner.PROVISIONER_NAME] = known


def launched_env(specs: KernelSpecManager, tmp_path: Path) -> dict[str, str]:
    out = tmp_path / "env.json"
    out.unlink(missing_ok=True)
    kernel = KernelManager(kernel_name="dump-env", kernel_spec_manager=specs)
    kernel.start_kernel()
    try:
        assert isinstance(kernel.provisioner, provisioner.SandboxProvisioner)
        deadline = time.monotonic() + 20
        while not (out.exists() and out.read_text()):
            assert time.monotonic() < deadline, "the kernel process did not start"
            time.sleep(0.05)
        return json.loads(out.read_text())
    finally:
        kernel.shutdown_kernel(now=True)


def test_the_shipped_kernelspec_names_the_registered_provisioner() -> None:
    shipped = json.loads((ROOT / "share/jupyter/kernels/sandbox-python/kernel.json").read_text())
    assert shipped["metadata"]["kernel_provisioner"]["provisioner_name"] == provisioner.PROVISIONER_NAME
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]
    assert EntryPoint("x", target[provisioner.PROVISIONER_NAME], GROUP).load() is provisioner.SandboxProvisioner


def test_a_kernel_gets_what_the_server_registered_and_the_server_env_stays(
    spec_manager: KernelSpecManager, tmp_path: Path
) -> None:
    template = "http://127.0.0.1:8888/sandbox/preview/{sandbox_id}/{port}/"
    provisioner.register_server("a1b2c3d4e5f6")
    provisioner.register_preview_template(template)
    env = launched_env(spec_manager, tmp_path)
    assert env[SERVER_ID_ENV] == "a1b2c3d4e5f6" and env[PREVIEW_TEMPLATE_ENV] == template
    assert SERVER_ID_ENV not in os.environ and PREVIEW_TEMPLATE_ENV not in os.environ


def test_with_no_server_registered_nothing_is_added(spec_manager: KernelSpecManager, tmp_path: Path) -> None:
    provisioner.register_server("a1b2c3d4e5f6")
    provisioner.unregister()  # the server stopped; or a client that never had one
    env = launched_env(spec_manager, tmp_path)
    assert SERVER_ID_ENV not in env and PREVIEW_TEMPLATE_ENV not in env
    assert env.get("PATH") == os.environ.get("PATH")  # the rest of the environment as ever


def test_the_server_warns_when_its_kernelspec_lacks_the_provisioner(
    spec_manager: KernelSpecManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    log = logging.getLogger("provisioner-check")
    folder = tmp_path / "kernels" / provisioner.KERNEL_NAME
    folder.mkdir()
    old = json.loads((ROOT / "share/jupyter/kernels/sandbox-python/kernel.json").read_text())
    old["metadata"].pop("kernel_provisioner")  # a kernelspec installed before the provisioner
    (folder / "kernel.json").write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING, logger="provisioner-check"):
        assert provisioner.check_kernelspec(spec_manager, log) is False
    assert "will not claim this server's warm pool" in caplog.text and "reinstall" in caplog.text
    (folder / "kernel.json").write_text(
        json.dumps({**old, "metadata": {"kernel_provisioner": {"provisioner_name": provisioner.PROVISIONER_NAME}}})
    )
    caplog.clear()
    assert provisioner.check_kernelspec(spec_manager, log) is True and not caplog.text
