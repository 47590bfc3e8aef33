"""Computer use: a virtual desktop in a sandbox of the desktop image, driven through the REST API (and
the SDK), seen through the preview proxy's noVNC page in Chromium."""

from __future__ import annotations

import concurrent.futures
import io
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import API, Server, fetch, wait_until
from PIL import Image, ImageChops

from jupyter_sandbox.sandbox.desktop_image import DESKTOP_IMAGE, build_desktop_image
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.image import DEFAULT_IMAGE
from jupyter_sandbox.sandbox.spec import LABEL_ID

WIDTH, HEIGHT = 1280, 800


@pytest.fixture(scope="module")
def desktop_image(docker_backend: DockerBackend, sandbox_image: str) -> str:
    build_desktop_image(docker_backend, lambda line: print(line, file=sys.stderr), base=DEFAULT_IMAGE)
    return DESKTOP_IMAGE


def desk(sandbox_id: str, rest: str = "") -> str:
    return f"{API}/sandboxes/{sandbox_id}/desktop{rest}"


@pytest.fixture(scope="module")
def desktop_sandbox(jupyter_server: Server, desktop_image: str) -> Iterator[str]:
    status, created = jupyter_server.request("POST", f"{API}/sandboxes", {"image": desktop_image})
    assert status == 201, created
    sandbox_id = created["id"]
    status, started = jupyter_server.request("POST", desk(sandbox_id, "/start"), {})
    assert status == 200 and started["status"] == "active", started
    yield sandbox_id
    jupyter_server.request("DELETE", f"{API}/sandboxes/{sandbox_id}")


def screenshot(server: Server, sandbox_id: str, query: str = "") -> Image.Image:
    status, data = server.request("GET", desk(sandbox_id, "/screenshot" + (f"?{query}" if query else "")))
    assert status == 200 and isinstance(data, bytes), (status, data[:300])
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def post(server: Server, sandbox_id: str, rest: str, body: dict[str, Any]) -> Any:
    status, answer = server.request("POST", desk(sandbox_id, rest), body)
    assert status == 200, (rest, body, status, answer)
    return answer


def windows(server: Server, sandbox_id: str) -> list[dict[str, Any]]:
    status, answer = server.request("GET", desk(sandbox_id, "/windows"))
    assert status == 200, answer
    return answer["windows"]


def exec_in(server: Server, sandbox_id: str, command: str) -> dict[str, Any]:
    status, answer = server.request(
        "POST", f"{API}/sandboxes/{sandbox_id}/process/exec", {"command": command, "timeout": 60}
    )
    assert status == 200, answer
    return answer


def launch(server: Server, sandbox_id: str, command: str) -> None:
    session = f"gui-{abs(hash(command)) % 10**8}"
    status, answer = server.request("POST", f"{API}/sandboxes/{sandbox_id}/sessions", {"id": session})
    assert status == 201, answer
    status, answer = server.request(
        "POST", f"{API}/sandboxes/{sandbox_id}/sessions/{session}/commands", {"command": command, "run_async": True}
    )
    assert status in (200, 202), answer


def open_terminal(server: Server, sandbox_id: str, title: str) -> dict[str, Any]:
    """An xterm on the desktop, started in a session as any long-lived program of the sandbox is
    (DISPLAY is set for what starts once the desktop runs), focused; its window."""
    # The shell's prompt would retitle the window: title changes are off.
    launch(server, sandbox_id, f"xterm -T {title} -xrm 'XTerm*allowTitleOps: false' -geometry 80x24+40+40")
    found: list[dict[str, Any]] = []

    def there() -> bool:
        found[:] = [w for w in windows(server, sandbox_id) if w["title"] == title]
        return bool(found)

    assert wait_until(there, timeout=30), windows(server, sandbox_id)
    post(server, sandbox_id, "/windows/focus", {"id": found[0]["id"]})
    assert wait_until(lambda: any(w["active"] for w in windows(server, sandbox_id) if w["title"] == title), 10)
    return found[0]


def changed_box(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int] | None:
    return ImageChops.difference(before.convert("RGB"), after.convert("RGB")).getbbox()


# -- the flow: terminal, typing, a file, pixels ---------------------------------------------------------


def test_status_display_and_screenshot(jupyter_server: Server, desktop_sandbox: str) -> None:
    status, answer = jupyter_server.request("GET", desk(desktop_sandbox))
    assert status == 200 and answer["status"] == "active" and (answer["width"], answer["height"]) == (WIDTH, HEIGHT)
    assert answer["vnc"]["url"].startswith(f"http://6080-{desktop_sandbox}.localhost:")
    status, display = jupyter_server.request("GET", desk(desktop_sandbox, "/display"))
    assert status == 200 and (display["width"], display["height"]) == (WIDTH, HEIGHT)
    image = screenshot(jupyter_server, desktop_sandbox)
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)


def test_the_vnc_ports_are_on_the_sandboxs_loopback_only_and_never_published(
    jupyter_server: Server, desktop_sandbox: str, docker_backend: DockerBackend
) -> None:
    (container,) = docker_backend.client.containers.list(filters={"label": f"{LABEL_ID}={desktop_sandbox}"})
    published = container.attrs["NetworkSettings"]["Ports"] or {}
    assert not any(port.startswith(("5900", "6080")) for port in published), published
    # Listening sockets in the sandbox: VNC (5900) and noVNC (6080) on 127.0.0.1, nowhere else.
    listening = exec_in(jupyter_server, desktop_sandbox, "awk '$4 == \"0A\" {print $2}' /proc/net/tcp /proc/net/tcp6")[
        "stdout"
    ].split()
    desktop_sockets = {a for a in listening if a.endswith((":170C", ":17C0"))}
    assert desktop_sockets == {"0100007F:170C", "0100007F:17C0"}, listening


def test_typing_in_a_terminal_writes_a_file_and_shows_where_it_went(
    jupyter_server: Server, desktop_sandbox: str
) -> None:
    window = open_terminal(jupyter_server, desktop_sandbox, "typing-test")
    time.sleep(0.5)  # the shell's prompt
    before = screenshot(jupyter_server, desktop_sandbox)
    post(jupyter_server, desktop_sandbox, "/keyboard/type", {"text": "echo typed-through-x11 > ~/from-desktop.txt"})
    post(jupyter_server, desktop_sandbox, "/keyboard/press", {"key": "Enter"})
    assert wait_until(
        lambda: exec_in(jupyter_server, desktop_sandbox, "cat ~/from-desktop.txt")["stdout"] == "typed-through-x11\n",
        timeout=20,
    )
    after = screenshot(jupyter_server, desktop_sandbox)
    box = changed_box(before, after)
    assert box is not None, "the screen did not change"
    left, top, right, bottom = box
    # The change is inside the terminal's window, where the typing went.
    assert window["x"] <= left and right <= window["x"] + window["width"], (box, window)
    assert window["y"] <= top and bottom <= window["y"] + window["height"], (box, window)
    # ...on the terminal's first lines, where its prompt was.
    assert top < window["y"] + window["height"] // 4, (box, window)


# -- the live view: noVNC through the preview proxy, in Chromium -----------------------------------------


def mean_difference(one: Image.Image, other: Image.Image) -> float:
    """The mean absolute difference of two images' pixels (0-255), once `other` has `one`'s size."""
    other = other.convert("RGB").resize(one.size, Image.Resampling.BILINEAR)
    histogram = ImageChops.difference(one.convert("RGB"), other).convert("L").histogram()
    return sum(value * count for value, count in enumerate(histogram)) / (one.width * one.height)


def wait_for_novnc(page: Any, console: list[str], timeout: float = 60) -> None:
    """Until noVNC says it is connected. Docker adding another test's container network interface
    makes Chromium fail what it was loading then (net::ERR_NETWORK_CHANGED), and noVNC without one of
    its modules never starts: that is this machine, not the desktop, so the page is loaded again once."""
    deadline, reloaded = time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        if page.locator("html.noVNC_connected").count():
            return
        if not reloaded and any("ERR_NETWORK_CHANGED" in line for line in console):
            reloaded = True
            console.append("-- reloaded after a network change")
            page.reload()
            deadline = time.monotonic() + timeout
        page.wait_for_timeout(250)
    raise AssertionError(f"noVNC did not connect: {page.url} {console[-15:]}")


def test_the_novnc_page_through_a_preview_shows_the_desktop_and_takes_input(
    jupyter_server: Server, desktop_sandbox: str, browser: Any
) -> None:
    # Two terminals in different folders: the one the browser clicks gets the keys, the other not.
    exec_in(jupyter_server, desktop_sandbox, "mkdir -p /tmp/target /tmp/decoy")
    launch(
        jupyter_server,
        desktop_sandbox,
        "cd /tmp/target && xterm -T target -xrm 'XTerm*allowTitleOps: false' -geometry 60x10+700+420",
    )
    decoy = open_terminal(jupyter_server, desktop_sandbox, "decoy")
    assert wait_until(lambda: any(w["title"] == "target" for w in windows(jupyter_server, desktop_sandbox)), 30)
    target = next(w for w in windows(jupyter_server, desktop_sandbox) if w["title"] == "target")
    post(jupyter_server, desktop_sandbox, "/windows/focus", {"id": decoy["id"]})

    status, answer = jupyter_server.request("GET", desk(desktop_sandbox))
    assert status == 200, answer
    novnc = answer["vnc"]["novnc_url"]
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.on("requestfailed", lambda request: console.append(f"failed {request.url}"))
    page.on("response", lambda response: console.append(f"{response.status} {response.url}"))
    try:
        page.goto(novnc)
        # Its own origin, and the token out of the address (it is in an HttpOnly cookie now).
        assert page.url.startswith(f"http://6080-{desktop_sandbox}.localhost:") and "token=" not in page.url
        wait_for_novnc(page, console)
        canvas = page.locator("#noVNC_container canvas")
        canvas.wait_for(timeout=30000)
        time.sleep(1.5)  # the first full frame
        seen = Image.open(io.BytesIO(canvas.screenshot()))
        shot = screenshot(jupyter_server, desktop_sandbox)
        same = mean_difference(seen, shot)
        # A desktop it is not (everything moved a quarter of the screen) differs far more.
        shifted = ImageChops.offset(shot, WIDTH // 4, HEIGHT // 4)
        assert same < 8 and same * 3 < mean_difference(seen, shifted), (same, mean_difference(seen, shifted))

        # A click on the target terminal (in the canvas's scale), then keys typed in the browser.
        box = canvas.bounding_box()
        scale = box["width"] / WIDTH
        page.mouse.click(
            box["x"] + (target["x"] + target["width"] / 2) * scale,
            box["y"] + (target["y"] + target["height"] / 2) * scale,
        )
        assert wait_until(
            lambda: any(w["active"] for w in windows(jupyter_server, desktop_sandbox) if w["title"] == "target"), 10
        )
        page.keyboard.type("pwd > ~/from-browser.txt")
        page.keyboard.press("Enter")
        assert wait_until(
            lambda: exec_in(jupyter_server, desktop_sandbox, "cat ~/from-browser.txt")["stdout"] == "/tmp/target\n",
            timeout=20,
        )
    finally:
        page.close()


def test_a_wrong_token_gets_nothing_of_the_desktop(jupyter_server: Server, desktop_sandbox: str) -> None:
    host = f"6080-{desktop_sandbox}.localhost:{jupyter_server.port}"
    good = jupyter_server.request("GET", desk(desktop_sandbox))[1]["vnc"]["token"]
    status, _, body = fetch(jupyter_server, host, "/vnc.html", {"X-Sandbox-Preview-Token": good})
    assert status == 200 and b"noVNC" in body
    websocket = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Origin": f"http://{host}",
    }
    for headers in ({}, {"X-Sandbox-Preview-Token": good[:-2] + "xx"}, {"X-Sandbox-Preview-Token": "nonsense"}):
        for path in ("/vnc.html", "/core/rfb.js", "/websockify"):
            extra = websocket if path == "/websockify" else {}
            status, _, body = fetch(jupyter_server, host, path, {**headers, **extra})
            assert status in (401, 403) and b"noVNC" not in body and b"RFB" not in body, (headers, path, status)
    # Another sandbox's token does not open this one's desktop either.
    other = jupyter_server.request("POST", f"{API}/sandboxes", {})[1]["id"]
    try:
        foreign = jupyter_server.request("POST", f"{API}/sandboxes/{other}/previews", {"port": 6080})[1]["token"]
        status, _, body = fetch(jupyter_server, host, "/vnc.html", {"X-Sandbox-Preview-Token": foreign})
        assert status in (401, 403) and b"noVNC" not in body
    finally:
        jupyter_server.request("DELETE", f"{API}/sandboxes/{other}")


# -- the API's other operations ---------------------------------------------------------------------------


def test_screenshot_region_scale_jpeg_and_cursor(jupyter_server: Server, desktop_sandbox: str) -> None:
    full = screenshot(jupyter_server, desktop_sandbox)
    region = screenshot(jupyter_server, desktop_sandbox, "x=100&y=50&width=300&height=200")
    assert region.size == (300, 200)
    assert mean_difference(region, full.crop((100, 50, 400, 250))) < 3
    half = screenshot(jupyter_server, desktop_sandbox, "scale=0.5")
    assert half.size == (WIDTH // 2, HEIGHT // 2)
    small = screenshot(jupyter_server, desktop_sandbox, "format=jpeg&quality=10")
    big = screenshot(jupyter_server, desktop_sandbox, "format=jpeg&quality=95")
    assert small.format == big.format == "JPEG" and small.size == (WIDTH, HEIGHT)
    sizes = [
        len(jupyter_server.request("GET", desk(desktop_sandbox, f"/screenshot?format=jpeg&quality={q}"))[1])
        for q in (10, 95)
    ]
    assert sizes[0] < sizes[1]
    # The pointer, drawn where it is: moved over a plain part of the screen, it changes those pixels.
    post(jupyter_server, desktop_sandbox, "/mouse/move", {"x": 1200, "y": 700})
    bare = screenshot(jupyter_server, desktop_sandbox, "x=1180&y=680&width=60&height=60")
    drawn = screenshot(jupyter_server, desktop_sandbox, "x=1180&y=680&width=60&height=60&cursor=1")
    box = changed_box(bare, drawn)
    assert box is not None and box[0] >= 18 and box[1] >= 18, box


def test_mouse_and_keyboard_operations(jupyter_server: Server, desktop_sandbox: str) -> None:
    assert post(jupyter_server, desktop_sandbox, "/mouse/move", {"x": 10, "y": 20}) == {"x": 10, "y": 20}
    assert jupyter_server.request("GET", desk(desktop_sandbox, "/mouse")) == (200, {"x": 10, "y": 20})
    # The same operation with its action in the body (POST .../mouse).
    assert post(jupyter_server, desktop_sandbox, "/mouse", {"action": "move", "x": 30, "y": 40}) == {"x": 30, "y": 40}
    dragged = post(
        jupyter_server, desktop_sandbox, "/mouse/drag", {"start_x": 5, "start_y": 5, "end_x": 50, "end_y": 60}
    )
    assert dragged == {"x": 50, "y": 60}
    assert post(jupyter_server, desktop_sandbox, "/mouse/scroll", {"x": 100, "y": 100, "direction": "down"})
    assert post(jupyter_server, desktop_sandbox, "/mouse/click", {"x": 3, "y": 3, "button": "right", "count": 1})
    post(jupyter_server, desktop_sandbox, "/keyboard/press", {"key": "Escape"})  # the root menu it opened
    window = open_terminal(jupyter_server, desktop_sandbox, "keys-test")
    time.sleep(0.5)
    post(jupyter_server, desktop_sandbox, "/keyboard", {"action": "type", "text": "echo one-"})
    post(jupyter_server, desktop_sandbox, "/keyboard/hotkey", {"keys": "shift+a"})  # a capital A
    post(jupyter_server, desktop_sandbox, "/keyboard/press", {"key": "b", "modifiers": ["shift"]})
    post(jupyter_server, desktop_sandbox, "/keyboard/type", {"text": " > ~/keys.txt\n"})
    assert wait_until(
        lambda: exec_in(jupyter_server, desktop_sandbox, "cat ~/keys.txt")["stdout"] == "one-AB\n", timeout=20
    )
    # ctrl+d ends the shell: the window goes.
    post(jupyter_server, desktop_sandbox, "/windows/focus", {"id": window["id"]})
    post(jupyter_server, desktop_sandbox, "/keyboard/hotkey", {"keys": "ctrl+d"})
    assert wait_until(lambda: all(w["id"] != window["id"] for w in windows(jupyter_server, desktop_sandbox)), 15)


BAD_REQUESTS = [
    # (method, route, body or query, status, words of the message)
    ("POST", "/mouse/move", {"x": 5000, "y": 10}, 400, "x must be from 0 to 1279"),
    ("POST", "/mouse/move", {"x": -1, "y": 10}, 400, "x must be"),
    ("POST", "/mouse/move", {"x": 10, "y": 800}, 400, "y must be from 0 to 799"),
    ("POST", "/mouse/move", {"x": "10", "y": 10}, 400, "whole number"),
    ("POST", "/mouse/move", {"x": 1.5, "y": 10}, 400, "whole number"),
    ("POST", "/mouse/move", {"x": True, "y": 10}, 400, "whole number"),
    ("POST", "/mouse/move", {}, 400, "x is required"),
    ("POST", "/mouse/click", {"x": 10}, 400, "both x and y"),
    ("POST", "/mouse/click", {"x": 10, "y": 10, "button": "fourth"}, 400, "button must be one of"),
    ("POST", "/mouse/click", {"x": 10, "y": 10, "count": 0}, 400, "count must be from 1"),
    ("POST", "/mouse/click", {"x": 10, "y": 10, "count": 1000}, 400, "count must be from 1"),
    ("POST", "/mouse/drag", {"start_x": 1, "start_y": 1, "end_x": 99999, "end_y": 1}, 400, "end_x"),
    ("POST", "/mouse/drag", {"start_x": 1, "start_y": 1}, 400, "end_x is required"),
    ("POST", "/mouse/scroll", {"direction": "sideways"}, 400, "direction must be one of"),
    ("POST", "/mouse/scroll", {"amount": 10**9}, 400, "amount must be from 1"),
    ("POST", "/mouse", {"action": "teleport", "x": 1, "y": 1}, 400, "mouse action must be one of"),
    ("POST", "/mouse", {"x": 1, "y": 1}, 400, "mouse action must be one of"),
    ("POST", "/mouse/move", {"x": 1, "y": 1, "colour": "red"}, 400, "unknown fields: colour"),
    ("POST", "/keyboard/press", {"key": "Hyperspace"}, 400, "unknown key 'Hyperspace'"),
    ("POST", "/keyboard/press", {"key": ""}, 400, "non-empty"),
    ("POST", "/keyboard/press", {"key": ["a"]}, 400, "a key must be"),
    ("POST", "/keyboard/press", {"key": "a", "modifiers": ["enter"]}, 400, "modifiers may only be"),
    ("POST", "/keyboard/press", {"key": "a", "modifiers": "ctrl"}, 400, "modifiers must be a list"),
    ("POST", "/keyboard/hotkey", {"keys": "ctrl+nosuchkey"}, 400, "unknown key 'nosuchkey'"),
    ("POST", "/keyboard/hotkey", {"keys": "a+b+c+d+e+f+g"}, 400, "one to six keys"),
    ("POST", "/keyboard/hotkey", {"keys": 5}, 400, "keys must be"),
    ("POST", "/keyboard/type", {"text": ""}, 400, "non-empty"),
    ("POST", "/keyboard/type", {"text": "x" * 100_001}, 413, "at most 10,000"),
    ("POST", "/keyboard/type", {"text": "rm -rf ~\x1b[A"}, 400, "control characters"),
    ("POST", "/keyboard/type", {"text": "a", "delay": -5}, 400, "delay must be from 0"),
    ("POST", "/keyboard", {"action": "sing", "text": "a"}, 400, "keyboard action must be one of"),
    ("POST", "/windows/focus", {"id": 12345}, 404, "no window 12345"),
    ("POST", "/windows/focus", {"id": "all"}, 400, "window id"),
    ("POST", "/start", {"width": 10, "height": 10}, 400, "width must be from 200"),
    ("POST", "/start", {"width": 100000, "height": 800}, 400, "width must be from 200"),
    ("GET", "/screenshot", "format=gif", 400, "format must be png or jpeg"),
    ("GET", "/screenshot", "quality=0&format=jpeg", 400, "quality must be from 1 to 100"),
    ("GET", "/screenshot", "quality=high", 400, "quality must be a number"),
    ("GET", "/screenshot", "scale=3", 400, "scale must be from 0.1 to 1"),
    ("GET", "/screenshot", "scale=0", 400, "scale must be from 0.1 to 1"),
    ("GET", "/screenshot", "scale=nan", 400, "scale must be"),
    ("GET", "/screenshot", "x=10&y=10", 400, "needs all of x, y, width and height"),
    ("GET", "/screenshot", "x=1200&y=0&width=200&height=10", 400, "width must be from 1 to 80"),
    ("GET", "/screenshot", "x=0&y=0&width=0&height=10", 400, "width must be from 1"),
    ("GET", "/screenshot", "x=-5&y=0&width=10&height=10", 400, "x must be"),
    ("GET", "/screenshot", "cursor=maybe", 400, "cursor"),
    ("GET", "/screenshot", "colour=red", 400, "unknown query parameters: colour"),
]


@pytest.mark.parametrize("method, route, given, status, words", BAD_REQUESTS, ids=lambda v: str(v)[:40])
def test_bad_input_is_refused_with_a_clear_message(
    jupyter_server: Server, desktop_sandbox: str, method: str, route: str, given: Any, status: int, words: str
) -> None:
    if method == "GET":
        got, answer = jupyter_server.request("GET", desk(desktop_sandbox, f"{route}?{given}"))
    else:
        got, answer = jupyter_server.request(method, desk(desktop_sandbox, route), given)
    assert got == status and isinstance(answer, dict) and words in answer["message"], (got, answer)


def test_a_sandbox_without_the_desktop_image_says_how_to_get_one(jupyter_server: Server) -> None:
    status, created = jupyter_server.request("POST", f"{API}/sandboxes", {})
    assert status == 201, created
    try:
        status, answer = jupyter_server.request("POST", desk(created["id"], "/start"), {})
        assert status == 409 and "image build --desktop" in answer["message"], answer
        status, answer = jupyter_server.request("GET", desk(created["id"], "/screenshot"))
        assert status == 409 and "not running" in answer["message"], answer
        status, answer = jupyter_server.request("GET", desk(created["id"]))
        assert status == 200 and answer["status"] == "inactive" and answer["available"] is False
    finally:
        jupyter_server.request("DELETE", f"{API}/sandboxes/{created['id']}")


# -- the SDK and the MCP server ---------------------------------------------------------------------------


def test_the_sdk_computer_use(jupyter_server: Server, desktop_sandbox: str) -> None:
    from jupyter_sandbox.client import Sandbox, SandboxError

    sb = Sandbox.get(desktop_sandbox, url=jupyter_server.base, token=jupyter_server.token)
    assert sb.computer_use.get_status()["status"] == "active"
    assert sb.desktop.start()["status"] == "active"  # already running: the same desktop
    shot = sb.computer_use.screenshot.take_full_screen()
    assert shot.content_type == "image/png" and Image.open(io.BytesIO(shot.data)).size == (WIDTH, HEIGHT)
    assert shot._repr_png_() == shot.data
    region = sb.computer_use.screenshot.take_region({"x": 0, "y": 0, "width": 64, "height": 32})
    assert Image.open(io.BytesIO(region.data)).size == (64, 32)
    small = sb.computer_use.screenshot.take_compressed(format="jpeg", quality=50, scale=0.25)
    assert small.content_type == "image/jpeg" and Image.open(io.BytesIO(small.data)).size == (320, 200)
    assert sb.computer_use.mouse.move(123, 45) == {"x": 123, "y": 45}
    assert sb.computer_use.mouse.get_position() == {"x": 123, "y": 45}
    assert sb.computer_use.display.get_info()["width"] == WIDTH
    assert isinstance(sb.computer_use.display.get_windows(), list)
    assert sb.computer_use.vnc_url().startswith(f"http://6080-{desktop_sandbox}.localhost:")
    with pytest.raises(SandboxError) as refused:
        sb.computer_use.keyboard.press("NoSuchKey")
    assert refused.value.status == 400 and "unknown key" in refused.value.message


def test_the_mcp_screenshot_is_an_image(jupyter_server: Server, desktop_sandbox: str, tmp_path: Any) -> None:
    import asyncio

    from test_mcp import _session

    async def calls(session: Any) -> Any:
        names = {tool.name for tool in (await session.list_tools()).tools}
        started = await session.call_tool("desktop_start", {"sandbox_id": desktop_sandbox})
        moved = await session.call_tool(
            "desktop_mouse", {"sandbox_id": desktop_sandbox, "action": "move", "x": 7, "y": 8}
        )
        shot = await session.call_tool("desktop_screenshot", {"sandbox_id": desktop_sandbox, "scale": 0.5})
        bad = await session.call_tool(
            "desktop_keyboard", {"sandbox_id": desktop_sandbox, "action": "press", "key": "NoSuchKey"}
        )
        return names, started, moved, shot, bad

    # In a thread of its own: the module's browser keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        names, started, moved, shot, bad = pool.submit(
            asyncio.run, _session(jupyter_server, tmp_path, [], calls)
        ).result()
    assert {"desktop_start", "desktop_screenshot", "desktop_mouse", "desktop_keyboard", "desktop_windows"} <= names
    assert "desktop active" in started.content[0].text and "noVNC" in started.content[0].text
    assert moved.content[0].text == "pointer at 7,8"
    (image,) = shot.content
    assert image.type == "image" and image.mime_type == "image/png"
    import base64

    assert Image.open(io.BytesIO(base64.b64decode(image.data))).size == (WIDTH // 2, HEIGHT // 2)
    assert bad.is_error and "unknown key" in bad.content[0].text


# -- %sandbox desktop ---------------------------------------------------------------------------------


def test_the_desktop_magic(desktop_image: str, tmp_path: Any) -> None:
    from conftest import start_sandbox_kernel

    kernel = start_sandbox_kernel(
        extra_env={"JUPYTER_SANDBOX_PREVIEW_TEMPLATE": "http://{port}-{sandbox_id}.localhost:8888/"},
        extra_argv=[f"--SandboxManager.image={desktop_image}"],
        tmp_path=tmp_path,
    )
    try:
        started = kernel.run("%sandbox desktop")
        assert "desktop of sandbox" in started.stdout and ": active (1280x800)" in started.stdout, started
        link = re.search(r"live view \(noVNC[^)]*\): (\S+)", started.stdout)
        assert link and re.match(r"http://6080-[0-9a-f]{12}\.localhost:8888/vnc\.html\?token=", link.group(1))
        assert "active" in kernel.run("%sandbox desktop status").stdout
        # Code in the notebook sees the display (the kernel restarted after the desktop started).
        kernel.run("%sandbox restart")
        assert kernel.run("import os; print(os.environ.get('DISPLAY'))").stdout.strip() == ":99"
        bad = kernel.run("%sandbox desktop --size huge")
        assert bad.status == "error" and "WIDTHxHEIGHT" in bad.reply["content"]["evalue"], bad.reply
        assert "stopped" in kernel.run("%sandbox desktop stop").stdout
    finally:
        kernel.shutdown()
