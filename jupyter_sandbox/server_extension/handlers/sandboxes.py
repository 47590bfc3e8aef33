"""Sandboxes: list, create, status, change, delete, start, stop."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from .base import SandboxAPIHandler


def sandbox_url(base_url: str, sandbox_id: str, *rest: str) -> str:
    return url_path_join(base_url, "sandbox", "api", "sandboxes", sandbox_id, *rest)


class SandboxesHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        labels = self.service.label_filter(
            [v.decode("utf-8", "replace") for v in self.request.query_arguments.get("label", [])]
        )
        found = await self.service.list(self.query("kernel_id"), labels=labels)
        self.reply({"sandboxes": [sandbox.to_dict() for sandbox in found]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        created = await self.service.create(self.json_body())
        self.created(created, sandbox_url(self.base_url, created["id"]))


class SandboxHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.get(sandbox_id))

    @web.authenticated
    @authorized
    async def patch(self, sandbox_id: str) -> None:
        self.reply(await self.service.update(sandbox_id, self.json_body()))

    @web.authenticated
    @authorized
    async def delete(self, sandbox_id: str) -> None:
        await self.service.delete(sandbox_id)
        self.no_content()


class SandboxActionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, action: str) -> None:
        if action == "start":
            self.reply(await self.service.start(sandbox_id))
        elif action == "restart":
            hard = self.json_body().get("hard", False)
            self.reply((await self.service.restart(sandbox_id, hard)).to_dict())
        else:
            self.reply(await self.service.stop(sandbox_id))


class PortsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.ports(sandbox_id))


class SandboxKernelHandler(SandboxAPIHandler):
    """POST .../kernel {"language"?}: a kernel that runs code in this sandbox (SDK: sb.code.run)."""

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        kernels = self.settings.get("kernel_manager")
        if kernels is None:
            # The sandbox service: kernels run beside the user's own Jupyter server, which has this route.
            raise web.HTTPError(
                404, "this sandbox service runs no Jupyter kernels: ask the user's Jupyter server for one"
            )

        async def start(name: str, kernel_id: str) -> None:
            await kernels.start_kernel(kernel_name=name, kernel_id=kernel_id)

        answer = await self.service.attach_kernel(sandbox_id, self.json_body().get("language"), start)
        self.created(answer, url_path_join(self.base_url, "api", "kernels", answer["kernel_id"]))
