"""`jupyter sandbox doctor`: is this machine ready to run sandboxes, and if not, what to do.

Each check looks at one part (the engine, the image, the network, egress enforcement, Node for a
source build, the Jupyter extension) and reports ok, a warning (works, with a limit) or a failure with
the command that fixes it. Nothing here changes the machine: it only looks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .sandbox.docker_backend import DockerBackend, SandboxError, _describe_engine
from .sandbox.manager import SandboxManager
from .sandbox.network import EgressError, Enforcer

# What the sidebar's bundler (rspack, through @jupyter/builder) needs to build it from source.
NODE_MINIMUM = (20, 19)
NODE_SHOWN = "20.19"
LABEXTENSION = "jupyter-sandbox"
SERVER_EXTENSION = "jupyter_sandbox"
KERNEL_NAME = "sandbox-python"


@dataclass
class Check:
    name: str
    status: str  # "ok", "warn", "fail" or "skip" (it needs a part that failed)
    detail: str
    fix: str = ""


def _engine(manager: SandboxManager) -> tuple[Check, DockerBackend | None]:
    try:
        backend = DockerBackend(timeout=10)
        version = backend.client.version().get("Version", "?")
    except SandboxError as exc:
        return (
            Check(
                "Docker engine",
                "fail",
                f"not reachable at {_describe_engine()}: {str(exc).split(': ', 1)[-1].split('. Start')[0]}",
                "start it (`sudo systemctl start docker`, or `sudo bash scripts/ensure-docker.sh` from the source "
                "tree), or point DOCKER_HOST at a running engine",
            ),
            None,
        )
    except Exception as exc:  # the SDK's many kinds of connection trouble
        return Check("Docker engine", "fail", f"did not answer: {exc}", "restart the Docker engine"), None
    return Check("Docker engine", "ok", f"Docker {version} at {_describe_engine()}"), backend


def _image(manager: SandboxManager, backend: DockerBackend | None) -> Check:
    if backend is None:
        return Check("sandbox image", "skip", "not checked: no Docker engine")
    image = manager.image
    if not backend.image_id(image):
        return Check(
            "sandbox image",
            "fail",
            f"{image} is not on this engine",
            "run `jupyter sandbox image build` (a few minutes, once; `make image` from the source tree)",
        )
    created = ""
    try:
        created = str(backend.client.images.get(image).attrs.get("Created", ""))[:10]
    except Exception:
        pass
    return Check("sandbox image", "ok", f"{image}" + (f" (built {created})" if created else ""))


def _network(manager: SandboxManager, backend: DockerBackend | None) -> Check:
    name = manager.network_name
    if backend is None:
        return Check("sandbox network", "skip", "not checked: no Docker engine")
    try:
        found = [n for n in backend.client.networks.list(names=[name]) if n.name == name]
    except Exception as exc:
        return Check("sandbox network", "fail", f"cannot list networks: {exc}", "restart the Docker engine")
    if not found:
        return Check("sandbox network", "ok", f"{name} is made with the first sandbox")
    options = found[0].attrs.get("Options") or {}
    if options.get("com.docker.network.bridge.enable_icc") != "false":
        return Check(
            "sandbox network",
            "fail",
            f"{name} lets its containers reach each other (made by something else?)",
            f"remove it once no sandbox runs (`docker network rm {name}`); the next sandbox makes it again",
        )
    return Check("sandbox network", "ok", f"{name} (sandboxes cannot reach each other)")


def _egress() -> Iterator[Check]:
    try:
        Enforcer().check()
    except EgressError as exc:
        yield Check(
            "egress enforcement",
            "fail",
            str(exc),
            "run the Jupyter server as root (the rules go into each sandbox's network namespace) "
            "and install iptables (`apt-get install iptables`)",
        )
        return
    found = shutil.which("iptables-restore") or "iptables-restore"
    yield Check("egress enforcement", "ok", f"iptables rules per sandbox ({found})")
    if not shutil.which("ip6tables-restore"):
        yield Check(
            "egress enforcement (IPv6)",
            "warn",
            "ip6tables-restore is missing: a sandbox on a network with IPv6 cannot start",
            "install iptables (it brings ip6tables-restore)",
        )


def _node() -> Check:
    node = shutil.which("node")
    if not node:
        return Check(
            "Node.js",
            "warn",
            "not installed: only a source build of the sidebar needs it (a wheel carries it built)",
            f"install Node.js {NODE_SHOWN} or later to `pip install .` from a clone",
        )
    try:
        text = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("Node.js", "warn", f"{node} does not run: {exc}", f"reinstall Node.js {NODE_SHOWN}+")
    match = re.match(r"v(\d+)\.(\d+)", text)
    if not match or (int(match.group(1)), int(match.group(2))) < NODE_MINIMUM:
        return Check(
            "Node.js",
            "warn",
            f"{text or 'unknown version'} is too old to build the sidebar",
            f"install Node.js {NODE_SHOWN} or later",
        )
    return Check("Node.js", "ok", f"{text} (for a source build)")


def _extension() -> Iterator[Check]:
    from jupyter_core.paths import jupyter_config_path, jupyter_path

    try:
        from jupyter_server.extension.config import ExtensionConfigManager

        enabled = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    except Exception as exc:
        yield Check(
            "server extension", "fail", f"cannot read Jupyter's configuration: {exc}", "reinstall jupyter-server"
        )
    else:
        if enabled.get(SERVER_EXTENSION):
            yield Check("server extension", "ok", f"{SERVER_EXTENSION} enabled")
        else:
            yield Check(
                "server extension",
                "fail",
                f"{SERVER_EXTENSION} is not enabled",
                f"`jupyter server extension enable {SERVER_EXTENSION}` (pip install puts its config in place)",
            )
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        yield Check(
            "JupyterLab sidebar", "warn", "JupyterLab is not installed here", "pip install 'jupyter-sandbox[lab]'"
        )
    else:
        places = [Path(p) / LABEXTENSION for p in jupyter_path("labextensions")]
        built = next((p for p in places if (p / "package.json").is_file() and (p / "static").is_dir()), None)
        if built is None:
            yield Check(
                "JupyterLab sidebar",
                "fail",
                f"the {LABEXTENSION} extension is not installed",
                "reinstall the package (`pip install --force-reinstall jupyter-sandbox`; from a clone: `make`)",
            )
        else:
            yield Check("JupyterLab sidebar", "ok", f"{LABEXTENSION} in {built.parent}")
    from jupyter_client.kernelspec import KernelSpecManager

    specs: dict[str, Any] = KernelSpecManager().find_kernel_specs()
    if KERNEL_NAME in specs:
        yield Check("kernelspec", "ok", f"{KERNEL_NAME} in {specs[KERNEL_NAME]}")
    else:
        yield Check("kernelspec", "fail", f"{KERNEL_NAME} is missing", "reinstall the package")


def checks(manager: SandboxManager) -> Iterator[Check]:
    engine, backend = _engine(manager)
    yield engine
    yield _image(manager, backend)
    yield _network(manager, backend)
    yield from _egress()
    yield _node()
    yield from _extension()


MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def run(manager: SandboxManager, write: Any = print) -> int:
    """Print one line per check (and its fix under a problem); 1 when any check failed."""
    write(f"jupyter-sandbox {__version__}")
    failed = 0
    for check in checks(manager):
        write(f"  {MARKS[check.status]}  {check.name:<26} {check.detail}")
        if check.fix and check.status != "ok":
            write(f"  {'':4}  {'':<26} -> {check.fix}")
        failed += check.status == "fail"
    write("all checks passed" if not failed else f"{failed} check(s) failed: see the lines marked FAIL")
    return 1 if failed else 0
