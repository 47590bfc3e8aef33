"""The example hub's pieces that need no engine: its passwords file, its authenticator, its checks of
what users' servers can reach (scripts/hub.py, examples/hub/fixed_passwords.py)."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "examples" / "hub"))

import hub  # noqa: E402 - scripts/hub.py
from fixed_passwords import FixedPasswordAuthenticator  # noqa: E402


def test_the_state_folder_and_passwords_are_the_hubs_alone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = hub.write_state(state, ["alice", "bob"])
    assert set(first) == {"alice", "bob"} and first["alice"] != first["bob"]
    assert all(len(p) >= 16 for p in first.values())
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "passwords.json").stat().st_mode) == 0o600
    # Kept across runs for the same users; a user taken out loses theirs; keep=False makes new ones.
    assert hub.write_state(state, ["alice", "bob"]) == first
    assert hub.write_state(state, ["alice"]) == {"alice": first["alice"]}
    assert hub.write_state(state, ["alice"], keep=False)["alice"] != first["alice"]


def test_a_damaged_passwords_file_gets_new_passwords(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "passwords.json").write_text("[not, an object")
    assert set(hub.write_state(state, ["alice"])) == {"alice"}


def _authenticator(tmp_path: Path, passwords: dict[str, str]) -> FixedPasswordAuthenticator:
    path = tmp_path / "passwords.json"
    path.write_text(json.dumps(passwords))
    return FixedPasswordAuthenticator(passwords_file=str(path))


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        ("alice", "alices-secret", "alice"),
        ("bob", "bobs-secret", "bob"),
        ("alice", "bobs-secret", None),  # another user's password
        ("alice", "", None),
        ("carol", "anything", None),  # not a user of this hub
        ("", "", None),
    ],
)
def test_each_user_logs_in_with_their_own_password(
    tmp_path: Path, username: str, password: str, expected: str | None
) -> None:
    auth = _authenticator(tmp_path, {"alice": "alices-secret", "bob": "bobs-secret"})
    assert asyncio.run(auth.authenticate(None, {"username": username, "password": password})) == expected


def test_only_the_listed_users_are_allowed(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path, {"alice": "a" * 16})
    assert auth.check_allowed("alice") and not auth.check_allowed("bob")


def test_a_passwords_file_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path, ["alice"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="JSON object"):
        auth.check_allowed("alice")


def test_folders_closed_to_other_accounts_are_found(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    inner = closed / "venv"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    try:
        assert closed in hub.unreachable_by_others(inner)
        closed.chmod(0o755)
        assert closed not in hub.unreachable_by_others(inner)
    finally:
        closed.chmod(0o755)


def _load_config(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Config:
    """examples/hub/jupyterhub_config.py as JupyterHub loads it, with `env` as its environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = Config()
    namespace = {"get_config": lambda: config, "__file__": str(CONFIG)}
    exec(compile(CONFIG.read_text(), str(CONFIG), "exec"), namespace)
    return config


CONFIG = ROOT / "examples" / "hub" / "jupyterhub_config.py"


def test_the_engine_reaches_the_service_and_no_users_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    hub.write_state(state, ["alice", "bob"])
    env = hub.hub_environment(
        state=state,
        venv_bin=tmp_path / "bin",
        users_bin=tmp_path / "users" / "bin",
        proxy=tmp_path / "chp",
        port=8000,
        service_port=8765,
        service_args=["--SandboxQuota.max_sandboxes=2"],
    )
    c = _load_config(
        {**env, "DOCKER_HOST": "tcp://127.0.0.1:2375", "DOCKER_CERT_PATH": "/etc/engine-certs"}, monkeypatch
    )
    users = {**c.Spawner.environment, **{name: "kept" for name in c.Spawner.env_keep}}
    assert not [name for name in users if name.startswith("DOCKER")], users
    assert users["JUPYTER_SANDBOX_SERVICE_URL"] == "http://127.0.0.1:8765"
    assert c.Spawner.environment["PATH"].startswith(str(tmp_path / "users" / "bin"))
    assert "access:services!service=sandbox" in c.Spawner.server_token_scopes
    (service,) = c.JupyterHub.services
    assert service["environment"]["DOCKER_HOST"] == "tcp://127.0.0.1:2375"
    assert service["environment"]["DOCKER_CERT_PATH"] == "/etc/engine-certs"
    assert service["command"][-1] == "--SandboxQuota.max_sandboxes=2" and "--port=8765" in service["command"]
    assert c.Authenticator.allowed_users == {"alice", "bob"}
    # Everything the hub keeps is in its private folder; it listens on loopback only.
    assert c.JupyterHub.cookie_secret_file.startswith(str(state)) and str(state) in c.JupyterHub.db_url
    assert c.JupyterHub.bind_url.startswith("http://127.0.0.1:") and c.JupyterHub.hub_bind_url.startswith(
        "http://127.0.0.1:"
    )
