"""An OpenAI Agents SDK sandbox client on jupyter-sandbox sandboxes.

    from agents import Runner
    from agents.run_config import RunConfig, SandboxRunConfig
    from agents.sandbox import SandboxAgent
    from jupyter_sandbox.adapters.openai_agents import JupyterSandboxClient

    client = JupyterSandboxClient(url=..., token=...)
    run = RunConfig(sandbox=SandboxRunConfig(client=client))
    await Runner.run(SandboxAgent(name="dev", ...), "...", run_config=run)

Each session is one sandbox of the Jupyter server (a new one, or an existing one by id in the
options), its workspace a folder of the sandbox user's home; commands, reads and writes go through
the SDK (jupyter_sandbox.client), so the server's limits and egress policy hold for the agent too.
"""

from __future__ import annotations

import io
import shlex
import uuid
from pathlib import Path
from typing import Any, Literal

from agents.sandbox.manifest import Manifest
from agents.sandbox.session import SandboxSession, SandboxSessionState
from agents.sandbox.session.base_sandbox_session import BaseSandboxSession
from agents.sandbox.session.manager import Instrumentation
from agents.sandbox.session.sandbox_client import BaseSandboxClient, BaseSandboxClientOptions
from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
from agents.sandbox.types import ExecResult, User

from ..client import AsyncSandbox
from ..client.errors import NotFound

WORKSPACE = "/home/sandbox/workspace"
DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 3600.0
BACKEND = "jupyter_sandbox"
_DEFAULT_ROOT = Manifest.model_fields["root"].default


class JupyterSandboxSessionState(SandboxSessionState):
    type: Literal["jupyter_sandbox"] = "jupyter_sandbox"
    sandbox_id: str = ""
    owns_sandbox: bool = True


class JupyterSandboxClientOptions(BaseSandboxClientOptions):
    """`sandbox_id`: work in that existing sandbox (left in place at the end); otherwise a new
    one with `memory` and `network` ("internet", "none") is made, and deleted with the session."""

    type: Literal["jupyter_sandbox"] = "jupyter_sandbox"
    sandbox_id: str | None = None
    memory: str | None = None
    network: str | None = None

    def __init__(
        self,
        sandbox_id: str | None = None,
        memory: str | None = None,
        network: str | None = None,
        *,
        type: Literal["jupyter_sandbox"] = "jupyter_sandbox",
    ) -> None:
        super().__init__(type=type, sandbox_id=sandbox_id, memory=memory, network=network)


class JupyterSandboxSession(BaseSandboxSession):
    state: JupyterSandboxSessionState

    def __init__(
        self, *, state: JupyterSandboxSessionState, sandbox: AsyncSandbox | None, url: str | None, token: str | None
    ) -> None:
        self.state = state
        self._sandbox = sandbox
        self._url, self._token = url, token
        self._root_ready = False

    async def _box(self) -> AsyncSandbox:
        if self._sandbox is None:  # a resumed session: the same sandbox, by id
            self._sandbox = await AsyncSandbox.get(self.state.sandbox_id, url=self._url, token=self._token)
        return self._sandbox

    def _path(self, path: Path | str) -> str:
        path = Path(path)
        return str(path if path.is_absolute() else Path(self.state.manifest.root) / path)

    async def _prepare_backend_workspace(self) -> None:
        box = await self._box()
        made = await box.process.exec(["mkdir", "-p", "--", self.state.manifest.root])
        if made.exit_code != 0:
            raise RuntimeError(f"could not make the workspace {self.state.manifest.root}: {made.stderr.strip()}")
        self._root_ready = True

    async def _exec_internal(self, *command: str | Path, timeout: float | None = None) -> ExecResult:
        box = await self._box()
        limit = min(timeout or DEFAULT_TIMEOUT, MAX_TIMEOUT)
        # Commands run in the workspace, as the agent's tools expect, once it exists.
        cwd = self.state.manifest.root if self._root_ready else None
        result = await box.process.exec([str(part) for part in command], cwd=cwd, timeout=limit)
        return ExecResult(stdout=result.stdout.encode(), stderr=result.stderr.encode(), exit_code=result.exit_code)

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        try:
            return io.BytesIO(await (await self._box()).fs.download(self._path(path)))
        except NotFound:
            raise FileNotFoundError(self._path(path)) from None

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        payload = data.read()
        content = payload.encode() if isinstance(payload, str) else bytes(payload)
        await (await self._box()).fs.upload(self._path(path), content)

    async def running(self) -> bool:
        try:
            return (await (await self._box()).refresh()).running
        except NotFound:
            return False

    async def persist_workspace(self) -> io.IOBase:
        """The workspace as a tar stream with workspace-relative names (made in the sandbox)."""
        box = await self._box()
        archive = f"/tmp/.workspace-{uuid.uuid4().hex}.tar"
        root = self.state.manifest.root
        made = await box.process.exec(f"tar -C {shlex.quote(root)} -cf {shlex.quote(archive)} .")
        if made.exit_code != 0:
            raise RuntimeError(f"could not archive the workspace: {made.stderr.strip()}")
        try:
            return io.BytesIO(await box.fs.download(archive))
        finally:
            await box.fs.remove(archive)

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        box = await self._box()
        archive = f"/tmp/.workspace-{uuid.uuid4().hex}.tar"
        await box.fs.upload(archive, data.read())
        root = shlex.quote(self.state.manifest.root)
        done = await box.process.exec(f"mkdir -p {root} && tar -C {root} -xf {shlex.quote(archive)}; rm -f {archive}")
        if done.exit_code != 0:
            raise RuntimeError(f"could not restore the workspace: {done.stderr.strip()}")

    async def close_connection(self) -> None:
        if self._sandbox is not None:
            await self._sandbox.close()


class JupyterSandboxClient(BaseSandboxClient[JupyterSandboxClientOptions]):
    """Sessions on sandboxes of one Jupyter server (url/token, or the SDK's environment)."""

    backend_id = BACKEND
    supports_default_options = True

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        instrumentation: Instrumentation | None = None,
        dependencies: Any = None,
    ) -> None:
        self._url, self._token = url, token
        self._instrumentation = instrumentation if instrumentation is not None else Instrumentation()
        self._dependencies = dependencies

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: Manifest | None = None,
        options: JupyterSandboxClientOptions | None = None,
    ) -> SandboxSession:
        options = options or JupyterSandboxClientOptions()
        manifest = manifest if manifest is not None else Manifest()
        if manifest.root == _DEFAULT_ROOT:
            # The sandbox user writes only below its home.
            manifest = manifest.model_copy(update={"root": WORKSPACE}, deep=True)
        self._validate_manifest_for_create(manifest)
        if options.sandbox_id:
            box = await AsyncSandbox.get(options.sandbox_id, url=self._url, token=self._token)
            owns = False
        else:
            box = await AsyncSandbox.create(
                url=self._url, token=self._token, memory=options.memory, network=options.network
            )
            owns = True
        session_id = uuid.uuid4()
        state = JupyterSandboxSessionState(
            session_id=session_id,
            manifest=manifest,
            snapshot=resolve_snapshot(snapshot, str(session_id)),
            sandbox_id=box.id,
            owns_sandbox=owns,
        )
        inner = JupyterSandboxSession(state=state, sandbox=box, url=self._url, token=self._token)
        return self._wrap_session(inner, instrumentation=self._instrumentation)

    async def delete(self, session: SandboxSession) -> SandboxSession:
        inner = session._inner
        if not isinstance(inner, JupyterSandboxSession):
            raise TypeError("JupyterSandboxClient.delete expects a JupyterSandboxSession")
        if inner.state.owns_sandbox:
            try:
                await (await inner._box()).delete()
            except NotFound:
                pass
        await inner.close_connection()
        return session

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        if not isinstance(state, JupyterSandboxSessionState):
            raise TypeError("JupyterSandboxClient.resume expects a JupyterSandboxSessionState")
        inner = JupyterSandboxSession(state=state, sandbox=None, url=self._url, token=self._token)
        inner._root_ready = True  # made when the session first started
        return self._wrap_session(inner, instrumentation=self._instrumentation)

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, JupyterSandboxSessionState)
