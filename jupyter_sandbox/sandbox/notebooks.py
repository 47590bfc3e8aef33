"""A notebook's sandbox follows the notebook file: renames, moves, copies and deletes.

A notebook's sandbox is found by its workspace key, a hash of the owner and the notebook's path
(binding.workspace_key), carried in the container's name. When the file moves, the key must move with
it, or the sandbox would stay with the old name and the next file given that name would get another
notebook's files. The Jupyter server sees every move made through it (its contents events, and the
session updates JupyterLab makes after a rename); it calls this module, which renames the containers
(atomically, under the claim lock) and rewrites the host-side notes of binding.py:

- rename or move (a file, or a folder with notebooks in it): the sandbox takes the new path's key; a
  running kernel of the notebook is told (its next sandbox, after `%sandbox delete`, is the new
  path's);
- copy: the copy gets no sandbox of the original; a sandbox left under the copy's path by a file that
  was there before (deleted outside Jupyter) is detached;
- delete: the sandbox is released as a sandbox without a notebook is, i.e. removed with its files
  (one a running kernel still uses goes when that kernel shuts down);
- outside Jupyter: nothing is seen at once. A notebook file that was seen and is gone is noticed by
  the server's periodic check (`tidy`): its sandbox, if no kernel uses it, is detached, kept with its
  files under a key no path gives, so a file later created under that name starts empty.

State lives in Docker names and the host state folder only, so a server restart between any two steps
changes nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from . import binding
from .docker_backend import SandboxError
from .manager import Sandbox, SandboxManager

log = logging.getLogger(__name__)


def remember_start(workspace: str, path: str) -> None:
    """A kernel starts for the notebook at `path`: note where its workspace's notebook is (once)."""
    seen = os.path.isfile(path)
    with binding.claim_lock():
        record = binding.notebook_record(workspace)
        if record is None or (seen and not record.get("seen")):
            binding.remember_notebook(workspace, path, seen=seen)


class NotebookSandboxes:
    """Keeps notebooks' sandboxes bound to where the notebook files are now."""

    def __init__(self, manager: SandboxManager, root_dir: str) -> None:
        self.manager = manager
        self.root_dir = os.path.realpath(root_dir)

    def absolute(self, api_path: str) -> str:
        """The resolved file path of a Jupyter API path, as a kernel started in its folder sees it."""
        return os.path.realpath(os.path.join(self.root_dir, api_path.strip("/")))

    def key(self, path: str) -> str:
        return binding.workspace_key(self.manager.owner, path)

    def _under(self, folder: str) -> list[tuple[str, str]]:
        """Remembered (workspace, path) of the notebooks at or below `folder`."""
        prefix = folder.rstrip("/") + "/"
        return [
            (ws, str(record["path"]))
            for ws, record in binding.notebooks().items()
            if not record.get("detached") and (record["path"] == folder or str(record["path"]).startswith(prefix))
        ]

    # -- what the server saw ------------------------------------------------------------------

    def moved(self, old_api: str, new_api: str) -> list[str]:
        """A file or folder was renamed or moved through Jupyter; returns the sandboxes that moved."""
        old, new = self.absolute(old_api), self.absolute(new_api)
        moves = {self.key(old): new}
        for workspace, path in self._under(old):
            moves[workspace] = new + path[len(old) :]
        moved = []
        with binding.claim_lock():
            for workspace, path in moves.items():
                sandbox = self._rebind(workspace, path)
                if sandbox is not None:
                    moved.append(sandbox.id)
        return moved

    def session_moved(self, kernel_id: str, api_path: str) -> str | None:
        """A session's path changed (JupyterLab does so after a rename, and on "Save As"): the kernel's
        sandbox follows the session. Returns the sandbox id that moved, if any."""
        path = self.absolute(api_path)
        workspace = self.key(path)
        with binding.claim_lock():
            binding.set_kernel_workspace(kernel_id, workspace)
            sandbox = self.manager.find_for_kernel(kernel_id)
            # A kernel's sandbox of its own (its notebook's was busy, or deleted) stays its own.
            if sandbox is None or sandbox.workspace is None or sandbox.workspace == workspace:
                return None
            moved = self._rebind(sandbox.workspace, path, sandbox)
            return moved.id if moved else None

    def copied(self, new_api: str) -> None:
        """A file was copied (JupyterLab's Duplicate): the copy starts with a sandbox of its own."""
        path = self.absolute(new_api)
        with binding.claim_lock():
            stale = self.manager.find_for_workspace(self.key(path))
            if stale is not None:
                self._detach(stale, path)
            binding.forget_notebook(self.key(path))

    def deleted(self, api_path: str) -> list[str]:
        """A file or folder was deleted through Jupyter: its notebooks' sandboxes are removed with their
        files (one still used by a running kernel becomes that kernel's own, removed with it)."""
        path = self.absolute(api_path)
        workspaces = {self.key(path), *(ws for ws, _ in self._under(path))}
        doomed: list[Sandbox] = []
        with binding.claim_lock():
            for workspace in workspaces:
                binding.forget_notebook(workspace)
                sandbox = self.manager.find_for_workspace(workspace)
                if sandbox is None:
                    continue
                kernel_id = sandbox.kernel_id
                if kernel_id and binding.kernel_alive(kernel_id):
                    self.manager.bind(sandbox, None, kernel_id)
                    binding.set_kernel_workspace(kernel_id, None)
                    log.info("notebook %s deleted: its sandbox %s goes with kernel %s", path, sandbox.id, kernel_id)
                    continue
                # Out of reach first (a notebook created at once under the name must not take it),
                # then removed outside the lock, which claims need.
                doomed.append(self.manager.bind(sandbox, binding.detached_workspace(), kernel_id))
        for sandbox in doomed:
            log.info("notebook %s deleted: removing its sandbox %s", path, sandbox.id)
            self.manager.remove(sandbox)
        return [s.id for s in doomed]

    def tidy(self) -> list[str]:
        """Detach the sandboxes of notebooks that were seen and are gone (deleted or moved outside
        Jupyter), unless a running kernel still uses them."""
        detached = []
        for workspace, record in binding.notebooks().items():
            path = str(record["path"])
            if record.get("detached") or not record.get("seen") or os.path.exists(path):
                continue
            with binding.claim_lock():
                if binding.notebook_record(workspace) is None or os.path.exists(path):
                    continue  # moved through Jupyter meanwhile
                sandbox = self.manager.find_for_workspace(workspace)
                if sandbox is not None and sandbox.kernel_id and binding.kernel_alive(sandbox.kernel_id):
                    continue
                if sandbox is not None:
                    self._detach(sandbox, path)
                    detached.append(sandbox.id)
                binding.forget_notebook(workspace)
        return detached

    # -- renames (callers hold the claim lock) -----------------------------------------------

    def _rebind(self, workspace: str, path: str, sandbox: Sandbox | None = None) -> Sandbox | None:
        """Give the sandbox of `workspace` to the notebook now at `path`."""
        new = self.key(path)
        if new == workspace:
            return None
        sandbox = sandbox or self.manager.find_for_workspace(workspace)
        if sandbox is None:
            binding.forget_notebook(workspace)
            return None
        stale = self.manager.find_for_workspace(new)
        if stale is not None and stale.id != sandbox.id:
            # Left by a file that was at `path` before and went outside Jupyter: not this notebook's.
            self._detach(stale, path)
        try:
            moved = self.manager.bind(sandbox, new, sandbox.kernel_id)
        except SandboxError as exc:
            log.warning("could not move sandbox %s to notebook %s: %s", sandbox.id, path, exc)
            return None
        if moved.kernel_id:
            binding.set_kernel_workspace(moved.kernel_id, new)
        binding.remember_notebook(new, path, seen=os.path.isfile(path))
        binding.forget_notebook(workspace)
        log.info("sandbox %s follows its notebook to %s", moved.id, path)
        return moved

    def _detach(self, sandbox: Sandbox, path: str) -> Sandbox:
        detached = binding.detached_workspace()
        moved = self.manager.bind(sandbox, detached, sandbox.kernel_id)
        if moved.kernel_id:
            binding.set_kernel_workspace(moved.kernel_id, detached)
        binding.remember_notebook(detached, path, detached=True)
        log.info("sandbox %s of the former notebook %s detached (files kept)", sandbox.id, path)
        return moved


class WorkspaceMoves:
    """The same moves by workspace key, for a service whose notebooks are on another machine (hub
    mode): the user's server knows the files and their keys, and sends which key becomes which; this
    side knows only the sandboxes. No path is looked up here and no host note of notebooks is kept."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager

    def rebind(self, moves: list[tuple[str, str]]) -> list[Sandbox]:
        """Each (old key, new key): the old key's sandbox takes the new one (a sandbox left under the
        new key by an earlier file there is detached first). Returns the sandboxes that moved."""
        moved = []
        with binding.claim_lock():
            for old, new in moves:
                sandbox = self.manager.find_for_workspace(old)
                if sandbox is None or old == new:
                    continue
                stale = self.manager.find_for_workspace(new)
                if stale is not None and stale.id != sandbox.id:
                    self.manager.bind(stale, binding.detached_workspace(), stale.kernel_id)
                try:
                    moved.append(self.manager.bind(sandbox, new, sandbox.kernel_id))
                except SandboxError as exc:
                    log.warning("could not move sandbox %s to workspace %s: %s", sandbox.id, new, exc)
        return moved

    def detach(self, workspace: str) -> list[Sandbox]:
        """A copy was made under this key: a sandbox left there is not the copy's (files kept)."""
        with binding.claim_lock():
            stale = self.manager.find_for_workspace(workspace)
            if stale is None:
                return []
            return [self.manager.bind(stale, binding.detached_workspace(), stale.kernel_id)]

    def delete(self, workspaces: list[str], alive: Callable[[str], bool]) -> tuple[list[Sandbox], list[Sandbox]]:
        """The notebooks of these keys were deleted: their sandboxes are removed with their files, but
        one a running kernel still uses (`alive`) becomes that kernel's own. (removed, kept)."""
        doomed: list[Sandbox] = []
        kept: list[Sandbox] = []
        with binding.claim_lock():
            for workspace in workspaces:
                sandbox = self.manager.find_for_workspace(workspace)
                if sandbox is None:
                    continue
                if sandbox.kernel_id and alive(sandbox.kernel_id):
                    kept.append(self.manager.bind(sandbox, None, sandbox.kernel_id))
                    continue
                doomed.append(self.manager.bind(sandbox, binding.detached_workspace(), sandbox.kernel_id))
        for sandbox in doomed:
            log.info("notebook of sandbox %s deleted on the user's server: removing it", sandbox.id)
            self.manager.remove(sandbox)
        return doomed, kept

    def session(self, kernel_id: str, workspace: str) -> list[Sandbox]:
        """A kernel's session moved to another notebook: the kernel's notebook sandbox follows it."""
        with binding.claim_lock():
            sandbox = self.manager.find_for_kernel(kernel_id)
            if sandbox is None or sandbox.workspace is None or sandbox.workspace == workspace:
                return []
        return self.rebind([(sandbox.workspace, workspace)])
