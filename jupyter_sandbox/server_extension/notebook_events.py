"""What the Jupyter server sees of notebooks moving, passed on to sandbox/notebooks.py.

Two sources: the contents service's events (rename, copy, delete; made for every change through the
server's contents API, whatever front end asked) and session updates (JupyterLab moves a session to
the new path after a rename, and to the new file on "Save As"). Both run the Docker work in a thread;
the two for one rename agree whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable

from ..sandbox import binding
from ..sandbox.manager import SandboxManager
from ..sandbox.notebooks import NotebookSandboxes
from ..sandbox.operations import SandboxOperations

CONTENTS_SCHEMA = "https://events.jupyter.org/jupyter_server/contents_service/v1"


class NotebookEvents:
    def __init__(self, serverapp: Any, manager: SandboxManager, service: SandboxOperations) -> None:
        self.serverapp = serverapp
        self.service = service
        self.log: logging.Logger = serverapp.log
        contents = getattr(serverapp, "contents_manager", None)
        # The folder kernels start in is the contents manager's root (the server's, by default).
        root = getattr(contents, "root_dir", None) or serverapp.root_dir
        self.notebooks = NotebookSandboxes(manager, root)
        self._original_update: Callable[..., Any] | None = None

    def install(self) -> None:
        logger = getattr(self.serverapp, "event_logger", None)
        if logger is not None:
            logger.add_listener(schema_id=CONTENTS_SCHEMA, listener=self._on_contents)
        else:
            self.log.warning(
                "jupyter-sandbox: this server has no event bus; notebook sandboxes do not "
                "follow renames made through it"
            )
        sessions = getattr(self.serverapp, "session_manager", None)
        if sessions is not None and hasattr(sessions, "update_session"):
            # jupyter_server announces no session change; wrapping this one instance's method is the
            # narrowest way to hear of it (the class and other servers are untouched).
            self._original_update = sessions.update_session
            sessions.update_session = self._update_session

    def uninstall(self) -> None:
        logger = getattr(self.serverapp, "event_logger", None)
        if logger is not None:
            try:
                logger.remove_listener(schema_id=CONTENTS_SCHEMA, listener=self._on_contents)
            except Exception:  # already gone with the server's event bus
                pass
        if self._original_update is not None:
            self.serverapp.session_manager.update_session = self._original_update
            self._original_update = None

    async def _run(self, what: str, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, function, *args)
        except Exception:
            # A sandbox that cannot follow its notebook must not break the file operation.
            self.log.exception("jupyter-sandbox: following a notebook (%s) failed", what)
            return None

    async def _on_contents(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        action, path = data.get("action"), data.get("path")
        if not isinstance(path, str):
            return
        source = data.get("source_path")
        if action == "rename" and isinstance(source, str):
            await self._run("rename", self.notebooks.moved, source, path)
        elif action == "copy":
            await self._run("copy", self.notebooks.copied, path)
        elif action == "delete":
            await self._run("delete", self.notebooks.deleted, path)

    async def _update_session(self, session_id: str, **kwargs: Any) -> Any:
        assert self._original_update is not None
        result = await self._original_update(session_id, **kwargs)
        if "path" in kwargs:
            try:
                model = await self.serverapp.session_manager.get_session(session_id=session_id)
            except Exception:
                return result
            kernel_id = ((model or {}).get("kernel") or {}).get("id")
            path = (model or {}).get("path")
            # Only sandbox kernels hold a lease; other kernels' sessions are none of ours.
            if isinstance(kernel_id, str) and isinstance(path, str) and binding.kernel_alive(kernel_id):
                await self._run("session", self.notebooks.session_moved, kernel_id, path)
        return result

    async def tidy(self) -> None:
        detached = await self._run("check", self.notebooks.tidy)
        if detached:
            self.log.info("jupyter-sandbox: notebooks gone outside Jupyter; detached their sandboxes %s", detached)


class RemoteNotebookEvents:
    """Hub mode: the same notebook moves, for sandboxes the sandbox service holds. The files are here,
    so the workspace keys are worked out here, as this server's kernels work them out (this server's
    owner and the resolved path, binding.workspace_key), with the notes the kernels leave on this
    machine (which notebook a key is, for a folder's move); the service is told which key becomes
    which (POST /sandbox/api/notebooks/events) and moves the sandboxes. Afterwards the notes here are
    brought up to date, and a running kernel whose sandbox moved is told its new key."""

    def __init__(self, serverapp: Any, forwarder: Any, owner: str) -> None:
        self.serverapp = serverapp
        self.forwarder = forwarder
        self.owner = owner
        self.log: logging.Logger = serverapp.log
        contents = getattr(serverapp, "contents_manager", None)
        root = getattr(contents, "root_dir", None) or serverapp.root_dir
        self.root_dir = os.path.realpath(root)
        self._original_update: Callable[..., Any] | None = None
        self._pending: set[asyncio.Future] = set()

    def absolute(self, api_path: str) -> str:
        return os.path.realpath(os.path.join(self.root_dir, api_path.strip("/")))

    def key(self, path: str) -> str:
        return binding.workspace_key(self.owner, path)

    def under(self, folder: str) -> list[tuple[str, str]]:
        """Remembered (workspace, path) of the notebooks at or below `folder`."""
        prefix = folder.rstrip("/") + "/"
        return [
            (ws, str(record["path"]))
            for ws, record in binding.notebooks().items()
            if not record.get("detached") and (record["path"] == folder or str(record["path"]).startswith(prefix))
        ]

    def install(self) -> None:
        logger = getattr(self.serverapp, "event_logger", None)
        if logger is not None:
            logger.add_listener(schema_id=CONTENTS_SCHEMA, listener=self._on_contents)
        sessions = getattr(self.serverapp, "session_manager", None)
        if sessions is not None and hasattr(sessions, "update_session"):
            self._original_update = sessions.update_session
            sessions.update_session = self._update_session

    def uninstall(self) -> None:
        logger = getattr(self.serverapp, "event_logger", None)
        if logger is not None:
            try:
                logger.remove_listener(schema_id=CONTENTS_SCHEMA, listener=self._on_contents)
            except Exception:  # already gone with the server's event bus
                pass
        if self._original_update is not None:
            self.serverapp.session_manager.update_session = self._original_update
            self._original_update = None

    async def settle(self, timeout: float) -> None:
        """Wait (a bounded time) for the events still on their way to the service."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout)

    def live_kernels(self) -> list[str]:
        kernels = getattr(self.serverapp, "kernel_manager", None)
        try:
            return [str(k) for k in kernels.list_kernel_ids()] if kernels is not None else []
        except Exception:
            return []

    async def send(self, body: dict[str, Any]) -> dict[str, Any] | None:
        task = asyncio.ensure_future(self.forwarder.post_json("notebooks/events", body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        try:
            answer = await task
        except Exception as exc:
            # A sandbox that cannot follow its notebook must not break the file operation.
            self.log.warning(
                "jupyter-sandbox: the sandbox service did not hear of a notebook %s: %s", body["action"], exc
            )
            return None
        return answer if isinstance(answer, dict) else None

    @staticmethod
    def _tell_kernels(answer: dict[str, Any] | None, key: str = "moved") -> None:
        for sandbox in (answer or {}).get(key, []):
            if isinstance(sandbox, dict) and isinstance(sandbox.get("kernel_id"), str):
                # The kernel runs here and reads its next sandbox's key from this machine's note.
                binding.set_kernel_workspace(sandbox["kernel_id"], sandbox.get("workspace"))

    async def moved(self, old_api: str, new_api: str) -> None:
        old, new = self.absolute(old_api), self.absolute(new_api)
        targets = {self.key(old): new}
        for workspace, path in self.under(old):
            targets[workspace] = new + path[len(old) :]
        moves = [{"from": ws, "to": self.key(path)} for ws, path in targets.items() if ws != self.key(path)]
        if not moves:
            return
        answer = await self.send({"action": "rename", "moves": moves})
        if answer is None:
            return
        self._tell_kernels(answer)
        for workspace, path in targets.items():
            if binding.notebook_record(workspace) is not None or workspace == self.key(old):
                binding.remember_notebook(self.key(path), path, seen=os.path.isfile(path))
                binding.forget_notebook(workspace)

    async def copied(self, new_api: str) -> None:
        workspace = self.key(self.absolute(new_api))
        answer = await self.send({"action": "copy", "workspace": workspace})
        if answer is not None:
            self._tell_kernels(answer, "detached")
            binding.forget_notebook(workspace)

    async def deleted(self, api_path: str) -> None:
        path = self.absolute(api_path)
        workspaces = sorted({self.key(path), *(ws for ws, _ in self.under(path))})
        answer = await self.send({"action": "delete", "workspaces": workspaces, "live_kernels": self.live_kernels()})
        if answer is None:
            return
        for sandbox in answer.get("kept", []):
            if isinstance(sandbox, dict) and isinstance(sandbox.get("kernel_id"), str):
                binding.set_kernel_workspace(sandbox["kernel_id"], None)
        for workspace in workspaces:
            binding.forget_notebook(workspace)

    async def _on_contents(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        action, path = data.get("action"), data.get("path")
        if not isinstance(path, str):
            return
        source = data.get("source_path")
        if action == "rename" and isinstance(source, str):
            await self.moved(source, path)
        elif action == "copy":
            await self.copied(path)
        elif action == "delete":
            await self.deleted(path)

    async def _update_session(self, session_id: str, **kwargs: Any) -> Any:
        assert self._original_update is not None
        result = await self._original_update(session_id, **kwargs)
        if "path" in kwargs:
            try:
                model = await self.serverapp.session_manager.get_session(session_id=session_id)
            except Exception:
                return result
            kernel_id = ((model or {}).get("kernel") or {}).get("id")
            path = (model or {}).get("path")
            if isinstance(kernel_id, str) and isinstance(path, str):
                workspace = self.key(self.absolute(path))
                answer = await self.send({"action": "session", "kernel_id": kernel_id, "workspace": workspace})
                if answer is not None:
                    binding.set_kernel_workspace(kernel_id, workspace)
        return result
