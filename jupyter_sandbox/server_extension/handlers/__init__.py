"""REST handlers under /sandbox/api, one module per resource. Each is thin: it parses the request,
calls one method of the operations layer (sandbox/operations.py), and answers JSON.

Every handler is `@web.authenticated` and `@authorized`; POST, PUT, PATCH and DELETE go through
Jupyter Server's XSRF check; the terminal websocket authenticates before it upgrades. Domain errors
become HTTP statuses in base.py, and only there.

The same routes and handlers serve the sandbox service (jupyter_sandbox/service/), where a handler
finds the operations of the user its token names (base.ServedOperations) and no cookie is read, so
there is no XSRF to check.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join

from .base import SANDBOX_ID, STATUS_OF, SandboxAPIHandler, Served, status_of
from .desktop import desktop_routes
from .fallback import NotFoundHandler
from .files import FileContentHandler, FileInfoHandler, FileOperationHandler, FilesHandler, MultipartUploadHandler
from .git import GIT_OPERATION, GitHandler
from .kernels import KERNEL_ID, KernelActionHandler, KernelChannelsHandler, KernelEventsHandler, KernelSandboxHandler
from .lend import SandboxLendHandler
from .network import SECRET_NAME, NetworkHandler, NetworkLogHandler, SecretHandler, SecretsHandler
from .notebooks import NotebookEventsHandler
from .openapi import OpenAPIHandler
from .previews import PreviewsHandler
from .processes import (
    COMMAND_ID,
    SESSION_ID,
    CommandActionHandler,
    CommandsHandler,
    ExecHandler,
    LogsHandler,
    SessionHandler,
    SessionsHandler,
)
from .ptys import (
    PTY_ID,
    PtyConnectHandler,
    PtyInputHandler,
    PtyItemHandler,
    PtyOutputHandler,
    PtyResizeHandler,
    PtysHandler,
)
from .sandboxes import PortsHandler, SandboxActionHandler, SandboxesHandler, SandboxHandler, SandboxKernelHandler
from .ssh import SSHAccessHandler
from .terminals import PtyHandler

__all__ = ["STATUS_OF", "SandboxAPIHandler", "api_routes", "status_of"]


def api_routes(base_url: str, service: Served) -> list[tuple[str, type, dict[str, Any]]]:
    api = url_path_join(base_url, "sandbox", "api")
    box = f"{api}/sandboxes/{SANDBOX_ID}"
    args = {"service": service}
    routes = [
        (f"{api}/sandboxes", SandboxesHandler),
        (box, SandboxHandler),
        (f"{box}/(?P<action>start|stop|restart)", SandboxActionHandler),
        (f"{box}/kernel", SandboxKernelHandler),
        (f"{box}/kernel/events", KernelEventsHandler),
        (f"{box}/kernel/(?P<action>interrupt|restart|activity)", KernelActionHandler),
        (f"{box}/kernel/channels", KernelChannelsHandler),
        (f"{box}/lend", SandboxLendHandler),
        (f"{api}/kernels/{KERNEL_ID}/sandbox", KernelSandboxHandler),
        (f"{box}/files", FilesHandler),
        (f"{box}/files/info", FileInfoHandler),
        (f"{box}/files/content", FileContentHandler),
        (f"{box}/files/upload", MultipartUploadHandler),
        (f"{box}/files/(?P<operation>folder|move|permissions|replace)", FileOperationHandler),
        (f"{box}/files/(?P<operation>search|find)", FileOperationHandler),
        (f"{box}/process/exec", ExecHandler),
        (f"{box}/sessions", SessionsHandler),
        (f"{box}/sessions/{SESSION_ID}", SessionHandler),
        (f"{box}/sessions/{SESSION_ID}/commands", CommandsHandler),
        (f"{box}/sessions/{SESSION_ID}/commands/{COMMAND_ID}/logs", LogsHandler),
        (f"{box}/sessions/{SESSION_ID}/commands/{COMMAND_ID}/(?P<action>input|kill)", CommandActionHandler),
        (f"{box}/pty", PtyHandler),
        (f"{box}/ptys", PtysHandler),
        (f"{box}/ptys/{PTY_ID}", PtyItemHandler),
        (f"{box}/ptys/{PTY_ID}/resize", PtyResizeHandler),
        (f"{box}/ptys/{PTY_ID}/connect", PtyConnectHandler),
        (f"{box}/ptys/{PTY_ID}/input", PtyInputHandler),
        (f"{box}/ptys/{PTY_ID}/output", PtyOutputHandler),
        (f"{box}/git/{GIT_OPERATION}", GitHandler),
        (f"{box}/previews", PreviewsHandler),
        (f"{box}/ports", PortsHandler),
        (f"{box}/ssh", SSHAccessHandler),
        (f"{box}/network", NetworkHandler),
        (f"{box}/network/log", NetworkLogHandler),
        (f"{box}/secrets", SecretsHandler),
        (f"{box}/secrets/{SECRET_NAME}", SecretHandler),
        *desktop_routes(box),
        (f"{api}/notebooks/events", NotebookEventsHandler),
        (f"{api}/openapi.json", OpenAPIHandler),
    ]
    # Last: whatever path under the API no route above takes gets a JSON 404.
    routes.append((f"{api}/(?P<rest>.*)", NotFoundHandler))
    return [(pattern, handler, args) for pattern, handler in routes]
