"""What the tests and the benchmarks both send to a Jupyter server: the command line that starts
one, and a cell's execute_request as JupyterLab writes it on the kernel websocket. No pytest here,
so that benchmarks/ can import it too."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path


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
