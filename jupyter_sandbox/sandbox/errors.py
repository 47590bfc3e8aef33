"""What can go wrong in an operation, in the words of the domain, each with a message a person reads.

The operations layer (operations.py) and the agent client raise these; every front door decides how
to show them: the REST API maps each class to one HTTP status (server_extension/handlers/base.py, the
only such map), the magics and the CLI print the message. Nothing here knows HTTP.
"""

from __future__ import annotations


class SandboxOperationError(Exception):
    """An operation could not be done; `message` says why, for the person who asked."""

    # A property, not a field set in __init__: a class may also derive from another error type
    # (manager.NoSuchSandbox is a SandboxError too) whose __init__ comes first.
    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidInput(SandboxOperationError):
    """The caller asked for something malformed or not allowed (a bad path, size, spec...)."""


class Forbidden(SandboxOperationError):
    """The sandbox refused the request for what it is, not for how it was written."""


class NotFound(SandboxOperationError):
    """A thing the caller named (a file, a session, a command, a repository) is not there."""


class SandboxNotFound(NotFound):
    """There is no such sandbox, or it is not the caller's: the two are not told apart."""


class Conflict(SandboxOperationError):
    """The request clashes with the current state (a name taken, a finished command, a limit of the owner)."""


class SandboxStopped(Conflict):
    """The sandbox is not running and the operation needs it to be."""


class Gone(SandboxOperationError):
    """What the caller named existed but has ended."""


class PayloadTooLarge(SandboxOperationError):
    """A body, a file or a transfer is larger than its limit."""


class LimitReached(SandboxOperationError):
    """The caller has as many of something under way as they may (uploads, sessions, commands)."""


class Busy(SandboxOperationError):
    """The sandbox has as many calls under way as it may; try again shortly."""


class EngineUnavailable(SandboxOperationError):
    """The Docker engine cannot be reached."""


class AgentUnavailable(SandboxOperationError):
    """The sandbox's agent is not reachable, failed, or answered something malformed."""


class TimedOut(SandboxOperationError):
    """The agent or the Docker engine missed its deadline."""


class InsufficientStorage(SandboxOperationError):
    """The sandbox's home folder is full."""


class Internal(SandboxOperationError):
    """A failure on the host's side that the caller cannot fix."""
