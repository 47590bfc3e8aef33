"""Cells with `%sandbox` lines: run on the host, segment by segment, interleaved with the code
segments sent inside as execute requests of their own.

Trust boundary: `%sandbox` lines run on the host with the host's reach; their text never enters the
sandbox (a cell with no code there is counted by a request of comments only). What a magic writes
may quote the sandbox, so it goes through the output policy like any other sandbox text.

To the front end such a cell looks like one a kernel ran: `status: busy`, `execute_input`, the outputs,
the reply, `status: idle`, all with the front end's request as parent, and one execution count.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cells import Segment, has_magic, magic_waits, may_have_magic, split_cell
from .limits import Cell
from .magics import MagicResult, SandboxMagics
from .messages import dumps
from .replies import error_output, error_reply, failed_execute_reply, reply_metadata
from .startup import State
from .wire import Body, content

if TYPE_CHECKING:
    from .relay import Relay

log = logging.getLogger(__name__)


@dataclass
class HostInput:
    """A question a `%sandbox` line asks the front end (a password field), and its answer."""

    prompt: str
    value: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


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

    @property
    def idle(self) -> bool:
        """Waiting for the sandbox, not for a magic or a request of its own."""
        return not self.magic_running and self.sub_id is None and self.finishing is None


def host_segments(body: Body) -> list[Segment] | None:
    """The segments of an execute request with `%sandbox` lines; None for a cell of plain code."""
    if not may_have_magic(body[4]):
        return None
    code = content(body).get("code")
    segments = split_cell(code) if isinstance(code, str) else []
    return segments if has_magic(segments) else None


# How the inner kernel's language writes a line comment.
COMMENT = {"python": "#", "typescript": "//"}


def count_only_code(segments: list[Segment], language: str = "python") -> str:
    """What the inner kernel runs to count a cell it has no code of: comments only. The `%sandbox`
    lines themselves stay on the host (they may name host paths or values the sandbox must not see)."""
    mark = COMMENT.get(language, "#")
    lines: list[str] = []
    for segment in segments:
        if segment.kind == "code":
            lines += [f"{mark} {line}" for line in segment.text.split("\n")]
        else:
            lines.append(f"{mark} %%sandbox" if segment.kind == "cell" else f"{mark} %sandbox")
    return "\n".join(lines)


def with_count(body: Body, count: int) -> Body:
    found = content(body)
    if not found or found.get("execution_count") == count:
        return body
    return [*body[:4], dumps({**found, "execution_count": count}), *body[5:]]


class HostCells:
    """Runs the relay's one host cell at a time; the relay passes it the inner kernel's answers."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.magics = SandboxMagics()
        self.current: HostCell | None = None
        self.sub_requests: dict[str, HostCell] = {}  # msg_id of a request of its own: the cell
        self.waiting_input: HostInput | None = None  # a `%sandbox` line's question to the front end

    def start(self, idents: list[bytes], body: Body, header: dict[str, Any], segments: list[Segment]) -> None:
        relay = self.relay
        request = content(body)
        silent = bool(request.get("silent"))
        # ipykernel: a cell is counted when it stores history, and silent cells never do.
        counted = bool(request.get("store_history", not silent)) and not silent
        expressions = request.get("user_expressions")
        cell = Cell(header, idents, started=time.monotonic())
        host = HostCell(
            cell,
            body[1],
            segments,
            bool(request.get("allow_stdin")),
            relay.execution_count + 1 if counted else relay.execution_count,
            silent=silent,
            counted=counted,
            stop_on_error=bool(request.get("stop_on_error", True)),
            user_expressions=expressions if isinstance(expressions, dict) else {},
        )
        self.current = host
        relay.cells[header["msg_id"]] = cell
        relay.front.publish("status", {"execution_state": "busy"}, header)
        if not silent:
            relay.front.publish(
                "execute_input",
                {"code": str(request.get("code", "")), "execution_count": relay.execution_count + 1},
                header,
            )
        self.advance()

    def advance(self) -> None:
        relay, host = self.relay, self.current
        if host is None or not host.idle:
            return
        if host.index >= len(host.segments):
            self.finish(None)
            return
        segment = host.segments[host.index]
        waits = "start" if segment.kind == "code" else magic_waits(segment)
        gate = relay.gate
        if not gate.ready and (waits == "start" or (waits == "up" and gate.coming_up)):
            # `%sandbox` lines wait for the sandbox as code does; continued once the handshake is done.
            if not host.silent:
                relay.show_progress_in(host.cell.header)
            relay.wake_sandbox()
            return
        if segment.kind == "code":
            self._send_code_segment(host, segment.text)
            return
        host.magic_running = True
        context = relay.lifecycle.magic_context(
            settings=relay.settings,
            cell_timeout=relay.time_limit.timeout,
            write=lambda name, text: relay.post("host_output", (host, name, text)),
            cancel=host.cancel,
        )
        context.ask_secret = lambda prompt: self.ask_secret(host, prompt)

        def run() -> None:
            try:
                result = self.magics.run(segment.text, segment.body if segment.kind == "cell" else None, context)
            except Exception as exc:  # a bug must not leave the cell busy forever
                log.exception("%%sandbox failed")
                result = MagicResult(error=f"%sandbox failed unexpectedly: {exc!r}")
            relay.post("host_step", (host, result))

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

    def _send_sub_request(self, host: HostCell, request: dict[str, Any]) -> None:
        relay = self.relay
        assert relay.inner is not None  # only sent while the gate is ready
        header = relay.inner.send_new("execute_request", request)
        host.sub_id, host.sub_reply, host.sub_idle = header["msg_id"], None, False
        host.sub_counts = bool(request["store_history"])
        self.sub_requests[host.sub_id] = host
        relay.cells[host.sub_id] = host.cell
        relay.track(host.sub_id, "shell", host.cell.idents, host.cell.header)

    def ask_secret(self, host: HostCell, prompt: str, timeout: float = 600.0) -> str | None:
        """A value typed in the front end's password field for this cell (never echoed, never in the
        notebook): from the magic's thread, while the relay's loop sends the request and takes the
        reply. None when the front end cannot answer input, or it was interrupted or timed out."""
        if not host.allow_stdin:
            return None
        answer = HostInput(prompt)
        self.relay.post("host_input", (host, answer))
        deadline = time.monotonic() + timeout
        while not answer.done.wait(0.2):
            if host.cancel.is_set() or time.monotonic() > deadline:
                return None
        return answer.value

    def on_input(self, payload: tuple[HostCell, HostInput]) -> None:
        host, answer = payload
        if host is not self.current:
            answer.done.set()
            return
        self.waiting_input = answer
        self.relay.front.send_new(
            "stdin", host.cell.idents, "input_request", {"prompt": answer.prompt, "password": True}, host.cell.header
        )

    def on_input_reply(self, value: Any) -> bool:
        """Whether an input_reply from the front end answered a question of a `%sandbox` line."""
        answer, self.waiting_input = self.waiting_input, None
        if answer is None:
            return False
        answer.value = value if isinstance(value, str) else None
        answer.done.set()
        return True

    def on_output(self, payload: tuple[HostCell, str, str]) -> None:
        host, name, text = payload
        if host is self.current and not host.silent and self.relay.admit_output(host.cell, len(text)):
            self.relay.stream(host.cell.header, text, name)

    def on_step(self, payload: tuple[HostCell, MagicResult]) -> None:
        relay = self.relay
        host, result = payload
        if host is not self.current:
            return
        host.magic_running = False
        if result.cell_timeout is not None:
            relay.time_limit.timeout = result.cell_timeout
        if result.stopped or result.deleted:
            relay.gate.fail(
                State.DEAD,
                "The sandbox was deleted (%sandbox delete)."
                if result.deleted
                else "The sandbox was stopped (%sandbox stop).",
            )
            relay.close_inner()
        if result.reconnect is not None:
            relay.on_ready(relay.lifecycle.adopt(result.reconnect))
        if result.error:
            message = relay.policy.text(result.error)  # it may quote the sandbox
            if not host.silent:
                relay.front.publish("error", error_output(message), host.cell.header)
            self.finish(error_reply(message))
            return
        host.index += 1
        self.advance()

    def on_reply(self, host: HostCell, reply: dict[str, Any]) -> None:
        host.sub_reply = reply or {"status": "error"}
        self._sub_progress(host)

    def on_idle(self, host: HostCell) -> None:
        host.sub_idle = True
        self._sub_progress(host)

    def _sub_progress(self, host: HostCell) -> None:
        """A request of the cell is done when both its reply and its idle status have arrived."""
        if host.sub_reply is None or not host.sub_idle:
            return
        reply, sub_id = host.sub_reply, host.sub_id
        host.sub_id = None
        if sub_id is not None:
            self.sub_requests.pop(sub_id, None)
            self.relay.cells.pop(sub_id, None)
        status = reply.get("status")
        if host.sub_counts and status in ("ok", "error"):
            host.committed = True
        if status == "ok" and host.user_expressions and isinstance(reply.get("user_expressions"), dict):
            host.evaluated = reply["user_expressions"]
        if host.finishing is not None:
            self.end(host.finishing or None)
            return
        if status != "ok":
            self.finish(error_reply(reply.get("evalue", ""), reply.get("ename", "Error"), reply.get("traceback", [])))
            return
        host.index += 1
        self.advance()

    def interrupt_waiting(self) -> None:
        """An interrupt while the sandbox starts ends a cell that waits for it."""
        host = self.current
        if host is not None and host.idle:
            error = error_reply("interrupted while the sandbox was starting", "KeyboardInterrupt")
            if not host.silent:
                self.relay.front.publish("error", error_output(error["evalue"], error["ename"]), host.cell.header)
            self.finish(error)

    def finish(self, error: dict[str, Any] | None) -> None:
        """The cell's segments are done (or one failed). If the inner kernel has not counted the cell
        yet, or its user_expressions are still to be evaluated, one last request does it first."""
        host = self.current
        if host is None:
            return
        needs_count = host.counted and not host.committed
        needs_expressions = error is None and bool(host.user_expressions) and host.evaluated is None
        if (needs_count or needs_expressions) and self.relay.gate.ready:
            host.finishing = error or {}
            self._send_sub_request(
                host,
                {
                    "code": count_only_code(host.segments, self.relay.language) if needs_count else "",
                    "silent": not needs_count,
                    "store_history": needs_count,
                    "user_expressions": host.user_expressions if needs_expressions else {},
                    "allow_stdin": False,
                    "stop_on_error": False,
                },
            )
            return
        # Not up (stopped, deleted, failed): the inner kernel is set to the count when it next starts.
        self.end(error)

    def fail(self, message: str) -> None:
        """The sandbox went away under the cell: it ends with `message`."""
        host = self.current
        if host is None:
            return
        host.cancel.set()
        host.finishing = None
        if not host.silent:
            self.relay.front.publish("error", error_output(message), host.cell.header)
        self.end(error_reply(message))

    def end(self, error: dict[str, Any] | None) -> None:
        relay, host = self.relay, self.current
        if host is None:
            return
        self.current = None
        header = host.cell.header
        relay.cells.pop(header["msg_id"], None)
        if host.counted:
            relay.execution_count = host.execution_count
        if error:
            reply = failed_execute_reply(error, host.execution_count)
        else:
            reply = {
                "status": "ok",
                "execution_count": host.execution_count,
                "user_expressions": self._safe_expressions(host.evaluated or {}),
                "payload": [],
            }
        if error and host.stop_on_error and not host.silent:
            relay.abort_queued()  # before the reply: a cell sent after the front end saw it runs
        relay.front.send_new(
            "shell",
            host.cell.idents,
            "execute_reply",
            reply,
            header,
            metadata=reply_metadata(relay.session, reply["status"]),
        )
        relay.front.publish("status", {"execution_state": "idle"}, header)
        relay.pump()

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
                    "data": self.relay.policy.filter_bundle(value["data"]),
                    "metadata": metadata if isinstance(metadata, dict) else {},
                }
            else:
                safe[str(name)] = error_reply(
                    value.get("evalue", ""), value.get("ename", "Error"), value.get("traceback", [])
                )
        return safe
