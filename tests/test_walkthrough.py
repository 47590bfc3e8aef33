"""The article's walkthrough, twice, end to end: the REST API alone (examples/walkthrough_api.py) and a
notebook on the TypeScript kernel (examples/walkthrough-typescript.ipynb). Each asserts what the
article's user sees: the build's output, "Hello Hono!" through the preview (with curl, and in Chromium
logged in to Jupyter), the terminal's echo and exit code, and the sandbox gone.

Cost: the node image once per run (tests/typescript_support.py), then about a minute per walkthrough,
most of it `npm create hono` installing the project from the image's npm cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import nbformat
import pytest
from conftest import ROOT, Server, execute_request, fetch, launch_chromium, start_jupyter_server
from tornado.websocket import websocket_connect
from typescript_support import TYPESCRIPT_KERNEL, node_image  # noqa: F401 - fixture

API = "/sandbox/api"


@pytest.fixture(scope="module")
def server(node_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    # This checkout's kernelspecs first, as an installed jupyter-sandbox has them.
    env = {
        "JUPYTER_PATH": os.pathsep.join(filter(None, [str(ROOT / "share" / "jupyter"), os.environ.get("JUPYTER_PATH")]))
    }
    server, process = start_jupyter_server(tmp_path_factory.mktemp("walkthrough"), env=env)
    yield server
    process.terminate()
    process.wait(timeout=30)


def test_the_rest_walkthrough(server: Server) -> None:
    env = {**os.environ, "JUPYTER_SANDBOX_URL": server.base, "JUPYTER_SANDBOX_TOKEN": server.token}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "walkthrough_api.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "npm create hono: exit code 0" in out and "Copied project files" in out
    assert "npm run build: exit code 0" in out and "> tsc" in out
    assert "the preview says: Hello Hono!" in out
    assert "reconnected, replayed: True" in out
    assert "pty echo: typed-into-the-pty-42" in out and "pty exit code: 0" in out
    assert "deleted: 204" in out and "the sandbox is gone: True" in out


def test_the_typescript_notebook_walkthrough(server: Server) -> None:
    notebook = nbformat.read(ROOT / "examples" / "walkthrough-typescript.ipynb", as_version=4)
    assert notebook.metadata.kernelspec.name == TYPESCRIPT_KERNEL
    status, kernel = server.request("POST", "/api/kernels", {"name": TYPESCRIPT_KERNEL})
    assert status == 201, kernel
    kernel_id = kernel["id"]
    texts: list[str] = []
    try:
        for source in [cell.source for cell in notebook.cells if cell.cell_type == "code"]:
            seen = asyncio.run(cell_over_websocket(server, kernel_id, source, timeout=600))
            replies = [m["content"] for m in seen if m["msg_type"] == "execute_reply"]
            errors = [m["content"] for m in seen if m["msg_type"] == "error"]
            text = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
            assert replies and replies[0]["status"] == "ok" and not errors, (source, text, errors)
            texts.append(text)
            if source.startswith("%sandbox preview"):
                open_the_preview(server, text)
            if source.startswith("%sandbox delete"):
                status, listed = server.request("GET", f"{API}/sandboxes?kernel_id={kernel_id}")
                assert status == 200 and listed["sandboxes"] == [], listed
        created, built, started, _, inside, typed, deleted = texts
        assert "Copied project files" in created
        assert "> tsc" in built
        assert "Server is running on http://localhost:3000" in started
        assert inside.strip() == "Hello Hono!"
        assert "typed-into-the-pty-42" in typed and "PTY hono-dev exited with code 0" in typed
        assert "deleted" in deleted.lower()
    finally:
        server.request("DELETE", f"/api/kernels/{kernel_id}")


async def cell_over_websocket(server: Server, kernel_id: str, code: str, timeout: float) -> list[dict]:
    """A cell run as JupyterLab runs it, over the server's websocket: every message of the cell,
    including what arrives shortly after its idle status (Deno's kernel forwards what a cell prints
    from a pipe of its own; JupyterLab shows it under the cell all the same)."""
    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?token={server.token}"
    connection = await websocket_connect(url)
    msg_id = uuid.uuid4().hex
    await connection.write_message(execute_request(code, msg_id, uuid.uuid4().hex))
    seen: list[dict] = []
    deadline, settled = time.monotonic() + timeout, None
    try:
        while time.monotonic() < (settled or deadline):
            try:
                raw = await asyncio.wait_for(connection.read_message(), timeout=0.2)
            except asyncio.TimeoutError:
                continue
            assert raw is not None, "the websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            seen.append(msg)
            idle = any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in seen)
            if settled is None and idle and any(m["msg_type"] == "execute_reply" for m in seen):
                settled = time.monotonic() + 1.0
    finally:
        connection.close()
    return seen


def open_the_preview(server: Server, text: str) -> None:
    """What the user does with the preview cell's output: curl with the header, and the link in a
    browser that is logged in to Jupyter."""
    browser_url = re.search(r"open in a browser:\s+(\S+)", text).group(1)
    curl_token = re.search(r"X-Sandbox-Preview-Token: (\S+)'", text).group(1)
    host = urlsplit(browser_url).netloc
    status, _, body = fetch(server, host, "/", {"X-Sandbox-Preview-Token": curl_token})
    assert status == 200 and body == b"Hello Hono!", (status, body[:300])

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.goto(f"{server.base}/api/status?token={server.token}")  # logged in: Jupyter's cookie is set
            page.goto(browser_url)
            assert page.text_content("body") == "Hello Hono!"
            assert "token=" not in page.url
        finally:
            browser.close()
