"""The blocking callers' agent calls (kernel magics and lifecycle, the manager, the git relay): one
JSON call, a streamed command's output, a download, through the one typed client run by
`agent_client.run_blocking` (a private event loop per call).

Baseline, in the same run: the same requests made with the standard library's blocking
http.client, as the removed second client did, against the same stand-in agent on loopback (no
Docker, so only the client side differs).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from jupyter_sandbox.sandbox.agent_client import AgentClient, run_blocking

LINES = 2000
FILE = b"z" * (32 * 1024 * 1024)
EXEC_BODY = b"".join(json.dumps({"stream": "stdout", "text": f"line {i}\n"}).encode() + b"\n" for i in range(LINES))
EXEC_BODY += b'{"exit_code": 0}\n'


class StandIn(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/files/content"):
            self._send(FILE, "application/octet-stream")
        else:
            self._send(b'{"status": "ok", "kernel": {"running": true}}', "application/json")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(EXEC_BODY, "application/x-ndjson")


def baseline_call(port: int, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers={"Authorization": "token t"})
    return connection.getresponse()


def baseline_health(port: int) -> None:
    json.loads(baseline_call(port, "GET", "/health").read())


def baseline_exec(port: int) -> None:
    response = baseline_call(port, "POST", "/process/exec", json.dumps({"command": "x", "stream": True}).encode())
    while True:
        line = response.readline(1024 * 1024 + 1)
        if not line or "exit_code" in json.loads(line):
            return


def baseline_download(port: int) -> None:
    response = baseline_call(port, "GET", "/files/content?path=f")
    sink = io.BytesIO()
    while chunk := response.read(256 * 1024):
        sink.write(chunk)


def timed(function: Callable[[], Any], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="calls per JSON measurement")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = AgentClient.at("127.0.0.1", port, "t")
    ours: dict[str, Callable[[], Any]] = {
        "JSON call (GET /health)": lambda: run_blocking(lambda: client.call("GET", "/health")),
        f"streamed exec ({LINES} lines)": lambda: run_blocking(
            lambda: client.processes.exec_stream("x", lambda name, text: None, cancel=threading.Event())
        ),
        "download (32 MiB)": lambda: run_blocking(lambda: client.files.download_to("f", io.BytesIO(), len(FILE))),
    }
    theirs: dict[str, Callable[[], Any]] = {
        "JSON call (GET /health)": lambda: baseline_health(port),
        f"streamed exec ({LINES} lines)": lambda: baseline_exec(port),
        "download (32 MiB)": lambda: baseline_download(port),
    }
    print(f"{'call':<30} {'run_blocking(AgentClient) ms':>30} {'baseline http.client ms':>25}")
    try:
        for name in ours:
            count = args.count if name.startswith("JSON") else max(5, args.count // 20)
            timed(ours[name], 3)  # warm both paths up
            timed(theirs[name], 3)
            mine, base = statistics.median(timed(ours[name], count)), statistics.median(timed(theirs[name], count))
            print(f"{name:<30} {mine * 1000:>30.2f} {base * 1000:>25.2f}")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
