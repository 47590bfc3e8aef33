"""The MCP tools of computer use: a sandbox's virtual desktop (the desktop image), through the SDK's
`computer_use`. Screenshots come back as image content, so a model sees the screen."""

from __future__ import annotations

import base64
from typing import Any

COMPUTER_TOOL_NAMES = (
    "desktop_start",
    "desktop_screenshot",
    "desktop_mouse",
    "desktop_keyboard",
    "desktop_windows",
)

COMPUTER_DESCRIPTIONS = {
    "desktop_start": "Start the virtual desktop of a sandbox made from the desktop image (jupyter-sandbox/desktop); "
    "returns its size and a link to its live VNC view.",
    "desktop_screenshot": "A screenshot of a sandbox's desktop, as an image: format png or jpeg (quality 1-100), "
    "scale 0.1-1, an optional region x, y, width, height, show_cursor to draw the pointer.",
    "desktop_mouse": "Use the mouse on a sandbox's desktop: action move (x, y), click (x, y, button left|middle|right, "
    "count), drag (start_x, start_y, end_x, end_y, button) or scroll (x, y, direction up|down|left|right, amount). "
    "Returns the pointer's position.",
    "desktop_keyboard": "Use the keyboard on a sandbox's desktop: action type (text), press (key such as Enter or "
    "F5, with modifiers ctrl|alt|shift|super) or hotkey (keys such as ctrl+shift+t).",
    "desktop_windows": "List the windows on a sandbox's desktop (id, title, place, size, active); with focus_id, "
    "bring that window to the front first.",
}


class ComputerTools:
    """Mixed into the MCP server's Tools: `sandbox(id)` gives the SDK's AsyncSandbox."""

    async def sandbox(self, sandbox_id: str) -> Any:
        raise NotImplementedError

    async def desktop_start(self, sandbox_id: str) -> str:
        box = await self.sandbox(sandbox_id)
        status = await box.computer_use.start()
        vnc = (status.get("vnc") or {}).get("novnc_url")
        return f"desktop {status.get('status')} at {status.get('width')}x{status.get('height')}" + (
            f"\nlive view (noVNC, token in the link): {vnc}" if vnc else ""
        )

    async def desktop_screenshot(
        self,
        sandbox_id: str,
        format: str = "png",
        quality: int | None = None,
        scale: float | None = None,
        x: int | None = None,
        y: int | None = None,
        width: int | None = None,
        height: int | None = None,
        show_cursor: bool = False,
    ) -> list[Any]:
        from mcp.types import ImageContent

        box = await self.sandbox(sandbox_id)
        region = None if x is None and y is None and width is None and height is None else (x, y, width, height)
        shot = await box.computer_use.screenshot.take(
            format=format, quality=quality, scale=scale, region=region, show_cursor=show_cursor
        )
        return [ImageContent(type="image", data=base64.b64encode(shot.data).decode(), mime_type=shot.content_type)]

    async def desktop_mouse(
        self,
        sandbox_id: str,
        action: str,
        x: int | None = None,
        y: int | None = None,
        button: str = "left",
        count: int | None = None,
        start_x: int | None = None,
        start_y: int | None = None,
        end_x: int | None = None,
        end_y: int | None = None,
        direction: str = "down",
        amount: int = 1,
    ) -> str:
        mouse = (await self.sandbox(sandbox_id)).computer_use.mouse
        if action == "move":
            where = await mouse.move(x, y)
        elif action == "click":
            where = await mouse.click(x, y, button=button, count=count)
        elif action == "drag":
            where = await mouse.drag(start_x, start_y, end_x, end_y, button=button)
        elif action == "scroll":
            where = await mouse.scroll(x, y, direction=direction, amount=amount)
        else:
            return "action must be move, click, drag or scroll"
        return f"pointer at {where.get('x')},{where.get('y')}"

    async def desktop_keyboard(
        self,
        sandbox_id: str,
        action: str,
        text: str | None = None,
        key: str | None = None,
        modifiers: list[str] | None = None,
        keys: str | None = None,
    ) -> str:
        keyboard = (await self.sandbox(sandbox_id)).computer_use.keyboard
        if action == "type":
            answer = await keyboard.type(text or "")
            return f"typed {answer.get('typed')} characters"
        if action == "press":
            answer = await keyboard.press(key or "", modifiers)
        elif action == "hotkey":
            answer = await keyboard.hotkey(keys or "")
        else:
            return "action must be type, press or hotkey"
        return f"pressed {answer.get('keys')}"

    async def desktop_windows(self, sandbox_id: str, focus_id: int | None = None) -> str:
        display = (await self.sandbox(sandbox_id)).computer_use.display
        if focus_id is not None:
            await display.focus(focus_id)
        windows = await display.get_windows()
        lines = [
            f"{w['id']} {'*' if w.get('active') else ' '} {w.get('width')}x{w.get('height')}+{w.get('x')}+{w.get('y')} "
            f"{w.get('title', '')}"
            for w in windows
        ]
        return "\n".join(lines) or "no windows"
