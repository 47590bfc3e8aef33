"""`%sandbox desktop [start|stop|status]`: this notebook's sandbox's virtual desktop, and its live view.

Runs in the proxy kernel on the host, through the operations layer. The live view is the noVNC page
of the desktop through a preview link (the preview proxy's token, the preview's own origin): opened
from the cell's output, it shows the desktop and takes mouse and keyboard.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..sandbox import desktop as desktop_checks
from ..sandbox.docker_backend import SandboxError
from ..sandbox.operations import preview_link

if TYPE_CHECKING:
    from .magics import MagicContext, MagicResult


def desktop(args: list[str], ctx: MagicContext) -> MagicResult:
    from .magics import PREVIEW_TEMPLATE_ENV, MagicResult, _Parser

    parser = _Parser(
        ctx.write,
        prog="%sandbox desktop",
        description="The sandbox's virtual desktop (an image built with `jupyter sandbox image build --desktop`): "
        "start it, stop it, or show its state and a link to its live view (noVNC) in the browser.",
    )
    parser.add_argument("action", nargs="?", default="start", choices=["start", "stop", "status"])
    parser.add_argument("--size", default=None, help="the screen's size when starting, e.g. 1280x800")
    options = parser.parse_args(args)
    if ctx.sandbox is None or not ctx.sandbox.running:
        raise SandboxError("the sandbox is not running; run a cell to start it")
    sandbox_id = ctx.sandbox.id
    if options.action == "stop":
        ctx.access.desktop(ctx.sandbox, "stop", {})
        ctx.write("stdout", f"the desktop of sandbox {sandbox_id} is stopped\n")
        return MagicResult()
    body: dict[str, Any] = {}
    if options.size:
        width, _, height = options.size.lower().partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise SandboxError("--size is WIDTHxHEIGHT, e.g. 1280x800")
        body = {"width": int(width), "height": int(height)}
    status = ctx.access.desktop(ctx.sandbox, options.action, body)
    lines = [f"desktop of sandbox {sandbox_id}: {status['status']} ({status.get('width')}x{status.get('height')})"]
    template = os.environ.get(PREVIEW_TEMPLATE_ENV)
    view: dict[str, Any] = status["vnc"] if isinstance(status.get("vnc"), dict) else {}
    if status["status"] == "active" and ctx.access.hub and isinstance(view.get("novnc_url"), str):
        # The service serves previews and signs their tokens: the live view's link is its own.
        lines.append(f"  live view (noVNC, valid for an hour): {view['novnc_url']}")
    elif status["status"] == "active" and template and not ctx.access.hub:
        link = preview_link(template, sandbox_id, desktop_checks.NOVNC_PORT, 3600)
        lines.append(f"  live view (noVNC, valid for an hour): {desktop_checks.novnc_url(link.browser_url)}")
    elif status["status"] == "active":
        lines.append("  live view: start this kernel from a Jupyter server with the jupyter-sandbox extension")
    ctx.write("stdout", "\n".join(lines) + "\n")
    return MagicResult()
