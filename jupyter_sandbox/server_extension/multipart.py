"""multipart/form-data parsed as it arrives, so an upload's files go on to the sandbox piece by piece.

The parser holds at most one network chunk plus a boundary's length of body, and one part's
headers (bounded): memory stays flat whatever the size of the files.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Callable

from tornado import httputil

MAX_FIELD = 8192


class MultipartError(Exception):
    """The body is not multipart/form-data as its Content-Type announced (answered as 400)."""


def boundary_of(content_type: str) -> bytes:
    kind, params = httputil._parse_header(content_type)  # tornado's own header-parameter parser
    boundary = params.get("boundary", "")
    if kind.lower() != "multipart/form-data" or not boundary or len(boundary) > 70:
        raise MultipartError("the body must be multipart/form-data with a boundary")
    if boundary.startswith('"') and boundary.endswith('"'):
        boundary = boundary[1:-1]
    return boundary.encode("latin-1")


class Part:
    def __init__(self, name: str, filename: str | None) -> None:
        self.name, self.filename = name, filename


class MultipartParser:
    """Feed body bytes in; `on_part(part)` opens each part, `on_data(part, bytes)` gets its body,
    `on_end(part)` closes it. Each callback is awaited before more is parsed (backpressure)."""

    def __init__(
        self,
        boundary: bytes,
        max_head: int,
        on_part: Callable[[Part], Awaitable[None]],
        on_data: Callable[[Part, bytes], Awaitable[None]],
        on_end: Callable[[Part], Awaitable[None]],
    ) -> None:
        self.delimiter = b"--" + boundary
        self.max_head = max_head
        self.on_part, self.on_data, self.on_end = on_part, on_data, on_end
        self.buffer = b""
        self.state = "preamble"
        self.part: Part | None = None

    async def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.state == "preamble":
                at = self.buffer.find(self.delimiter)
                if at < 0:
                    # Keep only what could still be the start of the first delimiter.
                    self.buffer = self.buffer[-len(self.delimiter) :]
                    return
                self.buffer = self.buffer[at + len(self.delimiter) :]
                self.state = "after-delimiter"
            elif self.state == "after-delimiter":
                if len(self.buffer) < 2:
                    return
                if self.buffer.startswith(b"--"):
                    self.state, self.buffer = "done", b""
                    return
                if not self.buffer.startswith(b"\r\n"):
                    raise MultipartError("a multipart boundary is not followed by a line end")
                self.buffer = self.buffer[2:]
                self.state = "headers"
            elif self.state == "headers":
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > self.max_head:
                        raise MultipartError(f"a part's headers are longer than {self.max_head:,} bytes")
                    return
                self.part = self._part(self.buffer[:end])
                self.buffer = self.buffer[end + 4 :]
                self.state = "body"
                await self.on_part(self.part)
            elif self.state == "body":
                assert self.part is not None
                marker = b"\r\n" + self.delimiter
                at = self.buffer.find(marker)
                if at < 0:
                    keep = len(marker) - 1
                    if len(self.buffer) > keep:
                        piece, self.buffer = self.buffer[:-keep], self.buffer[-keep:]
                        await self.on_data(self.part, piece)
                    return
                piece, self.buffer = self.buffer[:at], self.buffer[at + len(marker) :]
                if piece:
                    await self.on_data(self.part, piece)
                part, self.part = self.part, None
                self.state = "after-delimiter"
                await self.on_end(part)
            else:  # done: an epilogue is ignored
                self.buffer = b""
                return

    def finish(self) -> None:
        if self.state != "done":
            raise MultipartError("the multipart body ended before its closing boundary")

    @staticmethod
    def _part(raw: bytes) -> Part:
        try:
            headers = httputil.HTTPHeaders.parse(raw.decode("utf-8"))
        except (UnicodeDecodeError, httputil.HTTPInputError):
            raise MultipartError("a part's headers cannot be read") from None
        disposition, params = httputil._parse_header(headers.get("Content-Disposition", ""))
        if disposition != "form-data" or not params.get("name"):
            raise MultipartError("every part needs Content-Disposition: form-data with a name")
        return Part(params["name"], params.get("filename"))
