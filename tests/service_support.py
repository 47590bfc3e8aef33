"""A real sandbox service (`jupyter sandbox service`) in its own process, with a tokens file of users.

Used by tests/test_service.py and benchmarks/service.py. User names carry a suffix of this run's own, so
that two runs on one engine never share an owner (`hub-user:<name>`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY = "jupyter-sandbox service ready at "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "jupyter_sandbox.cli", "service", *args]


def write_tokens(path: Path, users: dict[str, str], mode: int = 0o600) -> None:
    """A tokens file {token: user} with this mode (the service refuses one readable by others)."""
    path.write_text(json.dumps({token: user for user, token in users.items()}))
    path.chmod(mode)


class ServiceProcess:
    """One service on a fixed port, which can be stopped and started again (its sandboxes stay)."""

    def __init__(self, folder: Path, users: list[str], config: dict[str, Any] | None = None) -> None:
        self.folder = folder
        suffix = secrets.token_hex(3)
        self.users = {name: f"{name}-{suffix}" for name in users}  # short name -> the service's user name
        self.tokens = {full: secrets.token_hex(24) for full in self.users.values()}
        self.tokens_file = folder / "tokens.json"
        write_tokens(self.tokens_file, self.tokens)
        self.config_file = folder / "service_config.json"
        self.config_file.write_text(json.dumps(config or {}))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = folder / "service.log"
        self.process: subprocess.Popen | None = None

    def token(self, user: str) -> str:
        return self.tokens[self.users[user]]

    def owner(self, user: str) -> str:
        return f"hub-user:{self.users[user]}"

    def start(self, timeout: float = 60) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                service_argv(
                    "--ip=127.0.0.1",
                    f"--port={self.port}",
                    f"--tokens-file={self.tokens_file}",
                    f"--config={self.config_file}",
                ),
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_PROXY": "127.0.0.1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if READY in text:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the service ended at start:\n{text}")
            time.sleep(0.1)
        raise RuntimeError(f"the service was not ready in {timeout} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, and its exit status."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
