"""REST handlers under /sandbox/api. Each is thin: it checks input, calls SandboxService, answers JSON.

Every handler is `@web.authenticated` and `@authorized`; POST, PUT, PATCH and DELETE go through
Jupyter Server's XSRF check; the terminal websocket authenticates before it upgrades.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web, websocket

from ..sandbox.service import ApiError, SandboxService, UploadSlot, check_path
from ..sandbox.spec import parse_size
from . import validation
from .multipart import MAX_FIELD, MultipartError, MultipartParser, Part, boundary_of
from .openapi import openapi_document

AUTH_RESOURCE = "sandbox"
SANDBOX_ID = r"(?P<sandbox_id>[0-9a-f]{12})"


class SandboxAPIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, service: SandboxService) -> None:
        self.service = service

    async def prepare(self) -> None:
        await super().prepare()
        # Unauthenticated requests get their 403 from @web.authenticated, not a lesson in the API.
        if self.current_user:
            self.validate_request()

    def operation(self) -> validation.Operation | None:
        route = validation.route_of(self.request.path, self.base_url, self.path_kwargs)
        return validation.operation_for(route, self.request.method or "GET")

    def validate_request(self) -> None:
        """Query parameters and (when it is read whole) the JSON body against the route's schema."""
        operation = self.operation()
        if operation is None:
            return  # a method the route does not have: the handler answers 405
        try:
            validation.check_query(operation, self.request.query_arguments)
            if not getattr(self, "_streams_body", False):
                validation.check_json_body(operation, self.request.body or b"")
        except validation.RequestError as exc:
            raise web.HTTPError(400, exc.message) from None

    def user_name(self) -> str:
        """Whose budget an upload takes from: the server's user, the owner of its sandboxes. (A
        Jupyter server serves one user; a client with the token is a new anonymous name on every
        request, so the login name would bound nothing.)"""
        return self.service.manager.owner

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()

    def query(self, name: str, required: bool = False) -> str | None:
        # Raw bytes: tornado's own accessors quietly turn control characters into spaces.
        values = self.request.query_arguments.get(name)
        value = None
        if values:
            try:
                value = values[-1].decode("utf-8")
            except UnicodeDecodeError:
                raise web.HTTPError(400, f"the query parameter {name!r} is not valid UTF-8") from None
        if required and not value:
            raise web.HTTPError(400, f"the query parameter {name!r} is required")
        return value

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            message = exc.message
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ApiError):
            self.log.warning("%s %s: %s %s", self.request.method, self.request.path, value.status, value.message)
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)


class SandboxesHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply({"sandboxes": await self.service.list(self.query("kernel_id"))})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.reply(await self.service.create(self.json_body()), status=201)


class SandboxHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.get(sandbox_id))

    @web.authenticated
    @authorized
    async def patch(self, sandbox_id: str) -> None:
        self.reply(await self.service.update(sandbox_id, self.json_body()))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str) -> None:
        await self.service.delete(sandbox_id)
        self.no_content()


class SandboxActionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, action: str) -> None:
        if action == "start":
            self.reply(await self.service.start(sandbox_id))
        else:
            self.reply(await self.service.stop(sandbox_id))


class FilesHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        path = check_path(self.query("path"), required=False)
        recursive = "1" if self.query("recursive") in ("1", "true") else "0"
        answer = await self.service.call(sandbox_id, "GET", "/files", {"path": path, "recursive": recursive})
        self.reply(checked_listing(answer))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str) -> None:
        path = check_path(self.query("path", required=True))
        recursive = "1" if self.query("recursive") in ("1", "true") else "0"
        await self.service.call(sandbox_id, "DELETE", "/files", {"path": path, "recursive": recursive})
        self.no_content()


class FileInfoHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        path = check_path(self.query("path", required=True))
        self.reply(checked_entry(await self.service.call(sandbox_id, "GET", "/files/info", {"path": path})))


@web.stream_request_body
class FileContentHandler(SandboxAPIHandler):
    """GET streams a file (a folder as tar, or zip with format=zip); PUT streams the body into a file."""

    _streams_body = True
    _slot: UploadSlot | None = None
    _failed: Exception | None = None

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "PUT":
            return
        # Authenticate and authorise before the body is read.
        if not self.current_user:
            raise web.HTTPError(403)
        if not self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE):
            raise web.HTTPError(403)
        limit = parse_size(self.service.max_upload_size, "max_upload_size")
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise web.HTTPError(413, f"the upload is larger than the limit of {limit:,} bytes")
        self.request.connection.set_max_body_size(limit)
        path = check_path(self.query("path", required=True))
        self._limit, self._received = limit, 0
        self._slot = await self.service.open_upload(self.path_kwargs["sandbox_id"], self.user_name())
        await self._slot.start_file(path, None if length is None else int(length))

    async def data_received(self, chunk: bytes) -> None:
        if self._slot is None:
            return
        self._received += len(chunk)
        try:
            if self._received > self._limit:
                raise web.HTTPError(413, f"the upload is larger than the limit of {self._limit:,} bytes")
            await self._slot.send(chunk)
        except (web.HTTPError, ApiError) as exc:
            # Answered once the body is in (an error raised here would only drop the connection).
            self._failed = exc
            self._close_slot()

    @web.authenticated
    @authorized
    async def put(self, sandbox_id: str) -> None:
        if self._failed is not None:
            raise self._failed
        assert self._slot is not None
        self.reply(await self._slot.finish_file())

    def _close_slot(self) -> None:
        if self._slot is not None:
            self._slot.close()
            self._slot = None

    def on_connection_close(self) -> None:
        self._close_slot()

    def on_finish(self) -> None:
        self._close_slot()

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        path = check_path(self.query("path", required=True))
        archive = self.query("format")
        if archive not in (None, "tar", "zip"):
            raise web.HTTPError(400, "format must be tar or zip")

        def head(response: Any) -> None:
            kind = response.header("Content-Type") or "application/octet-stream"
            self.set_header(
                "Content-Type", kind if kind in ("application/x-tar", "application/zip") else "application/octet-stream"
            )
            name = (path.rstrip("/").rsplit("/", 1)[-1] or "download") + (
                f".{archive or 'tar'}" if "x-tar" in kind or "zip" in kind else ""
            )
            self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{url_quote(name)}")
            length = response.header("Content-Length")
            if length and length.isdigit():
                self.set_header("Content-Length", length)

        async def chunk(data: bytes) -> None:
            self.write(data)
            await self.flush()  # backpressure: read the next chunk once this one is sent

        await self.service.download(sandbox_id, path, archive, head, chunk)
        self.finish()


@web.stream_request_body
class MultipartUploadHandler(SandboxAPIHandler):
    """POST several files at once as multipart/form-data, parsed as it arrives: each file goes on to
    the sandbox while it is received, so the server holds a chunk of it, never the whole. Files
    that come before the `path` field (the folder) are written to staging names in the sandbox and
    moved into the folder at the end."""

    _streams_body = True
    _slot: UploadSlot | None = None
    _failed: Exception | None = None

    async def prepare(self) -> None:
        await super().prepare()
        if not self.current_user:
            raise web.HTTPError(403)
        if not self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE):
            raise web.HTTPError(403)
        self._limit = parse_size(self.service.max_multipart_size, "max_multipart_size")
        self._received = 0
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > self._limit):
            raise web.HTTPError(
                413,
                f"a multipart upload may be at most {self._limit:,} bytes; use PUT .../files/content for large files",
            )
        self.request.connection.set_max_body_size(self._limit + 1)
        try:
            boundary = boundary_of(self.request.headers.get("Content-Type", ""))
        except MultipartError as exc:
            raise web.HTTPError(400, str(exc)) from None
        self._operation = self.operation()
        self._folder: str | None = None  # None until the path field came (or the body ended)
        self._field = b""
        self._staging = f".jupyter-sandbox-upload-{secrets.token_hex(6)}"
        self._staged: list[tuple[str, str]] = []
        self._results: list[dict[str, Any]] = []
        window = parse_size(self.service.upload_window, "upload_window")
        self._parser = MultipartParser(boundary, window, self._part, self._data, self._end)
        self._slot = await self.service.open_upload(self.path_kwargs["sandbox_id"], self.user_name())

    async def _part(self, part: Part) -> None:
        if self._operation is not None and not part.filename:
            try:
                validation.check_form_field(self._operation, part.name)
            except validation.RequestError as exc:
                raise web.HTTPError(400, exc.message) from None
        if part.filename:
            name = check_path(part.filename, "file name")
            assert self._slot is not None
            if self._folder is None:
                staged = f"{self._staging}/{len(self._staged)}"
                self._staged.append((staged, name))
                await self._slot.start_file(staged, None)
            else:
                await self._slot.start_file(f"{self._folder.rstrip('/')}/{name}" if self._folder else name, None)
        else:
            self._field = b""

    async def _data(self, part: Part, data: bytes) -> None:
        if part.filename:
            assert self._slot is not None
            await self._slot.send(data)
            return
        self._field += data
        if len(self._field) > MAX_FIELD:
            raise web.HTTPError(400, f"the form field {part.name!r} is longer than {MAX_FIELD:,} bytes")

    async def _end(self, part: Part) -> None:
        if part.filename:
            assert self._slot is not None
            answer = await self._slot.finish_file()
            if not (self._staged and answer["path"].endswith("/" + self._staged[-1][0])):
                self._results.append(answer)
        elif part.name == "path":
            if self._folder is not None:
                raise web.HTTPError(400, "the path field may be given once")
            try:
                self._folder = check_path(self._field.decode("utf-8") or None, required=False)
            except UnicodeDecodeError:
                raise web.HTTPError(400, "path is not valid UTF-8") from None

    async def data_received(self, chunk: bytes) -> None:
        if self._failed is not None:
            return  # the rest of a refused body is read and dropped; the error is the answer
        self._received += len(chunk)
        try:
            if self._received > self._limit:
                raise web.HTTPError(413, f"a multipart upload may be at most {self._limit:,} bytes")
            try:
                await self._parser.feed(chunk)
            except MultipartError as exc:
                raise web.HTTPError(400, f"the multipart body cannot be read: {exc}") from None
        except (web.HTTPError, ApiError) as exc:
            # Answered once the body is in (an error raised here would only drop the connection).
            self._failed = exc
            self._close_slot()

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            self._parser.finish()
        except MultipartError as exc:
            raise web.HTTPError(400, f"the multipart body cannot be read: {exc}") from None
        if self._staged:
            assert self._slot is not None
            folder = (self._folder or "").rstrip("/")
            self._results += await self._slot.move_into_place(
                [(staged, f"{folder}/{name}" if folder else name) for staged, name in self._staged], self._staging
            )
        if not self._results:
            raise web.HTTPError(400, "no files in the multipart body")
        self.reply({"files": self._results}, status=201)

    def _close_slot(self) -> None:
        if self._slot is not None:
            self._slot.close()
            self._slot = None

    def on_connection_close(self) -> None:
        self._close_slot()

    def on_finish(self) -> None:
        self._close_slot()


class FileOperationHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, operation: str) -> None:
        body = self.json_body()
        if operation == "folder":
            request = {"path": check_path(body.get("path")), "mode": body.get("mode", "755")}
            self.reply(checked_entry(await self.service.call(sandbox_id, "POST", "/files/folder", body=request)), 201)
        elif operation == "move":
            request = {
                "source": check_path(body.get("source"), "source"),
                "destination": check_path(body.get("destination"), "destination"),
            }
            self.reply(checked_entry(await self.service.call(sandbox_id, "POST", "/files/move", body=request)))
        elif operation == "permissions":
            request = {
                "path": check_path(body.get("path")),
                "mode": body.get("mode"),
                "owner": body.get("owner"),
                "group": body.get("group"),
            }
            self.reply(checked_entry(await self.service.call(sandbox_id, "POST", "/files/permissions", body=request)))
        elif operation == "replace":
            files = body.get("files")
            if not isinstance(files, list) or not files or len(files) > 10_000:
                raise web.HTTPError(400, "files must be a list of 1 to 10000 paths")
            request = {
                "files": [check_path(f, "file") for f in files],
                "pattern": body.get("pattern"),
                "new_value": body.get("new_value"),
            }
            answer = await self.service.call(sandbox_id, "POST", "/files/replace", body=request, timeout=300)
            self.reply({"results": checked_list(answer.get("results"), "results")})

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, operation: str) -> None:
        path = check_path(self.query("path"), required=False)
        pattern = self.query("pattern", required=True)
        if len(pattern) > 1000:
            raise web.HTTPError(400, "pattern is too long (at most 1000 characters)")
        answer = await self.service.call(
            sandbox_id, "GET", f"/files/{operation}", {"path": path, "pattern": pattern}, timeout=120
        )
        if operation == "search":
            self.reply(
                {
                    "files": [f for f in checked_list(answer.get("files"), "files") if isinstance(f, str)],
                    "truncated": bool(answer.get("truncated")),
                }
            )
        else:
            matches = [
                m
                for m in checked_list(answer.get("matches"), "matches")
                if isinstance(m, dict)
                and isinstance(m.get("file"), str)
                and isinstance(m.get("line"), int)
                and isinstance(m.get("content"), str)
            ]
            self.reply(
                {
                    "matches": matches,
                    "timed_out": bool(answer.get("timed_out")),
                    "truncated": bool(answer.get("truncated")),
                }
            )


class ExecHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        body = self.json_body()
        command, timeout = body.get("command"), body.get("timeout", 60)
        if not isinstance(command, str) or not command.strip():
            raise web.HTTPError(400, "command must be a non-empty string")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise web.HTTPError(400, "timeout must be between 0 and 3600 seconds")
        cwd = check_path(body.get("cwd"), "cwd", required=False) or None
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise web.HTTPError(400, "env must map names to strings")
        answer = await self.service.call(
            sandbox_id,
            "POST",
            "/process/exec",
            body={"command": command, "cwd": cwd, "env": env, "timeout": timeout},
            timeout=timeout + 30,
        )
        if not isinstance(answer.get("exit_code"), int):
            raise ApiError(502, "the sandbox's agent sent a malformed result")
        self.reply(
            {
                "exit_code": answer["exit_code"],
                "timed_out": bool(answer.get("timed_out")),
                "stdout": str(answer.get("stdout", "")),
                "stderr": str(answer.get("stderr", "")),
            }
        )


SESSION_ID = r"(?P<session_id>[A-Za-z0-9_-]{1,64})"
COMMAND_ID = r"(?P<command_id>[0-9a-f]{1,32})"


class SessionsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.call(sandbox_id, "GET", "/sessions", shape="sessions"))

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        body = self.json_body()
        request = {
            "id": body.get("id"),
            "cwd": check_path(body.get("cwd"), "cwd", required=False) or None,
            "env": body.get("env") or {},
        }
        self.reply(await self.service.call(sandbox_id, "POST", "/sessions", body=request, shape="session"), status=201)


class SessionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, session_id: str) -> None:
        self.reply(await self.service.call(sandbox_id, "GET", f"/sessions/{session_id}", shape="session"))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str, session_id: str) -> None:
        await self.service.call(sandbox_id, "DELETE", f"/sessions/{session_id}")
        self.no_content()


class CommandsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, session_id: str) -> None:
        body = self.json_body()
        request = {"command": body.get("command"), "run_async": bool(body.get("run_async"))}
        answer = await self.service.call(
            sandbox_id,
            "POST",
            f"/sessions/{session_id}/commands",
            body=request,
            timeout=3600,
            shape="command" if request["run_async"] else "command_run",
        )
        self.reply(answer, status=202 if request["run_async"] else 200)


class CommandActionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, session_id: str, command_id: str, action: str) -> None:
        body = self.json_body() if action == "input" else None
        self.reply(
            await self.service.call(
                sandbox_id,
                "POST",
                f"/sessions/{session_id}/commands/{command_id}/{action}",
                body=body,
                shape="input" if action == "input" else "command",
            )
        )


class LogsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, session_id: str, command_id: str) -> None:
        path = f"/sessions/{session_id}/commands/{command_id}/logs"
        if self.query("follow") not in ("1", "true"):
            answer = await self.service.call(sandbox_id, "GET", path)
            self.reply(
                {
                    "exit_code": answer.get("exit_code"),
                    "stdout": str(answer.get("stdout", "")),
                    "stderr": str(answer.get("stderr", "")),
                }
            )
            return
        # Followed logs: newline-delimited JSON, relayed line by line as the agent sends it.
        self.set_header("Content-Type", "application/x-ndjson")

        async def line(chunk: dict[str, Any]) -> None:
            self.write(json.dumps(chunk) + "\n")
            await self.flush()

        await self.service.follow_logs(sandbox_id, path, line)
        self.finish()


GIT_OPERATIONS = r"(?P<operation>clone|status|branches|checkout|add|commit|push|pull)"


class GitHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, operation: str) -> None:
        if operation not in ("status", "branches"):
            raise web.HTTPError(405)
        path = check_path(self.query("path"), required=False)
        self.reply(
            await self.service.call(
                sandbox_id,
                "GET",
                f"/git/{operation}",
                {"path": path},
                shape="git_status" if operation == "status" else "git_branches",
            )
        )

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, operation: str) -> None:
        if operation == "status":
            raise web.HTTPError(405)
        body = self.json_body()
        if "path" in body or operation != "clone":
            body["path"] = check_path(body.get("path"), required=False)
        shape = {
            "clone": "git_clone",
            "commit": "git_commit",
            "push": "git_output",
            "pull": "git_output",
            "add": "git_status",
        }.get(operation, "git_branches")
        self.reply(await self.service.git(sandbox_id, operation, body, shape))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str, operation: str) -> None:
        if operation != "branches":
            raise web.HTTPError(405)
        path = check_path(self.query("path"), required=False)
        name = self.query("name", required=True)
        self.reply(
            await self.service.call(
                sandbox_id, "DELETE", "/git/branches", {"path": path, "name": name}, shape="git_branches"
            )
        )


class PtyHandler(WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """A terminal in the sandbox. Authenticated before the upgrade; then frames are relayed both ways."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, service: SandboxService) -> None:
        self.service = service
        self.upstream: websocket.WebSocketClientConnection | None = None

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        # An API socket: no redirect to the login page, a plain 403 before any upgrade.
        await JupyterHandler.prepare(self, _redirect_to_login=False)
        if not self.current_user:
            raise web.HTTPError(403, "authentication is required")

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        operation = validation.operation_for(
            validation.route_of(self.request.path, self.base_url, self.path_kwargs), "GET"
        )
        if operation is not None:
            try:
                validation.check_query(operation, self.request.query_arguments)
            except validation.RequestError as exc:
                raise web.HTTPError(400, exc.message) from None
        cols, rows = self.get_query_argument("cols", "80"), self.get_query_argument("rows", "24")
        if not (cols.isdigit() and rows.isdigit() and 0 < int(cols) <= 1000 and 0 < int(rows) <= 1000):
            raise web.HTTPError(400, "cols and rows must be whole numbers from 1 to 1000")
        try:
            client = await self.service.agent(sandbox_id)
        except ApiError as exc:
            raise web.HTTPError(exc.status, exc.message) from None
        from tornado.httpclient import HTTPRequest

        request = HTTPRequest(
            f"ws://{client.host}:{client.port}/pty?cols={cols}&rows={rows}",
            headers={"Authorization": f"token {client.token}"},
            connect_timeout=10,
        )
        try:
            self.upstream = await websocket.websocket_connect(request, on_message_callback=self._from_sandbox)
        except Exception as exc:
            raise web.HTTPError(502, f"could not open a terminal in the sandbox: {exc}") from None
        await super().get(sandbox_id)

    def open(self, sandbox_id: str) -> None:
        pass

    def _from_sandbox(self, message: str | bytes | None) -> None:
        if message is None:
            self.close(1000, "the terminal ended")
            return
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        if self.upstream is not None:
            self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


class PreviewsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        self.reply(await self.service.create_preview(sandbox_id, self.json_body()), status=201)

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str) -> None:
        await self.service.rotate_previews(sandbox_id)
        self.no_content()


class PortsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.ports(sandbox_id))


class OpenAPIHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(openapi_document())


def checked_entry(entry: Any) -> dict[str, Any]:
    """A file entry from the agent, reduced to fields of the expected types."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("path"), str):
        raise ApiError(502, "the sandbox's agent sent a malformed file entry")
    kinds = {
        "name": str,
        "path": str,
        "type": str,
        "size": int,
        "mode": int,
        "mtime": (int, float),
        "uid": int,
        "gid": int,
        "target": str,
    }
    clean = {k: v for k, v in entry.items() if k in kinds and isinstance(v, kinds[k]) and not isinstance(v, bool)}
    if "mode" in clean:
        clean["mode"] = format(clean["mode"], "o")
    return clean


def checked_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ApiError(502, f"the sandbox's agent sent malformed {what}")
    return value


def checked_listing(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": str(answer.get("path", "")),
        "entries": [checked_entry(e) for e in checked_list(answer.get("entries"), "entries")],
        "truncated": bool(answer.get("truncated")),
    }


def url_quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def api_routes(base_url: str, service: SandboxService) -> list[tuple[str, type, dict[str, Any]]]:
    from .ssh import SSHAccessHandler  # here: it builds on this module's base handler

    api = url_path_join(base_url, "sandbox", "api")
    box = f"{api}/sandboxes/{SANDBOX_ID}"
    args = {"service": service}
    routes = [
        (f"{api}/sandboxes", SandboxesHandler),
        (box, SandboxHandler),
        (f"{box}/(?P<action>start|stop)", SandboxActionHandler),
        (f"{box}/files", FilesHandler),
        (f"{box}/files/info", FileInfoHandler),
        (f"{box}/files/content", FileContentHandler),
        (f"{box}/files/upload", MultipartUploadHandler),
        (f"{box}/files/(?P<operation>folder|move|permissions|replace)", FileOperationHandler),
        (f"{box}/files/(?P<operation>search|find)", FileOperationHandler),
        (f"{box}/process/exec", ExecHandler),
        (f"{box}/sessions", SessionsHandler),
        (f"{box}/sessions/{SESSION_ID}", SessionHandler),
        (f"{box}/sessions/{SESSION_ID}/commands", CommandsHandler),
        (f"{box}/sessions/{SESSION_ID}/commands/{COMMAND_ID}/logs", LogsHandler),
        (f"{box}/sessions/{SESSION_ID}/commands/{COMMAND_ID}/(?P<action>input|kill)", CommandActionHandler),
        (f"{box}/pty", PtyHandler),
        (f"{box}/git/{GIT_OPERATIONS}", GitHandler),
        (f"{box}/previews", PreviewsHandler),
        (f"{box}/ports", PortsHandler),
        (f"{box}/ssh", SSHAccessHandler),
        (f"{api}/openapi.json", OpenAPIHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in routes]


ROUTE_PATTERN = re.compile(r"\(\?P<(\w+)>[^)]*\)")
