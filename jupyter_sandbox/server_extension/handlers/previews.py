"""Preview links: mint one (201, its address in Location), or revoke them all."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ...sandbox import preview
from .base import SandboxAPIHandler


class PreviewsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        body = self.json_body()
        link = await self.service.create_preview(
            sandbox_id, body.get("port"), body.get("expires_in", preview.DEFAULT_EXPIRY)
        )
        self.created(link, link["url"])

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str) -> None:
        await self.service.rotate_previews(sandbox_id)
        self.no_content()
