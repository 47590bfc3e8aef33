"""A LangChain Deep Agents sandbox backend on a jupyter-sandbox sandbox.

    from deepagents import create_deep_agent
    from jupyter_sandbox.adapters.deepagents import JupyterSandboxBackend

    backend = JupyterSandboxBackend.create(url=..., token=...)   # or JupyterSandboxBackend(Sandbox.get(id))
    agent = create_deep_agent(model=..., backend=backend)

Deep Agents' `BaseSandbox` builds its file tools (ls, read, write, edit, grep, glob) on three
primitives, given here by the SDK: a shell command (`execute`), and batch upload and download, which
report failures per file with the protocol's error codes instead of raising.
"""

from __future__ import annotations

from typing import Any

from deepagents.backends.protocol import ExecuteResponse, FileDownloadResponse, FileOperationError, FileUploadResponse
from deepagents.backends.sandbox import BaseSandbox

from ..client import Sandbox
from ..client.errors import AuthenticationFailed, NotFound, SandboxError

DEFAULT_TIMEOUT = 300
MAX_TIMEOUT = 3600


def _error_code(exc: SandboxError) -> FileOperationError:
    """A failure of one file as one of the protocol's error codes (it has no other kind)."""
    message = exc.message.lower()
    if "is a directory" in message or "is a folder" in message or "not a file" in message:
        return "is_directory"
    if isinstance(exc, AuthenticationFailed) or "permission denied" in message or "not allowed" in message:
        return "permission_denied"
    if isinstance(exc, NotFound):
        return "file_not_found"
    # A bad path, or a failure the protocol has no code for (a full disk, an agent that did not
    # answer): the agent is told the path cannot be used as it is.
    return "invalid_path"


class JupyterSandboxBackend(BaseSandbox):
    """A Deep Agents sandbox backend: commands and files of one jupyter-sandbox sandbox."""

    def __init__(self, sandbox: Any, default_timeout: int = DEFAULT_TIMEOUT, owns: bool = False) -> None:
        self.sandbox = sandbox
        self.default_timeout = default_timeout
        self._owns = owns

    @classmethod
    def create(cls, **kwargs: Any) -> JupyterSandboxBackend:
        """A new sandbox (Sandbox.create's arguments), deleted by `delete()`."""
        return cls(Sandbox.create(**kwargs), owns=True)

    @property
    def id(self) -> str:
        return str(self.sandbox.id)

    def execute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        limit = min(timeout or self.default_timeout, MAX_TIMEOUT)
        try:
            result = self.sandbox.process.exec(command, timeout=limit)
        except SandboxError as exc:
            return ExecuteResponse(output=f"error: {exc.message}", exit_code=1, truncated=False)
        output = result.stdout + result.stderr
        if result.timed_out:
            output += f"\n[the command was stopped after {limit} seconds]"
        return ExecuteResponse(output=output, exit_code=result.exit_code, truncated=False)

    def upload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        answers = []
        for path, content in files:
            if not path.startswith("/"):
                answers.append(FileUploadResponse(path=path, error="invalid_path"))
                continue
            try:
                self.sandbox.fs.upload(path, content)
            except SandboxError as exc:
                answers.append(FileUploadResponse(path=path, error=_error_code(exc)))
            else:
                answers.append(FileUploadResponse(path=path, error=None))
        return answers

    def download_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        answers = []
        for path in paths:
            if not path.startswith("/"):
                answers.append(FileDownloadResponse(path=path, content=None, error="invalid_path"))
                continue
            try:
                # A folder would come back as an archive: the protocol wants a file's bytes only.
                if self.sandbox.fs.info(path).type == "directory":
                    answers.append(FileDownloadResponse(path=path, content=None, error="is_directory"))
                    continue
                content = self.sandbox.fs.download(path)
            except SandboxError as exc:
                answers.append(FileDownloadResponse(path=path, content=None, error=_error_code(exc)))
            else:
                answers.append(FileDownloadResponse(path=path, content=content, error=None))
        return answers

    def delete(self) -> None:
        """Delete the sandbox (when this backend made it) and let go of the connection."""
        if self._owns:
            self.sandbox.delete()
        self.sandbox.close()
