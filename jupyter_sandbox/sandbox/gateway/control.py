"""Starting the gateway process (or finding the one that runs) for a sandbox network.

One gateway serves every sandbox of a network on this machine, whichever process (the Jupyter
server, a kernel, the command line) made them: they all find it through its record in the host's
state folder. A gateway whose settings differ from the caller's (another address after the network
was made anew, other operator settings) is replaced on the same port.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import binding
from .. import secrets as sandbox_secrets
from . import state
from .settings import Settings

START_TIMEOUT = 15.0
log = logging.getLogger("jupyter_sandbox.gateway")


class GatewayError(RuntimeError):
    pass


def ensure_running(settings: Settings) -> tuple[str, int]:
    """The (address, port) of a running gateway with these settings."""
    with binding.host_lock(f"gateway-{settings.network_name}"):
        record = state.read_record(settings.network_name)
        if record and state.alive(record.get("pid", 0)):
            if record.get("digest") == settings.digest:
                return str(record["address"]), int(record["port"])
            # Every process that starts sandboxes must see the same settings (they belong in
            # jupyter_sandbox_config.py, which the server and the kernels read alike); else each
            # start would replace the gateway, cutting the others' connections.
            log.warning(
                "egress gateway of %s: replacing one with other settings (pid %s); keep c.EgressGateway.* in "
                "jupyter_sandbox_config.py so that the server and the kernels agree",
                settings.network_name,
                record.get("pid"),
            )
            _stop(int(record["pid"]))
        # A gateway of a network that is gone may hold the same address (Docker hands a removed
        # network's subnet to the next one): it serves nobody any more.
        for other in state.records():
            same_place = other.get("address") == settings.address and other.get("port") == settings.port
            if same_place and other.get("network_name") != settings.network_name and state.alive(other.get("pid", 0)):
                _stop(int(other["pid"]))
        return _start(settings)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + 5
    while state.alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if state.alive(pid):
        os.kill(pid, signal.SIGKILL)


def _start(settings: Settings) -> tuple[str, int]:
    folder = sandbox_secrets.state_dir("gateway-run")
    settings_file = folder / f"{settings.network_name}.settings.json"
    sandbox_secrets.write_state(settings_file, settings.to_json().encode())
    log_file = folder / f"{settings.network_name}.log"
    env = {**os.environ, sandbox_secrets.SECRET_ENV: str(sandbox_secrets.secret_path())}
    with open(log_file, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_sandbox.sandbox.gateway", str(settings_file)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env,
            start_new_session=True,  # outlives the process that started it
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        record = state.read_record(settings.network_name)
        if record and record.get("pid") == process.pid:
            return str(record["address"]), int(record["port"])
        if process.poll() is not None:
            raise GatewayError(f"the egress gateway did not start: {_tail(log_file)}")
        time.sleep(0.05)
    process.kill()
    raise GatewayError(f"the egress gateway did not start within {START_TIMEOUT:.0f} s: {_tail(log_file)}")


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no message"


def stop(network_name: str) -> None:
    """Stop the network's gateway, if one runs (when the network goes)."""
    with binding.host_lock(f"gateway-{network_name}"):
        record = state.read_record(network_name)
        if record and state.alive(record.get("pid", 0)):
            _stop(int(record["pid"]))
        folder = sandbox_secrets.state_dir("gateway-run")
        for path in (
            state.record_path(network_name),
            folder / f"{network_name}.settings.json",
            folder / f"{network_name}.log",
        ):
            path.unlink(missing_ok=True)
