"""Git in a sandbox: status and branches (GET), the operations that change a repository (POST), and
branch deletion (DELETE). Credentials in a POST body stay on the host (see SandboxOperations.git)."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ...sandbox.operations import GIT_OPERATIONS, check_path
from .base import SandboxAPIHandler

GIT_OPERATION = "(?P<operation>" + "|".join(GIT_OPERATIONS) + ")"


class GitHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str, operation: str) -> None:
        if operation == "status":
            self.reply(await self.service.git_status(sandbox_id, self.query("path")))
        elif operation == "branches":
            self.reply(await self.service.git_branches(sandbox_id, self.query("path")))
        else:
            raise web.HTTPError(405)

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, operation: str) -> None:
        if operation == "status":
            raise web.HTTPError(405)
        self.reply(await self.service.git(sandbox_id, operation, self.json_body()))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str, operation: str) -> None:
        if operation != "branches":
            raise web.HTTPError(405)
        path = check_path(self.query("path"), required=False)
        name = self.query("name", required=True)
        assert name is not None
        self.reply(await self.service.git_delete_branch(sandbox_id, path, name))
