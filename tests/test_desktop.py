"""Computer use: a virtual desktop in a sandbox of the desktop image, driven through the REST API (and
the SDK), seen through the preview proxy's noVNC page in Chromium."""

from __future__ import annotations

import io
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
    assert window["x"] - 10 <= left and right <= window["x"] + window["width"] + 10, (box, window)
    assert window["y"] - 30 <= top and bottom <= window["y"] + window["height"] + 10, (box, window)


# -- the live view: noVNC through the preview proxy, in Chromium -----------------------------------------


def mean_difference(one: Image.Image, other: Image.Image) -> float:
    """The mean absolute difference of two images' pixels (0-255), once `other` has `one`'s size."""
    other = other.convert("RGB").resize(one.size, Image.Resampling.BILINEAR)
    histogram = ImageChops.difference(one.convert("RGB"), other).convert("L").histogram()
    return sum(value * count for value, count in enumerate(histogram)) / (one.width * one.height)


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
    novnc = answer["vnc"]["novnc_url"]
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    try:
        page.goto(novnc)
        # Its own origin, and the token out of the address (it is in an HttpOnly cookie now).
        assert page.url.startswith(f"http://6080-{desktop_sandbox}.localhost:") and "token=" not in page.url
        page.wait_for_selector("html.noVNC_connected", timeout=30000)
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
