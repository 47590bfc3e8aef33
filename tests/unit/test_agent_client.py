"""The one agent client against a tiny fake agent on 127.0.0.1: what a hostile or broken agent
answers becomes a domain error with a readable message, and well-formed answers are reduced to
the fields and types callers may use. No Docker engine."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Callable

import pytest

from jupyter_sandbox.sandbox import errors
from jupyter_sandbox.sandbox.agent_client import AgentClient, Cancelled, run_blocking
from jupyter_sandbox.sandbox.agent_http import MAX_RESPONSE_BYTES, AsyncAgent

Answer = Callable[[str], "tuple[int, bytes] | None"]


@asynccontextmanager
async def fake_agent(answer: Answer, call_timeout: float = 5.0) -> AsyncIterator[AgentClient]:
    """An HTTP/1.1 listener on loopback: `answer(request_line)` gives (status, body), or None to say nothing."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode()
        seen.append(line)
        reply = answer(line)
        if reply is None:
            await asyncio.sleep(30)
            return
        status, body = reply
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = AsyncAgent("0123456789ab", "127.0.0.1", port, "token", idle_timeout=2)
    client = AgentClient(transport, call_timeout=call_timeout)
    client.seen = seen  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        server.close()


def json_answer(status: int, data: Any) -> Answer:
    return lambda line: (status, json.dumps(data).encode())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_listing_is_reduced_to_known_fields_of_the_right_types() -> None:
    entries = [
        {"name": "a", "path": "a", "type": "file", "size": 3, "mode": 0o644, "evil": "x", "uid": True},
        {"name": "b", "path": "b", "type": "directory", "size": "big"},
    ]

    async def go() -> dict[str, Any]:
        async with fake_agent(json_answer(200, {"path": "", "entries": entries, "truncated": 1})) as agent:
            listing = await agent.files.list("", recursive=True)
            assert agent.seen[0].startswith("GET /files?path=&recursive=1 ")  # type: ignore[attr-defined]
            return listing

    listing = run(go())
    assert listing["truncated"] is True
    assert listing["entries"][0] == {"name": "a", "path": "a", "type": "file", "size": 3, "mode": "644"}
    assert listing["entries"][1] == {"name": "b", "path": "b", "type": "directory"}


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (lambda line: (200, b"\x00\xffnot json"), errors.AgentUnavailable, "not JSON"),
        (json_answer(200, ["a", "list"]), errors.AgentUnavailable, "unexpected shape"),
        (json_answer(200, {"path": "", "entries": "nope"}), errors.AgentUnavailable, "malformed entries"),
        (json_answer(200, {"path": "", "entries": [{"name": 1}]}), errors.AgentUnavailable, "malformed file entry"),
        (json_answer(404, {"message": "no such file: x"}), errors.NotFound, "no such file: x"),
        (json_answer(409, {"message": "exists"}), errors.Conflict, "exists"),
        (json_answer(507, {"message": "home is full"}), errors.InsufficientStorage, "home is full"),
        (json_answer(500, {"message": "boom"}), errors.AgentUnavailable, "agent failed"),
        (json_answer(401, {"message": "token"}), errors.AgentUnavailable, "agent failed"),
        (lambda line: (200, b"{" + b" " * (MAX_RESPONSE_BYTES + 10) + b"}"), errors.AgentUnavailable, "more than"),
    ],
)
def test_a_bad_answer_is_a_domain_error_that_says_what_went_wrong(
    answer: Answer, kind: type[errors.SandboxOperationError], words: str
) -> None:
    async def go() -> None:
        async with fake_agent(answer) as agent:
            await agent.files.list("x")

    with pytest.raises(kind) as caught:
        run(go())
    assert words in caught.value.message, caught.value.message


def test_a_silent_agent_costs_its_call_its_deadline_only() -> None:
    async def go() -> None:
        async with fake_agent(lambda line: None, call_timeout=1.0) as agent:
            await agent.files.stat("x")

    started = time.monotonic()
    with pytest.raises(errors.TimedOut) as caught:
        run(go())
    assert time.monotonic() - started < 10
    assert "0123456789ab" in caught.value.message


def test_a_closed_port_is_agent_unavailable() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = AgentClient(AsyncAgent("0123456789ab", "127.0.0.1", port, "token"))
    with pytest.raises(errors.AgentUnavailable) as caught:
        run(agent.health())
    assert "not reachable" in caught.value.message


def test_git_and_session_answers_are_checked_against_their_shapes() -> None:
    good_status = {"branch": "main", "ahead": 0, "behind": 1, "files": [], "extra": "dropped"}

    async def go() -> tuple[Any, Any]:
        async with fake_agent(json_answer(200, good_status)) as agent:
            status = await agent.git.status(".")
        async with fake_agent(json_answer(200, {"branch": 3, "ahead": 0, "behind": 0, "files": []})) as agent:
            try:
                await agent.git.status(".")
            except errors.AgentUnavailable as exc:
                return status, exc.message
        return status, None

    status, problem = run(go())
    assert status == {"branch": "main", "ahead": 0, "behind": 1, "files": []}
    assert problem is not None and "malformed answer" in problem


def test_usage_keeps_only_real_ports_and_a_whole_disk_count() -> None:
    answer = {"disk": {"bytes": "lots", "partial": 1}, "ports": [80, True, -1, 70000, "22", 8080, 80]}

    async def go() -> dict[str, Any]:
        async with fake_agent(json_answer(200, answer)) as agent:
            return await agent.usage()

    assert run(go()) == {"disk_bytes": None, "disk_partial": True, "ports": [80, 8080]}


def test_followed_logs_stop_at_a_malformed_line() -> None:
    body = b'{"stream": "stdout", "text": "hi"}\n[1, 2]\n'

    async def go() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with fake_agent(lambda line: (200, body)) as agent:
            with pytest.raises(errors.AgentUnavailable, match="malformed logs"):
                async for chunk in agent.sessions.follow_logs("s", "0a"):
                    got.append(chunk)
        return got

    assert run(go()) == [{"stream": "stdout", "text": "hi"}]


def test_an_exec_result_without_a_whole_exit_code_is_refused() -> None:
    async def go() -> None:
        async with fake_agent(json_answer(200, {"exit_code": "0", "stdout": "x"})) as agent:
            await agent.processes.exec("true", None, {}, 5)

    with pytest.raises(errors.AgentUnavailable, match="malformed result"):
        run(go())


def test_the_blocking_callers_run_the_same_calls_inside_or_outside_a_loop() -> None:
    """run_blocking (kernel threads, the manager, the git relay) over the one client: its answers and
    refusals, from plain code and from code already running an event loop."""

    def handle(head: bytes, conn: Any) -> None:
        wanted = head.split(b" ", 2)[1]
        status, body = (200, b'{"status": "ok"}') if wanted == b"/health" else (404, b'{"message": "no such"}')
        conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))

    client, close = streaming_agent(handle)
    try:
        assert run_blocking(lambda: client.call("GET", "/health")) == {"status": "ok"}
        with pytest.raises(errors.NotFound) as caught:
            run_blocking(lambda: client.kernel.restart())
        assert "no such" in caught.value.message

        async def inside_a_loop() -> dict[str, Any]:
            return run_blocking(lambda: client.call("GET", "/health"))

        assert asyncio.run(inside_a_loop()) == {"status": "ok"}
    finally:
        close()


def streaming_agent(handle: Callable[[bytes, Any], None]) -> tuple[AgentClient, Callable[[], None]]:
    """A threaded stand-in agent on loopback: `handle(head, conn)` answers each request as it likes."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                try:
                    handle(head, conn)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(timeout=5)
        listener.close()

    return AgentClient.at("127.0.0.1", listener.getsockname()[1], "token", idle_timeout=5), close


def test_a_streamed_command_reports_output_as_it_comes_and_its_exit_record() -> None:
    lines = [{"stream": "stdout", "text": "hello\n"}, {"stream": "evil", "text": "x"}, {"exit_code": 3, "extra": 1}]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    def handle(head: bytes, conn: Any) -> None:
        assert head.startswith(b"POST /process/exec ")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    client, close = streaming_agent(handle)
    try:
        seen: list[tuple[str, str]] = []
        record = run_blocking(lambda: client.processes.exec_stream("echo hello", lambda n, t: seen.append((n, t))))
        assert seen == [("stdout", "hello\n")]
        assert record == {"exit_code": 3, "timed_out": False}
    finally:
        close()


def test_a_cancelled_stream_ends_at_once_with_cancelled() -> None:
    import threading

    def handle(head: bytes, conn: Any) -> None:
        conn.sendall(b'HTTP/1.1 200 OK\r\n\r\n{"stream": "stdout", "text": "working"}\n')
        conn.recv(1)  # says nothing more until the client goes away

    client, close = streaming_agent(handle)
    try:
        cancel = threading.Event()
        seen: list[str] = []

        def on_output(name: str, text: str) -> None:
            seen.append(text)
            cancel.set()

        started = time.monotonic()
        with pytest.raises(Cancelled):
            run_blocking(lambda: client.processes.exec_stream("sleep 100", on_output, cancel=cancel))
        assert seen == ["working"] and time.monotonic() - started < 3
        with pytest.raises(Cancelled):
            run_blocking(lambda: client.files.download_to("big", io.BytesIO(), 10, cancel=cancel))
    finally:
        close()


def test_a_download_over_its_limit_is_refused_whatever_the_agent_announces() -> None:
    def handle(head: bytes, conn: Any) -> None:
        if b"announced" in head:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 100)  # no length: read to the close

    client, close = streaming_agent(handle)
    try:
        for name in ("announced", "unannounced"):
            sink = io.BytesIO()
            with pytest.raises(errors.PayloadTooLarge) as caught:
                run_blocking(lambda name=name, sink=sink: client.files.download_to(name, sink, 50))
            assert "limit" in caught.value.message and len(sink.getvalue()) <= 50
        sink = io.BytesIO()
        assert run_blocking(lambda: client.files.download_to("x", sink, 100)) == 100
    finally:
        close()


def test_an_upload_sends_its_bytes_and_returns_the_checked_answer() -> None:
    received: list[bytes] = []

    def handle(head: bytes, conn: Any) -> None:
        header, _, body = head.partition(b"\r\n\r\n")
        length = int(
            next(v for k, _, v in (h.partition(b":") for h in header.split(b"\r\n")) if k == b"Content-Length")
        )
        while len(body) < length:
            body += conn.recv(65536)
        received.append(body)
        answer = json.dumps({"path": "/home/sandbox/f", "size": len(body), "evil": 1}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))

    client, close = streaming_agent(handle)
    try:
        data = b"y" * (600 * 1024)
        answer = run_blocking(lambda: client.files.upload_from("f", io.BytesIO(data), len(data)))
        assert answer == {"path": "/home/sandbox/f", "size": len(data)} and received == [data]
    finally:
        close()
