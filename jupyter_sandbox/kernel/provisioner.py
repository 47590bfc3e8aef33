"""The sandbox kernelspec's provisioner: what a running Jupyter server tells the kernels it starts.

A sandbox kernel needs two facts only its server knows: the server's id (a kernel claims only its
own server's warm pool) and the preview link template (`%sandbox preview`). The server extension
registers them here, in its own process, and `pre_launch` adds them to the environment of each
kernel it launches; the server's own environment is never changed, so nothing else the server
starts (terminals, other kernels) sees them.

A client with no sandbox server (nbclient, papermill, jupyter console, jupyter_kernel_test) has
registered nothing: the provisioner then adds nothing, and the kernel works as it does without a
server (no pool of its own, previews refused with a message).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from ..sandbox.manager import SERVER_ID_ENV
from .magics import PREVIEW_SCRIPT_TEMPLATE_ENV, PREVIEW_TEMPLATE_ENV

# The name the kernelspec's metadata uses (kernel_provisioner.provisioner_name) and pyproject
# registers under the jupyter_client.kernel_provisioners entry point group.
PROVISIONER_NAME = "jupyter-sandbox-provisioner"
KERNEL_NAME = "sandbox-python"

_lock = threading.Lock()
_registered: dict[str, str] = {}


def register_server(server_id: str) -> None:
    """The running server extension's id, for the kernels it starts from now on."""
    with _lock:
        _registered[SERVER_ID_ENV] = server_id


def register_preview_template(template: str, script_template: str = "") -> None:
    """The preview link template (with the server's port filled in) for `%sandbox preview`, and the
    path form's on the server's own address ('' when the server does not serve it)."""
    with _lock:
        _registered[PREVIEW_TEMPLATE_ENV] = template
        if script_template:
            _registered[PREVIEW_SCRIPT_TEMPLATE_ENV] = script_template
        else:
            _registered.pop(PREVIEW_SCRIPT_TEMPLATE_ENV, None)


def register_environment(values: dict[str, str]) -> None:
    """Variables every kernel launched from now on gets (hub mode: where the sandbox service is and
    this user's token for it, `SandboxRemote.environment()`), also when they are only in the server's
    config and not in its environment."""
    with _lock:
        _registered.update(values)


def unregister() -> None:
    """The server extension stopped: kernels launched afterwards are told nothing."""
    with _lock:
        _registered.clear()


def launch_env() -> dict[str, str]:
    """What a kernel launched now gets added to its environment (empty with no server)."""
    with _lock:
        return dict(_registered)


class SandboxProvisioner(LocalProvisioner):
    """A local kernel process, with the registering server's facts added to its environment."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        added = launch_env()
        if added:
            # The base class has made the env a copy of the caller's: changing it changes only
            # this kernel's.
            env = kwargs.get("env")
            kwargs["env"] = {**(env if isinstance(env, dict) else {}), **added}
        return kwargs


def check_kernelspec(kernel_spec_manager: Any, log: logging.Logger | logging.LoggerAdapter[Any]) -> bool:
    """Whether the sandbox kernelspec this server would launch names this provisioner and the
    provisioner is installed; a warning that says what breaks (and the fix) when not."""
    from jupyter_client.provisioning import KernelProvisionerFactory

    try:
        spec = kernel_spec_manager.get_kernel_spec(KERNEL_NAME)
    except Exception:  # no such kernelspec: nothing of ours to launch
        return False
    named = (spec.metadata or {}).get("kernel_provisioner", {}).get("provisioner_name")
    if named != PROVISIONER_NAME or not KernelProvisionerFactory.instance().is_provisioner_available(spec):
        log.warning(
            "jupyter-sandbox: the %s kernelspec (%s) does not use the %s provisioner, or it is not "
            "installed: its kernels will not claim this server's warm pool and %%sandbox preview will "
            "refuse; reinstall jupyter-sandbox (pip install) to fix it",
            KERNEL_NAME,
            getattr(spec, "resource_dir", "?"),
            PROVISIONER_NAME,
        )
        return False
    return True
