"""REST for a sandbox's network: its policy (GET; PATCH the sandbox to change it), the gateway's
log of connection attempts, and the secrets the gateway adds (names and hosts only, never values)."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from .base import SandboxAPIHandler

# Any segment: the operations layer says which names are secrets (and answers 404 for the rest).
SECRET_NAME = r"(?P<name>[^/]+)"


class NetworkHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.network_policy(sandbox_id))


class NetworkLogHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.network_log(sandbox_id, self.get_query_argument("limit", "200")))


class SecretsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.list_secrets(sandbox_id))

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        secret = await self.service.set_secret(sandbox_id, self.json_body())
        self.set_header(
            "Location",
            url_path_join(self.base_url, "sandbox", "api", "sandboxes", sandbox_id, "secrets", secret["name"]),
        )
        self.reply(secret, status=201)


class SecretHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str, name: str) -> None:
        await self.service.delete_secret(sandbox_id, name)
        self.no_content()
