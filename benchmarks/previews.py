"""Preview links against going straight to the app in the container.

- small GET: requests per second and p50 latency, through the preview vs straight to the container's
  address on its bridge network (and through jupyter-server-proxy when it is installed);
- websocket echo round trip;
- a 500 MB download. Target: preview >= 0.5 of direct for small GETs, >= 0.7 for the download.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from rest_api import Api, start_server

APP = Path(__file__).resolve().parents[1] / "tests" / "preview_app.py"
PORT = 3000


def small_gets(host: str, address: tuple[str, int], headers: dict, count: int) -> tuple[float, float]:
    """(requests per second, p50 seconds), one keep-alive connection, sequential requests."""
    connection = http.client.HTTPConnection(*address, timeout=30)
    times = []
    started = time.perf_counter()
    for _ in range(count):
        begun = time.perf_counter()
        connection.request("GET", "/echo", headers={"Host": host, **headers})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = http.client.HTTPConnection(*address, timeout=30)
        times.append(time.perf_counter() - begun)
    return count / (time.perf_counter() - started), statistics.median(times)


def download(host: str, address: tuple[str, int], headers: dict, megabytes: int) -> float:
    connection = http.client.HTTPConnection(*address, timeout=300)
    started = time.perf_counter()
    connection.request("GET", f"/big?mb={megabytes}", headers={"Host": host, **headers})
    response = connection.getresponse()
    received = 0
    while True:
        data = response.read(1024 * 1024)
        if not data:
            break
        received += len(data)
    assert received == megabytes * 1024 * 1024
    return time.perf_counter() - started


def websocket_round_trips(url: str, headers: dict, count: int) -> float:
    async def run() -> float:
        connection = await websocket_connect(HTTPRequest(url, headers=headers))
        times = []
        for _ in range(count):
            begun = time.perf_counter()
            await connection.write_message("ping")
            assert await connection.read_message() == "ping"
            times.append(time.perf_counter() - begun)
        connection.close()
        return statistics.median(times)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--megabytes", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        process, port, token = start_server(root)
        api = Api(port, token)
        sandbox = api.json("POST", "/sandbox/api/sandboxes", {})
        box = f"/sandbox/api/sandboxes/{sandbox['id']}"
        try:
            connection = api.connection()
            connection.request("PUT", f"{box}/files/content?path=preview_app.py", body=APP.read_bytes(), headers=api.headers)
            connection.getresponse().read()
            api.json("POST", f"{box}/sessions", {"id": "web"})
            api.json("POST", f"{box}/sessions/web/commands",
                     {"command": f"python3 preview_app.py {PORT} 0.0.0.0", "run_async": True})
            time.sleep(1.5)
            preview = api.json("POST", f"{box}/previews", {"port": PORT})
            address = json.loads(subprocess.run(
                ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", sandbox["name"]],
                capture_output=True, text=True, check=True).stdout)
            container_ip = next(iter(address.values()))["IPAddress"]
            via_preview = (f"{PORT}-{sandbox['id']}.localhost:{port}", ("127.0.0.1", port),
                           {"X-Sandbox-Preview-Token": preview["token"]})
            direct = (f"{container_ip}:{PORT}", (container_ip, PORT), {})

            small_gets(*via_preview, 50), small_gets(*direct, 50)  # warm up
            rates = {"preview": [], "direct": []}
            for _ in range(3):
                rates["direct"].append(small_gets(*direct, args.requests))
                rates["preview"].append(small_gets(*via_preview, args.requests))
            print(f"small GET, {args.requests} sequential requests, median of 3 runs")
            for name in ("direct", "preview"):
                rps = statistics.median(r for r, _ in rates[name])
                p50 = statistics.median(p for _, p in rates[name])
                print(f"  {name:8} {rps:7.0f} req/s   p50 {p50 * 1000:6.2f} ms")
            ratio = statistics.median(r for r, _ in rates["preview"]) / statistics.median(r for r, _ in rates["direct"])
            print(f"  preview / direct requests per second = {ratio:.2f}   (target >= 0.5)")

            ws_direct = websocket_round_trips(f"ws://{container_ip}:{PORT}/ws", {}, 200)
            ws_preview = websocket_round_trips(f"ws://127.0.0.1:{port}/ws", {"Host": via_preview[0], **via_preview[2]}, 200)
            print(f"websocket echo round trip, p50 of 200: direct {ws_direct * 1000:.2f} ms, "
                  f"preview {ws_preview * 1000:.2f} ms ({ws_preview / ws_direct:.2f} x)")

            downloads = {"direct": [], "preview": []}
            for _ in range(3):
                downloads["direct"].append(download(*direct, args.megabytes))
                downloads["preview"].append(download(*via_preview, args.megabytes))
            d, p = statistics.median(downloads["direct"]), statistics.median(downloads["preview"])
            print(f"{args.megabytes} MB download, median of 3: direct {args.megabytes / d:.0f} MB/s, "
                  f"preview {args.megabytes / p:.0f} MB/s   preview / direct = {d / p:.2f}   (target >= 0.7)")
        finally:
            api.json("DELETE", box)
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
