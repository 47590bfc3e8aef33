"""Computer use: screenshot latency and input-to-pixels latency, through the REST API against the same
work done inside the sandbox itself.

- screenshot: a full 1280x800 PNG through GET .../desktop/screenshot (Jupyter server, agent, capture,
  encoding), beside the raw capture inside the container (`xwd -root`, no encoding, no transport) and
  the agent's own capture-and-encode (Pillow) timed in the container;
- input to pixels: a key typed through POST .../desktop/keyboard/type until a screenshot of the
  terminal's window through the API shows it, beside the same loop inside the container (xdotool, then
  captures of the same region until they change).

Needs the desktop image (`jupyter sandbox image build --desktop`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import tempfile
import time

from common import Api, start_server

from jupyter_sandbox.sandbox.desktop_image import DESKTOP_IMAGE

INSIDE = r"""
import io, json, subprocess, sys, time
from PIL import ImageGrab
count, x, y, w, h = (int(v) for v in sys.argv[1:6])
box = (x, y, x + w, y + h)
def timed(function):
    started = time.perf_counter(); function(); return time.perf_counter() - started
xwd = [timed(lambda: subprocess.run(["xwd", "-root", "-silent"], stdout=subprocess.DEVNULL, check=True))
       for _ in range(count)]
def encode():
    buffer = io.BytesIO(); ImageGrab.grab(xdisplay=":99").save(buffer, "PNG", compress_level=1)
pillow = [timed(encode) for _ in range(count)]
typed = []
for _ in range(count):
    before = ImageGrab.grab(bbox=box, xdisplay=":99").tobytes()
    started = time.perf_counter()
    subprocess.run(["xdotool", "type", "x"], check=True)
    while ImageGrab.grab(bbox=box, xdisplay=":99").tobytes() == before:
        if time.perf_counter() - started > 5:
            break
    else:
        typed.append(time.perf_counter() - started)
print(json.dumps({"xwd": xwd, "pillow": pillow, "typed": typed}))
"""


ROUND_LIMIT = 5.0  # seconds a typed key may take to show before the round counts as missed


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)] * 1000 if values else float("nan")


class Desktop:
    def __init__(self, api: Api, sandbox_id: str) -> None:
        self.api, self.box = api, f"/sandbox/api/sandboxes/{sandbox_id}"
        self.connection = api.connection()

    def get(self, path: str) -> bytes:
        self.connection.request("GET", self.box + path, headers=self.api.headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status == 502:  # one retry: a connection to the agent that went stale
            self.connection.request("GET", self.box + path, headers=self.api.headers)
            response = self.connection.getresponse()
            data = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {data[:300]!r}")
        return data

    def post(self, path: str, body: dict) -> dict:
        headers = {**self.api.headers, "Content-Type": "application/json"}
        self.connection.request("POST", self.box + path, body=json.dumps(body), headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {data[:300]!r}")
        return json.loads(data)


def terminal(api: Api, desktop: Desktop, sandbox_id: str, title: str) -> dict:
    box = f"/sandbox/api/sandboxes/{sandbox_id}"
    api.json("POST", f"{box}/sessions", {"id": title})
    api.json(
        "POST",
        f"{box}/sessions/{title}/commands",
        {"command": f"xterm -T {title} -xrm 'XTerm*allowTitleOps: false' -geometry 80x24+40+40", "run_async": True},
    )
    for _ in range(300):
        found = [w for w in api.json("GET", f"{box}/desktop/windows")["windows"] if w["title"] == title]
        if found:
            desktop.post("/desktop/windows/focus", {"id": found[0]["id"]})
            time.sleep(1)  # the shell's prompt
            return found[0]
        time.sleep(0.1)
    raise RuntimeError("the terminal did not open")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        process, port, token = start_server(root)
        api = Api(port, token)
        sandbox = api.json("POST", "/sandbox/api/sandboxes", {"image": DESKTOP_IMAGE})
        sandbox_id = sandbox["id"]
        box = f"/sandbox/api/sandboxes/{sandbox_id}"
        try:
            api.json("POST", f"{box}/desktop/start", {})
            desktop = Desktop(api, sandbox_id)
            window = terminal(api, desktop, sandbox_id, "bench")
            region = f"x={window['x']}&y={window['y']}&width={window['width']}&height={window['height']}"

            desktop.get("/desktop/screenshot")  # warm: Pillow imported in the agent
            shots = []
            for _ in range(args.count):
                started = time.perf_counter()
                data = desktop.get("/desktop/screenshot?format=png")
                shots.append(time.perf_counter() - started)
            size = len(data)

            typed, missed = [], 0
            for _ in range(args.count):
                before = desktop.get(f"/desktop/screenshot?{region}")
                started = time.perf_counter()
                desktop.post("/desktop/keyboard/type", {"text": "x", "delay": 0})
                while desktop.get(f"/desktop/screenshot?{region}") == before:
                    if time.perf_counter() - started > ROUND_LIMIT:
                        missed += 1
                        break
                else:
                    typed.append(time.perf_counter() - started)

            desktop.post("/desktop/keyboard/hotkey", {"keys": "ctrl+u"})
            inside = api.json(
                "POST",
                f"{box}/process/exec",
                {
                    "command": "DISPLAY=:99 /opt/sandbox-python/bin/python3 -c "
                    + shlex.quote(INSIDE)
                    + f" {args.count} {window['x']} {window['y']} {window['width']} {window['height']}",
                    "timeout": 600,
                },
            )
            if inside["exit_code"] != 0:
                raise RuntimeError(inside["stderr"][-2000:])
            baseline = json.loads(inside["stdout"].strip().splitlines()[-1])
        finally:
            api.json("DELETE", box)
            process.terminate()
            process.wait(timeout=30)

    print(f"desktop 1280x800, {args.count} rounds each")
    print(
        f"screenshot PNG through the API:  p50 {p50(shots):7.1f} ms  p90 {p90(shots):7.1f} ms  ({size / 1024:.0f} KiB)"
    )
    print(f"  baseline, raw xwd in the sandbox: p50 {p50(baseline['xwd']):7.1f} ms  p90 {p90(baseline['xwd']):7.1f} ms")
    print(
        f"  capture + PNG in the sandbox:     p50 {p50(baseline['pillow']):7.1f} ms  "
        f"p90 {p90(baseline['pillow']):7.1f} ms"
    )
    print(f"  ratio API / raw xwd: {p50(shots) / p50(baseline['xwd']):.2f}")
    print(
        f"input to pixels through the API:  p50 {p50(typed):7.1f} ms  p90 {p90(typed):7.1f} ms"
        f"  ({missed} of {args.count} rounds not seen within {ROUND_LIMIT:.0f} s)"
    )
    print(
        f"  baseline, xdotool + captures in the sandbox: p50 {p50(baseline['typed']):7.1f} ms  "
        f"p90 {p90(baseline['typed']):7.1f} ms"
    )
    print(f"  ratio API / in-sandbox: {p50(typed) / p50(baseline['typed']):.2f}")


if __name__ == "__main__":
    main()
