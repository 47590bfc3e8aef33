"""Each sandbox's own CA, made on the host, for the hosts whose requests get a secret.

The CA's key stays in the host's state folder (0600) and never enters the sandbox; its certificate
goes into the sandbox's trust bundle (read-only, root's). The gateway signs a short-lived leaf for a
secret's host when the sandbox connects to it; no other host is ever intercepted, and another
sandbox's CA is of no use here (each sandbox trusts its own).
"""

from __future__ import annotations

import datetime
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

from .. import certificates
from .. import secrets as sandbox_secrets

CA_DAYS = 3650
LEAF_HOURS = 24


def _folder(sandbox_id: str) -> Path:
    return sandbox_secrets.state_dir("gateway-ca") / sandbox_id


def ca_certificate(sandbox_id: str) -> bytes:
    """The sandbox's CA certificate (PEM), made on first use."""
    folder = _folder(sandbox_id)
    cert_path = folder / "ca.pem"
    if not cert_path.exists():
        from cryptography.hazmat.primitives import serialization

        now = datetime.datetime.now(datetime.timezone.utc)
        cert, key = certificates.make_ca(
            f"jupyter-sandbox gateway {sandbox_id}",
            now - datetime.timedelta(hours=1),
            now + datetime.timedelta(days=CA_DAYS),
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        sandbox_secrets.write_state(folder / "ca.key", key_pem)
        sandbox_secrets.write_state(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path.read_bytes()


def forget(sandbox_id: str) -> None:
    shutil.rmtree(_folder(sandbox_id), ignore_errors=True)


class LeafCache:
    """Server-side TLS contexts for (sandbox, host), each with a leaf from that sandbox's CA."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[str, str], tuple[ssl.SSLContext, datetime.datetime]] = {}
        self._lock = threading.Lock()

    def context(self, sandbox_id: str, host: str) -> ssl.SSLContext:
        now = datetime.datetime.now(datetime.timezone.utc)
        with self._lock:
            found = self._contexts.get((sandbox_id, host))
            if found and found[1] > now + datetime.timedelta(minutes=5):
                return found[0]
            context, expires = self._make(sandbox_id, host, now)
            self._contexts[(sandbox_id, host)] = (context, expires)
            return context

    def _make(self, sandbox_id: str, host: str, now: datetime.datetime) -> tuple[ssl.SSLContext, datetime.datetime]:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        ca_certificate(sandbox_id)
        folder = _folder(sandbox_id)
        ca: tuple[Any, Any] = (
            x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes()),
            serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None),
        )
        expires = now + datetime.timedelta(hours=LEAF_HOURS)
        cert, key = certificates.make_server_cert(ca, [host], now - datetime.timedelta(hours=1), expires)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        # load_cert_chain reads files only: a private temporary file, gone at once.
        with tempfile.NamedTemporaryFile("wb", dir=folder, prefix=".leaf-") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
            handle.flush()
            context.load_cert_chain(handle.name)
        return context, expires
