"""The gateway's host key and the public keys a user registered, kept in the host state directory.

The host key is generated once (Ed25519, mode 0600) and kept, so clients see the same fingerprint
across server restarts. Registered public keys are an OpenSSH `authorized_keys` file in the same
place; a key login names the sandbox id as the user (`ssh -p 2222 SANDBOX_ID@localhost`) and opens
any sandbox of this server's owner. Nothing here is ever read from a sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from .. import binding
from .. import secrets as sandbox_secrets


def ssh_dir() -> Path:
    return sandbox_secrets.state_dir("ssh")


def host_key_path() -> Path:
    return ssh_dir() / "host_ed25519_key"


def authorized_keys_path() -> Path:
    return ssh_dir() / "authorized_keys"


def host_key() -> asyncssh.SSHKey:
    """The host key, made on first use under a host lock (two processes starting at once agree)."""
    path = host_key_path()
    with binding.host_lock("ssh-host-key"):
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment="jupyter-sandbox gateway")
            sandbox_secrets.write_state(path, key.export_private_key())
    return asyncssh.read_private_key(str(path))


def fingerprint() -> str:
    return host_key().get_fingerprint("sha256")


def register(public_key: str) -> str:
    """Add an OpenSSH public key line to the registered keys; its fingerprint."""
    key = asyncssh.import_public_key(public_key.strip())
    line = key.export_public_key("openssh").decode().strip()
    with binding.host_lock("ssh-authorized-keys"):
        existing = authorized_keys_path().read_text() if authorized_keys_path().exists() else ""
        if line not in existing.splitlines():
            sandbox_secrets.write_state(authorized_keys_path(), (existing + line + "\n").encode())
    return key.get_fingerprint("sha256")


def registered_fingerprints() -> list[str]:
    """The registered keys' SHA-256 fingerprints, one a line of the file (lines that are no key left out)."""
    path = authorized_keys_path()
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(asyncssh.import_public_key(line.strip()).get_fingerprint("sha256"))
        except (ValueError, asyncssh.KeyImportError):
            continue
    return found


def registered() -> asyncssh.SSHAuthorizedKeys | None:
    """The registered keys, read afresh (a key added while the server runs counts at once)."""
    path = authorized_keys_path()
    try:
        if path.stat().st_size == 0 or path.stat().st_uid != os.getuid():
            return None
        return asyncssh.read_authorized_keys(str(path))
    except (FileNotFoundError, ValueError, asyncssh.KeyImportError):
        return None
