"""Quotas per user against an in-memory engine: each quota refuses the change that would pass it, with
a message that names it and how to free some; changes that do not add are never refused."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_backend import FakeBackend, as_backend
from traitlets import TraitError
from traitlets.config import Config

from jupyter_sandbox.sandbox import errors
from jupyter_sandbox.sandbox import secrets as sandbox_secrets
from jupyter_sandbox.sandbox.image import DEFAULT_IMAGE
from jupyter_sandbox.sandbox.manager import SandboxManager
from jupyter_sandbox.sandbox.quotas import Holding, QuotaExceeded, SandboxQuota
from jupyter_sandbox.server_extension.handlers.base import status_of


def make_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str, **quota: object) -> SandboxManager:
    monkeypatch.setenv(sandbox_secrets.SECRET_ENV, str(tmp_path / "state" / "host.secret"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    config = Config({"SandboxQuota": quota})
    manager = SandboxManager(
        backend=as_backend(FakeBackend(images=[DEFAULT_IMAGE])),
        owner=owner,
        enforce_disk="off",
        enforce_egress=False,
        orphan_grace=0,
        config=config,
    )
    manager.server_id = secrets.token_hex(8)
    monkeypatch.setattr(manager, "wait_for_agent", lambda sandbox, timeout=30: {"status": "ok"})
    return manager


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxManager]:
    yield make_manager(tmp_path, monkeypatch, "hub-user:alice", max_running=2, max_sandboxes=3)


def test_max_running_refuses_the_next_start_and_the_next_running_create(manager: SandboxManager) -> None:
    first, second = manager.create(), manager.create()
    with pytest.raises(QuotaExceeded) as refused:
        manager.create()
    message = refused.value.message
    assert "SandboxQuota.max_running = 2" in message and "(you have 2)" in message and "stop one" in message
    assert status_of(refused.value) == 409
    manager.stop(first)
    third = manager.create()  # a place is free again
    with pytest.raises(QuotaExceeded, match="max_running"):
        manager.start(manager.get(first.id))
    # Stopping is never refused, nor is a stopped sandbox counted as running.
    manager.stop(manager.get(second.id))
    manager.start(manager.get(first.id))
    assert {s.id for s in manager.list(owner=manager.owner) if s.running} == {first.id, third.id}


def test_max_sandboxes_counts_stopped_ones_too(manager: SandboxManager) -> None:
    for _ in range(3):
        manager.stop(manager.create())
    with pytest.raises(QuotaExceeded) as refused:
        manager.create(start=False)
    assert "SandboxQuota.max_sandboxes = 3" in refused.value.message and "delete one" in refused.value.message
    assert "hub-user:alice already has 3 sandboxes" in refused.value.message
    assert isinstance(refused.value, errors.Conflict)


def test_overrides_per_user_and_other_owners_are_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quota = {"max_running": 1, "overrides": {"bob": {"max_running": 2}}}
    alice = make_manager(tmp_path, monkeypatch, "hub-user:alice", **quota)
    alice.create()
    with pytest.raises(QuotaExceeded):
        alice.create()
    bob = make_manager(tmp_path, monkeypatch, "hub-user:bob", **quota)
    bob._backend = alice.backend  # one engine, two owners
    bob.create()
    bob.create()  # bob's override, and alice's sandbox is not his
    with pytest.raises(QuotaExceeded, match="max_running = 2"):
        bob.create()


def test_cpu_memory_and_disk_sum_over_what_the_user_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = make_manager(tmp_path, monkeypatch, "u", max_cpu=2.5, max_memory="3g", max_disk="7g")
    manager.create(manager.default_spec(cpu=2.0, memory=1 << 30, disk=3 << 30))
    with pytest.raises(QuotaExceeded) as refused:
        manager.create(manager.default_spec(cpu=1.0, memory=1 << 30, disk=1 << 30))
    assert "max_cpu = 2.5" in refused.value.message and "fewer vCPUs" in refused.value.message
    with pytest.raises(QuotaExceeded, match="max_memory = 3 GiB"):
        manager.create(manager.default_spec(cpu=0.5, memory=3 << 30, disk=1 << 30))
    with pytest.raises(QuotaExceeded, match="max_disk = 7 GiB"):
        manager.create(manager.default_spec(cpu=0.5, memory=1 << 30, disk=5 << 30))
    manager.create(manager.default_spec(cpu=0.5, memory=1 << 30, disk=4 << 30))  # exactly at every limit


def test_a_change_that_adds_nothing_passes_a_lowered_quota() -> None:
    quota = SandboxQuota(max_running=1)
    running = Holding(running=True, cpu=1.0, memory=1, disk=1)
    # Two running already (the quota was lowered since): restarting one in place is allowed.
    quota.check("u", [running, running], running, replacing=running)
    with pytest.raises(QuotaExceeded):
        quota.check("u", [running, running], running)


def test_bad_quota_configuration_is_refused_at_start() -> None:
    with pytest.raises(TraitError, match="unknown quota"):
        SandboxQuota(overrides={"alice": {"max_gpus": 1}})
    with pytest.raises(TraitError, match="max_memory"):
        SandboxQuota(max_memory="lots")


def test_unlimited_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = make_manager(tmp_path, monkeypatch, "u")
    assert manager.quota.limits_for("u").unlimited
    for _ in range(4):
        manager.create()


def test_an_allow_list_cannot_reach_into_the_operators_denied_blocks() -> None:
    from jupyter_sandbox.sandbox import network

    limits = network.Limits(deny_cidrs=("10.0.0.0/8", "fc00::/7"))
    for block in ("10.3.0.0/16", "10.0.0.0/8", "fd12::/64"):  # inside, the whole of it, and IPv6
        with pytest.raises(network.PolicyError, match="network_deny_cidrs"):
            network.parse_policy({"mode": "allow", "cidrs": [block]}, limits)
    assert network.parse_policy({"mode": "allow", "cidrs": ["8.8.8.0/24"]}, limits).cidrs == ["8.8.8.0/24"]
    # Without a deny list (single-machine mode), private blocks may be allowed as before.
    assert network.parse_policy({"mode": "allow", "cidrs": ["10.3.0.0/16"]}, network.Limits()).cidrs == ["10.3.0.0/16"]
