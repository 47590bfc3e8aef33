"""The agent's one check of the host's token, for every handler that answers the host."""

from __future__ import annotations

import hmac

from tornado import web


def require_token(handler: web.RequestHandler, token: str) -> None:
    """Refuse (401) a request without `Authorization: token <the agent's token>`; compared in
    constant time, so that the answer's timing says nothing about how much of a guess was right."""
    scheme, _, given = (handler.request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "token" or not hmac.compare_digest(given.encode(), token.encode()):
        raise web.HTTPError(401, "a valid agent token is required")
