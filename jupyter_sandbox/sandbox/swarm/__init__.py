"""Sandboxes placed on the nodes of a Docker Swarm (see backend.py)."""

from .backend import SwarmBackend

__all__ = ["SwarmBackend"]
