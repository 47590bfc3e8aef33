"""A Python SDK for jupyter-sandbox: sandboxes, their commands, files, terminals, git, previews,
egress policy and stateful code, driven through a Jupyter server's /sandbox/api and kernels API.

    from jupyter_sandbox.client import Sandbox

    with Sandbox.create(language="python") as sb:
        print(sb.process.exec(["echo", "hi"]).stdout)
        print(sb.code.run("1+1").text)

`AsyncSandbox` is the same with `await`. The server is found from url=/token= arguments, or
JUPYTER_SANDBOX_URL / JUPYTER_SANDBOX_TOKEN, or JUPYTER_SERVER_URL / JUPYTER_TOKEN, or a Jupyter
server running on this machine. The SDK only calls the server's HTTP and websocket API.
"""

from .errors import (
    AuthenticationFailed,
    CodeUnavailable,
    CommandTimeout,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    SandboxError,
    SandboxNotFound,
    SandboxUnavailable,
)
from .models import (
    CodeError,
    Command,
    ExecResult,
    Execution,
    FileEntry,
    GitBranches,
    GitStatus,
    LogChunk,
    Match,
    Output,
    Preview,
    PtyInfo,
    SandboxInfo,
)
from .pty import AsyncPty
from .sandbox import AsyncSandbox
from .sync import Sandbox

__all__ = [
    "AsyncPty",
    "AsyncSandbox",
    "AuthenticationFailed",
    "CodeError",
    "CodeUnavailable",
    "Command",
    "CommandTimeout",
    "Conflict",
    "ConnectionFailed",
    "ExecResult",
    "Execution",
    "FileEntry",
    "GitBranches",
    "GitStatus",
    "InvalidRequest",
    "LimitExceeded",
    "LogChunk",
    "Match",
    "NotFound",
    "Output",
    "PayloadTooLarge",
    "Preview",
    "PtyInfo",
    "Sandbox",
    "SandboxError",
    "SandboxInfo",
    "SandboxNotFound",
    "SandboxUnavailable",
]
