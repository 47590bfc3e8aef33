"""`make hub`: set up what is missing and start the example JupyterHub (examples/hub/), one line per step.

The same steps as `make lab` (virtualenv, front end, Python packages, Docker engine, sandbox image), then
JupyterHub in the venv, its proxy (configurable-http-proxy from npm, installed under .hub/), the users'
system accounts (unprivileged, outside the docker group), their passwords, and the hub itself, which
starts the sandbox service and, at each login, that user's Jupyter server as that user. The URL and the
logins are the last lines; the hub then runs until Ctrl-C.

It must run as root: it creates the users' accounts, and the hub starts each user's server as that user.
The functions below are also what tests/test_hub.py uses to start its own hub.

Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / ".hub.log"
HUB_DIR = ROOT / ".hub"
CONFIG = ROOT / "examples" / "hub" / "jupyterhub_config.py"
# pyproject.toml's `hub` extra says the same.
HUB_REQUIREMENT = "jupyterhub>=5"
PROXY_PACKAGE = "configurable-http-proxy@4"
HUB_START_TIMEOUT = 120
USER_SHELL = "/bin/bash"
# Groups whose members reach the engine (or become root some other way): a hub user is in none of them.
PRIVILEGED_GROUPS = ("docker", "sudo", "root", "adm", "disk", "wheel")


class HubSetupError(Exception):
    """A precondition the hub cannot start without, said so that a person knows what to do."""


def proxy_command(prefix: Path) -> Path:
    return prefix / "node_modules" / ".bin" / "configurable-http-proxy"


def install_proxy(prefix: Path, log: Path | None = None) -> Path:
    """configurable-http-proxy from npm into `prefix` (a no-op when it is there); the path of its command."""
    command = proxy_command(prefix)
    if command.exists():
        return command
    npm = shutil.which("npm")
    if not npm:
        raise HubSetupError("npm is missing (JupyterHub's proxy comes from npm): apt-get install npm")
    prefix.mkdir(parents=True, exist_ok=True)
    with open(log or os.devnull, "ab") as output:
        subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--", PROXY_PACKAGE],
            stdout=output,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=lab.STEP_TIMEOUT,
        )
    return command


def ensure_user(name: str) -> pwd.struct_passwd:
    """The system account `name`, made if missing: its own group, a private home, no password (it logs in
    through the hub only), in no group that reaches the Docker engine."""
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [useradd, "--create-home", "--user-group", "--shell", USER_SHELL, "--", name],
            check=True,
            capture_output=True,
            timeout=60,
        )
        account = pwd.getpwnam(name)
    groups = {g.gr_name for g in grp.getgrall() if name in g.gr_mem}
    groups.add(grp.getgrgid(account.pw_gid).gr_name)
    privileged = sorted(groups & set(PRIVILEGED_GROUPS))
    if privileged or account.pw_uid == 0:
        raise HubSetupError(
            f"the account {name!r} is root or in {', '.join(privileged)}: its notebooks could reach the engine; "
            "choose other user names (--users) or take it out of those groups"
        )
    home = Path(account.pw_dir)
    if home.is_dir():
        # Private homes: one user's server cannot read the other's notebooks or tokens.
        home.chmod(0o700)
    return account


def remove_user(name: str) -> None:
    """Delete an account ensure_user made (and its home); the tests' clean-up."""
    userdel = shutil.which("userdel") or "/usr/sbin/userdel"
    subprocess.run([userdel, "--remove", "--", name], capture_output=True, timeout=60)


def unreachable_by_others(path: Path) -> list[Path]:
    """The folders above `path` (and `path`) that an unprivileged account cannot enter: users' servers run
    from the venv, so it must be reachable by them."""
    blocked = []
    for folder in [path, *path.parents]:
        try:
            mode = folder.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            blocked.append(folder)
    return blocked


def _version(python: Path | str) -> str:
    found = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return found.stdout.strip() if found.returncode == 0 else ""


def users_python(venv: Path, target: Path) -> Path:
    """The bin folder users' servers run from: the venv's own when its interpreter is open to other
    accounts; else (an interpreter under root's home, as pyenv installs it) a venv at `target` made from
    the system's Python of the same version, that reads the venv's packages (a .pth file) and shares its
    share/ and etc/ (kernelspecs, the server extension's config, JupyterLab's files). Nothing in it is
    writable by the users."""
    venv = venv.resolve()
    interpreter = Path(os.path.realpath(venv / "bin" / "python"))
    if not unreachable_by_others(interpreter) and not unreachable_by_others(venv):
        return venv / "bin"
    if unreachable_by_others(venv):
        raise HubSetupError(f"users' servers run from {venv}, but {unreachable_by_others(venv)[0]} is closed to others")
    version = _version(venv / "bin" / "python")
    system = next(
        (
            Path(candidate)
            for candidate in ("/usr/bin/python3", "/usr/local/bin/python3")
            if Path(candidate).exists()
            and not unreachable_by_others(Path(os.path.realpath(candidate)))
            and _version(candidate) == version
        ),
        None,
    )
    if system is None:
        raise HubSetupError(
            f"the venv's Python ({interpreter}) is closed to other accounts and no system python{version} is "
            f"there: make the venv from a system Python (make hub PYTHON=/usr/bin/python{version} VENV=.venv-hub)"
        )
    site_packages = venv / "lib" / f"python{version}" / "site-packages"
    marker = target / "lib" / f"python{version}" / "site-packages" / "jupyter_sandbox_hub_venv.pth"
    if not marker.exists():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([str(system), "-m", "venv", "--without-pip", "--", str(target)], check=True, timeout=300)
        for shared in ("share", "etc"):
            shutil.rmtree(target / shared, ignore_errors=True)
            (target / shared).symlink_to(venv / shared)
        # addsitedir, not a plain path line: it also runs the .pth files there (the editable install's).
        marker.write_text(f"import site; site.addsitedir({str(site_packages)!r})\n")
    for folder in [target, *[p for p in target.rglob("*") if p.is_dir() and not p.is_symlink()]]:
        folder.chmod(0o755)
    return target / "bin"


def write_state(state: Path, users: Sequence[str], keep: bool = True) -> dict[str, str]:
    """The hub's private folder (0700) and its passwords file (0600): a random password per user, kept
    from an earlier run when `keep` and the users are the same."""
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    passwords_file = state / "passwords.json"
    passwords: dict[str, str] = {}
    if keep and passwords_file.exists():
        try:
            passwords = {k: v for k, v in json.loads(passwords_file.read_text()).items() if k in users}
        except (OSError, ValueError, AttributeError):
            passwords = {}
    for name in users:
        passwords.setdefault(name, secrets.token_urlsafe(12))
    descriptor = os.open(passwords_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(passwords, handle)
    passwords_file.chmod(0o600)
    return passwords


def hub_environment(
    *,
    state: Path,
    venv_bin: Path,
    users_bin: Path,
    proxy: Path,
    port: int,
    service_port: int,
    api_port: int | None = None,
    proxy_api_port: int | None = None,
    service_args: Sequence[str] = (),
) -> dict[str, str]:
    """The variables examples/hub/jupyterhub_config.py reads."""
    env = {
        "JUPYTER_SANDBOX_HUB_STATE": str(state),
        "JUPYTER_SANDBOX_HUB_VENV_BIN": str(venv_bin),
        "JUPYTER_SANDBOX_HUB_USERS_BIN": str(users_bin),
        "JUPYTER_SANDBOX_HUB_PROXY": str(proxy),
        "JUPYTER_SANDBOX_HUB_PORT": str(port),
        "JUPYTER_SANDBOX_HUB_SERVICE_PORT": str(service_port),
        "JUPYTER_SANDBOX_HUB_SERVICE_ARGS": json.dumps(list(service_args)),
    }
    if api_port:
        env["JUPYTER_SANDBOX_HUB_API_PORT"] = str(api_port)
    if proxy_api_port:
        env["JUPYTER_SANDBOX_HUB_PROXY_API_PORT"] = str(proxy_api_port)
    return env


def start_hub(venv_bin: Path, state: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`jupyterhub -f examples/hub/jupyterhub_config.py`, in its state folder, its output into `log`."""
    # The hub's own environment is the operator's, less what a user must never be handed by accident:
    # the config passes on only named variables, this is a second fence.
    base = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    with open(log, "ab") as output:
        return subprocess.Popen(
            [str(venv_bin / "jupyterhub"), "-f", str(CONFIG)],
            cwd=state,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**base, **env},
            start_new_session=True,
        )


def wait_for_hub(port: int, process: subprocess.Popen[bytes], timeout: float = HUB_START_TIMEOUT) -> bool:
    """Whether the hub answers through its proxy before `timeout` (False at once if it exited)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with opener.open(f"http://127.0.0.1:{port}/hub/api/", timeout=2) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        # Until the service answers, the hub logs each of these as a 404: not too many of them.
        time.sleep(0.5)
    return False


def stop_proxy(state: Path) -> None:
    """The hub's proxy, when the hub ended without stopping it (it exits at once when the service it
    needs fails to start, and leaves its proxy running)."""
    try:
        pid = int((state / "proxy.pid").read_text().strip())
        # Only that proxy: a pid file left from an earlier run may name another process by now.
        if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


def stop_hub(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM: the hub stops the users' servers, the service and the proxy before it exits. (Not SIGINT:
    a hub started in the background, as by a script, ignores it.)"""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


T = TypeVar("T")


def _step(steps: lab.Steps, title: str, action: Callable[[], T], done: str) -> T:
    started = time.monotonic()
    try:
        result = action()
    except (HubSetupError, subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as failed:
        steps.line("FAIL", title, str(failed)[:60], started)
        with open(steps.log, "a") as log:
            log.write(f"\n==> {title}: {failed}\n")
        raise lab.StepFailed(title) from failed
    steps.line("ok", title, done, started)
    return result


def _interrupt() -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--python", default=sys.executable, help="the Python that makes the venv")
    parser.add_argument("--port", type=int, default=8000, help="the hub's address is http://127.0.0.1:PORT")
    parser.add_argument(
        "--service-port", type=int, default=8765, help="the sandbox service's port (its API and its previews' origins)"
    )
    parser.add_argument("--users", default="alice,bob", help="the hub's users, comma-separated (system accounts)")
    args = parser.parse_args(argv)
    # Ctrl-C, and a SIGTERM from a service manager or a script, both stop the hub and what it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: _interrupt())
    users = [name.strip() for name in args.users.split(",") if name.strip()]

    LOG.write_bytes(b"")
    steps = lab.Steps(LOG)
    venv = Path(args.venv) if Path(args.venv).is_absolute() else ROOT / args.venv
    bin_dir = venv / "bin"
    make_env = {"VENV": args.venv, "PYTHON": args.python}
    begun = time.monotonic()
    steps.say(f"jupyter-sandbox: make hub (full log: {LOG.relative_to(ROOT)})")
    try:
        started = time.monotonic()
        if os.geteuid() != 0:
            steps.line("FAIL", "root", "make hub must run as root", started)
            print(
                "make hub: run it as root (sudo make hub): it creates the users' accounts and the hub starts "
                "each user's server as that user",
                file=sys.stderr,
            )
            return 1

        if (bin_dir / "python").exists():
            steps.line("ok", "virtualenv", f"{args.venv} exists", started)
        else:
            steps.run("virtualenv", ["make", "-s", "--", f"{args.venv}/bin/python"], f"made {args.venv}", make_env)

        labext = "jupyter_sandbox/labextension/static/style.js"
        started = time.monotonic()
        if lab._make_current(labext, make_env):
            steps.line("ok", "sidebar (front end)", "up to date", started)
        else:
            steps.run("sidebar (front end)", ["make", "-s", "--", labext], "built", make_env)

        stamp = f"{args.venv}/.installed"
        started = time.monotonic()
        if lab._make_current(stamp, make_env):
            steps.line("ok", "Python packages", "up to date", started)
        else:
            steps.run("Python packages", ["make", "-s", "--", stamp], "installed", make_env)

        started = time.monotonic()
        if (bin_dir / "jupyterhub").exists():
            steps.line("ok", "JupyterHub", "installed", started)
        else:
            steps.run("JupyterHub", [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", HUB_REQUIREMENT])

        started = time.monotonic()
        if proxy_command(HUB_DIR / "proxy").exists():
            steps.line("ok", "hub proxy (npm)", "installed", started)
            proxy = proxy_command(HUB_DIR / "proxy")
        else:
            proxy = _step(steps, "hub proxy (npm)", lambda: install_proxy(HUB_DIR / "proxy", LOG), "installed")

        started = time.monotonic()
        docker = shutil.which("docker")
        if docker and subprocess.run([docker, "info"], capture_output=True, timeout=60).returncode == 0:
            steps.line("ok", "Docker engine", "running", started)
        else:
            steps.run("Docker engine", ["bash", "scripts/ensure-host.sh"], "started")

        build = [str(bin_dir / "jupyter"), "sandbox", "image", "build"]
        if not lab._image_present(lab.DEFAULT_BASE) and lab._bootstrapped_base():
            build.append("--bootstrap")
        image_step = threading.Thread(target=lab._image_step, args=(steps, build), daemon=True)
        image_step.start()

        def accounts() -> None:
            for name in users:
                ensure_user(name)

        _step(steps, "users' accounts", accounts, ", ".join(users))
        HUB_DIR.mkdir(exist_ok=True)
        HUB_DIR.chmod(0o755)
        users_bin = _step(
            steps, "users' Python", lambda: users_python(venv, HUB_DIR / "users-venv"), "readable by the users"
        )
        state = HUB_DIR / "state"
        passwords = _step(steps, "logins", lambda: write_state(state, users), "a password each")
        image_step.join()
        if lab._image_failed:
            raise lab.StepFailed("sandbox image")

        env = hub_environment(
            state=state,
            venv_bin=bin_dir,
            users_bin=users_bin,
            proxy=proxy,
            port=args.port,
            service_port=args.service_port,
        )
        started = time.monotonic()
        hub = start_hub(bin_dir, state, env, LOG)
        if not wait_for_hub(args.port, hub):
            stop_hub(hub)
            stop_proxy(state)
            steps.line("FAIL", "JupyterHub", f"did not answer on port {args.port}", started)
            raise lab.StepFailed("JupyterHub")
        steps.line("ok", "JupyterHub", f"on port {args.port}", started)
    except lab.StepFailed as failed:
        print(f"make hub: the step '{failed}' failed; its output is in {LOG}:", file=sys.stderr)
        print(lab._tail(LOG), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    steps.say(f"ready in {time.monotonic() - begun:.1f} s; the hub's log: {LOG}; Ctrl-C stops it")
    for name, password in passwords.items():
        steps.say(f"log in as {name} with password {password}")
    steps.say(f"http://127.0.0.1:{args.port}/")
    try:
        code = hub.wait()
    except KeyboardInterrupt:
        stop_hub(hub)
        code = 0
    stop_proxy(state)
    return code


if __name__ == "__main__":
    sys.exit(main())
