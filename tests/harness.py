"""What the tests and the benchmarks both use: the command line that starts a Jupyter server, a
cell's execute_request as JupyterLab writes it on the kernel websocket, and a fresh virtual
environment on top of this one. No pytest here, so that benchmarks/ can import it too."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable


def server_argv(
    root: str | Path, port: int, token: str, extra: Sequence[str] = (), module: str = "jupyter_server", python: str = ""
) -> list[str]:
    """argv of a Jupyter server (module "jupyterlab": JupyterLab) on loopback with token auth."""
    return [
        python or sys.executable,
        "-m",
        module,
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        *extra,
    ]


def execute_request(code: str, msg_id: str, session: str, username: str = "test") -> str:
    """A shell-channel execute_request as JupyterLab sends it over /api/kernels/{id}/channels."""
    return json.dumps(
        {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": username,
                "session": session,
                "date": "",
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        }
    )


def layered_venv(folder: Path) -> Path:
    """A new virtual environment in `folder` that also sees this environment's site-packages (a .pth
    file in its own), so that a package installed into it needs no download of its dependencies.
    Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True, timeout=300)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    outer = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "outer.pth").write_text("\n".join(outer) + "\n")
    return python


def drain(response: Any, each: Callable[[bytes], object] | None = None, chunk: int = 1024 * 1024) -> int:
    """Read an HTTP response's body to its end, `chunk` bytes at a time (never all of it in memory),
    handing each piece to `each`; how many bytes there were."""
    received = 0
    while data := response.read(chunk):
        received += len(data)
        if each is not None:
            each(data)
    return received
