"""The agent-framework adapters against a real Jupyter server and real sandboxes: LangChain Deep
Agents' own sandbox standard tests (langchain-tests' SandboxIntegrationTests) on the Deep Agents
backend, the OpenAI Agents SDK client's checks, and each adapter's runnable example (no model: a
scripted one)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, start_jupyter_server
from langchain_tests.integration_tests import SandboxIntegrationTests

from jupyter_sandbox.adapters.deepagents import JupyterSandboxBackend

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server, process = start_jupyter_server(tmp_path_factory.mktemp("adapters-root"))
    yield server
    process.terminate()
    process.wait(timeout=30)


# The suite's async tests are coroutines for pytest-asyncio (a dependency of langchain-tests).
@pytest.mark.asyncio(loop_scope="class")
class TestDeepAgentsSandboxStandard(SandboxIntegrationTests):
    """Deep Agents' standard sandbox suite, unchanged, on a sandbox of this project."""

    @property
    def sandbox_root_dir(self) -> str:
        # The suite's own knob: the sandbox user's home (the files a user keeps) rather than /tmp.
        return "/home/sandbox/test_sandbox_ops/"

    @pytest.fixture(scope="class")
    def sandbox(self, server: Server) -> Iterator[JupyterSandboxBackend]:
        backend = JupyterSandboxBackend.create(url=server.base, token=server.token)
        try:
            yield backend
        finally:
            backend.delete()


def run_example(server: Server, name: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JUPYTER_SANDBOX_URL": server.base, "JUPYTER_SANDBOX_TOKEN": server.token}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True, env=env, timeout=600
    )


# -- the OpenAI Agents SDK sandbox client ------------------------------------------------------


def test_openai_agents_client_sessions(server: Server) -> None:
    import asyncio
    import io

    from agents.sandbox.manifest import Manifest

    from jupyter_sandbox.adapters.openai_agents import (
        JupyterSandboxClient,
        JupyterSandboxClientOptions,
        JupyterSandboxSessionState,
    )
    from jupyter_sandbox.client import Sandbox

    client = JupyterSandboxClient(url=server.base, token=server.token)

    async def main() -> None:
        session = await client.create(options=JupyterSandboxClientOptions(network="none"))
        assert isinstance(session._inner.state, JupyterSandboxSessionState)
        sandbox_id = session._inner.state.sandbox_id
        await session.start()
        assert await session.running()
        done = await session.exec("pwd; echo out; echo err >&2; exit 4")
        assert done.exit_code == 4 and done.stdout == b"/home/sandbox/workspace\nout\n" and done.stderr == b"err\n"
        await session.write(Path("notes/a.txt"), io.BytesIO(b"alpha"))
        assert (await session.read(Path("notes/a.txt"))).read() == b"alpha"
        assert [e.path.rsplit("/", 1)[-1] for e in await session.ls("notes")] == ["a.txt"]
        with pytest.raises(FileNotFoundError):
            await session.read(Path("missing.txt"))
        archive = await session.persist_workspace()
        # Resumed from its serialized state: the same sandbox, by id.
        payload = client.serialize_session_state(session._inner.state)
        state = client.deserialize_session_state(payload)
        assert isinstance(state, JupyterSandboxSessionState) and state.sandbox_id == sandbox_id
        resumed = await client.resume(state)
        await resumed.exec("rm -rf notes")
        await resumed.hydrate_workspace(archive)
        assert (await resumed.read(Path("notes/a.txt"))).read() == b"alpha"
        # Its egress policy is the sandbox's: no network was asked for.
        assert Sandbox.get(sandbox_id, url=server.base, token=server.token).info.network["mode"] == "none"
        await client.delete(session)
        assert sandbox_id not in [s.id for s in Sandbox.list(url=server.base, token=server.token)]

        # An existing sandbox is worked in and left in place.
        kept = Sandbox.create(url=server.base, token=server.token)
        try:
            other = await client.create(
                manifest=Manifest(root="/home/sandbox/proj"), options=JupyterSandboxClientOptions(sandbox_id=kept.id)
            )
            await other.start()
            assert (await other.exec("pwd")).stdout == b"/home/sandbox/proj\n"
            await client.delete(other)
            assert kept.refresh().running
        finally:
            kept.delete()

    asyncio.run(main())


@pytest.mark.parametrize(
    "example, expected",
    [
        ("openai_agents_sandbox.py", ["hello from the sandbox", "/home/sandbox/workspace", "42", "final: Done"]),
        ("deepagents_sandbox.py", ["tool write_file:", "tool execute: hi from 42", "final: The script ran"]),
    ],
)
def test_the_examples_run_without_a_model(server: Server, example: str, expected: list[str]) -> None:
    done = run_example(server, example)
    assert done.returncode == 0, done.stderr[-3000:]
    for text in expected:
        assert text in done.stdout, done.stdout[-3000:]
