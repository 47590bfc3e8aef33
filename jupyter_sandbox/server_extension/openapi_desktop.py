"""The OpenAPI description of the desktop routes (handlers/desktop.py), merged into openapi.py's document."""

from __future__ import annotations

from typing import Any

from .openapi import SANDBOX_ID, STRING, _obj, _op, _param

INTEGER = {"type": "integer"}
BUTTON = {"type": "string", "enum": ["left", "middle", "right"]}
POINT = {"x": INTEGER, "y": INTEGER}
MOUSE_FIELDS: dict[str, dict[str, Any]] = {
    "move": POINT,
    "click": {**POINT, "button": BUTTON, "count": INTEGER, "double": {"type": "boolean"}},
    "drag": {"start_x": INTEGER, "start_y": INTEGER, "end_x": INTEGER, "end_y": INTEGER, "button": BUTTON},
    "scroll": {**POINT, "direction": {"type": "string", "enum": ["up", "down", "left", "right"]}, "amount": INTEGER},
}
KEYS = {"oneOf": [STRING, {"type": "array", "items": STRING}]}
KEYBOARD_FIELDS: dict[str, dict[str, Any]] = {
    "type": {"text": STRING, "delay": INTEGER},
    "press": {"key": STRING, "modifiers": {"type": "array", "items": STRING}},
    "hotkey": {"keys": KEYS},
}


def _merged(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for value in fields.values():
        merged.update(value)
    return merged


def desktop_paths(box: str) -> dict[str, Any]:
    number = {"type": "string", "pattern": r"^[0-9.]+$"}
    screenshot_query = [
        SANDBOX_ID,
        _param("format", schema={"type": "string", "enum": ["png", "jpeg", "jpg"]}),
        _param("quality", schema=number),
        _param("scale", schema=number),
        _param("x", schema=number),
        _param("y", schema=number),
        _param("width", schema=number),
        _param("height", schema=number),
        _param("cursor", schema={"type": "string", "enum": ["0", "1", "true", "false"]}),
    ]
    paths: dict[str, Any] = {
        f"{box}/desktop": {"get": _op("the desktop's state, and its noVNC view as a preview link", [SANDBOX_ID])},
        f"{box}/desktop/start": {
            "post": {
                **_op("start the virtual desktop (the desktop image)", [SANDBOX_ID]),
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _obj(width=INTEGER, height=INTEGER)}},
                },
            }
        },
        f"{box}/desktop/stop": {"post": _op("stop the virtual desktop", [SANDBOX_ID])},
        f"{box}/desktop/screenshot": {
            "get": _op(
                "a screenshot: PNG or JPEG (quality), a region (x, y, width, height), scaled, with the pointer",
                screenshot_query,
                content="image/png",
            )
        },
        f"{box}/desktop/mouse": {
            "get": _op("the pointer's position", [SANDBOX_ID]),
            "post": _op(
                "a mouse action named in the body: move, click, drag or scroll",
                [SANDBOX_ID],
                _obj(["action"], action={"type": "string", "enum": list(MOUSE_FIELDS)}, **_merged(MOUSE_FIELDS)),
            ),
        },
        f"{box}/desktop/keyboard": {
            "post": _op(
                "a keyboard action named in the body: type, press or hotkey",
                [SANDBOX_ID],
                _obj(["action"], action={"type": "string", "enum": list(KEYBOARD_FIELDS)}, **_merged(KEYBOARD_FIELDS)),
            )
        },
        f"{box}/desktop/display": {"get": _op("the display's size and depth, and the pointer", [SANDBOX_ID])},
        f"{box}/desktop/windows": {"get": _op("the desktop's windows (id, title, place, size, active)", [SANDBOX_ID])},
        f"{box}/desktop/windows/focus": {
            "post": _op("bring a window to the front and give it the keyboard", [SANDBOX_ID], _obj(["id"], id=INTEGER))
        },
    }
    for action, fields in MOUSE_FIELDS.items():
        paths[f"{box}/desktop/mouse/{action}"] = {"post": _op(f"mouse: {action}", [SANDBOX_ID], _obj(**fields))}
    for action, fields in KEYBOARD_FIELDS.items():
        paths[f"{box}/desktop/keyboard/{action}"] = {"post": _op(f"keyboard: {action}", [SANDBOX_ID], _obj(**fields))}
    return paths
