"""The blocking client of the in-sandbox agent, for callers in a thread of their own (kernel, manager).

Its answer checks are agent_client.py's (the one place for them); its streamed calls (exec output,
file transfers) watch a threading.Event for cancellation.

The agent runs inside the sandbox, so its answers are treated as hostile: sizes are capped, JSON is
checked for the types the caller needs, and nothing it says is used as a path or a key on the host.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from typing import IO, Any, Callable

from .agent_client import checked_events, checked_usage, run_blocking
from .agent_http import MAX_RESPONSE_BYTES, AgentError, AsyncAgent, error_message

__all__ = ["MAX_RESPONSE_BYTES", "AgentClient", "AgentError", "Cancelled", "StreamingAgentClient"]

MAX_STREAM_LINE = 1024 * 1024
TRANSFER_CHUNK = 256 * 1024


class AgentClient:
    """The agent's JSON calls for blocking callers: the async transport (agent_http.py, strict framing,
    size caps, deadlines) run to its end by agent_client.run_blocking."""

    def __init__(self, host_port: int, token: str, host: str = "127.0.0.1", sandbox_id: str = "") -> None:
        self.host = host
        self.port = int(host_port)
        self.base_url = f"http://{host}:{int(host_port)}"
        self.token = token
        self._transport = AsyncAgent(sandbox_id, host, self.port, token, connect_timeout=10.0, idle_timeout=30.0)

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict[str, Any]:
        transport = self._transport
        return run_blocking(lambda: transport.request(method, path, body, timeout=timeout))

    def health(self, timeout: float = 5) -> dict[str, Any]:
        return self.request("GET", "/health", timeout=timeout)

    def kernel_action(self, action: str, timeout: float = 30) -> dict[str, Any]:
        return self.request("POST", f"/kernel/{action}", timeout=timeout)

    def usage(self) -> dict[str, Any]:
        """Disk used in the home folder and listening ports, as the sandbox reports them."""
        return checked_usage(self.request("GET", "/usage", timeout=10))

    def events(self, after: int, wait: float) -> tuple[int, list[dict[str, Any]]]:
        answer = self.request("GET", f"/events?after={int(after)}&timeout={wait}", timeout=wait + 10)
        checked = checked_events(answer)
        if checked is None:
            raise AgentError("agent sent malformed events")
        return checked


class Cancelled(Exception):
    """A streamed operation was cancelled by the caller."""


def _watch_cancel(connection: http.client.HTTPConnection, cancel: threading.Event | None) -> threading.Event:
    """Shut the connection's socket when `cancel` is set; returns an event that ends the watch."""
    done = threading.Event()
    if cancel is None:
        return done

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(0.1):
                sock = connection.sock
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return

    threading.Thread(target=watch, daemon=True).start()
    return done


class StreamingAgentClient(AgentClient):
    """The agent calls whose bodies are streamed: command output and file transfers."""

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"token {self.token}", **(extra or {})}

    @staticmethod
    def _raise_for(response: http.client.HTTPResponse) -> None:
        if response.status >= 400:
            raise AgentError(
                f"agent answered {response.status}: {error_message(response.read(MAX_RESPONSE_BYTES))}",
                status=response.status,
            )

    def exec_stream(
        self,
        command: str | list[str],
        on_output: Callable[[str, str], None],
        cancel: threading.Event | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run a command, calling on_output(stream, text) as output comes; return the exit record."""
        body = json.dumps({"command": command, "cwd": cwd, "env": env or {}, "timeout": timeout, "stream": True})
        connection = self._connection(timeout=None)
        done = _watch_cancel(connection, cancel)
        try:
            connection.request(
                "POST", "/process/exec", body=body, headers=self._headers({"Content-Type": "application/json"})
            )
            response = connection.getresponse()
            self._raise_for(response)
            while True:
                line = response.readline(MAX_STREAM_LINE + 1)
                if not line:
                    break
                if len(line) > MAX_STREAM_LINE:
                    raise AgentError("agent sent an over-long output line")
                try:
                    chunk = json.loads(line)
                except ValueError:
                    raise AgentError("agent sent malformed output") from None
                if not isinstance(chunk, dict):
                    raise AgentError("agent sent malformed output")
                if "exit_code" in chunk:
                    if not isinstance(chunk["exit_code"], int):
                        raise AgentError("agent sent a malformed exit record")
                    return chunk
                stream, text = chunk.get("stream"), chunk.get("text")
                if stream in ("stdout", "stderr") and isinstance(text, str):
                    on_output(stream, text)
        except (OSError, http.client.HTTPException) as exc:
            if cancel is not None and cancel.is_set():
                raise Cancelled() from None
            raise AgentError(f"lost the connection to the agent: {exc}") from None
        finally:
            done.set()
            connection.close()
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        raise AgentError("the command's output ended without an exit code")

    def list_files(self, path: str) -> dict[str, Any]:
        answer = self.request("GET", "/files?" + urllib.parse.urlencode({"path": path}))
        entries = answer.get("entries")
        if not isinstance(entries, list) or not isinstance(answer.get("path"), str):
            raise AgentError("agent sent a malformed listing")
        clean = []
        for item in entries:
            if (
                isinstance(item, dict)
                and isinstance(item.get("name"), str)
                and item.get("type") in ("file", "directory", "symlink", "other")
                and isinstance(item.get("size"), int)
            ):
                clean.append(item)
        return {"path": answer["path"], "entries": clean, "truncated": bool(answer.get("truncated"))}

    def download(self, path: str, destination: IO[bytes], max_bytes: int, cancel: threading.Event | None = None) -> int:
        """Copy a sandbox file into `destination`; never more than max_bytes."""
        connection = self._connection(timeout=60)
        done = _watch_cancel(connection, cancel)
        try:
            connection.request(
                "GET", "/files/content?" + urllib.parse.urlencode({"path": path}), headers=self._headers()
            )
            response = connection.getresponse()
            self._raise_for(response)
            announced = response.getheader("Content-Length")
            if announced is not None and announced.isdigit() and int(announced) > max_bytes:
                raise AgentError(f"{path} is {int(announced):,} bytes, more than the limit of {max_bytes:,}")
            copied = 0
            while True:
                chunk = response.read(TRANSFER_CHUNK)
                if not chunk:
                    return copied
                copied += len(chunk)
                if copied > max_bytes:
                    raise AgentError(f"{path} is larger than the limit of {max_bytes:,} bytes")
                destination.write(chunk)
        except (OSError, http.client.HTTPException) as exc:
            if cancel is not None and cancel.is_set():
                raise Cancelled() from None
            raise AgentError(f"download failed: {exc}") from None
        finally:
            done.set()
            connection.close()

    def upload(self, path: str, source: IO[bytes], size: int) -> dict[str, Any]:
        connection = self._connection(timeout=60)
        try:
            connection.putrequest("PUT", "/files/content?" + urllib.parse.urlencode({"path": path}))
            for key, value in self._headers(
                {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            ).items():
                connection.putheader(key, value)
            connection.endheaders()
            while True:
                chunk = source.read(TRANSFER_CHUNK)
                if not chunk:
                    break
                connection.send(chunk)
            response = connection.getresponse()
            self._raise_for(response)
            answer = json.loads(response.read(MAX_RESPONSE_BYTES))
            if not isinstance(answer, dict):
                raise AgentError("agent answered with an unexpected shape")
            return answer
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise AgentError(f"upload failed: {exc}") from None
        finally:
            connection.close()
