"""Preview links: an app in the sandbox, on its own origin, reached by a browser and by curl."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import socket
import time
from typing import Iterator

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from conftest import Server, host_http_server, start_preview_app
from jupyter_sandbox.sandbox import preview as tokens

APP_PORT = 3000  # the app listens on the sandbox's loopback: reached through the agent's tunnel
WIDE_PORT = 3002  # the same app listening on all addresses: reached straight at the container's address
API = "/sandbox/api"


@pytest.fixture(scope="module")
def preview_server(jupyter_server: Server) -> Server:
    """This module's Jupyter server (conftest's), under a name that says what it serves here."""
    return jupyter_server


@pytest.fixture(scope="module")
def app_sandbox(preview_server: Server) -> Iterator[str]:
    status, created = preview_server.request("POST", f"{API}/sandboxes", {})
    assert status == 201, created
    sandbox_id = created["id"]
    start_preview_app(preview_server, sandbox_id, {APP_PORT: "127.0.0.1", WIDE_PORT: "0.0.0.0"})
    yield sandbox_id
    preview_server.request("DELETE", f"{API}/sandboxes/{sandbox_id}")


def link(server: Server, sandbox_id: str, port: int = APP_PORT) -> dict:
    status, answer = server.request("POST", f"{API}/sandboxes/{sandbox_id}/previews", {"port": port})
    assert status == 201, answer
    return answer


def fetch(server: Server, host: str, path: str, headers: dict | None = None, method: str = "GET",
          body: bytes | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def host_of(server: Server, sandbox_id: str, port: int = APP_PORT) -> str:
    return f"{port}-{sandbox_id}.localhost:{server.port}"


def test_ports_and_link(preview_server: Server, app_sandbox: str) -> None:
    status, ports = preview_server.request("GET", f"{API}/sandboxes/{app_sandbox}/ports")
    assert APP_PORT in ports["ports"] and 8750 not in ports["ports"]
    answer = link(preview_server, app_sandbox)
    assert answer["url"] == f"http://{APP_PORT}-{app_sandbox}.localhost:{preview_server.port}/"
    assert answer["browser_url"] == answer["url"] + "?token=" + answer["token"]
    for body, message in (({"port": 0}, "1 to 65535"), ({"port": 65536}, "1 to 65535"), ({"port": "3000"}, "whole number"),
                          ({"port": 3000, "expires_in": 90000}, "24 hours"), ({"port": 3000, "expires_in": 0}, "from 1")):
        status, error = preview_server.request("POST", f"{API}/sandboxes/{app_sandbox}/previews", body)
        assert status == 400 and message in error["message"], error


def test_curl_with_header_or_query_token_and_nothing_of_jupyters_arrives(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    status, _, body = fetch(preview_server, host, "/echo?x=1", {
        "X-Sandbox-Preview-Token": token, "Authorization": f"token {preview_server.token}", "X-XSRFToken": "abc",
        "Cookie": f"_xsrf=abc; username-127-0-0-1-{preview_server.port}=secret; app=mine; jupyter-sandbox-preview={token}"})
    assert status == 200
    seen = json.loads(body)
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert "authorization" not in headers and "x-xsrftoken" not in headers and "x-sandbox-preview-token" not in headers
    assert seen["cookies"] == {"app": "mine"}
    assert headers["host"] == f"localhost:{APP_PORT}"
    assert preview_server.token not in body.decode() and token not in body.decode()
    status, _, body = fetch(preview_server, host, f"/echo?x=2&token={token}")
    assert status == 200 and json.loads(body)["query"] == "x=2"  # the token parameter is not forwarded


def raw_exchange(server: Server, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are and read until the server closes (or goes quiet for `timeout`)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except socket.timeout:
            pass
    return received


@pytest.mark.parametrize("port", [APP_PORT, WIDE_PORT])
def test_a_kept_alive_connection_strips_every_request(preview_server: Server, app_sandbox: str, port: int) -> None:
    """Both roads to an app (tunnel, straight); several requests on one connection, each cleaned."""
    token = link(preview_server, app_sandbox, port)["token"]
    host = host_of(preview_server, app_sandbox, port)
    connection = http.client.HTTPConnection("127.0.0.1", preview_server.port, timeout=30)
    for number in range(5):
        connection.request("GET", f"/echo?n={number}&token={token}", headers={
            "Host": host, "Authorization": f"token {preview_server.token}", "X-XSRFToken": "abc",
            "Cookie": f"_xsrf=abc; username-x=secret; app=mine; jupyter-sandbox-preview={token}"})
        response = connection.getresponse()
        seen = json.loads(response.read())
        assert response.status == 200 and seen["query"] == f"n={number}"
        headers = {k.lower() for k in seen["headers"]}
        assert not headers & {"authorization", "x-xsrftoken", "x-sandbox-preview-token"}
        assert seen["cookies"] == {"app": "mine"}
        assert response.getheader("Connection") == "keep-alive"
    sock = connection.sock
    connection.request("GET", "/echo", headers={"Host": host, "X-Sandbox-Preview-Token": token})
    connection.getresponse().read()
    assert connection.sock is sock  # one connection all along


def test_another_host_on_a_preview_connection_is_refused(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    first = f"GET /echo HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\n\r\n"
    for other in (f"127.0.0.1:{preview_server.port}", host_of(preview_server, app_sandbox, WIDE_PORT)):
        second = (f"GET /api/contents HTTP/1.1\r\nHost: {other}\r\nAuthorization: token {preview_server.token}"
                  f"\r\nX-Sandbox-Preview-Token: {token}\r\n\r\n")
        answer = raw_exchange(preview_server, (first + second).encode())
        assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 421 " in answer
        assert b'"content"' not in answer and answer.count(b'"headers"') == 1


def test_pipelined_and_http10_requests(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    one = f"GET /echo?n=%d HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\n\r\n"
    answer = raw_exchange(preview_server, ((one % 1) + (one % 2) + (one % 3).replace(
        "\r\n\r\n", "\r\nConnection: close\r\n\r\n")).encode())
    assert [int(n) for n in re.findall(rb'"query": "n=(\d)"', answer)] == [1, 2, 3]
    answer = raw_exchange(preview_server, f"GET /echo HTTP/1.0\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}"
                                          "\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer


def test_ambiguous_requests_are_refused(preview_server: Server, app_sandbox: str) -> None:
    """Framing a request could be read two ways by: refused with 400, never forwarded."""
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    start = f"POST /upload HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\n"
    for shape in ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                  "Transfer-Encoding: gzip\r\n\r\nhello"):
        # Second on a kept connection, where the proxy alone reads the head.
        first = f"GET /echo HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\n\r\n"
        answer = raw_exchange(preview_server, (first + start + shape).encode())
        assert b"HTTP/1.1 400 " in answer and b'"size"' not in answer, (shape, answer[-300:])
    folded = f"GET /echo HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\nX-A: 1\r\n folded\r\n\r\n"
    answer = raw_exchange(preview_server, (first + folded).encode())
    assert answer.count(b"HTTP/1.1 200 ") == 1 and b"HTTP/1.1 400 " in answer


def test_chunked_upload_and_expect_continue(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox, WIDE_PORT)["token"]
    host = host_of(preview_server, app_sandbox, WIDE_PORT)
    pieces = [bytes([n]) * (1000 * (n + 1)) for n in range(5)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    answer = raw_exchange(preview_server, (f"POST /upload HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}"
                                           "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode() + body)
    whole = b"".join(pieces)
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    with socket.create_connection(("127.0.0.1", preview_server.port), timeout=10) as sock:
        sock.sendall(f"PUT /echo HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\nContent-Length: 2"
                     "\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"{}")
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 200 ") and b'"method": "PUT"' in rest
    assert b"expect" not in rest.lower().split(b"\r\n\r\n", 1)[1]  # the app was not asked to continue


def test_ports_of_jupyter_sandbox_itself_are_not_previewed(preview_server: Server, app_sandbox: str) -> None:
    for port in (8750, 8751, 8755):
        status, error = preview_server.request("POST", f"{API}/sandboxes/{app_sandbox}/previews", {"port": port})
        assert status == 400 and "jupyter-sandbox's own" in error["message"], error


def test_bad_tokens(preview_server: Server, app_sandbox: str) -> None:
    host = host_of(preview_server, app_sandbox)
    good = link(preview_server, app_sandbox)["token"]
    other_sandbox, _ = tokens.mint("0123456789ab", APP_PORT)
    other_port, _ = tokens.mint(app_sandbox, APP_PORT + 1)
    expired, _ = tokens.mint(app_sandbox, APP_PORT, expires_in=1)
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    longer = good.replace(f".{good.split('.')[2]}.", f".{int(good.split('.')[2]) + 3600}.")
    time.sleep(1.5)
    assert fetch(preview_server, host, "/echo")[0] == 401
    for bad in (other_sandbox, other_port, expired, tampered, longer, "garbage", good + "x"):
        status, _, body = fetch(preview_server, host, "/echo", {"X-Sandbox-Preview-Token": bad})
        assert status == 403, (bad, status)
        assert b"not valid" in body
    assert fetch(preview_server, host, "/echo", {"X-Sandbox-Preview-Token": good})[0] == 200
    assert preview_server.request("DELETE", f"{API}/sandboxes/{app_sandbox}/previews")[0] == 204
    assert fetch(preview_server, host, "/echo", {"X-Sandbox-Preview-Token": good})[0] == 403  # rotated


@pytest.mark.parametrize("port", [APP_PORT, WIDE_PORT])
def test_streams_redirects_and_events(preview_server: Server, app_sandbox: str, port: int) -> None:
    token = link(preview_server, app_sandbox, port)["token"]
    headers = {"X-Sandbox-Preview-Token": token}
    host = host_of(preview_server, app_sandbox, port)
    status, _, body = fetch(preview_server, host, "/big?mb=64", headers)
    assert status == 200 and len(body) == 64 * 1024 * 1024
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(bytes(range(256)) * 4096 * 64).hexdigest()
    payload = bytes(range(256)) * 40000
    status, _, body = fetch(preview_server, host, "/upload", headers, method="POST", body=payload)
    assert json.loads(body) == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    status, response_headers, _ = fetch(preview_server, host, "/redirect", headers)
    assert status == 302 and response_headers["Location"] == "/echo?from=redirect"
    connection = http.client.HTTPConnection("127.0.0.1", preview_server.port, timeout=30)
    connection.request("GET", "/events", headers={"Host": host, **headers})
    response = connection.getresponse()
    arrivals = []
    while len(arrivals) < 3:
        line = response.readline()
        if line.startswith(b"data:"):
            arrivals.append(time.monotonic())
    assert arrivals[-1] - arrivals[0] > 0.3  # each event came when it was sent
    for method in ("PUT", "DELETE", "PATCH"):
        status, _, body = fetch(preview_server, host, "/echo", headers, method=method, body=b"{}")
        assert status == 200 and json.loads(body)["method"] == method


@pytest.mark.parametrize("port", [APP_PORT, WIDE_PORT])
def test_websockets(preview_server: Server, app_sandbox: str, port: int) -> None:
    token = link(preview_server, app_sandbox, port)["token"]
    url = f"ws://127.0.0.1:{preview_server.port}/ws"
    host = host_of(preview_server, app_sandbox, port)

    async def session() -> tuple:
        connection = await websocket_connect(HTTPRequest(url, headers={"Host": host, "X-Sandbox-Preview-Token": token}))
        await connection.write_message("hello")
        text = await connection.read_message()
        await connection.write_message(b"\x00\x01binary", binary=True)
        binary = await connection.read_message()
        await connection.write_message("close-please")
        closed = await connection.read_message()
        return text, binary, closed, connection.close_code, connection.close_reason

    assert asyncio.run(session()) == ("hello", b"\x00\x01binary", None, 4001, "asked to close")

    async def without_token() -> int:
        try:
            await websocket_connect(HTTPRequest(url, headers={"Host": host}))
        except HTTPClientError as exc:
            return exc.code
        return 101

    assert asyncio.run(without_token()) == 401


@pytest.mark.parametrize("host_prefix, path, status", [
    ("0-{id}.localhost", "/echo", 400),
    ("65536-{id}.localhost", "/echo", 400),
    ("99999-{id}.localhost", "/echo", 400),
    ("3000@127.0.0.1", "/echo", 400),  # not a valid Host: refused by the server itself
    ("3000.evil", "/echo", 403),  # not a local host name: Jupyter refuses it (DNS rebinding guard)
    ("3000-{id}.localhost.evil", "/echo", 403),
])
def test_ssrf_shapes_never_reach_an_app(preview_server: Server, app_sandbox: str, host_prefix: str, path: str,
                                        status: int) -> None:
    token = link(preview_server, app_sandbox)["token"]
    host = host_prefix.format(id=app_sandbox) + f":{preview_server.port}"
    got, _, body = fetch(preview_server, host, path, {"X-Sandbox-Preview-Token": token})
    assert got == status and b'"headers"' not in body


def test_a_port_of_the_host_is_not_reachable(preview_server: Server, app_sandbox: str) -> None:
    with host_http_server(b"THE HOST") as port:
        token = link(preview_server, app_sandbox, port)["token"]
        status, _, body = fetch(preview_server, host_of(preview_server, app_sandbox, port), "/",
                                {"X-Sandbox-Preview-Token": token})
        assert status == 502 and b"THE HOST" not in body
        assert f"Nothing is listening on port {port}".encode() in body and str(APP_PORT).encode() in body


def test_script_in_the_address_is_escaped(preview_server: Server, app_sandbox: str) -> None:
    status, _, body = fetch(preview_server, host_of(preview_server, app_sandbox), "/<script>alert(1)</script>")
    assert status == 401 and b"<script>" not in body and b"&lt;script&gt;" in body


def test_script_in_a_malformed_request_is_escaped(preview_server: Server, app_sandbox: str) -> None:
    """The 400 page quotes what was wrong; a later request on a kept connection is read by the proxy alone."""
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    first = f"GET /echo HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\n\r\n"
    for bad in (f"GET /echo HTTP/1.1\r\nHost: {host}\r\n<script>alert(1)</script>\r\n\r\n",
                "<script>alert(1)</script> / HTTP/1.1\r\n\r\n"):
        answer = raw_exchange(preview_server, (first + bad).encode())
        assert b"HTTP/1.1 400 " in answer and b"<script>" not in answer and b"&lt;script&gt;" in answer


def test_path_form_is_locked_in_a_csp_sandbox(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    path = f"/sandbox/preview/{app_sandbox}/{APP_PORT}/echo?y=1"
    status, headers, body = fetch(preview_server, f"127.0.0.1:{preview_server.port}", path,
                                  {"X-Sandbox-Preview-Token": token})
    assert status == 200 and json.loads(body)["path"] == "/echo"
    assert headers["Content-Security-Policy"].startswith("sandbox") and "allow-same-origin" not in headers["Content-Security-Policy"]
    for port in ("0", "65536"):
        status, _, _ = fetch(preview_server, f"127.0.0.1:{preview_server.port}", f"/sandbox/preview/{app_sandbox}/{port}/",
                             {"X-Sandbox-Preview-Token": token})
        assert status == 400
    status, headers, _ = fetch(preview_server, f"127.0.0.1:{preview_server.port}",
                               f"/sandbox/preview/{app_sandbox}/{APP_PORT}/?token={token}", {"Accept": "text/html"})
    assert status == 302 and f"Path=/sandbox/preview/{app_sandbox}/{APP_PORT}/" in headers["Set-Cookie"]


def test_stopped_sandbox_is_503(preview_server: Server) -> None:
    status, created = preview_server.request("POST", f"{API}/sandboxes", {})
    sandbox_id = created["id"]
    try:
        token = link(preview_server, sandbox_id)["token"]
        preview_server.request("POST", f"{API}/sandboxes/{sandbox_id}/stop")
        time.sleep(2.5)  # past the proxy's short cache of sandbox states
        status, _, body = fetch(preview_server, host_of(preview_server, sandbox_id), "/", {"X-Sandbox-Preview-Token": token})
        assert status == 503 and b"stopped" in body
    finally:
        preview_server.request("DELETE", f"{API}/sandboxes/{sandbox_id}")


def test_in_a_real_browser(preview_server: Server, app_sandbox: str) -> None:
    from playwright.sync_api import sync_playwright

    answer = link(preview_server, app_sandbox)
    jupyter = f"http://127.0.0.1:{preview_server.port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page()
            # Logged in to Jupyter first, as a JupyterLab user would be.
            page.goto(f"{jupyter}/api/status?token={preview_server.token}")
            page.goto(answer["browser_url"] + f"&jupyter={jupyter}")
            assert page.url == answer["url"] + f"?jupyter={jupyter.replace(':', '%3A').replace('/', '%2F')}" or "token=" not in page.url
            assert page.text_content("#title") == "hello from the sandbox"
            page.wait_for_function("() => Object.keys(window.results).length === 3", timeout=20000)
            results = page.evaluate("() => window.results")
            assert results["own_api_contents"].startswith("404") and '"content"' not in results["own_api_contents"]
            assert results["own_sandbox_api"].startswith("404") and "sandboxes" not in results["own_sandbox_api"][4:]
            assert results["jupyter_api_contents"].startswith("blocked")
            cookies = {c["name"]: c for c in page.context.cookies()}
            preview_cookie = cookies["jupyter-sandbox-preview"]
            assert preview_cookie["httpOnly"] and preview_cookie["domain"] == f"{APP_PORT}-{app_sandbox}.localhost"
            assert page.evaluate("() => document.cookie").find(answer["token"]) == -1
            # The echo app, opened in the same browser, saw no Jupyter cookie.
            page.goto(answer["url"] + "echo")
            seen = json.loads(page.text_content("body"))
            assert not any(name.startswith(("_xsrf", "username-")) for name in seen["cookies"])
        finally:
            browser.close()


def test_walkthrough_from_a_notebook(preview_server: Server) -> None:
    """Start a server from a cell, get its link with %sandbox preview, open it with curl and Chromium."""
    import re

    from conftest import execute_over_websocket

    status, kernel = preview_server.request("POST", "/api/kernels", {"name": "sandbox-python"})
    kernel_id = kernel["id"]

    def cell(code: str) -> tuple[str, list[dict]]:
        seen = asyncio.run(execute_over_websocket(preview_server, kernel_id, code))
        text = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
        return text, [m for m in seen if m["msg_type"] in ("error", "execute_reply")]

    try:
        cell("import subprocess, time, pathlib\npathlib.Path('/tmp/site').mkdir(exist_ok=True)\n"
             "pathlib.Path('/tmp/site/index.html').write_text('<h1 id=t>made in a notebook</h1>')\n"
             "server = subprocess.Popen(['python3', '-m', 'http.server', '8000'], cwd='/tmp/site',"
             " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\ntime.sleep(1)")
        text, _ = cell("%sandbox preview 8000 --expires 2h")
        browser_url = re.search(r"open in a browser:\s+(\S+)", text).group(1)
        curl_token = re.search(r"X-Sandbox-Preview-Token: (\S+)'", text).group(1)
        url = browser_url.split("?")[0]
        host = urllib_host(url)
        status, _, body = fetch(preview_server, host, "/", {"X-Sandbox-Preview-Token": curl_token})
        assert status == 200 and b"made in a notebook" in body

        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-background-networking", "--disable-component-update"])
            try:
                page = browser.new_page()
                page.goto(browser_url)
                assert page.text_content("#t") == "made in a notebook" and "token=" not in page.url
            finally:
                browser.close()

        for line, message in (("%sandbox preview 0", "more than zero"), ("%sandbox preview 70000", "1 to 65535"),
                              ("%sandbox preview 8000 --expires 48h", "24 hours"),
                              ("%sandbox preview 8000 --expires soon", "duration"),
                              ("%sandbox preview 8750", "jupyter-sandbox's own")):
            _, replies = cell(line)
            errors = [m["content"]["evalue"] for m in replies if m["msg_type"] == "error"]
            assert errors and message in errors[0], (line, errors)
    finally:
        preview_server.request("DELETE", f"/api/kernels/{kernel_id}")


def urllib_host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc
