"""`jupyter sandbox mcp [serve|approve ID|pending]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from traitlets.config import Config

from ..config import load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter sandbox mcp", description="An MCP server (stdio) for sandboxes on a Jupyter server."
    )
    parser.add_argument("action", nargs="?", default="serve", choices=["serve", "approve", "pending"])
    parser.add_argument("request_id", nargs="?", help="with approve: the id a 'needs approval' answer gave")
    parser.add_argument("--url", default=None, help="the Jupyter server (default: JUPYTER_SANDBOX_URL, ...)")
    parser.add_argument("--token", default=None, help="its token (default: JUPYTER_SANDBOX_TOKEN, ...)")
    parser.add_argument(
        "--require-approval", default=None, help="comma-separated tools that need the operator's approval"
    )
    parser.add_argument("--audit-dir", default=None, help="folder of the audit log")
    parser.add_argument("--approvals-dir", default=None, help="folder of approval requests")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    extra = Config()
    if args.require_approval is not None:
        extra.SandboxMCP.require_approval = [t.strip() for t in args.require_approval.split(",") if t.strip()]
    if args.audit_dir:
        extra.SandboxMCP.audit_dir = args.audit_dir
    if args.approvals_dir:
        extra.SandboxMCP.approvals_dir = args.approvals_dir
    from .audit import Approvals, default_approvals_dir
    from .server import SandboxMCP

    settings = SandboxMCP(config=load_config(extra))
    approvals = Approvals(Path(settings.approvals_dir) if settings.approvals_dir else default_approvals_dir())
    if args.action == "approve":
        try:
            record = approvals.approve(args.request_id or "")
        except ValueError as exc:
            print(f"jupyter sandbox mcp: {exc}", file=sys.stderr)
            return 1
        print(f"approved {args.request_id}: {record['tool']} {json.dumps(record['arguments'])}")
        return 0
    if args.action == "pending":
        for request in approvals.pending():
            print(f"{request['id']} {request['tool']} {json.dumps(request['arguments'])}")
        return 0
    import anyio

    from ..client import SandboxError
    from ..client.connection import ServerAddress
    from .server import build_server

    try:
        address = ServerAddress.resolve(args.url, args.token)
        server, tools = build_server(settings, address)
    except (SandboxError, ValueError) as exc:
        print(f"jupyter sandbox mcp: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await tools.close()

    anyio.run(serve)
    return 0
