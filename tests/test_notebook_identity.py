"""A notebook's sandbox is that notebook's, whatever its name does, through the Jupyter server's own
API as front ends use it (contents renames, copies and deletes; session path updates) and across
server restarts. Each step is judged by files: a marker a notebook wrote is seen only from it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    RestartableServer,
    Server,
    open_notebook,
    run_over_websocket,
    sandbox_containers,
    wait_until,
)
from test_persistence import HOSTNAME, sandbox_id_of

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager
from jupyter_sandbox.sandbox.spec import LABEL_ID

EMPTY_NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
LIST_HOME = (
    "import os, json; print('markers:', json.dumps(sorted(n for n in os.listdir('/home/sandbox') "
    f"if n.startswith('marker-')))); {HOSTNAME}"
)


@pytest.fixture
def lab(sandbox_image: str, docker_backend: DockerBackend, tmp_path: Path) -> Iterator[RestartableServer]:
    # Each start logs to a file of its own: a failure shows the last server's log (server_log).
    lab = RestartableServer(tmp_path, log=tmp_path / "server.log")
    yield lab
    lab.stop()
    manager = SandboxManager(backend=docker_backend)
    prefix = str(tmp_path.resolve())
    for workspace, record in binding.notebooks().items():
        if str(record["path"]).startswith(prefix):
            for sandbox in manager.list(workspace=workspace):
                manager.remove(sandbox)
            binding.forget_notebook(workspace)


def server_log(lab: RestartableServer, tail: int = 6000) -> str:
    """The end of the running server's log, for an assertion's message."""
    assert lab.log is not None
    path = lab.log.with_name(f"{lab.log.stem}-{lab.starts}.log")
    return path.read_text(errors="replace")[-tail:] if path.exists() else "(no log)"


def run(server: Server, kernel_id: str, code: str) -> str:
    status, text = run_over_websocket(server, kernel_id, code)
    assert status == "ok", text
    return text


def markers(server: Server, kernel_id: str) -> tuple[list[str], str]:
    text = run(server, kernel_id, LIST_HOME)
    listed = next(line for line in text.splitlines() if line.startswith("markers: "))
    return json.loads(listed[len("markers: ") :]), sandbox_id_of(text)


def close(server: Server, session: dict) -> None:
    assert server.request("DELETE", f"/api/sessions/{session['id']}")[0] == 204


def rename(server: Server, session: dict | None, old: str, new: str) -> None:
    """What JupyterLab does on a rename (also the first save of an Untitled notebook): the file, then
    the session, if the notebook is open."""
    status, answer = server.request("PATCH", f"/api/contents/{old}", {"path": new})
    assert status == 200, answer
    if session is not None:
        status, answer = server.request(
            "PATCH", f"/api/sessions/{session['id']}", {"path": new, "name": new.rsplit("/", 1)[-1]}
        )
        assert status == 200, answer


def workspace_of(root: Path, api_path: str) -> str:
    return binding.workspace_key(SandboxManager().owner, os.path.realpath(root / api_path))


def test_the_sandbox_follows_its_notebook_and_no_later_file_of_that_name_gets_it(
    lab: RestartableServer, docker_backend: DockerBackend
) -> None:
    manager = SandboxManager(backend=docker_backend)
    root = lab.root
    server = lab.start()
    (root / "Untitled.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))

    # A new notebook, then its first save under a name.
    first = open_notebook(server, "Untitled.ipynb")
    run(server, first["kernel"]["id"], "open('/home/sandbox/marker-walkthrough', 'w').write('1')")
    found, walkthrough = markers(server, first["kernel"]["id"])
    assert found == ["marker-walkthrough"]
    rename(server, first, "Untitled.ipynb", "walkthrough.ipynb")
    assert wait_until(lambda: manager.get(walkthrough).workspace == workspace_of(root, "walkthrough.ipynb"), 30)

    # The next new Untitled notebook: a sandbox of its own, empty, and no word of another kernel.
    (root / "Untitled.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
    second = open_notebook(server, "Untitled.ipynb")
    status, text = run_over_websocket(server, second["kernel"]["id"], LIST_HOME)
    assert status == "ok" and "in use by another kernel" not in text, text
    assert "marker-walkthrough" not in text and sandbox_id_of(text) != walkthrough, text
    run(server, second["kernel"]["id"], "open('/home/sandbox/marker-untitled', 'w').write('2')")

    # walkthrough's kernel deletes its sandbox: the next one is walkthrough's, not Untitled's.
    run(server, first["kernel"]["id"], "%sandbox delete --yes")
    found, fresh = markers(server, first["kernel"]["id"])
    assert found == [] and fresh != walkthrough, found
    assert manager.get(fresh).workspace == workspace_of(root, "walkthrough.ipynb")
    run(server, first["kernel"]["id"], "open('/home/sandbox/marker-walkthrough', 'w').write('3')")
    walkthrough = fresh

    # Moved to a folder while running, then the server restarts: it is still walkthrough's.
    assert server.request("PUT", "/api/contents/reports", {"type": "directory"})[0] == 201
    rename(server, first, "walkthrough.ipynb", "reports/walkthrough.ipynb")
    server = lab.restart()
    assert not (root / "walkthrough.ipynb").exists()
    reopened = open_notebook(server, "reports/walkthrough.ipynb")
    assert markers(server, reopened["kernel"]["id"]) == (["marker-walkthrough"], walkthrough)
    close(server, reopened)

    # The folder renamed with nobody running it, and a restart.
    rename(server, None, "reports", "q3")
    server = lab.restart()
    reopened = open_notebook(server, "q3/walkthrough.ipynb")
    assert markers(server, reopened["kernel"]["id"]) == (["marker-walkthrough"], walkthrough)

    # A notebook later made under the old names inherits nothing.
    for old in ("walkthrough.ipynb", "reports/walkthrough.ipynb"):
        (root / old).parent.mkdir(exist_ok=True)
        (root / old).write_text(json.dumps(EMPTY_NOTEBOOK))
        other = open_notebook(server, old)
        found, sandbox_id = markers(server, other["kernel"]["id"])
        assert found == [] and sandbox_id != walkthrough
        close(server, other)

    # A duplicate starts with a sandbox of its own.
    status, copy = server.request("POST", "/api/contents/q3", {"copy_from": "q3/walkthrough.ipynb"})
    assert status == 201, copy
    duplicate = open_notebook(server, copy["path"])
    found, sandbox_id = markers(server, duplicate["kernel"]["id"])
    assert found == [] and sandbox_id != walkthrough
    close(server, duplicate)

    # Deleted (as JupyterLab does: the session first, then the file): its sandbox goes with its files.
    close(server, reopened)
    assert server.request("DELETE", "/api/contents/q3/walkthrough.ipynb")[0] == 204
    # At once, or at the server's next check when the kernel's shutdown was still under way.
    gone = wait_until(lambda: not sandbox_containers(docker_backend, **{LABEL_ID: walkthrough}), 150)
    assert gone, server_log(lab)
    assert wait_until(lambda: binding.volume_name(walkthrough) not in docker_backend.list_volumes([LABEL_ID]), 30)
    # Recreated under the same name, after a restart: empty.
    server = lab.restart()
    (root / "q3" / "walkthrough.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
    again = open_notebook(server, "q3/walkthrough.ipynb")
    found, sandbox_id = markers(server, again["kernel"]["id"])
    assert found == [] and sandbox_id != walkthrough


def test_a_notebook_deleted_outside_jupyter_leaves_nothing_to_a_file_made_later_under_its_name(
    lab: RestartableServer, docker_backend: DockerBackend
) -> None:
    manager = SandboxManager(backend=docker_backend)
    root = lab.root
    (root / "notes.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
    server = lab.start()
    session = open_notebook(server, "notes.ipynb")
    run(server, session["kernel"]["id"], "open('/home/sandbox/marker-notes', 'w').write('1')")
    _, notes = markers(server, session["kernel"]["id"])
    close(server, session)
    assert wait_until(lambda: manager.get(notes).kernel_id is None, 30)
    # Gone outside Jupyter (a shell's rm): the server notices at its next check and restarts meanwhile.
    (root / "notes.ipynb").unlink()
    server = lab.restart()
    noticed = wait_until(lambda: manager.get(notes).workspace != workspace_of(root, "notes.ipynb"), 150)
    assert noticed, server_log(lab)
    (root / "notes.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
    session = open_notebook(server, "notes.ipynb")
    found, sandbox_id = markers(server, session["kernel"]["id"])
    assert found == [] and sandbox_id != notes
    # The old one is kept with its files (detached), for `jupyter sandbox list` and `rm`.
    assert manager.get(notes).workspace
    manager.remove(notes)
