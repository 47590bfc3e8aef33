"""Who is asking: the sandbox service's callers are users, each proving it with `Authorization: token T`.

T is either a token of the service's tokens file (`{"<token>": "<user name>"}`, for deployments and
tests without a hub) or a JupyterHub API token, which the hub resolves to its user (jupyterhub's own
HubAuth, as hub services do), cached for `hub_cache_seconds` so that a revoked token stops working
after at most that long. No cookies, no login page, no XSRF: browsers never send the header by
themselves, so a page elsewhere cannot act as a user.

The authorizer allows the sandbox API's resource only: nothing else is served here, and a handler of
any other resource that were ever mounted would be refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web
from traitlets import Float, List, Unicode

from ..server_extension.handlers.base import AUTH_RESOURCE

# A user name becomes part of an owner label ('hub-user:<name>') and of log lines: letters, digits and
# a few separators, starting with a letter or digit. JupyterHub's default normalisation (lower case)
# fits; a hub with other names must map them (c.Authenticator.username_map).
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_TOKEN_LENGTH = 16
NEEDS_USER_TOKEN = (
    "this sandbox service needs a user's token: send the header 'Authorization: token <token>' with the "
    "user's JupyterHub API token (a user's server has it as $JUPYTERHUB_API_TOKEN) or a token from the "
    "service's tokens file"
)
BAD_TOKEN = (
    "the token in the Authorization header is not valid here (unknown, revoked or expired): send "
    "'Authorization: token <token>' with a current JupyterHub API token of the user or a token from the "
    "service's tokens file"
)


class CannotStart(Exception):
    """The service cannot start as configured; the message says why and what to do."""


class TokensFileError(CannotStart):
    """The tokens file cannot be used (or knows no valid user)."""


def check_user_name(name: Any) -> str:
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise TokensFileError(
            f"the user name {name!r} cannot own sandboxes here: use 1 to 64 letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    return name


def _digest(token: str) -> bytes:
    # Looked up by digest: the lookup's timing says nothing about the tokens' text.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def read_tokens_file(path: Path) -> dict[bytes, str]:
    """The users of a tokens file, by the digest of their token. Refused (TokensFileError) when it is
    missing, unreadable, readable or writable by others than its owner, or not a JSON object of
    tokens (at least 16 characters) to user names."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise TokensFileError(f"the tokens file {path} does not exist") from None
    except OSError as exc:
        raise TokensFileError(f"cannot read the tokens file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TokensFileError(f"the tokens file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise TokensFileError(
            f"the tokens file {path} is readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"its tokens are secrets; run `chmod 600 {path}`"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensFileError(f"cannot read the tokens file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TokensFileError(f"the tokens file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TokensFileError(f'the tokens file {path} must be a JSON object {{"<token>": "<user name>"}}')
    users: dict[bytes, str] = {}
    for token, name in data.items():
        if len(token.strip()) < MIN_TOKEN_LENGTH or token != token.strip():
            raise TokensFileError(
                f"the tokens file {path} has a token of user {name!r} shorter than {MIN_TOKEN_LENGTH} characters "
                "(or with spaces around it); make one with `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        try:
            users[_digest(token)] = check_user_name(name)
        except TokensFileError as exc:
            raise TokensFileError(f"the tokens file {path}: {exc}") from None
    return users


class TokensFile:
    """The tokens file, read again when it changes (so a token taken out stops working at once). A
    change that makes it unusable is logged and leaves no token valid until it is fixed."""

    def __init__(self, path: Path, log: Any) -> None:
        self.path = path
        self.log = log
        self._lock = threading.Lock()
        self._users = read_tokens_file(path)  # at start, a bad file is the operator's error to see
        self._seen = self._stamp()
        self._checked = time.monotonic()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def user_for(self, token: str) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= 1.0:
                self._checked = now
                stamp = self._stamp()
                if stamp != self._seen:
                    self._seen = stamp
                    try:
                        self._users = read_tokens_file(self.path)
                        self.log.info("sandbox service: read the tokens file %s again", self.path)
                    except TokensFileError as exc:
                        self._users = {}
                        self.log.error("sandbox service: no token of the tokens file is valid now: %s", exc)
            return self._users.get(_digest(token))


def token_of(handler: web.RequestHandler) -> str:
    """The token of `Authorization: token T` (or `Bearer T`); '' when there is none."""
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() in ("token", "bearer"):
        return value.strip()
    return ""


class ServiceIdentityProvider(IdentityProvider):
    """Users from the tokens file, then from the hub. Never a cookie, never an anonymous user."""

    tokens_file = Unicode("", config=True, help="JSON file {token: user name} (mode 600); '' for none.")
    hub_api_url = Unicode(
        config=True,
        help="The hub's API URL, for hub tokens. Default: $JUPYTERHUB_API_URL (set when the hub runs this as a service).",
    )
    hub_api_token = Unicode(
        config=True,
        help="This service's own token for the hub's API. Default: $JUPYTERHUB_API_TOKEN.",
    )
    hub_cache_seconds = Float(
        60.0,
        config=True,
        help=(
            "Seconds the hub's answer for a token is kept: a token the hub revoked works here for at most "
            "this long. 0: the hub is asked on every request."
        ),
    )
    hub_required_scopes = List(
        Unicode(),
        config=True,
        help=(
            "When set, a hub token is accepted only when the hub says it has one of these scopes (e.g. "
            "'access:services!service=sandbox'). Empty: any token the hub resolves to a user."
        ),
    )

    def _hub_api_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    def _hub_api_token_default(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tokens = TokensFile(Path(self.tokens_file), self.log) if self.tokens_file else None
        self._hub: Any = None
        if self.hub_api_url and self.hub_api_token:
            from jupyterhub.services.auth import HubAuth  # the `hub` extra

            self._hub = HubAuth(
                api_url=self.hub_api_url,
                api_token=self.hub_api_token,
                cache_max_age=int(self.hub_cache_seconds),
                log=self.log,
            )
        if self._tokens is None and self._hub is None:
            raise CannotStart(
                "the sandbox service knows no users: give --tokens-file FILE, or run it as a JupyterHub "
                "service (JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN in its environment)"
            )

    @property
    def sources(self) -> list[str]:
        return [name for name, on in (("tokens file", self._tokens), ("JupyterHub", self._hub)) if on is not None]

    @property
    def login_available(self) -> bool:
        return False

    def is_token_authenticated(self, handler: web.RequestHandler) -> bool:
        return True  # the only way in

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        token = token_of(handler)
        handler._sandbox_refusal = NEEDS_USER_TOKEN if not token else BAD_TOKEN  # type: ignore[attr-defined]
        if not token:
            return None
        name = self._tokens.user_for(token) if self._tokens is not None else None
        if name is None and self._hub is not None:
            name = await self._hub_user(token)
        if name is None:
            return None
        return User(username=name, name=name, display_name=name)

    async def _hub_user(self, token: str) -> str | None:
        try:
            model = await self._hub.user_for_token(token, use_cache=self.hub_cache_seconds > 0, sync=False)
        except Exception as exc:  # the hub down or answering nonsense: say so, never let anyone in
            self.log.warning("sandbox service: the hub could not check a token: %s", exc)
            raise web.HTTPError(503, "the hub could not be asked who this token is; try again shortly") from None
        if not isinstance(model, dict) or model.get("kind", "user") != "user":
            return None  # unknown, or a service's token: only users own sandboxes
        if self.hub_required_scopes:
            scopes = model.get("scopes") or []
            if not any(scope in scopes for scope in self.hub_required_scopes):
                return None
        try:
            return check_user_name(model.get("name"))
        except TokensFileError as exc:
            raise web.HTTPError(403, str(exc)) from None


def refusal_of(handler: web.RequestHandler) -> str:
    """What a request that did not authenticate is told (set by ServiceIdentityProvider.get_user)."""
    return str(getattr(handler, "_sandbox_refusal", NEEDS_USER_TOKEN))


class SandboxOnlyAuthorizer(Authorizer):
    """Any authenticated user may use the sandbox API (each only their own sandboxes: service/users.py);
    no other resource exists on the service."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource == AUTH_RESOURCE
