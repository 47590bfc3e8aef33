"""The service's users: one SandboxManager and one SandboxOperations per user, over one shared backend.

A user's sandboxes carry the owner label `hub-user:<name>`; every operation of a user's instance looks
only at that owner's (operations.SandboxOperations.sandbox answers "there is no sandbox" for anyone
else's, in the very words it uses for an id that does not exist). Instances are made on a user's first
request, and for every owner found on the engine by the housekeeping, so that a restarted service
tidies and reaps what its users made before, without waiting for them to come back.

Housekeeping is one loop for all users (not a timer per user): every `reap_interval` it lists the
engine's sandboxes once, and reconciles and reaps the owners it finds one after the other; the warm
pool, which is per user (an owner label is fixed when a container is made, so a pool sandbox cannot
change hands), is filled for the users who used the service since it started.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from traitlets.config import Config

from ..sandbox import errors, network
from ..sandbox.backend import Backend
from ..sandbox.docker_backend import SandboxError
from ..sandbox.manager import NoSuchSandbox, Sandbox, SandboxManager
from ..sandbox.operations import SandboxOperations
from ..sandbox.quotas import HUB_OWNER_PREFIX
from ..sandbox.spec import LABEL_ID, LABEL_OWNER
from .auth import TokensFileError, check_user_name


def owner_of(name: str) -> str:
    """The owner label of user `name` (a domain error for a name that cannot be one)."""
    try:
        return HUB_OWNER_PREFIX + check_user_name(name)
    except TokensFileError as exc:
        raise errors.Forbidden(str(exc)) from None


class UserSandboxes:
    """The per-user instances, made lazily; what the REST handlers ask for their operations."""

    def __init__(
        self,
        backend: Backend,
        config: Config,
        log: Any,
        server_id: str,
        server_port: int,
        preview_url_template: str,
        path_form: bool,
    ) -> None:
        self.backend = backend
        self.config = config
        self.log = log
        self.server_id = server_id
        self.server_port = server_port
        self.preview_url_template = preview_url_template
        self.path_form = path_form
        self._users: dict[str, SandboxOperations] = {}
        self._active: set[str] = set()  # used the service since it started: their warm pool is kept
        self._lock = threading.Lock()
        self.stopping = False

    # -- what handlers call ------------------------------------------------------------------

    def operations_for(self, user: Any) -> SandboxOperations:
        name = getattr(user, "username", user)
        operations = self.for_name(name)
        self._active.add(name)
        return operations

    def for_name(self, name: str) -> SandboxOperations:
        with self._lock:
            found = self._users.get(name)
            if found is not None:
                return found
            owner = owner_of(name)
            # The operator's configuration for everything (limits, egress, images, quotas); only the
            # owner is the user's. Keyword arguments win over the configuration, so no config file can
            # make two users one owner.
            extra: dict[str, Any] = {}
            if "network_deny_cidrs" not in self.config.get("SandboxManager", {}):
                # The operator's network is not the users' to open: no allow list reaches a private range.
                extra["network_deny_cidrs"] = [*network.BLOCKED_V4, *network.BLOCKED_V6]
            manager = SandboxManager(backend=self.backend, config=self.config, log=self.log, owner=owner, **extra)
            manager.server_id = self.server_id
            manager.stopping = self.stopping
            operations = SandboxOperations(manager, config=self.config, log=self.log)
            operations.server_port = self.server_port
            operations.preview_url_template = self.preview_url_template
            operations.path_form_previews = self.path_form
            self._users[name] = operations
            return operations

    def loaded(self) -> list[SandboxOperations]:
        with self._lock:
            return list(self._users.values())

    # -- housekeeping, one loop for every user --------------------------------------------------

    def owners_on_engine(self) -> list[str]:
        """The user names that own sandboxes (or warm-pool sandboxes) on the engine now: one listing."""
        names = set()
        for record in self.backend.list_containers(None, [LABEL_ID, LABEL_OWNER]):
            owner = record.labels.get(LABEL_OWNER, "")
            if owner.startswith(HUB_OWNER_PREFIX):
                names.add(owner[len(HUB_OWNER_PREFIX) :])
        return sorted(names)

    async def housekeep(self) -> None:
        """One round: reconcile and reap every user's sandboxes (idle stop, long-stopped removal)."""
        try:
            names = await asyncio.get_running_loop().run_in_executor(None, self.owners_on_engine)
        except Exception as exc:  # the engine away for a moment: the next round tries again
            self.log.warning("sandbox service: could not list the users' sandboxes: %s", exc)
            return
        for name in sorted(set(names) | self._active):
            if self.stopping:
                return
            try:
                operations = self.for_name(name)
            except errors.SandboxOperationError as exc:  # a label made by hand, not by this service
                self.log.warning("sandbox service: owner %r is skipped: %s", name, exc.message)
                continue
            # Idle stop and removal of long-stopped ones; not the release of sandboxes whose kernel
            # looks gone: kernels run beside their users' servers, on other machines, whose kernel
            # leases the service cannot see (a kernel that died is stopped by the idle check instead).
            await operations.reap(reconcile_kernels=False)

    async def fill_pools(self) -> None:
        """The warm pool of each user who used the service since it started."""
        for name in sorted(self._active):
            if self.stopping:
                return
            operations = self.for_name(name)
            if operations.manager.warm_pool_size > 0:
                await operations.fill_pool()

    def stop(self) -> None:
        """No housekeeping from now on (what is under way sees it and ends its round)."""
        self.stopping = True
        for operations in self.loaded():
            operations.manager.stopping = True


class OwnersManager(SandboxManager):
    """The preview gateway's manager on the service: it finds a sandbox of any of the service's users by
    the id in a signed preview link (the link's token is the credential), never one of another kind of
    owner on the same engine, and starts an idle-stopped one as its owner's manager does (quotas)."""

    def __init__(self, users: UserSandboxes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.users = users
        # Whose each sandbox looked up here is (an owner label never changes): activity is told to
        # the owner's manager without another engine call, on the gateway's event loop.
        self._owner_names: dict[str, str] = {}

    def get(self, sandbox_id: str) -> Sandbox:
        sandbox = super().get(sandbox_id)
        if not sandbox.owner.startswith(HUB_OWNER_PREFIX):
            raise NoSuchSandbox(f"there is no sandbox {sandbox_id!r}")
        self._owner_names[sandbox_id] = sandbox.owner[len(HUB_OWNER_PREFIX) :]
        return sandbox

    def _owners(self, sandbox: Sandbox) -> SandboxManager:
        try:
            return self.users.for_name(sandbox.owner[len(HUB_OWNER_PREFIX) :]).manager
        except errors.SandboxOperationError as exc:
            raise SandboxError(exc.message) from None

    def start(self, sandbox: Sandbox) -> Sandbox:
        return self._owners(sandbox).start(sandbox)

    def note_activity(self, sandbox_id: str) -> None:
        # The owner's idle check is the one that must see a preview's use.
        name = self._owner_names.get(sandbox_id)
        if name is None:
            return
        try:
            self.users.for_name(name).manager.note_activity(sandbox_id)
        except errors.SandboxOperationError:
            pass
