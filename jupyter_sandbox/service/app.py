"""`jupyter sandbox service`: the one process that holds the container engine, for many users.

Users' Jupyter servers and kernels reach it with their user's token (auth.py); it serves the sandbox
API (the server extension's routes and handlers, `api_routes`, each request with the operations of
the user who sent it: users.py) and the preview gateway on the previews' own origins. Nothing else:
no contents, kernels, terminals or pages of this machine exist here, and every other path is a JSON
404. Housekeeping (reconciliation, idle stop, warm pools) runs in one loop for all users.

A plain tornado application, not a Jupyter server: the handlers are jupyter_server's APIHandler, fed
the identity provider and authorizer of auth.py, and there is nothing of a Jupyter server to switch off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from jupyter_core.paths import jupyter_config_path
from tornado import httpserver, netutil, web
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Float, Int, TraitError, Unicode, validate
from traitlets.config import Application

from .. import __version__
from ..config import CONFIG_FILE_NAME
from ..sandbox import binding
from ..sandbox.backend import Backend
from ..sandbox.docker_backend import DockerBackend
from ..sandbox.operations import SandboxService
from ..server_extension import preview
from ..server_extension.handlers import api_routes
from .auth import CannotStart, SandboxOnlyAuthorizer, ServiceIdentityProvider, refusal_of
from .users import OwnersManager, UserSandboxes

# The engines the service can place sandboxes on: c.SandboxServiceApp.backend names one. Each factory
# gets the app (for its configuration) and returns the Backend every user's manager shares.
BACKENDS: dict[str, Callable[[SandboxServiceApp], Backend]] = {
    "docker": lambda app: DockerBackend(),
}
# Who owns the preview gateway's lookups: it finds a sandbox by the id in a signed preview link,
# whoever's it is (the link's token is the credential), and makes nothing.
PREVIEW_OWNER = "hub-previews"


class OnlyTheAPI(web.RequestHandler):
    """Every path that is neither the sandbox API nor a preview: a JSON 404, for every method."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {
                    "message": "the sandbox service serves only /sandbox/api/... (GET /sandbox/api/openapi.json) and previews"
                }
            )
        )


class SandboxServiceApp(Application):
    name = "jupyter-sandbox-service"
    description = (
        "The sandbox service: the one process that holds the container engine. Users' Jupyter servers and "
        "kernels use its REST API (/sandbox/api/...) with their user's token; each user sees only their own "
        "sandboxes."
    )
    version = __version__
    # A config file the operator named that does not load is an error, not a warning in the log.
    raise_config_file_errors = True

    ip = Unicode("127.0.0.1", config=True, help="Address to listen on ('0.0.0.0' for every interface).")
    port = Int(8765, config=True, help="Port to listen on (0: any free port, said in the ready line).")
    tokens_file = Unicode(
        "",
        config=True,
        help=(
            'JSON file {"<token>": "<user name>"} of the users who may call the service without a hub. '
            "It must be readable by its owner only (chmod 600); it is read again when it changes."
        ),
    )
    backend = Unicode(
        "docker",
        config=True,
        help="Where sandboxes run: 'docker' (this machine's engine, $DOCKER_HOST). The names are BACKENDS' keys.",
    )
    config_file = Unicode(
        "", config=True, help="A config file (.py or .json) read after jupyter_sandbox_config from the Jupyter paths."
    )
    path_form_previews = Bool(
        False,
        config=True,
        help=(
            "Also serve previews at /sandbox/preview/{sandbox_id}/{port}/ on the service's address. Off: "
            "previews have their own origins only (SandboxService.preview_url_template)."
        ),
    )
    warm_pools = Bool(
        False,
        config=True,
        help=(
            "Keep a warm pool (SandboxManager.warm_pool_size started sandboxes) for each user who used the "
            "service since it started. A pool is per user (a sandbox's owner is fixed when it is made), so "
            "it costs warm_pool_size sandboxes per active user; off by default."
        ),
    )
    shutdown_timeout = Float(10.0, config=True, help="Seconds a stop waits for requests under way before it ends.")

    aliases = {
        "ip": "SandboxServiceApp.ip",
        "port": "SandboxServiceApp.port",
        "tokens-file": "SandboxServiceApp.tokens_file",
        "backend": "SandboxServiceApp.backend",
        "config": "SandboxServiceApp.config_file",
        "log-level": "Application.log_level",
    }

    def _log_level_default(self) -> int:
        return logging.INFO

    def _log_format_default(self) -> str:
        return "[%(name)s %(asctime)s %(levelname)s] %(message)s"

    @validate("port")
    def _valid_port(self, proposal: Any) -> int:
        port = proposal["value"]
        if not 0 <= port <= 65535:
            raise TraitError(f"--port must be from 1 to 65535 (0: any free port), not {port}")
        return int(port)

    @validate("backend")
    def _valid_backend(self, proposal: Any) -> str:
        if proposal["value"] not in BACKENDS:
            raise TraitError(f"backend must be one of {', '.join(sorted(BACKENDS))}, not {proposal['value']!r}")
        return str(proposal["value"])

    def initialize(self, argv: Sequence[str] | None = None) -> None:
        self.parse_command_line(list(argv) if argv is not None else None)
        # The operator's usual file first; the command line keeps precedence over both.
        try:
            self.load_config_file(CONFIG_FILE_NAME, path=list(reversed(jupyter_config_path())))
        except Exception as exc:
            raise CannotStart(f"the operator's {CONFIG_FILE_NAME} cannot be read: {exc}") from None
        if self.config_file:
            path = Path(self.config_file)
            if not path.is_file() or path.suffix not in (".py", ".json"):
                raise CannotStart(f"the config file {path} does not exist or is not a .py or .json file")
            try:
                self.load_config_file(path.name, path=str(path.parent.resolve()))
            except Exception as exc:  # a syntax error, bad JSON: the operator's to fix, said in one line
                raise CannotStart(f"the config file {path} cannot be read: {exc}") from None
        # Refused now, not at the first request: the tokens file's permissions and content.
        self.identity = ServiceIdentityProvider(parent=self, tokens_file=self.tokens_file)

    def start(self) -> None:
        asyncio.run(self.serve())

    def _bind(self) -> list[socket.socket]:
        try:
            return netutil.bind_sockets(self.port, self.ip)
        except (OSError, ValueError) as exc:
            raise CannotStart(
                f"cannot listen on {self.ip}:{self.port}: {getattr(exc, 'strerror', None) or exc}"
            ) from None

    def _route_tornado_logs(self) -> None:
        """Tornado's request and error logs in this app's log (the handlers log through them)."""
        for name in ("tornado.access", "tornado.application", "tornado.general"):
            logger = logging.getLogger(name)
            logger.handlers = list(self.log.handlers)
            logger.propagate = False
            logger.setLevel(self.log.getEffectiveLevel())

    async def serve(self) -> None:
        sockets = self._bind()
        self._route_tornado_logs()
        port = sockets[0].getsockname()[1]
        backend = BACKENDS[self.backend](self)
        server_id = binding.new_server_id()
        lease = binding.ServerLease(server_id)
        lease.acquire()
        knobs = SandboxService(config=self.config)
        users = UserSandboxes(
            backend,
            self.config,
            self.log,
            server_id,
            port,
            knobs.preview_url_template,
            self.path_form_previews,
        )
        settings: dict[str, Any] = {
            "base_url": "/",
            "identity_provider": self.identity,
            "authorizer": SandboxOnlyAuthorizer(parent=self, identity_provider=self.identity),
            # Callers are other machines' servers; the token header is the whole of authentication.
            "allow_remote_access": True,
            # The handlers refuse unauthenticated requests themselves, with words that say what to send.
            "allow_unauthenticated_access": True,
            # No cookies are ever read: there is no ambient credential for a forged request to ride on.
            "disable_check_xsrf": True,
            "jupyter_sandbox_refusal": refusal_of,
            "default_handler_class": OnlyTheAPI,
            "websocket_max_message_size": 16 * 1024 * 1024,
        }
        web_app = web.Application(api_routes("/", users), **settings)
        previews = OwnersManager(users, backend=backend, config=self.config, log=self.log, owner=PREVIEW_OWNER)
        preview.install(web_app, previews, self.log, knobs.preview_url_template, "/", path_form=self.path_form_previews)
        server = httpserver.HTTPServer(web_app, xheaders=False)
        server.add_sockets(sockets)

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        tasks: set[asyncio.Future] = set()

        def spawn(job: Callable[[], Any]) -> None:
            if users.stopping:
                return
            task = asyncio.ensure_future(job())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        timers = []
        if knobs.reap_interval > 0:
            loop.call_later(1.0, spawn, users.housekeep)  # at start: what a previous run left is found
            timers.append(PeriodicCallback(lambda: spawn(users.housekeep), knobs.reap_interval * 1000))
        if self.warm_pools and knobs.pool_interval > 0:
            timers.append(PeriodicCallback(lambda: spawn(users.fill_pools), knobs.pool_interval * 1000))
        for timer in timers:
            timer.start()

        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        self.log.info(
            "jupyter-sandbox service ready at http://%s:%d/sandbox/api (users from: %s; engine: %s; previews at %s)",
            host,
            port,
            ", ".join(self.identity.sources),
            self.backend,
            knobs.preview_url_template.replace("{server_port}", str(port)),
        )
        await stop.wait()
        self.log.info("jupyter-sandbox service stopping (sandboxes are kept)")
        users.stop()
        for timer in timers:
            timer.stop()
        server.stop()
        for task in list(tasks):
            task.cancel()
        try:
            await asyncio.wait_for(server.close_all_connections(), self.shutdown_timeout)
        except asyncio.TimeoutError:
            self.log.warning("jupyter-sandbox service: connections still open after %.0f s", self.shutdown_timeout)
        lease.release(forget=True)
        self.log.info("jupyter-sandbox service stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """`jupyter sandbox service ...`: 0 after a clean stop, 2 for a configuration it cannot run with."""
    app = SandboxServiceApp()
    try:
        app.initialize(argv)
    except (CannotStart, TraitError, ValueError) as exc:
        print(f"jupyter sandbox service: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # traitlets' own refusal of a command line (it said why), or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        app.start()
    except CannotStart as exc:
        print(f"jupyter sandbox service: {exc}", file=sys.stderr)
        return 2
    return 0
