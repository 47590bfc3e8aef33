"""Preview links against going straight to the app in the container.

- small GET: requests per second and p50 latency, through the preview vs straight to the container's
  address on its bridge network (and through jupyter-server-proxy when it is installed). The preview
  reaches an app listening on all addresses straight; one listening on the sandbox's loopback only
  (`preview-lo`, the same app on another port) through the agent's tunnel;
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

from common import Api, start_server
from harness import drain, layered_venv
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

APP = Path(__file__).resolve().parents[1] / "tests" / "preview_app.py"
PORT = 3000
LOOPBACK_PORT = 3001


def small_gets(host: str, address: tuple[str, int], headers: dict, count: int, prefix: str = "") -> tuple[float, float]:
    """(requests per second, p50 seconds), one keep-alive connection, sequential requests."""
    connection = http.client.HTTPConnection(*address, timeout=30)
    times = []
    started = time.perf_counter()
    for _ in range(count):
        begun = time.perf_counter()
        connection.request("GET", prefix + "/echo", headers={"Host": host, **headers})
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
    assert drain(connection.getresponse()) == megabytes * 1024 * 1024
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


def published_port_app(image: str) -> tuple[str, int]:
    """The same app in a plain container of the same image, reached through a port Docker publishes on
    127.0.0.1 (the usual way to reach a container from the host)."""
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "--name",
            "jupyter-sandbox-bench-app",
            "-p",
            f"127.0.0.1::{PORT}",
            "-v",
            f"{APP}:/app.py:ro",
            image,
            "python3",
            "/app.py",
            str(PORT),
            "0.0.0.0",
        ],
        check=True,
        capture_output=True,
    )
    mapping = subprocess.run(
        ["docker", "port", "jupyter-sandbox-bench-app", str(PORT)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    time.sleep(1.5)
    return "127.0.0.1", int(mapping.rsplit(":", 1)[1])


def jupyter_server_proxy(container_ip: str) -> tuple[subprocess.Popen, int, str, Path] | None:
    """jupyter-server-proxy in a side environment, in front of the same app; None where it will not install."""
    import os

    side = Path(tempfile.mkdtemp(prefix="jsp-"))
    try:
        python = layered_venv(side / "venv")
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "jupyter-server-proxy"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    config = side / "config"
    config.mkdir()
    (config / "jupyter_server_config.py").write_text(f"c.ServerProxy.host_allowlist = ['{container_ip}']\n")
    os.environ["JUPYTER_CONFIG_DIR"] = str(config)
    try:
        process, port, token = start_server(str(side), python=str(python))
    finally:
        del os.environ["JUPYTER_CONFIG_DIR"]
    return process, port, token, side


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
            connection.request(
                "PUT", f"{box}/files/content?path=preview_app.py", body=APP.read_bytes(), headers=api.headers
            )
            connection.getresponse().read()
            api.json("POST", f"{box}/sessions", {"id": "web"})
            api.json(
                "POST",
                f"{box}/sessions/web/commands",
                {"command": f"python3 preview_app.py {PORT} 0.0.0.0", "run_async": True},
            )
            api.json("POST", f"{box}/sessions", {"id": "web-lo"})
            api.json(
                "POST",
                f"{box}/sessions/web-lo/commands",
                {"command": f"python3 preview_app.py {LOOPBACK_PORT} 127.0.0.1", "run_async": True},
            )
            for _ in range(100):  # both apps listening before the first request
                if {PORT, LOOPBACK_PORT} <= set(api.json("GET", f"{box}/ports")["ports"]):
                    break
                time.sleep(0.2)
            preview = api.json("POST", f"{box}/previews", {"port": PORT})
            preview_lo = api.json("POST", f"{box}/previews", {"port": LOOPBACK_PORT})
            address = json.loads(
                subprocess.run(
                    ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", sandbox["name"]],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            container_ip = next(iter(address.values()))["IPAddress"]
            via_preview = (
                f"{PORT}-{sandbox['id']}.localhost:{port}",
                ("127.0.0.1", port),
                {"X-Sandbox-Preview-Token": preview["token"]},
            )
            direct = (f"{container_ip}:{PORT}", (container_ip, PORT), {})

            published = published_port_app(sandbox["image"])
            via_published = (f"127.0.0.1:{published[1]}", published, {})
            via_tunnel = (
                f"{LOOPBACK_PORT}-{sandbox['id']}.localhost:{port}",
                ("127.0.0.1", port),
                {"X-Sandbox-Preview-Token": preview_lo["token"]},
            )
            candidates = {
                "direct": (*direct, ""),
                "published": (*via_published, ""),
                "preview": (*via_preview, ""),
                "preview-lo": (*via_tunnel, ""),
            }
            side = jupyter_server_proxy(container_ip)
            if side is not None:
                candidates["jsp"] = (
                    f"127.0.0.1:{side[1]}",
                    ("127.0.0.1", side[1]),
                    {"Authorization": f"token {side[2]}"},
                    f"/proxy/{container_ip}:{PORT}",
                )
            for host, address, headers, prefix in candidates.values():
                small_gets(host, address, headers, 50, prefix)  # warm up
            rates = {name: [] for name in candidates}
            for _ in range(3):
                for name, (host, address, headers, prefix) in candidates.items():
                    rates[name].append(small_gets(host, address, headers, args.requests, prefix))
            print(
                f"small GET, {args.requests} sequential requests, median of 3 runs "
                "(direct: the container's bridge address; published: a port Docker publishes on 127.0.0.1; "
                "jsp: jupyter-server-proxy)"
            )
            for name in rates:
                rps = statistics.median(r for r, _ in rates[name])
                p50 = statistics.median(p for _, p in rates[name])
                print(f"  {name:8} {rps:7.0f} req/s   p50 {p50 * 1000:6.2f} ms")
            ratio = statistics.median(r for r, _ in rates["preview"]) / statistics.median(r for r, _ in rates["direct"])
            print(f"  preview / direct requests per second = {ratio:.2f}   (target >= 0.5)")
            tunnel_ratio = statistics.median(r for r, _ in rates["preview-lo"]) / statistics.median(
                r for r, _ in rates["direct"]
            )
            print(
                f"  preview-lo / direct requests per second = {tunnel_ratio:.2f}   (an app on the sandbox's loopback)"
            )
            published_ratio = statistics.median(r for r, _ in rates["preview"]) / statistics.median(
                r for r, _ in rates["published"]
            )
            print(f"  preview / published-port requests per second = {published_ratio:.2f}")
            if "jsp" in rates:
                jsp = statistics.median(r for r, _ in rates["preview"]) / statistics.median(r for r, _ in rates["jsp"])
                print(f"  preview / jupyter-server-proxy requests per second = {jsp:.2f}   (target > 1)")
            else:
                print("  jupyter-server-proxy did not install here; no comparison")

            ws_direct = websocket_round_trips(f"ws://{container_ip}:{PORT}/ws", {}, 200)
            ws_preview = websocket_round_trips(
                f"ws://127.0.0.1:{port}/ws", {"Host": via_preview[0], **via_preview[2]}, 200
            )
            ws_tunnel = websocket_round_trips(
                f"ws://127.0.0.1:{port}/ws", {"Host": via_tunnel[0], **via_tunnel[2]}, 200
            )
            print(
                f"websocket echo round trip, p50 of 200: direct {ws_direct * 1000:.2f} ms, "
                f"preview {ws_preview * 1000:.2f} ms ({ws_preview / ws_direct:.2f} x), "
                f"preview-lo {ws_tunnel * 1000:.2f} ms ({ws_tunnel / ws_direct:.2f} x)"
            )

            downloads = {"direct": [], "preview": [], "preview-lo": []}
            for _ in range(3):
                downloads["direct"].append(download(*direct, args.megabytes))
                downloads["preview"].append(download(*via_preview, args.megabytes))
                downloads["preview-lo"].append(download(*via_tunnel, args.megabytes))
            d, p, lo = (statistics.median(downloads[name]) for name in ("direct", "preview", "preview-lo"))
            print(
                f"{args.megabytes} MB download, median of 3: direct {args.megabytes / d:.0f} MB/s, "
                f"preview {args.megabytes / p:.0f} MB/s, preview-lo {args.megabytes / lo:.0f} MB/s   "
                f"preview / direct = {d / p:.2f}   (target >= 0.7), preview-lo / direct = {d / lo:.2f}"
            )
        finally:
            subprocess.run(["docker", "rm", "-f", "jupyter-sandbox-bench-app"], capture_output=True)
            if "side" in locals() and side is not None:
                side[0].terminate()
            api.json("DELETE", box)
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
