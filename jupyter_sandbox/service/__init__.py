"""The sandbox service (`jupyter sandbox service`): the one process that holds the container engine,
serving the sandbox API to many users, each scoped to their own sandboxes and quotas."""

from .app import BACKENDS, SandboxServiceApp, main

__all__ = ["BACKENDS", "SandboxServiceApp", "main"]
