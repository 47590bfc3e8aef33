"""Computer use in the SDK: `sb.computer_use` (also `sb.desktop`), shaped after Daytona's SDK.

    sb.computer_use.start()
    shot = sb.computer_use.screenshot.take_full_screen()          # a Screenshot (PNG bytes; shows in a notebook)
    sb.computer_use.mouse.click(100, 200, button="left", double=True)
    sb.computer_use.keyboard.type("hello")
    sb.computer_use.keyboard.hotkey("ctrl+shift+t")
    sb.computer_use.display.get_windows()

A thin client of the /desktop routes; every check happens on the server.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sandbox import _Part


@dataclass
class Screenshot:
    """A screenshot: its bytes and type. Shown as an image in a notebook; `save(path)` writes it."""

    data: bytes
    content_type: str

    @property
    def format(self) -> str:
        return self.content_type.split("/")[-1]

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_bytes(self.data)
        return target

    def _repr_png_(self) -> bytes | None:
        return self.data if self.content_type == "image/png" else None

    def _repr_jpeg_(self) -> bytes | None:
        return self.data if self.content_type == "image/jpeg" else None

    def __repr__(self) -> str:
        return f"<Screenshot {self.format} {len(self.data):,} bytes>"


class _DesktopPart(_Part):
    async def _desktop(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = {k: v for k, v in body.items() if v is not None}
        return await self._call(method, f"/desktop{path}", **kwargs)


class ScreenshotTaker(_DesktopPart):
    async def take(
        self,
        format: str = "png",
        quality: int | None = None,
        scale: float | None = None,
        region: dict[str, int] | tuple[int, int, int, int] | None = None,
        show_cursor: bool = False,
    ) -> Screenshot:
        """The screen (or `region`: x, y, width, height) as PNG or JPEG (`quality` 1-100), scaled by
        `scale` (0.1-1), with the pointer drawn when `show_cursor`."""
        params: dict[str, str] = {"format": format, "cursor": "1" if show_cursor else "0"}
        if quality is not None:
            params["quality"] = str(quality)
        if scale is not None:
            params["scale"] = str(scale)
        if region is not None:
            x, y, width, height = (
                (region["x"], region["y"], region["width"], region["height"]) if isinstance(region, dict) else region
            )
            params.update(x=str(x), y=str(y), width=str(width), height=str(height))
        url = self.transport.address.api(f"/sandboxes/{self.sandbox.id}/desktop/screenshot")
        response = await self.transport.send("GET", url, params=params)
        return Screenshot(response.content, response.headers.get("Content-Type", "image/png"))

    async def take_full_screen(self, show_cursor: bool = False) -> Screenshot:
        return await self.take(show_cursor=show_cursor)

    async def take_region(self, region: Any, show_cursor: bool = False) -> Screenshot:
        return await self.take(region=region, show_cursor=show_cursor)

    async def take_compressed(
        self, format: str = "jpeg", quality: int = 80, scale: float = 1.0, show_cursor: bool = False
    ) -> Screenshot:
        return await self.take(format=format, quality=quality, scale=scale, show_cursor=show_cursor)


class Mouse(_DesktopPart):
    async def get_position(self) -> dict[str, int]:
        return await self._desktop("GET", "/mouse")

    async def move(self, x: int, y: int) -> dict[str, int]:
        return await self._desktop("POST", "/mouse/move", {"x": x, "y": y})

    async def click(
        self,
        x: int | None = None,
        y: int | None = None,
        button: str = "left",
        double: bool = False,
        count: int | None = None,
    ) -> dict[str, int]:
        body = {"x": x, "y": y, "button": button, "double": double or None, "count": count}
        return await self._desktop("POST", "/mouse/click", body)

    async def drag(self, start_x: int, start_y: int, end_x: int, end_y: int, button: str = "left") -> dict[str, int]:
        body = {"start_x": start_x, "start_y": start_y, "end_x": end_x, "end_y": end_y, "button": button}
        return await self._desktop("POST", "/mouse/drag", body)

    async def scroll(
        self, x: int | None = None, y: int | None = None, direction: str = "down", amount: int = 1
    ) -> dict[str, int]:
        return await self._desktop("POST", "/mouse/scroll", {"x": x, "y": y, "direction": direction, "amount": amount})


class Keyboard(_DesktopPart):
    async def type(self, text: str, delay: int | None = None) -> dict[str, Any]:
        """Type `text` where the keyboard is (`delay`: milliseconds between keys)."""
        return await self._desktop("POST", "/keyboard/type", {"text": text, "delay": delay})

    async def press(self, key: str, modifiers: builtins.list[str] | None = None) -> dict[str, Any]:
        """Press one key (a letter, 'Enter', 'F5', ...) with modifiers held (ctrl, alt, shift, super)."""
        return await self._desktop("POST", "/keyboard/press", {"key": key, "modifiers": modifiers})

    async def hotkey(self, keys: str) -> dict[str, Any]:
        """A key combination such as 'ctrl+c' or 'ctrl+shift+t'."""
        return await self._desktop("POST", "/keyboard/hotkey", {"keys": keys})


class Display(_DesktopPart):
    async def get_info(self) -> dict[str, Any]:
        return await self._desktop("GET", "/display")

    async def get_windows(self) -> builtins.list[dict[str, Any]]:
        return (await self._desktop("GET", "/windows"))["windows"]

    async def focus(self, window_id: int) -> dict[str, Any]:
        return await self._desktop("POST", "/windows/focus", {"id": window_id})


class ComputerUse(_DesktopPart):
    """The sandbox's virtual desktop (the desktop image): start, stop, status, and its parts."""

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self.screenshot = ScreenshotTaker(sandbox)
        self.mouse = Mouse(sandbox)
        self.keyboard = Keyboard(sandbox)
        self.display = Display(sandbox)

    async def start(self, width: int | None = None, height: int | None = None) -> dict[str, Any]:
        return await self._desktop("POST", "/start", {"width": width, "height": height})

    async def stop(self) -> dict[str, Any]:
        return await self._desktop("POST", "/stop", {})

    async def get_status(self) -> dict[str, Any]:
        """{status: active|inactive|partial, processes, width, height, vnc (a preview link) when active}."""
        return await self._desktop("GET", "")

    async def vnc_url(self) -> str | None:
        """The noVNC page of the running desktop (a preview link with its token), or None."""
        vnc = (await self.get_status()).get("vnc")
        return vnc.get("novnc_url") if isinstance(vnc, dict) else None
