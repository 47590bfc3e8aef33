"""The Jupyter Server extension: the REST API under /sandbox/api."""

from __future__ import annotations

from typing import Any

from ..config import load_config
from ..sandbox.manager import SandboxManager
from .handlers import api_routes
from ..sandbox.service import SandboxService


def _load_jupyter_server_extension(serverapp: Any) -> None:
    config = load_config()
    config.merge(serverapp.config)
    manager = SandboxManager(config=config, log=serverapp.log)
    service = SandboxService(manager, config=config, log=serverapp.log)
    base_url = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", api_routes(base_url, service))
    serverapp.log.info("jupyter-sandbox: REST API at %ssandbox/api", base_url)
