"""The agent's HTTP API. Every request must carry the sandbox's token."""

from __future__ import annotations

import asyncio
import hmac
import os
import json
import time
from typing import Any

from tornado import iostream, web
from tornado.locks import Condition

from . import files, usage
from .kernel_runner import KernelRunner
from .processes import run_command

MAX_EVENTS_KEPT = 100
MAX_WAIT_SECONDS = 60.0


class EventLog:
    """Numbered events (kernel deaths) that the host can long-poll for."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.seq = 0
        self.changed = Condition()

    def add(self, event: dict[str, Any]) -> None:
        self.seq += 1
        self.events.append({**event, "seq": self.seq, "time": time.time()})
        del self.events[:-MAX_EVENTS_KEPT]
        self.changed.notify_all()

    def after(self, seq: int) -> list[dict[str, Any]]:
        return [event for event in self.events if event["seq"] > seq]


class AgentHandler(web.RequestHandler):
    def initialize(self, token: str, runner: KernelRunner, events: EventLog, started: float) -> None:
        self.token = token
        self.runner = runner
        self.event_log = events
        self.started = started

    def prepare(self) -> None:
        scheme, _, given = (self.request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "token" or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPError(401, "a valid agent token is required")

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], web.HTTPError) and exc_info[1].log_message:
            message = exc_info[1].log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))


class HealthHandler(AgentHandler):
    def get(self) -> None:
        self.write_json({
            "status": "ok",
            "uptime": time.time() - self.started,
            "kernel": self.runner.status(),
            "last_event": self.event_log.seq,
        })


class UsageHandler(AgentHandler):
    async def get(self) -> None:
        loop = asyncio.get_running_loop()
        disk = await loop.run_in_executor(None, usage.disk_used, files.HOME)
        self.write_json({"disk": disk, "ports": usage.listening_ports()})


class KernelActionHandler(AgentHandler):
    async def post(self, action: str) -> None:
        loop = asyncio.get_running_loop()
        if action == "start":
            generation = await loop.run_in_executor(None, self.runner.start)
        elif action == "restart":
            generation = await loop.run_in_executor(None, self.runner.restart)
        elif action == "interrupt":
            if not self.runner.interrupt():
                raise web.HTTPError(409, "the kernel is not running")
            generation = self.runner.generation
        else:
            raise web.HTTPError(404, f"unknown kernel action {action!r}")
        self.write_json({"generation": generation, "kernel": self.runner.status()})


class EventsHandler(AgentHandler):
    async def get(self) -> None:
        try:
            after = int(self.get_query_argument("after", "0"))
            wait = min(float(self.get_query_argument("timeout", "0")), MAX_WAIT_SECONDS)
        except ValueError:
            raise web.HTTPError(400, "after must be an integer and timeout a number of seconds") from None
        if wait > 0 and not self.event_log.after(after):
            await self.event_log.changed.wait(timeout=time.time() + wait)
        self.write_json({"seq": self.event_log.seq, "events": self.event_log.after(after)})


def json_body(handler: web.RequestHandler) -> dict[str, Any]:
    try:
        body = json.loads(handler.request.body or b"{}")
    except ValueError:
        raise web.HTTPError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPError(400, "the request body must be a JSON object")
    return body


class ExecHandler(AgentHandler):
    """POST /process/exec {command, cwd, env, timeout, stream}: run a command.

    With stream=true the answer is newline-delimited JSON, one object per output chunk and a last
    one with the exit code; closing the connection kills the command's whole process group.
    """

    async def post(self) -> None:
        body = json_body(self)
        command = body.get("command")
        if not (isinstance(command, str) and command.strip()) and not (
                isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
            raise web.HTTPError(400, "command must be a non-empty string or a list of strings")
        cwd = str(files.resolve(body.get("cwd")))
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise web.HTTPError(400, "env must map names to strings")
        timeout = body.get("timeout")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise web.HTTPError(400, "timeout must be a positive number of seconds")
        stream = bool(body.get("stream"))
        collected: dict[str, list[str]] = {"stdout": [], "stderr": []}

        async def emit(chunk: dict) -> None:
            if stream:
                self.write(json.dumps(chunk) + "\n")
                await self.flush()
            else:
                collected[chunk["stream"]].append(chunk["text"])

        if stream:
            self.set_header("Content-Type", "application/x-ndjson")
        self._task = asyncio.ensure_future(run_command(command, cwd, env, timeout, emit))
        try:
            result = await self._task
        except (asyncio.CancelledError, iostream.StreamClosedError):
            return
        except FileNotFoundError as exc:
            raise web.HTTPError(400, f"cannot run the command: {exc}") from None
        except NotADirectoryError:
            raise web.HTTPError(400, f"cwd {cwd} is not a directory") from None
        if stream:
            self.finish(json.dumps(result) + "\n")
        else:
            self.write_json({**result, "stdout": "".join(collected["stdout"]), "stderr": "".join(collected["stderr"])})

    def on_connection_close(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None and not task.done():
            task.cancel()


class FilesHandler(AgentHandler):
    def get(self) -> None:
        try:
            self.write_json(files.list_directory(self.get_query_argument("path", "")))
        except files.FileError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None


@web.stream_request_body
class FileContentHandler(AgentHandler):
    """GET streams a file out; PUT streams the request body into a file (replaced atomically)."""

    def prepare(self) -> None:
        super().prepare()
        self._upload = None
        if self.request.method == "PUT":
            try:
                self._upload = files.open_for_writing(self.get_query_argument("path", ""))
            except files.FileError as exc:
                raise web.HTTPError(exc.status, str(exc)) from None

    def data_received(self, chunk: bytes) -> None:
        if self._upload is not None:
            self._upload[2].write(chunk)

    def put(self) -> None:
        target, temporary, handle = self._upload
        handle.close()
        os.replace(temporary, target)
        self._upload = None
        self.write_json({"path": str(target), "size": target.stat().st_size})

    def on_finish(self) -> None:
        self._discard_upload()

    def on_connection_close(self) -> None:
        self._discard_upload()

    def _discard_upload(self) -> None:
        if getattr(self, "_upload", None) is not None:
            _, temporary, handle = self._upload
            handle.close()
            try:
                os.unlink(temporary)
            except OSError:
                pass
            self._upload = None

    async def get(self) -> None:
        try:
            handle, size = files.open_for_reading(self.get_query_argument("path", ""))
        except files.FileError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(size))
        with handle:
            while True:
                chunk = handle.read(256 * 1024)
                if not chunk:
                    break
                self.write(chunk)
                try:
                    await self.flush()
                except iostream.StreamClosedError:
                    return
        self.finish()


def make_app(token: str, runner: KernelRunner, events: EventLog) -> web.Application:
    args = {"token": token, "runner": runner, "events": events, "started": time.time()}
    return web.Application([
        (r"/health", HealthHandler, args),
        (r"/kernel/(\w+)", KernelActionHandler, args),
        (r"/events", EventsHandler, args),
        (r"/usage", UsageHandler, args),
        (r"/process/exec", ExecHandler, args),
        (r"/files", FilesHandler, args),
        (r"/files/content", FileContentHandler, args),
    ], max_body_size=16 * 1024**3)
