"""What the gateway tests and benchmarks/gateway.py share: a test CA, a wheel, and the upstream
sites in a container on a network of the test's own (tests/gateway_upstream.py)."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import io
import json
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jupyter_sandbox.sandbox import certificates
from jupyter_sandbox.sandbox.docker_backend import DockerBackend, tar_bytes

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["pypi.test", "files.pypi.test", "secret.test", "other.test", "big.test"]
LABEL = {"io.jupyter-sandbox.test": "1"}


def site_ca(names: list[str]) -> tuple[bytes, bytes]:
    """(CA certificate PEM, server key+certificate PEM for `names`)."""
    from cryptography.hazmat.primitives import serialization

    now = datetime.datetime.now(datetime.timezone.utc)
    before, after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
    ca = certificates.make_ca("jupyter-sandbox gateway test CA", before, after)
    cert, key = certificates.make_server_cert(ca, names, before, after)
    server = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)
    return ca[0].public_bytes(serialization.Encoding.PEM), server


def wheel() -> tuple[str, bytes]:
    """A tiny pure-Python wheel, gwdemo 1.0, with a correct RECORD."""
    files = {
        "gwdemo/__init__.py": b"ANSWER = 42\n",
        "gwdemo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: gwdemo\nVersion: 1.0\n",
        "gwdemo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("gwdemo-1.0.dist-info/RECORD,,")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("gwdemo-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return "gwdemo-1.0-py3-none-any.whl", buffer.getvalue()


@dataclass
class Upstream:
    address: str
    ca_file: Path
    container: object

    def requests(self) -> list[dict]:
        """The /echo requests the sites received, as they arrived (read from outside any sandbox)."""
        result = self.container.exec_run(["cat", "/srv/site/requests.log"])  # type: ignore[attr-defined]
        lines = result.output.decode().splitlines() if result.exit_code == 0 else []
        return [json.loads(line) for line in lines if line.strip()]

    def dns_queries(self) -> int:
        """UDP queries the container's DNS listener received."""
        result = self.container.exec_run(["sh", "-c", "cat /srv/site/dns.log 2>/dev/null | wc -l"])  # type: ignore[attr-defined]
        return int(result.output.decode().strip() or 0)


@contextlib.contextmanager
def upstream_sites(backend: DockerBackend, image: str, name: str, folder: Path) -> Iterator[Upstream]:
    """The sites in a container on a network of their own; yields its address and the CA file."""
    ca_pem, server_pem = site_ca(NAMES)
    ca_file = folder / "test-ca.pem"
    ca_file.write_bytes(ca_pem)
    wheel_name, wheel_data = wheel()
    client = backend.client
    net = client.networks.create(name, driver="bridge", labels=LABEL)
    container = None
    try:
        container = client.containers.create(
            image,
            ["python3", "/srv/site/upstream.py", "/srv/site"],
            name=f"{name}-sites",
            network=net.id,
            labels=LABEL,
            user="0:0",
        )
        container.put_archive(
            "/",
            tar_bytes(
                {
                    "srv/site/upstream.py": ((ROOT / "tests" / "gateway_upstream.py").read_bytes(), 0o444),
                    "srv/site/server.pem": (server_pem, 0o400),
                    f"srv/site/{wheel_name}": (wheel_data, 0o444),
                }
            ),
        )
        container.start()
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][name]["IPAddress"]
        yield Upstream(address, ca_file, container)
    finally:
        if container is not None:
            container.remove(force=True)
        net.remove()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@contextlib.contextmanager
def upstream_in_namespace(tag: str, prefix: str, folder: Path) -> Iterator[Upstream]:
    """The same sites in a network namespace of the caller's, routed through the host (unlike another
    Docker network, a sandbox may reach it directly when its allow list names `prefix`.0/24).
    `tag`: a short unique name part; `prefix`: three octets of a private /24 nobody else uses."""
    ca_pem, server_pem = site_ca(NAMES)
    site = folder / "site"
    site.mkdir()
    (site / "server.pem").write_bytes(server_pem)
    wheel_name, wheel_data = wheel()
    (site / wheel_name).write_bytes(wheel_data)
    ca_file = folder / "test-ca.pem"
    ca_file.write_bytes(ca_pem)
    namespace, host_link, ns_link = f"jsbx-g{tag}", f"jsbx-gh{tag}", f"jsbx-gn{tag}"
    process = None
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", host_link, "type", "veth", "peer", "name", ns_link)
        _ip("link", "set", ns_link, "netns", namespace)
        _ip("addr", "add", f"{prefix}.1/24", "dev", host_link)
        _ip("link", "set", host_link, "up")
        for args in (
            ["addr", "add", f"{prefix}.2/24", "dev", ns_link],
            ["link", "set", ns_link, "up"],
            ["link", "set", "lo", "up"],
            ["route", "add", "default", "via", f"{prefix}.1"],
        ):
            _ip("netns", "exec", namespace, "ip", *args)
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, str(ROOT / "tests" / "gateway_upstream.py"), str(site)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((f"{prefix}.2", 443), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sites did not start") from None
                time.sleep(0.1)
        yield Upstream(f"{prefix}.2", ca_file, None)
    finally:
        if process is not None:
            process.kill()
            process.wait()
        subprocess.run(["ip", "link", "del", host_link], capture_output=True, check=False, timeout=20)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False, timeout=20)
