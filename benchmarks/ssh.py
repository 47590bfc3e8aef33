"""SSH into a sandbox: connect-to-prompt time and scp throughput, each beside its baseline in the same run.

- connect to prompt: `ssh -tt TOKEN@localhost` until the shell's prompt shows, against the terminal
  websocket (/sandbox/api/sandboxes/{id}/pty) until its first output (the same prompt);
- 200 MB: `scp` up and down against the file API (PUT and GET /files/content) with the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import socket
import statistics
import subprocess
import tempfile
import time

import pexpect
from common import Api, free_port, start_server
from harness import drain
from tornado.websocket import websocket_connect

SSH_OPTIONS = [
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
    "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "IdentityFile=/dev/null", "-F", "/dev/null",
]  # fmt: skip


def start(root: str) -> tuple[subprocess.Popen, Api, int]:
    ssh_port = free_port()
    process, port, token = start_server(root, ["--SandboxManager.warm_pool_size=0", f"--SSHGateway.port={ssh_port}"])
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", ssh_port), timeout=1):
                return process, Api(port, token), ssh_port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the Jupyter server's SSH gateway did not start")


def ssh_prompt(ssh_port: int, token: str) -> float:
    began = time.perf_counter()
    child = pexpect.spawn("ssh", [*SSH_OPTIONS, "-tt", "-p", str(ssh_port), f"{token}@127.0.0.1"], timeout=60)
    child.expect(r"[$#] ")
    took = time.perf_counter() - began
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    return took


async def websocket_prompt(api: Api, sandbox_id: str) -> float:
    began = time.perf_counter()
    connection = await websocket_connect(
        f"ws://127.0.0.1:{api.port}/sandbox/api/sandboxes/{sandbox_id}/pty?cols=80&rows=24&token="
        + api.headers["Authorization"].split()[1]
    )
    seen = b""
    while not (seen.rstrip().endswith(b"$") or seen.rstrip().endswith(b"#")):
        message = await asyncio.wait_for(connection.read_message(), 60)
        if message is None:
            raise RuntimeError("the terminal closed")
        if isinstance(message, bytes):
            seen += message
    took = time.perf_counter() - began
    connection.close()
    return took


def put(api: Api, sandbox_id: str, path: str, source: str) -> float:
    size = os.path.getsize(source)
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=600)
    connection.putrequest("PUT", f"/sandbox/api/sandboxes/{sandbox_id}/files/content?path={path}")
    for name, value in {**api.headers, "Content-Length": str(size)}.items():
        connection.putheader(name, value)
    connection.endheaders()
    with open(source, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            connection.send(chunk)
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
    return time.perf_counter() - began


def get(api: Api, sandbox_id: str, path: str, destination: str) -> float:
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=600)
    connection.request("GET", f"/sandbox/api/sandboxes/{sandbox_id}/files/content?path={path}", headers=api.headers)
    response = connection.getresponse()
    with open(destination, "wb") as handle:
        drain(response, handle.write)
    assert response.status == 200, response.status
    return time.perf_counter() - began


def scp(ssh_port: int, source: str, destination: str) -> float:
    began = time.perf_counter()
    subprocess.run(["scp", *SSH_OPTIONS, "-P", str(ssh_port), source, destination], check=True, timeout=600)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        process, api, ssh_port = start(root)
        created = api.json("POST", "/sandbox/api/sandboxes", {})
        if "id" not in created:
            process.terminate()
            raise SystemExit(f"could not create a sandbox: {created.get('message')}")
        sandbox_id = created["id"]
        try:
            token = api.json("POST", f"/sandbox/api/sandboxes/{sandbox_id}/ssh", {})["token"]
            ssh_prompt(ssh_port, token)  # warm: the first login also makes the host key's cache and so on
            asyncio.run(websocket_prompt(api, sandbox_id))
            ssh_times, ws_times = [], []
            for _ in range(options.rounds):  # interleaved, so drift hits both alike
                ssh_times.append(ssh_prompt(ssh_port, token))
                ws_times.append(asyncio.run(websocket_prompt(api, sandbox_id)))
            ssh_ms, ws_ms = statistics.median(ssh_times) * 1000, statistics.median(ws_times) * 1000
            print(
                f"connect to prompt: ssh {ssh_ms:.0f} ms, terminal websocket {ws_ms:.0f} ms (baseline); ratio {ssh_ms / ws_ms:.2f}"
            )
            source = os.path.join(root, "payload.bin")
            with open(source, "wb") as handle:
                for _ in range(options.size_mb):
                    handle.write(os.urandom(1024 * 1024))
            mb = options.size_mb
            up_api = put(api, sandbox_id, "api.bin", source)
            up_scp = scp(ssh_port, source, f"{token}@127.0.0.1:scp.bin")
            down_api = get(api, sandbox_id, "api.bin", os.path.join(root, "api.out"))
            down_scp = scp(ssh_port, f"{token}@127.0.0.1:scp.bin", os.path.join(root, "scp.out"))
            print(
                f"{mb} MB upload:   scp {mb / up_scp:.0f} MB/s, file API PUT {mb / up_api:.0f} MB/s (baseline); "
                f"ratio {up_api / up_scp:.2f}"
            )
            print(
                f"{mb} MB download: scp {mb / down_scp:.0f} MB/s, file API GET {mb / down_api:.0f} MB/s (baseline); "
                f"ratio {down_api / down_scp:.2f}"
            )
        finally:
            api.json("DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
