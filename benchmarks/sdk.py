"""The SDK's figures, each beside a baseline measured in the same run against the same server:

1. `sb.code.run("1+1")` round trip vs the same trivial cell sent by hand over the kernel websocket.
2. Create → first exec result: `Sandbox.create(language="python")` (a kernel's sandbox, from the
   warm pool) then `sb.process.exec`, vs raw REST (POST /sandbox/api/sandboxes, then POST
   .../process/exec, no pool on that road), and the SDK on that same REST road.
Target for 2 (warm pool): p50 ≤ 150 ms, p95 ≤ 400 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid

import httpx
from common import start_server
from harness import execute_request
from tornado.websocket import websocket_connect

from jupyter_sandbox.client import Sandbox
from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.manager import SandboxManager


def other_pools() -> set[str]:
    """The servers whose warm pools were there before ours (other runs may share the engine)."""
    return {s.server for s in SandboxManager().list() if s.pool}


def pool_ready(size: int, others: set[str], timeout: float = 180) -> None:
    manager = SandboxManager()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [s for s in manager.list() if s.pool and s.server not in others and binding.pool_ready(s.id)]
        if len(ready) >= size:
            return
        time.sleep(0.2)
    raise RuntimeError("the warm pool did not fill")


def summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{name:<52} p50 {statistics.median(ordered) * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms   (n={len(ordered)})"


async def raw_cell(url: str, token: str, kernel_id: str, code: str, n: int) -> list[float]:
    ws = url.replace("http://", "ws://")
    connection = await websocket_connect(f"{ws}/api/kernels/{kernel_id}/channels?token={token}")
    times = []
    session = uuid.uuid4().hex
    for _ in range(n):
        msg_id = uuid.uuid4().hex
        started = time.perf_counter()
        await connection.write_message(execute_request(code, msg_id, session, username="b"))
        replied = idle = False
        while not (replied and idle):
            raw = await connection.read_message()
            assert raw is not None, "the kernel websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            replied = replied or msg["msg_type"] == "execute_reply"
            idle = idle or (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle")
        times.append(time.perf_counter() - started)
    connection.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--creates", type=int, default=8)
    parser.add_argument("--pool", type=int, default=2)
    args = parser.parse_args()
    others = other_pools()
    process, port, token = start_server(tempfile.mkdtemp(), [f"--SandboxManager.warm_pool_size={args.pool}"])
    url = f"http://127.0.0.1:{port}"
    try:
        pool_ready(args.pool, others)
        # 1. code.run round trip vs the raw kernel websocket, on one kernel.
        with Sandbox.create(url=url, token=token, language="python") as sb:
            sb.code.run("pass")
            sdk_runs = []
            for _ in range(args.cells):
                started = time.perf_counter()
                assert sb.code.run("1+1").text == "2"
                sdk_runs.append(time.perf_counter() - started)
            raw_runs = asyncio.run(raw_cell(url, token, sb.kernel_id or "", "1+1", args.cells))
        print(summary("sb.code.run('1+1')", sdk_runs))
        print(summary("baseline: the same cell over the kernel websocket", raw_runs))

        # 2. create → first exec result.
        warm, sdk_rest, raw_rest = [], [], []
        http = httpx.Client(headers={"Authorization": f"token {token}"}, trust_env=False, timeout=300)
        for _ in range(args.creates):
            pool_ready(args.pool, others)
            started = time.perf_counter()
            sb = Sandbox.create(url=url, token=token, language="python")
            assert sb.process.exec(["echo", "ok"]).stdout == "ok\n"
            warm.append(time.perf_counter() - started)
            sb.delete()

            started = time.perf_counter()
            box = http.post(f"{url}/sandbox/api/sandboxes", json={}).json()
            answer = http.post(
                f"{url}/sandbox/api/sandboxes/{box['id']}/process/exec", json={"command": "echo ok"}
            ).json()
            assert answer["stdout"] == "ok\n"
            raw_rest.append(time.perf_counter() - started)
            http.delete(f"{url}/sandbox/api/sandboxes/{box['id']}")

            started = time.perf_counter()
            sb = Sandbox.create(url=url, token=token)
            assert sb.process.exec(["echo", "ok"]).stdout == "ok\n"
            sdk_rest.append(time.perf_counter() - started)
            sb.delete()
        print(summary("SDK create(language='python') -> first exec (warm pool)", warm))
        print(summary("baseline: raw REST create -> first exec (no pool)", raw_rest))
        print(summary("SDK create() over REST -> first exec (no pool)", sdk_rest))
        print("target (warm pool): p50 <= 150 ms, p95 <= 400 ms")
    finally:
        process.terminate()
        process.wait(timeout=60)


if __name__ == "__main__":
    main()
