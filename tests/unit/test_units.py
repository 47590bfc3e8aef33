"""Pure functions: sizes, specs, message signing."""

from __future__ import annotations

import pytest

from jupyter_sandbox.kernel.messages import DELIM, Signer, build, reply_type, split
from jupyter_sandbox.sandbox.spec import SandboxSpec, SpecError, format_size, parse_size
from jupyter_sandbox.server_extension.preview import access
from jupyter_sandbox.server_extension.preview.http1 import (
    CHUNKED,
    UNTIL_CLOSE,
    Head,
    ProtocolError,
    body_length,
    parse_request,
    parse_response,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1g", 1024**3),
        ("512m", 512 * 1024**2),
        ("1.5GiB", 1536 * 1024**2),
        ("2048", 2048),
        (4096, 4096),
        ("3 GB", 3 * 1024**3),
        ("10k", 10240),
    ],
)
def test_parse_size(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1g", "0", "1x", "1..5g", True, "1e9"])
def test_parse_size_rejects_nonsense_with_a_clear_message(text) -> None:
    with pytest.raises(SpecError, match="memory"):
        parse_size(text, "memory")


def test_format_size() -> None:
    assert format_size(1024**3) == "1 GiB"
    assert format_size(1536 * 1024**2) == "1.5 GiB"
    assert format_size(100) == "100 B"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("image", "", "needs an image"),
        ("image", "bad image", "not a valid image"),
        ("cpu", 0, "cpu"),
        ("cpu", 1000, "cpu"),
        ("memory", 1024, "memory"),
        ("disk", 10, "disk"),
        ("pids", 1, "pids"),
        ("env", {"1BAD": "x"}, "not a valid variable"),
        ("env", {"OK": "a\0b"}, "NUL"),
    ],
)
def test_spec_validation(field, value, message) -> None:
    spec = SandboxSpec(image="img:1")
    setattr(spec, field, value)
    with pytest.raises(SpecError, match=message):
        spec.validate()


def test_signer_round_trip_and_tamper() -> None:
    signer = Signer("secret")
    frames = build(signer, "status", {"execution_state": "idle"}, None, "session")
    assert frames[0] == DELIM
    assert signer.verify(*frames[1:6])
    assert not signer.verify(frames[1], frames[2], frames[3], frames[4], b'{"execution_state":"busy"}')
    assert not Signer("other").verify(*frames[1:6])


def test_empty_key_means_unsigned() -> None:
    signer = Signer("")
    assert signer.sign(b"{}", b"{}", b"{}", b"{}") == b""
    assert signer.verify(b"", b"{}", b"{}", b"{}", b"{}")


def test_unknown_signature_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Signer("k", "rot13")


def test_split_and_reply_type() -> None:
    idents, body = split([b"a", b"b", DELIM, b"sig", b"h"])
    assert idents == [b"a", b"b"] and body == [b"sig", b"h"]
    with pytest.raises(ValueError):
        split([b"no delimiter"])
    assert reply_type("execute_request") == "execute_reply"
    assert reply_type("comm_msg") is None


def test_agent_answer_shapes() -> None:
    from jupyter_sandbox.sandbox.shapes import AGENT_SHAPES, ShapeError, reduce

    good = {
        "branch": "main",
        "ahead": 1,
        "behind": 0,
        "extra": "<dropped>",
        "files": [{"path": "a", "index": "M", "worktree": " ", "staged": True, "untracked": False}],
    }
    assert reduce(good, AGENT_SHAPES["git_status"]) == {k: v for k, v in good.items() if k != "extra"}
    for bad in ({**good, "ahead": "1"}, {**good, "files": "x"}, {**good, "ahead": True}, [good], None):
        with pytest.raises(ShapeError):
            reduce(bad, AGENT_SHAPES["git_status"])
    assert reduce({"branches": ["a"], "current": None}, AGENT_SHAPES["git_branches"]) == {
        "branches": ["a"],
        "current": None,
    }


# -- the preview proxy's framing and request cleaning ------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GET http://elsewhere/ HTTP/1.1\r\nHost: x",
        b"GET / HTTP/2\r\nHost: x",
        b"GET  / HTTP/1.1",
        b"GET / HTTP/1.1\r\nHost: x\nX-Smuggled: 1",
        b"GET / HTTP/1.1\r\nNo colon here",
        b"GET / HTTP/1.1\r\nBad Name: x",
        b"GET / HTTP/1.1\r\n folded: x",
        b"GET / HTTP/1.1\r\nX: a\0b",
    ],
)
def test_request_heads_that_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_request(raw)


def test_body_framing() -> None:
    def request(*headers: tuple[str, str]) -> Head:
        return Head(("POST", "/", "HTTP/1.1"), list(headers))

    def response(code: str, *headers: tuple[str, str]) -> Head:
        return Head(("HTTP/1.1", code, ""), list(headers))

    assert body_length(request()) == 0
    assert body_length(request(("Content-Length", "5"), ("content-length", "5"))) == 5
    assert body_length(request(("Transfer-Encoding", "gzip, chunked"))) == CHUNKED
    for bad in (
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        [("Content-Length", "5, 6")],
        [("Content-Length", "-1")],
        [("Transfer-Encoding", "gzip")],
    ):
        with pytest.raises(ProtocolError):
            body_length(request(*bad))
    assert body_length(response("200"), "GET") == UNTIL_CLOSE
    assert body_length(response("200", ("Content-Length", "9")), "HEAD") == 0
    assert body_length(response("304", ("Content-Length", "9")), "GET") == 0
    assert body_length(response("200", ("Transfer-Encoding", "gzip")), "GET") == UNTIL_CLOSE
    assert parse_response(b"HTTP/1.1 404 Not Found\r\nX: y").first == ("HTTP/1.1", "404", "Not Found")


def test_what_of_a_request_reaches_the_app() -> None:
    head = parse_request(
        b"POST /app?a=1&token=T HTTP/1.1\r\nHost: 3000-0123456789ab.localhost:8888\r\nAuthorization: token J\r\n"
        b"X-XSRFToken: x\r\nX-Sandbox-Preview-Token: T\r\nCookie: _xsrf=1; username-h=s; jupyterhub-session-id=2; "
        b"jupyter-sandbox-preview=T; mine=kept\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: websocket\r\nKeep-Alive: 5\r\nX-Forwarded-For: 6.6.6.6\r\nExpect: 100-continue\r\nAccept: */*"
    )
    path, query = access.split_target(head.first[1])
    sent = access.upstream_request(
        head, path, query, 3000, "3000-0123456789ab.localhost:8888", "http", keep_alive=False, websocket=False
    )
    assert sent.first == ("POST", "/app?a=1", "HTTP/1.1")
    assert dict(sent.headers) == {
        "Cookie": "mine=kept",
        "Transfer-Encoding": "chunked",
        "Accept": "*/*",
        "Host": "localhost:3000",
        "X-Forwarded-Host": "3000-0123456789ab.localhost:8888",
        "X-Forwarded-Proto": "http",
        "Connection": "close",
    }
    upgrade = access.upstream_request(head, path, query, 3000, "h", "http", keep_alive=False, websocket=True)
    assert ("Upgrade", "websocket") in upgrade.headers and ("Connection", "keep-alive, Upgrade") in upgrade.headers
    assert access.given_token(head, query) == ("T", False)


def test_the_preview_cookie() -> None:
    import time

    value = access.token_cookie("tok", "/sandbox/preview/0123456789ab/3000/", int(time.time()) + 60)
    parts = {p.strip().split("=")[0].lower() for p in value.split(";")}
    assert value.startswith("jupyter-sandbox-preview=tok") and {"httponly", "path", "samesite", "max-age"} <= parts
    assert "Domain" not in value and "Path=/sandbox/preview/0123456789ab/3000/" in value
