"""The REST API's file transfer against `docker cp`, and its latency for listings and small reads.

Targets: 200 MB upload and download through the API at >= 0.7 of `docker cp` throughput.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import urllib.parse

from common import Api, start_server
from harness import drain

CHUNK = 1024 * 1024


def upload(api: Api, box: str, path: str, size: int) -> float:
    connection = api.connection()
    started = time.perf_counter()
    connection.putrequest("PUT", f"{box}/files/content?" + urllib.parse.urlencode({"path": path}))
    for key, value in {**api.headers, "Content-Length": str(size)}.items():
        connection.putheader(key, value)
    connection.endheaders()
    block = os.urandom(CHUNK)
    for _ in range(size // CHUNK):
        connection.send(block)
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    return time.perf_counter() - started


def download(api: Api, box: str, path: str) -> float:
    connection = api.connection()
    started = time.perf_counter()
    connection.request("GET", f"{box}/files/content?" + urllib.parse.urlencode({"path": path}), headers=api.headers)
    response = connection.getresponse()
    drain(response, chunk=CHUNK)
    return time.perf_counter() - started


def docker_cp(source: str, destination: str) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "cp", source, destination], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.megabytes * CHUNK
    with tempfile.TemporaryDirectory() as root:
        process, port, token = start_server(root)
        api = Api(port, token)
        sandbox = api.json("POST", "/sandbox/api/sandboxes", {})
        box = f"/sandbox/api/sandboxes/{sandbox['id']}"
        container = sandbox["name"]
        try:
            local = os.path.join(root, "payload.bin")
            with open(local, "wb") as handle:
                for _ in range(size // CHUNK):
                    handle.write(os.urandom(CHUNK))
            up_api, up_cp, down_api, down_cp = [], [], [], []
            for _ in range(args.repeat):
                up_api.append(upload(api, box, "api.bin", size))
                up_cp.append(docker_cp(local, f"{container}:/home/sandbox/cp.bin"))
                down_api.append(download(api, box, "api.bin"))
                down_cp.append(docker_cp(f"{container}:/home/sandbox/cp.bin", os.path.join(root, "back.bin")))
            mb = args.megabytes
            print(f"{mb} MB file, median of {args.repeat}")
            for name, api_times, cp_times in (("upload", up_api, up_cp), ("download", down_api, down_cp)):
                a, c = statistics.median(api_times), statistics.median(cp_times)
                print(
                    f"  {name:8}  API {a:6.2f} s ({mb / a:6.0f} MB/s)   docker cp {c:6.2f} s ({mb / c:6.0f} MB/s)"
                    f"   API / docker cp throughput = {c / a:.2f}   (target >= 0.7)"
                )

            api.json(
                "POST",
                f"{box}/process/exec",
                {
                    "command": "mkdir -p many && cd many && "
                    "python3 -c \"[open('f%05d.txt' % i, 'w').write('x') for i in range(10000)]\""
                },
            )
            listing = []
            for _ in range(5):
                started = time.perf_counter()
                answer = api.json("GET", f"{box}/files?path=many")
                listing.append(time.perf_counter() - started)
                assert len(answer["entries"]) == 10000
            started = time.perf_counter()
            api.json("POST", f"{box}/process/exec", {"command": "ls -la many > /dev/null"})
            ls_time = time.perf_counter() - started
            print(
                f"listing a folder of 10,000 files: median {statistics.median(listing) * 1000:.0f} ms "
                f"(`ls -la` through the exec API: {ls_time * 1000:.0f} ms)"
            )

            api.json("POST", f"{box}/process/exec", {"command": "printf 'small file' > small.txt"})
            reads = []
            for _ in range(200):
                started = time.perf_counter()
                connection = api.connection()
                connection.request("GET", f"{box}/files/content?path=small.txt", headers=api.headers)
                assert connection.getresponse().read() == b"small file"
                reads.append(time.perf_counter() - started)
            reads.sort()
            status = []
            for _ in range(200):
                started = time.perf_counter()
                connection = api.connection()
                connection.request("GET", "/api/status", headers=api.headers)
                connection.getresponse().read()
                status.append(time.perf_counter() - started)
            status.sort()
            print(
                f"small file read, 200 requests: p50 {reads[100] * 1000:.1f} ms, p95 {reads[190] * 1000:.1f} ms "
                f"(Jupyter's /api/status on the same server: p50 {status[100] * 1000:.1f} ms)"
            )
        finally:
            api.json("DELETE", box)
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
