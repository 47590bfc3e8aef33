"""REST for SSH access: POST issues a token for a sandbox, DELETE revokes its tokens.

Thin like the other handlers: the gateway (sandbox/ssh/gateway.py) does the work; it sits in the
web app's settings, put there by the extension when it made the gateway.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from ...sandbox.ssh.gateway import SSHGateway
from .base import SandboxAPIHandler

SETTINGS_KEY = "jupyter_sandbox_ssh"


class SSHAccessHandler(SandboxAPIHandler):
    def gateway(self) -> SSHGateway:
        gateway = self.settings.get(SETTINGS_KEY)
        if gateway is None:
            raise web.HTTPError(409, "the SSH gateway is off; start the server with --SSHGateway.port=2222")
        return gateway

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        body = self.json_body()
        access = await self.gateway().grant(sandbox_id, body.get("expires_in"))
        self.set_header("Location", url_path_join(self.base_url, "sandbox", "api", "sandboxes", sandbox_id, "ssh"))
        self.reply(access, status=201)

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str) -> None:
        await self.gateway().revoke(sandbox_id)
        self.no_content()
