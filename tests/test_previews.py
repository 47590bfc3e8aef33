"""Preview links: an app in the sandbox, on its own origin, reached by a browser and by curl."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import socket
import time
from collections.abc import Iterator

import pytest
from conftest import Server, fetch, host_http_server, launch_chromium, preview_host, start_preview_app
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox import preview as tokens
from jupyter_sandbox.server_extension.preview import confine
from jupyter_sandbox.server_extension.preview.pages import PROXY_PAGE_CSP

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


def host_of(server: Server, sandbox_id: str, port: int = APP_PORT) -> str:
    return preview_host(server, sandbox_id, port)


def test_ports_and_link(preview_server: Server, app_sandbox: str) -> None:
    status, ports = preview_server.request("GET", f"{API}/sandboxes/{app_sandbox}/ports")
    assert APP_PORT in ports["ports"] and 8750 not in ports["ports"]
    answer = link(preview_server, app_sandbox)
    assert answer["url"] == f"http://{APP_PORT}-{app_sandbox}.localhost:{preview_server.port}/"
    assert answer["browser_url"] == answer["url"] + "?token=" + answer["token"]
    for body, message in (
        ({"port": 0}, "1 to 65535"),
        ({"port": 65536}, "1 to 65535"),
        ({"port": "3000"}, "whole number"),
        ({"port": 3000, "expires_in": 90000}, "24 hours"),
        ({"port": 3000, "expires_in": 0}, "from 1"),
    ):
        status, error = preview_server.request("POST", f"{API}/sandboxes/{app_sandbox}/previews", body)
        assert status == 400 and message in error["message"], error


def test_curl_with_header_or_query_token_and_nothing_of_jupyters_arrives(
    preview_server: Server, app_sandbox: str
) -> None:
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    status, _, body = fetch(
        preview_server,
        host,
        "/echo?x=1",
        {
            "X-Sandbox-Preview-Token": token,
            "Authorization": f"token {preview_server.token}",
            "X-XSRFToken": "abc",
            "Cookie": f"_xsrf=abc; username-127-0-0-1-{preview_server.port}=secret; app=mine; jupyter-sandbox-preview={token}",
        },
    )
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
        connection.request(
            "GET",
            f"/echo?n={number}&token={token}",
            headers={
                "Host": host,
                "Authorization": f"token {preview_server.token}",
                "X-XSRFToken": "abc",
                "Cookie": f"_xsrf=abc; username-x=secret; app=mine; jupyter-sandbox-preview={token}",
            },
        )
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
        second = (
            f"GET /api/contents HTTP/1.1\r\nHost: {other}\r\nAuthorization: token {preview_server.token}"
            f"\r\nX-Sandbox-Preview-Token: {token}\r\n\r\n"
        )
        answer = raw_exchange(preview_server, (first + second).encode())
        assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 421 " in answer
        assert b'"content"' not in answer and answer.count(b'"headers"') == 1


def test_pipelined_and_http10_requests(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    one = f"GET /echo?n=%d HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\n\r\n"
    answer = raw_exchange(
        preview_server,
        ((one % 1) + (one % 2) + (one % 3).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).encode(),
    )
    assert [int(n) for n in re.findall(rb'"query": "n=(\d)"', answer)] == [1, 2, 3]
    answer = raw_exchange(
        preview_server, f"GET /echo HTTP/1.0\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer


def test_ambiguous_requests_are_refused(preview_server: Server, app_sandbox: str) -> None:
    """Framing a request could be read two ways by: refused with 400, never forwarded."""
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    start = f"POST /upload HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\n"
    for shape in (
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "Transfer-Encoding: gzip\r\n\r\nhello",
    ):
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
    answer = raw_exchange(
        preview_server,
        (
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}"
            "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        + body,
    )
    whole = b"".join(pieces)
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "size": len(whole),
        "sha256": hashlib.sha256(whole).hexdigest(),
    }
    with socket.create_connection(("127.0.0.1", preview_server.port), timeout=10) as sock:
        sock.sendall(
            f"PUT /echo HTTP/1.1\r\nHost: {host}\r\nX-Sandbox-Preview-Token: {token}\r\nContent-Length: 2"
            "\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode()
        )
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


@pytest.mark.parametrize(
    "host_prefix, path, status",
    [
        ("0-{id}.localhost", "/echo", 400),
        ("65536-{id}.localhost", "/echo", 400),
        ("99999-{id}.localhost", "/echo", 400),
        ("3000@127.0.0.1", "/echo", 400),  # not a valid Host: refused by the server itself
        ("3000.evil", "/echo", 403),  # not a local host name: Jupyter refuses it (DNS rebinding guard)
        ("3000-{id}.localhost.evil", "/echo", 403),
    ],
)
def test_ssrf_shapes_never_reach_an_app(
    preview_server: Server, app_sandbox: str, host_prefix: str, path: str, status: int
) -> None:
    token = link(preview_server, app_sandbox)["token"]
    host = host_prefix.format(id=app_sandbox) + f":{preview_server.port}"
    got, _, body = fetch(preview_server, host, path, {"X-Sandbox-Preview-Token": token})
    assert got == status and b'"headers"' not in body


def test_a_port_of_the_host_is_not_reachable(preview_server: Server, app_sandbox: str) -> None:
    with host_http_server(b"THE HOST") as port:
        token = link(preview_server, app_sandbox, port)["token"]
        status, _, body = fetch(
            preview_server, host_of(preview_server, app_sandbox, port), "/", {"X-Sandbox-Preview-Token": token}
        )
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
    for bad in (
        f"GET /echo HTTP/1.1\r\nHost: {host}\r\n<script>alert(1)</script>\r\n\r\n",
        "<script>alert(1)</script> / HTTP/1.1\r\n\r\n",
    ):
        answer = raw_exchange(preview_server, (first + bad).encode())
        assert b"HTTP/1.1 400 " in answer and b"<script>" not in answer and b"&lt;script&gt;" in answer


def test_path_form_is_locked_in_a_csp_sandbox(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    path = f"/sandbox/preview/{app_sandbox}/{APP_PORT}/echo?y=1"
    status, headers, body = fetch(
        preview_server,
        f"127.0.0.1:{preview_server.port}",
        path,
        {"X-Sandbox-Preview-Token": token, "Cookie": "_xsrf=a; other-extension=b; _ga=c"},
    )
    assert status == 200 and json.loads(body)["path"] == "/echo"
    # Every cookie sent to the Jupyter origin is someone else's there: the app gets none.
    assert json.loads(body)["cookies"] == {} and "cookie" not in {k.lower() for k in json.loads(body)["headers"]}
    assert json.loads(body)["headers"]["X-Forwarded-Prefix"] == f"/sandbox/preview/{app_sandbox}/{APP_PORT}"
    assert (
        headers["Content-Security-Policy"].startswith("sandbox")
        and "allow-same-origin" not in headers["Content-Security-Policy"]
    )
    for port in ("0", "65536"):
        status, _, _ = fetch(
            preview_server,
            f"127.0.0.1:{preview_server.port}",
            f"/sandbox/preview/{app_sandbox}/{port}/",
            {"X-Sandbox-Preview-Token": token},
        )
        assert status == 400
    status, headers, _ = fetch(
        preview_server,
        f"127.0.0.1:{preview_server.port}",
        f"/sandbox/preview/{app_sandbox}/{APP_PORT}/?token={token}",
        {"Accept": "text/html"},
    )
    assert status == 302 and f"Path=/sandbox/preview/{app_sandbox}/{APP_PORT}/" in headers["Set-Cookie"]


def test_stopped_sandbox_is_503(preview_server: Server) -> None:
    status, created = preview_server.request("POST", f"{API}/sandboxes", {})
    sandbox_id = created["id"]
    try:
        token = link(preview_server, sandbox_id)["token"]
        preview_server.request("POST", f"{API}/sandboxes/{sandbox_id}/stop")
        time.sleep(2.5)  # past the proxy's short cache of sandbox states
        status, _, body = fetch(
            preview_server, host_of(preview_server, sandbox_id), "/", {"X-Sandbox-Preview-Token": token}
        )
        assert status == 503 and b"stopped" in body
    finally:
        preview_server.request("DELETE", f"{API}/sandboxes/{sandbox_id}")


def test_in_a_real_browser(preview_server: Server, app_sandbox: str) -> None:
    from playwright.sync_api import sync_playwright

    answer = link(preview_server, app_sandbox)
    jupyter = f"http://127.0.0.1:{preview_server.port}"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            # Logged in to Jupyter first, as a JupyterLab user would be.
            page.goto(f"{jupyter}/api/status?token={preview_server.token}")
            page.goto(answer["browser_url"] + f"&jupyter={jupyter}")
            assert (
                page.url == answer["url"] + f"?jupyter={jupyter.replace(':', '%3A').replace('/', '%2F')}"
                or "token=" not in page.url
            )
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
        cell(
            "import subprocess, time, pathlib\npathlib.Path('/tmp/site').mkdir(exist_ok=True)\n"
            "pathlib.Path('/tmp/site/index.html').write_text('<h1 id=t>made in a notebook</h1>')\n"
            "server = subprocess.Popen(['python3', '-m', 'http.server', '8000'], cwd='/tmp/site',"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\ntime.sleep(1)"
        )
        text, _ = cell("%sandbox preview 8000 --expires 2h")
        browser_url = re.search(r"open in a browser:\s+(\S+)", text).group(1)
        curl_token = re.search(r"X-Sandbox-Preview-Token: (\S+)'", text).group(1)
        url = browser_url.split("?")[0]
        host = urllib_host(url)
        status, _, body = fetch(preview_server, host, "/", {"X-Sandbox-Preview-Token": curl_token})
        assert status == 200 and b"made in a notebook" in body

        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page()
                page.goto(browser_url)
                assert page.text_content("#t") == "made in a notebook" and "token=" not in page.url
            finally:
                browser.close()

        for line, message in (
            ("%sandbox preview 0", "more than zero"),
            ("%sandbox preview 70000", "1 to 65535"),
            ("%sandbox preview 8000 --expires 48h", "24 hours"),
            ("%sandbox preview 8000 --expires soon", "duration"),
            ("%sandbox preview 8750", "jupyter-sandbox's own"),
        ):
            _, replies = cell(line)
            errors = [m["content"]["evalue"] for m in replies if m["msg_type"] == "error"]
            assert errors and message in errors[0], (line, errors)
    finally:
        preview_server.request("DELETE", f"/api/kernels/{kernel_id}")


def urllib_host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


# -- nothing a preview sends touches the Jupyter origin ------------------------------------------------


def path_of(sandbox_id: str, port: int = APP_PORT) -> str:
    return f"/sandbox/preview/{sandbox_id}/{port}"


def answer_query(status: int = 200, headers: list[str] = (), body: str = "", kind: str = "") -> str:
    """A query for the app's /answer: it replies with this status, these headers and this body."""
    import urllib.parse

    items = [("status", str(status)), *(("h", h) for h in headers), ("body", body)]
    if kind:
        items.append(("h", f"Content-Type: {kind}"))
    return urllib.parse.urlencode(items)


def all_headers(
    server: Server, host: str, path: str, headers: dict | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, every header as sent, in order and repeated, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("GET", path, headers={"Host": host, **(headers or {})})
    response = connection.getresponse()
    return response.status, response.getheaders(), response.read()


# What no path-form response may carry: each is kept by a browser as state of the Jupyter origin, or
# points it at Jupyter's own addresses.
ORIGIN_STATE_HEADERS = {
    "set-cookie",
    "set-cookie2",
    "clear-site-data",
    "service-worker-allowed",
    "link",
    "alt-svc",
    "strict-transport-security",
    "nel",
    "report-to",
    "reporting-endpoints",
    "accept-ch",
    "critical-ch",
    "www-authenticate",
    "speculation-rules",
    "set-login",
    "vary",
    "content-location",
    "origin-agent-cluster",
    "expires",
    "surrogate-control",
}
HOSTILE_HEADERS = [
    "Set-Cookie: _xsrf=chosen; Path=/",
    "Set-Cookie: username-x=; Path=/; Max-Age=0",
    "Set-Cookie: planted=1; Domain=127.0.0.1; Path=/",
    "Set-Cookie2: old=1",
    'Clear-Site-Data: "*"',
    "Service-Worker-Allowed: /",
    "Link: </api/contents>; rel=preload",
    'Alt-Svc: h2=":8443"',
    "Strict-Transport-Security: max-age=0",
    'NEL: {"report_to":"x","max_age":9}',
    'Report-To: {"group":"x","max_age":9,"endpoints":[{"url":"http://127.0.0.1:1/"}]}',
    'Reporting-Endpoints: x="http://127.0.0.1:1/"',
    "Accept-CH: Sec-CH-UA-Model",
    "Critical-CH: Sec-CH-UA-Model",
    'WWW-Authenticate: Basic realm="jupyter"',
    'Speculation-Rules: "/rules.json"',
    "Set-Login: logged-out",
    "Vary: Cookie",
    "Content-Location: /api/contents",
    "Origin-Agent-Cluster: ?0",
    "Cache-Control: public, max-age=31536000, immutable",
    "Expires: Thu, 01 Jan 2099 00:00:00 GMT",
    "Surrogate-Control: max-age=999",
    "X-Frame-Options: ALLOWALL",
    "X-App-Note: kept",
    "Content-Security-Policy: sandbox allow-same-origin allow-scripts",
]


def assert_locked(headers: list[tuple[str, str]], own_cookie_path: str | None = None) -> None:
    """A path-form response: in the CSP sandbox, uncacheable, framed only by Jupyter, nothing of origin state."""
    names = [name.lower() for name, _ in headers]
    policies = [value for name, value in headers if name.lower() == "content-security-policy"]
    # The proxy's own policy is there (an app's policy may add one, which only restricts further).
    assert confine.PATH_FORM_CSP in policies or PROXY_PAGE_CSP in policies, headers
    for name, value in headers:
        lowered = name.lower()
        if lowered == "set-cookie" and own_cookie_path and value.startswith("jupyter-sandbox-preview="):
            assert f"Path={own_cookie_path}" in value and "Domain" not in value
            continue
        assert lowered not in ORIGIN_STATE_HEADERS, (name, value)
    assert [v for n, v in headers if n.lower() == "cache-control"] == ["no-store"], headers
    assert "x-frame-options" in names and dict((n.lower(), v) for n, v in headers)["x-frame-options"] == "SAMEORIGIN"


@pytest.mark.parametrize(
    "kind",
    [
        "text/html",
        "image/svg+xml",
        "application/xml",
        "application/xhtml+xml",
        "text/xml",
        "application/json",
        "text/plain",
        "application/pdf",
        "",
    ],
)
@pytest.mark.parametrize("status", [200, 404, 500])
def test_path_form_responses_carry_nothing_of_origin_state(
    preview_server: Server, app_sandbox: str, kind: str, status: int
) -> None:
    token = link(preview_server, app_sandbox)["token"]
    jupyter_host = f"127.0.0.1:{preview_server.port}"
    query = answer_query(
        status, HOSTILE_HEADERS, "<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>", kind
    )
    got, headers, _ = all_headers(
        preview_server, jupyter_host, f"{path_of(app_sandbox)}/answer?{query}", {"X-Sandbox-Preview-Token": token}
    )
    assert got == status
    assert_locked(headers)
    assert "allow-same-origin" not in confine.PATH_FORM_CSP and confine.PATH_FORM_CSP.startswith("sandbox ")
    assert ("X-App-Note", "kept") in headers  # the app's own X- headers still reach it


def test_path_form_proxy_answers_are_locked_too(preview_server: Server, app_sandbox: str) -> None:
    """The proxy's own answers on the Jupyter origin: its error pages and its log-in redirect."""
    token = link(preview_server, app_sandbox)["token"]
    jupyter_host = f"127.0.0.1:{preview_server.port}"
    prefix = path_of(app_sandbox)
    for path, headers, status in (
        (f"{prefix}/echo", {}, 401),
        (f"{prefix}/echo", {"X-Sandbox-Preview-Token": "garbage"}, 403),
        (f"{path_of(app_sandbox, 59999)}/", {"X-Sandbox-Preview-Token": tokens.mint(app_sandbox, 59999)[0]}, 502),
        (
            f"{prefix}/answer?" + answer_query(302, ["Location: //elsewhere.example/"]),
            {"X-Sandbox-Preview-Token": token},
            502,
        ),
    ):
        got, answer, body = all_headers(preview_server, jupyter_host, path, headers)
        assert got == status, (path, got, body[:300])
        assert_locked(answer)
    got, answer, _ = all_headers(preview_server, jupyter_host, f"{prefix}/echo?token={token}", {"Accept": "text/html"})
    assert got == 302
    assert_locked(answer, own_cookie_path=prefix + "/")


@pytest.mark.parametrize(
    "location, expected",
    [
        ("/echo?from=redirect", "{prefix}/echo?from=redirect"),  # the app's own root is the preview's
        ("/api/contents", "{prefix}/api/contents"),
        ("/logout", "{prefix}/logout"),
        ("{prefix}/echo", "{prefix}/echo"),  # an app that knows its prefix (X-Forwarded-Prefix)
        ("echo?x=1", "{prefix}/echo?x=1"),
        ("http://localhost:3000/login", "{prefix}/login"),  # the Host the app was sent
        ("http://{jupyter}/lab", "{prefix}/lab"),  # the Host the browser used
        ("../../../logout", None),
        ("/..%2F../logout", "{prefix}/..%2F../logout"),  # not a dot segment: still in the preview
        ("/%2e%2e/%2E%2e/%2e%2e/logout", None),
        ("{prefix}/../../x", None),
        ("//elsewhere.example/", None),
        ("/\\elsewhere.example/", None),
        ("\\\\elsewhere.example/", None),
        ("http://elsewhere.example/", None),
        ("http://{jupyter}@elsewhere.example/", None),
        ("https://localhost:{port}/logout", None),  # Jupyter under another of its names
        ("javascript:alert(document.domain)", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("  /x\t/y", "{prefix}/x/y"),
    ],
)
def test_path_form_redirects_stay_in_the_preview(
    preview_server: Server, app_sandbox: str, location: str, expected: str | None
) -> None:
    token = link(preview_server, app_sandbox)["token"]
    jupyter = f"127.0.0.1:{preview_server.port}"
    prefix = path_of(app_sandbox)
    fill = {"prefix": prefix, "jupyter": jupyter, "port": preview_server.port}
    query = answer_query(302, [f"Location: {location.format(**fill)}", f"Refresh: 0; url={location.format(**fill)}"])
    status, headers, body = all_headers(
        preview_server, jupyter, f"{prefix}/answer?{query}", {"X-Sandbox-Preview-Token": token}
    )
    locations = [v for n, v in headers if n.lower() == "location"]
    refreshes = [v for n, v in headers if n.lower() == "refresh"]
    if expected is None:
        assert status == 502 and not locations and not refreshes and b"redirected outside its preview" in body
    else:
        assert status == 302 and locations == [expected.format(**fill)], headers
        assert refreshes == [f"0; url={expected.format(**fill)}"]
    for refresh in ("0; url=/logout", "5;URL='http://elsewhere.example/'", "0, //elsewhere.example", "1"):
        status, headers, _ = all_headers(
            preview_server,
            jupyter,
            f"{prefix}/answer?" + answer_query(200, [f"Refresh: {refresh}"]),
            {"X-Sandbox-Preview-Token": token},
        )
        refreshes = [v for n, v in headers if n.lower() == "refresh"]
        assert status == 200 and all(r == "1" or f"url={prefix}/" in r for r in refreshes), refreshes


def test_a_clients_dotted_path_gets_a_confined_login_redirect(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    prefix = path_of(app_sandbox)
    answer = raw_exchange(
        preview_server,
        (
            f"GET {prefix}/a/../../../../logout?token={token} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{preview_server.port}\r\nAccept: text/html\r\n\r\n"
        ).encode(),
    )
    location = re.search(rb"\r\nLocation: (\S+)\r\n", answer).group(1).decode()
    assert answer.startswith(b"HTTP/1.1 302 ") and location.startswith(prefix + "/") and ".." not in location


def test_own_origin_cookies_stay_on_the_preview_origin(preview_server: Server, app_sandbox: str) -> None:
    """On its own origin an app keeps its cookies, host-only: no Domain (which would reach sibling
    previews, or a hub on the same parent domain), never the proxy's token cookie; no Clear-Site-Data;
    nothing a shared cache would keep for others."""
    token = link(preview_server, app_sandbox)["token"]
    status, headers, _ = all_headers(
        preview_server,
        host_of(preview_server, app_sandbox),
        "/answer?"
        + answer_query(
            200,
            [
                "Set-Cookie: app=1; Domain=localhost; Path=/; HttpOnly",
                "Set-Cookie: other=2; path=/; domain=.localhost",
                "Set-Cookie: jupyter-sandbox-preview=replaced; Path=/",
                'Clear-Site-Data: "cookies"',
                "Cache-Control: public, s-maxage=600, max-age=60",
                "Surrogate-Control: max-age=600",
            ],
        ),
        {"X-Sandbox-Preview-Token": token},
    )
    cookies = [v for n, v in headers if n.lower() == "set-cookie"]
    assert status == 200 and cookies == ["app=1; Path=/; HttpOnly", "other=2; path=/"]
    names = {n.lower() for n, _ in headers}
    assert "clear-site-data" not in names and "surrogate-control" not in names
    assert [v for n, v in headers if n.lower() == "cache-control"] == ["max-age=60, private"] or [
        v for n, v in headers if n.lower() == "cache-control"
    ] == ["private, max-age=60"]
    status, headers, _ = all_headers(
        preview_server, host_of(preview_server, app_sandbox), "/echo", {"X-Sandbox-Preview-Token": token}
    )
    assert [v for n, v in headers if n.lower() == "cache-control"] == ["private"]


def test_service_workers_are_not_served_on_the_path_form(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    jupyter = f"127.0.0.1:{preview_server.port}"
    status, headers, body = all_headers(
        preview_server,
        jupyter,
        f"{path_of(app_sandbox)}/sw.js",
        {"X-Sandbox-Preview-Token": token, "Service-Worker": "script"},
    )
    assert status == 403 and b"owned by the sandbox" not in body and b"service worker" in body
    assert_locked(headers)
    status, _, body = all_headers(
        preview_server,
        jupyter,
        f"{path_of(app_sandbox)}/sw.js",
        {"X-Sandbox-Preview-Token": token, "Sec-Fetch-Dest": "serviceworker"},
    )
    assert status == 403 and b"owned by the sandbox" not in body
    # On its own origin the app is a site of its own: its service worker is its business.
    status, _, body = all_headers(
        preview_server,
        host_of(preview_server, app_sandbox),
        "/sw.js",
        {"X-Sandbox-Preview-Token": token, "Service-Worker": "script"},
    )
    assert status == 200 and b"owned by the sandbox" in body


def browser(playwright):
    return launch_chromium(playwright)


def log_in(page, server: Server, jupyter: str) -> dict[str, str]:
    """Log in to Jupyter in this browser as a user does (token once, then cookies); Jupyter's cookies."""
    page.goto(f"{jupyter}/login")  # renders a form: Jupyter sets its _xsrf cookie
    page.goto(f"{jupyter}/api/status?token={server.token}")  # the token logs the browser in (a cookie)
    host = jupyter.split("//")[1].split(":")[0]
    cookies = {c["name"]: c["value"] for c in page.context.cookies() if c["domain"] == host}
    assert "_xsrf" in cookies and any(name.startswith("username-") for name in cookies), cookies
    return cookies


def logged_in(page, jupyter: str) -> bool:
    """Whether the browser's cookies still act as the user (no token in this request)."""
    other = page.context.new_page()
    try:
        response = other.goto(f"{jupyter}/api/contents")
        return response is not None and response.status == 200 and '"content"' in response.text()
    finally:
        other.close()


def test_in_chromium_a_path_form_page_cannot_change_jupyters_state(preview_server: Server, app_sandbox: str) -> None:
    """The app's headers and its script both try: Set-Cookie for _xsrf and the login cookie (Path=/,
    Domain=, __Host-), Clear-Site-Data, a service worker, storage, Jupyter's API with credentials."""
    from playwright.sync_api import sync_playwright

    token = link(preview_server, app_sandbox)["token"]
    jupyter = f"http://127.0.0.1:{preview_server.port}"
    prefix = path_of(app_sandbox)
    terminals_before = preview_server.request("GET", "/api/terminals")[1]
    with sync_playwright() as playwright:
        chromium = browser(playwright)
        try:
            page = chromium.new_context().new_page()
            before = log_in(page, preview_server, jupyter)
            login = next(name for name in before if name.startswith("username-"))
            page.goto(f"{jupyter}{prefix}/attack?login={login}&sw={prefix}/sw.js&scope={prefix}/&token={token}")
            assert page.text_content("#title") == "attack"
            page.wait_for_function("() => window.finished === true", timeout=20000)
            results = page.evaluate("() => window.results")
            after = {c["name"]: c["value"] for c in page.context.cookies() if c["domain"] == "127.0.0.1"}
            assert {k: v for k, v in after.items() if k != "jupyter-sandbox-preview"} == before, (before, after)
            assert logged_in(page, jupyter)
            # The page's script lives in an opaque origin: no cookie, no storage, no service worker,
            # and Jupyter's API answers it nothing.
            assert results["cookie_write"].startswith("refused") and results["cookie_read"].startswith("refused"), (
                results
            )
            assert results["storage"].startswith("refused") and results["service_worker"].startswith("refused"), results
            assert not results["contents"].startswith("200"), results
            # What the README says the path form cannot do: from an opaque origin the browser sends the
            # preview's (SameSite) cookie with no request of the page, so only its own address loads.
            assert results["own_websocket"] == "refused" and results["own_image"] == "refused", results
            assert preview_server.request("GET", "/api/terminals")[1] == terminals_before
            # Even a page of the Jupyter origin cannot get a service worker out of a path-form preview.
            page.goto(f"{jupyter}/api/status")
            for scope in (f"{prefix}/", "/"):
                outcome = page.evaluate(
                    """async ([script, scope]) => {
                    try { await navigator.serviceWorker.register(script, {scope}); return 'registered'; }
                    catch (e) { return 'refused: ' + e.name; } }""",
                    [f"{prefix}/sw.js", scope],
                )
                assert outcome.startswith("refused"), (scope, outcome)
            assert page.evaluate("async () => (await navigator.serviceWorker.getRegistrations()).length") == 0
            # A refresh or redirect the app sends cannot take the browser to Jupyter's /logout.
            page.goto(
                f"{jupyter}{prefix}/answer?"
                + answer_query(200, ["Refresh: 0; url=/logout"], "<p id=t>refresh</p>", "text/html")
            )
            page.wait_for_timeout(1000)
            page.goto(f"{jupyter}{prefix}/answer?" + answer_query(302, [f"Location: {jupyter}/logout"]))
            assert "/logout" not in page.url or page.url.startswith(f"{jupyter}{prefix}/")
            assert logged_in(page, jupyter)
            after = {c["name"]: c["value"] for c in page.context.cookies() if c["domain"] == "127.0.0.1"}
            assert {k: v for k, v in after.items() if k != "jupyter-sandbox-preview"} == before
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def hub_server(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Jupyter server as a hub runs it: at hub.jupyter.test, previews at *.preview.jupyter.test (the
    browser maps *.jupyter.test to this machine's loopback), so an app could name the parent domain."""
    from conftest import start_jupyter_server

    server, process = start_jupyter_server(
        tmp_path_factory.mktemp("hub-root"),
        [
            "--ServerApp.allow_remote_access=True",
            "--SandboxService.path_form_previews=False",
            "--SandboxService.preview_url_template=http://{port}-{sandbox_id}.preview.jupyter.test:{server_port}/",
        ],
    )
    yield server
    process.terminate()
    process.wait(timeout=30)


def test_in_chromium_an_own_origin_app_cannot_reach_jupyters_cookies(hub_server: Server, app_sandbox: str) -> None:
    """JupyterLab at hub.jupyter.test, the preview at 3000-ID.preview.jupyter.test: an app cookie with
    Domain=jupyter.test would be sent to Jupyter too (a chosen _xsrf), and Clear-Site-Data "cookies" would
    clear the whole registrable domain (the login). The proxy keeps cookies host-only and drops the latter."""
    from playwright.sync_api import sync_playwright

    status, answer = hub_server.request("POST", f"{API}/sandboxes/{app_sandbox}/previews", {"port": APP_PORT})
    assert status == 201 and ".preview.jupyter.test:" in answer["url"], answer
    jupyter = f"http://hub.jupyter.test:{hub_server.port}"
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright, ["--host-resolver-rules=MAP *.jupyter.test 127.0.0.1"])
        try:
            page = chromium.new_context().new_page()
            before = log_in(page, hub_server, jupyter)
            login = next(name for name in before if name.startswith("username-"))
            # Without Clear-Site-Data this time: it would clear the tossed cookie along with the app's.
            attack = (
                f"attack?login={login}&sw=sw.js&scope=/&clear=no&"
                f"extra=_xsrf%3Dtossed%3B%20Domain%3Djupyter.test%3B%20Path%3D%2F&"
                f"extra={login}%3D%3B%20Domain%3D.jupyter.test%3B%20Path%3D%2F%3B%20Max-Age%3D0&"
            )
            page.goto(answer["browser_url"].replace("?", "?" + attack.split("?", 1)[1]).replace("/?", "/attack?"))
            page.wait_for_function("() => window.finished === true", timeout=20000)
            results = page.evaluate("() => window.results")
            sent_to_jupyter = {c["name"]: c["value"] for c in page.context.cookies(jupyter)}
            assert sent_to_jupyter == before, (before, sent_to_jupyter)
            assert logged_in(page, jupyter)
            preview = answer["url"].rstrip("/")
            app_cookies = {c["name"]: c for c in page.context.cookies(preview)}
            assert app_cookies["app_wide"]["value"] == "1"  # the app's own cookie, on its own origin
            assert app_cookies["jupyter-sandbox-preview"]["value"] == answer["token"]  # not replaced
            assert all(not c["domain"].startswith(".") for c in app_cookies.values()), app_cookies
            assert "_xsrf=from-script" in results["cookie_read"]  # script on its own origin, for itself only
            # On its own origin a page's requests carry the preview cookie: its websocket (Origin checked)
            # and its images work.
            assert results["own_websocket"] == "open: mine" and results["own_image"] == "loaded", results
        finally:
            chromium.close()


def ws_status(server: Server, host: str, path: str, headers: dict) -> int:
    async def attempt() -> int:
        try:
            connection = await websocket_connect(
                HTTPRequest(f"ws://127.0.0.1:{server.port}{path}", headers={"Host": host, **headers})
            )
        except HTTPClientError as exc:
            return exc.code
        await connection.write_message("ping")
        assert await connection.read_message() == "ping"
        connection.close()
        return 101

    return asyncio.run(attempt())


def test_websockets_open_only_from_the_previews_own_pages(preview_server: Server, app_sandbox: str) -> None:
    token = link(preview_server, app_sandbox)["token"]
    host = host_of(preview_server, app_sandbox)
    auth = {"X-Sandbox-Preview-Token": token}
    assert ws_status(preview_server, host, "/ws-any", auth) == 101  # not a browser: no Origin
    assert ws_status(preview_server, host, "/ws-any", {**auth, "Origin": f"http://{host}"}) == 101
    assert ws_status(preview_server, host, "/ws-any", {**auth, "Origin": f"HTTP://{host.upper()}"}) == 101
    # The scheme is not compared (a TLS-terminating proxy may stand in front); host and port are.
    assert ws_status(preview_server, host, "/ws-any", {**auth, "Origin": f"https://{host}"}) == 101
    for foreign in (
        f"http://127.0.0.1:{preview_server.port}",
        f"http://localhost:{preview_server.port}",
        f"http://{host_of(preview_server, app_sandbox, WIDE_PORT)}",
        f"http://{APP_PORT}-{app_sandbox}.localhost:1",
        "null",
        "http://elsewhere.example",
        f"http://{host}.elsewhere.example",
        f"file://{host}",
        f"http://{host}@elsewhere.example",
        f"http://{host.split(':')[0]}",
    ):
        assert ws_status(preview_server, host, "/ws-any", {**auth, "Origin": foreign}) == 403, foreign
    jupyter = f"127.0.0.1:{preview_server.port}"
    path = f"{path_of(app_sandbox)}/ws-any"
    # The path form's pages have an opaque origin (CSP sandbox): their websockets say Origin: null.
    assert ws_status(preview_server, jupyter, path, {**auth, "Origin": "null"}) == 101
    for foreign in (f"http://{jupyter}", f"http://{host}", "http://elsewhere.example"):
        assert ws_status(preview_server, jupyter, path, {**auth, "Origin": foreign}) == 403, foreign


def test_in_chromium_a_page_on_another_port_cannot_hijack_the_previews_websocket(
    preview_server: Server, app_sandbox: str
) -> None:
    """Cookies ignore ports: a page at 3000-ID.localhost:OTHER (any other server on this machine) is
    same-site with the preview and its websocket carries the preview cookie. The Origin check stops it."""
    from playwright.sync_api import sync_playwright

    answer = link(preview_server, app_sandbox)
    preview_host = f"{APP_PORT}-{app_sandbox}.localhost"
    target = f"ws://{preview_host}:{preview_server.port}/ws-any"
    probe = (
        "<!doctype html><script>window.outcome = new Promise(done => { const ws = new WebSocket("
        + json.dumps(target)
        + "); ws.onopen = () => { ws.send('stolen'); }; ws.onmessage = e => done('open: ' + e.data);"
        " ws.onerror = () => done('refused'); });</script>"
    ).encode()
    with host_http_server(probe) as other_port, sync_playwright() as playwright:
        chromium = browser(playwright)
        try:
            page = chromium.new_context().new_page()
            page.goto(answer["browser_url"] + "")  # the user opens the preview: its cookie is set
            page.goto(f"{answer['url']}answer?" + answer_query(200, [], "<p id=own>own page</p>", "text/html"))
            own = page.evaluate(
                """(url) => new Promise(done => { const ws = new WebSocket(url);
                ws.onopen = () => ws.send('mine'); ws.onmessage = e => done('open: ' + e.data);
                ws.onerror = () => done('refused'); })""",
                target,
            )
            assert own == "open: mine"  # the preview's own page
            page.goto(f"http://{preview_host}:{other_port}/")
            assert page.evaluate("() => window.outcome") == "refused"
        finally:
            chromium.close()


def test_a_server_with_host_routing_can_turn_the_path_form_off(hub_server: Server, app_sandbox: str) -> None:
    token = tokens.mint(app_sandbox, APP_PORT)[0]
    status, _headers, body = all_headers(
        hub_server, f"127.0.0.1:{hub_server.port}", f"{path_of(app_sandbox)}/echo", {"X-Sandbox-Preview-Token": token}
    )
    assert status == 404 and b"own origins only" in body and b'"headers"' not in body
    status, _, body = all_headers(
        hub_server,
        f"{APP_PORT}-{app_sandbox}.preview.jupyter.test:{hub_server.port}",
        "/echo",
        {"X-Sandbox-Preview-Token": token},
    )
    assert status == 200 and b'"headers"' in body
