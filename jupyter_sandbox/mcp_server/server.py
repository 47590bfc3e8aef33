"""The MCP tools. Each is a thin call of the SDK (jupyter_sandbox.client), so an agent has exactly
the powers of a REST client with the server's token: the server's validation and the operator's
maxima apply to every call. Every call is written to the audit log; a tool the operator listed in
require_approval runs only with an approval the operator gave (audit.py)."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Callable

from traitlets import Int, List, Unicode
from traitlets.config import Configurable

from ..client import AsyncSandbox, Execution, SandboxError
from ..client.connection import ServerAddress, Transport
from .audit import Approvals, AuditLog, default_approvals_dir, default_audit_dir
from .computer import COMPUTER_DESCRIPTIONS, COMPUTER_TOOL_NAMES, ComputerTools

log = logging.getLogger("jupyter_sandbox.mcp")

TOOL_NAMES = (
    "create_sandbox",
    "list_sandboxes",
    "delete_sandbox",
    "run_code",
    "run_command",
    "read_file",
    "write_file",
    "list_files",
    "search_files",
    "preview_link",
    "set_network",
    *COMPUTER_TOOL_NAMES,
)


class SandboxMCP(Configurable):
    """Operator settings of `jupyter sandbox mcp`."""

    require_approval = List(
        Unicode(),
        default_value=[],
        config=True,
        help=(
            "Tools that run only once the operator approved the call: the first call answers 'needs "
            "approval' with an id, `jupyter sandbox mcp approve ID` approves it, and the same call with "
            f"approval_id=ID runs once. Tools: {', '.join(TOOL_NAMES)}."
        ),
    )
    audit_dir = Unicode(
        "",
        config=True,
        help="Folder of the audit log, one JSON-lines file per sandbox. Default: mcp-audit in the host state folder.",
    )
    approvals_dir = Unicode(
        "", config=True, help="Folder of approval requests. Default: mcp-approvals in the host state folder."
    )
    max_output_chars = Int(
        100_000, config=True, help="Text of one tool answer beyond this many characters is cut (the agent is told)."
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit:,} more characters cut]"


def execution_content(run: Execution, limit: int) -> list[Any]:
    """A cell's outputs as MCP content: text blocks and image blocks."""
    from mcp.types import ImageContent, TextContent

    blocks: list[Any] = []
    if run.stdout:
        blocks.append(TextContent(type="text", text=_cut(run.stdout, limit)))
    if run.stderr:
        blocks.append(TextContent(type="text", text="[stderr]\n" + _cut(run.stderr, limit)))
    for output in run.outputs:
        for mime in ("image/png", "image/jpeg"):
            if isinstance(output.data.get(mime), str):
                blocks.append(ImageContent(type="image", data=output.data[mime], mime_type=mime))
                break
        else:
            text = output.text if output.text is not None else output.html
            if text is not None:
                blocks.append(TextContent(type="text", text=_cut(text, limit)))
    if run.error is not None:
        trace = "\n".join(run.error.traceback) or f"{run.error.name}: {run.error.value}"
        blocks.append(TextContent(type="text", text="[error]\n" + _cut(_strip_ansi(trace), limit)))
    if not blocks:
        blocks.append(TextContent(type="text", text="(no output)"))
    return blocks


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


class Tools(ComputerTools):
    """The tool implementations, with the sandboxes they have opened."""

    def __init__(self, settings: SandboxMCP, address: ServerAddress) -> None:
        self.settings = settings
        self.transport = Transport(address)
        self.audit = AuditLog(Path(settings.audit_dir) if settings.audit_dir else default_audit_dir())
        self.approvals = Approvals(Path(settings.approvals_dir) if settings.approvals_dir else default_approvals_dir())
        self.open: dict[str, AsyncSandbox] = {}

    async def sandbox(self, sandbox_id: str) -> AsyncSandbox:
        if sandbox_id not in self.open:
            self.open[sandbox_id] = await AsyncSandbox.get(sandbox_id, transport=self.transport)
        return self.open[sandbox_id]

    async def create_sandbox(
        self,
        with_kernel: bool = True,
        image: str | None = None,
        network_mode: str | None = None,
        cidrs: list[str] | None = None,
    ) -> str:
        network: Any = None
        if network_mode is not None:
            network = {"mode": network_mode, **({"cidrs": cidrs} if cidrs is not None else {})}
        box = await AsyncSandbox.create(
            image=image, language="python" if with_kernel else None, network=network, transport=self.transport
        )
        self.open[box.id] = box
        return f"created sandbox {box.id}" + (" (with a Python kernel for run_code)" if box.kernel_id else "")

    async def list_sandboxes(self) -> str:
        boxes = await AsyncSandbox.list(transport=self.transport)
        if not boxes:
            return "no sandboxes"
        return "\n".join(f"{b.id} {b.state} {b.image}" + (" kernel" if b.kernel_id else "") for b in boxes)

    async def delete_sandbox(self, sandbox_id: str) -> str:
        box = await self.sandbox(sandbox_id)
        await box.delete()
        self.open.pop(sandbox_id, None)
        return f"deleted sandbox {sandbox_id}"

    async def run_code(self, sandbox_id: str, code: str, timeout: float = 300) -> list[Any]:
        box = await self.sandbox(sandbox_id)
        return execution_content(await box.code.run(code, timeout=timeout), self.settings.max_output_chars)

    async def run_command(self, sandbox_id: str, command: str, cwd: str | None = None, timeout: float = 60) -> str:
        box = await self.sandbox(sandbox_id)
        result = await box.process.exec(command, cwd=cwd, timeout=timeout)
        limit = self.settings.max_output_chars
        parts = [f"exit code {result.exit_code}" + (" (timed out)" if result.timed_out else "")]
        if result.stdout:
            parts.append("[stdout]\n" + _cut(result.stdout, limit))
        if result.stderr:
            parts.append("[stderr]\n" + _cut(result.stderr, limit))
        return "\n".join(parts)

    async def read_file(self, sandbox_id: str, path: str) -> str:
        box = await self.sandbox(sandbox_id)
        return _cut(await box.fs.read_text(path), self.settings.max_output_chars)

    async def write_file(self, sandbox_id: str, path: str, content: str) -> str:
        box = await self.sandbox(sandbox_id)
        answer = await box.fs.write_text(path, content)
        return f"wrote {answer.get('size', len(content.encode()))} bytes to {answer.get('path', path)}"

    async def list_files(self, sandbox_id: str, path: str = "", recursive: bool = False) -> str:
        box = await self.sandbox(sandbox_id)
        entries = await box.fs.list(path, recursive)
        lines = [f"{e.type:<9} {e.size:>10} {e.path}" for e in entries]
        return _cut("\n".join(lines) or "(empty)", self.settings.max_output_chars)

    async def search_files(self, sandbox_id: str, pattern: str, path: str = "", content: bool = False) -> str:
        box = await self.sandbox(sandbox_id)
        if content:
            matches = await box.fs.find(pattern, path)
            text = "\n".join(f"{m.file}:{m.line}: {m.content}" for m in matches)
        else:
            text = "\n".join(await box.fs.search(pattern, path))
        return _cut(text or "no matches", self.settings.max_output_chars)

    async def preview_link(self, sandbox_id: str, port: int, expires_in: int = 3600) -> str:
        box = await self.sandbox(sandbox_id)
        preview = await box.preview(port, expires_in)
        return (
            f"url: {preview.url}\nbrowser/script URL (token in the query): {preview.fetch_url}\n"
            f"or send the header {preview.header}: {preview.token}\nexpires: {preview.expires_at}"
        )

    async def set_network(self, sandbox_id: str, mode: str, cidrs: list[str] | None = None) -> str:
        box = await self.sandbox(sandbox_id)
        policy = await box.network.set(mode, cidrs)
        return f"egress policy now: {policy}"

    async def close(self) -> None:
        for box in self.open.values():
            box.code.close()
        await self.transport.close()


DESCRIPTIONS = {
    "create_sandbox": "Create a sandbox (a hardened container). with_kernel=true gives it a Python kernel for "
    "run_code. network_mode: internet (public addresses only), none, or allow (with cidrs). Returns its id.",
    "list_sandboxes": "List your sandboxes: id, state, image.",
    "delete_sandbox": "Delete a sandbox with its files.",
    "run_code": "Run Python code statefully in a sandbox's kernel (variables persist between calls). Returns "
    "printed output, rich results (images as images) and errors with tracebacks.",
    "run_command": "Run a shell command in a sandbox; returns its exit code, stdout and stderr.",
    "read_file": "Read a text file in a sandbox (paths relative to /home/sandbox).",
    "write_file": "Write a text file in a sandbox (created with its folders, replaced if there).",
    "list_files": "List a folder in a sandbox.",
    "search_files": "Find files by name glob (content=false) or lines matching a regular expression (content=true).",
    "preview_link": "Make a link to a web server listening on a port inside a sandbox.",
    "set_network": "Change a sandbox's egress policy live: mode internet, none, or allow with cidrs.",
    **COMPUTER_DESCRIPTIONS,
}


def build_server(settings: SandboxMCP, address: ServerAddress) -> tuple[Any, Tools]:
    """An MCPServer with every tool registered, each wrapped in audit and approval."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import TextContent

    server = MCPServer(
        "jupyter-sandbox",
        instructions="Sandboxes on a Jupyter server: run code and commands, files, previews, egress policy.",
    )
    tools = Tools(settings, address)
    needs_approval = set(settings.require_approval)
    unknown = needs_approval - set(TOOL_NAMES)
    if unknown:
        raise ValueError(f"require_approval names unknown tools: {', '.join(sorted(unknown))}")

    def wrap(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        signature = inspect.signature(method)

        @functools.wraps(method)
        async def tool(**arguments: Any) -> Any:
            approval_id = arguments.pop("approval_id", None)
            sandbox_id = arguments.get("sandbox_id")
            started = time.monotonic()
            if name in needs_approval and not (approval_id and tools.approvals.consume(approval_id, name, arguments)):
                request_id = tools.approvals.request(name, arguments)
                tools.audit.record(name, sandbox_id, arguments, "needs_approval", request_id)
                return [
                    TextContent(
                        type="text",
                        text=f"needs approval: the operator must approve this call (`jupyter sandbox mcp approve "
                        f"{request_id}`); then call {name} again with the same arguments and approval_id="
                        f'"{request_id}".',
                    )
                ]
            try:
                answer = await method(**arguments)
            except SandboxError as exc:
                tools.audit.record(name, sandbox_id, arguments, "error", exc.message, time.monotonic() - started)
                # The agent reads the server's own message as the tool's error.
                raise ToolError(f"{exc.message} (HTTP {exc.status})" if exc.status else exc.message) from None
            tools.audit.record(name, sandbox_id, arguments, "ok", "", time.monotonic() - started)
            if name == "create_sandbox" and isinstance(answer, str):
                new_id = answer.split()[2]
                tools.audit.record(name, new_id, arguments, "ok", "created", time.monotonic() - started)
            return [TextContent(type="text", text=answer)] if isinstance(answer, str) else answer

        parameters = list(signature.parameters.values())
        parameters.append(
            inspect.Parameter("approval_id", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="str | None")
        )
        tool.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        tool.__annotations__ = {**method.__annotations__, "approval_id": "str | None"}
        return tool

    for name in TOOL_NAMES:
        server.tool(name=name, description=DESCRIPTIONS[name], structured_output=False)(
            wrap(name, getattr(tools, name))
        )
    return server, tools
