"""Hub mode's notebook moves on the service's side (POST /sandbox/api/notebooks/events ->
SandboxOperations.follow_notebook -> notebooks.WorkspaceMoves) against an in-memory engine: a rename
moves a sandbox to the new key (detaching one left there), a copy detaches, a delete removes unless a
running kernel of the user's server uses it, a session move follows the kernel; bad input is a 400's
domain error. And the lending half of POST .../kernel. No Docker engine."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_backend import FakeBackend, as_backend

from jupyter_sandbox.sandbox import binding, errors
from jupyter_sandbox.sandbox import secrets as sandbox_secrets
from jupyter_sandbox.sandbox.image import DEFAULT_IMAGE
from jupyter_sandbox.sandbox.manager import SandboxManager
from jupyter_sandbox.sandbox.operations import SandboxOperations


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxOperations]:
    monkeypatch.setenv(sandbox_secrets.SECRET_ENV, str(tmp_path / "state" / "host.secret"))
    manager = SandboxManager(
        backend=as_backend(FakeBackend(images=[DEFAULT_IMAGE])),
        owner="hub-user:alice",
        enforce_disk="off",
        enforce_egress=False,
        warm_pool_size=0,
    )
    manager.server_id = secrets.token_hex(8)
    monkeypatch.setattr(manager, "wait_for_agent", lambda sandbox, timeout=30: {"status": "ok"})
    yield SandboxOperations(manager)


def key(name: str) -> str:
    # Keys as the user's server works them out (its own owner, its own paths).
    return binding.workspace_key("alice", f"/home/alice/{name}.ipynb")


def follow(ops: SandboxOperations, body: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(ops.follow_notebook(body))


def test_a_rename_moves_the_sandbox_and_detaches_one_left_under_the_new_name(ops: SandboxOperations) -> None:
    manager = ops.manager
    mine = manager.create(workspace=key("a"))
    stale = manager.create(workspace=key("b"))
    answer = follow(ops, {"action": "rename", "moves": [{"from": key("a"), "to": key("b")}]})
    assert [s["id"] for s in answer["moved"]] == [mine.id]
    assert getattr(manager.find_for_workspace(key("b")), "id", None) == mine.id
    assert manager.find_for_workspace(key("a")) is None
    # The file that was there before keeps its files under a key no path gives.
    assert manager.get(stale.id).workspace not in (key("a"), key("b"), None)


def test_a_copy_detaches_and_a_delete_removes_unless_a_kernel_of_the_server_runs(ops: SandboxOperations) -> None:
    manager = ops.manager
    left = manager.create(workspace=key("copy"))
    assert [s["id"] for s in follow(ops, {"action": "copy", "workspace": key("copy")})["detached"]] == [left.id]
    assert manager.find_for_workspace(key("copy")) is None
    used = manager.create(kernel_id="kernel-1", workspace=key("used"))
    idle = manager.create(workspace=key("idle"))
    answer = follow(
        ops, {"action": "delete", "workspaces": [key("used"), key("idle")], "live_kernels": ["kernel-1", "other"]}
    )
    assert [s["id"] for s in answer["removed"]] == [idle.id]
    assert [s["id"] for s in answer["kept"]] == [used.id]
    assert manager.get(used.id).workspace is None and manager.get(used.id).kernel_id == "kernel-1"
    assert idle.id not in [s.id for s in manager.list(owner=manager.owner)]


def test_a_session_move_takes_the_kernels_notebook_sandbox_along(ops: SandboxOperations) -> None:
    manager = ops.manager
    made = manager.create(kernel_id="kernel-2", workspace=key("old"))
    answer = follow(ops, {"action": "session", "kernel_id": "kernel-2", "workspace": key("new")})
    assert [s["workspace"] for s in answer["moved"]] == [key("new")] and manager.get(made.id).kernel_id == "kernel-2"


@pytest.mark.parametrize(
    "body, words",
    [
        ({"action": "explode"}, "action must be one of"),
        ({"action": "rename", "moves": []}, "moves must be a list"),
        ({"action": "rename", "moves": [{"from": "abc"}]}, "{from, to}"),
        ({"action": "rename", "moves": [{"from": "../../etc", "to": "0123456789abcdef"}]}, "hex digits"),
        ({"action": "copy", "workspace": 7}, "workspace key"),
        ({"action": "delete", "workspaces": ["0123456789abcdef"], "live_kernels": ["no spaces"]}, "kernel id"),
        ({"action": "session", "kernel_id": None, "workspace": "0123456789abcdef"}, "kernel id"),
    ],
)
def test_bad_events_are_refused_with_what_is_wrong(ops: SandboxOperations, body: dict, words: str) -> None:
    with pytest.raises(errors.InvalidInput, match=words.replace("{", r"\{").replace("}", r"\}")):
        follow(ops, body)


def test_lending_a_sandbox_to_a_kernel_and_taking_it_back(ops: SandboxOperations) -> None:
    made = ops.manager.create()
    asyncio.run(ops.lend(made.id, "kernel-3"))
    assert ops.manager.get(made.id).kernel_id == "kernel-3"
    asyncio.run(ops.lend(made.id, None))
    assert ops.manager.get(made.id).kernel_id is None
    with pytest.raises(errors.InvalidInput):
        asyncio.run(ops.lend(made.id, "not a kernel id!"))
