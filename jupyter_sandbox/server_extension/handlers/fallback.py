"""Any other path under /sandbox/api: a JSON 404 like every other error (Jupyter's default is an HTML
page), which says what is wrong with the path, e.g. a sandbox id that cannot be one."""

from __future__ import annotations

import re

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import SandboxAPIHandler

_SANDBOX_PATH = re.compile(r"sandboxes/(?P<id>[^/]+)(?:/|$)")
_ID = re.compile(r"[0-9a-f]{12}")


class NotFoundHandler(SandboxAPIHandler):
    def validate_request(self) -> None:
        pass  # no route, no schema: the answer is the 404 below

    def _missing(self, rest: str) -> None:
        found = _SANDBOX_PATH.match(rest)
        if found and not _ID.fullmatch(found.group("id")):
            # Shown quoted and cut: the id came from the request, never echoed raw at length.
            shown = found.group("id")[:40]
            raise web.HTTPError(
                404,
                "there is no sandbox %r: a sandbox id is 12 lowercase hex characters, as GET "
                "/sandbox/api/sandboxes and `jupyter sandbox list` show them",
                shown,
            )
        raise web.HTTPError(404, "there is no such API path; GET /sandbox/api/openapi.json lists them")

    # The same answer for every method, once the caller is known (no map of the API for strangers).
    @web.authenticated
    @authorized
    def get(self, rest: str) -> None:
        self._missing(rest)

    @web.authenticated
    @authorized
    def post(self, rest: str) -> None:
        self._missing(rest)

    @web.authenticated
    @authorized
    def put(self, rest: str) -> None:
        self._missing(rest)

    @web.authenticated
    @authorized
    def patch(self, rest: str) -> None:
        self._missing(rest)

    @web.authenticated
    @authorized
    def delete(self, rest: str) -> None:
        self._missing(rest)
