"""Typed errors of the SDK: each carries the server's own message and HTTP status."""

from __future__ import annotations


class SandboxError(Exception):
    """Any failure the SDK reports. `status` is the HTTP status (0 when no answer came), `message`
    the server's explanation as it sent it."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(f"{message} (HTTP {status})" if status else message)
        self.message = message
        self.status = status


class ConnectionFailed(SandboxError):
    """The Jupyter server could not be reached, or no address/token was found to reach it."""


class InvalidRequest(SandboxError):
    """400: the request was refused as malformed (bad argument, unknown field, out-of-range value)."""


class AuthenticationFailed(SandboxError):
    """401/403: the token is missing, wrong, or not allowed this operation."""


class NotFound(SandboxError):
    """404: a file, session, command or kernel that is not there."""


class SandboxNotFound(NotFound):
    """404 for the sandbox itself: no sandbox with that id belongs to you."""


class Conflict(SandboxError):
    """409: the sandbox is not in a state that allows this (e.g. stopped, or busy)."""


class PayloadTooLarge(SandboxError):
    """413/507: an upload over the operator's limit, or the sandbox's disk is full."""


class LimitExceeded(SandboxError):
    """429: an operator maximum was reached (sandboxes per user, concurrent requests)."""


class SandboxUnavailable(SandboxError):
    """502/503/504: the sandbox or its agent did not answer in time, or answered wrongly."""


class CodeUnavailable(SandboxError):
    """Stateful code execution was asked of a sandbox that no Jupyter kernel is bound to."""


class CommandTimeout(SandboxError):
    """A command or a cell did not finish within the time it was given."""


def error_for(status: int, message: str) -> SandboxError:
    """The typed error for an HTTP status and the server's message."""
    if status == 400:
        return InvalidRequest(message, status)
    if status in (401, 403):
        return AuthenticationFailed(message, status)
    if status == 404:
        kind = SandboxNotFound if "no sandbox" in message else NotFound
        return kind(message, status)
    if status == 409:
        return Conflict(message, status)
    if status in (413, 507):
        return PayloadTooLarge(message, status)
    if status == 429:
        return LimitExceeded(message, status)
    if status in (502, 503, 504):
        return SandboxUnavailable(message, status)
    return SandboxError(message, status)
