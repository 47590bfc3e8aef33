"""The proxy kernel's lifecycle in hub mode: its sandbox comes from the sandbox service.

The same seam as kernel/lifecycle.py (relay.Lifecycle), over the service's API instead of an engine:
the bring-up is the service's one operation (POST .../kernels/{id}/sandbox), the watch a long poll of
.../kernel/events (the Python process died or was restarted, or why the container ended), interrupt
and restart are calls, and the inner kernel's channels come through a ChannelBridge. Nothing here
holds or reaches an engine: no Docker call, no Docker credential.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
from typing import Any, Callable

from ..kernel import kernel_info as kernel_info_cache
from ..kernel.magics import MagicContext
from ..kernel.replies import API_RESTART_MESSAGE
from ..kernel.settings import SandboxKernel
from ..sandbox import binding, errors
from .access import RemoteAccess, RemoteSandbox
from .api import ServiceAPI, ServiceUnreachable, quoted
from .channels import ChannelBridge

Post = Callable[[str, Any], None]
log = logging.getLogger(__name__)

EVENT_WAIT = 25.0


class RemoteLifecycle:
    """Brings up, watches and acts on one kernel's sandbox through the sandbox service."""

    def __init__(self, api: ServiceAPI, kernel_id: str, post: Post, workspace: str | None = None) -> None:
        self.api = api
        self.kernel_id = kernel_id
        self.workspace = workspace
        self.post = post
        self.sandbox: RemoteSandbox | None = None
        self.bridge: ChannelBridge | None = None
        self._connection: dict[str, Any] | None = None
        self._key = ("", "hmac-sha256")
        self._watch_stop = threading.Event()
        self._bring_up_thread: threading.Thread | None = None
        self._touching: threading.Thread | None = None
        self.access = RemoteAccess(api)

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

    def _bring_up(self) -> None:
        try:
            # Where the user's server last noted this kernel's notebook (renames, moves): this machine's.
            self.workspace = binding.kernel_workspace(self.kernel_id, self.workspace)
            log.info("asking the sandbox service for kernel %s's sandbox", self.kernel_id)
            answer = self.api.bring_up(self.kernel_id, self.workspace)
            sandbox, key, last_event = _checked_bring_up(answer)
            for note in answer.get("notes") or []:
                if isinstance(note, str):
                    self.post("progress", note[:500])
            self._key = key
            connection = self._connect(sandbox)
            self._start_watching(sandbox, last_event)
            self.post("ready", connection)
        except errors.SandboxOperationError as exc:
            self.post("failed", exc.message)
        except Exception as exc:  # never leave the notebook waiting on a crashed thread
            log.exception("bringing up the sandbox through the service failed")
            self.post("failed", f"unexpected error while starting the sandbox: {exc!r}")

    def _connect(self, sandbox: RemoteSandbox) -> dict[str, Any]:
        """A bridge to `sandbox`'s inner kernel, the old one (if any) closed."""
        old = self.bridge
        bridge = ChannelBridge(
            self.api.ws(f"/sandboxes/{quoted(sandbox.id)}/kernel/channels"), self.api.headers, *self._key
        )
        connection = bridge.start()
        self.sandbox, self.bridge, self._connection = sandbox, bridge, connection
        if old is not None:
            old.close()
        return connection

    # -- watching ---------------------------------------------------------------------------

    def _start_watching(self, sandbox: RemoteSandbox, last_event: int) -> None:
        stop = threading.Event()
        self._watch_stop = stop
        threading.Thread(
            target=self._watch, args=(sandbox, stop, last_event), daemon=True, name="sandbox-remote-watch"
        ).start()

    def stop_watching(self) -> None:
        self._watch_stop.set()

    def _watch(self, sandbox: RemoteSandbox, stop: threading.Event, seq: int) -> None:
        pause = 0.5
        while not stop.is_set():
            try:
                answer = self.api.kernel_events(sandbox.id, seq, EVENT_WAIT)
                pause = 0.5
            except errors.SandboxNotFound:
                answer = {"gone": "it was removed"}
            except (ServiceUnreachable, errors.AgentUnavailable, errors.TimedOut, errors.EngineUnavailable):
                # The service or the network is down for a moment: that is not the sandbox's death.
                if stop.wait(pause):
                    return
                pause = min(pause * 2, 5.0)
                continue
            except errors.SandboxOperationError as exc:
                log.warning("watching the sandbox through the service: %s", exc.message)
                if stop.wait(2.0):
                    return
                continue
            if stop.is_set():
                return
            if not isinstance(answer, dict):
                continue
            gone = answer.get("gone")
            if isinstance(gone, str) and gone:
                stop.set()
                self.post("container_died", gone[:500])
                return
            last = answer.get("last_event")
            if isinstance(last, int) and not isinstance(last, bool) and last >= 0:
                seq = last
            for event in answer.get("events") or []:
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "kernel_died":
                    self.post("kernel_died", event)
                elif event.get("type") == "kernel_restarted":
                    self.post("kernel_restarted", API_RESTART_MESSAGE)

    # -- what the relay asks ----------------------------------------------------------------

    @property
    def memory_limit(self) -> str:
        return self.sandbox.memory_limit if self.sandbox is not None else ""

    def connection(self) -> dict[str, Any] | None:
        return self._connection if self.sandbox is not None else None

    def _info_key(self) -> str:
        # What the service's image said last time, kept on this machine per service.
        return "sha256:" + hashlib.sha256(f"sandbox-service\0{self.api.url}".encode()).hexdigest()

    def recorded_kernel_info(self) -> dict[str, Any] | None:
        return kernel_info_cache.load(self._info_key(), "python")

    def remember_kernel_info(self, info: dict[str, Any]) -> None:
        kernel_info_cache.store(self._info_key(), info, "python")

    def magic_context(
        self,
        settings: SandboxKernel,
        cell_timeout: float,
        write: Callable[[str, str], None],
        cancel: threading.Event,
    ) -> MagicContext:
        return MagicContext(
            manager=None,
            settings=settings,
            sandbox=self.sandbox,  # type: ignore[arg-type]  # the remote record has what magics read
            cell_timeout=cell_timeout,
            write=write,
            cancel=cancel,
            stop_watching=self.stop_watching,
            delete=self.delete,
            access_to=self.access,
        )

    # -- actions from the relay -------------------------------------------------------------

    def adopt(self, sandbox: Any) -> dict[str, Any]:
        """A sandbox a `%sandbox restart` gave back: watch it, and reach its (new) inner kernel."""
        self.stop_watching()
        connection = self._connect(sandbox)
        self._start_watching(sandbox, self._last_event(sandbox))
        return connection

    def _last_event(self, sandbox: RemoteSandbox) -> int:
        try:
            last = self.api.kernel_events(sandbox.id, 0, 0).get("last_event")
        except errors.SandboxOperationError:
            return 0
        return last if isinstance(last, int) and not isinstance(last, bool) else 0

    def _in_background(
        self, action: str, failed: Callable[[errors.SandboxOperationError], None]
    ) -> threading.Thread | None:
        sandbox = self.sandbox
        if sandbox is None:
            return None

        def run() -> None:
            try:
                self.api.kernel_action(sandbox.id, action, timeout=10)
            except errors.SandboxOperationError as exc:
                failed(exc)

        thread = threading.Thread(target=run, daemon=True, name=f"sandbox-remote-{action}")
        thread.start()
        return thread

    def restart_kernel(self, message: str) -> None:
        sandbox = self.sandbox
        if sandbox is None:
            return

        def run() -> None:
            try:
                self.api.kernel_action(sandbox.id, "restart", timeout=60)
                self.post("kernel_restarted", message)
            except errors.SandboxOperationError as exc:
                self.post("failed", f"could not restart the Python process in the sandbox: {exc.message}")

        threading.Thread(target=run, daemon=True, name="sandbox-remote-restart").start()

    def touch(self) -> None:
        if self._touching is not None and self._touching.is_alive():
            return
        # Fire and forget, one at a time: an idle reaper leaves a sandbox in use alone.
        self._touching = self._in_background("activity", lambda exc: None)

    def interrupt(self) -> None:
        self._in_background("interrupt", lambda exc: log.warning("interrupt through the service failed: %s", exc))

    def release(self) -> None:
        """The kernel shuts down: the service stops (a notebook's) or removes (any other) its sandbox,
        asked from a process of its own that outlives this one."""
        self.stop_watching()
        try:
            # First: Jupyter may kill this process at any moment now. The service releases the
            # sandbox once a bring-up of this kernel still under way there has made it.
            spawn_release(self.kernel_id)
        except OSError as exc:
            log.error("could not start releasing the sandbox: %s", exc)
        self.wait_bring_up(timeout=30)
        self.stop_watching()
        if self.bridge is not None:
            self.bridge.close()

    def delete(self) -> None:
        """Remove this kernel's sandbox with its files now; the next cell gets a fresh one."""
        self.stop_watching()
        sandbox, self.sandbox, self._connection = self.sandbox, None, None
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None
        if sandbox is not None:
            self.api.delete(sandbox.id)


def _checked_bring_up(answer: Any) -> tuple[RemoteSandbox, tuple[str, str], int]:
    """The service's bring-up answer, checked: the sandbox, the inner kernel's key and scheme, the
    agent's last event number."""
    if not isinstance(answer, dict) or not isinstance(answer.get("kernel"), dict):
        raise errors.Internal("the sandbox service's answer to the kernel's start is malformed")
    kernel = answer["kernel"]
    key, scheme = kernel.get("key"), kernel.get("signature_scheme")
    if not isinstance(key, str) or not key or scheme not in ("hmac-sha256",):
        raise errors.Internal("the sandbox service sent no usable kernel key")
    memory: str = answer["memory_limit"] if isinstance(answer.get("memory_limit"), str) else ""
    sandbox = RemoteSandbox.from_rest(answer.get("sandbox"), memory)
    last = answer.get("last_event")
    return sandbox, (key, scheme), last if isinstance(last, int) and not isinstance(last, bool) else 0


def spawn_release(kernel_id: str) -> subprocess.Popen:
    """Release `kernel_id`'s sandbox through the service from a process that nothing kills along with
    the kernel (the environment carries the service's URL and this user's token)."""
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_sandbox.remote.release", binding.check_kernel_id(kernel_id)],
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
