"""Secrets a sandbox may use but never read.

A secret is a name (an environment variable of the sandbox), a value and the hosts it is for. The
value is kept on the host only, in one file per sandbox readable by this user alone (0600), and goes
with the sandbox when it is removed. The sandbox's environment holds a placeholder in its place; the
gateway swaps the value in for the placeholder in the header values of HTTPS requests to the
secret's hosts (Authorization, x-api-key, any header), and nowhere else: a placeholder sent to any
other host, in a URL or in a body goes out as the placeholder. Values are never logged.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import secrets as sandbox_secrets
from . import domains

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE = 8192
MAX_SECRETS = 32
MAX_HOSTS = 16
PLACEHOLDER_PREFIX = "jsbx-secret-"
# Variables whose meaning to the sandbox's programs a secret must not change.
RESERVED = re.compile(
    r"^(PATH|HOME|USER|SHELL|LANG|TERM|PWD|LD_.*|PYTHON.*|JUPYTER.*|IPYTHON.*|(HTTPS?|ALL|NO|FTP)_PROXY|"
    r"SSL_CERT_.*|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|PIP_.*|NODE_.*|GIT_.*|XDG_.*)$",
    re.IGNORECASE,
)


class SecretError(ValueError):
    """A secret that cannot be kept; the message says why (and never holds the value)."""


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    hosts: tuple[str, ...]
    placeholder: str

    def public(self) -> dict[str, Any]:
        """What may be shown: never the value."""
        return {"name": self.name, "hosts": list(self.hosts), "placeholder": self.placeholder}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise SecretError("a secret's name is an environment variable name: letters, digits and _, at most 64")
    if RESERVED.match(name):
        raise SecretError(f"{name} is a variable the sandbox's programs rely on; choose another name")
    return name


def check_value(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise SecretError("a secret's value must be a non-empty string")
    if len(value) > MAX_VALUE:
        raise SecretError(f"a secret's value may be at most {MAX_VALUE} characters, got {len(value)}")
    # The value goes into an HTTP header: a control character (CR, LF, NUL...) would split or end it.
    if any(not (0x20 <= ord(c) <= 0x7E) for c in value):
        raise SecretError(
            "a secret's value may hold printable ASCII characters only (no control characters, line "
            "breaks or non-ASCII letters): it is sent in an HTTP header"
        )
    return value


def check_hosts(hosts: Any) -> tuple[str, ...]:
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise SecretError('a secret needs the hosts it is for, e.g. "hosts": ["api.openai.com"]')
    if len(hosts) > MAX_HOSTS:
        raise SecretError(f"a secret may name at most {MAX_HOSTS} hosts")
    try:
        return tuple(dict.fromkeys(domains.normalise(h, wildcard=False) for h in hosts))
    except domains.DomainError as exc:
        raise SecretError(f"hosts: {exc}") from None


def _path(sandbox_id: str) -> Path:
    return sandbox_secrets.state_dir("gateway-secrets") / f"{sandbox_id}.json"


def load(sandbox_id: str) -> dict[str, Secret]:
    try:
        data = json.loads(_path(sandbox_id).read_text())
    except (OSError, ValueError):
        return {}
    found: dict[str, Secret] = {}
    for name, item in data.items() if isinstance(data, dict) else ():
        try:
            found[name] = Secret(name, item["value"], tuple(item["hosts"]), item["placeholder"])
        except (KeyError, TypeError):
            continue
    return found


def _save(sandbox_id: str, kept: dict[str, Secret]) -> None:
    data = {s.name: {"value": s.value, "hosts": list(s.hosts), "placeholder": s.placeholder} for s in kept.values()}
    sandbox_secrets.write_state(_path(sandbox_id), json.dumps(data).encode())


def put(sandbox_id: str, name: Any, value: Any, hosts: Any) -> Secret:
    name, value, checked_hosts = check_name(name), check_value(value), check_hosts(hosts)
    kept = load(sandbox_id)
    if name not in kept and len(kept) >= MAX_SECRETS:
        raise SecretError(f"a sandbox may hold at most {MAX_SECRETS} secrets; delete one first")
    # A fresh placeholder per value: one seen before tells nothing of the value that replaced it.
    secret = Secret(name, value, checked_hosts, PLACEHOLDER_PREFIX + name.lower() + "-" + secrets.token_hex(12))
    kept[name] = secret
    _save(sandbox_id, kept)
    return secret


def delete(sandbox_id: str, name: str) -> bool:
    kept = load(sandbox_id)
    if kept.pop(name, None) is None:
        return False
    _save(sandbox_id, kept)
    return True


def forget(sandbox_id: str) -> None:
    _path(sandbox_id).unlink(missing_ok=True)


def environment(sandbox_id: str) -> dict[str, str]:
    """The sandbox's view of its secrets: each name holds its placeholder."""
    return {s.name: s.placeholder for s in load(sandbox_id).values()}


def for_host(sandbox_id: str, host: str) -> list[Secret]:
    return [s for s in load(sandbox_id).values() if host in s.hosts]
