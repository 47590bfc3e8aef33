"""A clone with credentials through the host's credential proxy against a plain clone, 50 MB repository.

Both clones run in the same sandbox, from the same HTTPS git server (HTTP Basic) on the host's
address on the sandbox's bridge network, which the sandbox's egress allow list lets it reach:

- credential path: POST .../git/clone with username and password; git goes through the agent's relay
  to the host's proxy, which terminates TLS with the call's CA and opens its own TLS connection to
  the server with the Authorization added;
- plain: git run in the sandbox (through the exec API) straight to the server, with the same header
  in its own config, as clones with credentials worked before the proxy.

Rounds alternate; the figure is the median time of each and their ratio.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import Api, start_server  # noqa: E402
from git_http_server import GitServer, make_ca, make_server_cert  # noqa: E402 (tests/ on the path first)

USER, PASSWORD = "bench", secrets.token_hex(12)


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=300,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(cwd),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "B",
            "GIT_AUTHOR_EMAIL": "b@example.org",
            "GIT_COMMITTER_NAME": "B",
            "GIT_COMMITTER_EMAIL": "b@example.org",
        },
    )


def make_repo(root: Path, megabytes: int) -> None:
    """A bare repository of `megabytes` of incompressible content, one commit."""
    work = root / "work"
    git("init", "-q", "-b", "main", str(work), cwd=root)
    for index in range(megabytes):
        (work / f"blob-{index:03d}.bin").write_bytes(os.urandom(1024 * 1024))
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "data", cwd=work)
    git("clone", "-q", "--bare", str(work), str(root / "repo.git"), cwd=root)
    # One pack made once: every clone then reuses its data instead of compressing 50 MB again, so
    # the figure is the transport's, not the server's.
    git("repack", "-adq", cwd=root / "repo.git")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import docker

    client = docker.from_env()
    name = f"jsbx-bench-git-{os.getpid()}"
    network = client.networks.create(name, driver="bridge", labels={"io.jupyter-sandbox.test": "1"})
    process = httpd = None
    sandbox_id = None
    try:
        network.reload()
        gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            make_repo(root, args.megabytes)
            ca = make_ca("benchmark git CA")
            from cryptography.hazmat.primitives import serialization

            (root / "ca.pem").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
            cert, key = make_server_cert(ca, root, "server", gateway)
            httpd = GitServer(str(root), basic=(USER, PASSWORD), tls=(cert, key), host=gateway).start()
            url = f"https://{gateway}:{httpd.port}/repo.git"
            process, port, token = start_server(
                folder,
                [
                    "--SandboxManager.warm_pool_size=0",
                    f"--GitCredentialProxy.ca_bundle={root / 'ca.pem'}",
                    f"--SandboxManager.network_name={name}",
                ],
            )
            api = Api(port, token)
            created = api.json(
                "POST",
                "/sandbox/api/sandboxes",
                {"memory": "1g", "network": {"mode": "allow", "cidrs": [f"{gateway}/32"]}},
            )
            sandbox_id = created["id"]
            box = f"/sandbox/api/sandboxes/{sandbox_id}"
            upload = api.connection()
            upload.request(
                "PUT",
                f"{box}/files/content?path=bench-ca.pem",
                body=(root / "ca.pem").read_bytes(),
                headers=api.headers,
            )
            assert upload.getresponse().status == 200
            header = "Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            plain_times, proxy_times = [], []

            def plain_clone(index: int) -> None:
                started = time.perf_counter()
                result = api.json(
                    "POST",
                    f"{box}/process/exec",
                    {
                        "timeout": 600,
                        "command": (
                            f"git -c http.sslCAInfo=/home/sandbox/bench-ca.pem -c 'http.extraHeader={header}' "
                            f"clone -q {url} plain-{index}"
                        ),
                    },
                )
                plain_times.append(time.perf_counter() - started)
                assert result["exit_code"] == 0, result

            def proxied_clone(index: int) -> None:
                started = time.perf_counter()
                api.json(
                    "POST",
                    f"{box}/git/clone",
                    {"url": url, "path": f"proxied-{index}", "username": USER, "password": PASSWORD},
                )
                proxy_times.append(time.perf_counter() - started)

            for index in range(args.rounds):
                # Alternating which goes first, so neither always meets a warm (or a busy) machine.
                for clone in (plain_clone, proxied_clone) if index % 2 == 0 else (proxied_clone, plain_clone):
                    clone(index)
                api.json("POST", f"{box}/process/exec", {"command": f"rm -rf plain-{index} proxied-{index}"})
            plain, proxied = statistics.median(plain_times), statistics.median(proxy_times)
            print(f"clone of a {args.megabytes} MB repository over HTTPS (median of {args.rounds}):")
            print(
                f"  plain clone, credential in git's config in the sandbox: {plain:.2f} s "
                f"({args.megabytes / plain:.0f} MB/s)"
            )
            print(
                f"  credential path (host proxy, token never in the sandbox): {proxied:.2f} s "
                f"({args.megabytes / proxied:.0f} MB/s)"
            )
            print(f"  ratio credential path / plain: {proxied / plain:.2f}x")
    finally:
        if sandbox_id is not None and process is not None:
            try:
                api.json("DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")
            except (OSError, RuntimeError) as exc:
                print(f"could not delete the sandbox {sandbox_id}: {exc}", file=sys.stderr)
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        if httpd is not None:
            httpd.stop()
        try:
            network.remove()
        except docker.errors.NotFound:
            pass


if __name__ == "__main__":
    main()
