"""Where the Jupyter server is and how to talk to it: the address and token, an HTTP client that
turns the server's error answers into typed exceptions, and websocket connections with the same
credentials."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from tornado import httpclient, websocket

from .errors import ConnectionFailed, SandboxError, error_for

URL_ENV = "JUPYTER_SANDBOX_URL"
TOKEN_ENV = "JUPYTER_SANDBOX_TOKEN"
# What Jupyter deployments commonly export to the processes (and kernels) they start.
FALLBACK_URL_ENV = ("JUPYTER_SERVER_URL",)
FALLBACK_TOKEN_ENV = ("JUPYTER_TOKEN", "JPY_API_TOKEN")
API = "sandbox/api"


@dataclass(frozen=True)
class ServerAddress:
    """A Jupyter server's base URL (with its base_url path, ending in /) and token."""

    url: str
    token: str

    @classmethod
    def resolve(cls, url: str | None = None, token: str | None = None) -> ServerAddress:
        """Arguments first, then JUPYTER_SANDBOX_URL / JUPYTER_SANDBOX_TOKEN, then the variables a
        Jupyter deployment gives its kernels (JUPYTER_SERVER_URL, JUPYTER_TOKEN), then a Jupyter
        server running on this machine for this user (its runtime file)."""
        url = url or os.environ.get(URL_ENV) or _first_env(FALLBACK_URL_ENV)
        token = token if token is not None else os.environ.get(TOKEN_ENV) or _first_env(FALLBACK_TOKEN_ENV)
        if not url:
            running = _running_server()
            if running is not None:
                url = running["url"]
                token = token if token is not None else running.get("token", "")
        if not url:
            raise ConnectionFailed(
                f"no Jupyter server address: pass url=, or set {URL_ENV} (and {TOKEN_ENV}), or start a Jupyter server"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConnectionFailed(f"the Jupyter server address {url!r} is not an http(s) URL")
        return cls(url if url.endswith("/") else url + "/", token or "")

    def api(self, path: str) -> str:
        return self.url + API + path

    def ws(self, path: str) -> str:
        return ("wss://" if self.url.startswith("https:") else "ws://") + self.url.split("://", 1)[1] + path.lstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _running_server() -> dict[str, Any] | None:
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return None
    try:
        for info in list_running_servers():
            if isinstance(info.get("url"), str):
                return info
    except (OSError, ValueError):
        return None
    return None


def quoted(value: str) -> str:
    """One path segment (an id the caller gave), quoted so it cannot reach another route."""
    return quote(value, safe="")


def message_of(response: httpx.Response) -> str:
    """The server's own message of an error answer ({"message": ...}), or its reason phrase."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str) and data["message"]:
        return data["message"]
    return response.reason_phrase or f"HTTP {response.status_code}"


class Transport:
    """An httpx.AsyncClient bound to one server; `request` answers parsed JSON or raises the typed error."""

    def __init__(self, address: ServerAddress, timeout: float = 120.0) -> None:
        self.address = address
        # No proxy from the environment: the server is named explicitly, and its token must not
        # travel to a proxy the caller did not choose.
        self.http = httpx.AsyncClient(headers=address.headers, timeout=timeout, trust_env=False)

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise ConnectionFailed(f"the Jupyter server did not answer in time: {exc}") from None
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"could not reach the Jupyter server at {self.address.url}: {exc}") from None
        if response.status_code >= 400:
            raise error_for(response.status_code, message_of(response))
        return response

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A /sandbox/api call; the JSON answer (None for 204)."""
        return await self.json(method, self.address.api(path), **kwargs)

    async def json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.send(method, url, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise SandboxError("the server's answer is not JSON", response.status_code) from None

    async def stream_lines(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Newline-delimited JSON objects of a streamed answer, as they come."""
        try:
            async with self.http.stream("GET", self.address.api(path), params=params, timeout=None) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_for(response.status_code, message_of(response))
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except ValueError:
                        raise SandboxError("the server sent malformed streamed JSON") from None
                    if isinstance(item, dict):
                        yield item
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"the stream from the Jupyter server broke: {exc}") from None

    async def websocket(self, path: str, on_message: Any = None) -> websocket.WebSocketClientConnection:
        """A websocket to the server (path relative to its base URL) with the token in a header."""
        request = httpclient.HTTPRequest(self.address.ws(path), headers=self.address.headers, connect_timeout=30)
        try:
            return await websocket.websocket_connect(request, on_message_callback=on_message)
        except httpclient.HTTPClientError as exc:
            body = exc.response.body if exc.response is not None and exc.response.body else b""
            try:
                message = json.loads(body).get("message") or str(exc)
            except (ValueError, AttributeError):
                message = str(exc)
            raise error_for(exc.code, message) from None
        except OSError as exc:
            raise ConnectionFailed(f"could not open a websocket to {self.address.url}: {exc}") from None
