"""POST /sandbox/api/notebooks/events: a user's server in hub mode tells the sandbox service that one
of its notebooks moved (renamed, copied, deleted, a session's path changed), so its sandbox follows."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import SandboxAPIHandler


class NotebookEventsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.reply(await self.service.follow_notebook(self.json_body()))
