"""Where preview requests leave tornado: routing targets that take the connection over.

`http://{port}-{sandbox_id}.localhost:{server_port}/` is matched by its Host header before any
Jupyter handler can see it, so Jupyter's pages and APIs never exist on a preview origin and Jupyter's
cookies are never sent there. Once tornado has read the first request head, the connection is
detached from tornado and served by a PreviewSession, request after request.

The path form `/sandbox/preview/{id}/{port}/` (for deployments without host routing, and only while
`SandboxService.path_form_previews` is on) shares the Jupyter origin, so its connection may carry
Jupyter requests too: the session serves that one request, with `Content-Security-Policy: sandbox` and
only the response headers confine.py lets through there, and closes the connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import urllib.parse
from typing import Any

from tornado import httputil
from tornado.routing import HostMatches, PathMatches, Rule

from ...agent.splice import buffered, take_socket
from ...sandbox.manager import SandboxManager
from .http1 import Channel, Head
from .pages import PreviewFailure
from .session import PreviewSession, Target
from .upstream import Upstreams


def host_pattern(template: str) -> str:
    """The Host regex (named groups port, sandbox_id) of a preview URL template."""
    host = urllib.parse.urlsplit(template.replace("{server_port}", "0")).hostname or ""
    pattern = (
        re.escape(host)
        .replace(r"\{port\}", r"(?P<port>\d{1,5})")
        .replace(r"\{sandbox_id\}", r"(?P<sandbox_id>[0-9a-f]{12})")
    )
    return f"^{pattern}$"


class PreviewGateway:
    """The state previews share: the upstream connections and the sessions being served."""

    def __init__(
        self, manager: SandboxManager, log: logging.Logger, host_regex: str, base_url: str, path_form: bool = True
    ) -> None:
        self.upstreams = Upstreams(manager)
        self.path_form = path_form
        self.log = log
        self.host_regex = re.compile(host_regex)
        self.path_regex = re.compile(
            re.escape(base_url.rstrip("/") + "/sandbox/preview/")
            + r"(?P<sandbox_id>[0-9a-f]{12})/(?P<port>\d{1,6})(?P<rest>/.*)"
        )
        self._sessions: set[asyncio.Task] = set()

    def host_target(self, head: Head, scheme: str) -> Target:
        host = head.get("Host")
        match = self.host_regex.match(httputil.split_host_and_port(host.lower())[0])
        if not match:
            raise PreviewFailure(400, "Not a preview address")
        return Target(match["sandbox_id"], int(match["port"]), head.first[1], host, scheme=scheme)

    def path_target(self, head: Head, scheme: str) -> Target:
        if not self.path_form:
            raise PreviewFailure(
                404,
                "Previews are not served at this address",
                "This server serves previews on their own origins only: open the link from "
                "JupyterLab or <code>%sandbox preview PORT</code>.",
            )
        path, _, query = head.first[1].partition("?")
        match = self.path_regex.fullmatch(path)
        if not match:
            raise PreviewFailure(404, "Not a preview address")
        prefix = path[: match.start("rest")]
        return Target(
            match["sandbox_id"],
            int(match["port"]),
            match["rest"] + ("?" + query if query else ""),
            head.get("Host"),
            path_prefix=prefix,
            scheme=scheme,
        )

    def take_over(
        self, request_conn: Any, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders, path_form: bool
    ) -> None:
        scheme = getattr(request_conn.context, "protocol", "http")
        stream = request_conn.detach()
        early = buffered(stream)
        client = Channel(take_socket(stream), early)
        head = Head((start_line.method, start_line.path, start_line.version), list(headers.get_all()))
        session = PreviewSession(self.upstreams, client, self.log)
        task = asyncio.ensure_future(self._serve(session, head, scheme, path_form))
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    async def _serve(self, session: PreviewSession, head: Head, scheme: str, path_form: bool) -> None:
        try:
            target = self.path_target(head, scheme) if path_form else self.host_target(head, scheme)
        except PreviewFailure as failure:
            await session.refuse(failure, head)
            return
        if path_form:
            await session.run(head, target, read_more=False)
            return
        first_host = target.public_host.lower()

        def next_target(later: Head) -> Target:
            if later.get("Host").lower() != first_host:
                raise PreviewFailure(
                    421,
                    "This connection belongs to another address",
                    "Send requests for another host on a connection of their own.",
                )
            # The same Host names the same preview: only the path and the Host's spelling change.
            return dataclasses.replace(target, path=later.first[1], public_host=later.get("Host"))

        await session.run(head, target, read_more=True, next_target=next_target)


class _TakeOver(httputil.HTTPMessageDelegate):
    def __init__(self, gateway: PreviewGateway, request_conn: Any, path_form: bool) -> None:
        self.gateway = gateway
        self.request_conn = request_conn
        self.path_form = path_form

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> None:
        # Detached here, tornado reads nothing more from this connection (not even the body).
        self.gateway.take_over(self.request_conn, start_line, headers, self.path_form)

    def data_received(self, chunk: bytes) -> None:
        pass

    def finish(self) -> None:
        pass

    def on_connection_close(self) -> None:
        pass


class PreviewEntrance(httputil.HTTPServerConnectionDelegate):
    """A tornado routing target: requests routed here leave tornado for a PreviewSession."""

    def __init__(self, gateway: PreviewGateway, path_form: bool) -> None:
        self.gateway = gateway
        self.path_form = path_form

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _TakeOver(self.gateway, request_conn, self.path_form)


def install(
    web_app: Any, manager: SandboxManager, log: logging.Logger, template: str, base_url: str, path_form: bool = True
) -> PreviewGateway:
    """Route preview origins (ahead of every Jupyter handler) and the path form to the gateway (which
    answers 404 there when `path_form` is off: the address stays the proxy's, never Jupyter's)."""
    gateway = PreviewGateway(manager, log, host_pattern(template), base_url, path_form)
    rules = web_app.default_router.rules
    rules.insert(0, Rule(HostMatches(gateway.host_regex.pattern), PreviewEntrance(gateway, path_form=False)))
    # Not through add_handlers: the path form takes preview tokens, not Jupyter's login, on purpose.
    rules.insert(1, Rule(PathMatches(gateway.path_regex.pattern), PreviewEntrance(gateway, path_form=True)))
    return gateway
