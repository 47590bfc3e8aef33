"""What a git API call's credentials are, which remote they are for, and the certificates of one call.

Nothing here talks to a sandbox. A `Credential` is parsed from the API body and only ever becomes an
`Authorization` header on the host (`git_proxy`); it never goes into a repr, a log line or an error
message. A `Remote` is the repository the user named; the proxy adds the credential to requests for
that scheme, host, port and repository path only. `CallCertificates` is a throw-away CA made for one
call: its certificate (only) is handed to git in the sandbox so git still verifies TLS, its key never
leaves this process.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import posixpath
import re
import secrets
import ssl
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import certificates

MAX_SECRET = 4096
CREDENTIAL_FIELDS = ("username", "password", "token")
# The path of a repository on its server: what git appends /info/refs etc. to. Plain characters only,
# so that "the same path" is a plain string comparison (no decoding, no dot segments).
REPO_PATH = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+/?$")
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)


class CredentialError(ValueError):
    """Bad input about credentials or the remote they are for (an HTTP 400)."""


@dataclass(frozen=True)
class Remote:
    """A repository over HTTP(S): the only destination a call's credential is added for."""

    scheme: str
    host: str
    port: int
    path: str  # without a trailing slash

    @classmethod
    def parse(cls, url: Any) -> Remote:
        if not isinstance(url, str) or not url or len(url) > 2048:
            raise CredentialError("url must be the repository's https:// (or http://) address")
        if any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
            raise CredentialError("the repository URL may not contain spaces or control characters")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http"):
            raise CredentialError("credentials are only used with https:// (or http://) repository URLs")
        if "@" in parts.netloc:
            raise CredentialError("put credentials in username and password (or token), not in the URL")
        if parts.query or parts.fragment or "#" in url or "?" in url:
            raise CredentialError("the repository URL may not have a query or a fragment")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise CredentialError("the repository URL has an invalid port") from None
        host = (parts.hostname or "").lower()
        if not host:
            raise CredentialError("the repository URL has no host")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not HOST_NAME.match(host):
                raise CredentialError(f"{host!r} is not a host name") from None
        path = parts.path or ""
        if not REPO_PATH.match(path) or any(seg in (".", "..") for seg in path.split("/")) or "//" in path:
            raise CredentialError("the repository URL needs a plain path, e.g. https://host/owner/repo.git")
        return cls(parts.scheme, host.rstrip("."), port, path.rstrip("/"))

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def authority(self) -> str:
        """host:port, always with the port, as in a CONNECT request."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}"

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url}


class Credential:
    """An Authorization header value, kept out of every repr, log line and message."""

    __slots__ = ("_header", "_hidden", "scheme")

    def __init__(self, scheme: str, header: str, hidden: list[str]) -> None:
        self.scheme = scheme
        self._header = header
        # Every form the secret could take in text: for redacting what the sandbox sends back.
        self._hidden = [h for h in hidden if h]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Credential | None:
        """Basic for username + password, Bearer for token; None when the call has no credentials."""
        username, password, token = body.get("username"), body.get("password"), body.get("token")
        for key, value in (("username", username), ("password", password), ("token", token)):
            if value is not None and not isinstance(value, str):
                raise CredentialError(f"{key} must be a string")
            if isinstance(value, str) and len(value) > MAX_SECRET:
                raise CredentialError(f"{key} is too long (at most {MAX_SECRET} characters)")
            if isinstance(value, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise CredentialError(f"{key} may not contain control characters")
        if token and (password or username):
            raise CredentialError("give either token (sent as a bearer token) or username and password, not both")
        if token:
            if not re.fullmatch(r"[\x21-\x7e]+", token):
                raise CredentialError("token may only contain visible ASCII characters")
            return cls("Bearer", f"Bearer {token}", [token])
        if password:
            user = username or "git"
            if ":" in user:
                raise CredentialError("username may not contain ':'")
            encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
            return cls("Basic", f"Basic {encoded}", [password, encoded])
        if username:
            raise CredentialError("a username needs a password (or a token)")
        return None

    @property
    def header(self) -> str:
        return self._header

    def redact(self, value: Any) -> Any:
        """`value` (JSON-like) with every trace of the secret replaced by ***."""
        if isinstance(value, str):
            for hidden in self._hidden:
                value = value.replace(hidden, "***")
            return value
        if isinstance(value, list):
            return [self.redact(item) for item in value]
        if isinstance(value, dict):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        return value

    @property
    def longest(self) -> int:
        return max(len(hidden) for hidden in self._hidden)

    def found_in(self, data: bytes) -> bool:
        """Whether any form of the secret is in `data` (bytes on their way to the sandbox)."""
        return any(hidden.encode() in data for hidden in self._hidden)

    def __repr__(self) -> str:
        return f"<Credential {self.scheme} ***>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("credentials are not pickled")


class CallCertificates:
    """A CA made for one API call, and a server certificate it signs for the remote's host.

    The CA's key exists only in this object (and, for the instant ssl needs a file, in a private
    temporary file that is removed at once); git in the sandbox gets the CA certificate alone.
    """

    def __init__(self, hosts: list[str], lifetime: datetime.timedelta = datetime.timedelta(hours=2)) -> None:
        from cryptography.hazmat.primitives import serialization

        now = datetime.datetime.now(datetime.timezone.utc)
        before, after = now - datetime.timedelta(minutes=5), now + lifetime
        ca, ca_key = certificates.make_ca(f"jupyter-sandbox git call {secrets.token_hex(4)}", before, after)
        leaf, leaf_key = certificates.make_server_cert((ca, ca_key), hosts, before, after)
        pem = serialization.Encoding.PEM
        self.ca_pem = ca.public_bytes(pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        chain = leaf.public_bytes(pem) + leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # ssl loads keys from files only: a private folder, removed before this returns.
        with tempfile.TemporaryDirectory(prefix="jupyter-sandbox-call-") as folder:
            path = os.path.join(folder, "leaf.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(chain)
            context.load_cert_chain(path)
        self.server_context = context


# -- which remote a repository in a sandbox was cloned from, as the host saw it ---------------
#
# A pull or push names a folder, and the folder's remote URL lives in the sandbox's .git/config,
# where sandbox code can change it. The credential must go to the repository the user named, so the
# host remembers the URL each clone through the API was made from and scopes pull and push to that
# (or to the url the call gives). It is host-side state, never read from the sandbox.

SANDBOX_HOME = "/home/sandbox"


def repo_key(path: str) -> str:
    """A repository folder as the API names it (relative to the home folder, or absolute)."""
    full = path if path.startswith("/") else f"{SANDBOX_HOME}/{path}"
    return posixpath.normpath(full)


def clone_target(url: str) -> str:
    """The folder a clone goes to when the call names none (as git would name it)."""
    return url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")


def _remotes_file(sandbox_id: str) -> Path:
    from .secrets import state_dir

    if not re.fullmatch(r"[0-9a-f]{12}", sandbox_id):
        raise ValueError("not a sandbox id")
    return state_dir("git-remotes") / f"{sandbox_id}.json"


def _read_remotes(sandbox_id: str) -> dict[str, str]:
    try:
        data = json.loads(_remotes_file(sandbox_id).read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}
    )


def remember(sandbox_id: str, path: str, url: str) -> None:
    from .secrets import write_state

    try:
        remote = Remote.parse(url)
    except CredentialError:
        return  # git:// and the like never carry credentials
    known = _read_remotes(sandbox_id)
    known[repo_key(path)] = remote.url
    write_state(_remotes_file(sandbox_id), json.dumps(known).encode())


def recall(sandbox_id: str, path: str) -> Remote | None:
    url = _read_remotes(sandbox_id).get(repo_key(path))
    try:
        return Remote.parse(url) if url else None
    except CredentialError:
        return None


def forget(sandbox_id: str) -> None:
    try:
        _remotes_file(sandbox_id).unlink()
    except (OSError, ValueError):
        pass
