"""Bringing a kernel's sandbox up, and watching it die, in background threads.

Docker calls block, so they never run on the relay's loop. Each thread reports back by posting
`(kind, payload)` events, which the relay handles on its own thread. This is where a `Sandbox`
becomes what the relay works with: the connection info of the ipykernel inside it ("ready" carries
it), so the relay itself knows nothing of Docker (relay.Lifecycle is the seam).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Coroutine
from typing import Any, Callable, TypeVar

from ..sandbox import binding
from ..sandbox.agent_client import AgentClient, run_blocking
from ..sandbox.agent_http import AgentError
from ..sandbox.docker_backend import SandboxError
from ..sandbox.errors import SandboxOperationError
from ..sandbox.manager import Sandbox, SandboxManager
from . import kernel_info as kernel_info_cache
from . import release
from .access import run
from .magics import MagicContext, operations_for
from .replies import API_RESTART_MESSAGE
from .settings import SandboxKernel

T = TypeVar("T")

Post = Callable[[str, Any], None]
log = logging.getLogger(__name__)

AGENT_WAIT_SECONDS = 25.0


class SandboxLifecycle:
    """Creates or reattaches the sandbox of one kernel, and watches it while it runs."""

    def __init__(self, manager: SandboxManager, kernel_id: str, post: Post, workspace: str | None = None) -> None:
        self.manager = manager
        self.kernel_id = kernel_id
        self.workspace = workspace
        self.post = post
        self.sandbox: Sandbox | None = None
        self._connection: dict[str, Any] | None = None
        self._watch_stop = threading.Event()
        self._bring_up_thread: threading.Thread | None = None
        self._touching: threading.Thread | None = None

    # -- bring up ---------------------------------------------------------------------------

    def bring_up(self) -> None:
        if self._bring_up_thread and self._bring_up_thread.is_alive():
            return
        self._watch_stop.set()
        self._bring_up_thread = threading.Thread(target=self._bring_up, name="sandbox-bring-up", daemon=True)
        self._bring_up_thread.start()

    def wait_bring_up(self, timeout: float) -> None:
        if self._bring_up_thread:
            self._bring_up_thread.join(timeout)

    def _progress(self, message: str) -> None:
        self.post("progress", message)

    def _bring_up(self) -> None:
        try:
            # The one bring-up (operations.py), which the remote kernel reaches through the API.
            self.workspace = binding.kernel_workspace(self.kernel_id, self.workspace)
            ops = operations_for(self.manager)
            up = run(ops.bring_up_kernel(self.kernel_id, self.workspace, progress=self._progress))
            sandbox = up.sandbox
            connection = sandbox.kernel_connection()
            self.sandbox, self._connection = sandbox, connection
            self._start_watchers(sandbox, up.last_event)
            self.post("ready", connection)
        except (SandboxError, AgentError, SandboxOperationError) as exc:
            self.post("failed", str(exc))
        except Exception as exc:  # never leave the notebook waiting on a crashed thread
            log.exception("bringing up the sandbox failed")
            self.post("failed", f"unexpected error while starting the sandbox: {exc!r}")

    # -- watching ---------------------------------------------------------------------------

    def _start_watchers(self, sandbox: Sandbox, last_event: int) -> None:
        stop = threading.Event()
        self._watch_stop = stop
        threading.Thread(
            target=self._watch_container, args=(sandbox, stop), daemon=True, name="sandbox-container-watch"
        ).start()
        threading.Thread(
            target=self._watch_agent, args=(sandbox, stop, last_event), daemon=True, name="sandbox-agent-watch"
        ).start()

    def stop_watching(self) -> None:
        self._watch_stop.set()

    def _container_gone(self, sandbox: Sandbox, stop: threading.Event) -> None:
        if stop.is_set():
            return
        stop.set()
        self.post("container_died", operations_for(self.manager).gone_reason(sandbox.id, sandbox.memory_limit))

    def _watch_container(self, sandbox: Sandbox, stop: threading.Event) -> None:
        """Docker's die event arrives within milliseconds; polling covers a broken event stream."""
        try:
            events = self.manager.backend.events(sandbox.container_id)

            def close_when_stopped() -> None:
                stop.wait()
                events.close()

            closer = threading.Thread(target=close_when_stopped, daemon=True)
            closer.start()
            for event in events:
                if stop.is_set():
                    return
                if event in ("die", "destroy", "stop"):
                    self._container_gone(sandbox, stop)
                    return
        except Exception:
            log.debug("docker event stream ended; polling instead", exc_info=True)
        while not stop.wait(1.0):
            try:
                if not self.manager.get(sandbox.id).running:
                    self._container_gone(sandbox, stop)
                    return
            except SandboxError:
                self._container_gone(sandbox, stop)
                return
            except Exception:
                log.debug("polling the sandbox failed", exc_info=True)

    def _watch_agent(self, sandbox: Sandbox, stop: threading.Event, last_event: int) -> None:
        client = self.manager.agent(sandbox)
        seq = last_event
        while not stop.is_set():
            try:
                seq, events = run_blocking(functools.partial(client.events, seq, AGENT_WAIT_SECONDS))
            except SandboxOperationError:
                if stop.wait(0.5):
                    return
                continue
            if stop.is_set():
                return
            for event in events:
                if event.get("type") == "kernel_died":
                    self.post("kernel_died", event)
                elif event.get("type") == "kernel_restarted":
                    # A restart asked for through the sandbox API, not by this notebook.
                    self.post("kernel_restarted", API_RESTART_MESSAGE)

    # -- what the relay asks ----------------------------------------------------------------

    @property
    def memory_limit(self) -> str:
        return self.sandbox.memory_limit if self.sandbox is not None else ""

    def connection(self) -> dict[str, Any] | None:
        """The inner kernel's connection info, once the sandbox is up."""
        return self._connection if self.sandbox is not None else None

    def recorded_kernel_info(self) -> dict[str, Any] | None:
        """What the image's kernel said the last time (a Docker call: not on the relay's loop)."""
        spec = self.manager.default_spec()
        return kernel_info_cache.load(self.manager.backend.image_id(spec.image) or "", spec.language)

    def remember_kernel_info(self, info: dict[str, Any]) -> None:
        sandbox = self.sandbox
        if sandbox is not None and sandbox.image_id:
            kernel_info_cache.store(sandbox.image_id, info, str(sandbox.spec.get("language") or "python"))

    def magic_context(
        self,
        settings: SandboxKernel,
        cell_timeout: float,
        write: Callable[[str, str], None],
        cancel: threading.Event,
    ) -> MagicContext:
        return MagicContext(
            manager=self.manager,
            settings=settings,
            sandbox=self.sandbox,
            cell_timeout=cell_timeout,
            write=write,
            cancel=cancel,
            stop_watching=self.stop_watching,
            delete=self.delete,
        )

    # -- actions from the relay -------------------------------------------------------------

    def adopt(self, sandbox: Sandbox) -> dict[str, Any]:
        """Watch a sandbox that a %sandbox command restarted or recreated; its kernel's connection."""
        self.stop_watching()
        self.sandbox, self._connection = sandbox, sandbox.kernel_connection()
        try:
            last_event = int(self.manager.wait_for_agent(sandbox, timeout=10).get("last_event") or 0)
        except AgentError:
            last_event = 0
        self._start_watchers(sandbox, last_event)
        return self._connection

    def agent_call(self, sandbox: Sandbox, call: Callable[[AgentClient], Coroutine[Any, Any, T]]) -> T:
        """One call of the sandbox's typed agent client, run to its end from this blocking code."""
        agent = self.manager.agent(sandbox)
        return run_blocking(lambda: call(agent))

    def restart_kernel(self, message: str) -> None:
        """Restart the Python process in the sandbox, then tell the relay with `message`."""
        sandbox = self.sandbox
        if sandbox is None:
            return

        def run() -> None:
            try:
                self.agent_call(sandbox, lambda agent: agent.kernel.restart())
                self.post("kernel_restarted", message)
            except (SandboxOperationError, SandboxError) as exc:
                self.post("failed", f"could not restart the Python process in the sandbox: {exc}")

        threading.Thread(target=run, daemon=True).start()

    def touch(self) -> None:
        """Tell the agent the sandbox is in use, so an idle reaper leaves it alone (fire and forget)."""
        sandbox = self.sandbox
        if sandbox is None or (self._touching is not None and self._touching.is_alive()):
            return

        def run() -> None:
            try:
                self.agent_call(sandbox, lambda agent: agent.kernel.activity(timeout=5))
            except (SandboxOperationError, SandboxError):
                pass

        self._touching = threading.Thread(target=run, daemon=True)
        self._touching.start()

    def interrupt(self) -> None:
        sandbox = self.sandbox
        if sandbox is None:
            return

        def run() -> None:
            try:
                self.agent_call(sandbox, lambda agent: agent.kernel.interrupt(timeout=5))
            except (SandboxOperationError, SandboxError) as exc:
                log.warning("interrupt through the agent failed: %s", exc)

        threading.Thread(target=run, daemon=True).start()

    def release(self) -> None:
        """The kernel shuts down: a notebook's sandbox is stopped and kept for the notebook's next
        kernel, any other removed (container and volume), also one still being created."""
        self.stop_watching()
        starting = self._bring_up_thread is not None and self._bring_up_thread.is_alive()
        try:
            # First: Jupyter may kill this process at any moment now. The release waits for its end.
            release.spawn(self.manager, self.kernel_id, starting=starting)
        except OSError as exc:
            log.error("could not start releasing the sandbox: %s", exc)
        # A sandbox still being made is better finished (and then released whole) than cut halfway.
        self.wait_bring_up(timeout=30)
        self.stop_watching()

    def delete(self) -> None:
        """Remove this kernel's sandbox with its files now; the next cell gets a fresh one."""
        self.stop_watching()
        sandbox, self.sandbox, self._connection = self.sandbox, None, None
        if sandbox is not None:
            self.manager.remove(sandbox)
