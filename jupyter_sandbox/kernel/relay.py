"""The proxy kernel's relay: the front end's ZMQ sockets on one side, the sandbox's ipykernel on the other.

Messages are verified with one key and re-signed with the other. Requests from the front end are
passed on without re-encoding; what comes back on iopub is decoded only as far as the output policy,
the per-cell limits and the `%sandbox` cells need. Until the sandbox is ready, requests are held and
`kernel_info` is answered here, so front ends never time out on a cold start; when the sandbox dies,
every request still waiting gets an error reply instead of hanging.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from .. import __version__
from ..sandbox.manager import Sandbox
from ..sandbox.spec import format_size, parse_size
from .cells import Segment, has_magic, may_have_magic, split_cell
from .inbound import InboundFilter
from .magics import MagicContext, MagicResult, SandboxMagics, complete
from .messages import DELIM, Signer, build, reply_type, split
from .output_policy import OutputPolicy
from .settings import SandboxKernel

log = logging.getLogger(__name__)

HANDSHAKE_RESEND_SECONDS = 0.5
# While cells run, the sandbox is marked in use this often (an idle reaper must not stop it).
ACTIVITY_SECONDS = 1.0
DRAIN_BATCH = 256
OUTPUT_MESSAGES = frozenset({"stream", "display_data", "update_display_data", "execute_result"})


class State(enum.Enum):
    STARTING = "starting"      # the sandbox is being created or started
    CONNECTING = "connecting"  # sockets connected, waiting for the inner kernel to answer
    READY = "ready"
    FAILED = "failed"          # the sandbox could not be brought up; the reason is kept
    DEAD = "dead"              # the container stopped; the next request starts it again


@dataclass
class Pending:
    """A request passed to the inner kernel whose reply goes back to `idents`."""
    channel: str
    idents: list[bytes]
    header: dict[str, Any]


@dataclass
class Held:
    """A request that waits for the sandbox."""
    channel: str
    idents: list[bytes]
    frames: list[bytes]  # [signature, header, parent, metadata, content, *buffers]
    header: dict[str, Any]


@dataclass
class Cell:
    """An execute request from the front end, while it runs: for time and output limits."""
    header: dict[str, Any]
    idents: list[bytes]
    started: float | None = None
    output_bytes: int = 0
    capped: bool = False
    interrupted_at: float | None = None
    restarted: bool = False


@dataclass
class HostCell:
    """A cell with `%sandbox` lines: the proxy runs it segment by segment."""
    cell: Cell
    header_bytes: bytes
    segments: list[Segment]
    allow_stdin: bool
    execution_count: int
    index: int = 0
    magic_running: bool = False
    sub_id: str | None = None
    sub_reply: dict[str, Any] | None = None
    sub_idle: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)


class Relay:
    def __init__(self, connection: dict[str, Any], lifecycle_factory: Callable[["Relay"], Any],
                 handshake_timeout: float = 60.0, settings: SandboxKernel | None = None) -> None:
        self.connection = connection
        self.front_signer = Signer(connection.get("key", ""), connection.get("signature_scheme", "hmac-sha256"))
        self.session = uuid.uuid4().hex
        self.context = zmq.Context.instance()
        self.handshake_timeout = handshake_timeout
        self.settings = settings or SandboxKernel()
        self.policy = OutputPolicy(self.settings.output_policy)
        self.inbound = InboundFilter(self.policy, self.settings.widget_modules)
        limit = self.settings.output_limit
        self.output_limit = 0 if str(limit).strip() in ("", "0") else parse_size(limit, "output_limit")
        self.cell_timeout = float(self.settings.cell_timeout)
        self.magics = SandboxMagics()
        self.state = State.STARTING
        self.failure = ""
        self.execution_count = 0
        self.kernel_info: dict[str, Any] | None = None
        self.pending: dict[str, Pending] = {}
        self.held: list[Held] = []
        self.cells: dict[str, Cell] = {}
        self.host_cell: HostCell | None = None
        self.sub_requests: dict[str, HostCell] = {}
        self.deferred: list[Held] = []
        self.progress_lines: list[str] = []
        self.progress_target: dict[str, Any] | None = None
        self.internal: set[str] = set()
        self.inner: dict[str, zmq.Socket] = {}
        self.inner_signer: Signer | None = None
        self.memory_limit = ""
        self.running = True
        self.restarting = False
        self._announced_starting = 0.0
        self._last_touch = 0.0
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
            self._on_kernel_restarted(f"The Python process in the sandbox died: {why}. A new one was started; "
                                      "variables are gone, files in /home/sandbox are kept.")
        else:
            tail = self.policy.text((event.get("log_tail") or "")[-1500:])  # the sandbox's own output
            message = f"The Python process in the sandbox keeps dying: {why}. Its last output:\n{tail}"
            self.state = State.FAILED
            self.failure = message
            self._close_inner()
            self._fail_waiting(message)

    def _on_kernel_restarted(self, message: str) -> None:
        self._fail_waiting(message, keep_held=True)
        sandbox = self.lifecycle.sandbox
        if sandbox is not None:
            self._on_ready(sandbox)

    def _on_container_died(self, reason: str) -> None:
        if self.state not in (State.READY, State.CONNECTING):
            return
        self.state = State.DEAD
        self._close_inner()
        self.failure = f"The sandbox container stopped: {reason}."
        self._fail_waiting(self.failure + " Run a cell to start it again; files in /home/sandbox are kept.")

    def _on_interrupt(self, _: Any) -> None:
        if self.host_cell is not None:
            self.host_cell.cancel.set()
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
                self._route(item.channel, item.idents, item.frames, item.header)
            self._advance_host_cell()

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
            restart = bool(json.loads(content).get("restart"))
            self._reply(channel, idents, header, "shutdown_reply", {"status": "ok", "restart": restart})
            self._shutdown(restart=restart)
            return
        if channel == "control" and msg_type == "interrupt_request" and self.host_cell is not None:
            self.host_cell.cancel.set()
        if self.held and channel == "shell":
            self._hold(channel, idents, body, header)
            return
        self._route(channel, idents, body, header)

    def _route(self, channel: str, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> None:
        """Send a request on, run it here, or hold it, depending on what it is and on the sandbox."""
        msg_type = header.get("msg_type", "")
        if channel == "shell" and msg_type == "execute_request":
            if self.host_cell is not None:
                self.deferred.append(Held(channel, idents, body, header))
                return
            if may_have_magic(body[4]) and self._start_host_cell(idents, body, header):
                return
        if channel == "shell" and msg_type == "complete_request" and may_have_magic(body[4]):
            if self._complete_here(idents, body, header):
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
        self._hold(channel, idents, body, header)

    def _hold(self, channel: str, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> None:
        self.held.append(Held(channel, idents, body, header))
        if header.get("msg_type") == "execute_request":
            self._show_progress_in(header)
        self._wake_sandbox()

    def _show_progress_in(self, header: dict[str, Any]) -> None:
        if self.progress_target is not None:
            return
        self.progress_target = header
        if self.state is State.DEAD:
            self.progress_lines = [f"{self.failure} Starting it again..."]
        for line in self.progress_lines:
            self._stream(header, f"[sandbox] {line}\n")

    def _wake_sandbox(self) -> None:
        if self.state in (State.FAILED, State.DEAD):
            self.state = State.STARTING
            if self.progress_target is None:
                self.progress_lines = []
            self.lifecycle.bring_up()

    def _forward(self, channel: str, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> None:
        signature, header_bytes, parent, metadata, content = body[:5]
        msg_type = header.get("msg_type", "")
        if channel != "stdin" and reply_type(msg_type):
            self.pending[header["msg_id"]] = Pending(channel, idents, header)
            if msg_type == "execute_request":
                self.cells[header["msg_id"]] = Cell(header, idents)
        new_signature = self.inner_signer.sign(header_bytes, parent, metadata, content)
        self.inner[channel].send_multipart([DELIM, new_signature, *body[1:]], copy=False)

    def _complete_here(self, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> bool:
        content = json.loads(body[4])
        code, cursor = str(content.get("code", "")), int(content.get("cursor_pos", 0))
        line_start = code.rfind("\n", 0, cursor) + 1
        line_end = code.find("\n", cursor)
        line = code[line_start: len(code) if line_end < 0 else line_end]
        found = complete(line, cursor - line_start)
        if found is None:
            return False
        matches, start = found
        self._reply("shell", idents, header, "complete_reply", {
            "status": "ok", "matches": matches, "cursor_start": line_start + start, "cursor_end": cursor,
            "metadata": {}})
        return True

    # -- cells with %sandbox lines ----------------------------------------------------------

    def _start_host_cell(self, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> bool:
        content = json.loads(body[4])
        code = str(content.get("code", ""))
        segments = split_cell(code)
        if not has_magic(segments):
            return False
        self.execution_count += 1
        cell = Cell(header, idents, started=time.monotonic())
        host = HostCell(cell, body[1], segments, bool(content.get("allow_stdin")), self.execution_count)
        self.host_cell = host
        self.cells[header["msg_id"]] = cell
        self._publish("status", {"execution_state": "busy"}, header)
        self._publish("execute_input", {"code": code, "execution_count": host.execution_count}, header)
        self._advance_host_cell()
        return True

    def _advance_host_cell(self) -> None:
        host = self.host_cell
        if host is None or host.magic_running or host.sub_id is not None:
            return
        if host.index >= len(host.segments):
            self._finish_host_cell(None)
            return
        segment = host.segments[host.index]
        if segment.kind == "code":
            if self.state is not State.READY:
                self._show_progress_in(host.cell.header)
                self._wake_sandbox()
                return  # continued by _handshake_progress
            self._send_code_segment(host, segment.text)
            return
        host.magic_running = True
        context = MagicContext(
            manager=self.lifecycle.manager,
            settings=self.settings,
            sandbox=self.lifecycle.sandbox,
            cell_timeout=self.cell_timeout,
            write=lambda name, text: self.post("host_output", (host, name, text)),
            cancel=host.cancel,
            stop_watching=self.lifecycle.stop_watching,
            delete=self.lifecycle.delete,
        )

        def run() -> None:
            try:
                result = self.magics.run(segment.text, segment.body if segment.kind == "cell" else None, context)
            except Exception as exc:  # a bug must not leave the cell busy forever
                log.exception("%%sandbox failed")
                result = MagicResult(error=f"%sandbox failed unexpectedly: {exc!r}")
            self.post("host_step", (host, result))

        threading.Thread(target=run, name="sandbox-magic", daemon=True).start()

    def _send_code_segment(self, host: HostCell, code: str) -> None:
        frames = build(self.inner_signer, "execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": host.allow_stdin, "stop_on_error": True}, None, self.session)
        header = json.loads(frames[2])
        host.sub_id, host.sub_reply, host.sub_idle = header["msg_id"], None, False
        self.sub_requests[host.sub_id] = host
        self.cells[host.sub_id] = host.cell
        self.pending[host.sub_id] = Pending("shell", host.cell.idents, host.cell.header)
        self.inner["shell"].send_multipart(frames)

    def _on_host_output(self, payload: tuple[HostCell, str, str]) -> None:
        host, name, text = payload
        if host is self.host_cell and self._within_output_limit(host.cell, len(text)):
            self._stream(host.cell.header, text, name)

    def _on_host_step(self, payload: tuple[HostCell, MagicResult]) -> None:
        host, result = payload
        if host is not self.host_cell:
            return
        host.magic_running = False
        if result.cell_timeout is not None:
            self.cell_timeout = result.cell_timeout
        if result.stopped or result.deleted:
            self.state = State.DEAD
            self.failure = ("The sandbox was deleted (%sandbox delete)." if result.deleted
                            else "The sandbox was stopped (%sandbox stop).")
            self._close_inner()
        if result.reconnect is not None:
            self.lifecycle.adopt(result.reconnect)
            self._on_ready(result.reconnect)
        if result.error:
            error = self._error_content(self.policy.text(result.error))  # it may quote the sandbox
            self._publish("error", error, host.cell.header)
            self._finish_host_cell(error)
            return
        host.index += 1
        self._advance_host_cell()

    def _host_sub_progress(self, host: HostCell) -> None:
        """A code segment is done when both its reply and its idle status have arrived."""
        if host.sub_reply is None or not host.sub_idle:
            return
        reply, sub_id = host.sub_reply, host.sub_id
        host.sub_id = None
        self.sub_requests.pop(sub_id, None)
        self.cells.pop(sub_id, None)
        if reply.get("status") != "ok":
            error = {"status": "error", "ename": reply.get("ename", "Error"), "evalue": reply.get("evalue", ""),
                     "traceback": reply.get("traceback", [])}
            self._finish_host_cell(error)
            return
        host.index += 1
        self._advance_host_cell()

    def _finish_host_cell(self, error: dict[str, Any] | None) -> None:
        host = self.host_cell
        if host is None:
            return
        self.host_cell = None
        header = host.cell.header
        self.cells.pop(header["msg_id"], None)
        content = {**(error or {"status": "ok", "user_expressions": {}, "payload": []}),
                   "execution_count": host.execution_count}
        frames = build(self.front_signer, "execute_reply", content, header, self.session)
        self.front["shell"].send_multipart([*host.cell.idents, *frames])
        self._publish("status", {"execution_state": "idle"}, header)
        deferred, self.deferred = self.deferred, []
        for index, item in enumerate(deferred):
            self._route(item.channel, item.idents, item.frames, item.header)
            if self.host_cell is not None:
                self.deferred = deferred[index + 1:] + self.deferred
                break

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
        body = self.inbound.frames(channel, body)
        if body is None:
            return
        try:
            parent_id = json.loads(body[2]).get("msg_id")
        except (ValueError, AttributeError):
            return
        if channel == "stdin":
            pending = self.pending.get(parent_id)
            if pending is not None:
                host = self.sub_requests.get(parent_id)
                if host is not None:
                    body = [*body[:2], host.header_bytes, *body[3:]]
                self._send_front("stdin", pending.idents, body)
            return
        if parent_id in self.internal:
            self.internal.discard(parent_id)
            if self.state is State.CONNECTING:
                self.kernel_info = json.loads(body[4])
                self._handshake_shell = True
                self._handshake_progress()
            return
        pending = self.pending.pop(parent_id, None)
        if pending is None:
            return
        host = self.sub_requests.get(parent_id)
        if host is not None:
            host.sub_reply = json.loads(body[4])
            self._host_sub_progress(host)
            return
        if pending.header.get("msg_type") == "execute_request":
            count = json.loads(body[4]).get("execution_count")
            if isinstance(count, int):
                self.execution_count = count
        self._send_front(pending.channel, pending.idents, body)

    def _from_inner_iopub(self, frames: list[bytes]) -> None:
        checked = self._verified_inner(frames)
        if checked is None:
            return
        topic, body = checked
        body = self.inbound.frames("iopub", body)
        if body is None:
            return
        try:
            msg_type = json.loads(body[1]).get("msg_type")
            parent_id = json.loads(body[2]).get("msg_id")
        except (ValueError, AttributeError):
            return
        if self.state is State.CONNECTING:
            self._handshake_iopub = True
            self._handshake_progress()
            if self.state is not State.READY:
                return
        if parent_id in self.internal:
            return
        cell = self.cells.get(parent_id)
        host = self.sub_requests.get(parent_id)
        if msg_type == "status" and cell is not None:
            state = json.loads(body[4]).get("execution_state")
            if state == "busy" and cell.started is None:
                cell.started = time.monotonic()
            elif state == "idle":
                if host is not None:
                    host.sub_idle = True
                    self._host_sub_progress(host)
                else:
                    self.cells.pop(parent_id, None)
        if host is not None:
            if msg_type in ("status", "execute_input"):
                return  # the proxy speaks for the whole cell
            body = [*body[:2], host.header_bytes, *body[3:]]
        if cell is not None and msg_type in OUTPUT_MESSAGES:
            if not self._within_output_limit(cell, len(body[4]) + sum(len(b) for b in body[5:])):
                return
        signature = self.front_signer.sign(*body[1:5])
        self.front["iopub"].send_multipart([*topic, DELIM, signature, *body[1:]], copy=False)

    def _within_output_limit(self, cell: Cell, size: int) -> bool:
        if not self.output_limit:
            return True
        cell.output_bytes += size
        if cell.output_bytes <= self.output_limit:
            return True
        if not cell.capped:
            cell.capped = True
            self._stream(cell.header, f"\n[sandbox] this cell's output passed the limit of "
                                      f"{format_size(self.output_limit)}; the rest of it is not shown\n", "stderr")
        return False

    def _send_front(self, channel: str, idents: list[bytes], body: list[bytes]) -> None:
        signature = self.front_signer.sign(*body[1:5])
        self.front[channel].send_multipart([*idents, DELIM, signature, *body[1:]], copy=False)

    # -- per-cell time limit ----------------------------------------------------------------

    def _mark_activity(self) -> None:
        now = time.monotonic()
        if self.cells and now - self._last_touch >= ACTIVITY_SECONDS:
            self._last_touch = now
            self.lifecycle.touch()

    def _check_time_limits(self) -> None:
        self._mark_activity()
        if not self.cell_timeout or not self.cells:
            return
        now = time.monotonic()
        for cell in list(self.cells.values()):
            if cell.started is None or cell.restarted:
                continue
            if cell.interrupted_at is None and now - cell.started > self.cell_timeout:
                cell.interrupted_at = now
                self._stream(cell.header, f"\n[sandbox] the cell ran longer than its limit of "
                                          f"{self.cell_timeout:g} s and was interrupted\n", "stderr")
                self._on_interrupt(None)
            elif cell.interrupted_at is not None and now - cell.interrupted_at > self.settings.interrupt_grace:
                cell.restarted = True
                self.lifecycle.restart_kernel(
                    f"The cell ran longer than its limit of {self.cell_timeout:g} s and did not stop within "
                    f"{self.settings.interrupt_grace:g} s of the interrupt, so the Python process in the sandbox "
                    "was restarted: variables are gone, files in /home/sandbox are kept.")

    # -- messages the proxy makes itself ----------------------------------------------------

    def _publish(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None) -> None:
        frames = build(self.front_signer, msg_type, content, parent, self.session)
        self.front["iopub"].send_multipart([f"kernel.sandbox.{msg_type}".encode(), *frames])

    def _stream(self, parent: dict[str, Any], text: str, name: str = "stdout") -> None:
        # The proxy's own streams carry sandbox text too (%%sandbox output, progress, logs).
        self._publish("stream", {"name": name, "text": self.policy.text(text)}, parent)

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
        host = self.host_cell
        waiting = [(p.channel, p.idents, p.header) for sub_id, p in self.pending.items()
                   if sub_id not in self.sub_requests]
        if not keep_held:
            waiting += [(h.channel, h.idents, h.header) for h in self.held]
            self.held = []
            self.progress_target = None
        waiting += [(d.channel, d.idents, d.header) for d in self.deferred]
        self.deferred = []
        self.pending = {}
        self.cells = {}
        self.sub_requests = {}
        self.internal.clear()
        if host is not None:
            host.cancel.set()
            self._publish("error", self._error_content(message), host.cell.header)
            self._finish_host_cell(self._error_content(message))
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
        if self.host_cell is not None:
            self.host_cell.cancel.set()
        self.lifecycle.stop_watching()
        self.restarting = restart
        if not restart:
            self.lifecycle.release()
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
            timed = self.state in (State.STARTING, State.CONNECTING) or bool(self.cells)
            ready = dict(poller.poll(100 if timed else 1000))
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
            self._announce_starting()
            self._check_time_limits()
        self.close()

    def _announce_starting(self) -> None:
        """While the sandbox comes up, the front end's kernel indicator says 'starting' (repeated,
        since a front end may connect at any moment); 'idle' once it is ready. A waiting cell's own
        busy status says more, so nothing is announced then."""
        starting = self.state in (State.STARTING, State.CONNECTING) and not self.cells
        now = time.monotonic()
        if starting and now - self._announced_starting >= 0.5:
            self._announced_starting = now
            self._publish("status", {"execution_state": "starting"}, None)
        elif not starting and self._announced_starting and not self.cells:
            # Ready, or failed (the waiting cell got the reason): either way nothing is starting now.
            self._announced_starting = 0.0
            self._publish("status", {"execution_state": "idle"}, None)

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
