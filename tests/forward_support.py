"""A recording front for the sandbox service, for tests/test_remote_forward.py.

`RecordingFront` sits between a user's server in hub mode and the real service (`jupyter sandbox
service`) and keeps every request head it was sent, so a test can show what the user's server sends
the service and what it never sends. Bytes pass through unchanged (bodies, 100-continue, websocket
frames); only `Host` is set to the service's. With `spoil` set it sends a token the service does not
know instead of the one it was given (the service then refuses it, as it would a revoked token).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def raw(self) -> str:
        return f"{self.method} {self.target}\n" + "\n".join(f"{k}: {v}" for k, v in self.headers)


class RecordingFront:
    """A loopback TCP front for the service at `upstream_port` that records request heads."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen: list[Seen] = []
        self.spoil = False
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="recording-front", daemon=True)
        self._thread.start()

    def _call(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)  # type: ignore[arg-type]

    def start(self) -> int:
        self._call(self._listen())
        return self.port

    def stop(self) -> None:
        """Stop listening (the service is down: connections are refused)."""
        self._call(self._close())

    def shutdown(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line]
        self.seen.append(Seen(method, target, headers))  # type: ignore[arg-type]
        rebuilt = [f"{method} {target} {version}"]
        for name, value in headers:
            if name.lower() == "authorization" and self.spoil:
                value = "token not-a-token-the-service-knows-0123456789"
            if name.lower() == "host":
                value = f"127.0.0.1:{self.upstream_port}"
            rebuilt.append(f"{name}: {value}")
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        up_writer.write(("\r\n".join(rebuilt) + "\r\n\r\n").encode("latin-1"))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass
