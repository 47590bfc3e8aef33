"""The inner kernel's channels across machines, on the proxy kernel's side (hub mode).

The relay connects its zmq sockets to endpoints here as it would to a sandbox on this machine: five
unix sockets in a folder only this user can enter (not TCP ports: no other local user can connect
to them, or read the kernel's iopub). Each connection the relay opens is carried, bytes unchanged,
over a websocket to the service's `.../sandboxes/{id}/kernel/channels?channel=NAME`, which the
service joins to the inner kernel's port through the sandbox's agent. So the ZMTP stream and every
message's signature arrive as the inner kernel sent them, and the relay checks and filters them
exactly as it does locally (an unsigned or malformed message is dropped there).

A websocket that drops (the service restarting, the network) closes its local connection; zmq
connects again at once and a new websocket is opened, with growing pauses while the service does
not answer. Meanwhile zmq queues the relay's requests, and websocket pings notice a dead peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from typing import Any

from tornado import httpclient, websocket

log = logging.getLogger(__name__)

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
CHUNK = 64 * 1024
PING_SECONDS = 15.0
PING_TIMEOUT = 15.0
CONNECT_SECONDS = 20.0
MAX_PAUSE = 5.0
# The service relays in chunks of at most CHUNK; anything much larger is not its relay talking.
MAX_FRAME = 1024 * 1024
# What the relay may send while its websocket is not open yet (zmq holds the rest).
MAX_HELD = 16 * 1024 * 1024


class ChannelBridge:
    """Local endpoints for one sandbox's inner kernel, each joined to the service by websocket."""

    def __init__(self, ws_url: str, headers: dict[str, str], key: str, signature_scheme: str) -> None:
        self.ws_url = ws_url  # ws(s)://service/sandbox/api/sandboxes/{id}/kernel/channels
        self.headers = dict(headers)
        self.key = key
        self.signature_scheme = signature_scheme
        self.folder = tempfile.mkdtemp(prefix="sandbox-channels-")  # mode 0700
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="sandbox-channels")
        self.opened = 0  # websockets opened so far (tests and figures read it)

    def path(self, channel: str) -> str:
        return os.path.join(self.folder, f"k-{CHANNELS.index(channel) + 1}")

    def start(self) -> dict[str, Any]:
        """Listen, and return the connection the relay uses (jupyter_client's ipc form)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        connection: dict[str, Any] = {
            "transport": "ipc",
            "ip": os.path.join(self.folder, "k"),
            "key": self.key,
            "signature_scheme": self.signature_scheme,
        }
        for index, channel in enumerate(CHANNELS, start=1):
            connection[f"{channel}_port"] = index
        return connection

    async def _listen(self) -> None:
        for channel in CHANNELS:

            async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str = channel) -> None:
                task = asyncio.ensure_future(self._carry(name, reader, writer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            self._servers.append(await asyncio.start_unix_server(accepted, path=self.path(channel)))

    async def _open(self, channel: str) -> websocket.WebSocketClientConnection:
        request = httpclient.HTTPRequest(
            f"{self.ws_url}?channel={channel}", headers=self.headers, connect_timeout=CONNECT_SECONDS
        )
        return await websocket.websocket_connect(
            request, ping_interval=PING_SECONDS, ping_timeout=PING_TIMEOUT, max_message_size=MAX_FRAME
        )

    async def _carry(self, channel: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One zmq connection of the relay, over one websocket, until either side ends. Until the
        websocket opens, what the relay sends is held (up to MAX_HELD) and its hang-up noticed."""
        held = bytearray()
        ended = asyncio.Event()

        async def hold() -> None:
            while True:
                data = await reader.read(CHUNK)
                if not data or len(held) + len(data) > MAX_HELD:
                    ended.set()
                    return
                held.extend(data)

        holding = asyncio.ensure_future(hold())
        pause = 0.2
        remote: websocket.WebSocketClientConnection | None = None
        try:
            while remote is None:
                try:
                    remote = await self._open(channel)
                except Exception as exc:  # refused, unreachable, a 404 for a sandbox gone: try again
                    log.debug("the %s channel's websocket did not open: %s", channel, exc)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(ended.wait(), pause)
                    pause = min(pause * 2, MAX_PAUSE)
                if ended.is_set() or self._closed:
                    return  # the relay let go of this connection meanwhile
            holding.cancel()  # a cancelled read leaves unread bytes in the reader
            await asyncio.gather(holding, return_exceptions=True)
            if ended.is_set():
                return
            self.opened += 1
            if held:
                await remote.write_message(bytes(held), binary=True)
            await _until_either_ends(self._to_remote(reader, remote), self._to_local(remote, writer))
        except (OSError, websocket.WebSocketClosedError):
            pass
        finally:
            holding.cancel()
            if remote is not None:
                remote.close()
            writer.close()

    @staticmethod
    async def _to_remote(reader: asyncio.StreamReader, remote: websocket.WebSocketClientConnection) -> None:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            await remote.write_message(data, binary=True)  # backpressure: waits for the socket

    @staticmethod
    async def _to_local(remote: websocket.WebSocketClientConnection, writer: asyncio.StreamWriter) -> None:
        while True:
            message = await remote.read_message()
            if message is None:
                return
            if isinstance(message, str):
                continue  # the channel is bytes; text is nobody's ZMTP
            writer.write(message)
            await writer.drain()

    def close(self) -> None:
        """Stop listening and end every carried connection."""
        if self._closed:
            return
        self._closed = True

        async def shut() -> None:
            for server in self._servers:
                server.close()
            for task in list(self._tasks):
                task.cancel()

        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
            except Exception:
                log.debug("closing the channel bridge", exc_info=True)
            self.loop.call_soon_threadsafe(self.loop.stop)
        shutil.rmtree(self.folder, ignore_errors=True)


async def _until_either_ends(*coroutines: Any) -> None:
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
