"""SSH tokens and forwarding rules, without Docker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jupyter_sandbox.sandbox import secrets as sandbox_secrets
from jupyter_sandbox.sandbox.ssh import tokens


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(sandbox_secrets.SECRET_ENV, str(tmp_path / "host.secret"))
    return tmp_path


@pytest.mark.parametrize(
    "text, seconds", [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), (600, 600), ("120", 120)]
)
def test_lifetimes(text: object, seconds: float) -> None:
    assert tokens.parse_lifetime(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "", "1h30", "-5m", True, None, [], {}, 0, 5, "400d", float("nan"), "1e9"])
def test_bad_lifetimes_say_what_is_expected(bad: object) -> None:
    with pytest.raises(tokens.TokenError, match="expires_in must"):
        tokens.parse_lifetime(bad)


def test_a_token_opens_its_sandbox_only_and_only_its_hash_is_kept(state: Path) -> None:
    issued = tokens.issue("0123456789ab", 3600)
    other = tokens.issue("ba9876543210", 3600)
    assert tokens.verify(issued.token) == "0123456789ab"
    assert tokens.verify(other.token) == "ba9876543210"
    # the secret of one under the id of the other opens nothing
    assert tokens.verify("ba9876543210" + issued.token[12:]) is None
    stored = (state / "ssh-tokens" / "0123456789ab.json").read_text()
    assert issued.token[12:] not in stored and issued.token not in stored
    assert (state / "ssh-tokens" / "0123456789ab.json").stat().st_mode & 0o077 == 0
    for garbage in ("", "root", issued.token + "0", issued.token[:-1], issued.token.upper(), "\x00" * 52, "é" * 52):
        assert tokens.verify(garbage) is None


def test_revoked_expired_and_forgotten_tokens_fail(state: Path) -> None:
    first, second = tokens.issue("0123456789ab", 3600), tokens.issue("0123456789ab", 3600)
    assert tokens.revoke("0123456789ab") == 2
    assert tokens.verify(first.token) is None and tokens.verify(second.token) is None
    third = tokens.issue("0123456789ab", 3600)
    path = state / "ssh-tokens" / "0123456789ab.json"
    entries = json.loads(path.read_text())
    entries[0]["expires"] = time.time() - 1
    path.write_text(json.dumps(entries))
    assert tokens.verify(third.token) is None
    fourth = tokens.issue("0123456789ab", 3600)
    tokens.forget("0123456789ab")
    assert tokens.verify(fourth.token) is None
    # a state file the host cannot read as tokens opens nothing
    path.write_text("not json")
    assert tokens.verify(fourth.token) is None


def test_forwarding_destinations() -> None:
    from jupyter_sandbox.sandbox.ssh.gateway import LOOPBACK_NAMES

    assert {"localhost", "127.0.0.1", "::1"} <= LOOPBACK_NAMES
    for refused in ("169.254.169.254", "127.0.0.2", "0.0.0.0", "host.docker.internal", "10.0.0.1", "localhost."):
        assert refused not in LOOPBACK_NAMES
