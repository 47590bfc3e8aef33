"""Stateful code execution: cells sent to a Jupyter kernel over the server's kernel websocket
(/api/kernels/{id}/channels), their messages gathered into an Execution."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, Callable

from tornado import websocket

from .connection import Transport, quoted
from .errors import CodeUnavailable, CommandTimeout, ConnectionFailed, InvalidRequest, NotFound
from .models import CodeError, Execution, Output

LANGUAGES = {"python": "sandbox-python"}
DEFAULT_LANGUAGE = "python"
StreamCallback = Callable[[str], Any]


def kernel_name_for(language: str) -> str:
    try:
        return LANGUAGES[language]
    except KeyError:
        raise InvalidRequest(f"language must be one of: {', '.join(sorted(LANGUAGES))} (got {language!r})") from None


def message(msg_type: str, content: dict[str, Any], session: str, channel: str = "shell") -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "jupyter-sandbox-sdk",
            "session": session,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "channel": channel,
        "content": content,
    }


class KernelConnection:
    """One websocket to one kernel, opened on first use; cells run one at a time."""

    def __init__(self, transport: Transport, kernel_id: str, language: str = DEFAULT_LANGUAGE) -> None:
        self.transport = transport
        self.kernel_id = kernel_id
        self.language = language
        self.session = uuid.uuid4().hex
        self.socket: websocket.WebSocketClientConnection | None = None
        self.lock = asyncio.Lock()

    async def _socket(self) -> websocket.WebSocketClientConnection:
        if self.socket is None:
            self.socket = await self.transport.websocket(
                f"api/kernels/{quoted(self.kernel_id)}/channels?session_id={self.session}"
            )
        return self.socket

    async def _send(self, msg: dict[str, Any]) -> None:
        socket = await self._socket()
        try:
            await socket.write_message(json.dumps(msg))
        except websocket.WebSocketClosedError:
            self.socket = None
            raise ConnectionFailed("the kernel's websocket closed") from None

    async def _next(self, deadline: float) -> dict[str, Any]:
        socket = await self._socket()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise asyncio.TimeoutError
        raw = await asyncio.wait_for(socket.read_message(), timeout=remaining)
        if raw is None:
            self.socket = None
            raise ConnectionFailed("the kernel's websocket closed (the kernel was shut down?)")
        parsed = json.loads(raw)
        return parsed if isinstance(parsed, dict) else {}

    async def wait_ready(self, timeout: float = 180) -> None:
        """Until the kernel answers kernel_info (its sandbox is up and its ipykernel answers)."""
        deadline = time.monotonic() + timeout
        async with self.lock:
            while True:
                request = message("kernel_info_request", {}, self.session)
                await self._send(request)
                try:
                    while True:
                        reply = await self._next(min(deadline, time.monotonic() + 5))
                        if (
                            reply.get("msg_type") == "kernel_info_reply"
                            and reply.get("parent_header", {}).get("msg_id") == request["header"]["msg_id"]
                        ):
                            return
                except asyncio.TimeoutError:
                    if time.monotonic() >= deadline:
                        raise CommandTimeout(f"the kernel did not answer within {timeout:g} seconds") from None

    async def run(
        self,
        code: str,
        timeout: float = 600,
        on_stdout: StreamCallback | None = None,
        on_stderr: StreamCallback | None = None,
        silent: bool = False,
    ) -> Execution:
        if not isinstance(code, str):
            raise InvalidRequest("code must be a string")
        async with self.lock:
            request = message(
                "execute_request",
                {
                    "code": code,
                    "silent": silent,
                    "store_history": not silent,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
                self.session,
            )
            msg_id = request["header"]["msg_id"]
            await self._send(request)
            execution = Execution()
            replied = idle = False
            deadline = time.monotonic() + timeout
            try:
                while not (replied and idle):
                    msg = await self._next(deadline)
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    replied, idle = self._gather(execution, msg, replied, idle, on_stdout, on_stderr)
            except asyncio.TimeoutError:
                await self.interrupt()
                raise CommandTimeout(
                    f"the cell did not finish within {timeout:g} seconds; it was interrupted"
                ) from None
            return execution

    @staticmethod
    def _gather(
        execution: Execution,
        msg: dict[str, Any],
        replied: bool,
        idle: bool,
        on_stdout: StreamCallback | None,
        on_stderr: StreamCallback | None,
    ) -> tuple[bool, bool]:
        kind, content = msg.get("msg_type"), msg.get("content") or {}
        if kind == "stream":
            text = str(content.get("text", ""))
            if content.get("name") == "stderr":
                execution.stderr += text
                if on_stderr:
                    on_stderr(text)
            else:
                execution.stdout += text
                if on_stdout:
                    on_stdout(text)
        elif kind in ("display_data", "execute_result"):
            data: dict[str, Any] = content["data"] if isinstance(content.get("data"), dict) else {}
            metadata: dict[str, Any] = content["metadata"] if isinstance(content.get("metadata"), dict) else {}
            execution.outputs.append(Output(data, metadata, is_result=kind == "execute_result"))
            if kind == "execute_result" and isinstance(content.get("execution_count"), int):
                execution.execution_count = content["execution_count"]
        elif kind == "error":
            traceback: list[Any] = content["traceback"] if isinstance(content.get("traceback"), list) else []
            execution.error = CodeError(
                str(content.get("ename", "")), str(content.get("evalue", "")), [str(t) for t in traceback]
            )
        elif kind == "execute_reply":
            replied = True
            if isinstance(content.get("execution_count"), int):
                execution.execution_count = content["execution_count"]
            if content.get("status") == "error" and execution.error is None:
                execution.error = CodeError(
                    str(content.get("ename", "")), str(content.get("evalue", "")), list(content.get("traceback") or [])
                )
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
        return replied, idle

    async def interrupt(self) -> None:
        try:
            await self.transport.json(
                "POST", self.transport.address.url + f"api/kernels/{quoted(self.kernel_id)}/interrupt"
            )
        except Exception:
            pass

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


class CodeInterpreter:
    """`sb.code`: run code statefully in the Jupyter kernel bound to the sandbox."""

    def __init__(
        self, transport: Transport, kernel_id: str | None, language: str | None, sandbox_id: str | None = None
    ) -> None:
        self.transport = transport
        self.kernel_id = kernel_id
        self.language = language or DEFAULT_LANGUAGE
        self.sandbox_id = sandbox_id
        # A kernel this SDK object attached to the sandbox itself (shut down with it).
        self.attached = False
        self._connection: KernelConnection | None = None

    async def run(
        self,
        code: str,
        language: str | None = None,
        timeout: float = 600,
        on_stdout: StreamCallback | None = None,
        on_stderr: StreamCallback | None = None,
    ) -> Execution:
        """Run `code` in the sandbox's kernel: variables, imports and files persist from one call to
        the next. Returns its stdout/stderr, rich outputs (text, HTML, images, JSON) and any error
        with its traceback; `on_stdout`/`on_stderr` see the printed text as it comes."""
        if language is not None and language != self.language:
            kernel_name_for(language)  # a clear error for an unknown language
            raise InvalidRequest(f"this sandbox's kernel runs {self.language}, not {language}")
        if self.kernel_id is None:
            await self._attach(timeout)
        assert self.kernel_id is not None
        if self._connection is None:
            self._connection = KernelConnection(self.transport, self.kernel_id, self.language)
        return await self._connection.run(code, timeout, on_stdout, on_stderr)

    async def _attach(self, timeout: float) -> None:
        """A kernel for a sandbox made over REST, started on the first run (POST .../kernel)."""
        if self.sandbox_id is None:
            raise CodeUnavailable("no Jupyter kernel is bound to this sandbox")
        answer = await self.transport.request(
            "POST", f"/sandboxes/{quoted(self.sandbox_id)}/kernel", json={"language": self.language}
        )
        self.kernel_id, self.attached = str(answer["kernel_id"]), True
        self._connection = KernelConnection(self.transport, self.kernel_id, self.language)
        await self._connection.wait_ready(timeout)

    async def detach(self) -> None:
        """Shut down the kernel this object attached (the sandbox stays)."""
        self.close()
        if self.attached and self.kernel_id is not None:
            kernel_id, self.kernel_id, self.attached = self.kernel_id, None, False
            try:
                await self.transport.json("DELETE", self.transport.address.url + f"api/kernels/{quoted(kernel_id)}")
            except NotFound:
                pass

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
