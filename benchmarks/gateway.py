"""The egress gateway against direct connections, from inside one sandbox, in one run.

The sites are the tests' (tests/gateway_upstream.py) in a network namespace of the benchmark's
own; the sandbox's policy lists their names (through the gateway) and their subnet (direct). Rounds
alternate between the two paths:

- download: 200 MB over HTTPS, through the gateway's CONNECT tunnel vs a direct TLS connection to
  the site's address (same certificate check, same name);
- small requests: requests/s of GET /echo, a new HTTPS connection each, through the gateway, direct,
  and through the gateway to a host with a secret (TLS terminated by the gateway, the header swapped
  in, TLS again to the site).

Prints each path's median and the ratio gateway/direct (download target: at least 0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import Api, start_server  # noqa: E402
from gateway_support import NAMES, upstream_in_namespace  # noqa: E402 (tests/ on the path first)

from jupyter_sandbox.sandbox.docker_backend import DockerBackend  # noqa: E402
from jupyter_sandbox.sandbox.gateway import control  # noqa: E402

PREFIX = "10.231.9"  # the sites' private /24, in a network namespace of the benchmark's
CLIENT = r"""
import http.client, json, os, socket, ssl, sys, time
from urllib.parse import urlsplit
mode, what, host, address, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
proxy = urlsplit(os.environ["HTTPS_PROXY"])
context = ssl.create_default_context()
def connect():
    if mode == "gateway":
        c = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=context, timeout=120)
        c.set_tunnel(host, 443)
        return c
    c = http.client.HTTPSConnection(host, 443, context=context, timeout=120)
    c.sock = context.wrap_socket(socket.create_connection((address, 443), timeout=120), server_hostname=host)
    return c
started = time.perf_counter()
if what == "download":
    c = connect(); c.request("GET", f"/big?bytes={count}"); r = c.getresponse(); got = 0
    while True:
        b = r.read(1 << 20)
        if not b: break
        got += len(b)
    assert got == count, got
else:
    headers = {"Authorization": "Bearer " + os.environ.get("BENCH_KEY", "none")}
    for _ in range(count):
        c = connect(); c.request("GET", "/echo", headers=headers); r = c.getresponse(); r.read(); c.close()
        assert r.status == 200, r.status
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    options = parser.parse_args()
    run = secrets.token_hex(3)
    network = f"jsbx-gwb-{run}"
    backend = DockerBackend()
    with tempfile.TemporaryDirectory() as folder, upstream_in_namespace(run[:4], PREFIX, Path(folder)) as sites:
        subnet = f"{PREFIX}.0/24"
        config = Path(folder) / "config"
        config.mkdir()
        (config / "jupyter_sandbox_config.json").write_text(
            json.dumps(
                {
                    "SandboxManager": {
                        "network_name": network,
                        "warm_pool_size": 0,
                        "extra_ca_certs": str(sites.ca_file),
                    },
                    "EgressGateway": {
                        "resolve_overrides": {name: sites.address for name in NAMES},
                        "upstream_ca_file": str(sites.ca_file),
                    },
                }
            )
        )
        os.environ["JUPYTER_CONFIG_DIR"] = str(config)
        root = Path(folder) / "root"
        root.mkdir()
        process, port, token = start_server(root)
        api = Api(port, token)
        sandbox_id = ""
        try:
            box = api.json(
                "POST",
                "/sandbox/api/sandboxes",
                {"network": {"mode": "allow", "domains": ["big.test", "secret.test"], "cidrs": [subnet]}},
            )
            sandbox_id = box["id"]
            base = f"/sandbox/api/sandboxes/{sandbox_id}"
            api.json(
                "POST",
                f"{base}/secrets",
                {"name": "BENCH_KEY", "value": secrets.token_hex(20), "hosts": ["secret.test"]},
            )
            api.json("POST", f"{base}/stop")
            api.json("POST", f"{base}/start")
            upload = api.connection()
            upload.request(
                "PUT",
                f"{base}/files/content?path=bench.py",
                body=CLIENT.encode(),
                headers={**api.headers, "Content-Type": "application/octet-stream"},
            )
            assert upload.getresponse().status == 200

            def measure(mode: str, what: str, host: str, count: int) -> float:
                answer = api.json(
                    "POST",
                    f"{base}/process/exec",
                    {"command": f"python3 bench.py {mode} {what} {host} {sites.address} {count}", "timeout": 600},
                )
                lines = [line for line in answer["stdout"].splitlines() if line.startswith("{")]
                if answer["exit_code"] != 0 or not lines:
                    raise RuntimeError(f"{mode} {what}: {answer}")
                return float(json.loads(lines[-1])["seconds"])

            size = options.megabytes * 1_000_000
            figures: dict[str, list[float]] = {k: [] for k in ("dl-gw", "dl-direct", "rq-gw", "rq-direct", "rq-secret")}
            measure("gateway", "download", "big.test", 1_000_000)  # warm both paths once
            measure("direct", "download", "big.test", 1_000_000)
            for _ in range(options.rounds):
                figures["dl-gw"].append(size / measure("gateway", "download", "big.test", size) / 1e6)
                figures["dl-direct"].append(size / measure("direct", "download", "big.test", size) / 1e6)
                figures["rq-direct"].append(
                    options.requests / measure("direct", "requests", "big.test", options.requests)
                )
                figures["rq-gw"].append(options.requests / measure("gateway", "requests", "big.test", options.requests))
                figures["rq-secret"].append(
                    options.requests / measure("gateway", "requests", "secret.test", options.requests)
                )
            median = {k: statistics.median(v) for k, v in figures.items()}
            print(f"HTTPS download of {options.megabytes} MB ({options.rounds} rounds, medians):")
            print(f"  direct        {median['dl-direct']:8.1f} MB/s")
            print(
                f"  gateway       {median['dl-gw']:8.1f} MB/s   ratio {median['dl-gw'] / median['dl-direct']:.2f} (target >= 0.8)"
            )
            print(f"small HTTPS requests, a new connection each ({options.requests} per round):")
            print(f"  direct        {median['rq-direct']:8.1f} req/s")
            print(f"  gateway       {median['rq-gw']:8.1f} req/s   ratio {median['rq-gw'] / median['rq-direct']:.2f}")
            print(
                f"  gateway+secret{median['rq-secret']:8.1f} req/s   ratio {median['rq-secret'] / median['rq-direct']:.2f}"
            )
        finally:
            if sandbox_id:
                try:
                    api.json("DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")
                except RuntimeError:
                    pass
            process.terminate()
            process.wait(timeout=60)
            control.stop(network)
            backend.remove_network_if_unused(network)


if __name__ == "__main__":
    main()
