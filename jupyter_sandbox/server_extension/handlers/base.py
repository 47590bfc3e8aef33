"""What every REST handler shares: the one map from domain errors to HTTP statuses, and request parsing.

A handler parses the request, calls one method of the operations layer (sandbox/operations.py) and
answers; a domain error it lets through becomes the status below and a JSON `{"message": ...}`.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, Union
from urllib.parse import quote

from jupyter_server.auth.utils import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async
from tornado import web

from ...sandbox import errors, quotas
from ...sandbox.operations import SandboxOperations
from .. import validation

AUTH_RESOURCE = "sandbox"
# What a request with no credentials is told (Jupyter's own words would be about a missing '_xsrf').
NEEDS_TOKEN = (
    "this API needs the Jupyter server's token: send the header 'Authorization: token <token>' "
    "(the token is in the URL the server printed at start, and in `jupyter server list`)"
)
SANDBOX_ID = r"(?P<sandbox_id>[0-9a-f]{12})"

# The only place a domain error gets an HTTP status. Looked up along the error's class hierarchy,
# so SandboxNotFound (a NotFound) is 404 and SandboxStopped (a Conflict) is 409.
STATUS_OF: dict[type[errors.SandboxOperationError], int] = {
    errors.InvalidInput: 400,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    # A quota (sandbox/quotas.py) is a conflict with what the user holds now, which they can resolve
    # (stop or delete one, ask for less) and resend: 409, as RFC 9110 describes it. Not 429, which
    # says "slow down": waiting frees nothing. Not 403: the same request succeeds once they free some.
    quotas.QuotaExceeded: 409,
    errors.Gone: 410,
    errors.PayloadTooLarge: 413,
    errors.LimitReached: 429,
    errors.Internal: 500,
    errors.AgentUnavailable: 502,
    errors.Busy: 503,
    errors.EngineUnavailable: 503,
    errors.TimedOut: 504,
    errors.InsufficientStorage: 507,
}


def status_of(exc: errors.SandboxOperationError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 500


def http_error(exc: errors.SandboxOperationError) -> web.HTTPError:
    """A domain error as tornado's HTTPError (for code paths that must raise one, e.g. before an upgrade)."""
    return web.HTTPError(status_of(exc), "%s", exc.message)


def unauthenticated(handler: web.RequestHandler) -> web.HTTPError:
    """The refusal of a request without a (valid) credential, in the words of where it was sent: a
    user's Jupyter server (403, its token), or the sandbox service (401, a user's token; the service
    puts its `jupyter_sandbox_refusal` in the settings)."""
    refusal = handler.settings.get("jupyter_sandbox_refusal")
    if refusal is None:
        return web.HTTPError(403, NEEDS_TOKEN)
    return web.HTTPError(401, refusal(handler))


def error_reply(handler: web.RequestHandler, status_code: int, message: str) -> None:
    """An error as the API answers it: JSON {"message"}; a 401 says which scheme to use."""
    if status_code == 401:
        handler.set_header("WWW-Authenticate", 'token realm="jupyter-sandbox"')
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps({"message": message}))


def url_quote(text: str) -> str:
    return quote(text, safe="")


class OperationsPerUser(Protocol):
    """Where a handler finds the operations of the user who asks, when there is one set per user (the
    sandbox service: service/users.py). A user's own Jupyter server has one SandboxOperations instead."""

    def operations_for(self, user: Any) -> SandboxOperations:
        """The operations of `user` (the handler's current_user); a domain error when they have none."""
        ...


Served = Union[SandboxOperations, OperationsPerUser]


class ServedOperations:
    """How a handler (REST or websocket) finds its operations: the one instance of a user's server, or,
    on the sandbox service, the instance of the user the request authenticated as. Everything else
    about the handlers is shared by the two."""

    _served: Served
    current_user: Any

    def serve(self, service: Served) -> None:
        self._served = service

    @property
    def service(self) -> SandboxOperations:
        served = self._served
        if isinstance(served, SandboxOperations):
            return served
        if not self.current_user:  # never reached before authentication; refused all the same
            raise unauthenticated(self)  # type: ignore[arg-type]
        return served.operations_for(self.current_user)

    async def refuse_strangers(self) -> None:
        """On the service, users are each other's strangers: a route's sandbox id is checked before
        anything else of the request, so that no method, query or body (nor a websocket upgrade)
        tells another user's sandbox apart from one that does not exist: both are 404."""
        sandbox_id = getattr(self, "path_kwargs", {}).get("sandbox_id")
        if sandbox_id and not isinstance(self._served, SandboxOperations):
            # The authorizer first, as each method's @authorized would: a caller it refuses learns
            # nothing of which ids exist.
            handler: Any = self
            method = (handler.request.method or "GET").upper()
            action = HTTP_METHOD_TO_AUTH_ACTION.get(method, "write")
            resource = getattr(handler, "auth_resource", AUTH_RESOURCE)
            if not await ensure_async(handler.authorizer.is_authorized(handler, self.current_user, action, resource)):
                raise web.HTTPError(403, f"User is not authorized to {action} on resource: {resource}.")
            try:
                await self.service.check_owned(sandbox_id)
            except errors.SandboxOperationError as exc:
                raise http_error(exc) from None


class SandboxAPIHandler(ServedOperations, APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, service: Served) -> None:
        self.serve(service)

    @property
    def operations(self) -> SandboxOperations:
        return self.service

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        # Unauthenticated requests get a 403 (401 on the service) that says what is missing, not a
        # lesson in the API.
        if not self.current_user:
            raise unauthenticated(self)
        await self.refuse_strangers()
        self.validate_request()

    def check_xsrf_cookie(self) -> None:
        # Jupyter checks XSRF while it looks for a user; with no user at all, the missing token is
        # the problem to name (a logged-in browser without the XSRF cookie still gets Jupyter's check).
        if hasattr(self, "_jupyter_current_user") and not self.current_user:
            raise unauthenticated(self)
        super().check_xsrf_cookie()

    def operation(self) -> validation.Operation | None:
        route = validation.route_of(self.request.path, self.base_url, self.path_kwargs)
        return validation.operation_for(route, self.request.method or "GET")

    def validate_request(self) -> None:
        """Query parameters and (when it is read whole) the JSON body against the route's schema."""
        operation = self.operation()
        if operation is None:
            return  # a method the route does not have: the handler answers 405
        try:
            validation.check_query(operation, self.request.query_arguments)
            if not getattr(self, "_streams_body", False):
                validation.check_json_body(operation, self.request.body or b"")
        except validation.RequestError as exc:
            raise web.HTTPError(400, exc.message) from None

    def user_name(self) -> str:
        """Whose budget an upload takes from: the server's user, the owner of its sandboxes. (A
        Jupyter server serves one user; a client with the token is a new anonymous name on every
        request, so the login name would bound nothing.)"""
        return self.service.manager.owner

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def created(self, data: Any, location: str) -> None:
        """201 with the new resource's address in `Location`."""
        self.set_header("Location", location)
        self.reply(data, status=201)

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()

    def query(self, name: str, required: bool = False) -> str | None:
        # Raw bytes: tornado's own accessors quietly turn control characters into spaces.
        values = self.request.query_arguments.get(name)
        value = None
        if values:
            try:
                value = values[-1].decode("utf-8")
            except UnicodeDecodeError:
                raise web.HTTPError(400, f"the query parameter {name!r} is not valid UTF-8") from None
        if required and not value:
            raise web.HTTPError(400, f"the query parameter {name!r} is required")
        return value

    def flag(self, name: str) -> bool:
        return self.query(name) in ("1", "true")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, errors.SandboxOperationError):
            message = exc.message
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        error_reply(self, status_code, message)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, errors.SandboxOperationError):
            self.log.warning("%s %s: %s %s", self.request.method, self.request.path, status_of(value), value.message)
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, errors.SandboxOperationError):
            status_code = status_of(exc)
        super().send_error(status_code, **kwargs)
