"""Domain errors and their one map to HTTP statuses; operations that need no Docker engine, against a
stub manager. No Docker engine."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jupyter_sandbox.sandbox import errors, preview
from jupyter_sandbox.sandbox.manager import AGENT_PORT, NoSuchSandbox, OwnerLimit, Sandbox
from jupyter_sandbox.sandbox.operations import SandboxOperations, check_path, domain_errors
from jupyter_sandbox.sandbox.spec import LABEL_OWNER, SpecError
from jupyter_sandbox.server_extension.handlers import STATUS_OF, status_of
from jupyter_sandbox.server_extension.handlers.base import http_error


def every_domain_error() -> list[type[errors.SandboxOperationError]]:
    found, todo = [], [errors.SandboxOperationError]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo += kind.__subclasses__()
    return [k for k in found if k.__module__ == errors.__name__ and k is not errors.SandboxOperationError]


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (errors.InvalidInput, 400),
        (errors.SandboxNotFound, 404),
        (errors.NotFound, 404),
        (errors.SandboxStopped, 409),
        (errors.Conflict, 409),
        (errors.PayloadTooLarge, 413),
        (errors.LimitReached, 429),
        (errors.AgentUnavailable, 502),
        (errors.Busy, 503),
        (errors.EngineUnavailable, 503),
        (errors.TimedOut, 504),
        (errors.InsufficientStorage, 507),
        (NoSuchSandbox, 404),
    ],
)
def test_each_domain_error_has_the_status_a_person_expects(
    kind: type[errors.SandboxOperationError], status: int
) -> None:
    error = kind("what went wrong")
    assert status_of(error) == status
    assert http_error(error).status_code == status and error.message == "what went wrong"


def test_every_domain_error_is_in_the_map() -> None:
    for kind in every_domain_error():
        assert any(base in STATUS_OF for base in kind.__mro__), kind


def test_lower_layers_failures_become_domain_errors() -> None:
    cases = [
        (SpecError("memory must be a size"), errors.InvalidInput),
        (OwnerLimit("you have 10 sandboxes"), errors.Conflict),
        (NoSuchSandbox("there is no sandbox 'x'"), errors.SandboxNotFound),
    ]
    for raised, expected in cases:
        with pytest.raises(expected) as caught, domain_errors():
            raise raised
        assert caught.value.message == str(raised)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "is required"),
        (3, "must be a string"),
        ("a/../b", "'..'"),
        ("a\nb", "control characters"),
        ("-rf", "starting with '-'"),
        ("x" * 300, "too long"),
    ],
)
def test_a_bad_path_is_invalid_input(value: Any, words: str) -> None:
    with pytest.raises(errors.InvalidInput, match=words):
        check_path(value)


class StubManager:
    """What the operations ask of a manager, with no Docker behind it."""

    owner = "me"
    warm_pool_size = 0

    def __init__(self, *sandboxes: Sandbox) -> None:
        self.sandboxes = {s.id: s for s in sandboxes}
        self.removed: list[str] = []

    def get(self, sandbox_id: str) -> Sandbox:
        if sandbox_id not in self.sandboxes:
            raise NoSuchSandbox(f"there is no sandbox {sandbox_id!r}")
        return self.sandboxes[sandbox_id]

    def was_idle_stopped(self, sandbox: Sandbox) -> bool:
        return False

    def remove(self, sandbox: Sandbox) -> None:
        self.removed.append(sandbox.id)


def box(sandbox_id: str, state: str = "running", owner: str = "me") -> Sandbox:
    return Sandbox(sandbox_id, "c", "n", "v", state, "img", {LABEL_OWNER: owner}, {AGENT_PORT: 1})


def test_another_owners_sandbox_is_not_found_and_a_stopped_one_is_stopped() -> None:
    ops = SandboxOperations(StubManager(box("aaaaaaaaaaaa", owner="someone"), box("bbbbbbbbbbbb", state="exited")))
    with pytest.raises(errors.SandboxNotFound, match="there is no sandbox 'aaaaaaaaaaaa'"):
        asyncio.run(ops.list_files("aaaaaaaaaaaa", "x"))
    with pytest.raises(errors.SandboxNotFound):
        asyncio.run(ops.list_files("cccccccccccc", "x"))
    with pytest.raises(errors.SandboxStopped, match="is exited; start it first"):
        asyncio.run(ops.list_files("bbbbbbbbbbbb", "x"))


def test_input_is_checked_before_the_sandbox_is_looked_up() -> None:
    manager = StubManager()
    ops = SandboxOperations(manager)
    with pytest.raises(errors.InvalidInput, match=r"'\.\.'"):
        asyncio.run(ops.move_file("cccccccccccc", "../etc/passwd", "x"))
    with pytest.raises(errors.InvalidInput, match="timeout"):
        asyncio.run(ops.exec("cccccccccccc", "true", None, {}, 99999))
    with pytest.raises(errors.InvalidInput, match="format must be tar or zip"):

        async def download() -> None:
            async with ops.download("cccccccccccc", "x", "rar"):
                pass

        asyncio.run(download())


def test_delete_removes_through_the_manager_which_forgets_host_state() -> None:
    manager = StubManager(box("dddddddddddd", state="exited"))
    ops = SandboxOperations(manager)
    asyncio.run(ops.delete("dddddddddddd"))
    assert manager.removed == ["dddddddddddd"]


def test_one_preview_link_builder_for_rest_and_magic(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("JUPYTER_SANDBOX_SECRET_FILE", str(tmp_path / "host.secret"))
    ops = SandboxOperations(StubManager(), preview_url_template="http://{port}-{sandbox_id}.localhost:{server_port}/")
    ops.server_port = 8888
    link = ops.preview_link("eeeeeeeeeeee", 8000, 60)
    assert link.url == "http://8000-eeeeeeeeeeee.localhost:8888/"
    assert link.browser_url == f"{link.url}?token={link.token}"
    shown = link.to_dict()
    assert shown["header"] == "X-Sandbox-Preview-Token" and shown["expires_at"].endswith("+00:00")
    assert preview.verify(link.token, "eeeeeeeeeeee", 8000)
    preview.forget("eeeeeeeeeeee")  # what deleting the sandbox does: the link stops working
    assert not preview.verify(link.token, "eeeeeeeeeeee", 8000)
    with pytest.raises(errors.InvalidInput):
        ops.preview_link("eeeeeeeeeeee", 70000, 60)


def test_a_release_that_comes_while_the_kernel_s_sandbox_is_made_waits_and_finds_it() -> None:
    """A kernel shut down while its sandbox is still being made (a server exiting as its kernels
    start): the release must not find nothing and leave the sandbox to nobody."""

    class Making(StubManager):
        released: list[str] = []

        made_for: dict[str, str] = {}  # sandbox id: the kernel it was made for

        def list(self, owner: Any = None, kernel_id: Any = None) -> list[Sandbox]:
            return [s for s in self.sandboxes.values() if self.made_for.get(s.id) == kernel_id]

        def release(self, sandbox: Sandbox) -> None:
            self.released.append(sandbox.id)

    manager = Making()
    ops = SandboxOperations(manager)

    async def slow_bring_up(kernel_id: str, workspace: Any, progress: Any) -> Any:
        await asyncio.sleep(0.5)
        made = box("eeeeeeeeeeee")
        manager.sandboxes[made.id], manager.made_for[made.id] = made, kernel_id
        return made

    ops._bring_up_kernel = slow_bring_up  # type: ignore[method-assign,assignment]

    async def shut_down_as_it_starts() -> list[str]:
        bring_up = asyncio.ensure_future(ops.bring_up_kernel("k-1"))
        await asyncio.sleep(0.05)
        released = await ops.release_kernel("k-1")
        await bring_up
        return released

    assert asyncio.run(shut_down_as_it_starts()) == ["eeeeeeeeeeee"]
    assert manager.released == ["eeeeeeeeeeee"] and not ops._bringing_up
