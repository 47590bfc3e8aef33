"""The host-side client of the in-sandbox agent.

The agent runs inside the sandbox, so its answers are treated as hostile: sizes are capped, JSON is
checked for the types the caller needs, and nothing it says is used as a path or a key on the host.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

MAX_RESPONSE_BYTES = 1024 * 1024


class AgentError(RuntimeError):
    """The agent could not be reached or answered with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AgentClient:
    def __init__(self, host_port: int, token: str, host: str = "127.0.0.1") -> None:
        self.base_url = f"http://{host}:{int(host_port)}"
        self.token = token
        # Never use a proxy for loopback, whatever the environment says.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=timeout) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raw = exc.read(MAX_RESPONSE_BYTES)
            raise AgentError(f"agent answered {exc.code}: {_message(raw)}", status=exc.code) from None
        except (OSError, urllib.error.URLError) as exc:
            raise AgentError(f"agent not reachable: {exc}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise AgentError("agent answer too large")
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise AgentError("agent answered with something that is not JSON") from None
        if not isinstance(parsed, dict):
            raise AgentError("agent answered with an unexpected shape")
        return parsed

    def health(self, timeout: float = 5) -> dict[str, Any]:
        return self.request("GET", "/health", timeout=timeout)

    def kernel_action(self, action: str, timeout: float = 30) -> dict[str, Any]:
        return self.request("POST", f"/kernel/{action}", timeout=timeout)

    def events(self, after: int, wait: float) -> tuple[int, list[dict[str, Any]]]:
        answer = self.request("GET", f"/events?after={int(after)}&timeout={wait}", timeout=wait + 10)
        seq, events = answer.get("seq"), answer.get("events")
        if not isinstance(seq, int) or not isinstance(events, list):
            raise AgentError("agent sent malformed events")
        return seq, [event for event in events if isinstance(event, dict)]


def _message(raw: bytes) -> str:
    try:
        message = json.loads(raw).get("message")
        if isinstance(message, str):
            return message[:500]
    except (ValueError, AttributeError):
        pass
    return raw[:200].decode("utf-8", "replace")
