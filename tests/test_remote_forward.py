"""A user's Jupyter server in hub mode: /sandbox/api forwarded to the sandbox service, as this user.

The user's server (JupyterLab) has no engine: its environment points DOCKER_HOST at a socket that does
not exist, so any engine call it made would fail. The service is the real one (`jupyter sandbox
service`, tests/service_support.py) with a tokens file, behind a recording front
(tests/forward_support.py) that keeps every request head it was sent. Through the user's
server: list, create, exec, a 50 MB upload and download, a followed log, a PTY websocket, notebook
renames and deletes, the sidebar in Chromium; and what the service saw (the service token, never the
browser's cookie or the user's server's own token); bad input and a service that is down or refuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import API, Server, box, exec_command, lab_args, start_jupyter_server, wait_until
from forward_support import RecordingFront
from playwright.sync_api import Browser, expect
from service_support import ServiceProcess
from test_rest_api import login_cookie
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager, default_owner

BIG = 50 * 1024 * 1024
NO_ENGINE = "unix:///nonexistent/jupyter-sandbox-forward/docker.sock"


class Hub:
    """The parts of the module's setup: the service stand-in, its recording front, the user's server."""

    def __init__(self, service: Server, front: RecordingFront, user: Server, root: Path, service_token: str) -> None:
        self.service, self.front, self.user, self.root, self.service_token = service, front, user, root, service_token
        # The browser's cookies and XSRF tokens the tests used, which the service must never see.
        self.browser_secrets: list[str] = []
        self.owner = ""  # the service's owner of this user's sandboxes


@pytest.fixture(scope="module")
def hub(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    # The service's housekeeping is off: a sandbox lent below to the user's server's kernel is not
    # one of a kernel the service could see alive, and must not be taken back meanwhile.
    config = {"SandboxManager": {"warm_pool_size": 0}, "SandboxService": {"reap_interval": 0}}
    process = ServiceProcess(tmp_path_factory.mktemp("service"), ["alice"], config)
    process.start()
    service_token = process.token("alice")
    service = Server(process.port, service_token)
    front = RecordingFront(process.port)
    front.start()
    root = tmp_path_factory.mktemp("user-root")
    (root / "work").mkdir()
    (root / "work" / "hub.ipynb").write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "execution_count": None,
                        "id": "write",
                        "metadata": {},
                        "outputs": [],
                        "source": "open('/home/sandbox/sidebar-file.txt', 'w').write('from a cell')\nprint('written')",
                    }
                ],
                "metadata": {"kernelspec": {"name": "sandbox-python", "display_name": "Python 3 (sandbox)"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    user_log = tmp_path_factory.mktemp("user-log") / "user.log"
    user, user_process = start_jupyter_server(
        root,
        lab_args(tmp_path_factory.mktemp("lab")),
        log=user_log,
        module="jupyterlab",
        env={
            "NO_PROXY": "127.0.0.1,localhost",
            "DOCKER_HOST": NO_ENGINE,
            "JUPYTER_SANDBOX_SERVICE_URL": f"http://127.0.0.1:{front.port}",
            "JUPYTER_SANDBOX_SERVICE_TOKEN": service_token,
        },
    )
    hub = Hub(service, front, user, root, service_token)
    hub.owner = process.owner("alice")
    yield hub
    user_process.terminate()
    user_process.wait(timeout=60)
    front.shutdown()
    try:
        for sandbox in service.request("GET", f"{API}/sandboxes")[1].get("sandboxes", []):
            service.request("DELETE", box(sandbox["id"]))
    finally:
        process.stop()
    log = user_log.read_text(errors="replace")
    # The user's server never tried an engine (no Docker client was made there).
    assert "nonexistent/jupyter-sandbox-forward" not in log, log[-3000:]


@pytest.fixture(scope="module")
def sandbox(hub: Hub) -> Iterator[str]:
    status, created = hub.user.request("POST", f"{API}/sandboxes", {"labels": {"test": "forward"}})
    assert status == 201, created
    yield created["id"]
    hub.user.request("DELETE", box(created["id"]))


def raw_request(
    server: Server, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_list_create_and_exec_through_the_service(hub: Hub, sandbox: str) -> None:
    status, listing = hub.user.request("GET", f"{API}/sandboxes")
    assert status == 200 and sandbox in [s["id"] for s in listing["sandboxes"]]
    # The same sandbox straight from the service: the answers are the service's.
    assert hub.service.request("GET", box(sandbox))[1]["id"] == sandbox
    assert exec_command(hub.user, sandbox, "echo forwarded-$((6 * 7))")["stdout"] == "forwarded-42\n"
    # A 201's Location names the resource on the user's server, not on the service.
    status, headers, body = raw_request(
        hub.user,
        "POST",
        box(sandbox, "/ptys"),
        {"Authorization": f"token {hub.user.token}", "Content-Type": "application/json"},
        json.dumps({"id": "located", "cols": 80, "rows": 24}),
    )
    assert status == 201, body
    assert headers["location"] == box(sandbox, "/ptys/located")
    # A preview link is the service's: served on its preview origins, carrying its own token.
    status, link = hub.user.request("POST", box(sandbox, "/previews"), {"port": 8000})
    assert status in (200, 201), link
    assert f":{hub.service.port}/" in link["url"] and f":{hub.user.port}" not in link["url"] and link["token"]


def test_a_50_mb_upload_and_its_download_stream_through(hub: Hub, sandbox: str) -> None:
    data = os.urandom(1024 * 1024) * (BIG // (1024 * 1024))
    digest = hashlib.sha256(data).hexdigest()
    connection = http.client.HTTPConnection("127.0.0.1", hub.user.port, timeout=300)
    connection.putrequest("PUT", box(sandbox, "/files/content?path=big.bin"))
    connection.putheader("Authorization", f"token {hub.user.token}")
    connection.putheader("Content-Length", str(BIG))
    connection.endheaders()
    view = memoryview(data)
    for offset in range(0, BIG, 1024 * 1024):
        connection.send(view[offset : offset + 1024 * 1024])
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 200 and answer["size"] == BIG, answer
    assert exec_command(hub.user, sandbox, "sha256sum big.bin")["stdout"].split()[0] == digest
    # Down again, read as it comes.
    connection = http.client.HTTPConnection("127.0.0.1", hub.user.port, timeout=300)
    connection.request(
        "GET", box(sandbox, "/files/content?path=big.bin"), headers={"Authorization": f"token {hub.user.token}"}
    )
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Length") == str(BIG)
    assert "big.bin" in (response.getheader("Content-Disposition") or "")
    hasher, received = hashlib.sha256(), 0
    while chunk := response.read(1024 * 1024):
        hasher.update(chunk)
        received += len(chunk)
    connection.close()
    assert received == BIG and hasher.hexdigest() == digest


def test_a_followed_log_arrives_line_by_line(hub: Hub, sandbox: str) -> None:
    user = hub.user
    assert user.request("POST", box(sandbox, "/sessions"), {"id": "follow"})[0] == 201
    status, command = user.request(
        "POST",
        box(sandbox, "/sessions/follow/commands"),
        {"command": "echo first-line; while [ ! -e go ]; do sleep 0.1; done; echo second-line", "run_async": True},
    )
    assert status == 202, command
    connection = http.client.HTTPConnection("127.0.0.1", user.port, timeout=60)
    connection.request(
        "GET",
        box(sandbox, f"/sessions/follow/commands/{command['id']}/logs?follow=true"),
        headers={"Authorization": f"token {user.token}"},
    )
    response = connection.getresponse()
    assert response.status == 200 and "ndjson" in response.getheader("Content-Type", "")
    # The first line comes while the command still waits: the answer is not held back till its end.
    first = response.readline()
    assert b"first-line" in first, first
    exec_command(user, sandbox, "touch go")
    rest = response.read()
    connection.close()
    assert b"second-line" in rest, rest


def test_a_pty_websocket_through_the_users_server(hub: Hub, sandbox: str) -> None:
    async def session() -> str:
        request = HTTPRequest(
            f"ws://127.0.0.1:{hub.user.port}{box(sandbox, '/pty')}?cols=80&rows=24&token={hub.user.token}"
        )
        connection = await websocket_connect(request)
        await connection.write_message(json.dumps({"type": "input", "data": "echo pty-$((20 + 3))\n"}))
        seen = ""
        deadline = time.monotonic() + 30
        while "pty-23" not in seen and time.monotonic() < deadline:
            message = await asyncio.wait_for(connection.read_message(), timeout=30)
            assert message is not None, seen
            if isinstance(message, bytes):
                seen += message.decode(errors="replace")
        connection.close()
        return seen

    assert "pty-23" in asyncio.run(session())


def test_a_cookie_session_is_checked_here_and_its_cookie_stays_here(hub: Hub, sandbox: str) -> None:
    user = hub.user
    cookie, xsrf = login_cookie(user)
    hub.browser_secrets.extend([value.split("=", 1)[1] for value in cookie.split("; ")] + [xsrf])
    assert user.request("GET", f"{API}/sandboxes", auth=False, headers={"Cookie": cookie})[0] == 200
    before = len(hub.front.seen)
    # A cookie without the XSRF token is refused by the user's server, never sent on.
    status, _ = user.request(
        "POST", box(sandbox, "/process/exec"), {"command": "true"}, auth=False, headers={"Cookie": cookie}
    )
    assert status == 403 and len(hub.front.seen) == before
    status, answer = user.request(
        "POST",
        box(sandbox, "/process/exec"),
        {"command": "echo with-xsrf"},
        auth=False,
        headers={"Cookie": cookie, "X-XSRFToken": xsrf},
    )
    assert status == 200 and answer["stdout"] == "with-xsrf\n"

    async def socket(origin: str) -> int:
        request = HTTPRequest(
            f"ws://127.0.0.1:{user.port}{box(sandbox, '/pty')}", headers={"Cookie": cookie, "Origin": origin}
        )
        try:
            connection = await websocket_connect(request)
        except HTTPClientError as exc:
            return exc.code
        connection.close()
        return 101

    before = len(hub.front.seen)
    # The user's server checks a cookie session's Origin before the service is dialled.
    assert asyncio.run(socket("http://evil.example")) == 403
    assert len(hub.front.seen) == before
    assert asyncio.run(socket(f"http://127.0.0.1:{user.port}")) == 101


def test_notebook_moves_reach_the_service(hub: Hub, docker_backend: DockerBackend) -> None:
    """A notebook renamed through the user's server: its sandbox (on the service) takes the new name's
    key, worked out on the user's side as its kernels work it out; deleted: the sandbox goes with it
    (no kernel of the server uses it)."""
    manager = SandboxManager(backend=docker_backend, owner=hub.owner)
    status, created = hub.user.request("POST", f"{API}/sandboxes", {"labels": {"test": "forward-notebook"}})
    assert status == 201, created
    old = str((hub.root / "work" / "moved.ipynb").resolve())
    new = str((hub.root / "work" / "renamed.ipynb").resolve())
    # The user's server's kernels key a notebook by their own owner (not the service's) and its path.
    user_owner = default_owner()
    try:
        (hub.root / "work" / "moved.ipynb").write_text((hub.root / "work" / "hub.ipynb").read_text())
        manager.bind(manager.get(created["id"]), binding.workspace_key(user_owner, old), None)
        status, _ = hub.user.request("PATCH", "/api/contents/work/moved.ipynb", {"path": "work/renamed.ipynb"})
        assert status == 200
        key = binding.workspace_key(user_owner, new)
        assert wait_until(lambda: getattr(manager.find_for_workspace(key), "id", None) == created["id"], timeout=30)
        assert hub.user.request("DELETE", "/api/contents/work/renamed.ipynb")[0] == 204
        assert wait_until(lambda: hub.user.request("GET", box(created["id"]))[0] == 404, timeout=60)
    finally:
        hub.user.request("DELETE", box(created["id"]))
    # Bad input to the route is the API's 400, with what is wrong.
    status, answer = hub.user.request("POST", f"{API}/notebooks/events", {"action": "rename", "moves": [{"from": "x"}]})
    assert (status == 400 and "moves" in answer["message"]) or "from" in answer["message"], answer
    status, answer = hub.user.request("POST", f"{API}/notebooks/events", {"action": "delete", "workspaces": ["../x"]})
    assert status == 400 and "workspace" in answer["message"], answer


def test_a_kernel_for_a_sandbox_starts_here_and_borrows_the_services_sandbox(hub: Hub, sandbox: str) -> None:
    """POST .../kernel (the SDK's sb.code.run): the kernel runs beside the user's server, the service
    lends it the sandbox."""
    user = hub.user
    status, answer = user.request("POST", box(sandbox, "/kernel"), {})
    assert status == 201, answer
    kernel_id = answer["kernel_id"]
    try:
        assert kernel_id in [k["id"] for k in user.request("GET", "/api/kernels")[1]]
        assert hub.service.request("GET", box(sandbox))[1]["kernel_id"] == kernel_id
    finally:
        user.request("DELETE", f"/api/kernels/{kernel_id}")
        # The loan taken back through the same API (a sandbox kernel does so itself at its end).
        status, answer = user.request("POST", box(sandbox, "/lend"), {"kernel_id": None})
        assert status == 200, answer
    assert hub.service.request("GET", box(sandbox))[1]["kernel_id"] is None
    status, answer = user.request("POST", box(sandbox, "/kernel"), {"language": "cobol"})
    assert status == 400 and "language" in answer["message"], answer


def test_bad_input_gets_the_apis_json_answers(hub: Hub) -> None:
    user = hub.user
    status, answer = user.request("GET", f"{API}/no-such-thing")
    assert status == 404 and "openapi.json" in answer["message"]
    status, answer = user.request("GET", f"{API}/sandboxes/not-an-id")
    assert status == 404 and "12 lowercase hex" in answer["message"]
    status, answer = user.request("GET", f"{API}/sandboxes/0123456789ab")
    assert status == 404 and "0123456789ab" in answer["message"]
    before = len(hub.front.seen)
    # Climbing out of the API is refused by the user's server, never sent on.
    status, _, body = raw_request(
        user, "GET", f"{API}/%2e%2e/%2e%2e/api/kernels", {"Authorization": f"token {user.token}"}
    )
    assert status == 404 and "openapi.json" in json.loads(body)["message"]
    # Nobody logged in: refused by the user's server, never sent on.
    status, answer = user.request("GET", f"{API}/sandboxes", auth=False)
    assert status == 403
    status, answer = user.request("POST", f"{API}/sandboxes", {}, auth=False)
    assert status == 403
    assert len(hub.front.seen) == before


def test_a_service_that_is_down_or_refuses_is_a_502_that_says_so(hub: Hub) -> None:
    user, url = hub.user, f"http://127.0.0.1:{hub.front.port}"
    hub.front.spoil = True
    try:
        status, answer = user.request("GET", f"{API}/sandboxes")
    finally:
        hub.front.spoil = False
    assert status == 502 and "operator" in answer["message"] and url in answer["message"], answer
    assert hub.service_token not in json.dumps(answer)
    hub.front.stop()
    try:
        status, answer = user.request("GET", f"{API}/sandboxes")
        assert status == 502 and url in answer["message"] and "SandboxRemote.url" in answer["message"], answer
        status, answer = user.request("POST", f"{API}/sandboxes", {})
        assert status == 502 and url in answer["message"], answer
    finally:
        hub.front.start()
    assert user.request("GET", f"{API}/sandboxes")[0] == 200


def test_the_sidebar_shows_the_sandbox_and_opens_its_terminal(hub: Hub, browser: Browser) -> None:
    """The notebook's sandbox kernel (in hub mode: its sandbox at the service, no engine here) runs a
    cell; the sidebar shows its sandbox, the cell's file, and opens a terminal into it."""
    user = hub.user
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        # Logged in with the token once; from then on the browser has the user's server's cookie.
        page.goto(f"{user.base}/lab/tree/work/hub.ipynb?token={user.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
        expect(
            page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"Python 3 \(sandbox\) \| Idle"))
        ).to_be_visible(timeout=120_000)
        cell = page.locator(".jp-Notebook .jp-Cell").first
        cell.locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("Shift+Enter")
        expect(cell.locator(".jp-OutputArea")).to_contain_text("written", timeout=120_000)
        page.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
        expect(page.locator('.jp-SandboxSidebar [data-field="state"]')).to_contain_text("running", timeout=60_000)
        expect(page.locator('.jp-SandboxSidebar-file[data-name="sidebar-file.txt"]')).to_be_visible(timeout=30_000)
        kernel_id = user.request("GET", "/api/sessions")[1][0]["kernel"]["id"]
        mine = hub.service.request("GET", f"{API}/sandboxes?kernel_id={kernel_id}")[1]["sandboxes"]
        assert len(mine) == 1, mine
        page.get_by_role("button", name="Terminal").click()
        terminal = page.locator(".jp-SandboxTerminal .xterm")
        expect(terminal).to_be_visible(timeout=30_000)
        # Typed once the shell's prompt is there (keys before the socket is open would be lost).
        expect(page.locator(".jp-SandboxTerminal .xterm-rows")).to_contain_text("$", timeout=30_000)
        terminal.click()
        page.keyboard.type("echo typed-in-the-$((1 + 1))-lab > ~/from-terminal.txt; echo done-$((3 * 3))\n")
        expect(page.locator(".jp-SandboxTerminal .xterm-rows")).to_contain_text("done-9", timeout=30_000)
        assert exec_command(user, mine[0]["id"], "cat from-terminal.txt")["stdout"] == "typed-in-the-2-lab\n"
        cookies = [c["value"] for c in context.cookies() if c["value"]]
        assert cookies, "the browser holds the user's server's login cookie"
        hub.browser_secrets.extend(cookies)
    finally:
        context.close()
        for session in user.request("GET", "/api/sessions")[1]:
            user.request("DELETE", f"/api/sessions/{session['id']}")


def test_the_service_saw_only_its_token(hub: Hub) -> None:
    """Last: everything the service was sent above carried the service token, and nothing of the
    browser's (its cookies, its XSRF token) or of the user's server's own token."""
    seen = hub.front.seen
    assert len(seen) > 20
    secrets_of_the_user = [hub.user.token, *hub.browser_secrets]
    assert len(secrets_of_the_user) > 4, "the cookie and sidebar tests ran first and recorded the browser's secrets"
    for request in seen:
        assert request.target.startswith("/sandbox/api/"), request.raw()
        assert request.header("Cookie") == [] and request.header("X-XSRFToken") == [], request.raw()
        assert request.header("Authorization") == [f"token {hub.service_token}"], request.raw()
        for secret in secrets_of_the_user:
            assert secret not in request.raw(), request.raw()
    assert any(request.header("Upgrade") for request in seen)  # the websockets went the same way
    assert len({r.target for r in seen if r.method == "PUT"}) >= 1
