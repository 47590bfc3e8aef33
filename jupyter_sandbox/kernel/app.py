"""The proxy kernel process: what Jupyter starts for the "Python 3 (sandbox)" kernelspec."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any

from jupyter_core.application import JupyterApp
from traitlets import Float, Unicode

from .. import __version__
from ..config import CONFIG_FILE_NAME
from ..sandbox.manager import SandboxManager
from .lifecycle import SandboxLifecycle
from .relay import Relay
from .settings import SandboxKernel

KERNEL_ID_RE = re.compile(r"kernel-([0-9A-Za-z-]{8,64})\.json$")


class SandboxKernelApp(JupyterApp):
    name = "jupyter-sandbox-kernel"
    version = __version__
    description = "Relay a Jupyter kernel's messages to an ipykernel inside a hardened Docker container."
    classes = [SandboxManager, SandboxKernel]
    aliases = {"f": "SandboxKernelApp.connection_file", "log-level": "Application.log_level"}

    connection_file = Unicode("", config=True, help="The connection file Jupyter wrote for this kernel.")
    kernel_id = Unicode("", config=True, help=(
        "Kernel id used to find this kernel's sandbox again after a restart. "
        "Default: taken from the connection file's name (kernel-<id>.json)."))
    handshake_timeout = Float(60.0, config=True, help=(
        "Seconds to wait for the kernel inside a started sandbox to answer before giving up."))

    def _config_file_name_default(self) -> str:
        return CONFIG_FILE_NAME

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        logging.basicConfig(level=self.log_level, stream=sys.stderr,
                            format="[SandboxKernel %(asctime)s %(levelname)s] %(message)s")
        if not self.connection_file:
            self.log.critical("a connection file is required: -f /path/to/kernel-ID.json")
            self.exit(2)
        if not self.kernel_id:
            match = KERNEL_ID_RE.search(self.connection_file)
            # A restart reuses the connection file, so its path also identifies the kernel.
            path = str(Path(self.connection_file).resolve())
            self.kernel_id = match.group(1) if match else "file-" + hashlib.sha256(path.encode()).hexdigest()[:24]

    def start(self) -> None:
        connection = json.loads(Path(self.connection_file).read_text())
        manager = SandboxManager(parent=self)
        relay = Relay(
            connection,
            lambda r: SandboxLifecycle(manager, self.kernel_id, r.post),
            handshake_timeout=self.handshake_timeout,
            settings=SandboxKernel(parent=self),
        )
        # interrupt_mode "signal" sends SIGINT to this process; pass it on to the sandbox.
        signal.signal(signal.SIGINT, lambda *_: relay.post("interrupt"))
        signal.signal(signal.SIGTERM, lambda *_: relay.post("terminate"))
        self.log.info("sandbox kernel %s starting (kernel id %s)", __version__, self.kernel_id or "-")
        relay.run()


main = SandboxKernelApp.launch_instance
