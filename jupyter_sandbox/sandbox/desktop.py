"""Computer use on the host side: what a desktop request may hold, and what of the agent's answers is kept.

The requests are checked here (types, ranges, key names, sizes) before anything reaches the sandbox,
so a caller gets a clear 400 or 413 from every front door; the agent checks them again. The answers
come from inside the sandbox and are hostile: each is reduced to the fields and types below, and a
screenshot must be a PNG or JPEG of bounded size whose bytes say what its type says.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..agent import desktop as agent_desktop
from . import errors

NOVNC_PORT = agent_desktop.NOVNC_PORT
MAX_SCREENSHOT_BYTES = 32 * 1024**2
MAX_TEXT = agent_desktop.MAX_TEXT
MOUSE_ACTIONS = ("move", "click", "drag", "scroll")
KEYBOARD_ACTIONS = ("type", "press", "hotkey")
IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
# The noVNC page as a person opens it: connect at once, scale the desktop to the window.
NOVNC_PAGE = "vnc.html"
NOVNC_QUERY = {"autoconnect": "1", "resize": "scale", "reconnect": "1"}


def _integer(value: Any, name: str, low: int, high: int, default: int | None = None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidInput(f"{name} must be a whole number")
    if not low <= value <= high:
        raise errors.InvalidInput(f"{name} must be from {low} to {high}, not {value}")
    return value


def _coordinate(value: Any, name: str, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    if value is None:
        raise errors.InvalidInput(f"{name} is required")
    # The screen's size is the agent's to know (it names the bounds of this screen); here only what
    # no screen can hold is refused.
    return _integer(value, name, 0, 1_000_000)


def check_start(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "width": _integer(body.get("width"), "width", agent_desktop.MIN_SIZE, agent_desktop.MAX_WIDTH),
        "height": _integer(body.get("height"), "height", agent_desktop.MIN_SIZE, agent_desktop.MAX_HEIGHT),
    }


def check_mouse(action: Any, body: dict[str, Any]) -> dict[str, Any]:
    if action not in MOUSE_ACTIONS:
        raise errors.InvalidInput(f"the mouse action must be one of {', '.join(MOUSE_ACTIONS)}")
    clean: dict[str, Any] = {}
    if action in ("click", "drag"):
        button = body.get("button", "left")
        if not isinstance(button, str) or button not in agent_desktop.BUTTONS:
            raise errors.InvalidInput(f"button must be one of {', '.join(agent_desktop.BUTTONS)}")
        clean["button"] = button
    if action == "drag":
        for name in ("start_x", "start_y", "end_x", "end_y"):
            clean[name] = _coordinate(body.get(name), name)
        return clean
    required = action == "move"
    x, y = _coordinate(body.get("x"), "x", required), _coordinate(body.get("y"), "y", required)
    if (x is None) != (y is None):
        raise errors.InvalidInput("give both x and y, or neither (the pointer's place)")
    if x is not None:
        clean.update(x=x, y=y)
    if action == "click":
        double = body.get("double", False)
        if not isinstance(double, bool):
            raise errors.InvalidInput("double must be true or false")
        count = _integer(body.get("count"), "count", 1, agent_desktop.MAX_CLICKS, 2 if double else 1)
        clean["count"] = count
    if action == "scroll":
        direction = body.get("direction", "down")
        if not isinstance(direction, str) or direction not in agent_desktop.SCROLL_BUTTONS:
            raise errors.InvalidInput(f"direction must be one of {', '.join(agent_desktop.SCROLL_BUTTONS)}")
        clean["direction"] = direction
        clean["amount"] = _integer(body.get("amount"), "amount", 1, agent_desktop.MAX_SCROLL, 1)
    return clean


def _key_error(exc: agent_desktop.DesktopError) -> errors.SandboxOperationError:
    return (errors.PayloadTooLarge if exc.status == 413 else errors.InvalidInput)(str(exc))


def check_keyboard(action: Any, body: dict[str, Any]) -> dict[str, Any]:
    if action not in KEYBOARD_ACTIONS:
        raise errors.InvalidInput(f"the keyboard action must be one of {', '.join(KEYBOARD_ACTIONS)}")
    try:
        if action == "type":
            text = body.get("text")
            if not isinstance(text, str) or not text:
                raise errors.InvalidInput("text must be a non-empty string")
            if len(text) > MAX_TEXT:
                raise errors.PayloadTooLarge(
                    f"text is {len(text):,} characters; at most {MAX_TEXT:,} are typed at once"
                )
            if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in text):
                raise errors.InvalidInput("text may not hold control characters other than newline and tab")
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
                raise errors.InvalidInput("text is not valid Unicode")
            delay = _integer(body.get("delay"), "delay", 0, agent_desktop.MAX_TYPE_DELAY_MS, 12)
            return {"text": text, "delay": delay}
        if action == "press":
            agent_desktop.keysym(body.get("key"))
            modifiers = body.get("modifiers") or []
            if not isinstance(modifiers, list) or len(modifiers) > 4:
                raise errors.InvalidInput("modifiers must be a list of at most four of ctrl, alt, shift, super")
            if any(agent_desktop.keysym(m) not in agent_desktop.MODIFIERS for m in modifiers):
                raise errors.InvalidInput("modifiers may only be ctrl, alt, shift and super")
            return {"key": body["key"], "modifiers": modifiers}
        keys = body.get("keys")
        agent_desktop.combination(keys)
        return {"keys": keys}
    except agent_desktop.DesktopError as exc:
        raise _key_error(exc) from None


def check_screenshot(options: dict[str, Any]) -> dict[str, Any]:
    """The query a screenshot is asked with (values as the REST query gives them: strings)."""
    query: dict[str, str] = {}
    image_format = options.get("format") or "png"
    if image_format == "jpg":
        image_format = "jpeg"
    if image_format not in ("png", "jpeg"):
        raise errors.InvalidInput("format must be png or jpeg")
    query["format"] = image_format
    for name, low, high in (("x", 0, 100000), ("y", 0, 100000), ("width", 1, 100000), ("height", 1, 100000)):
        value = options.get(name)
        if value is None or value == "":
            continue
        number = _number(value, name, whole=True)
        if not low <= number <= high:
            raise errors.InvalidInput(f"{name} must be from {low} to the screen's size, not {value}")
        query[name] = str(int(number))
    given = [name for name in ("x", "y", "width", "height") if name in query]
    if given and len(given) != 4:
        raise errors.InvalidInput("a region needs all of x, y, width and height")
    quality = options.get("quality")
    if quality not in (None, ""):
        number = _number(quality, "quality", whole=True)
        if not 1 <= number <= 100:
            raise errors.InvalidInput(f"quality must be from 1 to 100, not {quality}")
        query["quality"] = str(int(number))
    scale = options.get("scale")
    if scale not in (None, ""):
        number = _number(scale, "scale")
        if not 0.1 <= number <= 1.0:
            raise errors.InvalidInput(f"scale must be from 0.1 to 1, not {scale}")
        query["scale"] = repr(float(number))
    cursor = options.get("cursor")
    if cursor not in (None, "", False, True, "0", "1", "true", "false"):
        raise errors.InvalidInput("cursor must be true or false")
    query["cursor"] = "1" if cursor in (True, "1", "true") else "0"
    return query


def _number(value: Any, name: str, whole: bool = False) -> float:
    if isinstance(value, bool):
        raise errors.InvalidInput(f"{name} must be a number")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 20:
        try:
            number = float(value)
        except ValueError:
            raise errors.InvalidInput(f"{name} must be a number, not {value!r}") from None
    else:
        raise errors.InvalidInput(f"{name} must be a number")
    if number != number or number in (float("inf"), float("-inf")):
        raise errors.InvalidInput(f"{name} must be a finite number")
    if whole and number != int(number):
        raise errors.InvalidInput(f"{name} must be a whole number")
    return number


def check_window_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**32:
        raise errors.InvalidInput("id must be a window id from the window list")
    return value


# -- the agent's answers ---------------------------------------------------------------------------


def _int(value: Any, low: int = 0, high: int = 2**32) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else None


def checked_status(answer: dict[str, Any]) -> dict[str, Any]:
    state = answer.get("status")
    listed: list[Any] = answer["processes"] if isinstance(answer.get("processes"), list) else []
    return {
        "status": state if state in ("active", "inactive", "partial") else "unknown",
        "processes": [
            {"name": p["name"][:40], "running": bool(p.get("running"))}
            for p in listed[:10]
            if isinstance(p, dict) and isinstance(p.get("name"), str)
        ],
        "width": _int(answer.get("width"), 1, 100000),
        "height": _int(answer.get("height"), 1, 100000),
        "available": bool(answer.get("available")),
    }


def checked_point(answer: dict[str, Any]) -> dict[str, int]:
    x, y = _int(answer.get("x"), 0, 100000), _int(answer.get("y"), 0, 100000)
    if x is None or y is None:
        raise errors.AgentUnavailable("the sandbox's agent sent a malformed pointer position")
    return {"x": x, "y": y}


def checked_display(answer: dict[str, Any]) -> dict[str, Any]:
    width, height = _int(answer.get("width"), 1, 100000), _int(answer.get("height"), 1, 100000)
    if width is None or height is None:
        raise errors.AgentUnavailable("the sandbox's agent sent a malformed display size")
    cursor = answer.get("cursor")
    return {
        "width": width,
        "height": height,
        "depth": _int(answer.get("depth"), 1, 64),
        "cursor": checked_point(cursor) if isinstance(cursor, dict) else None,
    }


def checked_windows(answer: dict[str, Any]) -> dict[str, Any]:
    listed: list[Any] = answer["windows"] if isinstance(answer.get("windows"), list) else []
    windows = []
    for window in listed[: agent_desktop.MAX_WINDOWS]:
        if not isinstance(window, dict) or _int(window.get("id"), 1) is None:
            continue
        title = window.get("title")
        windows.append(
            {
                "id": window["id"],
                "title": title[:1000] if isinstance(title, str) else "",
                **{k: _int(window.get(k), -100000, 100000) or 0 for k in ("x", "y", "width", "height")},
                "active": window.get("active") is True,
            }
        )
    return {"windows": windows}


def checked_image(data: bytes, content_type: str | None) -> str:
    """The screenshot's type, once its bytes are known to be of that type."""
    kind = (content_type or "").split(";")[0].strip().lower()
    magic = IMAGE_MAGIC.get(kind)
    if magic is None or not data.startswith(magic):
        raise errors.AgentUnavailable("the sandbox's agent sent a screenshot that is neither PNG nor JPEG")
    return kind


def novnc_url(browser_url: str) -> str:
    """The noVNC page's address of a preview link to NOVNC_PORT (its token kept in the query)."""
    base, _, query = browser_url.partition("?")
    # noVNC opens its websocket at /{path} from the origin's root: on the path form of previews that
    # is the preview's own prefix.
    prefix = urllib.parse.urlsplit(base).path.rstrip("/")
    pairs = [*urllib.parse.parse_qsl(query), *NOVNC_QUERY.items(), ("path", f"{prefix}/websockify".lstrip("/"))]
    return f"{base.rstrip('/')}/{NOVNC_PAGE}?{urllib.parse.urlencode(pairs)}"
