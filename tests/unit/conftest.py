"""The Docker-free layer: pure logic, local processes at most, never a Docker engine.

Every test here runs with DOCKER_HOST pointing at a socket that does not exist, so a test that reaches
for the engine by accident fails at once instead of passing only on a machine that has one. The
end-to-end suite (tests/*.py) stays the proof that the parts work together."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).resolve().parent
NO_ENGINE = "unix:///nonexistent/docker.sock"

# Helpers that live beside the tests here (a fake backend, say) import by their plain module name.
if str(UNIT_DIR) not in sys.path:
    sys.path.insert(0, str(UNIT_DIR))


@pytest.fixture(autouse=True)
def no_docker_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker clients made during a unit test find no engine (docker-py and the CLI read DOCKER_HOST)."""
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


@pytest.fixture(scope="session", autouse=True)
def no_leftovers() -> Iterator[None]:
    """Overrides tests/conftest.py's end-of-run container check: nothing here can make a container."""
    yield


@pytest.fixture(scope="session")
def docker_backend() -> None:
    pytest.fail("tests/unit needs no Docker engine: a test that uses one belongs in tests/")


@pytest.fixture(scope="session")
def sandbox_image() -> None:
    pytest.fail("tests/unit needs no Docker engine: a test that uses the sandbox image belongs in tests/")
