"""The proxy kernel's relay: the front end's ZMQ sockets on one side, the sandbox's ipykernel on the other.

Messages are verified with one key and re-signed with the other. Requests from the front end are
passed on without re-encoding; what comes back on iopub is decoded only as far as the output policy,
the per-cell limits and the `%sandbox` cells need. Until the sandbox is ready, requests are held, and
the few a front end gives only a moment (kernel_info, history, is_complete) are answered here as the
inner kernel would answer them; when the sandbox dies, every request still waiting gets an error reply
instead of hanging.

The front end must not be able to tell this kernel from a local ipykernel: the relay keeps ipykernel's
execution counts (one per cell that stores history, `%sandbox` cells included; the inner kernel is
kept at the same count, so `Out[n]` and `_n` agree), its order of replies and statuses, and its
aborting of queued cells after an error.
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
from datetime import datetime, timezone
from typing import Any, Callable

import zmq

from .. import __version__
from ..sandbox.manager import Sandbox
from ..sandbox.spec import format_size, parse_size
from . import kernel_info as kernel_info_cache
from . import offline
from .cells import Segment, has_magic, magic_waits, may_have_magic, split_cell
from .inbound import InboundFilter
from .magics import MagicContext, MagicResult, SandboxMagics, complete
from .messages import DELIM, Signer, build, dumps, reply_type, split
from .output_policy import OutputPolicy
from .settings import SandboxKernel

log = logging.getLogger(__name__)

HANDSHAKE_RESEND_SECONDS = 0.5
# When the image's kernel info is not recorded yet (the image's first start on this host), a
# kernel_info request waits for the sandbox's own answer this long at most: front ends wait for it
# before sending anything (JupyterLab, nbclient and Jupyter Server give up after 60 s), and a first
# start may include building the image. Then it gets a minimal answer and the cells show progress.
KERNEL_INFO_WAIT_SECONDS = 10.0
# While cells run, the sandbox is marked in use this often (an idle reaper must not stop it).
ACTIVITY_SECONDS = 1.0
DRAIN_BATCH = 256
# Shell requests an ipykernel answers with a reply (protocol 5.x, kernel subshells included).
ANSWERED_REQUESTS = frozenset(
    {
        "execute_request",
        "inspect_request",
        "complete_request",
        "history_request",
        "is_complete_request",
        "comm_info_request",
        "kernel_info_request",
        "shutdown_request",
        "interrupt_request",
        "debug_request",
        "usage_request",
        "create_subshell_request",
        "delete_subshell_request",
        "list_subshell_request",
        "connect_request",
    }
)
OUTPUT_MESSAGES = frozenset({"stream", "display_data", "update_display_data", "execute_result"})


class State(enum.Enum):
    STARTING = "starting"  # the sandbox is being created or started
    CONNECTING = "connecting"  # sockets connected, waiting for the inner kernel to answer
    READY = "ready"
    FAILED = "failed"  # the sandbox could not be brought up; the reason is kept
    DEAD = "dead"  # the container stopped; the next request starts it again


@dataclass
class Pending:
    """A request passed to the inner kernel whose reply goes back to `idents`."""

    channel: str
    idents: list[bytes]
    header: dict[str, Any]
    stop_on_error: bool = False  # an execute request whose error aborts the queued cells
    extra_matches: list[str] = field(default_factory=list)  # `%sandbox` added to a completion
    extra_typed: tuple[int, str] = (0, "")  # where the line starts, and what was typed on it


@dataclass
class Held:
    """A request that waits: for the sandbox, or (on shell) for the requests before it."""

    channel: str
    idents: list[bytes]
    frames: list[bytes]  # [signature, header, parent, metadata, content, *buffers]
    header: dict[str, Any]
    abort: bool = False  # an execute request queued behind a cell that failed with stop_on_error


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
    busy_sent: bool = False  # the proxy said busy while it waited for the sandbox


@dataclass
class HostCell:
    """A cell with `%sandbox` lines: the proxy runs it segment by segment.

    Its code segments run in the sandbox as execute requests of their own; the last of them stores
    history, so the inner kernel counts the cell once. A cell with no code there is counted by a
    final request of comments only (no `%sandbox` text enters the sandbox), which also evaluates the
    cell's user_expressions."""

    cell: Cell
    header_bytes: bytes
    segments: list[Segment]
    allow_stdin: bool
    execution_count: int
    silent: bool = False
    counted: bool = True
    stop_on_error: bool = True
    user_expressions: dict[str, Any] = field(default_factory=dict)
    index: int = 0
    magic_running: bool = False
    sub_id: str | None = None
    sub_reply: dict[str, Any] | None = None
    sub_idle: bool = False
    sub_counts: bool = False
    committed: bool = False  # the inner kernel has counted this cell
    evaluated: dict[str, Any] | None = None  # user_expressions, as the inner kernel evaluated them
    finishing: dict[str, Any] | None = None  # the final request runs; then the cell ends with this
    cancel: threading.Event = field(default_factory=threading.Event)

    def last_code_index(self) -> int:
        return max((i for i, s in enumerate(self.segments) if s.kind == "code"), default=-1)


class Relay:
    def __init__(
        self,
        connection: dict[str, Any],
        lifecycle_factory: Callable[[Relay], Any],
        handshake_timeout: float = 60.0,
        settings: SandboxKernel | None = None,
    ) -> None:
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
        # The count of the last cell that stored history, as the front end saw it.
        self.execution_count = 0
        self.kernel_info: dict[str, Any] | None = None
        self.pending: dict[str, Pending] = {}
        # Shell requests are answered in the order they came, as one kernel's shell answers them:
        # those that cannot go on yet wait in `queue` (behind a %sandbox cell, for the sandbox, or a
        # %sandbox cell for the inner kernel's replies still due, `inflight`).
        self.queue: list[Held] = []
        self.inflight: dict[str, int] = {}  # msg_id: how many of (reply, idle status) are still due
        self._pump_due = False
        self._kernel_info_deadline = time.monotonic() + KERNEL_INFO_WAIT_SECONDS
        self._kernel_info_overdue = False
        self.busy_announced: set[str] = set()  # held cells the proxy already said busy for
        self.held: list[Held] = []  # control requests that wait for the sandbox
        self.cells: dict[str, Cell] = {}
        self.host_cell: HostCell | None = None
        self.sub_requests: dict[str, HostCell] = {}
        self.progress_lines: list[str] = []
        self.progress_target: dict[str, Any] | None = None
        self.internal: set[str] = set()
        self.inner: dict[str, zmq.Socket] = {}
        self.inner_signer: Signer | None = None
        self.memory_limit = ""
        self.running = True
        self.restarting = False
        self._last_touch = 0.0
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._bind_front()
        self.lifecycle = lifecycle_factory(self)

    # -- sockets ----------------------------------------------------------------------------

    def _bind_front(self) -> None:
        c = self.connection
        url = f"{c.get('transport', 'tcp')}://{c['ip']}"
        self.front: dict[str, zmq.Socket] = {}
        # iopub is XPUB, as in ipykernel 7: each new subscription is greeted with iopub_welcome.
        for name, kind in (
            ("shell", zmq.ROUTER),
            ("control", zmq.ROUTER),
            ("stdin", zmq.ROUTER),
            ("iopub", zmq.XPUB),
            ("hb", zmq.REP),
        ):
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
        # Requests the proxy sent the old kernel: whatever it still says about them is dropped.
        self.internal.clear()

    def _welcome(self, frames: list[bytes]) -> None:
        """Subscription events on the front end's XPUB: greet each new subscriber, as ipykernel 7 does."""
        for frame in frames:
            if not frame or frame[0] != 1:
                continue
            try:
                topic = frame[1:].decode()
            except UnicodeDecodeError:
                continue
            message = build(self.front_signer, "iopub_welcome", {"subscription": topic}, None, self.session)
            self.front["iopub"].send_multipart([topic.encode(), *message] if topic else message)

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
            self._on_kernel_restarted(
                f"The Python process in the sandbox died: {why}. A new one was started; "
                "variables are gone, files in /home/sandbox are kept."
            )
        else:
            tail = self.policy.text((event.get("log_tail") or "")[-1500:])  # the sandbox's own output
            message = f"The Python process in the sandbox keeps dying: {why}. Its last output:\n{tail}"
            self.state = State.FAILED
            self.failure = message
            self._close_inner()
            self._fail_waiting(message)

    def _on_kernel_restarted(self, message: str) -> None:
        # Not READY while the old kernel's requests are failed: nothing waiting goes to it now.
        self.state = State.STARTING
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
        self._interrupt_waiting()
        self.lifecycle.interrupt()

    def _interrupt_waiting(self) -> None:
        """An interrupt while the sandbox starts stops the cell that waits for it (the one the front end
        shows busy), as it would stop a running cell; the sandbox goes on starting."""
        if self.state is State.READY:
            return
        host = self.host_cell
        if host is not None:
            if not host.magic_running and host.sub_id is None and host.finishing is None:
                error = _error_reply("interrupted while the sandbox was starting", "KeyboardInterrupt")
                if not host.silent:
                    self._publish("error", _error_output(error["evalue"], error["ename"]), host.cell.header)
                self._finish_host_cell(error)
            return
        index = next(
            (
                i
                for i, item in enumerate(self.queue)
                if item.header.get("msg_type") == "execute_request" and not item.abort
            ),
            None,
        )
        if index is None:
            return
        item = self.queue.pop(index)
        msg_id = item.header.get("msg_id", "")
        if self.progress_target is not None and self.progress_target.get("msg_id") == msg_id:
            self.progress_target = None
        if msg_id in self.busy_announced:
            self.busy_announced.discard(msg_id)
        else:
            self._publish("status", {"execution_state": "busy"}, item.header)
        request = _content(item.frames)
        silent = bool(request.get("silent"))
        if request.get("store_history", not silent) and not silent:
            self.execution_count += 1  # a cell stopped by an interrupt counts, as in ipykernel
        error = _error_reply("interrupted while the sandbox was starting", "KeyboardInterrupt")
        if not silent:
            self._publish("error", _error_output(error["evalue"], error["ename"]), item.header)
        frames = build(
            self.front_signer,
            "execute_reply",
            {**error, "execution_count": self.execution_count, "user_expressions": {}, "payload": []},
            item.header,
            self.session,
            metadata=self._reply_metadata("error"),
        )
        self.front["shell"].send_multipart([*item.idents, *frames])
        self._publish("status", {"execution_state": "idle"}, item.header)
        if request.get("stop_on_error", True) and not silent:
            self._abort_queued()
        self._pump()

    def _on_terminate(self, _: Any) -> None:
        self._shutdown(restart=False)

    def _on_kernel_info_known(self, info: dict[str, Any] | None) -> None:
        if info is not None and self.kernel_info is None:
            self.kernel_info = info
            self._release_held()
            self._pump()

    def _look_up_kernel_info(self) -> None:
        """In the background (a Docker call): what the image's kernel said the last time."""
        info = None
        try:
            manager = self.lifecycle.manager
            image_id = manager.backend.image_id(manager.default_spec().image)
            info = kernel_info_cache.load(image_id or "")
        except Exception:  # no engine, a bad image setting: the handshake will tell
            log.debug("no recorded kernel info for the sandbox image", exc_info=True)
        self.post("kernel_info_known", info)

    # -- the inner kernel's handshake -------------------------------------------------------

    def _handshake_tick(self) -> None:
        now = time.monotonic()
        if now - self._handshake_started > self.handshake_timeout:
            self._on_failed(f"the kernel in the sandbox did not answer within {self.handshake_timeout:g} s")
            self._close_inner()
            return
        if now - self._handshake_sent >= HANDSHAKE_RESEND_SECONDS:
            self._handshake_sent = now
            self._send_internal("kernel_info_request", {})

    def _handshake_progress(self) -> None:
        if self._handshake_shell and self._handshake_iopub:
            self.state = State.READY
            self.progress_lines = []
            self.progress_target = None
            self._sync_inner_count()
            self._release_held()
            self._advance_host_cell()
            self._pump()

    def _kernel_info_answerable(self) -> bool:
        return bool(self.kernel_info) or self._kernel_info_overdue or self.state in (State.FAILED, State.DEAD)

    def _check_kernel_info_wait(self) -> None:
        if (
            self.kernel_info is None
            and not self._kernel_info_overdue
            and self.state is not State.READY
            and time.monotonic() > self._kernel_info_deadline
        ):
            self._kernel_info_overdue = True
            self._release_held()
            self._pump()

    def _release_held(self) -> None:
        held, self.held = self.held, []
        for item in held:
            self._route(item.channel, item.idents, item.frames, item.header)

    def _learn_kernel_info(self, content: bytes) -> None:
        info = kernel_info_cache.sanitize(_loads(content))
        if info is None:
            return
        self.kernel_info = info
        sandbox = self.lifecycle.sandbox
        if sandbox is not None and sandbox.image_id:
            kernel_info_cache.store(sandbox.image_id, info)

    def _sync_inner_count(self) -> None:
        """A new inner kernel counts from 1; this kernel's front end has seen more cells (the sandbox
        was restarted or started again): the inner kernel goes on from where the front end is."""
        if self.execution_count <= 0:
            return
        self._send_internal(
            "execute_request",
            {
                "code": f"get_ipython().execution_count = {int(self.execution_count) + 1}",
                "silent": True,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": False,
            },
        )

    def _send_internal(self, msg_type: str, content: dict[str, Any]) -> None:
        """A request of the proxy's own: its reply and everything the kernel says about it are dropped."""
        frames = build(self.inner_signer, msg_type, content, None, self.session)
        self.internal.add(json.loads(frames[2])["msg_id"])
        self.inner["shell"].send_multipart(frames)

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
        try:
            header = json.loads(header_bytes)
            if not isinstance(header, dict) or not isinstance(header.get("msg_id", ""), str):
                raise ValueError
        except ValueError:
            log.warning("dropping a message with a malformed header on %s", channel)
            return
        msg_type = header.get("msg_type", "")
        if channel == "control" and msg_type == "shutdown_request":
            restart = bool(_content(body).get("restart"))
            self._reply(channel, idents, header, "shutdown_reply", {"status": "ok", "restart": restart})
            self._shutdown(restart=restart, parent=header)
            return
        if channel == "control" and msg_type == "interrupt_request":
            if self.host_cell is not None:
                self.host_cell.cancel.set()
            self._interrupt_waiting()
        self._route(channel, idents, body, header)

    def _route(self, channel: str, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> None:
        """Send a request on, run it here, or let it wait, depending on what it is and on the sandbox."""
        msg_type = header.get("msg_type", "")
        if channel == "shell":
            item = Held(channel, idents, body, header)
            if self.queue or self.host_cell is not None or not self._try_run(item):
                self._enqueue(item)
            return
        if self.state is State.READY:
            self._forward(channel, idents, body, header)
            return
        if channel == "stdin":
            return  # no input was asked for by a kernel that is not running
        if msg_type == "kernel_info_request" and self._kernel_info_answerable():
            self._reply(channel, idents, header, "kernel_info_reply", self.kernel_info or self._unknown_kernel_info())
            return
        if msg_type == "interrupt_request":
            self._reply(channel, idents, header, "interrupt_reply", {"status": "ok"})
            return
        self.held.append(Held(channel, idents, body, header))
        if msg_type != "kernel_info_request":
            self._wake_sandbox()

    def _try_run(self, item: Held) -> bool:
        """Run a shell request now if it can go; False if it must wait (at the head of the queue)."""
        idents, body, header = item.idents, item.frames, item.header
        msg_type = header.get("msg_type", "")
        if msg_type == "execute_request":
            if item.abort:
                if self.inflight:
                    return False  # its reply comes after those of the requests before it
                self._send_aborted(item)
                return True
            segments = _host_segments(body)
            if segments is not None:
                if self.inflight:
                    return False  # a %sandbox cell runs after the cells sent before it have finished
                self._start_host_cell(idents, body, header, segments)
                return True
        if msg_type == "complete_request" and self._complete_here(idents, body, header):
            return True
        if self.state is State.READY:
            self._forward("shell", idents, body, header)
            return True
        if msg_type == "kernel_info_request" and self._kernel_info_answerable():
            # What the image's kernel says; while that is not known, the request waits for the handshake.
            self._reply("shell", idents, header, "kernel_info_reply", self.kernel_info or self._unknown_kernel_info())
            return True
        # Asked with a short timeout by front ends (jupyter console): answered now, as a fresh
        # ipykernel would answer them.
        if msg_type == "history_request":
            self._reply("shell", idents, header, "history_reply", offline.history_reply())
            return True
        if msg_type == "is_complete_request":
            code = _content(body).get("code")
            self._reply(
                "shell", idents, header, "is_complete_reply", offline.is_complete(code if isinstance(code, str) else "")
            )
            return True
        if msg_type != "kernel_info_request":
            self._wake_sandbox()
        return False

    def _enqueue(self, item: Held) -> None:
        self.queue.append(item)
        if (
            self.state is not State.READY
            and item.header.get("msg_type") == "execute_request"
            and self.progress_target is None
            and not _content(item.frames).get("silent")
        ):
            # The cell the start-up progress is shown in: it is busy from now on, as a kernel would
            # say once it starts the cell; the inner kernel's own busy for it is dropped.
            self._publish("status", {"execution_state": "busy"}, item.header)
            self.busy_announced.add(item.header.get("msg_id", ""))
            self._show_progress_in(item.header)

    def _pump(self) -> None:
        """Shell requests that waited go on, in order, as far as they can."""
        while self.queue and self.host_cell is None and self.running:
            item = self.queue.pop(0)
            if not self._try_run(item):
                self.queue.insert(0, item)
                return

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
            # The cell that wakes a stopped sandbox says first why it had stopped.
            was_dead = self.state is State.DEAD
            self.state = State.STARTING
            if self.progress_target is None:
                self.progress_lines = [f"{self.failure} Starting it again..."] if was_dead else []
            self.lifecycle.bring_up()

    def _forward(self, channel: str, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> None:
        signature, header_bytes, parent, metadata, content = body[:5]
        msg_type = header.get("msg_type", "")
        if channel != "stdin" and reply_type(msg_type):
            msg_id = header["msg_id"]
            pending = Pending(channel, idents, header)
            self.pending[msg_id] = pending
            if channel == "shell":
                # ipykernel answers a request type it does not know with busy and idle but no reply:
                # waiting for that reply would hold every later request.
                self.inflight[msg_id] = 2 if msg_type in ANSWERED_REQUESTS else 1
                if msg_type not in ANSWERED_REQUESTS:
                    del self.pending[msg_id]
            if msg_type == "execute_request":
                request = _content(body)
                pending.stop_on_error = bool(request.get("stop_on_error", True)) and not request.get("silent")
                self.cells[msg_id] = Cell(header, idents, busy_sent=msg_id in self.busy_announced)
                self.busy_announced.discard(msg_id)
        new_signature = self.inner_signer.sign(header_bytes, parent, metadata, content)
        self.inner[channel].send_multipart([DELIM, new_signature, *body[1:]], copy=False)

    def _complete_here(self, idents: list[bytes], body: list[bytes], header: dict[str, Any]) -> bool:
        """`%sandbox` lines are completed here; a line that starts to spell `%sandbox` gets it offered
        beside the inner kernel's matches (added to its reply), or alone while the sandbox is not up."""
        content = _content(body)
        code, cursor = content.get("code"), content.get("cursor_pos")
        if not isinstance(code, str) or not isinstance(cursor, int) or not 0 <= cursor <= len(code):
            return False
        line_start = code.rfind("\n", 0, cursor) + 1
        line_end = code.find("\n", cursor)
        line = code[line_start : len(code) if line_end < 0 else line_end]
        typed = line[: cursor - line_start]
        prefix = [name for name in ("%sandbox", "%%sandbox") if typed and name.startswith(typed) and typed != name]
        if prefix and self.state is State.READY:
            self._forward("shell", idents, body, header)
            self.pending[header["msg_id"]].extra_matches = prefix
            self.pending[header["msg_id"]].extra_typed = (line_start, typed)
            return True
        if prefix:
            matches, start = prefix, 0
        elif may_have_magic(code.encode()):
            found = complete(line, cursor - line_start)
            if found is None:
                return False
            matches, start = found
        else:
            return False
        self._reply(
            "shell",
            idents,
            header,
            "complete_reply",
            {
                "status": "ok",
                "matches": matches,
                "cursor_start": line_start + start,
                "cursor_end": cursor,
                "metadata": {},
            },
        )
        return True

    def _with_sandbox_matches(self, body: list[bytes], pending: Pending) -> list[bytes]:
        """The inner kernel's matches with `%sandbox` first, all replacing from the line's start."""
        reply = _content(body)
        matches, start, end = reply.get("matches"), reply.get("cursor_start"), reply.get("cursor_end")
        line_start, typed = pending.extra_typed
        if (
            reply.get("status") != "ok"
            or not isinstance(matches, list)
            or not isinstance(start, int)
            or not line_start <= start <= line_start + len(typed)
        ):
            return body
        # A match that replaces from further right is the same match written from the line's start.
        lead = typed[: start - line_start]
        theirs = [lead + m for m in matches if isinstance(m, str)]
        added = [m for m in pending.extra_matches if m not in theirs]
        reply["matches"] = added + theirs
        reply["cursor_start"] = line_start
        metadata = reply.get("metadata")
        types = metadata.get("_jupyter_types_experimental") if isinstance(metadata, dict) else None
        if isinstance(types, list):
            metadata["_jupyter_types_experimental"] = [
                {"start": line_start, "end": end, "text": m, "type": "magic", "signature": ""} for m in added
            ] + [
                {**t, "start": line_start, "text": lead + t["text"]}
                for t in types
                if isinstance(t, dict) and isinstance(t.get("text"), str)
            ]
        return [*body[:4], dumps(reply), *body[5:]]

    # -- cells with %sandbox lines ----------------------------------------------------------

    def _start_host_cell(
        self, idents: list[bytes], body: list[bytes], header: dict[str, Any], segments: list[Segment]
    ) -> None:
        content = _content(body)
        silent = bool(content.get("silent"))
        # ipykernel: a cell is counted when it stores history, and silent cells never do.
        counted = bool(content.get("store_history", not silent)) and not silent
        expressions = content.get("user_expressions")
        cell = Cell(header, idents, started=time.monotonic())
        host = HostCell(
            cell,
            body[1],
            segments,
            bool(content.get("allow_stdin")),
            self.execution_count + 1 if counted else self.execution_count,
            silent=silent,
            counted=counted,
            stop_on_error=bool(content.get("stop_on_error", True)),
            user_expressions=expressions if isinstance(expressions, dict) else {},
        )
        self.host_cell = host
        self.cells[header["msg_id"]] = cell
        self._publish("status", {"execution_state": "busy"}, header)
        if not silent:
            self._publish(
                "execute_input",
                {"code": str(content.get("code", "")), "execution_count": self.execution_count + 1},
                header,
            )
        self._advance_host_cell()

    def _advance_host_cell(self) -> None:
        host = self.host_cell
        if host is None or host.magic_running or host.sub_id is not None or host.finishing is not None:
            return
        if host.index >= len(host.segments):
            self._finish_host_cell(None)
            return
        segment = host.segments[host.index]
        waits = "start" if segment.kind == "code" else magic_waits(segment)
        if self.state is not State.READY and (
            waits == "start" or (waits == "up" and self.state in (State.STARTING, State.CONNECTING))
        ):
            # `%sandbox` lines wait for the sandbox as code does; continued by _handshake_progress.
            if not host.silent:
                self._show_progress_in(host.cell.header)
            self._wake_sandbox()
            return
        if segment.kind == "code":
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
        # Only the cell's last code segment stores history: the inner kernel counts the cell once.
        last = host.index == host.last_code_index()
        self._send_sub_request(
            host,
            {
                "code": code,
                "silent": host.silent,
                "store_history": host.counted and last,
                "user_expressions": host.user_expressions if last else {},
                "allow_stdin": host.allow_stdin,
                "stop_on_error": False,
            },
        )

    def _send_sub_request(self, host: HostCell, content: dict[str, Any]) -> None:
        frames = build(self.inner_signer, "execute_request", content, None, self.session)
        header = json.loads(frames[2])
        host.sub_id, host.sub_reply, host.sub_idle = header["msg_id"], None, False
        host.sub_counts = bool(content["store_history"])
        self.sub_requests[host.sub_id] = host
        self.cells[host.sub_id] = host.cell
        self.pending[host.sub_id] = Pending("shell", host.cell.idents, host.cell.header)
        self.inner["shell"].send_multipart(frames)

    def _on_host_output(self, payload: tuple[HostCell, str, str]) -> None:
        host, name, text = payload
        if host is self.host_cell and not host.silent and self._within_output_limit(host.cell, len(text)):
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
            self.failure = (
                "The sandbox was deleted (%sandbox delete)."
                if result.deleted
                else "The sandbox was stopped (%sandbox stop)."
            )
            self._close_inner()
        if result.reconnect is not None:
            self.lifecycle.adopt(result.reconnect)
            self._on_ready(result.reconnect)
        if result.error:
            message = self.policy.text(result.error)  # it may quote the sandbox
            if not host.silent:
                self._publish("error", _error_output(message), host.cell.header)
            self._finish_host_cell(_error_reply(message))
            return
        host.index += 1
        self._advance_host_cell()

    def _host_sub_progress(self, host: HostCell) -> None:
        """A request of the cell is done when both its reply and its idle status have arrived."""
        if host.sub_reply is None or not host.sub_idle:
            return
        reply, sub_id = host.sub_reply, host.sub_id
        host.sub_id = None
        self.sub_requests.pop(sub_id, None)
        self.cells.pop(sub_id, None)
        status = reply.get("status")
        if host.sub_counts and status in ("ok", "error"):
            host.committed = True
        if status == "ok" and host.user_expressions and isinstance(reply.get("user_expressions"), dict):
            host.evaluated = reply["user_expressions"]
        if host.finishing is not None:
            self._end_host_cell(host.finishing or None)
            return
        if status != "ok":
            self._finish_host_cell(
                _error_reply(reply.get("evalue", ""), reply.get("ename", "Error"), reply.get("traceback", []))
            )
            return
        host.index += 1
        self._advance_host_cell()

    def _finish_host_cell(self, error: dict[str, Any] | None) -> None:
        """The cell's segments are done (or one failed). If the inner kernel has not counted the cell
        yet, or its user_expressions are still to be evaluated, one last request does it first."""
        host = self.host_cell
        if host is None:
            return
        needs_count = host.counted and not host.committed
        needs_expressions = error is None and bool(host.user_expressions) and host.evaluated is None
        if (needs_count or needs_expressions) and self.state is State.READY:
            host.finishing = error or {}
            self._send_sub_request(
                host,
                {
                    "code": _count_only_code(host.segments) if needs_count else "",
                    "silent": not needs_count,
                    "store_history": needs_count,
                    "user_expressions": host.user_expressions if needs_expressions else {},
                    "allow_stdin": False,
                    "stop_on_error": False,
                },
            )
            return
        # Not up (stopped, deleted, failed): the inner kernel is set to the count when it next starts.
        self._end_host_cell(error)

    def _end_host_cell(self, error: dict[str, Any] | None) -> None:
        host = self.host_cell
        if host is None:
            return
        self.host_cell = None
        header = host.cell.header
        self.cells.pop(header["msg_id"], None)
        if host.counted:
            self.execution_count = host.execution_count
        if error:
            content = {**error, "execution_count": host.execution_count, "user_expressions": {}, "payload": []}
        else:
            content = {
                "status": "ok",
                "execution_count": host.execution_count,
                "user_expressions": self._safe_expressions(host.evaluated or {}),
                "payload": [],
            }
        frames = build(
            self.front_signer,
            "execute_reply",
            content,
            header,
            self.session,
            metadata=self._reply_metadata(content["status"]),
        )
        self.front["shell"].send_multipart([*host.cell.idents, *frames])
        self._publish("status", {"execution_state": "idle"}, header)
        if error and host.stop_on_error and not host.silent:
            self._abort_queued()
        self._pump()

    def _safe_expressions(self, evaluated: dict[str, Any]) -> dict[str, Any]:
        """user_expressions come from the sandbox: bundles through the output policy, errors as text."""
        safe: dict[str, Any] = {}
        for name, value in list(evaluated.items())[:100]:
            if not isinstance(value, dict):
                continue
            if value.get("status") == "ok" and isinstance(value.get("data"), dict):
                metadata = value.get("metadata")
                safe[str(name)] = {
                    "status": "ok",
                    "data": self.policy.filter_bundle(value["data"]),
                    "metadata": metadata if isinstance(metadata, dict) else {},
                }
            else:
                safe[str(name)] = _error_reply(
                    value.get("evalue", ""), value.get("ename", "Error"), value.get("traceback", [])
                )
        return safe

    # -- the order of cells -----------------------------------------------------------------

    def _settled(self, msg_id: str) -> None:
        """A reply or the idle status of a request passed on: once both are out, the shell requests
        waiting behind it may go (as in one kernel, the next starts after the last one's idle)."""
        due = self.inflight.get(msg_id)
        if due is None:
            return
        if due > 1:
            self.inflight[msg_id] = due - 1
        else:
            del self.inflight[msg_id]
            self._pump_due = True

    def _abort_queued(self) -> None:
        """A cell failed with stop_on_error: as ipykernel does, every execute request queued behind it
        is answered "aborted", in its turn, without running."""
        for item in self.queue:
            if item.header.get("msg_type") == "execute_request":
                item.abort = True

    def _send_aborted(self, item: Held) -> None:
        msg_id = item.header.get("msg_id", "")
        if self.progress_target is not None and self.progress_target.get("msg_id") == msg_id:
            self.progress_target = None
        if msg_id in self.busy_announced:
            self.busy_announced.discard(msg_id)
        else:
            self._publish("status", {"execution_state": "busy"}, item.header)
        frames = build(
            self.front_signer,
            "execute_reply",
            {"status": "aborted"},
            item.header,
            self.session,
            metadata=self._reply_metadata("aborted"),
        )
        self.front[item.channel].send_multipart([*item.idents, *frames])
        self._publish("status", {"execution_state": "idle"}, item.header)

    def _reply_metadata(self, status: str) -> dict[str, Any]:
        return {
            "started": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "dependencies_met": True,
            "engine": self.session,
            "status": status,
        }

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
        if not isinstance(parent_id, str):
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
            if self.state is State.CONNECTING and _loads(body[1]).get("msg_type") == "kernel_info_reply":
                self._learn_kernel_info(body[4])
                self._handshake_shell = True
                self._handshake_progress()
            return
        pending = self.pending.pop(parent_id, None)
        if pending is None:
            return
        self._settled(parent_id)
        host = self.sub_requests.get(parent_id)
        if host is not None:
            host.sub_reply = _content(body) or {"status": "error"}
            self._host_sub_progress(host)
            return
        if pending.header.get("msg_type") == "execute_request":
            self._execute_replied(parent_id, pending, body)
            return
        if pending.extra_matches:
            body = self._with_sandbox_matches(body, pending)
        self._send_front(pending.channel, pending.idents, body)

    def _execute_replied(self, msg_id: str, pending: Pending, body: list[bytes]) -> None:
        """The inner kernel's count is the front end's (they are kept equal); an error aborts the
        cells this proxy queued behind the cell, as the inner kernel aborts those it queued."""
        reply = _content(body)
        status, count = reply.get("status"), reply.get("execution_count")
        if status in ("ok", "error") and isinstance(count, int) and not isinstance(count, bool):
            self.execution_count = count
        self._send_front(pending.channel, pending.idents, body)
        if status == "error" and pending.stop_on_error:
            self._abort_queued()

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
        parent_id = parent_id if isinstance(parent_id, str) else ""
        if self.state is State.CONNECTING:
            self._handshake_iopub = True
            self._handshake_progress()
            if self.state is not State.READY:
                return
        if parent_id in self.internal or msg_type == "iopub_welcome" or (msg_type == "status" and not parent_id):
            return  # about the proxy's own requests and subscription, or the inner kernel's start
        cell = self.cells.get(parent_id)
        host = self.sub_requests.get(parent_id)
        if msg_type == "status" and parent_id in self.inflight and _content(body).get("execution_state") == "idle":
            self._settled(parent_id)
        if msg_type == "status" and cell is not None:
            state = _content(body).get("execution_state")
            if state == "busy" and cell.started is None:
                cell.started = time.monotonic()
            elif state == "idle":
                if host is not None:
                    host.sub_idle = True
                    self._host_sub_progress(host)
                else:
                    self.cells.pop(parent_id, None)
            if state == "busy" and cell.busy_sent:
                cell.busy_sent = False
                return  # said already, while the cell waited for the sandbox
        if host is not None:
            if msg_type in ("status", "execute_input") or host.finishing is not None:
                return  # the proxy speaks for the whole cell
            body = [*body[:2], host.header_bytes, *body[3:]]
            if msg_type == "execute_result":
                body = _with_count(body, host.execution_count)
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
            self._stream(
                cell.header,
                f"\n[sandbox] this cell's output passed the limit of "
                f"{format_size(self.output_limit)}; the rest of it is not shown\n",
                "stderr",
            )
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
                self._stream(
                    cell.header,
                    f"\n[sandbox] the cell ran longer than its limit of {self.cell_timeout:g} s and was interrupted\n",
                    "stderr",
                )
                self._on_interrupt(None)
            elif cell.interrupted_at is not None and now - cell.interrupted_at > self.settings.interrupt_grace:
                cell.restarted = True
                self.lifecycle.restart_kernel(
                    f"The cell ran longer than its limit of {self.cell_timeout:g} s and did not stop within "
                    f"{self.settings.interrupt_grace:g} s of the interrupt, so the Python process in the sandbox "
                    "was restarted: variables are gone, files in /home/sandbox are kept."
                )

    # -- messages the proxy makes itself ----------------------------------------------------

    def _publish(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None) -> None:
        frames = build(self.front_signer, msg_type, content, parent, self.session)
        self.front["iopub"].send_multipart([f"kernel.sandbox.{msg_type}".encode(), *frames])

    def _stream(self, parent: dict[str, Any], text: str, name: str = "stdout") -> None:
        # The proxy's own streams carry sandbox text too (%%sandbox output, progress, logs).
        self._publish("stream", {"name": name, "text": self.policy.text(text)}, parent)

    def _reply(
        self, channel: str, idents: list[bytes], parent: dict[str, Any], msg_type: str, content: dict[str, Any]
    ) -> None:
        self._publish("status", {"execution_state": "busy"}, parent)
        frames = build(self.front_signer, msg_type, content, parent, self.session)
        self.front[channel].send_multipart([*idents, *frames])
        self._publish("status", {"execution_state": "idle"}, parent)

    @staticmethod
    def _unknown_kernel_info() -> dict[str, Any]:
        """Only when no sandbox could be started and none ever answered for this image: the front end
        still gets a reply (and the cells the reason)."""
        return {
            "status": "ok",
            "protocol_version": "5.3",
            "implementation": "jupyter-sandbox",
            "implementation_version": __version__,
            "language_info": {
                "name": "python",
                "version": "3",
                "mimetype": "text/x-python",
                "file_extension": ".py",
                "pygments_lexer": "ipython3",
                "codemirror_mode": {"name": "ipython", "version": 3},
                "nbconvert_exporter": "python",
            },
            "banner": "Python 3 in a jupyter-sandbox container (the sandbox could not be started)",
            "help_links": [],
        }

    def _fail_waiting(self, message: str, keep_held: bool = False) -> None:
        """Answer every request that waits on the sandbox with an error that says why. `keep_held`:
        the inner kernel was restarted; requests not sent to it yet go to the new one."""
        host = self.host_cell
        waiting = [
            (p.channel, p.idents, p.header) for sub_id, p in self.pending.items() if sub_id not in self.sub_requests
        ]
        if not keep_held:
            waiting += [(h.channel, h.idents, h.header) for h in self.held + self.queue]
            self.held, self.queue = [], []
            self.progress_target = None
        self.pending = {}
        self.cells = {}
        self.sub_requests = {}
        self.inflight = {}
        if host is not None:
            host.cancel.set()
            host.finishing = None
            if not host.silent:
                self._publish("error", _error_output(message), host.cell.header)
            self._end_host_cell(_error_reply(message))
        for channel, idents, header in waiting:
            msg_type = header.get("msg_type", "")
            if msg_type == "execute_request":
                msg_id = header.get("msg_id", "")
                if msg_id in self.busy_announced:
                    self.busy_announced.discard(msg_id)
                else:
                    self._publish("status", {"execution_state": "busy"}, header)
                self._publish("error", _error_output(message), header)
                self.execution_count += 1
                content = {
                    **_error_reply(message),
                    "execution_count": self.execution_count,
                    "user_expressions": {},
                    "payload": [],
                }
                frames = build(
                    self.front_signer,
                    "execute_reply",
                    content,
                    header,
                    self.session,
                    metadata=self._reply_metadata("error"),
                )
                self.front[channel].send_multipart([*idents, *frames])
                self._publish("status", {"execution_state": "idle"}, header)
            elif msg_type == "kernel_info_request":
                # A client must learn the protocol version even of a kernel whose sandbox failed.
                self._reply(
                    channel, idents, header, "kernel_info_reply", self.kernel_info or self._unknown_kernel_info()
                )
            elif reply_type(msg_type):
                self._reply(channel, idents, header, reply_type(msg_type), _error_reply(message))

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self, restart: bool, parent: dict[str, Any] | None = None) -> None:
        if parent is not None:
            # ipykernel tells every front end on iopub too, as a reply to the request.
            self._publish("shutdown_reply", {"status": "ok", "restart": restart}, parent)
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
        threading.Thread(target=self._look_up_kernel_info, name="kernel-info", daemon=True).start()
        poller = zmq.Poller()
        for name in ("shell", "control", "stdin", "hb", "iopub"):
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
            if ready.get(self.front["iopub"]):
                self._drain(self.front["iopub"], self._welcome)
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
            if self._pump_due:
                self._pump_due = False
                self._pump()
            if self.state is State.CONNECTING:
                self._handshake_tick()
            self._check_kernel_info_wait()
            self._check_time_limits()
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


def _loads(data: bytes) -> dict[str, Any]:
    """A JSON object from a frame, or {} (hostile or malformed frames must not stop the relay)."""
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _content(body: list[bytes]) -> dict[str, Any]:
    return _loads(body[4])


def _host_segments(body: list[bytes]) -> list[Segment] | None:
    """The segments of an execute request with `%sandbox` lines; None for a cell of plain code."""
    if not may_have_magic(body[4]):
        return None
    code = _content(body).get("code")
    segments = split_cell(code) if isinstance(code, str) else []
    return segments if has_magic(segments) else None


def _error_output(message: str, ename: str = "SandboxError", traceback: list[str] | None = None) -> dict[str, Any]:
    """An `error` output: exactly nbformat's fields (a "status" here makes a saved notebook invalid)."""
    return {
        "ename": ename,
        "evalue": message,
        "traceback": traceback if traceback is not None else [f"\x1b[0;31m{ename}\x1b[0m: {message}"],
    }


def _error_reply(message: Any, ename: Any = "SandboxError", traceback: Any = None) -> dict[str, Any]:
    """The error part of a reply; fields that came from the sandbox are forced to strings."""
    lines = [str(line) for line in traceback[:1000]] if isinstance(traceback, list) else None
    return {"status": "error", **_error_output(str(message), str(ename), lines)}


def _count_only_code(segments: list[Segment]) -> str:
    """What the inner kernel runs to count a cell it has no code of: comments only. The `%sandbox`
    lines themselves stay on the host (they may name host paths or values the sandbox must not see)."""
    lines: list[str] = []
    for segment in segments:
        if segment.kind == "code":
            lines += [f"# {line}" for line in segment.text.split("\n")]
        else:
            lines.append("# %%sandbox" if segment.kind == "cell" else "# %sandbox")
    return "\n".join(lines)


def _with_count(body: list[bytes], count: int) -> list[bytes]:
    content = _content(body)
    if not content or content.get("execution_count") == count:
        return body
    return [*body[:4], dumps({**content, "execution_count": count}), *body[5:]]
