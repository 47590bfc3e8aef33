"""The REST API under /sandbox/api, against a real Jupyter Server and real sandboxes."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import inspect
import io
import json
import re
import tarfile
import time
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import (
    API,
    SandboxKernel,
    Server,
    box,
    git_http_server,
    host_http_server,
    network_subnet,
    q,
    start_jupyter_server,
    wait_until,
)
from harness import drain
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager
from jupyter_sandbox.server_extension import handlers as handler_module
from jupyter_sandbox.server_extension.handlers.fallback import NotFoundHandler
from jupyter_sandbox.server_extension.openapi import openapi_document

NETWORK = "jupyter-sandbox-apitest"
GIT_USER, GIT_TOKEN = "alice", "s3cr3t-token-0123456789"


@pytest.fixture(scope="module")
def git_server(docker_backend: DockerBackend, sandbox_image: str) -> Iterator[str]:
    with git_http_server(docker_backend, sandbox_image, NETWORK, GIT_USER, GIT_TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def api_server(git_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("log") / "server.log"
    server, process = start_jupyter_server(
        tmp_path_factory.mktemp("root"),
        # The git server is reached by its name, and DNS in allow mode is the operator's choice.
        [
            f"--SandboxManager.network_name={NETWORK}",
            "--SandboxManager.dns_in_allow_mode=True",
            "--SandboxService.max_upload_size=1200m",
            "--SandboxService.max_multipart_size=1m",
        ],
        log=log,
    )
    server.log = log
    yield server
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def sandbox(api_server: Server, docker_backend: DockerBackend, git_server: str) -> Iterator[str]:
    # The git server sits on a private address, which the default egress policy blocks: allow its subnet.
    subnet = network_subnet(docker_backend, NETWORK)
    status, created = api_server.request(
        "POST",
        f"{API}/sandboxes",
        {"memory": "1g", "env": {"WHO": "api"}, "network": {"mode": "allow", "cidrs": [subnet]}},
    )
    assert status == 201, created
    yield created["id"]
    if api_server.request("DELETE", f"{API}/sandboxes/{created['id']}")[0] != 204:
        SandboxManager(backend=docker_backend).remove(created["id"])


# -- auth ------------------------------------------------------------------------------------


def jupyter_authenticated_routes() -> list:
    """The REST routes. (The preview path form is not among them: it takes preview tokens, not
    Jupyter's login, and tests/test_previews.py checks it refuses requests without a valid token.)"""
    return handler_module.api_routes("/", SimpleNamespace(manager=None))


def test_every_handler_method_is_authenticated_then_authorized() -> None:
    for _, handler, _ in jupyter_authenticated_routes():
        source = inspect.getsource(handler)
        for method in re.findall(r"\n    (?:async )?def (get|post|put|delete|patch|head)\(", source):
            pattern = rf"    @web\.authenticated\n    @authorized\n    (?:async )?def {method}\("
            assert re.search(pattern, source), f"{handler.__name__}.{method} lacks @web.authenticated + @authorized"


ROUTES_TO_PROBE = [
    ("GET", "/sandboxes"),
    ("POST", "/sandboxes"),
    ("GET", "/sandboxes/0123456789ab"),
    ("DELETE", "/sandboxes/0123456789ab"),
    ("POST", "/sandboxes/0123456789ab/start"),
    ("GET", "/sandboxes/0123456789ab/files?path=x"),
    ("PUT", "/sandboxes/0123456789ab/files/content?path=x"),
    ("GET", "/sandboxes/0123456789ab/files/content?path=x"),
    ("POST", "/sandboxes/0123456789ab/process/exec"),
    ("POST", "/sandboxes/0123456789ab/git/clone"),
    ("GET", "/sandboxes/0123456789ab/git/status"),
    ("GET", "/sandboxes/0123456789ab/sessions"),
    ("GET", "/openapi.json"),
]


@pytest.mark.parametrize("method, route", ROUTES_TO_PROBE)
def test_no_auth_is_refused(api_server: Server, method: str, route: str) -> None:
    status, body = api_server.request(method, API + route, raw=b"{}" if method in ("POST", "PUT") else None, auth=False)
    assert status == 403, (status, body)


def login_cookie(server: Server) -> tuple[str, str]:
    """Log in with the token the way a browser does; (cookie header, xsrf value)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/login")
    response = connection.getresponse()
    response.read()
    cookies = {c.split("=", 1)[0]: c.split("=", 1)[1].split(";")[0] for c in response.headers.get_all("Set-Cookie")}
    xsrf = cookies["_xsrf"]
    connection.request(
        "POST",
        "/login",
        body=urllib.parse.urlencode({"password": server.token, "_xsrf": xsrf}),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"_xsrf={xsrf}"},
    )
    response = connection.getresponse()
    response.read()
    for cookie in response.headers.get_all("Set-Cookie") or []:
        name, value = cookie.split(";")[0].split("=", 1)
        cookies[name] = value
    return "; ".join(f"{k}={v}" for k, v in cookies.items()), xsrf


def test_cookie_requests_need_xsrf(api_server: Server) -> None:
    cookie, xsrf = login_cookie(api_server)
    status, _ = api_server.request("GET", f"{API}/sandboxes", auth=False, headers={"Cookie": cookie})
    assert status == 200
    status, body = api_server.request("POST", f"{API}/sandboxes", {"cpu": 0}, auth=False, headers={"Cookie": cookie})
    assert status == 403 and "XSRF" in json.dumps(body).upper()
    status, body = api_server.request(
        "POST", f"{API}/sandboxes", {"cpu": 0}, auth=False, headers={"Cookie": cookie, "X-XSRFToken": xsrf}
    )
    assert status == 400 and "cpu" in body["message"]  # got past XSRF to the validation


def test_websocket_without_auth_is_refused_before_upgrade(api_server: Server, sandbox: str) -> None:
    async def attempt() -> int:
        try:
            await websocket_connect(f"ws://127.0.0.1:{api_server.port}{box(sandbox, '/pty')}")
        except HTTPClientError as exc:
            return exc.code
        return 101

    assert asyncio.run(attempt()) == 403


def test_openapi_matches_the_handlers(api_server: Server) -> None:
    status, document = api_server.request("GET", f"{API}/openapi.json")
    assert status == 200 and document == json.loads(json.dumps(openapi_document()))
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    served = set()
    for pattern, handler, _ in jupyter_authenticated_routes():
        if handler is NotFoundHandler:
            continue  # the catch-all that answers unknown API paths with a JSON 404 is no operation
        methods = [m.upper() for m in ("get", "post", "put", "delete", "patch") if m in vars(handler)]
        alternatives = re.findall(r"\(\?P<(\w+)>([a-z|]+)\)", pattern)
        expansions = [pattern]
        for name, options in alternatives:
            if name in ("action", "operation"):
                expansions = [
                    e.replace(f"(?P<{name}>{options})", option) for e in expansions for option in options.split("|")
                ]
        for path in expansions:
            template = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)
            for method in methods:
                served.add((template, method))
    # Operation handlers serve several names; a name/method pair the handler refuses with 405 is not served.
    refused = {
        ("/sandbox/api/sandboxes/{sandbox_id}/git/status", "POST"),
        ("/sandbox/api/sandboxes/{sandbox_id}/git/status", "DELETE"),
    }
    refused |= {
        (f"/sandbox/api/sandboxes/{{sandbox_id}}/git/{op}", m)
        for op in ("clone", "checkout", "add", "commit", "push", "pull")
        for m in ("GET", "DELETE")
    }
    refused |= {
        (f"/sandbox/api/sandboxes/{{sandbox_id}}/files/{op}", "GET")
        for op in ("folder", "move", "permissions", "replace")
    }
    refused |= {(f"/sandbox/api/sandboxes/{{sandbox_id}}/files/{op}", "POST") for op in ("search", "find")}
    assert documented == served - refused


def every_operation() -> list[tuple[str, str, dict]]:
    return [
        (path, method.upper(), spec)
        for path, ops in openapi_document()["paths"].items()
        for method, spec in ops.items()
    ]


@pytest.mark.parametrize("path, method, spec", every_operation(), ids=lambda v: v if isinstance(v, str) else "")
def test_unknown_fields_are_a_400_that_names_them_on_every_route(
    api_server: Server, path: str, method: str, spec: dict
) -> None:
    """A misspelt field is refused, never ignored: query parameters, JSON bodies, nested objects
    and form fields, on every route the API documents. (A sandbox that does not exist: the check
    comes before anything is looked up or done.)"""
    route = (
        path.replace("{sandbox_id}", "0123456789ab")
        .replace("{session_id}", "nosuch")
        .replace("{command_id}", "abc")
        .replace("{pty_id}", "nosuch")
        .replace("{kernel_id}", "no-such-kernel")
    )
    status, body = api_server.request(method, route + "?colour=red", raw=b"" if method != "GET" else None)
    message = body["message"] if isinstance(body, dict) else body.decode()  # the terminal's page is HTML
    assert status == 400 and "unknown query parameters: colour" in message, (status, body)
    content = spec.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        schema = content["application/json"]["schema"]
        status, body = api_server.request(method, route, {"colour": "red"})
        assert status == 400 and "unknown fields: colour" in body["message"], (status, body)
        for name, field in schema.get("properties", {}).items():
            if field.get("type") == "object" and "properties" in field:  # nested objects are closed too
                status, body = api_server.request(method, route, {name: {"colour": "red"}})
                assert status == 400 and f"unknown fields: {name}.colour" in body["message"], (status, body)
    elif "multipart/form-data" in content:
        boundary = "b0undary"
        form = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="colour"\r\n\r\nred\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nA\r\n'
            f"--{boundary}--\r\n"
        ).encode()
        status, body = api_server.request(
            method, route, raw=form, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        # The sandbox is looked up before the body is read; the field is refused once there is one.
        assert status == 404, (status, body)
    elif method in ("POST", "DELETE", "PATCH"):
        status, body = api_server.request(method, route, {"colour": "red"})
        assert status == 400 and "unknown fields: colour" in body["message"] and "no body" in body["message"], (
            status,
            body,
        )


def test_a_misspelt_field_is_refused_not_ignored(api_server: Server, sandbox: str) -> None:
    """The case that hung: `async` for `run_async` ran the command in the foreground and waited."""
    api_server.request("POST", box(sandbox, "/sessions"), {"id": "misspelt"})
    status, body = api_server.request(
        "POST", box(sandbox, "/sessions/misspelt/commands"), {"command": "sleep 100", "async": True}, timeout=10
    )
    assert status == 400 and "unknown fields: async" in body["message"] and "run_async" in body["message"], body
    boundary = "b0undary"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="folder"\r\n\r\nx\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nA\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    status, body = api_server.request(
        "POST",
        box(sandbox, "/files/upload"),
        raw=form,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 400 and "unknown form fields: folder" in body["message"], body
    status, body = api_server.request("GET", box(sandbox, "/files") + q(path="", recursve="1"))
    assert status == 400 and "recursve" in body["message"] and "recursive" in body["message"], body
    # JupyterLab adds a bare number to every GET so that no cache answers it: that is no field.
    status, body = api_server.request("GET", box(sandbox, "/files") + q(path="") + "&1796125703281")
    assert status == 200, body
    status, body = api_server.request("GET", box(sandbox, "/files") + q(path="") + "&1796125703281=1")
    assert status == 400 and "1796125703281" in body["message"], body
    api_server.request("DELETE", box(sandbox, "/sessions/misspelt"))


# -- sandboxes -------------------------------------------------------------------------------


def test_sandbox_lifecycle(api_server: Server) -> None:
    status, created = api_server.request(
        "POST", f"{API}/sandboxes", {"cpu": 0.5, "memory": "512m", "labels": {"team": "x"}}
    )
    assert status == 201, created
    sandbox_id = created["id"]
    try:
        assert created["state"] == "running"
        status, listed = api_server.request("GET", f"{API}/sandboxes")
        assert sandbox_id in [s["id"] for s in listed["sandboxes"]]
        status, info = api_server.request("GET", box(sandbox_id))
        assert info["limits"]["cpu"] == 0.5 and info["limits"]["memory"] == 512 * 1024**2
        assert info["state"] == "running" and info["spec"]["memory"] == 512 * 1024**2 and info["created"]
        before = info["last_activity"]
        api_server.request("GET", box(sandbox_id, "/files"))
        assert api_server.request("GET", box(sandbox_id))[1]["last_activity"] > before
        assert api_server.request("POST", box(sandbox_id, "/stop"))[1]["state"] == "exited"
        status, body = api_server.request("GET", box(sandbox_id, "/files"))
        assert status == 409 and "start it first" in body["message"]
        assert api_server.request("POST", box(sandbox_id, "/start"))[1]["state"] == "running"
        assert api_server.request("GET", box(sandbox_id, "/files"))[0] == 200
    finally:
        assert api_server.request("DELETE", box(sandbox_id))[0] == 204
    status, body = api_server.request("GET", box(sandbox_id))
    assert status == 404 and "no sandbox" in body["message"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"cpu": -1}, "cpu"),
        ({"cpu": "two"}, "cpu must be a number"),
        ({"memory": "lots"}, "memory"),
        ({"memory": "100g"}, "above the operator's maximum"),
        ({"image": "evil:latest"}, "not allowed"),
        ({"env": {"A": 1}}, "env must map"),
        ({"labels": {"io.jupyter-sandbox.id": "x"}}, "reserved"),
        ({"colour": "red"}, "unknown fields: colour"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_sandbox_specs(api_server: Server, body: object, message: str) -> None:
    status, answer = api_server.request("POST", f"{API}/sandboxes", body)
    assert status == 400 and message in answer["message"], answer


def test_unknown_sandbox_is_404(api_server: Server) -> None:
    for method, route in (("GET", ""), ("DELETE", ""), ("GET", "/files"), ("POST", "/process/exec")):
        status, body = api_server.request(
            method, box("0123456789ab", route), {"command": "true"} if method == "POST" else None
        )
        assert status == 404 and "no sandbox" in body["message"]


# -- files -----------------------------------------------------------------------------------


def put(server: Server, sandbox_id: str, path: str, data: bytes) -> tuple[int, object]:
    return server.request(
        "PUT",
        box(sandbox_id, "/files/content" + q(path=path)),
        raw=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def test_file_operations(api_server: Server, sandbox: str) -> None:
    assert api_server.request("POST", box(sandbox, "/files/folder"), {"path": "work/sub", "mode": "750"})[0] == 201
    status, answer = put(api_server, sandbox, "work/hello.txt", b"hello\nworld\n")
    assert status == 200 and answer["size"] == 12
    status, listing = api_server.request("GET", box(sandbox, "/files" + q(path="work")))
    assert {e["name"]: e["type"] for e in listing["entries"]} == {"sub": "directory", "hello.txt": "file"}
    status, info = api_server.request("GET", box(sandbox, "/files/info" + q(path="work/sub")))
    assert info["mode"] == "750" and info["uid"] == 1000
    status, content = api_server.request("GET", box(sandbox, "/files/content" + q(path="work/hello.txt")))
    assert content == b"hello\nworld\n"
    assert (
        api_server.request(
            "POST", box(sandbox, "/files/move"), {"source": "work/hello.txt", "destination": "work/sub/moved.txt"}
        )[0]
        == 200
    )
    status, info = api_server.request(
        "POST", box(sandbox, "/files/permissions"), {"path": "work/sub/moved.txt", "mode": "600"}
    )
    assert info["mode"] == "600"
    status, body = api_server.request(
        "POST", box(sandbox, "/files/permissions"), {"path": "work/sub/moved.txt", "owner": "root"}
    )
    assert status == 403 and "may not" in body["message"]
    status, found = api_server.request("GET", box(sandbox, "/files/search" + q(path="work", pattern="*.txt")))
    assert found["files"] == ["/home/sandbox/work/sub/moved.txt"]
    status, found = api_server.request("GET", box(sandbox, "/files/find" + q(path="work", pattern="wor.d")))
    assert found["matches"] == [{"file": "/home/sandbox/work/sub/moved.txt", "line": 2, "content": "world"}]
    status, replaced = api_server.request(
        "POST",
        box(sandbox, "/files/replace"),
        {"files": ["work/sub/moved.txt", "work/none.txt"], "pattern": "world", "new_value": "there"},
    )
    assert replaced["results"][0]["replacements"] == 1 and replaced["results"][1]["success"] is False
    assert (
        api_server.request("GET", box(sandbox, "/files/content" + q(path="work/sub/moved.txt")))[1] == b"hello\nthere\n"
    )
    status, archive = api_server.request("GET", box(sandbox, "/files/content" + q(path="work")))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert "work/sub/moved.txt" in tar.getnames()
    status, archive = api_server.request("GET", box(sandbox, "/files/content" + q(path="work", format="zip")))
    assert zipfile.ZipFile(io.BytesIO(archive)).read("work/sub/moved.txt") == b"hello\nthere\n"
    status, body = api_server.request("DELETE", box(sandbox, "/files" + q(path="work")))
    assert status == 409 and "recursive" in body["message"]
    for precious in ("/", ".", "/home/sandbox", "rootlink-none/.."[:0] or "/home/sandbox/"):
        status, body = api_server.request("DELETE", box(sandbox, "/files" + q(path=precious, recursive="1")))
        assert status == 400 and "refusing" in body["message"], (precious, body)
    assert api_server.request("DELETE", box(sandbox, "/files" + q(path="work", recursive="1")))[0] == 204
    assert api_server.request("GET", box(sandbox, "/files/info" + q(path="work")))[0] == 404


def test_multipart_upload(api_server: Server, sandbox: str) -> None:
    boundary = "----sandboxtest"
    parts = []
    for name, data in (("a.txt", b"AAA"), ("b.txt", b"BBBB")):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: text/plain\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\nmulti\r\n'.encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    status, answer = api_server.request(
        "POST",
        box(sandbox, "/files/upload"),
        raw=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 201, answer
    assert sorted(f["path"] for f in answer["files"]) == ["/home/sandbox/multi/a.txt", "/home/sandbox/multi/b.txt"]
    # Refused on its Content-Length, before the body is sent.
    connection = http.client.HTTPConnection("127.0.0.1", api_server.port, timeout=30)
    connection.putrequest("POST", box(sandbox, "/files/upload"))
    for key, value in {
        "Authorization": f"token {api_server.token}",
        "Content-Length": str(2 * 1024 * 1024),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }.items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"use PUT" in response.read()


@pytest.mark.parametrize(
    "path, message",
    [
        ("../etc/passwd", "'..'"),
        ("a/../../b", "'..'"),
        ("a\x00b", "control characters"),
        ("a\nb", "control characters"),
        ("-rf", "starting with '-'"),
        ("x" * 4000, "too long"),
    ],
)
def test_bad_paths_are_refused(api_server: Server, sandbox: str, path: str, message: str) -> None:
    for method, route in (("GET", "/files/info"), ("GET", "/files/content"), ("DELETE", "/files")):
        status, body = api_server.request(method, box(sandbox, route + q(path=path)))
        assert status == 400 and message in body["message"], (route, body)
    status, body = api_server.request("POST", box(sandbox, "/files/move"), {"source": path, "destination": "x"})
    assert status == 400


def test_invalid_utf8_in_a_path_is_refused(api_server: Server, sandbox: str) -> None:
    status, _ = api_server.request("GET", box(sandbox, "/files/info?path=%ff%fe"))
    assert status == 400


def test_operations_stay_inside_the_container(api_server: Server, sandbox: str) -> None:
    import socket

    status, result = api_server.request("POST", box(sandbox, "/process/exec"), {"command": "ln -sfn / rootlink"})
    assert result["exit_code"] == 0
    status, hostname = api_server.request("GET", box(sandbox, "/files/content" + q(path="rootlink/etc/hostname")))
    assert status == 200 and hostname.decode().strip() != socket.gethostname()
    assert hostname.decode().startswith("jupyter-sandbox-")
    status, listing = api_server.request("GET", box(sandbox, "/files" + q(path="/")))
    assert "opt" in [e["name"] for e in listing["entries"]]
    status, _body = api_server.request("GET", box(sandbox, "/files/content" + q(path="/etc/shadow")))
    assert status == 403


def test_catastrophic_regex_is_bounded(api_server: Server, sandbox: str) -> None:
    put(api_server, sandbox, "redos.txt", b"a" * 40 + b"!\n")
    started = time.monotonic()
    status, found = api_server.request("GET", box(sandbox, "/files/find" + q(path=".", pattern="(a+)+$")))
    assert status == 200 and found["timed_out"] is True
    assert time.monotonic() - started < 30
    status, body = api_server.request("GET", box(sandbox, "/files/find" + q(path=".", pattern="(unclosed")))
    assert status == 400 and "regular expression" in body["message"]


def test_upload_over_the_cap_is_refused_early(api_server: Server, sandbox: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", api_server.port, timeout=30)
    connection.putrequest("PUT", box(sandbox, "/files/content" + q(path="too-big.bin")))
    connection.putheader("Authorization", f"token {api_server.token}")
    connection.putheader("Content-Length", str(5 * 1024**3))
    connection.endheaders()
    response = connection.getresponse()  # before any of the body was sent
    assert response.status == 413 and b"larger than the limit" in response.read()
    assert api_server.request("GET", box(sandbox, "/files/info" + q(path="too-big.bin")))[0] == 404


def server_peak_rss(server: Server) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_gigabyte_streams_through_with_flat_memory(api_server: Server, sandbox: str) -> None:
    size, chunk = 1024**3, bytes(range(256)) * 4096
    before = server_peak_rss(api_server)
    digest = hashlib.sha256()
    connection = http.client.HTTPConnection("127.0.0.1", api_server.port, timeout=300)
    connection.putrequest("PUT", box(sandbox, "/files/content" + q(path="big.bin")))
    connection.putheader("Authorization", f"token {api_server.token}")
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    for _ in range(size // len(chunk)):
        connection.send(chunk)
        digest.update(chunk)
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["size"] == size
    connection.request(
        "GET",
        box(sandbox, "/files/content" + q(path="big.bin")),
        headers={"Authorization": f"token {api_server.token}"},
    )
    response = connection.getresponse()
    back = hashlib.sha256()
    received = drain(response, back.update)
    assert received == size and back.hexdigest() == digest.hexdigest()
    assert server_peak_rss(api_server) - before < 150 * 1024**2
    api_server.request("DELETE", box(sandbox, "/files" + q(path="big.bin")))


# -- processes -------------------------------------------------------------------------------


def test_exec(api_server: Server, sandbox: str) -> None:
    status, result = api_server.request(
        "POST",
        box(sandbox, "/process/exec"),
        {"command": "echo $WHO $EXTRA; pwd; echo err >&2; exit 4", "cwd": "/tmp", "env": {"EXTRA": "more"}},
    )
    assert result == {"exit_code": 4, "timed_out": False, "stdout": "api more\n/tmp\n", "stderr": "err\n"}
    started = time.monotonic()
    status, result = api_server.request(
        "POST", box(sandbox, "/process/exec"), {"command": "sleep 100 & sleep 100; echo never", "timeout": 1}
    )
    assert result["timed_out"] is True and "never" not in result["stdout"]
    assert time.monotonic() - started < 20
    status, result = api_server.request("POST", box(sandbox, "/process/exec"), {"command": "ps -eo cmd"})
    assert status == 200, result
    assert "sleep 100" not in result["stdout"]  # the whole process group went
    for bad in (
        {"command": ""},
        {"command": "true", "timeout": -1},
        {"command": "true", "env": {"A": 1}},
        {"command": ["ls"]},
        {"command": "true", "cwd": "../x"},
    ):
        assert api_server.request("POST", box(sandbox, "/process/exec"), bad)[0] == 400


def test_sessions_commands_logs_input_kill(api_server: Server, sandbox: str) -> None:
    status, _session = api_server.request("POST", box(sandbox, "/sessions"), {"id": "build"})
    assert status == 201
    status, command = api_server.request(
        "POST",
        box(sandbox, "/sessions/build/commands"),
        {"command": "echo start; read name; echo hello $name; echo oops >&2", "run_async": True},
    )
    assert status == 202 and command["running"] is True
    cid = command["id"]
    assert (
        api_server.request("POST", box(sandbox, f"/sessions/build/commands/{cid}/input"), {"data": "Ada\n"})[0] == 200
    )
    assert wait_until(
        lambda: (
            api_server.request("GET", box(sandbox, f"/sessions/build/commands/{cid}/logs"))[1].get("exit_code") == 0
        ),
        timeout=20,
    )
    status, logs = api_server.request("GET", box(sandbox, f"/sessions/build/commands/{cid}/logs"))
    assert logs["stdout"] == "start\nhello Ada\n" and logs["stderr"] == "oops\n"
    # Followed logs arrive as they are written.
    status, command = api_server.request(
        "POST",
        box(sandbox, "/sessions/build/commands"),
        {"command": "for i in 1 2 3; do echo $i; sleep 0.3; done", "run_async": True},
    )
    connection = http.client.HTTPConnection("127.0.0.1", api_server.port, timeout=30)
    connection.request(
        "GET",
        box(sandbox, f"/sessions/build/commands/{command['id']}/logs?follow=1"),
        headers={"Authorization": f"token {api_server.token}"},
    )
    response = connection.getresponse()
    lines = [json.loads(line) for line in response.read().decode().splitlines()]
    assert "".join(c.get("text", "") for c in lines if c.get("stream") == "stdout") == "1\n2\n3\n"
    assert lines[-1] == {"exit_code": 0}
    # Synchronous command, kill, session listing, delete.
    status, result = api_server.request("POST", box(sandbox, "/sessions/build/commands"), {"command": "echo sync"})
    assert status == 200 and result["stdout"] == "sync\n"
    status, command = api_server.request(
        "POST", box(sandbox, "/sessions/build/commands"), {"command": "sleep 300", "run_async": True}
    )
    api_server.request("POST", box(sandbox, f"/sessions/build/commands/{command['id']}/kill"))
    assert wait_until(
        lambda: (
            api_server.request("GET", box(sandbox, f"/sessions/build/commands/{command['id']}/logs"))[1].get(
                "exit_code"
            )
            is not None
        ),
        timeout=10,
    )
    status, listed = api_server.request("GET", box(sandbox, "/sessions"))
    assert [s["id"] for s in listed["sessions"]] == ["build"]
    assert api_server.request("DELETE", box(sandbox, "/sessions/build"))[0] == 204
    assert api_server.request("GET", box(sandbox, "/sessions/build"))[0] == 404
    assert api_server.request("POST", box(sandbox, "/sessions"), {"id": "bad id!"})[0] in (400, 404)


def test_terminal(api_server: Server, sandbox: str) -> None:
    async def session() -> str:
        request = HTTPRequest(
            f"ws://127.0.0.1:{api_server.port}{box(sandbox, '/pty')}?cols=100&rows=30",
            headers={"Authorization": f"token {api_server.token}"},
        )
        connection = await websocket_connect(request)
        await connection.write_message(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        await connection.write_message(json.dumps({"type": "input", "data": "stty size; echo sum=$((40+2))\n"}))
        seen = ""
        deadline = time.monotonic() + 20
        while "sum=42" not in seen and time.monotonic() < deadline:
            message = await asyncio.wait_for(connection.read_message(), timeout=20)
            if isinstance(message, bytes):
                seen += message.decode(errors="replace")
        await connection.write_message(json.dumps({"type": "kill"}))
        while True:
            message = await asyncio.wait_for(connection.read_message(), timeout=20)
            if message is None:
                break
            if isinstance(message, str):
                seen += message
        return seen

    seen = asyncio.run(session())
    assert "sum=42" in seen and "40 120" in seen and '"type": "exit"' in seen


# -- git -------------------------------------------------------------------------------------


def test_git_round_trip_with_credentials_never_stored(api_server: Server, sandbox: str, git_server: str) -> None:
    def git(method: str, operation: str, body: dict | None = None, **query: str) -> tuple[int, dict]:
        return api_server.request(method, box(sandbox, f"/git/{operation}" + (q(**query) if query else "")), body)

    status, body = git("POST", "clone", {"url": git_server, "path": "repo"})
    assert status == 400 and GIT_TOKEN not in json.dumps(body)
    # A process in the sandbox watches the process list while the clone runs: a session's command,
    # which keeps running (what a one-off exec leaves behind ends with it).
    api_server.request("POST", box(sandbox, "/sessions"), {"id": "ps-watch"})
    status, _ = api_server.request(
        "POST",
        box(sandbox, "/sessions/ps-watch/commands"),
        {"command": "for i in $(seq 100); do ps -eo args; sleep 0.05; done > /tmp/ps.log 2>&1", "run_async": True},
    )
    assert status == 202
    assert wait_until(
        lambda: api_server.request("GET", box(sandbox, "/files/content" + q(path="/tmp/ps.log")))[0] == 200, 30
    )
    status, body = git(
        "POST", "clone", {"url": git_server, "path": "repo", "username": GIT_USER, "password": GIT_TOKEN}
    )
    assert status == 200, body
    api_server.request("POST", box(sandbox, "/process/exec"), {"command": "printf 'one\\n' > repo/README"})
    status, state = git("GET", "status", path="repo")
    assert state["files"] == [{"path": "README", "index": "?", "worktree": "?", "staged": False, "untracked": True}]
    assert git("POST", "add", {"path": "repo", "files": ["README"]})[1]["files"][0]["staged"] is True
    status, commit = git(
        "POST", "commit", {"path": "repo", "message": "first", "author": "Ada", "email": "ada@example.org"}
    )
    assert status == 200 and re.fullmatch(r"[0-9a-f]{40}", commit["commit"])
    status, body = git("POST", "push", {"path": "repo", "username": GIT_USER, "password": GIT_TOKEN})
    assert status == 200, body
    status, branches = git("POST", "branches", {"path": "repo", "name": "feature"})
    assert set(branches["branches"]) >= {"feature"}
    assert git("POST", "checkout", {"path": "repo", "name": "feature"})[1]["current"] == "feature"
    git("POST", "checkout", {"path": "repo", "name": branches["current"]})
    assert "feature" not in git("DELETE", "branches", path="repo", name="feature")[1]["branches"]
    # A second clone pulls what the first pushed.
    status, _ = git("POST", "clone", {"url": git_server, "path": "repo2", "username": GIT_USER, "password": GIT_TOKEN})
    assert status == 200
    status, content = api_server.request("GET", box(sandbox, "/files/content" + q(path="repo2/README")))
    assert content == b"one\n"
    status, body = git("POST", "pull", {"path": "repo2", "username": GIT_USER, "password": GIT_TOKEN})
    assert status == 200, body
    status, body = git("POST", "pull", {"path": "repo2", "username": GIT_USER, "password": "wrong"})
    assert status == 400 and "wrong" not in json.dumps(body)

    # The token is nowhere: not in .git/config, not in the process list, not in the server log.
    for path in ("repo/.git/config", "repo2/.git/config", "/tmp/ps.log"):
        status, content = api_server.request("GET", box(sandbox, "/files/content" + q(path=path)))
        assert status == 200 and GIT_TOKEN.encode() not in content, path
    api_server.request("DELETE", box(sandbox, "/sessions/ps-watch"))
    status, result = api_server.request(
        "POST",
        box(sandbox, "/process/exec"),
        {"command": f"grep -r {GIT_TOKEN} /home/sandbox /tmp 2>/dev/null | head -1"},
    )
    assert result["stdout"] == ""
    assert GIT_TOKEN not in api_server.log.read_text(errors="replace")


@pytest.mark.parametrize(
    "operation, body, message",
    [
        ("clone", {"url": "ext::sh -c touch% /tmp/pwned"}, "only https://"),
        ("clone", {"url": "file:///etc"}, "only https://"),
        ("clone", {"url": "--upload-pack=touch /tmp/pwned"}, "only https://"),
        ("clone", {"url": "https://user:pw@example.invalid/r.git"}, "not in the URL"),
        ("clone", {"url": "http://example.invalid/r.git", "branch": "--output=x"}, "not an acceptable"),
        ("branches", {"path": "repo", "name": "-h"}, "not an acceptable"),
        ("branches", {"path": "repo", "name": "--output=x"}, "not an acceptable"),
        ("checkout", {"path": "repo", "name": "a..b"}, "not an acceptable"),
        ("add", {"path": "repo", "files": []}, "non-empty list"),
        ("commit", {"path": "repo", "message": "", "author": "a", "email": "b"}, "commit message"),
        ("commit", {"path": "repo", "message": "m", "author": "a\nb", "email": "b"}, "one-line"),
    ],
)
def test_bad_git_input(api_server: Server, sandbox: str, operation: str, body: dict, message: str) -> None:
    status, answer = api_server.request("POST", box(sandbox, f"/git/{operation}"), body)
    assert status == 400 and message in answer["message"], answer
    status, result = api_server.request("POST", box(sandbox, "/process/exec"), {"command": "ls /tmp/pwned x 2>&1"})
    assert "No such file" in result["stdout"]


def test_git_on_a_folder_that_is_not_a_repository(api_server: Server, sandbox: str) -> None:
    status, body = api_server.request("GET", box(sandbox, "/git/status" + q(path="/tmp")))
    assert status == 404 and "not a git repository" in body["message"]


def test_schemathesis_finds_no_server_error(api_server: Server, sandbox: str, tmp_path: Path) -> None:
    """Property-based requests from the OpenAPI document; none may get a 5xx.

    The document is pinned to the test's sandbox id so the requests reach past the lookup. Left out:
    creating and deleting sandboxes (real containers), and everything that runs commands or contacts a
    remote (exec, session commands, clone, push, pull), so fuzzed input never leaves this machine.
    """
    import subprocess
    import sys

    document = openapi_document()
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation["parameters"]:
                if parameter["name"] == "sandbox_id":
                    parameter["schema"] = {"type": "string", "enum": [sandbox]}
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(document))
    excluded = [
        r"^/sandbox/api/sandboxes$",
        r"/process/exec$",
        r"/commands",
        r"/git/(clone|push|pull)$",
        r"/pty$",
        r"/ptys/[^/]+/connect$",
        r"/kernel$",  # starts Jupyter kernels: tested in test_sdk.py
        # A kernel's sandbox (made, recreated, long-polled, a websocket): tested in test_remote_kernel.py
        r"^/sandbox/api/kernels/",
        r"/kernel/(events|restart|channels)$",
        r"^/sandbox/api/sandboxes/\{sandbox_id\}$",
        r"/(stop|start)$",
    ]
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        str(schema),
        "--url",
        api_server.base,
        "-H",
        f"Authorization: token {api_server.token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "15",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "60",
        "--generation-deterministic",
        "--no-color",
    ]
    command += ["--exclude-path-regex", "|".join(f"({pattern})" for pattern in excluded)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    status, info = api_server.request("GET", box(sandbox))
    assert status == 200 and info["state"] == "running", info


def test_a_dead_agent_means_a_stopped_sandbox_409(api_server: Server) -> None:
    status, created = api_server.request("POST", f"{API}/sandboxes", {})
    sandbox_id = created["id"]
    try:
        api_server.request(
            "POST",
            box(sandbox_id, "/process/exec"),
            # The agent started this shell's supervisor: kill its parent.
            {"command": "kill -9 $(cut -d' ' -f4 /proc/$PPID/stat)", "timeout": 5},
        )
        assert wait_until(lambda: api_server.request("GET", box(sandbox_id))[1].get("state") == "exited", timeout=20)
        status, body = api_server.request("GET", box(sandbox_id, "/files"))
        assert status == 409 and "exited" in body["message"]
    finally:
        api_server.request("DELETE", box(sandbox_id))


def test_agent_garbage_or_silence_is_502_not_a_hang() -> None:
    """The service against stand-in agents on loopback: one answers garbage, one is not there."""
    import socket

    from jupyter_sandbox.sandbox.agent_client import AgentClient
    from jupyter_sandbox.sandbox.errors import SandboxOperationError
    from jupyter_sandbox.sandbox.manager import AGENT_PORT, Sandbox
    from jupyter_sandbox.sandbox.operations import SandboxOperations
    from jupyter_sandbox.sandbox.spec import LABEL_OWNER
    from jupyter_sandbox.server_extension.handlers import status_of

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    class StandInManager:
        owner = "me"

        def __init__(self, port: int) -> None:
            self.port = port

        def get(self, sandbox_id: str) -> Sandbox:
            return Sandbox(sandbox_id, "c", "n", "v", "running", "img", {LABEL_OWNER: "me"}, {AGENT_PORT: self.port})

        def agent(self, sandbox: Sandbox) -> AgentClient:
            return AgentClient.at("127.0.0.1", self.port, "token")

    with host_http_server(b"\x00\xffnot json at all") as garbage_port:
        for port, message in ((garbage_port, "not JSON"), (closed_port, "not reachable")):
            operations = SandboxOperations(StandInManager(port))
            started = time.monotonic()
            with pytest.raises(SandboxOperationError) as caught:
                asyncio.run(operations.list_files("0123456789ab", "x"))
            assert status_of(caught.value) == 502 and message in caught.value.message
            assert time.monotonic() - started < 10


def test_every_201_says_where_the_new_thing_is(api_server: Server, sandbox: str) -> None:
    """Location on each 201: the new folder's info, session, preview link and uploaded folder; the
    addresses answer."""
    import urllib.request

    def created(path: str, body: object = None, raw: bytes | None = None, kind: str = "application/json") -> str:
        data = raw if raw is not None else json.dumps(body).encode()
        req = urllib.request.Request(
            api_server.base + path,
            data=data,
            method="POST",
            headers={"Authorization": f"token {api_server.token}", "Content-Type": kind},
        )
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60) as response:
            assert response.status == 201
            location = response.headers.get("Location")
        assert location, f"POST {path} answered 201 without a Location"
        return location

    folder = created(box(sandbox, "/files/folder"), {"path": "located/inner"})
    assert folder.startswith(box(sandbox, "/files/info?path=")) and folder.endswith("located%2Finner")
    status, entry = api_server.request("GET", folder)
    assert status == 200 and entry["type"] == "directory"

    session = created(box(sandbox, "/sessions"), {"id": "located"})
    assert session == box(sandbox, "/sessions/located")
    assert api_server.request("GET", session)[0] == 200
    api_server.request("DELETE", session)

    link = created(box(sandbox, "/previews"), {"port": 8000})
    assert link.startswith("http://8000-" + sandbox + ".localhost:")

    boundary = "locatedboundary"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\nlocated\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    ).encode()
    listing = created(box(sandbox, "/files/upload"), raw=form, kind=f"multipart/form-data; boundary={boundary}")
    assert listing == box(sandbox, "/files?path=located")
    status, answer = api_server.request("GET", listing)
    assert status == 200 and "a.txt" in {e["name"] for e in answer["entries"]}


# -- restart ---------------------------------------------------------------------------------


def kernel_pid(server: Server, sandbox_id: str) -> str:
    """The Python process's pid in the sandbox, as a user of the API finds it."""
    status, result = server.request(
        "POST", box(sandbox_id, "/process/exec"), {"command": "pgrep -f ipykernel_launcher", "timeout": 10}
    )
    return result["stdout"].strip() if status == 200 and result["exit_code"] == 0 else ""


@pytest.mark.parametrize(
    "body, message",
    [
        ({"hard": "yes"}, "hard must be true or false"),
        ({"hard": 1}, "hard must be true or false"),
        ({"hard": None}, "hard must be true or false"),
        ({"hard": False, "force": True}, "unknown fields: force"),
        ([True], "JSON object"),
    ],
)
def test_restart_bad_input_is_400(api_server: Server, sandbox: str, body: object, message: str) -> None:
    status, answer = api_server.request("POST", box(sandbox, "/restart"), body)
    assert status == 400 and message in answer["message"], answer


def test_restart_of_an_unknown_sandbox_is_404(api_server: Server) -> None:
    for body in ({}, {"hard": False}, {"hard": True}):
        status, answer = api_server.request("POST", box("0123456789ab", "/restart"), body)
        assert status == 404 and "no sandbox" in answer["message"], answer


def test_restart_soft_keeps_the_container_hard_gives_a_new_one_on_the_same_files(api_server: Server) -> None:
    status, created = api_server.request("POST", f"{API}/sandboxes", {"memory": "1g"})
    assert status == 201, created
    sandbox_id = created["id"]
    try:
        status, _ = api_server.request(
            "POST", box(sandbox_id, "/process/exec"), {"command": "echo kept > /home/sandbox/kept.txt"}
        )
        assert status == 200
        status, _ = api_server.request("POST", box(sandbox_id, "/sessions"), {"id": "bg"})
        assert status in (200, 201)
        status, _ = api_server.request(
            "POST", box(sandbox_id, "/sessions/bg/commands"), {"command": "sleep 1000", "run_async": True}
        )
        assert status == 202
        before = kernel_pid(api_server, sandbox_id)
        # No body at all is the soft restart too.
        status, after = api_server.request("POST", box(sandbox_id, "/restart"), raw=b"")
        assert status == 200 and after["id"] == sandbox_id and after["state"] == "running", after
        assert wait_until(lambda: kernel_pid(api_server, sandbox_id) not in ("", before), timeout=30)
        exec_status, result = api_server.request(
            "POST", box(sandbox_id, "/process/exec"), {"command": "pgrep -x sleep; cat /home/sandbox/kept.txt"}
        )
        # The same container: the session's command still runs, beside the file.
        assert exec_status == 200 and result["stdout"].split()[1:] == ["kept"], result

        status, hard = api_server.request("POST", box(sandbox_id, "/restart"), {"hard": True})
        assert status == 200 and hard["id"] == sandbox_id and hard["state"] == "running", hard
        assert hard["created"] != after["created"]  # a fresh container ...
        exec_status, result = api_server.request(
            "POST", box(sandbox_id, "/process/exec"), {"command": "pgrep -x sleep; cat /home/sandbox/kept.txt"}
        )
        assert exec_status == 200 and result["stdout"].strip() == "kept", result  # ... on the same files
    finally:
        api_server.request("DELETE", box(sandbox_id))


def test_restart_with_a_notebook_attached(api_server: Server, sandbox_kernel: SandboxKernel) -> None:
    """A soft restart through the API: the notebook's running cell is told its kernel restarted and
    the notebook keeps working; a hard one is refused while the kernel is attached."""
    kernel = sandbox_kernel
    assert kernel.run("x = 1\nopen('/home/sandbox/kept.txt', 'w').write('kept')").status == "ok"
    sandbox_id = json.loads(kernel.run("%sandbox status --json").stdout)["id"]
    status, answer = api_server.request("POST", box(sandbox_id, "/restart"), {"hard": True})
    assert status == 409 and "kernel attached" in answer["message"] and "--hard" in answer["message"], answer

    msg_id = kernel.client.execute("import time\nprint('started', flush=True)\ntime.sleep(120)")
    while True:  # the cell is running in the sandbox once its first output comes
        message = kernel.client.get_iopub_msg(timeout=60)
        if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "stream":
            break
    status, answer = api_server.request("POST", box(sandbox_id, "/restart"), {"hard": False})
    assert status == 200 and answer["id"] == sandbox_id, answer
    while True:
        reply = kernel.client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] == "error"
    assert "restarted through the sandbox API" in reply["content"]["evalue"], reply["content"]
    run = kernel.run("print('x' in globals(), open('/home/sandbox/kept.txt').read())", timeout=120)
    assert run.stdout == "False kept\n", (run.stdout, run.stderr)
