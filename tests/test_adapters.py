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
    def sandbox(self, server: Server) -> Iterator[JupyterSandboxBackend]:  # type: ignore[override]
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
