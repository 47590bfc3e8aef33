"""A host-side note that the idle reaper, not the user, stopped a sandbox.

Such a sandbox is started again by its next use (a cell, an API call, a preview visit); one its user
stopped stays stopped. The note lives in the user's Jupyter data directory, never in the sandbox.
"""

from __future__ import annotations

from pathlib import Path

from . import secrets as sandbox_secrets


def _marker(sandbox_id: str) -> Path:
    return sandbox_secrets.state_dir("idle-stopped") / sandbox_id


def mark_stopped(sandbox_id: str) -> None:
    sandbox_secrets.write_state(_marker(sandbox_id), b"")


def clear(sandbox_id: str) -> None:
    try:
        _marker(sandbox_id).unlink()
    except FileNotFoundError:
        pass


def was_stopped(sandbox_id: str) -> bool:
    return _marker(sandbox_id).exists()
