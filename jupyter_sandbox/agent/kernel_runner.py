"""Starts, watches, interrupts and restarts the ipykernel inside the sandbox."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import environment, processes, usage

log = logging.getLogger("jupyter_sandbox_agent")

# A kernel that dies this soon after starting, this many times in a row, is not restarted again:
# something in the image is broken and the log says what.
QUICK_DEATH_SECONDS = 5.0
QUICK_DEATHS_BEFORE_GIVING_UP = 3
LOG_TAIL_BYTES = 4000


def _read_counter(path: str, name: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def oom_kill_count() -> int | None:
    """How many processes the container's memory cgroup has killed (cgroup v2 or v1)."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        count = _read_counter(path, "oom_kill")
        if count is not None:
            return count
    return None


class KernelRunner:
    """One ipykernel process at a time, on fixed ports, with a log and a death record."""

    def __init__(
        self,
        key: str,
        ports: dict[str, int],
        cwd: str,
        runtime_dir: str,
        on_event: Callable[[dict[str, Any]], None],
        argv: list[str] | None = None,
    ) -> None:
        self.key = key
        # The image's kernel for another language (the host read it from the image's labels), or None
        # for ipykernel on the agent's own interpreter.
        self.argv = argv
        self.ports = ports
        self.cwd = cwd
        self.runtime_dir = Path(runtime_dir)
        self.on_event = on_event
        self.generation = 0
        self.own_ports: set[int] = set()
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self._lock = threading.RLock()
        self._expected_exit: set[int] = set()
        self._quick_deaths = 0

    @property
    def connection_file(self) -> Path:
        return self.runtime_dir / "kernel.json"

    @property
    def log_file(self) -> Path:
        return self.runtime_dir / "kernel.log"

    def _write_connection_file(self) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = {
            "transport": "tcp",
            "ip": "0.0.0.0",
            "key": self.key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "python3",
            **{f"{name}_port": port for name, port in self.ports.items()},
        }
        fd = os.open(self.connection_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle)

    def start(self) -> int:
        with self._lock:
            if self.process and self.process.poll() is None:
                return self.generation
            self._write_connection_file()
            self.generation += 1
            # The kernel is the sandbox's: its environment, with the user's PATH. Its interpreter is the
            # agent's own (an absolute path), never a `python3` the user's PATH finds first.
            env = environment.user()
            with open(self.log_file, "ab") as log_handle:
                self.process = subprocess.Popen(
                    self.command(),
                    cwd=self.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_handle,
                    stderr=subprocess.STDOUT,
                    # Its own process group, so an interrupt or a kill reaches the kernel and
                    # whatever it started, and never the agent.
                    start_new_session=True,
                )
            processes.OWN.add(self.process.pid)  # the agent's own child, never an orphan to sweep
            self.started_at = time.time()
            generation, process = self.generation, self.process
            self._oom_before = oom_kill_count()
            threading.Thread(target=self._watch, args=(generation, process), daemon=True).start()
            threading.Thread(target=self._note_own_ports, args=(generation, process), daemon=True).start()
            log.info("kernel generation %s started as pid %s", generation, process.pid)
            return generation

    def command(self) -> list[str]:
        if self.argv:
            return [str(self.connection_file) if arg == "{connection_file}" else arg for arg in self.argv]
        return [sys.executable, "-m", "ipykernel_launcher", "-f", str(self.connection_file)]

    def _note_own_ports(self, generation: int, process: subprocess.Popen, settle: float = 3.0) -> None:
        """Ports the Python process opens for itself while starting (besides the five Jupyter ports)
        are no web server of the user's: remember them so the port list leaves them out."""
        time.sleep(settle)
        if generation != self.generation or process.poll() is not None:
            return
        inodes = usage.socket_inodes(process.pid)
        self.own_ports = {port for _, port, inode in usage.listening_sockets() if inode in inodes}

    def _kill_group(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        with self._lock:
            if self.process is None:
                return
            self._expected_exit.add(self.generation)
            self._kill_group(signal.SIGKILL)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("kernel pid %s did not exit after SIGKILL", self.process.pid)
            self.process = None

    def restart(self) -> int:
        with self._lock:
            self.stop()
            self._quick_deaths = 0
            return self.start()

    def interrupt(self) -> bool:
        with self._lock:
            if self.process is None or self.process.poll() is not None:
                return False
            self._kill_group(signal.SIGINT)
            return True

    def status(self) -> dict[str, Any]:
        process = self.process
        running = process is not None and process.poll() is None
        return {
            "generation": self.generation,
            "running": running,
            "pid": process.pid if process else None,
            "started_at": self.started_at,
        }

    def log_tail(self) -> str:
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - LOG_TAIL_BYTES))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _watch(self, generation: int, process: subprocess.Popen) -> None:
        returncode = process.wait()
        processes.OWN.discard(process.pid)
        with self._lock:
            if generation in self._expected_exit:
                self._expected_exit.discard(generation)
                return
            lived = time.time() - self.started_at
            oom_after = oom_kill_count()
            oom_killed = (
                returncode == -signal.SIGKILL
                and oom_after is not None
                and self._oom_before is not None
                and oom_after > self._oom_before
            )
            event = {
                "type": "kernel_died",
                "generation": generation,
                "returncode": returncode,
                "signal": -returncode if returncode < 0 else None,
                "oom_killed": oom_killed,
                "log_tail": self.log_tail(),
                "restarted": False,
            }
            self._quick_deaths = self._quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
            if self._quick_deaths < QUICK_DEATHS_BEFORE_GIVING_UP and self.process is process:
                self.process = None
                self.start()
                event["restarted"] = True
            log.warning("kernel generation %s exited with %s (oom: %s)", generation, returncode, oom_killed)
        self.on_event(event)
