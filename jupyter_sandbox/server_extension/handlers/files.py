"""Files in a sandbox: listing, info, delete, folder/move/permissions/replace, search/find, and the
streamed transfers (GET/PUT .../files/content, multipart POST .../files/upload)."""

from __future__ import annotations

import secrets
from typing import Any, cast

from jupyter_server.auth.decorator import authorized
from tornado import web

from ...sandbox import errors
from ...sandbox.operations import UploadSlot, check_path
from ...sandbox.spec import parse_size
from .. import validation
from ..multipart import MAX_FIELD, MultipartError, MultipartParser, Part, boundary_of
from .base import AUTH_RESOURCE, SandboxAPIHandler, url_quote
from .sandboxes import sandbox_url


class FilesHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.list_files(sandbox_id, self.query("path"), self.flag("recursive")))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str) -> None:
        await self.service.delete_file(sandbox_id, self.query("path", required=True), self.flag("recursive"))
        self.no_content()


class FileInfoHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.file_info(sandbox_id, self.query("path", required=True)))


class _StreamedUpload(SandboxAPIHandler):
    """An upload whose body goes on to the sandbox as it arrives; refused before the body is read
    when the caller may not write."""

    _streams_body = True
    _slot: UploadSlot | None = None
    _failed: Exception | None = None

    def _authorize_before_body(self) -> None:
        if not self.current_user:
            raise web.HTTPError(403)
        if not self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE):
            raise web.HTTPError(403)

    def _fail(self, exc: Exception) -> None:
        # Answered once the body is in (an error raised while it arrives would only drop the connection).
        self._failed = exc
        self._close_slot()

    def _allow_body(self, limit: int) -> None:
        # The HTTP/1 connection's own cap (Jupyter's default is far lower than an upload's).
        cast(Any, self.request.connection).set_max_body_size(limit)

    def _close_slot(self) -> None:
        if self._slot is not None:
            self._slot.close()
            self._slot = None

    def on_connection_close(self) -> None:
        self._close_slot()

    def on_finish(self) -> None:
        self._close_slot()


@web.stream_request_body
class FileContentHandler(_StreamedUpload):
    """GET streams a file (a folder as tar, or zip with format=zip); PUT streams the body into a file."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.request.method != "PUT":
            return
        # Authenticate and authorise before the body is read.
        self._authorize_before_body()
        limit = parse_size(self.service.max_upload_size, "max_upload_size")
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise web.HTTPError(413, f"the upload is larger than the limit of {limit:,} bytes")
        self._allow_body(limit)
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
        except (web.HTTPError, errors.SandboxOperationError) as exc:
            self._fail(exc)

    @web.authenticated
    @authorized
    async def put(self, sandbox_id: str) -> None:
        if self._failed is not None:
            raise self._failed
        assert self._slot is not None
        self.reply(await self._slot.finish_file())

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        async with self.service.download(sandbox_id, self.query("path", required=True), self.query("format")) as got:
            self.set_header("Content-Type", got.content_type)
            self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{url_quote(got.filename)}")
            if got.length is not None:
                self.set_header("Content-Length", str(got.length))
            async for data in got.chunks():
                self.write(data)
                await self.flush()  # backpressure: read the next chunk once this one is sent
        self.finish()


@web.stream_request_body
class MultipartUploadHandler(_StreamedUpload):
    """POST several files at once as multipart/form-data, parsed as it arrives: each file goes on to
    the sandbox while it is received, so the server holds a chunk of it, never the whole. Files
    that come before the `path` field (the folder) are written to staging names in the sandbox and
    moved into the folder at the end."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        self._authorize_before_body()
        self._limit = parse_size(self.service.max_multipart_size, "max_multipart_size")
        self._received = 0
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > self._limit):
            raise web.HTTPError(
                413,
                f"a multipart upload may be at most {self._limit:,} bytes; use PUT .../files/content for large files",
            )
        self._allow_body(self._limit + 1)
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
        except (web.HTTPError, errors.SandboxOperationError) as exc:
            self._fail(exc)

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
        listing = sandbox_url(self.base_url, sandbox_id, "files") + "?path=" + url_quote(self._folder or "")
        self.created({"files": self._results}, listing)


class FileOperationHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, operation: str) -> None:
        body = self.json_body()
        ops = self.service
        if operation == "folder":
            entry = await ops.make_folder(sandbox_id, body.get("path"), body.get("mode", "755"))
            info = sandbox_url(self.base_url, sandbox_id, "files", "info") + "?path=" + url_quote(entry["path"])
            self.created(entry, info)
        elif operation == "move":
            self.reply(await ops.move_file(sandbox_id, body.get("source"), body.get("destination")))
        elif operation == "permissions":
            self.reply(
                await ops.set_permissions(
                    sandbox_id, body.get("path"), body.get("mode"), body.get("owner"), body.get("group")
                )
            )
        elif operation == "replace":
            self.reply(
                await ops.replace_in_files(sandbox_id, body.get("files"), body.get("pattern"), body.get("new_value"))
            )
        else:  # search and find are GETs; answering a POST with an empty 200 would hide the mistake
            raise web.HTTPError(405, f"files/{operation} is a GET")

    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, operation: str) -> None:
        if operation not in ("search", "find"):
            raise web.HTTPError(405, f"files/{operation} is a POST")
        path = check_path(self.query("path"), required=False)
        pattern = self.query("pattern", required=True)
        assert pattern is not None
        self.reply(await self.service.search_files(sandbox_id, operation, path, pattern))
