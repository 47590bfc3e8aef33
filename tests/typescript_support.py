"""Fixtures for the TypeScript kernel and the Node walkthroughs: the node image (built once per run,
on the bootstrapped base, never from a registry) and the "TypeScript (sandbox)" kernelspec as this
checkout ships it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jupyter_client import MultiKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.image import NODE_IMAGE, ImageRecipe, build_image

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "share" / "jupyter" / "kernels"
TYPESCRIPT_KERNEL = "sandbox-typescript"


@pytest.fixture(scope="session")
def node_image(docker_backend: DockerBackend) -> str:
    """The node preset's image (Node.js, npm, TypeScript, Deno's kernel, the Hono starter). Built
    once, skipped when up to date (about 3 minutes the first time, most of it Deno and npm)."""
    build_image(
        docker_backend,
        lambda line: print(line, file=sys.stderr),
        tag=NODE_IMAGE,
        bootstrap=True,
        recipe=ImageRecipe(lang="node"),
    )
    return NODE_IMAGE


def kernel_spec_manager() -> KernelSpecManager:
    """Kernelspecs with this checkout's own first (the installed ones may be another version's)."""
    specs = KernelSpecManager()
    specs.kernel_dirs.insert(0, str(KERNELS))
    return specs


def start_typescript_kernel(env: dict[str, str] | None = None):
    import os

    from conftest import SandboxKernel

    mkm = MultiKernelManager(kernel_spec_manager=kernel_spec_manager())
    kernel_id = mkm.start_kernel(kernel_name=TYPESCRIPT_KERNEL, env={**os.environ, **(env or {})})
    return SandboxKernel(mkm, kernel_id)
