"""Computer use: the sandbox's virtual desktop (start, stop, screenshot, mouse, keyboard, display, windows).

The routes follow Daytona's computer-use API: `mouse/{move,click,drag,scroll}` and
`keyboard/{type,press,hotkey}`, and the same operations as `POST .../mouse` and `POST .../keyboard`
with the action in the body. A screenshot answers the image itself (PNG or JPEG).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import SandboxAPIHandler

MOUSE_ACTION = r"(?P<action>move|click|drag|scroll)"
KEYBOARD_ACTION = r"(?P<action>type|press|hotkey)"
SCREENSHOT_QUERY = ("format", "quality", "scale", "x", "y", "width", "height", "cursor")


class DesktopHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.desktop_status(sandbox_id))


class DesktopActionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, action: str) -> None:
        if action == "start":
            self.reply(await self.service.desktop_start(sandbox_id, self.json_body()))
        else:
            self.reply(await self.service.desktop_stop(sandbox_id))


class ScreenshotHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        options = {name: self.query(name) for name in SCREENSHOT_QUERY}
        data, content_type = await self.service.desktop_screenshot(sandbox_id, options)
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        # Written and flushed first: APIHandler.finish() sets a JSON type on headers not yet sent.
        self.write(data)
        await self.flush()
        self.finish()


def _action(body: dict[str, Any]) -> Any:
    return body.pop("action", None)


class MouseHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.desktop_pointer(sandbox_id))

    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        body = self.json_body()
        self.reply(await self.service.desktop_mouse(sandbox_id, _action(body), body))


class MouseActionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, action: str) -> None:
        self.reply(await self.service.desktop_mouse(sandbox_id, action, self.json_body()))


class KeyboardHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        body = self.json_body()
        self.reply(await self.service.desktop_keyboard(sandbox_id, _action(body), body))


class KeyboardActionHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str, action: str) -> None:
        self.reply(await self.service.desktop_keyboard(sandbox_id, action, self.json_body()))


class DisplayHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.desktop_display(sandbox_id))


class WindowsHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, sandbox_id: str) -> None:
        self.reply(await self.service.desktop_windows(sandbox_id))


class FocusHandler(SandboxAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, sandbox_id: str) -> None:
        self.reply(await self.service.desktop_focus(sandbox_id, self.json_body().get("id")))


def desktop_routes(box: str) -> list[tuple[str, type]]:
    return [
        (f"{box}/desktop", DesktopHandler),
        (f"{box}/desktop/(?P<action>start|stop)", DesktopActionHandler),
        (f"{box}/desktop/screenshot", ScreenshotHandler),
        (f"{box}/desktop/mouse", MouseHandler),
        (f"{box}/desktop/mouse/{MOUSE_ACTION}", MouseActionHandler),
        (f"{box}/desktop/keyboard", KeyboardHandler),
        (f"{box}/desktop/keyboard/{KEYBOARD_ACTION}", KeyboardActionHandler),
        (f"{box}/desktop/display", DisplayHandler),
        (f"{box}/desktop/windows", WindowsHandler),
        (f"{box}/desktop/windows/focus", FocusHandler),
    ]
