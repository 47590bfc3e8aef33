"""The desktop's request checks and answer reduction (sandbox/desktop.py, agent/desktop.py), without Docker."""

from __future__ import annotations

import pytest

from jupyter_sandbox.agent import desktop as agent_desktop
from jupyter_sandbox.sandbox import desktop, errors


def test_key_names_become_keysyms_and_unknown_ones_are_named() -> None:
    assert agent_desktop.keysym("Enter") == "Return"
    assert agent_desktop.keysym("a") == "a" and agent_desktop.keysym("/") == "slash"
    assert agent_desktop.combination("ctrl+shift+t") == "ctrl+shift+t"
    assert agent_desktop.combination("ctrl++") == "ctrl+plus"
    assert agent_desktop.combination(["alt", "F4"]) == "alt+F4"
    for bad in ("Hyperspace", "ctrl+a;reboot", "é", "a b", "--help", "", None, 5):
        with pytest.raises(agent_desktop.DesktopError) as refused:
            agent_desktop.combination(bad) if isinstance(bad, str) and "+" in bad else agent_desktop.keysym(bad)
        assert refused.value.status == 400


@pytest.mark.parametrize(
    "action, body, words",
    [
        ("move", {"x": -1, "y": 0}, "x must be"),
        ("move", {"x": 0}, "y is required"),
        ("click", {"x": 1, "y": 1, "button": 4}, "button"),
        # JSON objects and lists are not hashable: refused as wrong values, not a server error.
        ("click", {"x": 0, "y": 0, "button": {}}, "button"),
        ("drag", {"start_x": 0, "start_y": 0, "end_x": 0, "end_y": 0, "button": []}, "button"),
        ("scroll", {"x": 0, "y": 0, "direction": {}}, "direction"),
        ("click", {"x": 1, "y": 1, "double": "yes"}, "double"),
        ("scroll", {"amount": 0}, "amount"),
        ("drag", {"start_x": 0, "start_y": 0, "end_x": 0}, "end_y is required"),
        ("jump", {}, "mouse action"),
    ],
)
def test_bad_mouse_requests(action: str, body: dict, words: str) -> None:
    with pytest.raises(errors.InvalidInput, match=words):
        desktop.check_mouse(action, body)


def test_keyboard_requests() -> None:
    assert desktop.check_keyboard("type", {"text": "hi\n"}) == {"text": "hi\n", "delay": 12}
    with pytest.raises(errors.PayloadTooLarge):
        desktop.check_keyboard("type", {"text": "x" * (desktop.MAX_TEXT + 1)})
    for text in ("\x00", "\x1b", "\x7f", "\ud800"):
        with pytest.raises(errors.InvalidInput):
            desktop.check_keyboard("type", {"text": text})
    with pytest.raises(errors.InvalidInput, match="unknown key"):
        desktop.check_keyboard("hotkey", {"keys": "ctrl+nosuch"})


def test_screenshot_options() -> None:
    assert desktop.check_screenshot({}) == {"format": "png", "cursor": "0"}
    assert desktop.check_screenshot({"format": "jpg", "quality": "50", "scale": "0.5", "cursor": "true"}) == {
        "format": "jpeg",
        "quality": "50",
        "scale": "0.5",
        "cursor": "1",
    }
    for bad in (
        {"format": "bmp"},
        {"quality": "101"},
        {"scale": "inf"},
        {"scale": "1e309"},
        {"x": "1"},
        {"x": "1.5", "y": "0", "width": "1", "height": "1"},
        {"width": "9" * 30, "x": "0", "y": "0", "height": "1"},
    ):
        with pytest.raises(errors.InvalidInput):
            desktop.check_screenshot(bad)


def test_hostile_answers_are_reduced() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    assert desktop.checked_image(png, "image/png") == "image/png"
    for data, kind in ((png, "text/html"), (b"<script>", "image/png"), (png, "image/jpeg"), (png, None)):
        with pytest.raises(errors.AgentUnavailable):
            desktop.checked_image(data, kind)
    windows = desktop.checked_windows(
        {"windows": [{"id": 5, "title": "x" * 5000, "x": "1"}, {"id": True}, "junk", {"id": -3}]}
    )
    assert windows == {
        "windows": [{"id": 5, "title": "x" * 1000, "x": 0, "y": 0, "width": 0, "height": 0, "active": False}]
    }
    assert desktop.checked_status({"status": "<b>", "processes": "nope"})["status"] == "unknown"
    with pytest.raises(errors.AgentUnavailable):
        desktop.checked_point({"x": "1", "y": 2})


def test_the_novnc_address_on_both_preview_forms() -> None:
    host = desktop.novnc_url("http://6080-0123456789ab.localhost:8888/?token=T")
    assert host.startswith("http://6080-0123456789ab.localhost:8888/vnc.html?token=T&")
    assert "path=websockify" in host and "autoconnect=1" in host
    path = desktop.novnc_url("http://127.0.0.1:8888/sandbox/preview/0123456789ab/6080/?token=T")
    assert path.startswith("http://127.0.0.1:8888/sandbox/preview/0123456789ab/6080/vnc.html?token=T&")
    assert "path=sandbox%2Fpreview%2F0123456789ab%2F6080%2Fwebsockify" in path
