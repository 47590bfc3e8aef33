"""Copying bytes between two sockets in the kernel (splice through a pipe), not through Python.

Used by the preview path for bodies: the agent between the app and the tunnel, and the server
between the tunnel and the browser. Falls back to plain reads and writes where splice is missing.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from collections.abc import Awaitable
from typing import Any

from tornado import httputil, iostream
from tornado.http1connection import HTTP1Connection

CHUNK = 1024 * 1024
WAKE_BYTES = 1024 * 1024


async def wait_ready(fd: int, writable: bool) -> None:
    """Until a non-blocking fd can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    add(fd, wake)
    try:
        await future
    finally:
        remove(fd)


async def copy(source: socket.socket, sink: socket.socket, limit: int | None = None) -> int:
    """Copy until the source ends (or `limit` bytes); returns the bytes moved. Both sockets must be
    non-blocking and not watched by anything else on the event loop."""
    if not hasattr(os, "splice"):
        return await _copy_plain(source, sink, limit)
    total = 0
    read_end, write_end = os.pipe()
    try:
        # A pipe holds 64 KiB unless told: a bigger one moves a large body in fewer calls.
        fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size: the default size still works
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    lowered = False
    try:
        while limit is None or total < limit:
            try:
                size = CHUNK if limit is None else min(CHUNK, limit - total)
                moved = os.splice(source.fileno(), write_end, size, flags=flags)
            except BlockingIOError:
                if limit is not None:
                    # Wake when a good part of what is still due has arrived, not for every packet
                    # (never for more than is due: the rest of a kept-alive connection may stay quiet).
                    source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, min(WAKE_BYTES, limit - total))
                    lowered = True
                await wait_ready(source.fileno(), writable=False)
                continue
            if moved == 0:
                return total
            total += moved
            while moved:
                try:
                    moved -= os.splice(read_end, sink.fileno(), moved, flags=flags)
                except BlockingIOError:
                    await wait_ready(sink.fileno(), writable=True)
        return total
    finally:
        os.close(read_end)
        os.close(write_end)
        if lowered:
            try:
                source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            except OSError:
                pass


async def _copy_plain(source: socket.socket, sink: socket.socket, limit: int | None) -> int:
    loop = asyncio.get_running_loop()
    total = 0
    while limit is None or total < limit:
        data = await loop.sock_recv(source, CHUNK if limit is None else min(CHUNK, limit - total))
        if not data:
            return total
        total += len(data)
        await loop.sock_sendall(sink, data)
    return total


def detach(request: httputil.HTTPServerRequest) -> iostream.IOStream:
    """The request's connection, taken from tornado (which then reads and writes nothing more on it).
    Tornado serves these endpoints over HTTP/1 only; anything else would be a programming error."""
    connection = request.connection
    if not isinstance(connection, HTTP1Connection):
        raise TypeError(f"only an HTTP/1 connection can be taken over, not {type(connection).__name__}")
    return connection.detach()


def take_socket(stream) -> socket.socket:
    """The socket of a tornado IOStream, taken out of tornado's hands (its buffered bytes are the
    caller's business). The stream must not be used afterwards."""
    sock = stream.socket
    try:
        stream.io_loop.remove_handler(sock.fileno())
    except (KeyError, ValueError, OSError):
        pass
    stream.socket = None
    sock.setblocking(False)
    return sock


def buffered(stream) -> bytes:
    """Bytes a tornado IOStream has read but not handed out yet (tornado keeps them at the front of
    its read buffer)."""
    size = getattr(stream, "_read_buffer_size", 0)
    return bytes(stream._read_buffer[:size]) if size else b""


async def until_either_ends(*copies: Awaitable[Any]) -> None:
    """Run copies (the two ways of a byte pipe) until one of them ends; the others are cancelled."""
    tasks = [asyncio.ensure_future(one) for one in copies]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def join(first, second) -> None:
    """Copy both ways between two tornado streams until either side ends, then close both."""
    loop = asyncio.get_running_loop()
    early = {first: buffered(first), second: buffered(second)}
    one, two = take_socket(first), take_socket(second)
    try:
        for sock, data in ((two, early[first]), (one, early[second])):
            if data:
                await loop.sock_sendall(sock, data)
        await until_either_ends(copy(one, two), copy(two, one))
    except OSError:
        pass
    finally:
        one.close()
        two.close()
