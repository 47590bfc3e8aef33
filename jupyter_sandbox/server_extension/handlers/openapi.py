"""The API's own description."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..openapi import openapi_document
from .base import SandboxAPIHandler


class OpenAPIHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(openapi_document())
