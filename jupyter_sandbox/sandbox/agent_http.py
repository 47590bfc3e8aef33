"""Async HTTP to one sandbox's agent, for the Jupyter server: no thread is held while an agent is slow.

The server talks to many agents on one event loop. An agent can be frozen (SIGSTOP), answer a byte a
second, or flood: every connect, every read and every whole call has a deadline here, and what comes
back is capped, so a bad agent costs its own callers time and nobody else anything. The answers are
hostile like everything from the sandbox: status line, headers and framing are parsed strictly and
bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

# JSON answers are parsed whole on the host; a listing of 10,000 entries is about 2 MB.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 1024
READ_SIZE = 256 * 1024


class AgentError(RuntimeError):
    """The agent could not be reached or answered with an error (`status`: the agent's HTTP status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AgentTimeout(AgentError):
    """The agent did not connect, send or finish within its deadline (answered as 504)."""


class AgentResponse:
    """An agent's answer whose body is read as it comes; every read has an idle deadline."""

    def __init__(
        self,
        agent: AsyncAgent,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
        deadline: float | None,
    ) -> None:
        self.agent, self.reader, self.writer = agent, reader, writer
        self.status, self.headers = status, headers
        self.deadline = deadline  # monotonic; None for streams, which only have the idle deadline
        self._buffer = b""
        self._eof = False
        encoding = headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        if encoding and encoding != "chunked":
            raise AgentError(f"sandbox {agent.sandbox_id}'s agent sent an unknown transfer encoding")
        self._chunked = encoding == "chunked"
        if not self._chunked and length is not None:
            if not length.isdigit() or len(length) > 18:
                raise AgentError(f"sandbox {agent.sandbox_id}'s agent sent a malformed Content-Length")
            self._left: int | None = int(length)
        else:
            self._left = None  # chunked: bytes left in the current chunk; else: up to the close
        if self._chunked:
            self._left = 0

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    async def _io(self, awaitable: Any, what: str) -> Any:
        # A call with a deadline (a JSON call: the agent says nothing until it is done, an exec for
        # as long as its command runs) has that deadline; a stream has the idle deadline per read.
        deadline = self.deadline
        timeout = self.agent.idle_timeout if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except asyncio.TimeoutError:
            if self.deadline is not None:
                raise AgentTimeout(
                    f"{self.agent.who} did not finish {what} in time (it may be stopped or overloaded)"
                ) from None
            raise AgentTimeout(f"{self.agent.who} sent nothing for {timeout:.0f} s while {what}") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise AgentError(f"lost the connection to {self.agent.who}: {exc}") from None

    async def _raw(self, size: int) -> bytes:
        """Up to `size` body bytes, b'' at the end, with the framing removed."""
        if self._eof:
            return b""
        if self._chunked:
            if self._left == 0:
                line = await self._io(self.reader.readuntil(b"\r\n"), "sending a chunk")
                size_text = line[:-2].split(b";", 1)[0].strip()
                if (
                    not size_text
                    or len(line) > MAX_CHUNK_LINE
                    or not all(c in b"0123456789abcdefABCDEF" for c in size_text)
                ):
                    raise AgentError(f"{self.agent.who} sent malformed chunked framing")
                self._left = int(size_text, 16)
                if self._left == 0:
                    # Trailers, then the end; bounded like the head.
                    while True:
                        trailer = await self._io(self.reader.readuntil(b"\r\n"), "ending its answer")
                        if trailer == b"\r\n":
                            break
                    self._eof = True
                    return b""
            left = self._left or 0  # chunked framing always counts the current chunk
            data = await self._io(self.reader.read(min(size, left)), "sending its answer")
            if not data:
                raise AgentError(f"{self.agent.who} closed the connection mid-chunk")
            self._left = left - len(data)
            if self._left == 0:
                end = await self._io(self.reader.readexactly(2), "sending its answer")
                if end != b"\r\n":
                    raise AgentError(f"{self.agent.who} sent malformed chunked framing")
            return data
        if self._left is not None:
            if self._left == 0:
                self._eof = True
                return b""
            data = await self._io(self.reader.read(min(size, self._left)), "sending its answer")
            if not data:
                raise AgentError(f"{self.agent.who} closed the connection early")
            self._left -= len(data)
            return data
        data = await self._io(self.reader.read(size), "sending its answer")
        if not data:
            self._eof = True
        return data

    async def read(self, size: int = READ_SIZE) -> bytes:
        if self._buffer:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return await self._raw(size)

    async def readline(self, limit: int) -> bytes:
        """One line (with its newline) of at most `limit` bytes; longer lines are an error."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > limit:
                break
            data = await self._raw(READ_SIZE)
            if not data:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += data
        line, sep, rest = self._buffer.partition(b"\n")
        if len(line) + 1 > limit:
            raise AgentError(f"{self.agent.who} sent an over-long line")
        self._buffer = rest
        return line + sep

    async def read_all(self, limit: int = MAX_RESPONSE_BYTES) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            data = await self.read()
            if not data:
                return b"".join(parts)
            total += len(data)
            if total > limit:
                raise AgentError(f"{self.agent.who} sent more than {limit:,} bytes")
            parts.append(data)

    async def write(self, data: bytes, chunked: bool = False) -> None:
        """Send request body bytes (for uploads), waiting while the agent does not take them."""
        if chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.writer.write(data)
        await self._io(self.writer.drain(), "taking the upload")

    def close(self) -> None:
        self.writer.close()


class AsyncAgent:
    """One sandbox's agent, reached over loopback with its token. One connection per call."""

    def __init__(
        self,
        sandbox_id: str,
        host: str,
        port: int,
        token: str,
        connect_timeout: float = 5.0,
        idle_timeout: float = 30.0,
    ) -> None:
        self.sandbox_id, self.host, self.port, self.token = sandbox_id, host, int(port), token
        self.connect_timeout, self.idle_timeout = connect_timeout, idle_timeout
        # How messages name the agent (a caller that knows only an address passes no sandbox id).
        self.who = f"sandbox {sandbox_id}'s agent" if sandbox_id else "the sandbox's agent"

    async def open(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        stream_body: int | bool | None = False,
    ) -> AgentResponse:
        """Send a request and read the answer's head. `timeout` bounds the whole call (head and body);
        None leaves only the idle deadline, for streams. With `stream_body` (a length, or None for
        chunked) the body is written afterwards with `AgentResponse.write` and the head is read by
        `finish_upload`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_HEAD),
                self.connect_timeout if timeout is None else min(self.connect_timeout, timeout),
            )
        except asyncio.TimeoutError:
            raise AgentTimeout(f"{self.who} did not accept a connection within {self.connect_timeout:.0f} s") from None
        except OSError as exc:
            raise AgentError(f"{self.who} is not reachable: {exc}") from None
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Authorization: token {self.token}",
            "Connection: close",
        ]
        if stream_body is not False:
            head.append(f"Content-Type: {content_type}")
            head.append("Transfer-Encoding: chunked" if stream_body is None else f"Content-Length: {int(stream_body)}")
        elif body is not None:
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
        response = AgentResponse(self, reader, writer, 0, {}, deadline)
        if stream_body is not False:
            return response
        try:
            await response._io(writer.drain(), "taking the request")
            return await self._head(response)
        except BaseException:
            writer.close()
            raise

    async def finish_upload(self, response: AgentResponse, chunked: bool) -> AgentResponse:
        if chunked:
            response.writer.write(b"0\r\n\r\n")
            await response._io(response.writer.drain(), "taking the upload")
        return await self._head(response)

    async def _head(self, response: AgentResponse) -> AgentResponse:
        raw = await response._io(response.reader.readuntil(b"\r\n\r\n"), "answering")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise AgentError(f"{self.who} answered with something that is not HTTP")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise AgentError(f"{self.who} sent a malformed header")
            key = name.lower()
            if key in ("content-length", "transfer-encoding") and key in headers:
                raise AgentError(f"{self.who} sent ambiguous framing")
            headers[key] = value.strip()
        if "content-length" in headers and "transfer-encoding" in headers:
            raise AgentError(f"{self.who} sent ambiguous framing")
        answered = AgentResponse(self, response.reader, response.writer, int(parts[1]), headers, response.deadline)
        return answered

    async def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict[str, Any]:
        """A JSON call: the whole of it (connect, head, body) within `timeout` seconds."""
        data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PUT", "PATCH") else None)
        response = await self.open(method, path, data, timeout=timeout)
        try:
            raw = await response.read_all()
        finally:
            response.close()
        if response.status == 204:
            return {}
        if response.status >= 400:
            raise AgentError(f"agent answered {response.status}: {error_message(raw)}", status=response.status)
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise AgentError(f"{self.who} answered with something that is not JSON") from None
        if not isinstance(parsed, dict):
            raise AgentError(f"{self.who} answered with an unexpected shape")
        return parsed


def error_message(raw: bytes) -> str:
    try:
        message = json.loads(raw).get("message")
        if isinstance(message, str):
            return message[:500]
    except (ValueError, AttributeError):
        pass
    return raw[:200].decode("utf-8", "replace")
