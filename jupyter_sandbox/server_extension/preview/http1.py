"""Strict HTTP/1.1 framing over non-blocking sockets, for the preview proxy.

The proxy reads every request head from the browser and every response head from the app itself, so
it can remove credentials from each request on a kept-alive connection and decide where each message
ends. It parses only what it needs and refuses what is ambiguous (both Content-Length and
Transfer-Encoding, differing lengths, folded headers, bare newlines), so no request can be read one
way here and another way by the app. Bodies are copied, not parsed: large ones socket to socket in
the kernel (splice), chunked ones chunk by chunk as they come (server-sent events arrive when sent).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from ...agent.splice import copy as splice_copy
from ...agent.splice import until_either_ends, wait_ready

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE = 4096
READ_SIZE = 256 * 1024
# A body of a known length larger than this goes socket to socket in the kernel.
SPLICE_THRESHOLD = 256 * 1024
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
T = TypeVar("T")
CHUNKED = -1
UNTIL_CLOSE = -2


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result, or asyncio.TimeoutError after `seconds` (without wait_for's extra task
    where asyncio.timeout exists: this runs once per request)."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


class ProtocolError(Exception):
    """Bytes that are not HTTP this proxy will forward; the message says what was wrong."""


@dataclass
class Head:
    """A request or response head: its first line's three parts and its headers, in order."""

    first: tuple[str, str, str]
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), default)

    def values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def tokens(self, name: str) -> list[str]:
        """A comma-separated header's items, lower case (Connection, Transfer-Encoding, Upgrade)."""
        return [item.strip().lower() for value in self.values(name) for item in value.split(",") if item.strip()]

    def encode(self) -> bytes:
        lines = [" ".join(self.first)] + [f"{key}: {value}" for key, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    text = raw.decode("latin-1")
    between_lines = text.replace("\r\n", "")
    if "\n" in between_lines or "\r" in between_lines or "\0" in text:
        raise ProtocolError("a stray line break or NUL in the head")
    first, *lines = text.split("\r\n")
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not TOKEN.fullmatch(name):
            raise ProtocolError(f"not a header line: {line[:80]!r}")
        headers.append((name, value.strip(" \t")))
    return first, headers


def parse_request(raw: bytes) -> Head:
    first, headers = _parse(raw)
    parts = first.split(" ")
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise ProtocolError(f"not an HTTP/1.x request line: {first[:80]!r}")
    if not parts[1].startswith("/"):
        raise ProtocolError("only paths are accepted as request targets")
    return Head((parts[0], parts[1], parts[2]), headers)


def parse_response(raw: bytes) -> Head:
    first, headers = _parse(raw)
    version, _, rest = first.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or not re.fullmatch(r"[1-5]\d\d", code):
        raise ProtocolError(f"not an HTTP/1.x status line: {first[:80]!r}")
    return Head((version, code, reason), headers)


def body_length(head: Head, request_method: str | None = None) -> int:
    """Bytes of body that follow the head, or CHUNKED, or UNTIL_CLOSE (a response that ends when its
    connection does). `request_method` is given for a response: the method of the request it answers."""
    if request_method is not None:
        code = int(head.first[1])
        if request_method == "HEAD" or code < 200 or code in (204, 304):
            return 0
    codings = head.tokens("Transfer-Encoding")
    lengths = head.values("Content-Length")
    if codings:
        if lengths:
            raise ProtocolError("both Content-Length and Transfer-Encoding")
        if codings[-1] != "chunked":
            if request_method is None:
                raise ProtocolError("a request body must be chunked or of a given length")
            return UNTIL_CLOSE
        return CHUNKED
    if lengths:
        distinct = {item.strip() for value in lengths for item in value.split(",")}
        if len(distinct) != 1 or not next(iter(distinct)).isdigit():
            raise ProtocolError("a malformed or repeated Content-Length")
        return int(next(iter(distinct)))
    return 0 if request_method is None else UNTIL_CLOSE


class Channel:
    """A connected non-blocking socket with a read buffer, used from coroutines on the event loop.

    Reads and writes are tried first and wait for readiness only when the socket would block, so a
    kept-alive exchange costs no more system calls than it must. TLS sockets work too (no splice)."""

    def __init__(self, sock: socket.socket, early: bytes = b"") -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Heads and bodies go out as they are ready; waiting to merge them costs a round trip.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buffer = bytearray(early)
        self.plain = not isinstance(sock, ssl.SSLSocket)
        self.closed = False
        self.via_tunnel = False  # a connection to an app through the agent (see upstream.py)

    async def _wait(self, writable: bool) -> None:
        await wait_ready(self.sock.fileno(), writable)

    async def _recv(self, size: int) -> bytes:
        while True:
            try:
                return self.sock.recv(size)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                await self._wait(writable=False)
            except ssl.SSLWantWriteError:
                await self._wait(writable=True)

    async def fill(self) -> bool:
        """Read more into the buffer; False at end of stream."""
        data = await self._recv(READ_SIZE)
        self.buffer += data
        return bool(data)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                await self._wait(writable=True)
                continue
            except ssl.SSLWantReadError:
                await self._wait(writable=False)
                continue
            view = view[sent:]

    async def read_head(self) -> bytes | None:
        """The next head without its blank line; None if the peer closed before sending a byte."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                if end > MAX_HEAD_BYTES:
                    raise ProtocolError("the head is too large")
                head = bytes(self.buffer[:end])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("the head is too large")
            if not await self.fill():
                if self.buffer.strip():
                    raise ProtocolError("the connection closed in the middle of a head")
                return None

    async def read_line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 2])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > MAX_CHUNK_LINE:
                raise ProtocolError("a chunk line is too long")
            if not await self.fill():
                raise ProtocolError("the connection closed in the middle of a chunked body")

    def take_buffered(self, limit: int) -> bytes:
        data = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return data

    async def copy_to(self, sink: Channel, size: int, preface: bytes = b"") -> None:
        """Move exactly `size` body bytes to `sink` (after `preface`, in the same send when the body is
        here already); ProtocolError if the stream ends first."""
        early = preface + self.take_buffered(size)
        if early:
            await sink.send(early)
        early = early[len(preface) :]
        remaining = size - len(early)
        if remaining > SPLICE_THRESHOLD and self.plain and sink.plain:
            moved = await splice_copy(self.sock, sink.sock, remaining)
            if moved < remaining:
                raise ProtocolError("the connection closed in the middle of a body")
            return
        while remaining:
            data = await self._recv(min(READ_SIZE, remaining))
            if not data:
                raise ProtocolError("the connection closed in the middle of a body")
            await sink.send(data)
            remaining -= len(data)

    async def copy_chunked_to(self, sink: Channel, preface: bytes = b"") -> None:
        """Relay a chunked body as it is, chunk by chunk, with its trailers."""
        if preface:
            await sink.send(preface)
        while True:
            line = await self.read_line()
            size_text = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_text):
                raise ProtocolError("a malformed chunk size")
            await sink.send(line)
            size = int(size_text, 16)
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = await self.read_line()
                    await sink.send(trailer)
                    if trailer == b"\r\n":
                        return
            await self.copy_to(sink, size)
            if await self.read_line() != b"\r\n":
                raise ProtocolError("a chunk did not end where its size said")
            await sink.send(b"\r\n")

    async def copy_until_close(self, sink: Channel, preface: bytes = b"") -> None:
        early = preface + self.take_buffered(len(self.buffer))
        if early:
            await sink.send(early)
        if self.plain and sink.plain:
            await splice_copy(self.sock, sink.sock)
            return
        while data := await self._recv(READ_SIZE):
            await sink.send(data)

    async def copy_body(self, sink: Channel, length: int, preface: bytes = b"") -> None:
        """Relay a body framed as `length` says, after `preface` (a head, sent with the body's start)."""
        if length == CHUNKED:
            await self.copy_chunked_to(sink, preface)
        elif length == UNTIL_CLOSE:
            await self.copy_until_close(sink, preface)
        elif length > 0:
            await self.copy_to(sink, length, preface)
        elif preface:
            await sink.send(preface)

    def idle_and_open(self) -> bool:
        """True for a kept connection the peer has neither closed nor sent anything on."""
        if self.closed or self.buffer:
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # at end of stream, or bytes nobody asked for
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ValueError):
            return True
        except OSError:
            pass
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


async def pipe_both_ways(one: Channel, two: Channel) -> None:
    """Copy both ways (a websocket after its upgrade) until either side ends, then close both."""
    try:
        await until_either_ends(one.copy_until_close(two), two.copy_until_close(one))
    finally:
        one.close()
        two.close()
