"""The agent's /desktop routes: the virtual desktop (desktop.py) over HTTP, each call off the event loop."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from tornado import web

from .desktop import DESKTOP, DesktopError
from .server import AgentHandler, json_body

SCREENSHOT_OPTIONS = {"x": int, "y": int, "width": int, "height": int, "quality": int, "scale": float}


class DesktopHandler(AgentHandler):
    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, function, *args)
        except DesktopError as exc:
            raise web.HTTPError(exc.status, str(exc).replace("%", "%%")) from None

    async def get(self, what: str) -> None:
        if what == "status":
            self.write_json(await self.run(DESKTOP.status))
        elif what == "display":
            self.write_json(await self.run(DESKTOP.display))
        elif what == "windows":
            self.write_json(await self.run(DESKTOP.windows))
        elif what == "mouse":
            self.write_json(await self.run(DESKTOP.position))
        elif what == "screenshot":
            data, content_type, size = await self.run(DESKTOP.screenshot, self._screenshot_options())
            self.set_header("Content-Type", content_type)
            self.set_header("X-Screenshot-Size", f"{size['width']}x{size['height']}")
            self.finish(data)
        else:
            raise web.HTTPError(404, f"unknown desktop resource {what!r}")

    def _screenshot_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for name, kind in SCREENSHOT_OPTIONS.items():
            raw = self.get_query_argument(name, None)
            if raw is None:
                continue
            try:
                options[name] = kind(raw)
            except ValueError:
                raise web.HTTPError(400, f"{name} must be a number") from None
        options["format"] = self.get_query_argument("format", "png")
        options["cursor"] = self.get_query_argument("cursor", "0") in ("1", "true")
        return options

    async def post(self, what: str, action: str = "") -> None:
        body = json_body(self)
        if what == "start":
            self.write_json(await self.run(DESKTOP.start, body.get("width"), body.get("height")))
        elif what == "stop":
            self.write_json(await self.run(DESKTOP.stop))
        elif what == "mouse":
            self.write_json(await self.run(DESKTOP.mouse, action, body))
        elif what == "keyboard":
            self.write_json(await self.run(DESKTOP.keyboard, action, body))
        elif what == "windows" and action == "focus":
            self.write_json(await self.run(DESKTOP.focus, body.get("id")))
        else:
            raise web.HTTPError(404, f"unknown desktop operation {json.dumps(what)}")


def desktop_routes(args: dict[str, Any]) -> list[tuple[str, type, dict[str, Any]]]:
    return [
        (r"/desktop/(status|display|windows|mouse|screenshot|start|stop)", DesktopHandler, args),
        (r"/desktop/(mouse|keyboard|windows)/(\w+)", DesktopHandler, args),
    ]
