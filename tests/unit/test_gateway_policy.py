"""Domain policies, the operator's defaults and deny list, the secret store and the masking of
secret values in answers: the gateway's pure logic, without a network or an engine."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fake_backend import FakeBackend

from jupyter_sandbox.sandbox import network
from jupyter_sandbox.sandbox.gateway import vault
from jupyter_sandbox.sandbox.gateway.proxy import _Masker
from jupyter_sandbox.sandbox.manager import SandboxManager


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_SANDBOX_SECRET_FILE", str(tmp_path / "state" / "host.secret"))


def limits(**kwargs: object) -> network.Limits:
    return network.Limits(**kwargs)  # type: ignore[arg-type]


def test_a_mixed_list_splits_into_domains_and_blocks() -> None:
    split = network.split_entries(["PyPI.org", "203.0.113.0/24", "*.npmjs.org", "2001:db8::/48"])
    assert split == {"cidrs": ["203.0.113.0/24", "2001:db8::/48"], "domains": ["PyPI.org", "*.npmjs.org"]}
    policy = network.parse_policy({"mode": "allow", **split}, limits())
    assert policy.domains == ["pypi.org", "*.npmjs.org"] and policy.uses_gateway
    assert policy.to_dict() == {
        "mode": "allow",
        "cidrs": ["203.0.113.0/24", "2001:db8::/48"],
        "domains": ["pypi.org", "*.npmjs.org"],
    }
    assert "through the egress gateway" in policy.describe()
    # A domain list alone, without mode, is an allow list; an address among domains is refused.
    assert network.parse_policy({"domains": ["pypi.org"]}, limits()).mode == "allow"
    with pytest.raises(network.PolicyError, match="list it under cidrs"):
        network.parse_policy({"mode": "allow", "domains": ["10.0.0.1"]}, limits())
    with pytest.raises(network.PolicyError, match="unknown network field"):
        network.parse_policy({"mode": "allow", "domain": ["pypi.org"]}, limits())
    with pytest.raises(network.PolicyError, match="only go with mode allow"):
        network.parse_policy({"mode": "none", "domains": ["pypi.org"]}, limits())


def test_the_deny_list_and_the_maximum_hold() -> None:
    deny = limits(deny_domains=("evil.example", "*.tracker.example", "api.tracker.example.org"), max_domains=2)
    with pytest.raises(network.PolicyError, match="deny list"):
        network.parse_policy({"domains": ["Evil.Example."]}, deny)
    with pytest.raises(network.PolicyError, match="deny list"):
        network.parse_policy({"domains": ["*.a.tracker.example"]}, deny)
    with pytest.raises(network.PolicyError, match="at most 2 domains"):
        network.parse_policy({"domains": ["a.example", "b.example", "c.example"]}, deny)
    # Narrowed only: kept, and the deny list is checked at every connection.
    assert network.parse_policy({"domains": ["*.tracker.example.org"]}, deny).domains == ["*.tracker.example.org"]


def test_the_operators_default_names_domains() -> None:
    manager = SandboxManager(
        backend=FakeBackend(),
        default_network="allow",
        default_network_domains=["pypi.org", "files.pythonhosted.org"],
        network_deny_domains=["*.internal.example"],
    )
    policy = manager.default_policy()
    assert policy.uses_gateway and policy.domains == ["pypi.org", "files.pythonhosted.org"]
    with pytest.raises(network.PolicyError, match="deny list"):
        manager.network_policy({"domains": ["db.internal.example"]})


def test_secrets_are_kept_for_this_user_only_with_a_fresh_placeholder() -> None:
    first = vault.put("0123456789ab", "API_KEY", "value-one", ["api.example.org"])
    second = vault.put("0123456789ab", "API_KEY", "value-two", "api.example.org")
    assert first.placeholder != second.placeholder and "value" not in second.placeholder
    path = vault._path("0123456789ab")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert vault.environment("0123456789ab") == {"API_KEY": second.placeholder}
    assert "value-two" not in str(second.public())
    assert [s.name for s in vault.for_host("0123456789ab", "api.example.org")] == ["API_KEY"]
    assert vault.for_host("0123456789ab", "other.example.org") == []
    vault.forget("0123456789ab")
    assert not path.exists()


def test_a_secret_value_is_masked_even_when_split_between_writes() -> None:
    sent: list[bytes] = []

    class Target:
        def sendall(self, data: bytes) -> None:
            sent.append(data)

    masker = _Masker(Target(), ["s3cret-value"])
    for piece in (b"head s3c", b"ret-va", b"lue tail and s3cret-value", b"!"):
        masker.sendall(piece)
    masker.flush()
    joined = b"".join(sent)
    assert joined == b"head ************ tail and ************!"
