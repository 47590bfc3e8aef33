"""The pure parts of the hub-mode magics: the REST config change's checks, the PTY follow timeout, and
what the kernel makes of the service's answers (streamed errors, malformed answers)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_sandbox.remote.access import (
    RemoteAccess,
    RemoteSandbox,
    checked_policy,
    checked_pty,
    checked_secret,
    streamed_error,
)
from jupyter_sandbox.remote.api import ServiceAPI
from jupyter_sandbox.sandbox import errors
from jupyter_sandbox.sandbox.agent_client import Cancelled
from jupyter_sandbox.sandbox.operations import config_changes
from jupyter_sandbox.sandbox.ptys import follow_timeout


def test_a_config_change_is_converted_to_the_plans_types() -> None:
    assert config_changes({"cpu": 2, "memory": "2g", "disk": 1024**3, "pids": 300, "env": {"A": "b"}}) == {
        "cpu": 2.0,
        "memory": 2 * 1024**3,
        "disk": 1024**3,
        "pids": 300,
        "env": {"A": "b"},
    }
    assert config_changes({"image": "jupyter-sandbox/python"}) == {"image": "jupyter-sandbox/python"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({}, "config is an object"),
        ([], "config is an object"),
        ({"cpus": 2}, "cannot be changed: cpus"),
        ({"cpu": 0}, "cpu must be a positive number"),
        ({"cpu": float("nan")}, "cpu must be a positive number"),
        ({"cpu": float("inf")}, "cpu must be a positive number"),
        ({"cpu": True}, "cpu must be a positive number"),
        ({"cpu": "2"}, "cpu must be a positive number"),
        ({"memory": "lots"}, "memory"),
        ({"memory": -5}, "memory must be a size"),
        ({"memory": 1.5}, "memory must be a size"),
        ({"pids": 2.0}, "pids must be a whole number"),
        ({"pids": False}, "pids must be a whole number"),
        ({"image": ""}, "image must be"),
        ({"image": 3}, "image must be"),
        ({"env": {"A": 1}}, "env must map"),
        ({"env": {"": "x"}}, "env must map"),
        ({"env": "A=b"}, "env must map"),
    ],
)
def test_a_bad_config_change_is_refused_with_what_was_expected(value: Any, message: str) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        config_changes(value)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "3601", "soon", None])
def test_a_pty_follow_timeout_is_a_bounded_number_of_seconds(value: Any) -> None:
    with pytest.raises(errors.InvalidInput, match="timeout"):
        follow_timeout(value)
    assert follow_timeout("2.5") == 2.5


def test_a_streamed_error_keeps_its_kind_and_bounds_its_message() -> None:
    assert isinstance(streamed_error({"error": "gone", "status": 404}), errors.SandboxNotFound)
    assert isinstance(streamed_error({"error": "late", "status": 504}), errors.TimedOut)
    odd = streamed_error({"error": "x" * 10_000, "status": "404"})
    assert type(odd) is errors.Internal and len(odd.message) <= 2000


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (checked_policy, {"mode": "none"}),
        (checked_policy, ["none"]),
        (checked_secret, {"hosts": []}),
        (checked_pty, {"id": 5}),
        (checked_pty, None),
    ],
)
def test_a_malformed_answer_of_the_service_is_an_internal_error(check: Any, value: Any) -> None:
    with pytest.raises(errors.Internal, match="malformed"):
        check(value)


def test_a_secret_answer_keeps_only_its_name_and_hosts() -> None:
    assert checked_secret({"name": "K", "hosts": ["a.test", 3], "value": "never"}) == {
        "name": "K",
        "hosts": ["a.test", "3"],
    }


class Streams(http.server.BaseHTTPRequestHandler):
    """A stand-in service that streams the answers a test puts in `lines` (with heartbeats)."""

    lines: list[str] = []
    hold = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for line in self.lines:
            self.wfile.write(line.encode() + b"\n")
            self.wfile.flush()
        # Heartbeats until the client goes (as the service sends while a command prints nothing).
        while not self.hold.wait(0.1):
            try:
                self.wfile.write(b"\n")
                self.wfile.flush()
            except OSError:
                return

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def streams() -> Iterator[RemoteAccess]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Streams)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Streams.hold.clear()
    try:
        yield RemoteAccess(ServiceAPI(f"http://127.0.0.1:{server.server_address[1]}", "t"))
    finally:
        Streams.hold.set()
        server.shutdown()
        server.server_close()


def test_exec_output_is_handed_on_as_it_comes_and_the_exit_code_ends_it(streams: RemoteAccess) -> None:
    Streams.lines = [
        json.dumps({"stream": "stdout", "text": "one\n"}),
        "",
        json.dumps({"stream": "stderr", "text": "two\n"}),
        json.dumps({"stream": "evil", "text": "dropped"}),
        json.dumps({"exit_code": 3, "timed_out": False}),
    ]
    seen: list[tuple[str, str]] = []
    record = streams.exec_streaming(
        RemoteSandbox("0123456789ab"), "x", lambda s, t: seen.append((s, t)), None, 10, None
    )
    assert record == {"exit_code": 3, "timed_out": False}
    assert seen == [("stdout", "one\n"), ("stderr", "two\n")]


def test_an_interrupt_is_seen_while_nothing_is_printed(streams: RemoteAccess) -> None:
    Streams.lines = [json.dumps({"stream": "stdout", "text": "started\n"})]
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(Cancelled):
        streams.exec_streaming(RemoteSandbox("0123456789ab"), "sleep 300", lambda s, t: None, cancel, 600, None)


@pytest.mark.parametrize(
    ("lines", "kind"),
    [
        ([json.dumps({"error": "the sandbox is gone", "status": 410})], errors.Gone),
        (["not json"], errors.Internal),
        ([json.dumps({"exit_code": "0"})], errors.Internal),
    ],
)
def test_a_stream_that_ends_badly_is_the_domain_error(
    streams: RemoteAccess, lines: list[str], kind: type[Exception]
) -> None:
    Streams.lines = lines
    with pytest.raises(kind):
        streams.exec_streaming(RemoteSandbox("0123456789ab"), "x", lambda s, t: None, None, 10, None)
