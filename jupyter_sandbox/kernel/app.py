"""The proxy kernel process: what Jupyter starts for the "Python 3 (sandbox)" kernelspec."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, cast

from jupyter_core.application import JupyterApp
from traitlets import Bool, Float, Unicode

from .. import __version__
from ..config import CONFIG_FILE_NAME
from ..remote.settings import SandboxRemote
from ..sandbox import binding, notebooks
from ..sandbox.manager import SandboxManager
from .lifecycle import SandboxLifecycle
from .relay import Lifecycle, Relay
from .settings import SandboxKernel

KERNEL_ID_RE = re.compile(r"kernel-([0-9A-Za-z-]{8,64})\.json$")


class SandboxKernelApp(JupyterApp):
    name = "jupyter-sandbox-kernel"
    version = __version__
    description = "Relay a Jupyter kernel's messages to an ipykernel inside a hardened Docker container."
    classes = [SandboxManager, SandboxKernel, SandboxRemote]
    aliases = {"f": "SandboxKernelApp.connection_file", "log-level": "Application.log_level"}

    connection_file = Unicode("", config=True, help="The connection file Jupyter wrote for this kernel.")
    kernel_id = Unicode(
        "",
        config=True,
        help=(
            "Kernel id used to find this kernel's sandbox again after a restart. "
            "Default: taken from the connection file's name (kernel-<id>.json)."
        ),
    )
    handshake_timeout = Float(
        60.0, config=True, help=("Seconds to wait for the kernel inside a started sandbox to answer before giving up.")
    )
    notebook_path = Unicode(
        "",
        config=True,
        help=(
            "The notebook this kernel runs for. Default: from JPY_SESSION_NAME, which the Jupyter server "
            "sets, resolved against the kernel's working folder (the notebook's folder)."
        ),
    )
    keep_notebook_sandboxes = Bool(
        True,
        config=True,
        help=(
            "Give each notebook a sandbox of its own that outlives its kernels: shutting the kernel down "
            "stops the sandbox and keeps its files, and the notebook's next kernel (reopened, restarted, "
            "after a server restart) gets it back. `%sandbox delete` removes it. False: a kernel's sandbox "
            "is removed with the kernel."
        ),
    )

    _server_id = ""

    def _config_file_name_default(self) -> str:
        return CONFIG_FILE_NAME

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        logging.basicConfig(
            level=cast("int | str", self.log_level),
            stream=sys.stderr,
            format="[SandboxKernel %(asctime)s %(levelname)s] %(message)s",
        )
        if not self.connection_file:
            self.log.critical("a connection file is required: -f /path/to/kernel-ID.json")
            self.exit(2)
        if not self.kernel_id:
            match = KERNEL_ID_RE.search(self.connection_file)
            # A restart reuses the connection file, so its path also identifies the kernel.
            path = str(Path(self.connection_file).resolve())
            self.kernel_id = match.group(1) if match else "file-" + hashlib.sha256(path.encode()).hexdigest()[:24]
        try:
            binding.check_kernel_id(self.kernel_id)
        except ValueError as exc:
            self.log.critical("%s", exc)
            self.exit(2)
        if not self.notebook_path and os.environ.get("JPY_SESSION_NAME"):
            # The session name is relative to the server's root; the kernel starts in the notebook's folder.
            self.notebook_path = str(Path.cwd() / Path(os.environ["JPY_SESSION_NAME"]).name)

    def _workspace(self, manager: SandboxManager) -> str | None:
        if not (self.keep_notebook_sandboxes and self.notebook_path):
            return None
        return binding.workspace_key(manager.owner, str(Path(self.notebook_path).resolve()))

    def _acquire_lease(self) -> binding.KernelLease:
        """Held while this process lives, so the server can tell it apart from a dead kernel. The
        previous process of a restarted kernel may still be exiting: wait for it a little."""
        lease = binding.KernelLease(self.kernel_id)
        deadline = time.monotonic() + 10
        # The lease names the server that started the kernel: its housekeeping is the one to tidy up.
        while not lease.acquire(blocking=False, content=self._server_id):
            if time.monotonic() > deadline:
                self.log.warning("another process holds kernel %s's lease; going on without it", self.kernel_id)
                break
            time.sleep(0.05)
        return lease

    def _watch_parent(self, relay: Relay, lease: binding.KernelLease) -> None:
        """Shut down like a kernel told to when the process that started us is gone (e.g. a Jupyter
        server killed with SIGKILL): an orphaned proxy would hold its sandbox forever."""
        parent = os.getppid()
        last_touch = time.monotonic()
        while relay.running:
            time.sleep(1.0)
            if os.getppid() != parent:
                self.log.warning("the process that started this kernel is gone; shutting down")
                relay.post("terminate")
                return
            if time.monotonic() - last_touch > 30:
                lease.touch()
                last_touch = time.monotonic()

    def _lifecycle_factory(self, manager: SandboxManager, workspace: str | None) -> Callable[[Relay], Lifecycle]:
        """Single-machine mode: this machine's engine. Hub mode (a sandbox service is configured):
        the service's API, and no engine call from this process."""
        remote = SandboxRemote(parent=self)
        if not remote.enabled:
            return lambda r: SandboxLifecycle(manager, self.kernel_id, r.post, workspace=workspace)
        from ..remote.api import ServiceAPI
        from ..remote.lifecycle import RemoteLifecycle

        api = ServiceAPI(remote.url, remote.token)
        self.log.info("hub mode: sandboxes come from the sandbox service at %s", api.url)
        return lambda r: RemoteLifecycle(api, self.kernel_id, r.post, workspace=workspace)

    def start(self) -> None:
        connection = json.loads(Path(self.connection_file).read_text())
        manager = SandboxManager(parent=self)
        self._server_id = manager.server_id
        workspace = self._workspace(manager)
        lease = self._acquire_lease()
        if workspace and self.notebook_path:
            # Where this workspace's notebook is, so the server can follow it when a folder moves.
            notebooks.remember_start(workspace, str(Path(self.notebook_path).resolve()))
        relay = Relay(
            connection,
            self._lifecycle_factory(manager, workspace),
            handshake_timeout=self.handshake_timeout,
            settings=SandboxKernel(parent=self),
            language=manager.language,
        )
        # interrupt_mode "signal" sends SIGINT to this process; pass it on to the sandbox.
        signal.signal(signal.SIGINT, lambda *_: relay.post("interrupt"))
        signal.signal(signal.SIGTERM, lambda *_: relay.post("terminate"))
        self.log.info(
            "sandbox kernel %s starting (kernel id %s, notebook %s)",
            __version__,
            self.kernel_id,
            self.notebook_path or "-",
        )
        threading.Thread(target=self._watch_parent, args=(relay, lease), daemon=True, name="parent-watch").start()
        try:
            relay.run()
        finally:
            # A restart keeps the lease file (the next process takes it); anything else ends the kernel.
            lease.release(forget=not relay.restarting)


main = SandboxKernelApp.launch_instance
