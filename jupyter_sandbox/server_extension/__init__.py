"""The Jupyter Server extension: the REST API under /sandbox/api."""

from __future__ import annotations

import asyncio
import atexit
import os
from typing import Any

from tornado.ioloop import IOLoop, PeriodicCallback

from ..config import load_config
from ..kernel.magics import PREVIEW_TEMPLATE_ENV
from ..sandbox.manager import SandboxManager
from ..sandbox.service import SandboxService
from .handlers import api_routes
from . import preview


def _load_jupyter_server_extension(serverapp: Any) -> None:
    config = load_config()
    config.merge(serverapp.config)
    manager = SandboxManager(config=config, log=serverapp.log)
    service = SandboxService(manager, config=config, log=serverapp.log)
    base_url = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", api_routes(base_url, service))
    # Preview origins first, before any Jupyter handler: none of Jupyter's pages exist there.
    preview.install(serverapp.web_app, manager, serverapp.log, service.preview_url_template, base_url,
                    path_form=service.path_form_previews)
    service.server_port = serverapp.port
    # Kernels started by this server inherit its environment: %sandbox preview builds links with it.
    os.environ[PREVIEW_TEMPLATE_ENV] = service.preview_url_template.replace("{server_port}", str(serverapp.port))
    timers = []
    if service.reap_interval > 0:
        # At start too: sandboxes of kernels that died with a previous server are reconciled.
        IOLoop.current().call_later(1.0, lambda: asyncio.ensure_future(service.reap()))
        timers.append(PeriodicCallback(lambda: asyncio.ensure_future(service.reap()), service.reap_interval * 1000))
    if manager.warm_pool_size > 0 and service.pool_interval > 0:
        IOLoop.current().call_later(0.5, lambda: asyncio.ensure_future(service.fill_pool()))
        timers.append(PeriodicCallback(lambda: asyncio.ensure_future(service.fill_pool()), service.pool_interval * 1000))
    for timer in timers:
        timer.start()
    if manager.warm_pool_size > 0:
        # The pool serves this server's kernels; it goes when the server goes (a server that is
        # killed instead leaves it to the next one, which adopts it).
        atexit.register(_drain_pool, manager)
    serverapp.web_app.settings["jupyter_sandbox_timers"] = timers
    serverapp.log.info("jupyter-sandbox: REST API at %ssandbox/api; previews at %s", base_url,
                       service.preview_url_template)


def _drain_pool(manager: SandboxManager) -> None:
    try:
        manager.drain_pool()
    except Exception as exc:  # at exit: say so, never raise
        manager.log.warning("could not remove the warm pool's sandboxes: %s", exc)
