"""Hub mode's pure parts: the channel bridge (real zmq sockets, a real websocket server on loopback),
the checks of what the service answers, the service client's errors, the magics through the seam."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from tornado import web, websocket
from tornado.httpserver import HTTPServer

from jupyter_sandbox.kernel.magics import MagicContext, SandboxMagics
from jupyter_sandbox.kernel.settings import SandboxKernel
from jupyter_sandbox.remote.access import RemoteSandbox, magic_status
from jupyter_sandbox.remote.api import ServiceAPI, ServiceUnreachable
from jupyter_sandbox.remote.channels import ChannelBridge
from jupyter_sandbox.remote.lifecycle import _checked_bring_up
from jupyter_sandbox.sandbox import errors
from jupyter_sandbox.sandbox.manager import SandboxManager
from jupyter_sandbox.sandbox.operations import SandboxOperations


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandIn:
    """The serving side of .../kernel/channels in miniature: each websocket joined to a TCP port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sockets: list[websocket.WebSocketHandler] = []
        self.headers: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        stand_in = self

        class Handler(websocket.WebSocketHandler):
            async def open(self) -> None:
                stand_in.sockets.append(self)
                stand_in.headers.append(self.request.headers.get("Authorization", ""))
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", stand_in.target_port)
                self.pumping = asyncio.ensure_future(self.pump())

            async def pump(self) -> None:
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        self.close()
                        return
                    await self.write_message(data, binary=True)

            async def on_message(self, message: Any) -> None:
                self.writer.write(message)
                await self.writer.drain()

            def on_close(self) -> None:
                self.writer.close()

        HTTPServer(web.Application([(r"/channels", Handler)])).listen(self.port, "127.0.0.1")

    def drop_all(self) -> None:
        async def drop() -> None:
            for sock in self.sockets:
                sock.close()

        asyncio.run_coroutine_threadsafe(drop(), self.loop).result(10)


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def exchange(dealer: zmq.Socket, router: zmq.Socket, payload: bytes, timeout: float = 20) -> None:
    dealer.send_multipart([payload, b"second frame"])
    assert router.poll(int(timeout * 1000)), "the message did not cross the bridge"
    identity, *frames = router.recv_multipart()
    assert frames == [payload, b"second frame"]  # frames intact, in order
    router.send_multipart([identity, b"reply-" + payload])
    assert dealer.poll(int(timeout * 1000)), "the reply did not cross the bridge"
    assert dealer.recv_multipart() == [b"reply-" + payload]


def test_the_bridge_carries_zmq_frames_and_reconnects_after_a_dropped_websocket(zmq_context: zmq.Context) -> None:
    router = zmq_context.socket(zmq.ROUTER)
    target = router.bind_to_random_port("tcp://127.0.0.1")
    stand_in = StandIn(target)
    bridge = ChannelBridge(
        f"ws://127.0.0.1:{stand_in.port}/channels", {"Authorization": "token t0k"}, "k", "hmac-sha256"
    )
    connection = bridge.start()
    try:
        assert connection["transport"] == "ipc" and connection["key"] == "k"
        dealer = zmq_context.socket(zmq.DEALER)
        dealer.connect(f"ipc://{connection['ip']}-{connection['shell_port']}")
        exchange(dealer, router, b"one" * 50_000)  # larger than one websocket chunk
        stand_in.drop_all()
        time.sleep(0.3)
        exchange(dealer, router, b"two")  # zmq connected again, through a new websocket
        assert bridge.opened >= 2
        assert set(stand_in.headers) == {"token t0k"}
    finally:
        bridge.close()


def test_the_bridges_endpoints_are_in_a_folder_only_this_user_enters() -> None:
    bridge = ChannelBridge("ws://127.0.0.1:9/none", {}, "k", "hmac-sha256")
    connection = bridge.start()
    try:
        import os
        import stat

        folder = os.path.dirname(connection["ip"])
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        for channel in ("shell", "iopub", "stdin", "control", "hb"):
            assert stat.S_ISSOCK(os.stat(f"{connection['ip']}-{connection[f'{channel}_port']}").st_mode)
    finally:
        bridge.close()
    assert not os.path.exists(folder)


def test_the_bridge_holds_a_connection_while_the_service_is_down_and_lets_go_when_the_relay_does(
    zmq_context: zmq.Context,
) -> None:
    bridge = ChannelBridge(f"ws://127.0.0.1:{free_port()}/channels", {}, "k", "hmac-sha256")
    connection = bridge.start()
    try:
        dealer = zmq_context.socket(zmq.DEALER)
        dealer.connect(f"ipc://{connection['ip']}-{connection['shell_port']}")
        dealer.send(b"queued")
        time.sleep(1.0)
        assert bridge.opened == 0 and len(bridge._tasks) == 1
        dealer.close(linger=0)
        assert _wait(lambda: not bridge._tasks, 10)
    finally:
        bridge.close()


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {"sandbox": {"id": "a" * 12}},
        {"sandbox": {"id": "a" * 12}, "kernel": {"key": "", "signature_scheme": "hmac-sha256"}},
        {"sandbox": {"id": "a" * 12}, "kernel": {"key": "k", "signature_scheme": "hmac-md5"}},
        {"sandbox": {}, "kernel": {"key": "k", "signature_scheme": "hmac-sha256"}},
    ],
)
def test_a_malformed_bring_up_answer_is_refused(answer: Any) -> None:
    with pytest.raises(errors.Internal):
        _checked_bring_up(answer)


def test_a_bring_up_answer_gives_the_sandbox_key_and_last_event() -> None:
    sandbox, key, last = _checked_bring_up(
        {
            "sandbox": {"id": "0123456789ab", "state": "running", "workspace": "ab" * 12, "spec": {"memory": "1g"}},
            "kernel": {"key": "secret", "signature_scheme": "hmac-sha256"},
            "last_event": 7,
            "memory_limit": "1 GiB",
        }
    )
    assert (sandbox.id, sandbox.running, sandbox.memory_limit, key, last) == (
        "0123456789ab",
        True,
        "1 GiB",
        ("secret", "hmac-sha256"),
        7,
    )
    assert _checked_bring_up({**_minimal(), "last_event": True})[2] == 0


def _minimal() -> dict[str, Any]:
    return {"sandbox": {"id": "0123456789ab"}, "kernel": {"key": "k", "signature_scheme": "hmac-sha256"}}


class FakeAccess:
    hub = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    def status(self, sandbox: Any, cell_timeout: float) -> dict[str, Any]:
        self.calls.append("status")
        return magic_status(
            {
                "id": sandbox.id,
                "state": "running",
                "image": "img",
                "limits": {"cpu": 1.0, "memory": 2**30, "pids": 256, "disk": 3 * 2**30},
                "disk": {"note": "the home is capped"},
                "usage": {},
                "network": {"mode": "none", "cidrs": []},
                "ports": [8000],
                "workspace": "ab" * 12,
            },
            cell_timeout,
        )

    def stop_sandbox(self, sandbox: Any) -> None:
        self.calls.append("stop")


def magic(line: str, access: FakeAccess) -> tuple[Any, str]:
    out: list[str] = []
    ctx = MagicContext(
        manager=None,
        settings=SandboxKernel(),
        sandbox=RemoteSandbox("0123456789ab"),  # type: ignore[arg-type]
        cell_timeout=0,
        write=lambda name, text: out.append(text),
        access_to=access,  # type: ignore[arg-type]
    )
    return SandboxMagics().run(line, None, ctx), "".join(out)


def test_magics_in_hub_mode_go_through_the_seam_and_the_ssh_one_says_what_to_use() -> None:
    access = FakeAccess()
    result, out = magic("status", access)
    assert result.error is None and "sandbox   0123456789ab" in out and "none (nothing leaves" in out
    assert "8000" in out
    result, _ = magic("stop", access)
    assert result.stopped and access.calls == ["status", "stop"]
    # Only ssh stays refused (the service runs no SSH gateway); the message names what to use instead.
    result, _ = magic("ssh", access)
    assert result.error and "hub mode" in result.error and "no SSH gateway" in result.error
    assert "%sandbox pty" in result.error


class Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"message": "there is no sandbox 'abc'"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_service_clients_errors_carry_the_services_message() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = ServiceAPI(f"http://127.0.0.1:{server.server_address[1]}", "t")
        with pytest.raises(errors.SandboxNotFound, match="there is no sandbox 'abc'"):
            api.get("abc")
    finally:
        server.shutdown()
    with pytest.raises(ServiceUnreachable):
        ServiceAPI(f"http://127.0.0.1:{free_port()}", "t").get("abc")
    with pytest.raises(errors.InvalidInput):
        ServiceAPI("file:///etc/passwd", "t")


@pytest.mark.parametrize(
    "kernel_id, workspace",
    [(123, None), ("bad id!", None), ("k" * 65, None), ("good-kernel", "NOT-HEX"), ("good-kernel", 5)],
)
def test_bring_up_refuses_bad_kernel_ids_and_workspaces_before_any_engine_call(kernel_id: Any, workspace: Any) -> None:
    ops = SandboxOperations(SandboxManager(backend=None))
    with pytest.raises(errors.InvalidInput):
        asyncio.run(ops.bring_up_kernel(kernel_id, workspace))


def test_a_kernel_connected_from_elsewhere_is_alive_here_while_its_channels_are() -> None:
    from jupyter_sandbox.sandbox import binding
    from jupyter_sandbox.sandbox.kernel_channels import ChannelLeases

    leases = ChannelLeases()
    kernel_id = f"remote-{time.time_ns()}"
    assert not binding.kernel_alive(kernel_id)
    leases.take(kernel_id)
    leases.take(kernel_id)  # a second channel of the same kernel
    assert binding.kernel_alive(kernel_id)
    leases.give_back(kernel_id)
    assert binding.kernel_alive(kernel_id)  # one channel is still connected
    leases.give_back(kernel_id)
    assert not binding.kernel_alive(kernel_id)
    binding.forget_lease(kernel_id)
