"""The sandbox's virtual desktop: a display, a window manager, a VNC view and input, for computer use.

Everything here runs as the sandbox user, inside the container, from the desktop image's Debian
packages: Xvfb (the display, no TCP listener), openbox (windows), x11vnc (the display as VNC, on the
sandbox's loopback only), websockify (noVNC's web client and the websocket
bridge to that socket, on the sandbox's loopback: the host reaches it through the preview proxy, with
a preview token, on the preview's own origin) and xdotool (mouse and keyboard). Screenshots are read
from the display with Pillow (the image's own root-owned environment), cropped, scaled and encoded
here, so that a screenshot costs one round trip.

The names of keys and buttons, and the bounds of every value, are checked on the host too
(sandbox/desktop.py uses the tables below); the agent checks them again because it runs commands
with them.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import environment, processes

DISPLAY = ":99"
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEPTH = 1280, 800, 24
MIN_SIZE, MAX_WIDTH, MAX_HEIGHT = 200, 3840, 2160
# websockify's port on the sandbox's loopback: the noVNC page and its websocket, seen through a preview.
NOVNC_PORT = 6080
VNC_PORT = 5900
NOVNC_DIR = "/usr/share/novnc"
RUNTIME = "/tmp/.jupyter-sandbox/desktop"
START_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0
MAX_TEXT = 10000
MAX_CLICKS = 10
MAX_SCROLL = 50
MAX_TYPE_DELAY_MS = 1000
MAX_WINDOWS = 200
PROGRAMS = ("Xvfb", "openbox", "x11vnc", "websockify", "xdotool", "xprop", "xwininfo")

BUTTONS = {"left": 1, "middle": 2, "right": 3}
SCROLL_BUTTONS = {"up": 4, "down": 5, "left": 6, "right": 7}
# Key names as a caller writes them (lower case), and the X keysym xdotool is given for each.
NAMED_KEYS = {
    "enter": "Return",
    "return": "Return",
    "tab": "Tab",
    "space": "space",
    "backspace": "BackSpace",
    "delete": "Delete",
    "del": "Delete",
    "escape": "Escape",
    "esc": "Escape",
    "insert": "Insert",
    "home": "Home",
    "end": "End",
    "pageup": "Prior",
    "page_up": "Prior",
    "pagedown": "Next",
    "page_down": "Next",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "ctrl": "ctrl",
    "control": "ctrl",
    "alt": "alt",
    "shift": "shift",
    "super": "super",
    "win": "super",
    "meta": "super",
    "cmd": "super",
    "capslock": "Caps_Lock",
    "printscreen": "Print",
    "print": "Print",
    "menu": "Menu",
    "pause": "Pause",
}
NAMED_KEYS.update({f"f{n}": f"F{n}" for n in range(1, 25)})
PUNCTUATION = {
    "-": "minus",
    "=": "equal",
    "[": "bracketleft",
    "]": "bracketright",
    "\\": "backslash",
    ";": "semicolon",
    "'": "apostrophe",
    "`": "grave",
    ",": "comma",
    ".": "period",
    "/": "slash",
    "+": "plus",
    "*": "asterisk",
    "!": "exclam",
    "@": "at",
    "#": "numbersign",
    "$": "dollar",
    "%": "percent",
    "^": "asciicircum",
    "&": "ampersand",
    "(": "parenleft",
    ")": "parenright",
    "_": "underscore",
    ":": "colon",
    '"': "quotedbl",
    "<": "less",
    ">": "greater",
    "?": "question",
    "{": "braceleft",
    "}": "braceright",
    "|": "bar",
    "~": "asciitilde",
}
MODIFIERS = {"ctrl", "alt", "shift", "super"}


class DesktopError(Exception):
    """A request the desktop cannot serve; `status` is the HTTP status the agent answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def keysym(name: Any) -> str:
    """The X keysym of a key name (a letter, digit, punctuation mark or a name such as Enter or F5)."""
    if not isinstance(name, str) or not name:
        raise DesktopError(400, "a key must be a non-empty string such as 'a', 'Enter' or 'F5'")
    if len(name) == 1 and (name.isascii() and name.isalnum()):
        return name
    if name in PUNCTUATION:
        return PUNCTUATION[name]
    known = NAMED_KEYS.get(name.lower())
    if known is None:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise DesktopError(
            400,
            f"unknown key {shown!r}: keys are single letters, digits and punctuation, or one of "
            "Enter, Tab, Space, Backspace, Delete, Escape, Insert, Home, End, PageUp, PageDown, Up, Down, "
            "Left, Right, Ctrl, Alt, Shift, Super, CapsLock, Print, Menu, Pause, F1-F24",
        )
    return known


def combination(keys: Any) -> str:
    """A hotkey such as 'ctrl+shift+t' (or a list of key names) as xdotool's keysym chain."""
    if isinstance(keys, str):
        parts = keys.split("+") if keys != "+" else ["+"]
        # "ctrl++" means ctrl and the plus key.
        if keys.endswith("++"):
            parts = [*keys[:-2].split("+"), "+"]
    elif isinstance(keys, list):
        parts = keys
    else:
        raise DesktopError(400, "keys must be a string such as 'ctrl+c' or a list of key names")
    if not parts or len(parts) > 6:
        raise DesktopError(400, "a hotkey has one to six keys, such as 'ctrl+alt+t'")
    symbols = [keysym(part.strip() if isinstance(part, str) and part.strip() else part) for part in parts]
    return "+".join(symbols)


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DesktopError(400, f"{name} must be a whole number")
    if not low <= value <= high:
        raise DesktopError(400, f"{name} must be from {low} to {high}, not {value}")
    return value


@dataclass
class Geometry:
    width: int
    height: int

    def point(self, body: dict[str, Any], x: str = "x", y: str = "y") -> tuple[int, int]:
        """A point on the screen: off the screen is refused, not clamped (the caller's aim was wrong)."""
        return (
            _integer(body.get(x), x, 0, self.width - 1),
            _integer(body.get(y), y, 0, self.height - 1),
        )


class Desktop:
    """The desktop's processes and the operations on them. One per agent; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.processes: dict[str, subprocess.Popen] = {}
        self.geometry = Geometry(DEFAULT_WIDTH, DEFAULT_HEIGHT)
        self.started_at: float | None = None

    # -- environment ------------------------------------------------------------------------

    def _own_env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": DISPLAY, "HOME": os.path.expanduser("~")}

    def _user_env(self) -> dict[str, str]:
        return {**environment.user(), "DISPLAY": DISPLAY}

    @staticmethod
    def available() -> list[str]:
        """The desktop's programs this image lacks ([] on the desktop image)."""
        missing = [name for name in PROGRAMS if shutil.which(name) is None]
        if not os.path.isfile(os.path.join(NOVNC_DIR, "vnc.html")):
            missing.append("novnc")
        return missing

    # -- lifecycle --------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(os.path.join(RUNTIME, f"{name}.log"), "ab")  # noqa: SIM115 (handed to the child)
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=os.path.expanduser("~"),
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        processes.OWN.add(process.pid)
        self.processes[name] = process
        return process

    def _wait_for(self, what: str, ready: Any, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if process.poll() is not None:
                raise DesktopError(500, f"{what} ended while starting: {self._log_tail(what)}")
            if time.monotonic() > deadline:
                raise DesktopError(504, f"{what} did not come up within {START_TIMEOUT:.0f} s")
            time.sleep(0.02)

    def _log_tail(self, name: str) -> str:
        try:
            with open(os.path.join(RUNTIME, f"{name}.log"), "rb") as handle:
                return handle.read()[-500:].decode("utf-8", "replace").strip() or "no output"
        except OSError:
            return "no output"

    def _display_ready(self) -> bool:
        return (
            subprocess.run(
                ["xprop", "-root", "-display", DISPLAY, "_NET_SUPPORTED"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self._own_env(),
                timeout=COMMAND_TIMEOUT,
            ).returncode
            == 0
        )

    def _wm_ready(self) -> bool:
        result = subprocess.run(
            ["xprop", "-root", "-display", DISPLAY, "_NET_SUPPORTING_WM_CHECK"],
            capture_output=True,
            env=self._own_env(),
            timeout=COMMAND_TIMEOUT,
        )
        return result.returncode == 0 and b"window id" in result.stdout

    def running(self) -> bool:
        with self.lock:
            return bool(self.processes) and all(p.poll() is None for p in self.processes.values())

    def start(self, width: Any = None, height: Any = None) -> dict[str, Any]:
        width = DEFAULT_WIDTH if width is None else _integer(width, "width", MIN_SIZE, MAX_WIDTH)
        height = DEFAULT_HEIGHT if height is None else _integer(height, "height", MIN_SIZE, MAX_HEIGHT)
        missing = self.available()
        if missing:
            raise DesktopError(
                409,
                f"this sandbox's image has no desktop (it lacks {', '.join(missing)}); create the sandbox "
                "with the desktop image, jupyter-sandbox/desktop, built by `jupyter sandbox image build --desktop`",
            )
        with self.lock:
            if self.running():
                return self.status()
            self._stop_all()
            os.makedirs(RUNTIME, mode=0o700, exist_ok=True)
            self.geometry = Geometry(width, height)
            try:
                xvfb = self._spawn(
                    "Xvfb",
                    ["Xvfb", DISPLAY, "-screen", "0", f"{width}x{height}x{DEPTH}", "-nolisten", "tcp", "-noreset"],
                    self._own_env(),
                )
                self._wait_for("Xvfb", self._display_ready, xvfb)
                wm = self._spawn("openbox", ["openbox", "--sm-disable"], self._user_env())
                self._wait_for("openbox", self._wm_ready, wm)
                vnc = self._spawn(
                    "x11vnc",
                    # The sandbox's loopback only (no IPv6, no other address): websockify is its client.
                    [
                        "x11vnc",
                        "-display",
                        DISPLAY,
                        "-rfbport",
                        str(VNC_PORT),
                        "-localhost",
                        "-noipv6",
                        "-nopw",
                        "-forever",
                        "-shared",
                        "-quiet",
                        "-noxdamage",
                        "-nossl",
                        "-norc",
                    ],
                    self._own_env(),
                )
                self._wait_for("x11vnc", lambda: _listening(VNC_PORT), vnc)
                bridge = self._spawn(
                    "websockify",
                    ["websockify", "--web", NOVNC_DIR, f"127.0.0.1:{NOVNC_PORT}", f"127.0.0.1:{VNC_PORT}"],
                    self._own_env(),
                )
                self._wait_for("websockify", lambda: _listening(NOVNC_PORT), bridge)
            except BaseException:
                self._stop_all()
                raise
            self.started_at = time.time()
            # What the sandbox starts from now on (commands, terminals, a restarted kernel) sees the display.
            environment.set_user_variable("DISPLAY", DISPLAY)
            return self.status()

    def _stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except OSError:
                    pass
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    process.wait(timeout=3)
            processes.OWN.discard(process.pid)
        self.started_at = None

    def stop(self) -> dict[str, Any]:
        with self.lock:
            self._stop_all()
            environment.set_user_variable("DISPLAY", None)
            return self.status()

    def status(self) -> dict[str, Any]:
        with self.lock:
            states = {name: process.poll() is None for name, process in self.processes.items()}
            if not states:
                state = "inactive"
            elif all(states.values()):
                state = "active"
            else:
                state = "partial"
            return {
                "status": state,
                "processes": [{"name": n, "running": r} for n, r in states.items()],
                "display": DISPLAY,
                "width": self.geometry.width,
                "height": self.geometry.height,
                "novnc_port": NOVNC_PORT,
                "started_at": self.started_at,
                "available": not self.available(),
            }

    def _require(self) -> None:
        if not self.running():
            raise DesktopError(409, "the desktop is not running; start it first (POST .../desktop/start)")

    # -- xdotool ------------------------------------------------------------------------------

    def _xdotool(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        self._require()
        try:
            result = subprocess.run(
                ["xdotool", *args], capture_output=True, env=self._own_env(), timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise DesktopError(504, f"xdotool did not finish within {timeout:.0f} s") from None
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip()[-300:]
            raise DesktopError(500, f"xdotool failed: {message or result.returncode}")
        return result.stdout.decode("utf-8", "replace")

    def position(self) -> dict[str, int]:
        values = dict(
            line.split("=", 1) for line in self._xdotool("getmouselocation", "--shell").splitlines() if "=" in line
        )
        return {"x": int(values.get("X", 0)), "y": int(values.get("Y", 0))}

    def mouse(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        self._require()
        geometry = self.geometry
        button_name = body.get("button", "left")
        if action in ("click", "drag") and (not isinstance(button_name, str) or button_name not in BUTTONS):
            raise DesktopError(400, f"button must be one of {', '.join(BUTTONS)}")
        if action == "move":
            x, y = geometry.point(body)
            self._xdotool("mousemove", "--sync", str(x), str(y))
        elif action == "click":
            clicks = 2 if body.get("double") is True else body.get("count", 1)
            clicks = _integer(clicks, "count", 1, MAX_CLICKS)
            args = []
            if body.get("x") is not None or body.get("y") is not None:
                x, y = geometry.point(body)
                args = ["mousemove", "--sync", str(x), str(y)]
            self._xdotool(*args, "click", "--repeat", str(clicks), "--delay", "60", str(BUTTONS[button_name]))
        elif action == "drag":
            start = geometry.point(body, "start_x", "start_y")
            end = geometry.point(body, "end_x", "end_y")
            button = str(BUTTONS[button_name])
            self._xdotool(
                "mousemove", "--sync", str(start[0]), str(start[1]), "mousedown", button, "sleep", "0.05",
                "mousemove", "--sync", str(end[0]), str(end[1]), "sleep", "0.05", "mouseup", button,
            )  # fmt: skip
        elif action == "scroll":
            direction = body.get("direction", "down")
            if not isinstance(direction, str) or direction not in SCROLL_BUTTONS:
                raise DesktopError(400, f"direction must be one of {', '.join(SCROLL_BUTTONS)}")
            amount = _integer(body.get("amount", 1), "amount", 1, MAX_SCROLL)
            args = []
            if body.get("x") is not None or body.get("y") is not None:
                x, y = geometry.point(body)
                args = ["mousemove", "--sync", str(x), str(y)]
            self._xdotool(*args, "click", "--repeat", str(amount), "--delay", "20", str(SCROLL_BUTTONS[direction]))
        else:
            raise DesktopError(404, f"unknown mouse action {action!r}: move, click, drag or scroll")
        return self.position()

    def keyboard(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        self._require()
        if action == "type":
            text = body.get("text")
            if not isinstance(text, str) or not text:
                raise DesktopError(400, "text must be a non-empty string")
            if len(text) > MAX_TEXT:
                raise DesktopError(413, f"text is {len(text):,} characters; at most {MAX_TEXT:,} are typed at once")
            if any(ord(ch) < 32 and ch not in "\n\t" for ch in text) or "\x7f" in text:
                raise DesktopError(400, "text may not hold control characters other than newline and tab")
            delay = _integer(body.get("delay", 12), "delay", 0, MAX_TYPE_DELAY_MS)
            timeout = COMMAND_TIMEOUT + len(text) * (delay + 5) / 1000
            self._xdotool("type", "--delay", str(delay), "--", text, timeout=timeout)
            return {"typed": len(text)}
        if action == "press":
            key = keysym(body.get("key"))
            modifiers = body.get("modifiers") or []
            if not isinstance(modifiers, list) or len(modifiers) > 4:
                raise DesktopError(400, "modifiers must be a list of at most four of ctrl, alt, shift, super")
            names = [keysym(m) for m in modifiers]
            if any(name not in MODIFIERS for name in names):
                raise DesktopError(400, "modifiers may only be ctrl, alt, shift and super")
            chain = "+".join([*names, key])
            self._xdotool("key", "--clearmodifiers", "--", chain)
            return {"keys": chain}
        if action == "hotkey":
            chain = combination(body.get("keys"))
            self._xdotool("key", "--clearmodifiers", "--", chain)
            return {"keys": chain}
        raise DesktopError(404, f"unknown keyboard action {action!r}: type, press or hotkey")

    # -- display and windows --------------------------------------------------------------------

    def display(self) -> dict[str, Any]:
        self._require()
        return {
            "display": DISPLAY,
            "width": self.geometry.width,
            "height": self.geometry.height,
            "depth": DEPTH,
            "cursor": self.position(),
        }

    def _client_list(self) -> list[int]:
        self._require()
        result = subprocess.run(
            ["xprop", "-root", "-display", DISPLAY, "_NET_CLIENT_LIST"],
            capture_output=True,
            env=self._own_env(),
            timeout=COMMAND_TIMEOUT,
        )
        text = result.stdout.decode("ascii", "replace")
        return [int(h, 16) for h in re.findall(r"0x[0-9a-fA-F]+", text.partition("#")[2])][:MAX_WINDOWS]

    def windows(self) -> dict[str, Any]:
        ids = self._client_list()
        try:
            active = int(self._xdotool("getactivewindow").strip() or 0)
        except (DesktopError, ValueError):
            active = 0
        listed = []
        for window in ids:
            try:
                name = self._xdotool("getwindowname", str(window)).rstrip("\n")
                geometry = self._geometry(window)
            except DesktopError:
                continue  # gone between the list and the question
            listed.append(
                {
                    "id": window,
                    "title": name[:1000],
                    **geometry,
                    "active": window == active,
                }
            )
        return {"windows": listed}

    def _geometry(self, window: int) -> dict[str, int]:
        """The window's place on the screen and size. (xdotool's own answer counts a reparenting
        window manager's frame twice; xwininfo's absolute corner is where the pixels are.)"""
        result = subprocess.run(
            ["xwininfo", "-display", DISPLAY, "-id", str(window)],
            capture_output=True,
            env=self._own_env(),
            timeout=COMMAND_TIMEOUT,
        )
        if result.returncode != 0:
            raise DesktopError(404, f"there is no window {window} on the desktop")
        text = result.stdout.decode("utf-8", "replace")
        fields = {
            "x": r"Absolute upper-left X:\s*(-?\d+)",
            "y": r"Absolute upper-left Y:\s*(-?\d+)",
            "width": r"\bWidth:\s*(\d+)",
            "height": r"\bHeight:\s*(\d+)",
        }
        found = {name: re.search(pattern, text) for name, pattern in fields.items()}
        return {name: int(match.group(1)) if match else 0 for name, match in found.items()}

    def focus(self, window: Any) -> dict[str, Any]:
        if isinstance(window, bool) or not isinstance(window, int):
            raise DesktopError(400, "id must be a window id, a whole number from the window list")
        if window not in self._client_list():
            raise DesktopError(404, f"there is no window {window} on the desktop")
        self._xdotool("windowactivate", "--sync", str(window), timeout=10)
        return {"id": window, "active": True}

    # -- screenshots ------------------------------------------------------------------------------

    def screenshot(self, options: dict[str, Any]) -> tuple[bytes, str, dict[str, int]]:
        """(image bytes, content type, {width, height}) of the screen or a region of it."""
        self._require()
        geometry = self.geometry
        image_format = options.get("format", "png")
        if image_format not in ("png", "jpeg"):
            raise DesktopError(400, "format must be png or jpeg")
        quality = _integer(options.get("quality", 80), "quality", 1, 100)
        scale = options.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.1 <= scale <= 1.0:
            raise DesktopError(400, "scale must be a number from 0.1 to 1")
        box = (0, 0, geometry.width, geometry.height)
        region = [options.get(k) for k in ("x", "y", "width", "height")]
        if any(v is not None for v in region):
            if any(v is None for v in region):
                raise DesktopError(400, "a region needs all of x, y, width and height")
            x = _integer(region[0], "x", 0, geometry.width - 1)
            y = _integer(region[1], "y", 0, geometry.height - 1)
            width = _integer(region[2], "width", 1, geometry.width - x)
            height = _integer(region[3], "height", 1, geometry.height - y)
            box = (x, y, x + width, y + height)
        from PIL import Image, ImageDraw, ImageGrab  # the desktop image's own Pillow (root-owned)

        image = ImageGrab.grab(bbox=box, xdisplay=DISPLAY)
        if options.get("cursor"):
            pointer = self.position()
            draw = ImageDraw.Draw(image)
            px, py = pointer["x"] - box[0], pointer["y"] - box[1]
            arrow = [(px, py), (px, py + 17), (px + 4, py + 13), (px + 7, py + 20), (px + 9, py + 19),
                     (px + 6, py + 12), (px + 12, py + 12)]  # fmt: skip
            draw.polygon(arrow, fill=(255, 255, 255), outline=(0, 0, 0))
        if scale != 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        if image_format == "png":
            image.save(buffer, "PNG", compress_level=1)
        else:
            image.convert("RGB").save(buffer, "JPEG", quality=quality)
        return buffer.getvalue(), f"image/{image_format}", {"width": image.width, "height": image.height}


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    try:
        with open("/proc/net/tcp") as handle:
            return any(
                line.split()[1] == f"0100007F:{port:04X}" and line.split()[3] == "0A" for line in handle.readlines()[1:]
            )
    except OSError:
        return False


DESKTOP = Desktop()
