"""The proxy kernel's HTTP client of the sandbox service (hub mode): the service's REST API under
`{url}/sandbox/api/`, as this user (`Authorization: token <T>`), answering parsed JSON or raising
the domain error the status stands for, with the service's own message.

Blocking (httpx.Client): its callers are the kernel's background threads and the magics' thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import httpx

from ..client.connection import message_of
from ..sandbox import errors

MAX_MESSAGE = 2000
# One line per request in a kernel's log is noise (the kernel long-polls its events).
logging.getLogger("httpx").setLevel(logging.WARNING)
ERROR_OF: dict[int, type[errors.SandboxOperationError]] = {
    400: errors.InvalidInput,
    401: errors.Forbidden,
    403: errors.Forbidden,
    404: errors.SandboxNotFound,
    409: errors.Conflict,
    410: errors.Gone,
    413: errors.PayloadTooLarge,
    429: errors.LimitReached,
    502: errors.AgentUnavailable,
    503: errors.EngineUnavailable,
    504: errors.TimedOut,
    507: errors.InsufficientStorage,
}


class ServiceUnreachable(errors.AgentUnavailable):
    """No answer from the sandbox service at all (down, restarting, the network): worth retrying."""


def quoted(value: str) -> str:
    return quote(value, safe="")


class ServiceAPI:
    """One user's calls to one sandbox service."""

    def __init__(self, url: str, token: str, timeout: float = 120.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise errors.InvalidInput(f"the sandbox service's URL {url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.token = token
        # No proxy from the environment: the token goes to the service named, nowhere else.
        self.http = httpx.Client(
            headers={"Authorization": f"token {token}"} if token else {}, timeout=timeout, trust_env=False
        )
        self._lock = threading.Lock()

    def api(self, path: str) -> str:
        return f"{self.url}/sandbox/api{path}"

    def ws(self, path: str) -> str:
        return ("wss://" if self.url.startswith("https:") else "ws://") + self.api(path).split("://", 1)[1]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, self.api(path), **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(f"the sandbox service at {self.url} did not answer: {exc}") from None
        if response.status_code >= 400:
            message = message_of(response)[:MAX_MESSAGE]
            raise ERROR_OF.get(response.status_code, errors.Internal)(message)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.Internal("the sandbox service's answer is not JSON") from None

    def close(self) -> None:
        self.http.close()

    # -- a kernel's sandbox -------------------------------------------------------------------

    def bring_up(self, kernel_id: str, workspace: str | None) -> dict[str, Any]:
        return self.call("POST", f"/kernels/{quoted(kernel_id)}/sandbox", json={"workspace": workspace}, timeout=3600)

    def release(self, kernel_id: str) -> dict[str, Any]:
        return self.call("DELETE", f"/kernels/{quoted(kernel_id)}/sandbox", timeout=300)

    def kernel_events(self, sandbox_id: str, after: int, wait: float) -> dict[str, Any]:
        return self.call(
            "GET",
            f"/sandboxes/{quoted(sandbox_id)}/kernel/events",
            params={"after": str(after), "wait": str(wait)},
            timeout=wait + 30,
        )

    def kernel_action(self, sandbox_id: str, action: str, timeout: float = 30, hard: bool = False) -> Any:
        return self.call(
            "POST",
            f"/sandboxes/{quoted(sandbox_id)}/kernel/{action}",
            json={"hard": True} if hard else None,
            timeout=timeout,
        )

    # -- the sandbox --------------------------------------------------------------------------

    def get(self, sandbox_id: str) -> dict[str, Any]:
        return self.call("GET", f"/sandboxes/{quoted(sandbox_id)}", timeout=60)

    def delete(self, sandbox_id: str) -> None:
        self.call("DELETE", f"/sandboxes/{quoted(sandbox_id)}", timeout=120)

    def stop(self, sandbox_id: str) -> dict[str, Any]:
        return self.call("POST", f"/sandboxes/{quoted(sandbox_id)}/stop", timeout=120)

    def exec(self, sandbox_id: str, command: str, cwd: str | None, timeout: float) -> dict[str, Any]:
        body: dict[str, Any] = {"command": command, "timeout": timeout}
        if cwd:
            body["cwd"] = cwd
        return self.call("POST", f"/sandboxes/{quoted(sandbox_id)}/process/exec", json=body, timeout=timeout + 60)

    def list_files(self, sandbox_id: str, path: str) -> dict[str, Any]:
        return self.call("GET", f"/sandboxes/{quoted(sandbox_id)}/files", params={"path": path}, timeout=60)

    def upload(self, sandbox_id: str, path: str, source: IO[bytes], size: int) -> dict[str, Any]:
        def chunks() -> Any:
            while True:
                data = source.read(256 * 1024)
                if not data:
                    return
                yield data

        return self.call(
            "PUT",
            f"/sandboxes/{quoted(sandbox_id)}/files/content",
            params={"path": path},
            content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=None,
        )

    def download(
        self, sandbox_id: str, path: str, destination: IO[bytes], max_bytes: int, cancel: threading.Event | None
    ) -> int:
        url = self.api(f"/sandboxes/{quoted(sandbox_id)}/files/content")
        written = 0
        try:
            with self.http.stream("GET", url, params={"path": path}, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ERROR_OF.get(response.status_code, errors.Internal)(message_of(response)[:MAX_MESSAGE])
                for chunk in response.iter_bytes():
                    if cancel is not None and cancel.is_set():
                        raise errors.InvalidInput("the download was interrupted")
                    written += len(chunk)
                    if written > max_bytes:
                        raise errors.PayloadTooLarge(f"the file is larger than the limit of {max_bytes:,} bytes")
                    destination.write(chunk)
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(f"the download from the sandbox service broke: {exc}") from None
        return written

    def ports(self, sandbox_id: str) -> dict[str, Any]:
        return self.call("GET", f"/sandboxes/{quoted(sandbox_id)}/ports", timeout=60)

    def create_preview(self, sandbox_id: str, port: int, expires_in: float) -> dict[str, Any]:
        return self.call(
            "POST",
            f"/sandboxes/{quoted(sandbox_id)}/previews",
            json={"port": port, "expires_in": int(expires_in)},
            timeout=60,
        )

    # -- configuration, network, secrets ------------------------------------------------------

    def update(self, sandbox_id: str, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        return self.call("PATCH", f"/sandboxes/{quoted(sandbox_id)}", json=body, timeout=timeout)

    def network(self, sandbox_id: str) -> dict[str, Any]:
        return self.call("GET", f"/sandboxes/{quoted(sandbox_id)}/network", timeout=60)

    def network_log(self, sandbox_id: str, limit: int) -> dict[str, Any]:
        return self.call(
            "GET", f"/sandboxes/{quoted(sandbox_id)}/network/log", params={"limit": str(limit)}, timeout=60
        )

    def list_secrets(self, sandbox_id: str) -> dict[str, Any]:
        return self.call("GET", f"/sandboxes/{quoted(sandbox_id)}/secrets", timeout=60)

    def set_secret(self, sandbox_id: str, body: dict[str, Any]) -> dict[str, Any]:
        # The value is in this request's body only: httpx logs no bodies, and this client logs nothing.
        return self.call("POST", f"/sandboxes/{quoted(sandbox_id)}/secrets", json=body, timeout=60)

    def delete_secret(self, sandbox_id: str, name: str) -> None:
        self.call("DELETE", f"/sandboxes/{quoted(sandbox_id)}/secrets/{quoted(name)}", timeout=60)

    # -- PTYs and the desktop ----------------------------------------------------------------

    def ptys(self, sandbox_id: str) -> dict[str, Any]:
        return self.call("GET", f"/sandboxes/{quoted(sandbox_id)}/ptys", timeout=60)

    def create_pty(self, sandbox_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", f"/sandboxes/{quoted(sandbox_id)}/ptys", json=body, timeout=60)

    def kill_pty(self, sandbox_id: str, pty_id: str) -> dict[str, Any]:
        return self.call("DELETE", f"/sandboxes/{quoted(sandbox_id)}/ptys/{quoted(pty_id)}", timeout=60)

    def pty_input(self, sandbox_id: str, pty_id: str, data: str) -> dict[str, Any]:
        return self.call(
            "POST", f"/sandboxes/{quoted(sandbox_id)}/ptys/{quoted(pty_id)}/input", json={"data": data}, timeout=60
        )

    def pty_output(
        self, sandbox_id: str, pty_id: str, until: str | None, timeout: float, cancel: threading.Event | None
    ) -> Iterator[dict[str, Any]]:
        params = {"timeout": f"{timeout:g}", **({"until": until} if until else {})}
        path = f"/sandboxes/{quoted(sandbox_id)}/ptys/{quoted(pty_id)}/output"
        return self.stream("GET", path, cancel, timeout + 60, "the PTY's output", params=params)

    def exec_output(
        self, sandbox_id: str, command: str, cwd: str | None, timeout: float, cancel: threading.Event | None
    ) -> Iterator[dict[str, Any]]:
        body: dict[str, Any] = {"command": command, "timeout": timeout, "stream": True}
        if cwd:
            body["cwd"] = cwd
        path = f"/sandboxes/{quoted(sandbox_id)}/process/exec"
        return self.stream("POST", path, cancel, timeout + 60, "the command's output", json=body)

    def stream(
        self, method: str, path: str, cancel: threading.Event | None, longest: float, what: str, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        """The objects of a streamed answer (server_extension/handlers/streaming.py) as they come; the
        service's heartbeats (blank lines) let `cancel` be seen while nothing comes. Leaving (cancel,
        or the caller stops iterating) closes the connection, which ends the operation there."""
        try:
            with self.http.stream(
                method, self.api(path), timeout=httpx.Timeout(60, read=longest), **kwargs
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ERROR_OF.get(response.status_code, errors.Internal)(message_of(response)[:MAX_MESSAGE])
                for line in response.iter_lines():
                    if cancel is not None and cancel.is_set():
                        return
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except ValueError:
                        item = None
                    if not isinstance(item, dict):
                        raise errors.Internal(f"the sandbox service sent {what} malformed")
                    yield item
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(f"{what} from the sandbox service broke off: {exc}") from None

    def desktop(self, sandbox_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if action == "status":
            return self.call("GET", f"/sandboxes/{quoted(sandbox_id)}/desktop", timeout=60)
        return self.call("POST", f"/sandboxes/{quoted(sandbox_id)}/desktop/{action}", json=body, timeout=120)
