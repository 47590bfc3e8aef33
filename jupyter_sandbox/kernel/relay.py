"""The proxy kernel's relay: the front end's ZMQ sockets on one side, the sandbox's ipykernel on the other.

Messages are verified with one key and re-signed with the other (wire.py). Requests from the front end
are passed on without re-encoding; what comes back is made inert by the inbound filter and decoded
only as far as the per-cell limits (limits.py) and the `%sandbox` cells (host_cells.py) need. Until the
inner kernel is reachable, requests wait at the start-up gate (startup.py), and the few a front end
gives only a moment (kernel_info, history, is_complete) are answered here as the inner kernel would
answer them; when the sandbox dies, every request still waiting gets an error reply (replies.py)
instead of hanging.

The relay knows nothing of Docker: it is given an inner-kernel connection (a connection file's fields)
by its lifecycle, which brings the sandbox up and reports by posting events. Requests and events are
routed by dispatch tables keyed by (channel, msg_type) and by event kind.

The front end must not be able to tell this kernel from a local ipykernel: the relay keeps ipykernel's
execution counts (one per cell that stores history, `%sandbox` cells included; the inner kernel is
kept at the same count, so `Out[n]` and `_n` agree), its order of replies and statuses, and its
aborting of queued cells after an error.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import zmq

from . import completion, offline
from . import kernel_info as kernel_info_cache
from .host_cells import HostCell, HostCells, host_segments, with_count
from .inbound import InboundFilter
from .limits import OUTPUT_MESSAGES, Cell, OutputLimit, TimeLimit, output_limit_bytes
from .magics import MagicContext
from .messages import dumps, reply_type
from .output_policy import OutputPolicy
from .replies import error_output, error_reply, failed_execute_reply, reply_metadata
from .settings import SandboxKernel
from .startup import Held, StartupGate, State
from .wire import Body, Connection, FrontSockets, InnerSockets, content, loads

log = logging.getLogger(__name__)

# While cells run, the sandbox is marked in use this often (an idle reaper must not stop it).
ACTIVITY_SECONDS = 1.0
# Requests a front end sends by itself when it (re)connects to a kernel (JupyterLab's widget manager,
# debugger and subshells): while the sandbox is down they wait for it without starting it, so that
# a deleted or stopped sandbox comes back only when the person runs a cell (or asks the kernel for
# something), as the sidebar and the messages promise.
QUIET_REQUESTS = frozenset(
    {
        "kernel_info_request",
        "comm_info_request",
        "comm_open",
        "comm_msg",
        "comm_close",
        "debug_request",
        "create_subshell_request",
        "list_subshell_request",
        "delete_subshell_request",
    }
)
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


class Lifecycle(Protocol):
    """What the relay needs of whatever brings its inner kernel up (lifecycle.py for a sandbox).

    Its threads report by `relay.post(kind, payload)`: ("ready", connection), ("failed", message),
    ("progress", message), ("container_died", reason), ("kernel_died", event),
    ("kernel_restarted", message)."""

    @property
    def memory_limit(self) -> str: ...

    def bring_up(self) -> None: ...  # in the background; "ready" or "failed" follows
    def connection(self) -> Connection | None: ...  # the current inner kernel's, once it is up
    def recorded_kernel_info(self) -> dict[str, Any] | None: ...  # may block: called off the loop
    def remember_kernel_info(self, info: dict[str, Any]) -> None: ...
    def magic_context(
        self, settings: SandboxKernel, cell_timeout: float, write: Callable[[str, str], None], cancel: threading.Event
    ) -> MagicContext: ...
    # A sandbox a `%sandbox` command restarted or recreated (MagicResult.reconnect): watch it, and
    # return its kernel's connection.
    def adopt(self, sandbox: Any) -> Connection: ...
    def stop_watching(self) -> None: ...
    def restart_kernel(self, message: str) -> None: ...
    def touch(self) -> None: ...
    def interrupt(self) -> None: ...
    def release(self) -> None: ...


@dataclass
class Pending:
    """A request passed to the inner kernel whose reply goes back to `idents`."""

    channel: str
    idents: list[bytes]
    header: dict[str, Any]
    stop_on_error: bool = False  # an execute request whose error aborts the queued cells
    added_matches: completion.Completion | None = None  # `%sandbox` to add to a completion reply


FrontHandler = Callable[[str, list[bytes], Body, dict[str, Any]], None]
ShellHandler = Callable[[Held], bool]
# True: handled here; False: it must wait where it is; None: not for this handler, routed on.
ShellIntercept = Callable[[Held], "bool | None"]


class Relay:
    """One proxy kernel's messages, on one thread (`run`); other threads talk to it by `post`."""

    def __init__(
        self,
        connection: Connection,
        lifecycle_factory: Callable[[Relay], Lifecycle],
        handshake_timeout: float = 60.0,
        settings: SandboxKernel | None = None,
        language: str = "python",
    ) -> None:
        self.connection = connection
        # The inner kernel's language: what the proxy's own code for it is written in (comments that
        # count a cell, the count kept across restarts) and what it says before the sandbox answers.
        self.language = language
        self.session = uuid.uuid4().hex
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.handshake_timeout = handshake_timeout
        self.settings = settings or SandboxKernel()
        self.policy = OutputPolicy(self.settings.output_policy, isolate=self.settings.isolate_rich_output)
        self.inbound = InboundFilter(self.policy, self.settings.widget_modules)
        self.output_limit = OutputLimit(output_limit_bytes(self.settings.output_limit))
        self.time_limit = TimeLimit(float(self.settings.cell_timeout), float(self.settings.interrupt_grace))
        self.gate = StartupGate(language=language)
        self.hosts = HostCells(self)
        # The count of the last cell that stored history, as the front end saw it.
        self.execution_count = 0
        self.pending: dict[str, Pending] = {}
        # Shell requests are answered in the order they came, as one kernel's shell answers them:
        # those that cannot go on yet wait in `queue` (behind a %sandbox cell, for the sandbox, or a
        # %sandbox cell for the inner kernel's replies still due, `inflight`).
        self.queue: list[Held] = []
        self.inflight: dict[str, int] = {}  # msg_id: how many of (reply, idle status) are still due
        # Cells in flight whose error aborts the cells behind them: those wait here until its reply,
        # so that a cell sent before the error's reply is aborted however late it would reach the
        # inner kernel (which aborts only what has reached it by then).
        self.verdict_due: set[str] = set()
        self._pump_due = False
        # True while abort_queued reads the requests already waiting on the shell socket: they queue.
        self._flushing_shell = False
        self.busy_announced: set[str] = set()  # held cells the proxy already said busy for
        self.cells: dict[str, Cell] = {}
        self.progress_lines: list[str] = []
        self.progress_target: dict[str, Any] | None = None
        self.internal: set[str] = set()
        self.inner: InnerSockets | None = None
        self.running = True
        self.restarting = False
        self._last_touch = 0.0
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self.front = FrontSockets(self.context, connection, self.session)
        # Routing, as ipykernel's kernelbase does with its handler maps.
        self._event_handlers: dict[str, Callable[[Any], None]] = {
            "progress": self._on_progress,
            "ready": self.on_ready,
            "failed": self._on_failed,
            "kernel_died": self._on_kernel_died,
            "kernel_restarted": self._on_kernel_restarted,
            "container_died": self._on_container_died,
            "interrupt": self._on_interrupt,
            "terminate": self._on_terminate,
            "kernel_info_known": self._on_kernel_info_known,
            "host_output": self.hosts.on_output,
            "host_step": self.hosts.on_step,
            "host_input": self.hosts.on_input,
        }
        # Requests from the front end the proxy handles itself, before routing.
        self._front_handlers: dict[tuple[str, str], FrontHandler] = {
            ("control", "shutdown_request"): self._front_shutdown,
            ("control", "interrupt_request"): self._front_interrupt,
            ("stdin", "input_reply"): self._front_input_reply,
        }
        # Shell requests looked at before they are passed on.
        self._shell_intercepts: dict[str, ShellIntercept] = {
            "execute_request": self._intercept_execute,
            "complete_request": self._complete_here,
        }
        # Shell requests answered while the inner kernel is not reachable, as a fresh ipykernel would.
        self._offline_shell: dict[str, ShellHandler] = {
            "kernel_info_request": self._offline_kernel_info,
            # Asked with a short timeout by front ends (jupyter console).
            "history_request": self._offline_history,
            "is_complete_request": self._offline_is_complete,
        }
        # Control and stdin requests while the inner kernel is not reachable: True if answered.
        self._offline_other: dict[tuple[str, str], ShellHandler] = {
            ("control", "kernel_info_request"): self._offline_kernel_info,
            ("control", "interrupt_request"): self._offline_interrupt,
        }
        # What the inner kernel's replies to the front end's requests go through.
        self._reply_handlers: dict[str, Callable[[str, Pending, Body], None]] = {
            "execute_request": self._execute_replied,
            "complete_request": self._complete_replied,
        }
        # How a request that waits is answered when the sandbox cannot answer it.
        self._failure_replies: dict[str, Callable[[str, list[bytes], dict[str, Any], str], None]] = {
            "execute_request": self._fail_execute,
            "kernel_info_request": self._fail_kernel_info,
        }
        self.lifecycle = lifecycle_factory(self)

    # -- state shown to the app -------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.gate.state

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
            handler = self._event_handlers.get(kind)
            if handler is None:
                log.warning("unknown relay event %s", kind)
            else:
                handler(payload)

    def _on_progress(self, message: str) -> None:
        log.info("sandbox: %s", message)
        self.progress_lines.append(message)
        if self.progress_target is not None:
            self.stream(self.progress_target, f"[sandbox] {message}\n")

    def on_ready(self, connection: Connection) -> None:
        """The inner kernel can be reached at `connection`: connect and start the handshake."""
        self.close_inner()
        self.inner = InnerSockets(self.context, connection, self.session)
        self.gate.connecting(self.handshake_timeout)
        self._handshake_tick()

    def _on_failed(self, message: str) -> None:
        self.gate.fail(State.FAILED, message)
        log.error("sandbox failed: %s", message)
        self._fail_waiting(f"The sandbox could not be started: {message}")

    def _on_kernel_died(self, event: dict[str, Any]) -> None:
        if not (self.gate.ready or self.gate.state is State.CONNECTING):
            return
        signal_number = event.get("signal")
        memory = self.lifecycle.memory_limit
        if event.get("oom_killed"):
            why = f"it ran out of memory{f' (limit {memory})' if memory else ''}"
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
            self.gate.fail(State.FAILED, message)
            self.close_inner()
            self._fail_waiting(message)

    def _on_kernel_restarted(self, message: str) -> None:
        # Not READY while the old kernel's requests are failed: nothing waiting goes to it now.
        self.gate.state = State.STARTING
        self._fail_waiting(message, keep_held=True)
        connection = self.lifecycle.connection()
        if connection is not None:
            self.on_ready(connection)

    def _on_container_died(self, reason: str) -> None:
        if not (self.gate.ready or self.gate.state is State.CONNECTING):
            return
        self.gate.fail(State.DEAD, f"The sandbox container stopped: {reason}.")
        self.close_inner()
        self._fail_waiting(self.gate.failure + " Run a cell to start it again; files in /home/sandbox are kept.")

    def _on_interrupt(self, _: Any) -> None:
        if self.hosts.current is not None:
            self.hosts.current.cancel.set()
        self._interrupt_waiting()
        self.lifecycle.interrupt()

    def _interrupt_waiting(self) -> None:
        """An interrupt while the sandbox starts stops the cell that waits for it (the one the front end
        shows busy), as it would stop a running cell; the sandbox goes on starting."""
        if self.gate.ready:
            return
        if self.hosts.current is not None:
            self.hosts.interrupt_waiting()
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
        self._say_busy(item)
        request = content(item.frames)
        silent = bool(request.get("silent"))
        if request.get("store_history", not silent) and not silent:
            self.execution_count += 1  # a cell stopped by an interrupt counts, as in ipykernel
        error = error_reply("interrupted while the sandbox was starting", "KeyboardInterrupt")
        if request.get("stop_on_error", True) and not silent:
            self.abort_queued()  # before the reply: a cell sent after the front end saw it runs
        if not silent:
            self.front.publish("error", error_output(error["evalue"], error["ename"]), item.header)
        self.front.send_new(
            "shell",
            item.idents,
            "execute_reply",
            failed_execute_reply(error, self.execution_count),
            item.header,
            metadata=reply_metadata(self.session, "error"),
        )
        self.front.publish("status", {"execution_state": "idle"}, item.header)
        self.pump()

    def _say_busy(self, item: Held) -> None:
        """busy for a held cell the proxy answers itself, unless it said so while the cell waited."""
        msg_id = item.header.get("msg_id", "")
        if self.progress_target is not None and self.progress_target.get("msg_id") == msg_id:
            self.progress_target = None
        if msg_id in self.busy_announced:
            self.busy_announced.discard(msg_id)
        else:
            self.front.publish("status", {"execution_state": "busy"}, item.header)

    def _on_terminate(self, _: Any) -> None:
        self._shutdown(restart=False)

    def _on_kernel_info_known(self, info: dict[str, Any] | None) -> None:
        if self.gate.learn(info):
            self._release_held()
            self.pump()

    def _look_up_kernel_info(self) -> None:
        """In the background (it may ask Docker): what the image's kernel said the last time."""
        info = None
        try:
            info = self.lifecycle.recorded_kernel_info()
        except Exception:  # no engine, a bad image setting: the handshake will tell
            log.debug("no recorded kernel info for the sandbox image", exc_info=True)
        self.post("kernel_info_known", info)

    # -- the inner kernel's handshake -------------------------------------------------------

    def _handshake_tick(self) -> None:
        handshake = self.gate.handshake
        if handshake is None:
            return
        due = handshake.tick()
        if due == "timeout":
            self._on_failed(f"the kernel in the sandbox did not answer within {self.handshake_timeout:g} s")
            self.close_inner()
        elif due == "send":
            self._send_internal("kernel_info_request", {})

    def _handshake_progress(self) -> None:
        handshake = self.gate.handshake
        if handshake is not None and handshake.done:
            self.gate.state = State.READY
            self.gate.handshake = None
            self.progress_lines = []
            self.progress_target = None
            self._sync_inner_count()
            self._release_held()
            self.hosts.advance()
            self.pump()

    def _check_kernel_info_wait(self) -> None:
        if self.gate.kernel_info_overdue():
            self._release_held()
            self.pump()

    def _release_held(self) -> None:
        for item in self.gate.release():
            self._route(item.channel, item.idents, item.frames, item.header)

    def _learn_kernel_info(self, data: bytes) -> None:
        info = kernel_info_cache.sanitize(loads(data))
        if info is None:
            return
        self.gate.kernel_info = info
        self.lifecycle.remember_kernel_info(info)

    def _sync_inner_count(self) -> None:
        """A new inner kernel counts from 1; this kernel's front end has seen more cells (the sandbox
        was restarted or started again): the inner kernel goes on from where the front end is."""
        if self.execution_count <= 0 or self.language != "python":
            # Only ipykernel can be told where to count from; another kernel counts on from 1.
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

    def _send_internal(self, msg_type: str, request: dict[str, Any]) -> None:
        """A request of the proxy's own: its reply and everything the kernel says about it are dropped."""
        if self.inner is not None:
            self.internal.add(self.inner.send_new(msg_type, request)["msg_id"])

    def close_inner(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.inner = None
        # Requests the proxy sent the old kernel: whatever it still says about them is dropped.
        self.internal.clear()

    # -- front end → sandbox ----------------------------------------------------------------

    def _from_front(self, channel: str, frames: list[bytes]) -> None:
        parsed = self.front.parse(channel, frames)
        if parsed is None:
            return
        idents, body, header = parsed
        handler = self._front_handlers.get((channel, header.get("msg_type", "")), self._route)
        handler(channel, idents, body, header)

    def _front_input_reply(self, channel: str, idents: list[bytes], body: Body, header: dict[str, Any]) -> None:
        # A `%sandbox` line's question (a secret's value) is answered here, on the host: it never
        # reaches the sandbox. Any other reply goes on to the inner kernel that asked.
        if not self.hosts.on_input_reply(content(body).get("value")):
            self._route(channel, idents, body, header)

    def _front_shutdown(self, channel: str, idents: list[bytes], body: Body, header: dict[str, Any]) -> None:
        restart = bool(content(body).get("restart"))
        self._reply(channel, idents, header, "shutdown_reply", {"status": "ok", "restart": restart})
        self._shutdown(restart=restart, parent=header)

    def _front_interrupt(self, channel: str, idents: list[bytes], body: Body, header: dict[str, Any]) -> None:
        if self.hosts.current is not None:
            self.hosts.current.cancel.set()
        self._interrupt_waiting()
        self._route(channel, idents, body, header)

    def _route(self, channel: str, idents: list[bytes], body: Body, header: dict[str, Any]) -> None:
        """Send a request on, run it here, or let it wait, depending on what it is and on the sandbox."""
        item = Held(channel, idents, body, header)
        if channel == "shell":
            if self._flushing_shell or self.queue or self.hosts.current is not None or not self._try_run(item):
                self._enqueue(item)
                # Behind quiet requests held for a down sandbox, a request of the person's wakes it.
                if self.gate.down and header.get("msg_type", "") not in QUIET_REQUESTS:
                    self.wake_sandbox()
            return
        if self.gate.ready:
            self._forward(item)
            return
        if channel == "stdin":
            return  # no input was asked for by a kernel that is not running
        msg_type = header.get("msg_type", "")
        answer = self._offline_other.get((channel, msg_type))
        if answer is not None and answer(item):
            return
        self.gate.hold(item)
        if msg_type not in QUIET_REQUESTS:
            self.wake_sandbox()

    def _try_run(self, item: Held) -> bool:
        """Run a shell request now if it can go; False if it must wait (at the head of the queue)."""
        msg_type = item.header.get("msg_type", "")
        intercept = self._shell_intercepts.get(msg_type)
        decided = intercept(item) if intercept is not None else None
        if decided is not None:
            return decided
        if self.gate.ready:
            self._forward(item)
            return True
        answer = self._offline_shell.get(msg_type)
        if answer is not None and answer(item):
            return True
        if msg_type not in QUIET_REQUESTS:
            self.wake_sandbox()
        return False

    def _intercept_execute(self, item: Held) -> bool | None:
        if item.abort:
            if self.inflight:
                return False  # its reply comes after those of the requests before it
            self._send_aborted(item)
            return True
        segments = host_segments(item.frames)
        if segments is None:
            return self._behind_a_verdict()
        if self.inflight:
            return False  # a %sandbox cell runs after the cells sent before it have finished
        self.hosts.start(item.idents, item.frames, item.header, segments)
        return True

    def _behind_a_verdict(self) -> bool | None:
        """False (the cell waits) behind a cell whose error would abort it; None: it goes on."""
        if self.verdict_due and self.gate.ready:
            return False
        return None

    def _offline_kernel_info(self, item: Held) -> bool:
        # What the image's kernel says; while that is not known, the request waits for the handshake.
        if not self.gate.kernel_info_answerable():
            return False
        self._reply(item.channel, item.idents, item.header, "kernel_info_reply", self.gate.kernel_info_reply())
        return True

    def _offline_history(self, item: Held) -> bool:
        self._reply(item.channel, item.idents, item.header, "history_reply", offline.history_reply())
        return True

    def _offline_is_complete(self, item: Held) -> bool:
        code = content(item.frames).get("code")
        reply = offline.is_complete(code if isinstance(code, str) else "")
        self._reply(item.channel, item.idents, item.header, "is_complete_reply", reply)
        return True

    def _offline_interrupt(self, item: Held) -> bool:
        self._reply(item.channel, item.idents, item.header, "interrupt_reply", {"status": "ok"})
        return True

    def _enqueue(self, item: Held) -> None:
        self.queue.append(item)
        if (
            not self.gate.ready
            and item.header.get("msg_type") == "execute_request"
            and self.progress_target is None
            and not content(item.frames).get("silent")
        ):
            # The cell the start-up progress is shown in: it is busy from now on, as a kernel would
            # say once it starts the cell; the inner kernel's own busy for it is dropped.
            self.front.publish("status", {"execution_state": "busy"}, item.header)
            self.busy_announced.add(item.header.get("msg_id", ""))
            self.show_progress_in(item.header)

    def pump(self) -> None:
        """Shell requests that waited go on, in order, as far as they can."""
        while self.queue and self.hosts.current is None and self.running:
            item = self.queue.pop(0)
            if not self._try_run(item):
                self.queue.insert(0, item)
                return

    def show_progress_in(self, header: dict[str, Any]) -> None:
        if self.progress_target is not None:
            return
        self.progress_target = header
        if self.gate.state is State.DEAD:
            self.progress_lines = [f"{self.gate.failure} Starting it again..."]
        for line in self.progress_lines:
            self.stream(header, f"[sandbox] {line}\n")

    def wake_sandbox(self) -> None:
        if self.gate.down:
            # The cell that wakes a stopped sandbox says first why it had stopped.
            was_dead = self.gate.state is State.DEAD
            self.gate.state = State.STARTING
            if self.progress_target is None:
                self.progress_lines = [f"{self.gate.failure} Starting it again..."] if was_dead else []
            self.lifecycle.bring_up()

    def track(self, msg_id: str, channel: str, idents: list[bytes], header: dict[str, Any]) -> Pending:
        """A request sent to the inner kernel whose reply goes to `idents`."""
        pending = self.pending[msg_id] = Pending(channel, idents, header)
        return pending

    def _forward(self, item: Held) -> None:
        channel, body, header = item.channel, item.frames, item.header
        msg_type = header.get("msg_type", "")
        if channel != "stdin" and reply_type(msg_type):
            msg_id = header["msg_id"]
            pending = self.track(msg_id, channel, item.idents, header)
            if channel == "shell":
                # ipykernel answers a request type it does not know with busy and idle but no reply:
                # waiting for that reply would hold every later request.
                self.inflight[msg_id] = 2 if msg_type in ANSWERED_REQUESTS else 1
                if msg_type not in ANSWERED_REQUESTS:
                    del self.pending[msg_id]
            if msg_type == "execute_request":
                request = content(body)
                pending.stop_on_error = bool(request.get("stop_on_error", True)) and not request.get("silent")
                if pending.stop_on_error:
                    self.verdict_due.add(msg_id)
                    # The relay aborts what waits behind the cell; the inner kernel's own abort is not
                    # wanted: it also takes a cell that reaches it just after its error's reply (its
                    # window closes a moment later), i.e. one the front end sent once it saw that reply.
                    body = [*body[:4], dumps({**request, "stop_on_error": False}), *body[5:]]
                self.cells[msg_id] = Cell(header, item.idents, busy_sent=msg_id in self.busy_announced)
                self.busy_announced.discard(msg_id)
        assert self.inner is not None  # forwarded only while the gate is ready
        self.inner.forward(channel, body)

    def _complete_here(self, item: Held) -> bool | None:
        """`%sandbox` lines are completed here; a line that starts to spell `%sandbox` gets it offered
        beside the inner kernel's matches (added to its reply), or alone while the sandbox is not up."""
        planned = completion.plan(content(item.frames), self.gate.ready)
        if planned is None:
            return None
        if planned.reply is not None:
            self._reply("shell", item.idents, item.header, "complete_reply", planned.reply)
            return True
        self._forward(item)
        self.pending[item.header["msg_id"]].added_matches = planned
        return True

    def _complete_replied(self, msg_id: str, pending: Pending, body: Body) -> None:
        merged = completion.merge(content(body), pending.added_matches) if pending.added_matches else None
        if merged is not None:
            body = [*body[:4], dumps(merged), *body[5:]]
        self.front.send(pending.channel, pending.idents, body)

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
            self.verdict_due.discard(msg_id)
            self._pump_due = True

    def abort_queued(self) -> None:
        """A cell failed with stop_on_error: as ipykernel does, every execute request queued behind it
        is answered "aborted", in its turn, without running. As ipykernel flushes its shell stream first,
        the requests that have already arrived but that the loop has not read yet (it handles events,
        such as a `%sandbox` line's end, before it reads the shell socket) are queued, and aborted too."""
        self._flushing_shell = True
        try:
            self._drain(self.front["shell"], self._front_reader("shell"))
        finally:
            self._flushing_shell = False
        for item in self.queue:
            if item.header.get("msg_type") == "execute_request":
                item.abort = True

    def _send_aborted(self, item: Held) -> None:
        self._say_busy(item)
        self.front.send_new(
            item.channel,
            item.idents,
            "execute_reply",
            {"status": "aborted"},
            item.header,
            metadata=reply_metadata(self.session, "aborted"),
        )
        self.front.publish("status", {"execution_state": "idle"}, item.header)

    # -- sandbox → front end ----------------------------------------------------------------

    def _from_inner(self, channel: str, frames: list[bytes]) -> None:
        checked = self.inner.verified(frames) if self.inner is not None else None
        if checked is None:
            return
        body = self.inbound.frames(channel, checked[1])
        if body is None:
            return
        try:
            parent_id = json.loads(body[2]).get("msg_id")
        except (ValueError, AttributeError):
            return
        if not isinstance(parent_id, str):
            return
        if channel == "stdin":
            self._input_request(parent_id, body)
            return
        if parent_id in self.internal:
            if self.gate.state is State.CONNECTING and loads(body[1]).get("msg_type") == "kernel_info_reply":
                self._learn_kernel_info(body[4])
                if self.gate.handshake is not None:
                    self.gate.handshake.shell = True
                self._handshake_progress()
            return
        pending = self.pending.pop(parent_id, None)
        if pending is None:
            return
        self._settled(parent_id)
        host = self.hosts.sub_requests.get(parent_id)
        if host is not None:
            self.hosts.on_reply(host, content(body))
            return
        handler = self._reply_handlers.get(pending.header.get("msg_type", ""))
        if handler is not None:
            handler(parent_id, pending, body)
        else:
            self.front.send(pending.channel, pending.idents, body)

    def _input_request(self, parent_id: str, body: Body) -> None:
        pending = self.pending.get(parent_id)
        if pending is None:
            return
        host = self.hosts.sub_requests.get(parent_id)
        if host is not None:
            body = [*body[:2], host.header_bytes, *body[3:]]
        self.front.send("stdin", pending.idents, body)

    def _execute_replied(self, msg_id: str, pending: Pending, body: Body) -> None:
        """The inner kernel's count is the front end's (they are kept equal); an error aborts the
        cells this proxy queued behind the cell, as the inner kernel aborts those it queued."""
        reply = content(body)
        status, count = reply.get("status"), reply.get("execution_count")
        if status in ("ok", "error") and isinstance(count, int) and not isinstance(count, bool):
            self.execution_count = count
        if status == "error" and pending.stop_on_error:
            # Before the reply goes on: what was queued behind the cell is aborted, and a cell the
            # front end sends once it has seen the reply is not.
            self.abort_queued()
        self.front.send(pending.channel, pending.idents, body)
        if msg_id in self.verdict_due:  # known now: the cells behind it go on (or are aborted)
            self.verdict_due.discard(msg_id)
            self._pump_due = True

    def _from_inner_iopub(self, frames: list[bytes]) -> None:
        checked = self.inner.verified(frames) if self.inner is not None else None
        if checked is None:
            return
        topic, body = checked
        filtered = self.inbound.frames("iopub", body)
        if filtered is None:
            return
        body = filtered
        try:
            msg_type = json.loads(body[1]).get("msg_type")
            parent_id = json.loads(body[2]).get("msg_id")
        except (ValueError, AttributeError):
            return
        parent_id = parent_id if isinstance(parent_id, str) else ""
        if self.gate.state is State.CONNECTING:
            if self.gate.handshake is not None:
                self.gate.handshake.iopub = True
            self._handshake_progress()
            if not self.gate.ready:
                return
        if parent_id in self.internal or msg_type == "iopub_welcome" or (msg_type == "status" and not parent_id):
            return  # about the proxy's own requests and subscription, or the inner kernel's start
        cell = self.cells.get(parent_id)
        host = self.hosts.sub_requests.get(parent_id)
        if msg_type == "status":
            state = content(body).get("execution_state")
            if parent_id in self.inflight and state == "idle":
                self._settled(parent_id)
            if cell is not None and self._cell_status(parent_id, cell, host, state):
                return
        if host is not None:
            if msg_type in ("status", "execute_input") or host.finishing is not None:
                return  # the proxy speaks for the whole cell
            body = [*body[:2], host.header_bytes, *body[3:]]
            if msg_type == "execute_result":
                body = with_count(body, host.execution_count)
        if (
            cell is not None
            and msg_type in OUTPUT_MESSAGES
            and not self.admit_output(cell, len(body[4]) + sum(len(b) for b in body[5:]))
        ):
            return
        self.front.send("iopub", topic, body)

    def _cell_status(self, parent_id: str, cell: Cell, host: HostCell | None, state: Any) -> bool:
        """A running cell's busy or idle; True if it is not passed on (said already)."""
        if state == "busy" and cell.started is None:
            cell.started = time.monotonic()
        elif state == "idle":
            if host is not None:
                self.hosts.on_idle(host)
            else:
                self.cells.pop(parent_id, None)
        if state == "busy" and cell.busy_sent:
            cell.busy_sent = False
            return True  # said already, while the cell waited for the sandbox
        return False

    def admit_output(self, cell: Cell, size: int) -> bool:
        shown, notice = self.output_limit.admit(cell, size)
        if notice:
            self.stream(cell.header, notice, "stderr")
        return shown

    # -- per-cell time limit ----------------------------------------------------------------

    def _mark_activity(self) -> None:
        now = time.monotonic()
        if self.cells and now - self._last_touch >= ACTIVITY_SECONDS:
            self._last_touch = now
            self.lifecycle.touch()

    def _check_time_limits(self) -> None:
        self._mark_activity()
        if not self.cells:
            return
        for action, cell in self.time_limit.due(list(self.cells.values())):
            if action == "interrupt":
                self.stream(cell.header, self.time_limit.interrupt_notice(), "stderr")
                self._on_interrupt(None)
            else:
                self.lifecycle.restart_kernel(self.time_limit.restart_message())

    # -- messages the proxy makes itself ----------------------------------------------------

    def stream(self, parent: dict[str, Any], text: str, name: str = "stdout") -> None:
        # The proxy's own streams carry sandbox text too (%%sandbox output, progress, logs).
        self.front.publish("stream", {"name": name, "text": self.policy.text(text)}, parent)

    def _reply(
        self, channel: str, idents: list[bytes], parent: dict[str, Any], msg_type: str, reply: dict[str, Any]
    ) -> None:
        self.front.publish("status", {"execution_state": "busy"}, parent)
        self.front.send_new(channel, idents, msg_type, reply, parent)
        self.front.publish("status", {"execution_state": "idle"}, parent)

    def _fail_waiting(self, message: str, keep_held: bool = False) -> None:
        """Answer every request that waits on the sandbox with an error that says why. `keep_held`:
        the inner kernel was restarted; requests not sent to it yet go to the new one."""
        waiting = [
            (p.channel, p.idents, p.header)
            for sub_id, p in self.pending.items()
            if sub_id not in self.hosts.sub_requests
        ]
        if not keep_held:
            waiting += [(h.channel, h.idents, h.header) for h in self.gate.release() + self.queue]
            self.queue = []
            self.progress_target = None
        elif self.verdict_due:
            # Cells held behind one that was running when the kernel died: that death is its error, and
            # they end with it (as in the inner kernel's own queue), not in the new kernel.
            behind = [h for h in self.queue if h.header.get("msg_type") == "execute_request"]
            self.queue = [h for h in self.queue if h not in behind]
            waiting += [(h.channel, h.idents, h.header) for h in behind]
        self.pending = {}
        self.cells = {}
        self.hosts.sub_requests = {}
        self.inflight = {}
        self.verdict_due = set()
        self.hosts.fail(message)
        for channel, idents, header in waiting:
            msg_type = header.get("msg_type", "")
            answer = self._failure_replies.get(msg_type)
            if answer is not None:
                answer(channel, idents, header, message)
            elif reply_type(msg_type):
                self._reply(channel, idents, header, reply_type(msg_type) or "", error_reply(message))

    def _fail_execute(self, channel: str, idents: list[bytes], header: dict[str, Any], message: str) -> None:
        msg_id = header.get("msg_id", "")
        if msg_id in self.busy_announced:
            self.busy_announced.discard(msg_id)
        else:
            self.front.publish("status", {"execution_state": "busy"}, header)
        self.front.publish("error", error_output(message), header)
        self.execution_count += 1
        self.front.send_new(
            channel,
            idents,
            "execute_reply",
            failed_execute_reply(error_reply(message), self.execution_count),
            header,
            metadata=reply_metadata(self.session, "error"),
        )
        self.front.publish("status", {"execution_state": "idle"}, header)

    def _fail_kernel_info(self, channel: str, idents: list[bytes], header: dict[str, Any], message: str) -> None:
        # A client must learn the protocol version even of a kernel whose sandbox failed.
        self._reply(channel, idents, header, "kernel_info_reply", self.gate.kernel_info_reply())

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self, restart: bool, parent: dict[str, Any] | None = None) -> None:
        if parent is not None:
            # ipykernel tells every front end on iopub too, as a reply to the request.
            self.front.publish("shutdown_reply", {"status": "ok", "restart": restart}, parent)
        if self.hosts.current is not None:
            self.hosts.current.cancel.set()
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
        registered: InnerSockets | None = None
        while self.running:
            if registered is not self.inner:
                for sock in registered.sockets.values() if registered else ():
                    try:
                        poller.unregister(sock)
                    except KeyError:
                        pass
                for sock in self.inner.sockets.values() if self.inner else ():
                    poller.register(sock, zmq.POLLIN)
                registered = self.inner
            timed = self.gate.coming_up or bool(self.cells)
            ready = dict(poller.poll(100 if timed else 1000))
            if self._wake_read in ready:
                self._handle_events()
            if ready.get(self.front["iopub"]):
                self._drain(self.front["iopub"], self.front.welcome)
            for name in ("control", "shell", "stdin"):
                if ready.get(self.front[name]):
                    self._drain(self.front[name], self._front_reader(name))
            if ready.get(self.front["hb"]):
                self.front.echo_heartbeat()
            inner = self.inner
            if inner is not None:
                for name in ("control", "shell", "stdin", "iopub"):
                    inner_sock = inner.sockets.get(name)
                    if inner_sock is not None and ready.get(inner_sock) and self.inner is inner:
                        self._drain(inner_sock, self._inner_reader(name))
            if self._pump_due:
                self._pump_due = False
                self.pump()
            if self.gate.state is State.CONNECTING:
                self._handshake_tick()
            self._check_kernel_info_wait()
            self._check_time_limits()
        self.close()

    def _front_reader(self, channel: str) -> Callable[[list[bytes]], None]:
        return lambda frames: self._from_front(channel, frames)

    def _inner_reader(self, channel: str) -> Callable[[list[bytes]], None]:
        if channel == "iopub":
            return self._from_inner_iopub
        return lambda frames: self._from_inner(channel, frames)

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
        self.close_inner()
        self.front.close()
        os.close(self._wake_read)
        os.close(self._wake_write)


__all__ = ["Lifecycle", "Pending", "Relay", "State"]
