"""`make lab`: set up what is missing and start JupyterLab, one line per step.

Each step prints one line: what it did and how long it took (a spinner with the seconds while a step
that takes more than a moment runs on a terminal). Everything the tools print goes to one log file,
whose path is printed when a step fails. The sandbox image is checked against the engine's own
images only: when the base it was built on is a bootstrapped one, no registry is asked. The URL is
the last line; JupyterLab then runs until Ctrl-C.

Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / ".lab.log"
DEFAULT_BASE = "python:3.12-slim"
BOOTSTRAP_REPOSITORY = "jupyter-sandbox/base"
STEP_TIMEOUT = 3600  # a first image build or npm install on a slow link; a hung step ends in an hour
LAB_START_TIMEOUT = 120


class StepFailed(Exception):
    pass


class Steps:
    """Prints one line per step, and a live spinner for a step still running after a second."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.tty = sys.stdout.isatty()
        self.lines = 0
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            # Over a spinner's line, if one is drawn: the step's line replaces it.
            print(("\r\033[K" if self.tty else "") + text, flush=True)
            self.lines += 1

    def run(
        self,
        title: str,
        argv: Sequence[str],
        done: str = "done",
        env: dict[str, str] | None = None,
        quiet: bool = False,
    ) -> None:
        """Run one step, its output into the log; `quiet`: no spinner (a step beside another one)."""
        started = time.monotonic()
        with open(self.log, "ab") as log:
            log.write(f"\n==> {title}: {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
            )
            stop = threading.Event()
            spinner = threading.Thread(target=self._spin, args=(title, started, stop), daemon=True)
            if not quiet:
                spinner.start()
            try:
                code = process.wait(timeout=STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                code = -1
            except KeyboardInterrupt:
                process.terminate()
                raise
            finally:
                stop.set()
                if not quiet:
                    spinner.join()
        if code != 0:
            self.line("FAIL", title, f"exit {code}", started)
            raise StepFailed(title)
        self.line("ok", title, done, started)

    def _spin(self, title: str, started: float, stop: threading.Event) -> None:
        if not self.tty:
            return
        if stop.wait(1.0):
            return  # a quick step: only its final line
        for mark in itertools.cycle("|/-\\"):
            last = _last_line(self.log)
            sys.stdout.write(f"\r\033[K  {mark}    {title:<20} {time.monotonic() - started:5.0f} s  {last[:60]}")
            sys.stdout.flush()
            if stop.wait(0.2):
                break
        sys.stdout.write("\r\033[K")
        sys.stdout.flush()

    def line(self, mark: str, title: str, detail: str, started: float) -> None:
        self.say(f"  {mark:<4} {title:<20} {detail:<34} {time.monotonic() - started:5.1f} s")


def _last_line(log: Path) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, log.stat().st_size - 400))
            tail = handle.read().decode(errors="replace").replace("\r", "\n").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(tail) if line.strip()), "")


_image_failed: list[bool] = []


def _image_step(steps: Steps, build: list[str]) -> None:
    try:
        steps.run("sandbox image", build, "up to date or built", quiet=True)
    except StepFailed:
        _image_failed.append(True)


def _make_current(target: str, env: dict[str, str]) -> bool:
    """Whether make would do nothing for `target` (make -q: exit 0 when it is up to date)."""
    return (
        subprocess.run(
            ["make", "-q", "--", target], cwd=ROOT, env={**os.environ, **env}, capture_output=True
        ).returncode
        == 0
    )


def _image_present(image: str) -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    found = subprocess.run([docker, "image", "inspect", "--", image], capture_output=True, timeout=60)
    return found.returncode == 0


def _bootstrapped_base() -> bool:
    """A bootstrapped Debian base is on the engine (the last build used it when the default base is absent)."""
    docker = shutil.which("docker")
    if not docker:
        return False
    listed = subprocess.run(
        [docker, "image", "ls", "--format", "{{.Repository}}", "--", BOOTSTRAP_REPOSITORY],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return bool(listed.stdout.strip())


def _wait_for_lab(port: int, token: str, process: subprocess.Popen[bytes]) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + LAB_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"}
            )
            with opener.open(request, timeout=2) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--python", default=sys.executable, help="the Python that makes the venv")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--allow-root", action="store_true")
    parser.add_argument("--root-dir", default=str(ROOT / "examples"))
    parser.add_argument("--ssh-port", type=int, default=2222)
    args = parser.parse_args(argv)

    LOG.write_bytes(b"")
    steps = Steps(LOG)
    venv = Path(args.venv) if Path(args.venv).is_absolute() else ROOT / args.venv
    bin_dir = venv / "bin"
    make_env = {"VENV": args.venv, "PYTHON": args.python}
    begun = time.monotonic()
    steps.say(f"jupyter-sandbox: make lab (full log: {LOG.relative_to(ROOT)})")
    try:
        started = time.monotonic()
        if (bin_dir / "python").exists():
            steps.line("ok", "virtualenv", f"{args.venv} exists", started)
        else:
            steps.run("virtualenv", ["make", "-s", "--", f"{args.venv}/bin/python"], f"made {args.venv}", make_env)

        labext = "jupyter_sandbox/labextension/static/style.js"
        started = time.monotonic()
        if _make_current(labext, make_env):
            steps.line("ok", "sidebar (front end)", "up to date", started)
        else:
            steps.run("sidebar (front end)", ["make", "-s", "--", labext], "built", make_env)

        stamp = f"{args.venv}/.installed"
        started = time.monotonic()
        if _make_current(stamp, make_env):
            steps.line("ok", "Python packages", "up to date", started)
        else:
            steps.run("Python packages", ["make", "-s", "--", stamp], "installed", make_env)

        started = time.monotonic()
        docker = shutil.which("docker")
        if docker and subprocess.run([docker, "info"], capture_output=True, timeout=60).returncode == 0:
            steps.line("ok", "Docker engine", "running", started)
        else:
            steps.run("Docker engine", ["bash", "scripts/ensure-host.sh"], "started")

        # The build's own up-to-date check, told to use the bootstrapped base when that is the one
        # this engine has: then no registry is contacted to find the default base missing. It runs
        # while JupyterLab starts (no sandbox is made before the first cell); the URL waits for both.
        build = [str(bin_dir / "jupyter"), "sandbox", "image", "build"]
        if not _image_present(DEFAULT_BASE) and _bootstrapped_base():
            build.append("--bootstrap")
        image_step = threading.Thread(target=_image_step, args=(steps, build), daemon=True)
        image_step.start()

        token = secrets.token_hex(24)
        lab_argv = [
            str(bin_dir / "jupyter"),
            "lab",
            "--ip=127.0.0.1",
            f"--port={args.port}",
            "--ServerApp.port_retries=0",
            "--no-browser",
            f"--ServerApp.root_dir={args.root_dir}",
            f"--SSHGateway.port={args.ssh_port}",
            f"--IdentityProvider.token={token}",
            *(["--allow-root"] if args.allow_root else []),
        ]
        started = time.monotonic()
        with open(LOG, "ab") as log:
            log.write(f"\n==> JupyterLab: {' '.join(lab_argv[:-1])} ...\n".encode())
            log.flush()
            lab = subprocess.Popen(lab_argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        stop = threading.Event()
        spinner = threading.Thread(target=steps._spin, args=("JupyterLab", started, stop), daemon=True)
        spinner.start()
        try:
            lab_up = _wait_for_lab(args.port, token, lab)
            image_step.join()
        finally:
            stop.set()
            spinner.join()
        if not lab_up:
            if lab.poll() is None:
                lab.terminate()
            steps.line("FAIL", "JupyterLab", f"did not answer on port {args.port}", started)
            raise StepFailed("JupyterLab")
        steps.line("ok", "JupyterLab", f"on port {args.port}", started)
        if _image_failed:
            lab.terminate()
            raise StepFailed("sandbox image")
    except StepFailed as failed:
        print(f"make lab: the step '{failed}' failed; its output is in {LOG}:", file=sys.stderr)
        print(_tail(LOG), file=sys.stderr)
        if "is not available" in _tail(LOG):
            print(f"make lab: port {args.port} is taken; choose another: make lab LAB_PORT=8890", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    steps.say(f"ready in {time.monotonic() - begun:.1f} s; JupyterLab's log: {LOG}; Ctrl-C stops it")
    steps.say(f"http://127.0.0.1:{args.port}/lab?token={token}")
    try:
        return lab.wait()
    except KeyboardInterrupt:
        lab.send_signal(signal.SIGINT)
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.kill()
        return 0


def _tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in text[-lines:])


if __name__ == "__main__":
    sys.exit(main())
