"""The pure parts of hub mode's forwarder (remote/forward.py): what is sent to the sandbox service and
what never is, paths that would leave the API, Location rewriting, the messages of a 502, the body pipe's
backpressure, and the kernels' environment. No network, no Docker."""

from __future__ import annotations

import asyncio

import pytest
from tornado.httputil import HTTPHeaders

from jupyter_sandbox.kernel import provisioner
from jupyter_sandbox.remote.forward import ForwardError, Pipe, SandboxForwarder, api_path, filtered_query
from jupyter_sandbox.remote.settings import TOKEN_ENV, URL_ENV, SandboxRemote

SERVICE_TOKEN = "service-token-0123456789"


def forwarder(url: str = "http://10.0.0.5:8765", token: str = SERVICE_TOKEN) -> SandboxForwarder:
    return SandboxForwarder(SandboxRemote(url=url, token=token))


def test_the_query_loses_the_servers_credentials_and_keeps_the_rest_byte_for_byte() -> None:
    assert filtered_query("path=a%20b&token=secret&recursive=1") == "path=a%20b&recursive=1"
    assert filtered_query("_xsrf=x&%74oken=secret&cols=80&rows=24") == "cols=80&rows=24"
    assert filtered_query("token") == ""
    assert filtered_query("path=token&label=a%3Db&label=c") == "path=token&label=a%3Db&label=c"


@pytest.mark.parametrize(
    "path",
    [
        "/user/a/sandbox/api/../api/kernels",
        "/user/a/sandbox/api/%2e%2e/%2E%2e/api/contents",
        "/user/a/sandbox/api/sandboxes/./x",
        "/user/a/sandbox/api/sandboxes/%5c..",
        "/user/a/other/api/sandboxes",
    ],
)
def test_a_path_that_leaves_the_api_is_not_found(path: str) -> None:
    with pytest.raises(ForwardError) as caught:
        api_path(path, "/user/a/")
    assert caught.value.status == 404


def test_a_path_under_the_api_is_kept_as_sent() -> None:
    assert api_path("/user/a/sandbox/api/sandboxes/0123456789ab/files", "/user/a/") == "sandboxes/0123456789ab/files"
    assert api_path("/sandbox/api/openapi.json", "/") == "openapi.json"


def test_only_content_headers_and_the_service_token_are_sent() -> None:
    incoming = HTTPHeaders(
        {
            "Cookie": "username-127-0-0-1-8888=secret; _xsrf=x",
            "Authorization": "token the-users-server-token",
            "X-XSRFToken": "x",
            "X-Xsrftoken": "x",
            "Connection": "keep-alive, Upgrade",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic abc",
            "TE": "trailers",
            "Upgrade": "h2c",
            "X-Forwarded-For": "10.1.1.1",
            "Referer": "http://127.0.0.1:8888/lab",
            "Content-Type": "application/json",
            "Content-Length": "2",
            "Accept": "application/json",
        }
    )
    sent = forwarder().request_headers(incoming)
    assert sent == {
        "Content-Type": "application/json",
        "Content-Length": "2",
        "Accept": "application/json",
        "Authorization": f"token {SERVICE_TOKEN}",
    }


def test_no_token_is_a_502_for_the_operator_before_anything_is_sent() -> None:
    with pytest.raises(ForwardError) as caught:
        forwarder(token="").request_headers(HTTPHeaders())
    assert caught.value.status == 502 and "SandboxRemote.token" in caught.value.message


def test_the_502_messages_name_the_service_and_never_the_token() -> None:
    down = forwarder().unreachable(ConnectionRefusedError(111, "Connection refused"))
    assert down.status == 502 and "http://10.0.0.5:8765" in down.message and URL_ENV in down.message
    refused = forwarder().refused()
    assert refused.status == 502 and "operator" in refused.message and SERVICE_TOKEN not in refused.message


def test_upstream_urls_and_websocket_urls() -> None:
    f = forwarder("https://hub.example:443/services/sandbox/")
    assert f.upstream_url("sandboxes", "token=x&kernel_id=k") == (
        "https://hub.example:443/services/sandbox/sandbox/api/sandboxes?kernel_id=k"
    )
    assert f.upstream_url("sandboxes/0123456789ab/pty", "cols=80", scheme="ws").startswith(
        "wss://hub.example:443/services/sandbox/sandbox/api/sandboxes/0123456789ab/pty?cols=80"
    )


def test_a_location_of_the_services_api_becomes_the_users_servers() -> None:
    f = forwarder("http://10.0.0.5:8765/services/sandbox")
    assert (
        f.local_location("/services/sandbox/sandbox/api/sandboxes/0123456789ab", "/user/alice/")
        == "/user/alice/sandbox/api/sandboxes/0123456789ab"
    )
    assert (
        f.local_location("http://10.0.0.5:8765/services/sandbox/sandbox/api/sandboxes/x?a=1", "/user/alice/")
        == "/user/alice/sandbox/api/sandboxes/x?a=1"
    )
    # Anywhere else is not passed on.
    assert f.local_location("http://evil.example/services/sandbox/sandbox/api/x", "/user/alice/") is None
    assert f.local_location("/hub/login", "/user/alice/") is None


def test_a_service_url_that_is_not_http_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match=URL_ENV):
        forwarder("unix:///var/run/docker.sock")


def test_the_pipe_holds_a_window_then_waits_and_an_abort_frees_the_writer() -> None:
    async def scenario() -> None:
        pipe = Pipe(window=10)
        await pipe.put(b"x" * 11)  # over the window after this one
        blocked = asyncio.ensure_future(pipe.put(b"y"))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        assert await pipe.get() == b"x" * 11
        await asyncio.wait_for(blocked, 1)
        await pipe.put(b"z")
        pipe.end()
        assert await pipe.get() == b"yz"  # what is held comes in one piece
        assert await pipe.get() is None
        stuck = Pipe(window=1)
        await stuck.put(b"zz")
        writer = asyncio.ensure_future(stuck.put(b"more"))
        await asyncio.sleep(0.05)
        stuck.abort()
        await asyncio.wait_for(writer, 1)
        with pytest.raises(ConnectionAbortedError):
            await Pipe.get(_aborted())

    asyncio.run(scenario())


def _aborted() -> Pipe:
    pipe = Pipe()
    pipe.abort()
    return pipe


def test_the_kernels_are_told_the_service_from_config_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    remote = SandboxRemote(url="http://10.0.0.5:8765/", token=SERVICE_TOKEN)
    try:
        provisioner.register_environment(remote.environment())
        assert provisioner.launch_env() == {URL_ENV: "http://10.0.0.5:8765", TOKEN_ENV: SERVICE_TOKEN}
    finally:
        provisioner.unregister()
    assert provisioner.launch_env() == {}
