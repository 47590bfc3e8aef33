"""Preview tokens (sandbox/preview.py): what a token opens, and when it stops opening it.

A preview token is all that admits a request to a sandbox's app on a preview origin, so what an
attacker holds (an old token, one for another port or sandbox, a token with a changed field) must
open nothing. Host state lives in a temporary folder of this test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_sandbox.sandbox import preview, secrets
from jupyter_sandbox.sandbox.spec import RESERVED_PORTS

BOX = "0123456789ab"
OTHER_BOX = "ba9876543210"


@pytest.fixture(autouse=True)
def host_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A host secret and nonce folder of this test's own (never the user's)."""
    monkeypatch.setenv(secrets.SECRET_ENV, str(tmp_path / "host.secret"))
    # What earlier tests cached for other secret files and nonces does not carry over.
    monkeypatch.setattr(preview, "_nonces", {})
    monkeypatch.setattr(preview, "_verified", {})
    yield tmp_path


class Clock:
    """time.time() as preview.py sees it, moved by the test (no real waiting, no absolute time)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = preview.time.time()
        monkeypatch.setattr(preview.time, "time", lambda: self.now)


def test_a_token_opens_its_own_sandbox_and_port_only() -> None:
    token, _ = preview.mint(BOX, 3000)
    assert preview.verify(token, BOX, 3000)
    assert not preview.verify(token, BOX, 3001)
    assert not preview.verify(token, OTHER_BOX, 3000)


def test_a_changed_field_or_signature_opens_nothing() -> None:
    token, _ = preview.mint(BOX, 3000)
    sandbox_id, port, expires, signature = token.split(".")
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    forged = [
        f"{sandbox_id}.{port}.{int(expires) + 3600}.{signature}",  # a longer life
        f"{sandbox_id}.3001.{expires}.{signature}",  # another port
        f"{OTHER_BOX}.{port}.{expires}.{signature}",  # another sandbox
        f"{sandbox_id}.{port}.{expires}.{flipped}",
        f"{sandbox_id}.{port}.{expires}.{signature.upper()}",
        token + "0",
        " " + token,
        token.replace(".", ":"),
        "",
        None,
    ]
    for candidate in forged:
        for sandbox, at in ((BOX, 3000), (BOX, 3001), (OTHER_BOX, 3000)):
            assert not preview.verify(candidate, sandbox, at), candidate


def test_a_token_from_another_host_secret_opens_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = preview.mint(BOX, 3000)
    monkeypatch.setenv(secrets.SECRET_ENV, str(tmp_path / "another.secret"))
    monkeypatch.setattr(preview, "_verified", {})
    assert not preview.verify(token, BOX, 3000)


def test_a_token_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    token, expires_at = preview.mint(BOX, 3000, expires_in=60)
    assert expires_at - clock.now == pytest.approx(60, abs=1)
    clock.now += 30
    assert preview.verify(token, BOX, 3000)
    clock.now += 31 + preview.VERIFIED_SECONDS
    assert not preview.verify(token, BOX, 3000)


def test_rotating_the_nonce_revokes_every_token_at_once() -> None:
    old, _ = preview.mint(BOX, 3000)
    other_box, _ = preview.mint(OTHER_BOX, 3000)
    assert preview.verify(old, BOX, 3000)  # and now remembered as good
    preview.rotate(BOX)
    assert not preview.verify(old, BOX, 3000)
    assert preview.verify(other_box, OTHER_BOX, 3000)  # another sandbox's tokens are untouched
    fresh, _ = preview.mint(BOX, 3000)
    assert preview.verify(fresh, BOX, 3000)


def test_a_rotation_by_another_process_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    token, _ = preview.mint(BOX, 3000)
    assert preview.verify(token, BOX, 3000)
    # The command line rotates in its own process: only the nonce's file changes under this one.
    secrets.write_state(preview._nonce_path(BOX), b"rotated elsewhere")
    clock.now += preview.VERIFIED_SECONDS + 0.1
    assert not preview.verify(token, BOX, 3000)


def test_forgetting_a_sandbox_revokes_its_tokens(host_state: Path) -> None:
    token, _ = preview.mint(BOX, 3000)
    preview.forget(BOX)
    assert not (host_state / "previews" / BOX).exists()
    assert not preview.verify(token, BOX, 3000)
    preview.forget(BOX)  # twice is fine
    preview.forget("../../etc")  # not a sandbox id: nothing to remove, nothing raised


def test_nonces_are_host_state_readable_by_this_user_only(host_state: Path) -> None:
    preview.mint(BOX, 3000)
    nonce = host_state / "previews" / BOX
    assert nonce.stat().st_mode & 0o077 == 0
    assert (host_state / "previews").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("sandbox_id", ["../escape00", "0123456789AB", "0123456789a", "0123456789abc", "", "/etc/x"])
def test_a_sandbox_id_that_is_not_one_is_refused_before_any_file(sandbox_id: str, host_state: Path) -> None:
    with pytest.raises(preview.PreviewError, match="not a sandbox id"):
        preview.mint(sandbox_id, 3000)
    assert not preview.verify(f"{sandbox_id}.3000.9999999999.{'0' * 64}", sandbox_id, 3000)
    assert not (host_state / "previews").exists() or not any((host_state / "previews").iterdir())


@pytest.mark.parametrize("port", [0, 65536, -1, True, "3000", 3000.0, None])
def test_ports_that_are_not_ports(port: object) -> None:
    with pytest.raises(preview.PreviewError, match="port must be a whole number from 1 to 65535"):
        preview.mint(BOX, port)  # type: ignore[arg-type]


def test_the_projects_own_ports_are_not_previewed() -> None:
    for port in sorted(RESERVED_PORTS):
        with pytest.raises(preview.PreviewError, match="jupyter-sandbox's own"):
            preview.check_port(port)


@pytest.mark.parametrize("expires_in", [0, -5, preview.MAX_EXPIRY + 1, True, 1.5, "60"])
def test_lifetimes_out_of_bounds_are_refused(expires_in: object) -> None:
    with pytest.raises(preview.PreviewError, match="expires_in must be from 1 to"):
        preview.mint(BOX, 3000, expires_in=expires_in)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), (" 5 m ", 300)])
def test_durations(text: str, seconds: int) -> None:
    assert preview.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1d", "-5m", "1.5h", "5 minutes"])
def test_durations_that_are_not(text: str) -> None:
    with pytest.raises(preview.PreviewError, match="expected a duration such as 30m or 2h"):
        preview.parse_duration(text)
