"""The Jupyter Server extension: the REST API under /sandbox/api, previews, and housekeeping.

An `ExtensionApp`, so that the server's own shutdown path (`stop_extension`, awaited before the
server shuts its kernels down) stops the housekeeping and removes this server's warm pool, in bounded
time, instead of an `atexit` hook that a hung or killed shutdown never reaches.

In hub mode (`c.SandboxRemote.url` or $JUPYTER_SANDBOX_SERVICE_URL set) the extension makes no engine
call at all: no manager or backend is made, /sandbox/api is forwarded to the sandbox service as this
user (remote/forward.py), previews, housekeeping and SSH are the service's, notebook moves reach it
through its REST API, and the kernels this server starts are told where the service is.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from typing import TYPE_CHECKING, Any, Callable

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Bool, Float

from ..config import CONFIG_FILE_NAME, load_config
from ..kernel import provisioner
from ..remote.forward import SandboxForwarder
from ..remote.settings import SandboxRemote
from ..sandbox import binding
from ..sandbox.manager import SandboxManager, default_owner
from ..sandbox.operations import SandboxOperations
from ..sandbox.ssh.gateway import SSHGateway
from . import preview
from .handlers import api_routes
from .handlers.forward import forward_routes
from .notebook_events import NotebookEvents, RemoteNotebookEvents

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp


class SandboxExtension(ExtensionApp):
    name = "jupyter_sandbox"
    description = "Sandboxes for notebook code: REST API, previews, warm pool, idle reaper."
    load_other_extensions = True

    shutdown_timeout = Float(
        20.0,
        config=True,
        help=(
            "Most seconds the server's shutdown waits for this extension's cleanup (removing the warm "
            "pool's sandboxes, waiting for housekeeping under way). What is left then is left to the next "
            "server's reconciliation."
        ),
    )

    mcp_http = Bool(
        True,
        config=True,
        help=(
            "Serve the MCP server over streamable HTTP at {base_url}sandbox/mcp, behind the Jupyter "
            "server's own authentication (its tools call this server's REST API with the server's "
            "token). Needs the `mcp` package and a token-authenticated server; off: no such route."
        ),
    )

    manager: SandboxManager
    service: SandboxOperations
    mcp_bridge: Any = None
    # Hub mode: the forwarder to the sandbox service (None in single-machine mode).
    forwarder: SandboxForwarder | None = None

    @property
    def server(self) -> ServerApp:
        """The Jupyter server this extension is loaded into (set before any of the hooks below run)."""
        if self.serverapp is None:
            raise RuntimeError("the sandbox extension is not loaded into a Jupyter server")
        return self.serverapp

    def _config_file_name_default(self) -> str:
        return CONFIG_FILE_NAME

    def initialize_settings(self) -> None:
        serverapp = self.server
        config = load_config()
        config.merge(serverapp.config)
        self._timers: list[PeriodicCallback] = []
        self._tasks: set[asyncio.Future] = set()
        remote = SandboxRemote(config=config, log=serverapp.log)
        if remote.enabled:
            self._initialize_hub_mode(remote, config)
            return
        # Who this server is: its housekeeping touches only what it (or a server now gone) made; the
        # kernels it starts are told the id by their provisioner and claim only its pool.
        self.server_id = binding.new_server_id()
        self.server_lease = binding.ServerLease(self.server_id)
        self.server_lease.acquire()
        provisioner.register_server(self.server_id)
        self.manager = SandboxManager(config=config, log=serverapp.log)
        self.manager.server_id = self.server_id
        self.service = SandboxOperations(self.manager, config=config, log=serverapp.log)
        self.notebook_events = NotebookEvents(serverapp, self.manager, self.service)

    def _initialize_hub_mode(self, remote: SandboxRemote, config: Any) -> None:
        """Sandboxes come from the service: nothing here may reach an engine (no manager, no backend,
        no host lease: the service's housekeeping and pool are its own)."""
        serverapp = self.server
        self.forwarder = SandboxForwarder(remote, config=config, log=serverapp.log)
        if not remote.token.strip():
            serverapp.log.warning(
                "jupyter-sandbox: hub mode without a credential for the sandbox service at %s: set "
                "c.SandboxRemote.token or $JUPYTER_SANDBOX_SERVICE_TOKEN (every sandbox request will fail)",
                self.forwarder.service_url,
            )
        # The kernels this server starts reach the same service as the same user, also when the URL
        # and token are only in this server's config (not its environment).
        provisioner.register_environment(remote.environment())
        # Workspace keys are worked out here, with the owner this server's kernels use for them.
        owner = config.get("SandboxManager", {}).get("owner") or default_owner()
        self.remote_notebook_events = RemoteNotebookEvents(serverapp, self.forwarder, str(owner))

    def initialize_handlers(self) -> None:
        if self.forwarder is not None:
            self._initialize_hub_handlers(self.forwarder)
            return
        serverapp, service = self.server, self.service
        base_url = serverapp.web_app.settings["base_url"]
        serverapp.web_app.add_handlers(".*$", api_routes(base_url, service))
        # Preview origins first, before any Jupyter handler: none of Jupyter's pages exist there.
        preview.install(
            serverapp.web_app,
            self.manager,
            serverapp.log,
            service.preview_url_template,
            base_url,
            path_form=service.path_form_previews,
        )
        service.server_port = serverapp.port
        if service.path_form_previews:
            # The server's connectable address (a wildcard ip becomes the host's name), then the path form.
            service.script_url_template = (
                serverapp.connection_url.replace("{", "{{").replace("}", "}}").rstrip("/")
                + "/sandbox/preview/{sandbox_id}/{port}/"
            )
        # The kernels this server starts are told the templates by their provisioner (not through this
        # process's environment): %sandbox preview builds links with them.
        provisioner.register_preview_template(
            service.preview_url_template.replace("{server_port}", str(serverapp.port)),
            service.script_url_template,
        )
        provisioner.check_kernelspec(serverapp.kernel_spec_manager, serverapp.log)
        self._install_mcp(base_url)
        self.notebook_events.install()
        # Timers start once the server's loop runs, not while the server is still being set up.
        IOLoop.current().add_callback(self._start_housekeeping)
        self.ssh = serverapp.web_app.settings["jupyter_sandbox_ssh"] = SSHGateway(service, parent=service)
        self.ssh.start_soon()
        serverapp.log.info(
            "jupyter-sandbox: REST API at %ssandbox/api; previews at %s (server %s)",
            base_url,
            service.preview_url_template,
            self.server_id,
        )

    def _initialize_hub_handlers(self, forwarder: SandboxForwarder) -> None:
        serverapp = self.server
        base_url = serverapp.web_app.settings["base_url"]
        serverapp.web_app.add_handlers(".*$", forward_routes(base_url, forwarder))
        provisioner.check_kernelspec(serverapp.kernel_spec_manager, serverapp.log)
        self._install_mcp(base_url)
        self.remote_notebook_events.install()
        serverapp.log.info(
            "jupyter-sandbox: hub mode: REST API at %ssandbox/api forwarded to the sandbox service at %s",
            base_url,
            forwarder.service_url,
        )

    def _install_mcp(self, base_url: str) -> None:
        serverapp = self.server
        if not self.mcp_http:
            return
        if importlib.util.find_spec("mcp") is None or not getattr(serverapp.identity_provider, "token", None):
            serverapp.log.info("jupyter-sandbox: no MCP endpoint (it needs the `mcp` package and a server token)")
            return
        from .mcp_http import McpBridge, mcp_routes

        self.mcp_bridge = McpBridge(serverapp)
        serverapp.web_app.add_handlers(".*$", mcp_routes(base_url, self.mcp_bridge))

    def _spawn(self, job: Callable[[], Any]) -> None:
        if self.manager.stopping:
            return
        task = asyncio.ensure_future(job())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_housekeeping(self) -> None:
        service, manager = self.service, self.manager
        if manager.stopping:
            return  # the server stopped before its loop got this far
        loop = IOLoop.current()
        if service.reap_interval > 0:
            # At start too: sandboxes of kernels that died with a previous server are reconciled.
            loop.call_later(1.0, self._spawn, self._reap)
            self._timers.append(PeriodicCallback(lambda: self._spawn(self._reap), service.reap_interval * 1000))
        if manager.warm_pool_size > 0 and service.pool_interval > 0:
            loop.call_later(0.5, self._spawn, service.fill_pool)
            self._timers.append(PeriodicCallback(lambda: self._spawn(service.fill_pool), service.pool_interval * 1000))
        for timer in self._timers:
            timer.start()
        self.server.web_app.settings["jupyter_sandbox_timers"] = self._timers

    async def _reap(self) -> None:
        await self.service.reap()
        await self.notebook_events.tidy()

    async def stop_extension(self) -> None:
        """The server is shutting down: no new housekeeping, this server's pool removed, within
        `shutdown_timeout` seconds whatever Docker does."""
        if self.forwarder is not None:
            await self._stop_hub_mode(self.forwarder)
            return
        manager = self.manager
        manager.stopping = True
        for timer in self._timers:
            timer.stop()
        await self.ssh.stop()
        self.notebook_events.uninstall()
        done = asyncio.get_running_loop().create_future()

        def settle(removed: list[str]) -> None:
            if not done.done():
                done.set_result(removed)

        def cleanup() -> None:
            # A thread of its own, not the loop's executor: one stuck in a Docker call must not keep
            # the process from exiting (the executor's threads are joined at exit).
            removed: list[str] = []
            try:
                removed = manager.drain_pool() if manager.warm_pool_size > 0 else []
            except Exception as exc:  # shutting down: say so, never raise
                manager.log.warning("jupyter-sandbox: could not remove the warm pool's sandboxes: %s", exc)
            if not done.done():
                done.get_loop().call_soon_threadsafe(settle, removed)

        threading.Thread(target=cleanup, name="jupyter-sandbox-cleanup", daemon=True).start()
        try:
            removed = await asyncio.wait_for(asyncio.shield(done), self.shutdown_timeout)
            if removed:
                manager.log.info("jupyter-sandbox: removed the warm pool's sandboxes %s", removed)
        except asyncio.TimeoutError:
            manager.log.warning(
                "jupyter-sandbox: cleanup did not finish in %.0f s; the next server's reconciliation will finish it",
                self.shutdown_timeout,
            )
        for task in list(self._tasks):
            task.cancel()
        if self.mcp_bridge is not None:
            await self.mcp_bridge.stop()
        self.server_lease.release(forget=True)
        provisioner.unregister()

    async def _stop_hub_mode(self, forwarder: SandboxForwarder) -> None:
        # Nothing of the service's is stopped or removed: its sandboxes and housekeeping are its own.
        self.remote_notebook_events.uninstall()
        await self.remote_notebook_events.settle(self.shutdown_timeout)
        if self.mcp_bridge is not None:
            await self.mcp_bridge.stop()
        forwarder.close()
        provisioner.unregister()


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "jupyter_sandbox.server_extension", "app": SandboxExtension}]
