"""Named PTYs through the REST API of a real Jupyter server, in a real sandbox: created with an id, a
size, a folder and variables; surviving their websocket; replaying recent output (bounded) to a new
connection; resized; killed with what they started; their exit code kept and reported; bad input
refused with a clear message; and what a hostile agent could send checked before it is relayed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import API, Server, box, exec_command, start_jupyter_server
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from jupyter_sandbox.sandbox import errors
from jupyter_sandbox.sandbox import ptys as checks
from jupyter_sandbox.sandbox.agent_client import AgentClient

CONTRACT_KEYS = {"id", "cols", "rows", "cwd", "status", "exit_code", "created"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server, process = start_jupyter_server(tmp_path_factory.mktemp("ptys-root"))
    yield server
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def sandbox(server: Server) -> Iterator[str]:
    status, created = server.request("POST", f"{API}/sandboxes", {"labels": {"test": "ptys"}})
    assert status == 201, created
    yield created["id"]
    server.request("DELETE", box(created["id"]))


async def connect(server: Server, sandbox: str, pty_id: str) -> WebSocketClientConnection:
    request = HTTPRequest(
        f"ws://127.0.0.1:{server.port}{box(sandbox, f'/ptys/{pty_id}/connect')}",
        headers={"Authorization": f"token {server.token}"},
    )
    return await websocket_connect(request)


async def read_until(connection: WebSocketClientConnection, text: str, timeout: float = 20) -> str:
    """Output until `text` appears (the socket staying open)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        message = await asyncio.wait_for(connection.read_message(), timeout=max(0.1, deadline - time.monotonic()))
        assert message is not None, f"the socket closed before {text!r} appeared: {seen[-2000:]!r}"
        if isinstance(message, bytes):
            seen += message.decode(errors="replace")
    return seen


async def read_to_close(connection: WebSocketClientConnection, timeout: float = 20) -> tuple[str, list[str]]:
    """Everything up to the close: (output, text frames)."""
    output, texts = "", []  # type: tuple[str, list[str]]
    while True:
        message = await asyncio.wait_for(connection.read_message(), timeout=timeout)
        if message is None:
            return output, texts
        if isinstance(message, bytes):
            output += message.decode(errors="replace")
        else:
            texts.append(message)


def create(server: Server, sandbox: str, **body: Any) -> tuple[int, Any]:
    return server.request("POST", box(sandbox, "/ptys"), body)


def test_a_pty_outlives_its_socket_replays_and_reports_its_exit(server: Server, sandbox: str) -> None:
    exec_command(server, sandbox, "mkdir -p my-app")
    status, pty = create(server, sandbox, id="dev", cols=300, rows=100, cwd="my-app", env={"GREETING": "hi there"})
    assert status == 201, pty
    assert set(pty) == CONTRACT_KEYS
    assert pty["id"] == "dev" and (pty["cols"], pty["rows"]) == (300, 100)
    assert pty["cwd"] == "/home/sandbox/my-app" and pty["status"] == "running" and pty["exit_code"] is None
    assert "T" in pty["created"]  # ISO 8601

    async def first() -> str:
        connection = await connect(server, sandbox, "dev")
        await connection.write_message(json.dumps({"type": "input", "data": 'echo "[$GREETING]"; pwd; stty size\n'}))
        seen = await read_until(connection, "100 300")
        connection.close()  # the client goes; the PTY stays
        return seen

    seen = asyncio.run(first())
    assert "[hi there]" in seen and "/home/sandbox/my-app" in seen
    status, again = server.request("GET", box(sandbox, "/ptys/dev"))
    assert status == 200 and again["status"] == "running"

    async def second() -> tuple[str, str, list[str]]:
        connection = await connect(server, sandbox, "dev")
        replay = await read_until(connection, "[hi there]")  # what it printed while nobody was connected
        await connection.write_message(b"exit 3\n", binary=True)  # raw input
        output, texts = await read_to_close(connection)
        return replay, output, texts

    replay, _, texts = asyncio.run(second())
    assert "100 300" in replay
    assert [json.loads(t) for t in texts] == [{"type": "exit", "exit_code": 3}]
    status, ended = server.request("GET", box(sandbox, "/ptys/dev"))
    assert status == 200 and ended["status"] == "exited" and ended["exit_code"] == 3

    # A connection to the exited PTY gets its recent output, the exit frame, and the close.
    async def after() -> tuple[str, list[str]]:
        return await read_to_close(await connect(server, sandbox, "dev"))

    output, texts = asyncio.run(after())
    assert "[hi there]" in output and [json.loads(t) for t in texts] == [{"type": "exit", "exit_code": 3}]
    status, listed = server.request("GET", box(sandbox, "/ptys"))
    assert (
        status == 200
        and {"id": "dev", "exit_code": 3}.items() <= next(p for p in listed["ptys"] if p["id"] == "dev").items()
    )
    assert all(set(p) == CONTRACT_KEYS for p in listed["ptys"])


def test_a_command_pty_resize_and_kill_with_what_it_started(server: Server, sandbox: str) -> None:
    status, pty = create(server, sandbox, cols=80, rows=24, command="sleep 987 & sleep 986 & exec bash -i")
    assert status == 201, pty
    pty_id = pty["id"]
    status, resized = server.request("POST", box(sandbox, f"/ptys/{pty_id}/resize"), {"cols": 132, "rows": 43})
    assert status == 200 and (resized["cols"], resized["rows"]) == (132, 43)

    async def size() -> str:
        connection = await connect(server, sandbox, pty_id)
        await connection.write_message(json.dumps({"type": "input", "data": "stty size\n"}))
        seen = await read_until(connection, "43 132")
        await connection.write_message(json.dumps({"type": "resize", "cols": 90, "rows": 30}))
        await connection.write_message(json.dumps({"type": "input", "data": "stty size\n"}))
        seen += await read_until(connection, "30 90")
        connection.close()
        return seen

    asyncio.run(size())
    assert server.request("GET", box(sandbox, f"/ptys/{pty_id}"))[1]["cols"] == 90
    alive = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done 2>/dev/null | grep -c 'sleep 98[67]'"
    assert exec_command(server, sandbox, alive)["stdout"].strip() == "2"
    status, killed = server.request("DELETE", box(sandbox, f"/ptys/{pty_id}"))
    assert status == 200 and killed["status"] == "exited" and killed["exit_code"] == -9, killed
    assert exec_command(server, sandbox, alive)["stdout"].strip() == "0"
    # Killed, it is kept (exited) so its exit code can be read; it takes input no more.
    assert server.request("GET", box(sandbox, f"/ptys/{pty_id}"))[1]["exit_code"] == -9
    status, answer = server.request("POST", box(sandbox, f"/ptys/{pty_id}/resize"), {"cols": 10, "rows": 10})
    assert status == 409 and "exited" in answer["message"]


def test_the_replay_is_bounded_and_keeps_the_latest_output(server: Server, sandbox: str) -> None:
    status, pty = create(server, sandbox, cols=80, rows=24)
    assert status == 201

    async def flood() -> None:
        connection = await connect(server, sandbox, pty["id"])
        await connection.write_message(
            json.dumps({"type": "input", "data": "head -c 2000000 /dev/zero | tr '\\0' x; echo; echo FLOOD-$((6*7))\n"})
        )
        await read_until(connection, "FLOOD-42", timeout=60)
        connection.close()

    asyncio.run(flood())

    async def replay() -> str:
        connection = await connect(server, sandbox, pty["id"])
        seen = await read_until(connection, "FLOOD-42")
        connection.close()
        return seen

    seen = asyncio.run(replay())
    assert len(seen) <= 256 * 1024 and seen.count("x") > 100_000
    server.request("DELETE", box(sandbox, f"/ptys/{pty['id']}"))


def test_bad_input_is_refused_with_a_clear_message(server: Server, sandbox: str) -> None:
    assert create(server, sandbox, id="taken", cols=80, rows=24)[0] == 201
    status, answer = create(server, sandbox, id="taken", cols=80, rows=24)
    assert status == 409 and "taken" in answer["message"]
    exec_command(server, sandbox, "ln -sfn /etc escape")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"cols": 0, "rows": 24}, "cols and rows"),
        ({"cols": 80, "rows": 1001}, "cols and rows"),
        ({"cols": "80", "rows": 24}, "cols and rows"),
        ({"cols": True, "rows": 24}, "cols and rows"),
        ({"rows": 24}, "required"),
        ({"cols": 80, "rows": 24, "cwd": "/etc"}, "inside the sandbox's home"),
        ({"cols": 80, "rows": 24, "cwd": "../../etc"}, ".."),
        ({"cols": 80, "rows": 24, "cwd": "escape"}, "outside the home"),
        ({"cols": 80, "rows": 24, "cwd": "no-such-folder"}, "not a folder"),
        ({"cols": 80, "rows": 24, "env": {"A-B": "x"}}, "not a variable name"),
        ({"cols": 80, "rows": 24, "env": {"1X": "x"}}, "not a variable name"),
        ({"cols": 80, "rows": 24, "env": {"X": "a\u0000b"}}, "NUL"),
        ({"cols": 80, "rows": 24, "env": {"X": 3}}, "env"),
        ({"cols": 80, "rows": 24, "id": "bad id!"}, "letters, digits"),
        ({"cols": 80, "rows": 24, "command": ""}, "command"),
        ({"cols": 80, "rows": 24, "command": ["/no/such/program"]}, "cannot start"),
        ({"cols": 80, "rows": 24, "colour": "red"}, "unknown fields: colour"),
    ]
    for body, message in bad:
        status, answer = create(server, sandbox, **body)
        assert status == 400 and message in answer["message"], (body, status, answer)
    for method, path, payload in (
        ("GET", "/ptys/nope", None),
        ("DELETE", "/ptys/nope", None),
        ("POST", "/ptys/nope/resize", {"cols": 10, "rows": 10}),
    ):
        status, answer = server.request(method, box(sandbox, path), payload)
        assert status == 404 and "nope" in answer["message"], (method, path, answer)
    status, answer = server.request("POST", box(sandbox, "/ptys/taken/resize"), {"cols": 0, "rows": 10})
    assert status == 400 and "cols and rows" in answer["message"]

    async def unknown() -> int:
        try:
            await connect(server, sandbox, "nope")
        except HTTPClientError as exc:
            return exc.code
        return 101

    assert asyncio.run(unknown()) == 404
    # Without a token: refused before the upgrade, the PTY's existence not revealed.
    status, _ = server.request("GET", box(sandbox, "/ptys"), auth=False)
    assert status == 403
    # Not a websocket request: refused, not half-opened.
    status, answer = server.request("GET", box(sandbox, "/ptys/taken/connect"))
    assert status == 400 and "websocket" in answer["message"]
    server.request("DELETE", box(sandbox, "/ptys/taken"))


def test_running_ptys_are_bounded(server: Server, sandbox: str) -> None:
    made = []
    try:
        while True:
            status, answer = create(server, sandbox, cols=20, rows=5, command=["sleep", "600"])
            if status != 201:
                break
            made.append(answer["id"])
            assert len(made) <= 64, "no bound on PTYs"
        assert status == 429 and "kill one" in answer["message"]
        running = [p for p in server.request("GET", box(sandbox, "/ptys"))[1]["ptys"] if p["status"] == "running"]
        assert len(running) == 32
    finally:
        for pty_id in made:
            server.request("DELETE", box(sandbox, f"/ptys/{pty_id}"))
    assert create(server, sandbox, cols=20, rows=5, command=["true"])[0] == 201


# -- what comes from the agent is checked (no Docker: a hostile agent stands in) ---------------


class _HostileAgent(BaseHTTPRequestHandler):
    answer: Any = None

    def do_GET(self) -> None:
        body = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


GOOD = {"id": "a", "cols": 80, "rows": 24, "cwd": "/home/sandbox", "status": "running", "exit_code": None}


@pytest.mark.parametrize(
    "answer",
    [
        {**GOOD, "created": 1.0, "status": "pwned"},
        {**GOOD, "created": 1.0, "cols": 10**9},
        {**GOOD, "created": 1.0, "id": "../../x"},
        {**GOOD, "created": 1e300},
        {**GOOD, "created": "yesterday"},
        {**GOOD, "created": 1.0, "exit_code": 1},
        [GOOD],
    ],
)
def test_a_malformed_pty_from_the_agent_is_an_agent_failure(answer: Any) -> None:
    _HostileAgent.answer = answer
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HostileAgent)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = AgentClient.at("127.0.0.1", httpd.server_address[1], "t", "0123456789ab")
        with pytest.raises(errors.AgentUnavailable, match="agent"):
            asyncio.run(client.ptys.get("a"))
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_only_a_well_formed_exit_frame_is_relayed() -> None:
    assert checks.exit_code_of('{"type": "exit", "exit_code": 0}') == 0
    assert checks.exit_code_of('{"type": "exit", "exit_code": -9}') == -9
    for frame in (
        '{"type": "exit", "exit_code": "0"}',
        '{"type": "exit", "exit_code": true}',
        '{"type": "exit", "exit_code": 99999999999999999999}',
        '{"type": "exit"}',
        '{"type": "redirect", "url": "http://evil"}',
        "not json",
        "[1]",
    ):
        assert checks.exit_code_of(frame) is None, frame
    assert checks.client_frame('{"type": "input", "data": "ls\\n", "extra": 1}') == '{"type": "input", "data": "ls\\n"}'
    assert checks.client_frame('{"type": "resize", "cols": 0, "rows": 5}') is None
    assert checks.client_frame('{"type": "spawn"}') is None
    assert checks.client_frame(b"raw") == b"raw"


# -- %sandbox pty, in a notebook's kernel -------------------------------------------------------


def test_the_pty_magics(shared_kernel: Any) -> None:
    kernel = shared_kernel
    assert kernel.run("print('ready')").stdout == "ready\n"
    made = kernel.run("%sandbox pty create --id nb --cols 100 --rows 30 --env COLOUR=teal")
    assert made.error is None and "PTY nb running in /home/sandbox (100x30)" in made.stdout, made.outputs
    sent = kernel.run("%sandbox pty send nb 'echo colour=$COLOUR; stty size\\n'")
    assert "sent" in sent.stdout, sent.outputs
    waited = kernel.run("%sandbox pty wait nb --for '30 100' --timeout 20")
    assert "colour=teal" in waited.stdout and waited.error is None, waited.outputs
    listed = kernel.run("%sandbox pty list")
    assert "nb" in listed.stdout and "100x30" in listed.stdout and "running" in listed.stdout
    kernel.run("%sandbox pty send nb 'exit 5\\n'")
    ended = kernel.run("%sandbox pty wait nb --timeout 20")
    assert "PTY nb exited with code 5" in ended.stdout, ended.outputs
    again = kernel.run("%sandbox pty send nb 'ls\\n'")
    assert again.error is not None and "exited" in again.error["evalue"], again.outputs
    missing = kernel.run("%sandbox pty kill nope")
    assert missing.error is not None and "nope" in missing.error["evalue"], missing.outputs
    wrong = kernel.run("%sandbox pty create --cols 0")
    assert wrong.error is not None and "cols and rows" in wrong.error["evalue"], wrong.outputs
    long_one = kernel.run("%sandbox pty create --id sleeper -- sleep 600")
    assert long_one.error is None, long_one.outputs
    timed = kernel.run("%sandbox pty wait sleeper --timeout 1")
    assert timed.error is not None and "did not exit within 1 seconds" in timed.error["evalue"], timed.outputs
    killed = kernel.run("%sandbox pty kill sleeper")
    assert "exit code -9" in killed.stdout, killed.outputs
