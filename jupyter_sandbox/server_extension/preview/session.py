"""One browser (or curl) connection to a preview, served request by request.

Tornado reads the first request head and routes it here (entry.py); from then on this loop owns the
connection. For each request it checks the Host, the token and (for a websocket) the Origin, rewrites
the head for the app (access.py), relays the body, reads the app's response head, lets through what
of it may reach the browser on this form of the preview (confine.py), and relays it and its body. An
upgrade to a websocket becomes a byte pipe both ways. Nothing of Jupyter answers on a preview connection:
a request for another host gets 421 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import html
import logging
from dataclasses import dataclass
from typing import Callable

from ...sandbox import preview as tokens
from . import access, confine
from .http1 import (
    UNTIL_CLOSE,
    Channel,
    Head,
    ProtocolError,
    body_length,
    parse_request,
    parse_response,
    pipe_both_ways,
    within,
)
from .pages import PreviewFailure, error_response, redirect_response
from .upstream import Upstreams

# A kept-alive connection with no request for this long is closed.
IDLE_SECONDS = 120.0
# The app may take long to answer (a slow page, a long poll); the head must come within this.
RESPONSE_HEAD_SECONDS = 3600.0
REPLAYABLE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass
class Target:
    """Which preview a request is for, and how it was addressed."""

    sandbox_id: str
    port: int
    path: str  # the path the app sees
    public_host: str  # the Host the browser used
    path_prefix: str = ""  # path form: everything before the app's path
    scheme: str = "http"

    @property
    def path_form(self) -> bool:
        return bool(self.path_prefix)


def _malformed(exc: ProtocolError) -> PreviewFailure:
    # The message quotes the bytes that were wrong: escaped, like everything else from outside.
    return PreviewFailure(400, "Not a request this proxy forwards", html.escape(str(exc)))


class PreviewSession:
    """Serves requests on one client connection until it closes, errs, or asks for the last time."""

    def __init__(self, upstreams: Upstreams, client: Channel, log: logging.Logger) -> None:
        self.upstreams = upstreams
        self.client = client
        self.log = log
        self.responding = False  # a response head went out: a failure now can only close the connection

    async def run(
        self, head: Head, target: Target, read_more: bool, next_target: Callable[[Head], Target] | None = None
    ) -> None:
        """Serve `head` (already read), then, if `read_more`, later requests on the same connection.
        `next_target` says where a later request goes (PreviewFailure if it may not be served here)."""
        try:
            while True:
                keep_alive = await self._serve(head, target, read_more)
                if not keep_alive or next_target is None:
                    return
                try:
                    raw = await within(IDLE_SECONDS, self.client.read_head())
                except asyncio.TimeoutError:
                    return
                if raw is None:
                    return
                try:
                    head = parse_request(raw)
                    target = next_target(head)
                except ProtocolError as exc:
                    await self._fail(_malformed(exc), "", [])
                    return
                except PreviewFailure as failure:
                    await self._fail(failure, access.split_target(head.first[1])[0], [])
                    return
        except (OSError, ProtocolError):
            pass  # the browser or the app went away mid-message: nothing left to tell anyone
        finally:
            self.client.close()

    async def refuse(self, failure: PreviewFailure, head: Head) -> None:
        """Answer a request that is not for a preview served here, and close."""
        try:
            await self._fail(failure, access.split_target(head.first[1])[0], [])
        except OSError:
            pass
        finally:
            self.client.close()

    async def _fail(self, failure: PreviewFailure, address: str, extra: list[tuple[str, str]]) -> None:
        if failure.status >= 500:
            self.log.info("preview %s: %s", address[:200], failure.title)
        head, body = error_response(failure, address, extra)
        await self.client.send(head.encode() + body)

    async def _serve(self, head: Head, target: Target, read_more: bool) -> bool:
        """One request; True when the connection may carry another."""
        extra = confine.path_form_extra() if target.path_form else []
        # Shown on error pages and in the log: without the query, which may hold a token.
        address = target.public_host + target.path_prefix + access.split_target(target.path)[0]
        self.responding = False
        try:
            return await self._forward(head, target, read_more, extra)
        except (PreviewFailure, ProtocolError) as exc:
            if self.responding:
                return False
            failure = exc if isinstance(exc, PreviewFailure) else _malformed(exc)
            await self._fail(failure, address, extra)
            return False

    async def _forward(self, head: Head, target: Target, read_more: bool, extra: list[tuple[str, str]]) -> bool:
        if not 1 <= target.port <= 65535:
            raise PreviewFailure(400, "Not a port", f"{target.port} is not a TCP port (1 to 65535).")
        path, query = access.split_target(target.path)
        token, from_query = access.given_token(head, query)
        if not token or not tokens.verify(token, target.sandbox_id, target.port):
            raise PreviewFailure(
                401 if not token else 403,
                "A preview token is needed" if not token else "This preview token is not valid here",
                "Open this preview from JupyterLab or <code>%sandbox preview PORT</code>, or send "
                f"the token in the <code>{access.TOKEN_HEADER}</code> header.",
            )
        websocket = "websocket" in head.tokens("Upgrade")
        if websocket:
            refused = access.websocket_origin_refused(head, None if target.path_form else target.public_host)
            if refused:
                raise PreviewFailure(403, "This websocket comes from another origin", html.escape(refused))
        if target.path_form and (head.get("Service-Worker") or head.get("Sec-Fetch-Dest").lower() == "serviceworker"):
            # A service worker registered from here would control Jupyter's own pages (scope '/').
            raise PreviewFailure(
                403,
                "No service workers on the path form",
                "A preview served on the Jupyter server's address cannot install a service "
                "worker. Open the preview on its own origin.",
            )
        request_length = body_length(head)
        client_keeps = read_more and head.first[2] == "HTTP/1.1" and "close" not in head.tokens("Connection")
        if access.wants_cookie(head, from_query):
            keeps = client_keeps and request_length == 0
            await self._redirect_with_cookie(token, target, path, query, extra, keeps)
            return keeps
        sandbox = await self.upstreams.sandbox(target.sandbox_id)
        replayable = not websocket and request_length == 0 and head.first[0] in REPLAYABLE_METHODS
        key = (sandbox.id, sandbox.container_id, target.port)
        upstream = self.upstreams.kept(key) if replayable else None
        reused = upstream is not None
        if upstream is None:
            upstream = await self.upstreams.connect(sandbox, target.port)
        outgoing = access.upstream_request(
            head,
            path,
            query,
            target.port,
            target.public_host,
            target.scheme,
            keep_alive=replayable,
            websocket=websocket,
            path_prefix=target.path_prefix,
        ).encode()
        try:
            if "100-continue" in head.tokens("Expect"):
                await self.client.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            response = await self._exchange(upstream, outgoing, head, request_length)
            if response is None and reused:
                # The app had closed the kept connection before this request arrived: ask on a new one.
                upstream.close()
                upstream = await self.upstreams.connect(sandbox, target.port)
                response = await self._exchange(upstream, outgoing, head, request_length)
            if response is None:
                raise PreviewFailure(502, "The app closed the connection", "It sent no answer.")
            app_headers = self._confined(response, target, path)
            if response.first[1] == "101":
                self.responding = True
                await self.client.send(access.client_response(response, app_headers, False, extra).encode())
                await pipe_both_ways(self.client, upstream)
                return False
            length = body_length(response, head.first[0])
            upstream_keeps = (
                replayable
                and length != UNTIL_CLOSE
                and response.first[0] == "HTTP/1.1"
                and "close" not in response.tokens("Connection")
            )
            keeps = client_keeps and length != UNTIL_CLOSE
            self.responding = True
            await upstream.copy_body(
                self.client, length, access.client_response(response, app_headers, keeps, extra).encode()
            )
        except BaseException:
            upstream.close()
            raise
        if upstream_keeps:
            self.upstreams.keep(key, upstream)
        else:
            upstream.close()
        return keeps

    @staticmethod
    def _confined(response: Head, target: Target, path: str) -> list[tuple[str, str]]:
        """The app's response headers that may reach the browser on this form of the preview."""
        if not target.path_form:
            return confine.own_origin_headers(response, access.COOKIE)
        own_hosts = {target.public_host.lower(), f"localhost:{target.port}"}
        return confine.path_form_headers(response, target.path_prefix, target.path_prefix + path, own_hosts)

    async def _redirect_with_cookie(
        self,
        token: str,
        target: Target,
        path: str,
        query: list[tuple[str, str]],
        extra: list[tuple[str, str]],
        keeps: bool,
    ) -> None:
        """A browser's first visit: the token goes into a cookie of this preview only, out of the address."""
        cookie_path = target.path_prefix + "/" if target.path_form else "/"
        location = target.path_prefix + access.join_target(path, [(k, v) for k, v in query if k != "token"])
        if target.path_form:
            # The request's own path, but a client may send '..' in it: the address stays in the preview.
            location = confine.confine_url(location, target.path_prefix, location, set()) or cookie_path
        cookie = access.token_cookie(token, cookie_path, access.token_expiry(token))
        await self.client.send(redirect_response(location, cookie, extra, keeps).encode())

    async def _exchange(self, upstream: Channel, outgoing: bytes, head: Head, request_length: int) -> Head | None:
        """Send the request (head and body) and read the final response head; None if the app closed the
        connection without a byte of answer (only then may the request be asked again)."""
        try:
            await self.client.copy_body(upstream, request_length, outgoing)
        except (ConnectionResetError, BrokenPipeError):
            if request_length:
                raise  # part of a body went: it cannot be asked again
            return None
        while True:
            try:
                raw = await within(RESPONSE_HEAD_SECONDS, upstream.read_head())
            except (ConnectionResetError, BrokenPipeError):
                raw = None
            if raw is None:
                return None
            response = parse_response(raw)
            if response.first[1] != "101" and response.first[1].startswith("1"):
                continue  # an interim answer (100 Continue was sent to the browser already); the final one follows
            return response
