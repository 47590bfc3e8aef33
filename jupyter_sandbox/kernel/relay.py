"""The proxy kernel's relay: the front end's ZMQ sockets on one side, the sandbox's ipykernel on the other.

Messages are verified with one key and re-signed with the other; their JSON is only decoded where a
decision needs it (the request's header, a reply's parent). Until the sandbox is ready, requests are
held and `kernel_info` is answered here, so front ends never time out on a cold start; when the
sandbox dies, every request still waiting gets an error reply instead of hanging.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import queue
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from .. import __version__
from ..sandbox.manager import Sandbox
from .messages import DELIM, Signer, build, reply_type, split

log = logging.getLogger(__name__)

FRONT_CHANNELS = ("shell", "control", "stdin")
HANDSHAKE_RESEND_SECONDS = 0.5
DRAIN_BATCH = 256


class State(enum.Enum):
    STARTING = "starting"      # the sandbox is being created or started
    CONNECTING = "connecting"  # sockets connected, waiting for the inner kernel to answer
    READY = "ready"
    FAILED = "failed"          # the sandbox could not be brought up; the reason is kept
    DEAD = "dead"              # the container stopped; the next request starts it again


@dataclass
class Pending:
    channel: str
    idents: list[bytes]
    header: dict[str, Any]


@dataclass
class Held:
    channel: str
    idents: list[bytes]
    frames: list[bytes]  # [signature, header, parent, metadata, content, *buffers]
    header: dict[str, Any]


class Relay:
    def __init__(self, connection: dict[str, Any], lifecycle_factory: Callable[["Relay"], Any],
                 handshake_timeout: float = 60.0) -> None:
        self.connection = connection
        self.front_signer = Signer(connection.get("key", ""), connection.get("signature_scheme", "hmac-sha256"))
        self.session = uuid.uuid4().hex
        self.context = zmq.Context.instance()
        self.handshake_timeout = handshake_timeout
        self.state = State.STARTING
        self.failure = ""
        self.execution_count = 0
        self.kernel_info: dict[str, Any] | None = None
        self.pending: dict[str, Pending] = {}
        self.held: list[Held] = []
        self.progress_lines: list[str] = []
        self.progress_target: dict[str, Any] | None = None
        self.internal: set[str] = set()
        self.inner: dict[str, zmq.Socket] = {}
        self.inner_signer: Signer | None = None
        self.memory_limit = ""
        self.running = True
        self.events: "queue.SimpleQueue[tuple[str, Any]]" = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._bind_front()
        self.lifecycle = lifecycle_factory(self)

    # -- sockets ----------------------------------------------------------------------------

    def _bind_front(self) -> None:
        c = self.connection
        url = f"{c.get('transport', 'tcp')}://{c['ip']}"
        self.front: dict[str, zmq.Socket] = {}
        for name, kind in (("shell", zmq.ROUTER), ("control", zmq.ROUTER), ("stdin", zmq.ROUTER),
                           ("iopub", zmq.PUB), ("hb", zmq.REP)):
            sock = self.context.socket(kind)
            sock.setsockopt(zmq.LINGER, 1000)
            if kind == zmq.ROUTER:
                # Replies to a front end that went away are dropped, not queued.
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            sock.bind(f"{url}:{c[f'{name}_port']}")
            self.front[name] = sock

    def _connect_inner(self, sandbox: Sandbox) -> None:
        self._close_inner()
        info = sandbox.kernel_connection()
        self.inner_signer = Signer(info["key"], info["signature_scheme"])
        identity = uuid.uuid4().hex.encode()
        url = f"tcp://{info['ip']}"
        for name, kind in (("shell", zmq.DEALER), ("control", zmq.DEALER), ("stdin", zmq.DEALER), ("iopub", zmq.SUB)):
            sock = self.context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            if kind == zmq.DEALER:
                # The kernel sends input_request to the identity that sent the execute request,
                # so shell and stdin must share one.
                sock.setsockopt(zmq.IDENTITY, identity)
            else:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(f"{url}:{info[f'{name}_port']}")
            self.inner[name] = sock

    def _close_inner(self) -> None:
        for sock in self.inner.values():
            sock.close(linger=0)
        self.inner = {}

    # -- events from other threads ----------------------------------------------------------

    def post(self, kind: str, payload: Any = None) -> None:
        self.events.put((kind, payload))
        try:
            os.write(self._wake_write, b"\0")
        except OSError:
            pass

    def _handle_events(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while True:
            try:
                kind, payload = self.events.get_nowait()
            except queue.Empty:
                return
            handler = getattr(self, f"_on_{kind}", None)
            if handler is None:
                log.warning("unknown relay event %s", kind)
            else:
                handler(payload)

    def _on_progress(self, message: str) -> None:
        log.info("sandbox: %s", message)
        self.progress_lines.append(message)
        if self.progress_target is not None:
            self._stream(self.progress_target, f"[sandbox] {message}\n")

    def _on_ready(self, sandbox: Sandbox) -> None:
        self.memory_limit = sandbox.memory_limit
        self._connect_inner(sandbox)
        self.state = State.CONNECTING
        self._handshake_started = time.monotonic()
        self._handshake_sent = 0.0
        self._handshake_shell = False
        self._handshake_iopub = False
        self._handshake_tick()

    def _on_failed(self, message: str) -> None:
        self.state = State.FAILED
        self.failure = message
        log.error("sandbox failed: %s", message)
        self._fail_waiting(f"The sandbox could not be started: {message}")

    def _on_kernel_died(self, event: dict[str, Any]) -> None:
        if self.state not in (State.READY, State.CONNECTING):
            return
        signal_number = event.get("signal")
        if event.get("oom_killed"):
            why = f"it ran out of memory{f' (limit {self.memory_limit})' if self.memory_limit else ''}"
        elif signal_number:
            why = f"it was killed by signal {signal_number}"
        else:
            why = f"it exited with code {event.get('returncode')}"
        if event.get("restarted"):
            message = (f"The Python process in the sandbox died: {why}. A new one was started; "
                       "variables are gone, files in /home/sandbox are kept.")
            self._fail_waiting(message, keep_held=True)
            sandbox = self.lifecycle.sandbox
            if sandbox is not None:
                self._on_ready(sandbox)
        else:
            tail = (event.get("log_tail") or "")[-1500:]
            message = f"The Python process in the sandbox keeps dying: {why}. Its last output:\n{tail}"
            self.state = State.FAILED
            self.failure = message
            self._close_inner()
            self._fail_waiting(message)

    def _on_container_died(self, reason: str) -> None:
        if self.state not in (State.READY, State.CONNECTING):
            return
        self.state = State.DEAD
        self._close_inner()
        self.failure = f"The sandbox container stopped: {reason}."
        self._fail_waiting(self.failure + " Run a cell to start it again; files in /home/sandbox are kept.")

    def _on_interrupt(self, _: Any) -> None:
        self.lifecycle.interrupt()

    def _on_terminate(self, _: Any) -> None:
        self._shutdown(restart=False)

    # -- the inner kernel's handshake -------------------------------------------------------

    def _handshake_tick(self) -> None:
        now = time.monotonic()
        if now - self._handshake_started > self.handshake_timeout:
            self._on_failed(f"the kernel in the sandbox did not answer within {self.handshake_timeout:g} s")
            self._close_inner()
            return
        if now - self._handshake_sent >= HANDSHAKE_RESEND_SECONDS:
            self._handshake_sent = now
            frames = build(self.inner_signer, "kernel_info_request", {}, None, self.session)
            self.internal.add(json.loads(frames[2])["msg_id"])
            self.inner["shell"].send_multipart(frames)

    def _handshake_progress(self) -> None:
        if self._handshake_shell and self._handshake_iopub:
            self.state = State.READY
            self.internal.clear()
            self.progress_lines = []
            self.progress_target = None
            held, self.held = self.held, []
            for item in held:
                self._forward(item.channel, item.idents, item.frames, item.header)

    # -- front end → sandbox ----------------------------------------------------------------

    def _from_front(self, channel: str, frames: list[bytes]) -> None:
        try:
            idents, body = split(frames)
            signature, header_bytes, parent, metadata, content = body[:5]
        except ValueError:
            log.warning("dropping a malformed message on %s", channel)
            return
        if not self.front_signer.verify(signature, header_bytes, parent, metadata, content):
            log.warning("dropping a message with a bad signature on %s", channel)
            return
        header = json.loads(header_bytes)
        msg_type = header.get("msg_type", "")
        if channel == "control" and msg_type == "shutdown_request":
            self._reply(channel, idents, header, "shutdown_reply",
                        {"status": "ok", "restart": bool(json.loads(content).get("restart"))})
            self._shutdown(restart=bool(json.loads(content).get("restart")))
            return
        if self.state is State.READY:
            self._forward(channel, idents, body, header)
            return
        if channel == "stdin":
            return  # no input was asked for by a kernel that is not running
        if msg_type == "kernel_info_request":
            self._reply_kernel_info(channel, idents, header)
            return
        if msg_type == "interrupt_request":
            self._reply(channel, idents, header, "interrupt_reply", {"status": "ok"})
            return
        self.held.append(Held(channel, idents, body, header))
        if msg_type == "execute_request" and self.progress_target is None:
            self.progress_target = header
            if self.state is State.DEAD:
                self.progress_lines = [f"{self.failure} Starting it again..."]
            for line in self.progress_lines:
                self._stream(header, f"[sandbox] {line}\n")
        if self.state in (State.FAILED, State.DEAD):
            self.state = State.STARTING
            self.progress_lines = self.progress_lines if self.progress_target else []
            self.lifecycle.bring_up()

    def _forward(self, channel: str, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> None:
        signature, header_bytes, parent, metadata, content = body[:5]
        if channel != "stdin" and reply_type(header.get("msg_type", "")):
            self.pending[header["msg_id"]] = Pending(channel, idents, header)
        new_signature = self.inner_signer.sign(header_bytes, parent, metadata, content)
        self.inner[channel].send_multipart([DELIM, new_signature, *body[1:]], copy=False)

    # -- sandbox → front end ----------------------------------------------------------------

    def _verified_inner(self, frames: list[bytes]) -> tuple[list[bytes], list[bytes]] | None:
        try:
            prefix, body = split(frames)
            if len(body) < 5:
                raise ValueError
        except ValueError:
            log.warning("dropping a malformed message from the sandbox")
            return None
        if not self.inner_signer.verify(*body[:5]):
            log.warning("dropping a message from the sandbox with a bad signature")
            return None
        return prefix, body

    def _from_inner(self, channel: str, frames: list[bytes]) -> None:
        checked = self._verified_inner(frames)
        if checked is None:
            return
        _, body = checked
        header_bytes, parent_bytes, metadata, content = body[1:5]
        try:
            parent_id = json.loads(parent_bytes).get("msg_id")
        except (ValueError, AttributeError):
            return
        if channel == "stdin":
            pending = self.pending.get(parent_id)
            if pending is not None:
                self._send_front("stdin", pending.idents, body)
            return
        if parent_id in self.internal:
            self.internal.discard(parent_id)
            if self.state is State.CONNECTING:
                self.kernel_info = json.loads(content)
                self._handshake_shell = True
                self._handshake_progress()
            return
        pending = self.pending.pop(parent_id, None)
        if pending is None:
            return
        if pending.header.get("msg_type") == "execute_request":
            count = json.loads(content).get("execution_count")
            if isinstance(count, int):
                self.execution_count = count
        self._send_front(pending.channel, pending.idents, body)

    def _from_inner_iopub(self, frames: list[bytes]) -> None:
        checked = self._verified_inner(frames)
        if checked is None:
            return
        topic, body = checked
        if self.state is State.CONNECTING:
            self._handshake_iopub = True
            self._handshake_progress()
            if self.state is not State.READY:
                return
        if self.internal:
            try:
                if json.loads(body[2]).get("msg_id") in self.internal:
                    return
            except (ValueError, AttributeError):
                return
        signature = self.front_signer.sign(*body[1:5])
        self.front["iopub"].send_multipart([*topic, DELIM, signature, *body[1:]], copy=False)

    def _send_front(self, channel: str, idents: list[bytes], body: list[bytes]) -> None:
        signature = self.front_signer.sign(*body[1:5])
        self.front[channel].send_multipart([*idents, DELIM, signature, *body[1:]], copy=False)

    # -- messages the proxy makes itself ----------------------------------------------------

    def _publish(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None) -> None:
        frames = build(self.front_signer, msg_type, content, parent, self.session)
        self.front["iopub"].send_multipart([f"kernel.sandbox.{msg_type}".encode(), *frames])

    def _stream(self, parent: dict[str, Any], text: str, name: str = "stdout") -> None:
        self._publish("stream", {"name": name, "text": text}, parent)

    def _reply(self, channel: str, idents: list[bytes], parent: dict[str, Any], msg_type: str,
               content: dict[str, Any]) -> None:
        self._publish("status", {"execution_state": "busy"}, parent)
        frames = build(self.front_signer, msg_type, content, parent, self.session)
        self.front[channel].send_multipart([*idents, *frames])
        self._publish("status", {"execution_state": "idle"}, parent)

    def _reply_kernel_info(self, channel: str, idents: list[bytes], parent: dict[str, Any]) -> None:
        content = dict(self.kernel_info or {
            "status": "ok",
            "protocol_version": "5.3",
            "implementation": "jupyter-sandbox",
            "implementation_version": __version__,
            "language_info": {
                "name": "python", "version": "3", "mimetype": "text/x-python", "file_extension": ".py",
                "pygments_lexer": "ipython3", "codemirror_mode": {"name": "ipython", "version": 3},
                "nbconvert_exporter": "python",
            },
            "banner": "Python 3 in a jupyter-sandbox container",
            "help_links": [],
            # ipykernel ships debugpy; debug requests wait for the sandbox like any other.
            "debugger": True,
        })
        self._reply(channel, idents, parent, "kernel_info_reply", content)

    def _fail_waiting(self, message: str, keep_held: bool = False) -> None:
        """Answer every request that waits on the sandbox with an error that says why."""
        waiting = [(p.channel, p.idents, p.header) for p in self.pending.values()]
        if not keep_held:
            waiting += [(h.channel, h.idents, h.header) for h in self.held]
            self.held = []
            self.progress_target = None
        self.pending = {}
        self.internal.clear()
        for channel, idents, header in waiting:
            msg_type = header.get("msg_type", "")
            if msg_type == "execute_request":
                self._publish("status", {"execution_state": "busy"}, header)
                self._publish("error", self._error_content(message), header)
                self.execution_count += 1
                frames = build(self.front_signer, "execute_reply",
                               {**self._error_content(message), "execution_count": self.execution_count},
                               header, self.session)
                self.front[channel].send_multipart([*idents, *frames])
                self._publish("status", {"execution_state": "idle"}, header)
            elif reply_type(msg_type):
                self._reply(channel, idents, header, reply_type(msg_type), self._error_content(message))

    @staticmethod
    def _error_content(message: str) -> dict[str, Any]:
        return {"status": "error", "ename": "SandboxError", "evalue": message,
                "traceback": [f"\x1b[0;31mSandboxError\x1b[0m: {message}"]}

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self, restart: bool) -> None:
        self._publish("shutdown_reply", {"status": "ok", "restart": restart}, None)
        self.lifecycle.stop_watching()
        if not restart:
            self.lifecycle.remove()
        self.running = False

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        self.lifecycle.bring_up()
        poller = zmq.Poller()
        for name in ("shell", "control", "stdin", "hb"):
            poller.register(self.front[name], zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        registered: dict[str, zmq.Socket] = {}
        while self.running:
            if registered != self.inner:
                for sock in registered.values():
                    try:
                        poller.unregister(sock)
                    except KeyError:
                        pass
                for sock in self.inner.values():
                    poller.register(sock, zmq.POLLIN)
                registered = dict(self.inner)
            timeout = 100 if self.state is State.CONNECTING else 1000
            ready = dict(poller.poll(timeout))
            if self._wake_read in ready:
                self._handle_events()
            for name in ("control", "shell", "stdin"):
                sock = self.front[name]
                if ready.get(sock):
                    self._drain(sock, lambda frames, n=name: self._from_front(n, frames))
            if ready.get(self.front["hb"]):
                hb = self.front["hb"]
                hb.send_multipart(hb.recv_multipart())
            inner = self.inner
            for name in ("control", "shell", "stdin"):
                sock = inner.get(name)
                if sock is not None and ready.get(sock) and self.inner is inner:
                    self._drain(sock, lambda frames, n=name: self._from_inner(n, frames))
            sock = inner.get("iopub")
            if sock is not None and ready.get(sock) and self.inner is inner:
                self._drain(sock, self._from_inner_iopub)
            if self.state is State.CONNECTING:
                self._handshake_tick()
        self.close()

    def _drain(self, sock: zmq.Socket, handle: Callable[[list[bytes]], None]) -> None:
        for _ in range(DRAIN_BATCH):
            if not self.running or sock.closed:
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            handle(frames)

    def close(self) -> None:
        self._close_inner()
        for sock in self.front.values():
            sock.close(linger=1000)
        os.close(self._wake_read)
        os.close(self._wake_write)
