"""The agent's HTTP API. Every request must carry the sandbox's token."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, Any

from tornado import iostream, web
from tornado.locks import Condition

from . import files, processes, usage
from .auth import require_token
from .channel import ChannelHandler
from .git import Git, GitError
from .git_relay import RelayHandler, Relays
from .kernel_runner import KernelRunner
from .processes import run_command
from .pty import PtyHandler
from .ptys import PtyConnectHandler, PtyError, Ptys, checked_size
from .sessions import SessionError, Sessions
from .tunnel import TunnelHandler

MAX_EVENTS_KEPT = 100
MAX_WAIT_SECONDS = 60.0
FIND_SECONDS = 10.0
MAX_SYNC_OUTPUT = 1024 * 1024
# Uploads stream to disk, so the only bound is the sandbox's own disk and file-size limit.
MAX_BODY_SIZE = 64 * 1024**3
# No "%" in it: tornado logs an HTTPError's message as a format string.
NO_SPACE = (
    "no space left in the sandbox's home: it holds as many bytes or files as its disk limit allows; "
    "delete files, or give the sandbox a larger disk limit"
)


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


# Calls the host makes on its own, which are not a sign of anyone using the sandbox.
PASSIVE_PATHS = ("/health", "/events", "/usage")


class AgentHandler(web.RequestHandler):
    def initialize(self, token: str, runner: KernelRunner, events: EventLog, started: float) -> None:
        self.token = token
        self.runner = runner
        self.event_log = events
        self.started = started

    def prepare(self) -> None:
        require_token(self, self.token)
        if self.request.path not in PASSIVE_PATHS:
            usage.ACTIVITY["last"] = time.time()

    def _handle_request_exception(self, e: BaseException) -> None:
        # Text that cannot be encoded (lone surrogates in a path, say) is bad input, not a crash.
        if isinstance(e, UnicodeError):
            reason = (
                e.reason if isinstance(e, (UnicodeEncodeError, UnicodeDecodeError, UnicodeTranslateError)) else str(e)
            )
            e = web.HTTPError(400, f"text in the request cannot be used: {reason}")
        # A full home is the sandbox's limit at work, not a fault of the agent.
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            e = web.HTTPError(507, NO_SPACE)
        # tornado hands write_error the exception being handled, not this one: keep it for write_error.
        self._handled_error = e
        super()._handle_request_exception(e)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        error = getattr(self, "_handled_error", None) or (exc_info[1] if exc_info else None)
        if isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))


class HealthHandler(AgentHandler):
    def get(self) -> None:
        self.write_json(
            {
                "status": "ok",
                "uptime": time.time() - self.started,
                "kernel": self.runner.status(),
                "last_event": self.event_log.seq,
                "last_activity": usage.ACTIVITY["last"],
            }
        )


class ActivityHandler(AgentHandler):
    """POST /activity: the host says the sandbox is in use (a cell is running); prepare() records it."""

    def post(self) -> None:
        self.write_json({"last_activity": usage.ACTIVITY["last"]})


class UsageHandler(AgentHandler):
    async def get(self) -> None:
        loop = asyncio.get_running_loop()
        disk = await loop.run_in_executor(None, usage.disk_used, files.HOME)
        process = self.runner.process
        hidden = self.runner.own_ports | usage.machinery_ports(process.pid if process is not None else None)
        self.write_json({"disk": disk, "ports": usage.listening_ports(hidden)})


class KernelActionHandler(AgentHandler):
    async def post(self, action: str) -> None:
        loop = asyncio.get_running_loop()
        if action == "start":
            generation = await loop.run_in_executor(None, self.runner.start)
        elif action == "restart":
            generation = await loop.run_in_executor(None, self.runner.restart)
            if self.get_query_argument("announce", "0") == "1":
                # Asked for from outside the notebook (the sandbox API): an attached kernel learns of
                # it from this event. Its own restarts (%sandbox restart) it knows of already.
                self.event_log.add({"type": "kernel_restarted", "generation": generation})
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
            isinstance(command, list) and command and all(isinstance(a, str) for a in command)
        ):
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


def _mode(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value):
        return int(value, 8)
    if isinstance(value, int) and 0 <= value <= 0o7777:
        return value
    raise web.HTTPError(400, "mode must be an octal string such as '755'")


class FilesHandler(AgentHandler):
    """GET lists a folder (recursive=1: everything under it); DELETE removes a path."""

    def get(self) -> None:
        path = self.get_query_argument("path", "")
        recursive = self.get_query_argument("recursive", "0") in ("1", "true")
        with file_errors():
            self.write_json(files.walk(path) if recursive else files.list_directory(path))

    def delete(self) -> None:
        with file_errors():
            files.delete(
                self.get_query_argument("path", ""), self.get_query_argument("recursive", "0") in ("1", "true")
            )
        self.set_status(204)
        self.finish()


class FileInfoHandler(AgentHandler):
    def get(self) -> None:
        with file_errors():
            self.write_json(files.info(self.get_query_argument("path", "")))


class FileOperationHandler(AgentHandler):
    """POST /files/{folder,move,permissions,replace} with a JSON body; GET /files/{search,find}."""

    async def post(self, operation: str) -> None:
        body = json_body(self)
        with file_errors():
            if operation == "folder":
                self.write_json(files.make_folder(_string(body, "path"), _mode(body.get("mode"), 0o755)))
            elif operation == "move":
                self.write_json(files.move(_string(body, "source"), _string(body, "destination")))
            elif operation == "permissions":
                owner, group = body.get("owner"), body.get("group")
                if any(v is not None and not isinstance(v, str) for v in (owner, group)):
                    raise web.HTTPError(400, "owner and group must be names or numeric ids as strings")
                mode = None if body.get("mode") is None else _mode(body.get("mode"), 0)
                self.write_json(files.set_permissions(_string(body, "path"), mode, owner, group))
            elif operation == "replace":
                paths, pattern, new_value = body.get("files"), body.get("pattern"), body.get("new_value")
                if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                    raise web.HTTPError(400, "files must be a list of paths")
                if not isinstance(pattern, str) or not pattern or not isinstance(new_value, str):
                    raise web.HTTPError(400, "pattern (non-empty) and new_value must be strings")
                self.write_json({"results": files.replace(paths, pattern, new_value)})
            else:
                raise web.HTTPError(404, f"unknown file operation {operation!r}")

    async def get(self, operation: str) -> None:
        path = self.get_query_argument("path", "")
        pattern = self.get_query_argument("pattern", "")
        if not pattern:
            raise web.HTTPError(400, "pattern is required")
        with file_errors():
            if operation == "search":
                self.write_json(files.search(path, pattern))
            elif operation == "find":
                self.write_json(await self._find(path, pattern))
            else:
                raise web.HTTPError(404, f"unknown file operation {operation!r}")

    async def _find(self, path: str, pattern: str) -> dict:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise web.HTTPError(400, f"pattern is not a valid regular expression: {exc}") from None
        root = files.resolve(path)
        if not root.is_dir():
            raise web.HTTPError(404, f"{root} is not a folder")
        matches: list[dict] = []
        buffer = {"text": ""}

        async def emit(chunk: dict) -> None:
            if chunk["stream"] != "stdout":
                return
            buffer["text"] += chunk["text"]
            *lines, buffer["text"] = buffer["text"].split("\n")
            matches.extend(json.loads(line) for line in lines if line)

        result = await run_command(
            [sys.executable, "-I", "-c", files.FIND_SCRIPT, str(root), pattern, "10000"],
            files.HOME,
            {},
            FIND_SECONDS,
            emit,
        )
        return {"matches": matches, "timed_out": result["timed_out"], "truncated": len(matches) >= 10000}


class file_errors:
    """Turns FileError into the HTTP error it names."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if isinstance(value, files.FileError):
            raise web.HTTPError(value.status, str(value)) from None


def _string(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise web.HTTPError(400, f"{key} must be a non-empty string")
    return value


@web.stream_request_body
class FileContentHandler(AgentHandler):
    """GET streams a file out; PUT streams the request body into a file (replaced atomically)."""

    _upload: tuple[Path, Path, IO[bytes]] | None = None

    def prepare(self) -> None:
        super().prepare()
        self._upload = None
        self._write_error: OSError | None = None
        if self.request.method == "PUT":
            try:
                self._upload = files.open_for_writing(self.get_query_argument("path", ""))
            except files.FileError as exc:
                raise web.HTTPError(exc.status, str(exc)) from None

    def data_received(self, chunk: bytes) -> None:
        # An error here would only drop the connection; the rest of the body is read and the answer
        # says what went wrong (a full home, say).
        if self._upload is not None and self._write_error is None:
            try:
                self._upload[2].write(chunk)
            except OSError as exc:
                self._write_error = exc

    def put(self) -> None:
        assert self._upload is not None  # prepare() opened it for every PUT, or refused the request
        target, temporary, handle = self._upload
        if self._write_error is not None:
            raise self._write_error
        handle.close()
        os.replace(temporary, target)
        self._upload = None
        self.write_json({"path": str(target), "size": target.stat().st_size})

    def on_finish(self) -> None:
        self._discard_upload()

    def on_connection_close(self) -> None:
        self._discard_upload()

    def _discard_upload(self) -> None:
        if self._upload is not None:
            _, temporary, handle = self._upload
            with contextlib.suppress(OSError):  # what is still buffered may not fit any more
                handle.close()
            try:
                os.unlink(temporary)
            except OSError:
                pass
            self._upload = None

    async def get(self) -> None:
        path = self.get_query_argument("path", "")
        if files.resolve(path).is_dir():
            await self._archive(files.resolve(path), self.get_query_argument("format", "tar"))
            return
        try:
            handle, size = files.open_for_reading(path)
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

    async def _archive(self, folder: Any, kind: str) -> None:
        """A folder, streamed as a tar (or zip) archive made as it is sent."""
        if kind == "tar":
            command = ["tar", "-C", str(folder.parent), "-cf", "-", "--", folder.name]
            self.set_header("Content-Type", "application/x-tar")
        elif kind == "zip":
            command = [sys.executable, "-I", "-c", ZIP_SCRIPT, str(folder)]
            self.set_header("Content-Type", "application/zip")
        else:
            raise web.HTTPError(400, "format must be tar or zip")
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, start_new_session=True
        )
        processes.OWN.add(process.pid)
        assert process.stdout is not None  # a pipe, asked for above
        try:
            while True:
                chunk = await process.stdout.read(256 * 1024)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        except iostream.StreamClosedError:
            return
        finally:
            if process.returncode is None:
                try:
                    process.kill()  # all its output is read (or nobody wants it): it is done either way
                except ProcessLookupError:
                    pass
            await process.wait()
            processes.OWN.discard(process.pid)
        self.finish()


ZIP_SCRIPT = r"""
import os, sys, zipfile
root = sys.argv[1]
with zipfile.ZipFile(sys.stdout.buffer, 'w', zipfile.ZIP_DEFLATED) as archive:
    for folder, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                archive.write(path, os.path.relpath(path, os.path.dirname(root)))
"""


class SessionsHandler(AgentHandler):
    # Tornado hands each handler its own route's keyword arguments: initialize() differs by design.
    def initialize(self, sessions: Sessions, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.sessions = sessions


class session_errors:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if isinstance(value, SessionError):
            raise web.HTTPError(value.status, str(value)) from None


class SessionListHandler(SessionsHandler):
    def get(self) -> None:
        self.write_json({"sessions": [s.describe() for s in self.sessions.sessions.values()]})

    def post(self) -> None:
        body = json_body(self)
        session_id = body.get("id")
        if session_id is not None and (
            not isinstance(session_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", session_id)
        ):
            raise web.HTTPError(400, "id may hold letters, digits, '-' and '_' (at most 64)")
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise web.HTTPError(400, "env must map names to strings")
        with session_errors():
            session = self.sessions.create(session_id, str(files.resolve(body.get("cwd"))), env)
        self.write_json(session.describe(), status=201)


class SessionHandler(SessionsHandler):
    def get(self, session_id: str) -> None:
        with session_errors():
            self.write_json(self.sessions.get(session_id).describe())

    def delete(self, session_id: str) -> None:
        with session_errors():
            self.sessions.delete(session_id)
        self.set_status(204)
        self.finish()


class CommandsHandler(SessionsHandler):
    async def post(self, session_id: str) -> None:
        body = json_body(self)
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise web.HTTPError(400, "command must be a non-empty string")
        with session_errors():
            record = await self.sessions.run(session_id, command)
        if not body.get("run_async"):
            await record.done.wait()
            answer = record.describe()
            answer["stdout"] = record.stdout_path.read_text(errors="replace")[-MAX_SYNC_OUTPUT:]
            answer["stderr"] = record.stderr_path.read_text(errors="replace")[-MAX_SYNC_OUTPUT:]
            self.write_json(answer)
            return
        self.write_json(record.describe(), status=202)


class CommandHandler(SessionsHandler):
    def get(self, session_id: str, command_id: str) -> None:
        with session_errors():
            self.write_json(self.sessions.command(session_id, command_id).describe())

    async def post(self, session_id: str, command_id: str, action: str = "") -> None:
        with session_errors():
            if action == "kill":
                self.sessions.kill(session_id, command_id)
                self.write_json(self.sessions.command(session_id, command_id).describe())
            elif action == "input":
                data = json_body(self).get("data")
                if not isinstance(data, str):
                    raise web.HTTPError(400, "data must be a string")
                await self.sessions.send_input(session_id, command_id, data.encode())
                self.write_json({"sent": len(data)})
            else:
                raise web.HTTPError(404, f"unknown command action {action!r}")


class LogsHandler(SessionsHandler):
    """GET logs: {stdout, stderr} whole; follow=1: NDJSON chunks as they come, then the exit code."""

    async def get(self, session_id: str, command_id: str) -> None:
        with session_errors():
            record = self.sessions.command(session_id, command_id)
        if self.get_query_argument("follow", "0") not in ("1", "true"):
            self.write_json(
                {
                    **record.describe(),
                    "stdout": record.stdout_path.read_text(errors="replace"),
                    "stderr": record.stderr_path.read_text(errors="replace"),
                }
            )
            return
        self.set_header("Content-Type", "application/x-ndjson")
        offsets = {"stdout": 0, "stderr": 0}
        paths = {"stdout": record.stdout_path, "stderr": record.stderr_path}
        try:
            while True:
                finished = record.done.is_set()
                for stream, path in paths.items():
                    with open(path, "rb") as handle:
                        handle.seek(offsets[stream])
                        data = handle.read(1024 * 1024)
                    if data:
                        offsets[stream] += len(data)
                        self.write(json.dumps({"stream": stream, "text": data.decode("utf-8", "replace")}) + "\n")
                        await self.flush()
                if finished:
                    break
                await asyncio.sleep(0.05)
        except iostream.StreamClosedError:
            return
        self.finish(json.dumps({"exit_code": record.exit_code}) + "\n")


class PtysHandler(AgentHandler):
    """Named PTYs (ptys.py): POST /ptys creates, GET lists; /ptys/{id} GET, DELETE (kill); /resize."""

    # Tornado hands each handler its own route's keyword arguments: initialize() differs by design.
    def initialize(self, ptys: Ptys, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.ptys = ptys

    async def get(self, pty_id: str | None = None) -> None:
        with pty_errors():
            if pty_id is None:
                self.write_json({"ptys": [p.describe() for p in self.ptys.all()]})
            else:
                self.write_json(self.ptys.get(pty_id).describe())

    async def post(self, pty_id: str | None = None, action: str | None = None) -> None:
        body = json_body(self)
        with pty_errors():
            if pty_id is None:
                self.write_json((await self.ptys.create(body)).describe(), status=201)
            elif action == "resize":
                pty = self.ptys.get(pty_id)
                pty.resize(*checked_size(body.get("cols"), body.get("rows")))
                self.write_json(pty.describe())
            else:
                raise web.HTTPError(405)

    async def delete(self, pty_id: str) -> None:
        with pty_errors():
            self.write_json((await self.ptys.kill(pty_id)).describe())


class pty_errors:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if isinstance(value, PtyError):
            raise web.HTTPError(value.status, str(value)) from None


class GitHandler(AgentHandler):
    # Tornado hands each handler its own route's keyword arguments: initialize() differs by design.
    def initialize(self, git: Git, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.git = git

    async def get(self, operation: str) -> None:
        path = self.get_query_argument("path", "")
        try:
            if operation == "status":
                self.write_json(await self.git.status(path))
            elif operation == "branches":
                self.write_json(await self.git.branches(path))
            else:
                raise web.HTTPError(404, f"unknown git operation {operation!r}")
        except GitError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None

    async def post(self, operation: str) -> None:
        body = json_body(self)
        git = self.git
        actions = {
            "clone": lambda: git.clone(body),
            "branches": lambda: git.create_branch(body.get("path"), body.get("name")),
            "checkout": lambda: git.checkout(body.get("path"), body.get("name")),
            "add": lambda: git.add(body.get("path"), body.get("files")),
            "commit": lambda: git.commit(body),
            "push": lambda: git.push(body),
            "pull": lambda: git.pull(body),
        }
        if operation not in actions:
            raise web.HTTPError(404, f"unknown git operation {operation!r}")
        try:
            self.write_json(await actions[operation]())
        except GitError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None

    async def delete(self, operation: str) -> None:
        if operation != "branches":
            raise web.HTTPError(404, f"unknown git operation {operation!r}")
        try:
            self.write_json(
                await self.git.delete_branch(self.get_query_argument("path", ""), self.get_query_argument("name", ""))
            )
        except GitError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None


def make_app(token: str, runner: KernelRunner, events: EventLog) -> web.Application:
    args = {"token": token, "runner": runner, "events": events, "started": time.time()}
    session_args = {**args, "sessions": Sessions()}
    relays = Relays()
    pty_args = {**args, "ptys": Ptys()}
    return web.Application(
        [
            (r"/health", HealthHandler, args),
            (r"/kernel/(\w+)", KernelActionHandler, args),
            (r"/events", EventsHandler, args),
            (r"/usage", UsageHandler, args),
            (r"/activity", ActivityHandler, args),
            (r"/process/exec", ExecHandler, args),
            (r"/files", FilesHandler, args),
            (r"/files/info", FileInfoHandler, args),
            (r"/files/content", FileContentHandler, args),
            (r"/files/(folder|move|permissions|replace|search|find)", FileOperationHandler, args),
            (r"/sessions", SessionListHandler, session_args),
            (r"/sessions/([A-Za-z0-9_-]+)", SessionHandler, session_args),
            (r"/sessions/([A-Za-z0-9_-]+)/commands", CommandsHandler, session_args),
            (r"/sessions/([A-Za-z0-9_-]+)/commands/([0-9a-f]+)", CommandHandler, session_args),
            (r"/sessions/([A-Za-z0-9_-]+)/commands/([0-9a-f]+)/logs", LogsHandler, session_args),
            (r"/sessions/([A-Za-z0-9_-]+)/commands/([0-9a-f]+)/(input|kill)", CommandHandler, session_args),
            # git is the agent's own call: the agent's environment and PATH, not the sandbox's.
            (r"/git/relay/([0-9a-f]+)", RelayHandler, {"token": token, "relays": relays}),
            (r"/git/(\w+)", GitHandler, {**args, "git": Git(functools.partial(run_command, own=True), relays)}),
            (r"/pty", PtyHandler, {"token": token}),
            (r"/ptys", PtysHandler, pty_args),
            (r"/ptys/([A-Za-z0-9_-]{1,64})", PtysHandler, pty_args),
            (r"/ptys/([A-Za-z0-9_-]{1,64})/(resize)", PtysHandler, pty_args),
            (r"/ptys/([A-Za-z0-9_-]{1,64})/connect", PtyConnectHandler, {"token": token, "ptys": pty_args["ptys"]}),
            (r"/channel", ChannelHandler, {"token": token}),
            (r"/tunnel/(\d{1,5})", TunnelHandler, {"token": token}),
        ]
    )
