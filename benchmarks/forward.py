"""Hub mode's forwarder: a small REST call and a 50 MB upload through a user's server in hub mode, beside
the same calls sent straight to the service, in the same run.

The service is the real one (`jupyter sandbox service` with a tokens file, tests/service_support.py);
the user's server runs in hub mode with no engine (DOCKER_HOST names a socket that does not exist)
and forwards /sandbox/api to it. The figure is the forwarder's cost:
latency added to a 1 KB read (p50/p95 over 200), and upload throughput through it / straight.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import Api, free_port, server_up
from harness import server_argv
from rest_api import upload
from service_support import ServiceProcess

NO_ENGINE = "unix:///nonexistent/jupyter-sandbox-bench/docker.sock"
CHUNK = 1024 * 1024


def small_reads(api: Api, box: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        connection = api.connection()
        started = time.perf_counter()
        connection.request("GET", f"{box}/files/content?path=small.bin", headers=api.headers)
        response = connection.getresponse()
        body = response.read()
        times.append(time.perf_counter() - started)
        assert response.status == 200 and len(body) == 1024, (response.status, body[:200])
        connection.close()
    return sorted(times)


def hub_mode_server(root: str, service_port: int, service_token: str) -> tuple[subprocess.Popen, int, str]:
    port, token = free_port(), os.urandom(16).hex()
    env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1",
        "DOCKER_HOST": NO_ENGINE,
        "JUPYTER_SANDBOX_SERVICE_URL": f"http://127.0.0.1:{service_port}",
        "JUPYTER_SANDBOX_SERVICE_TOKEN": service_token,
    }
    process = subprocess.Popen(
        server_argv(root, port, token), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 60
    while not server_up(port, token):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the hub-mode Jupyter server did not start")
        time.sleep(0.1)
    return process, port, token


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    size = args.megabytes * CHUNK
    with tempfile.TemporaryDirectory() as service_root, tempfile.TemporaryDirectory() as user_root:
        service = ServiceProcess(Path(service_root), ["bench"], {"SandboxManager": {"warm_pool_size": 0}})
        service.start()
        service_port, service_token = service.port, service.token("bench")
        user_process, user_port, user_token = hub_mode_server(user_root, service_port, service_token)
        straight, forwarded = Api(service_port, service_token), Api(user_port, user_token)
        sandbox = forwarded.json("POST", "/sandbox/api/sandboxes", {})
        box = f"/sandbox/api/sandboxes/{sandbox['id']}"
        try:
            straight.json("POST", f"{box}/process/exec", {"command": "head -c 1024 /dev/zero > small.bin"})
            small_reads(straight, box, 10)  # warm both paths
            small_reads(forwarded, box, 10)
            direct, through = [], []
            # Interleaved rounds, so that a busy moment of the machine falls on both alike.
            for _ in range(4):
                direct += small_reads(straight, box, args.calls // 4)
                through += small_reads(forwarded, box, args.calls // 4)
            direct.sort()
            through.sort()

            def pct(values: list[float], p: float) -> float:
                return values[min(len(values) - 1, int(len(values) * p))] * 1000

            print(f"1 KB file read (GET .../files/content), {len(direct)} calls each")
            print(
                f"  straight to the service:     p50 {pct(direct, 0.5):6.1f} ms   p95 {pct(direct, 0.95):6.1f} ms\n"
                f"  through the user's server:   p50 {pct(through, 0.5):6.1f} ms   p95 {pct(through, 0.95):6.1f} ms\n"
                f"  added by the forwarder:      p50 {pct(through, 0.5) - pct(direct, 0.5):+6.1f} ms   "
                f"ratio p50 {pct(through, 0.5) / pct(direct, 0.5):.2f}"
            )
            up_direct, up_through = [], []
            for _ in range(args.repeat):
                up_direct.append(upload(straight, box, "straight.bin", size))
                up_through.append(upload(forwarded, box, "forwarded.bin", size))
            a, b = statistics.median(up_direct), statistics.median(up_through)
            mb = args.megabytes
            print(
                f"{mb} MB upload (PUT .../files/content), median of {args.repeat}\n"
                f"  straight to the service:     {a:6.2f} s ({mb / a:6.0f} MB/s)\n"
                f"  through the user's server:   {b:6.2f} s ({mb / b:6.0f} MB/s)\n"
                f"  throughput through / straight = {a / b:.2f}"
            )
        finally:
            forwarded.json("DELETE", box)
            user_process.terminate()
            user_process.wait(timeout=30)
            service.stop()


if __name__ == "__main__":
    main()
