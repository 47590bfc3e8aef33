"""An SFTP server (scp and sftp both speak it) whose files are the sandbox's, through its agent's file API.

The sandbox has no sftp-server of its own, and the host must never touch the sandbox's files itself:
every operation here is an agent call, made inside the container as the sandbox user, and every
answer is checked like any other answer from the sandbox. Reads stream the file from the position
asked for; writes stream into the agent's atomic upload, so a file is replaced whole at close. Both
must go forward (what scp and sftp do); random-access writes are refused with a clear status.
"""

from __future__ import annotations

import posixpath
import stat
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncssh

from .. import errors
from ..agent_http import AgentResponse
from ..spec import SANDBOX_HOME

if TYPE_CHECKING:
    from .gateway import Access

_KINDS = {"directory": stat.S_IFDIR, "file": stat.S_IFREG, "symlink": stat.S_IFLNK}


def _text(path: bytes) -> str:
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise asyncssh.SFTPInvalidFilename("the path is not valid UTF-8") from None
    if "\0" in text or len(text) > 4096:
        raise asyncssh.SFTPInvalidFilename("the path is not usable")
    return posixpath.normpath(posixpath.join(SANDBOX_HOME, text))


def _attrs(entry: Any) -> asyncssh.SFTPAttrs:
    """A file entry from the agent (hostile), as SFTP attributes of the expected types only."""
    if not isinstance(entry, dict):
        raise asyncssh.SFTPFailure("the sandbox's agent sent a malformed file entry")

    def number(name: str) -> int | None:
        value = entry.get(name)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None

    mode = (number("mode") or 0) & 0o7777
    kind_name = entry.get("type")
    kind = _KINDS.get(kind_name, 0) if isinstance(kind_name, str) else 0
    mtime = number("mtime")
    return asyncssh.SFTPAttrs(
        size=number("size"),
        uid=number("uid"),
        gid=number("gid"),
        permissions=mode | kind,
        atime=mtime,
        mtime=mtime,
    )


def _error(exc: Exception) -> Exception:
    """An operations error as the SFTP status a client shows (no text from the sandbox beyond a line)."""
    message = str(getattr(exc, "message", exc))[:300]
    if isinstance(exc, errors.NotFound):
        return asyncssh.SFTPNoSuchFile(message)
    if isinstance(exc, errors.Forbidden):
        return asyncssh.SFTPPermissionDenied(message)
    if isinstance(exc, errors.Conflict):
        return asyncssh.SFTPFileAlreadyExists(message)
    if isinstance(exc, errors.InsufficientStorage):
        return asyncssh.SFTPNoSpaceOnFilesystem(message)
    return asyncssh.SFTPFailure(message)


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.response: AgentResponse | None = None
        self.position = 0
        self.buffer = b""
        self.ended = False

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
            self.response = None


class _Writer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.slot: Any = None
        self.written = 0
        self.mode: int | None = None


class AgentSFTPServer(asyncssh.SFTPServer):
    def __init__(self, chan: asyncssh.SSHServerChannel, access: Access) -> None:
        super().__init__(chan)
        self.access = access
        self._open: set[_Reader | _Writer] = set()

    # -- paths and attributes -------------------------------------------------------------

    def realpath(self, path: bytes) -> bytes:
        return _text(path).encode()

    async def _call(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        self.access.touch()
        try:
            return await self.access.call(method, path, query, body)
        except Exception as exc:  # an operations error: as an SFTP status
            raise _error(exc) from None

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return _attrs(await self._call("GET", "/files/info", {"path": _text(path)}))

    lstat = stat

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        answer = await self._call("GET", "/files", {"path": _text(path), "recursive": "0"})
        entries = answer.get("entries") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise asyncssh.SFTPFailure("the sandbox's agent sent a malformed listing")
        for dots in (".", ".."):
            yield asyncssh.SFTPName(dots.encode(), attrs=asyncssh.SFTPAttrs(permissions=stat.S_IFDIR | 0o755))
        for entry in entries:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name and "/" not in name and name not in (".", ".."):
                yield asyncssh.SFTPName(name.encode(), attrs=_attrs(entry))

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        # Permissions are the sandbox's to change; times and owners are left as they are.
        if attrs.permissions is not None:
            await self._call(
                "POST",
                "/files/permissions",
                body={"path": _text(path), "mode": format(attrs.permissions & 0o7777, "o")},
            )

    lsetstat = setstat

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        mode = format((attrs.permissions or 0o755) & 0o7777, "o")
        await self._call("POST", "/files/folder", body={"path": _text(path), "mode": mode})

    async def remove(self, path: bytes) -> None:
        await self._call("DELETE", "/files", {"path": _text(path), "recursive": "0"})

    rmdir = remove

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._call("POST", "/files/move", body={"source": _text(oldpath), "destination": _text(newpath)})

    posix_rename = rename

    def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPOpUnsupported("links are not supported over this gateway")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("links are not supported over this gateway")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("links are not supported over this gateway")

    def statvfs(self, path: bytes) -> Any:
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported over this gateway")

    # -- files ----------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        target = _text(path)
        if pflags & asyncssh.FXF_WRITE:
            if pflags & (asyncssh.FXF_APPEND | asyncssh.FXF_READ) or not pflags & asyncssh.FXF_CREAT:
                raise asyncssh.SFTPOpUnsupported("files can be read, or written whole (create and truncate)")
            if pflags & asyncssh.FXF_EXCL:
                try:
                    await self.stat(path)
                except asyncssh.SFTPNoSuchFile:
                    pass
                else:
                    raise asyncssh.SFTPFileAlreadyExists(f"{target} exists")
            writer = _Writer(target)
            if attrs.permissions is not None:
                writer.mode = attrs.permissions & 0o7777
            try:
                writer.slot = await self.access.open_upload()
                await writer.slot.start_file(target, None)
            except Exception as exc:
                if writer.slot is not None:
                    writer.slot.close()
                raise _error(exc) from None
            self._open.add(writer)
            return writer
        info = await self.stat(path)
        if info.permissions is not None and stat.S_ISDIR(info.permissions):
            raise asyncssh.SFTPFailure(f"{target} is a folder")
        reader = _Reader(target)
        self._open.add(reader)
        return reader

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        if not isinstance(file_obj, _Reader):
            raise asyncssh.SFTPOpUnsupported("this file was opened for writing")
        reader = file_obj
        self.access.touch()
        if offset < reader.position or reader.response is None:
            reader.close()
            reader.position, reader.buffer, reader.ended = 0, b"", False
            try:
                reader.response = await self.access.open_stream(
                    "/files/content?" + urllib.parse.urlencode({"path": reader.path})
                )
            except Exception as exc:
                raise _error(exc) from None
        # `position` is the file offset of the buffer's first byte. Forward to `offset` (a skipped
        # part is read and dropped), then up to `size` bytes.
        while not reader.ended and reader.position + len(reader.buffer) < offset + size:
            try:
                chunk = await self.access.awaited(reader.response.read())
            except Exception as exc:
                raise _error(exc) from None
            if not chunk:
                reader.ended = True
                break
            reader.buffer += chunk
            self._drop_before(reader, offset)
        self._drop_before(reader, offset)
        if offset > reader.position:
            return b""  # past the end: EOF
        data, reader.buffer = reader.buffer[:size], reader.buffer[size:]
        reader.position += len(data)
        return data

    @staticmethod
    def _drop_before(reader: _Reader, offset: int) -> None:
        if offset > reader.position:
            drop = min(offset - reader.position, len(reader.buffer))
            reader.buffer, reader.position = reader.buffer[drop:], reader.position + drop

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, _Writer):
            raise asyncssh.SFTPOpUnsupported("this file was opened for reading")
        if offset != file_obj.written:
            raise asyncssh.SFTPOpUnsupported("files are written from start to end, without gaps or rewrites")
        self.access.touch()
        try:
            await file_obj.slot.send(data)
        except Exception as exc:
            raise _error(exc) from None
        file_obj.written += len(data)
        return len(data)

    async def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        if isinstance(file_obj, _Writer):
            return asyncssh.SFTPAttrs(size=file_obj.written, permissions=stat.S_IFREG | (file_obj.mode or 0o644))
        assert isinstance(file_obj, _Reader)
        return await self.stat(file_obj.path.encode())

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        if isinstance(file_obj, _Writer):
            if attrs.permissions is not None:
                file_obj.mode = attrs.permissions & 0o7777  # applied once the file is in place
            return
        assert isinstance(file_obj, _Reader)
        await self.setstat(file_obj.path.encode(), attrs)

    async def close(self, file_obj: object) -> None:
        self._open.discard(file_obj)
        if isinstance(file_obj, _Reader):
            file_obj.close()
            return
        assert isinstance(file_obj, _Writer)
        slot, file_obj.slot = file_obj.slot, None
        if slot is None:
            return
        if self.channel.is_closing() or getattr(self.channel, "_recv_state", "open") != "open":
            # Closed by the session's end (the client's input is over), not by a close request: an
            # upload cut short is discarded (the agent removes its partial file), never put in place
            # of the old one. asyncssh has no public word for "input ended", hence its state field.
            slot.close()
            return
        try:
            await slot.finish_file()
        except Exception as exc:
            raise _error(exc) from None
        finally:
            slot.close()
        if file_obj.mode is not None:
            await self.setstat(file_obj.path.encode(), asyncssh.SFTPAttrs(permissions=file_obj.mode))

    def exit(self) -> None:
        # The client went away: what it left open is let go (an unfinished upload is discarded
        # by the agent, and its place in the sandbox's gate and the upload budget is freed).
        for handle in list(self._open):
            if isinstance(handle, _Reader):
                handle.close()
            elif handle.slot is not None:
                handle.slot.close()
                handle.slot = None
        self._open.clear()
        # An exit status, as OpenSSH's sftp-server gives: scp reports a session without one as failed.
        try:
            self.channel.exit(0)
        except (OSError, asyncssh.Error):
            pass
