"""POST .../lend {"kernel_id"}: hub mode's half of `POST .../kernel`. The user's Jupyter server starts
the kernel beside itself; the sandbox service, which holds the sandbox, lends it to that kernel id (or
takes it back: null)."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import SandboxAPIHandler


class SandboxLendHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        self.reply(await self.service.lend(sandbox_id, self.json_body().get("kernel_id")))
