"""Every endpoint the server extension registers asks who is calling before it does anything.

The routes are collected the way the extension registers them (the REST routes from `api_routes`,
the preview routes from `preview.install`), and every handler class defined in the server extension's
modules is checked too, routed or not. Each HTTP verb method a handler defines must be wrapped by
`tornado.web.authenticated` and by jupyter_server's `authorized`; and, called for real with nobody
logged in (or with a user the authorizer refuses), it must answer 403 without touching the sandbox
service. A new endpoint without the decorators fails here, by handler and method name.

Deliberately public routes are listed in PUBLIC_TARGETS with the reason; the list must match what is
registered, so that it cannot silently grow.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from jupyter_server.auth import Authorizer
from jupyter_server.auth.decorator import authorized
from jupyter_server.auth.identity import IdentityProvider, User
from tornado import httputil, web
from tornado.concurrent import Future
from tornado.routing import Router, Rule, RuleRouter

import jupyter_sandbox.server_extension as server_extension
from jupyter_sandbox.server_extension import preview
from jupyter_sandbox.server_extension.handlers import api_routes
from jupyter_sandbox.server_extension.handlers.forward import forward_routes
from jupyter_sandbox.server_extension.mcp_http import mcp_routes
from jupyter_sandbox.server_extension.preview.entry import PreviewEntrance

BASE_URL = "/base/"
PREVIEW_TEMPLATE = "http://{port}-{sandbox_id}.localhost:{server_port}/"

# Routing targets that are not Jupyter handlers, on purpose, and why that is safe.
PUBLIC_TARGETS: dict[type, str] = {
    PreviewEntrance: (
        "previews (their own origin, and the path form /sandbox/preview/{id}/{port}/) take the connection "
        "away from tornado before any Jupyter handler runs; each request is admitted by its signed preview "
        "token (sandbox/preview.py, checked in preview/access.py), never by Jupyter's login, so that an "
        "app in the sandbox never sees Jupyter's cookies or token"
    ),
}

# Verbs a handler may inherit from jupyter_server itself (not ours to decorate).
FRAMEWORK_VERBS = {"options"}  # APIHandler.options answers CORS preflight requests with no content

# The wrappers' code objects: the same for every function each decorator wraps.
AUTHENTICATED_CODE = web.authenticated(lambda self: None).__code__
AUTHORIZED_CODE = authorized(lambda self: None).__code__


class Untouchable:
    """The sandbox service handed to the handlers: any use of it is a request that got through."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.used.append(name)
        raise AssertionError(f"the sandbox service was used ({name}) by a request that should have been refused")


def walk_rules(router: Router) -> Iterator[Rule]:
    for rule in getattr(router, "rules", []):
        yield rule
        if isinstance(rule.target, RuleRouter):
            yield from walk_rules(rule.target)


def registered_targets() -> tuple[web.Application, Untouchable, list[Any]]:
    """What a server with the extension routes: the REST API and the preview entrances."""
    service = Untouchable()
    # allow_unauthenticated_access: jupyter_server's own check in prepare() is off, as an operator may
    # set it; what refuses then is the endpoint's own code.
    app = web.Application(
        authorizer=DenyAll(),
        identity_provider=GivenUser(),
        allow_unauthenticated_access=True,
        xsrf_cookies=False,
        cookie_secret="unit",
        untouchable=service,
    )
    app.add_handlers(".*$", api_routes(BASE_URL, service))  # type: ignore[arg-type]
    app.add_handlers(".*$", mcp_routes(BASE_URL, service))  # type: ignore[arg-type]
    # Hub mode's routes (the same paths, forwarded to the sandbox service): the same checks first.
    app.add_handlers(".*$", forward_routes(BASE_URL, service))  # type: ignore[arg-type]
    preview.install(app, manager=None, log=None, template=PREVIEW_TEMPLATE, base_url=BASE_URL, path_form=True)  # type: ignore[arg-type]
    targets = [rule.target for rule in walk_rules(app.default_router) if not isinstance(rule.target, Router)]
    return app, service, targets


def extension_handler_classes() -> set[type[web.RequestHandler]]:
    """Every RequestHandler subclass defined anywhere in the server extension, routed or not."""
    found: set[type[web.RequestHandler]] = set()
    for module_info in pkgutil.walk_packages(server_extension.__path__, server_extension.__name__ + "."):
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, web.RequestHandler) and cls.__module__.startswith("jupyter_sandbox."):
                found.add(cls)
    return found


def routed_handler_classes() -> set[type[web.RequestHandler]]:
    _, _, targets = registered_targets()
    return {t for t in targets if isinstance(t, type) and issubclass(t, web.RequestHandler)}


def verb_methods(cls: type[web.RequestHandler]) -> Iterator[tuple[str, Callable[..., Any]]]:
    """(verb, method) for each HTTP verb the class answers with code of this project."""
    for verb in (method.lower() for method in cls.SUPPORTED_METHODS):
        owner = next((klass for klass in cls.__mro__ if verb in vars(klass)), None)
        if owner is None or owner is web.RequestHandler:
            continue  # tornado's default: 405
        if not owner.__module__.startswith("jupyter_sandbox."):
            assert verb in FRAMEWORK_VERBS, f"{cls.__name__}.{verb} is inherited from {owner.__qualname__}, unchecked"
            continue
        yield verb, getattr(cls, verb)


def wrapper_codes(method: Callable[..., Any]) -> list[Any]:
    codes = []
    layer: Any = method
    while layer is not None:
        codes.append(getattr(layer, "__code__", None))
        layer = getattr(layer, "__wrapped__", None)
    return codes


class GivenUser(IdentityProvider):
    """Says the request comes from whoever the test names."""

    user: User | None = None

    def get_user(self, handler: Any) -> User | None:
        return self.user


class DenyAll(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return False


class FakeConnection:
    """Enough of an HTTP connection for a handler to answer (a redirect to the login page, say)."""

    def __init__(self) -> None:
        self.status: int | None = None

    def set_close_callback(self, callback: Any) -> None:
        pass

    def write_headers(self, start_line: Any, headers: Any, chunk: bytes | None = None) -> Future:
        self.status = start_line.code
        return self._done()

    def write(self, chunk: bytes) -> Future:
        return self._done()

    def finish(self) -> None:
        pass

    @staticmethod
    def _done() -> Future:
        future: Future = Future()
        future.set_result(None)
        return future


ALL_HANDLERS = sorted(extension_handler_classes() | routed_handler_classes(), key=lambda cls: cls.__qualname__)
CASES = [(cls, verb) for cls in ALL_HANDLERS for verb, _ in verb_methods(cls)]


def test_the_routes_are_found_at_all() -> None:
    # A collection that found nothing would pass everything below.
    routed = routed_handler_classes()
    assert len(routed) >= 15, routed
    assert len(CASES) >= 30, CASES


def test_every_routed_target_is_a_handler_or_listed_as_public() -> None:
    _, _, targets = registered_targets()
    public = [t for t in targets if not (isinstance(t, type) and issubclass(t, web.RequestHandler))]
    unlisted = [t for t in public if type(t) not in PUBLIC_TARGETS]
    assert not unlisted, f"routes that are neither a Jupyter handler nor listed in PUBLIC_TARGETS: {unlisted}"
    # The list names only what is there (the host form and the path form of previews).
    assert {type(t) for t in public} == set(PUBLIC_TARGETS)
    assert len(public) == 2


def test_every_handler_of_the_extension_is_routed() -> None:
    # A handler class defined but never routed is checked below all the same; this says which.
    unrouted = {cls.__qualname__ for cls in extension_handler_classes() - routed_handler_classes()}
    bases = {cls.__qualname__ for cls in ALL_HANDLERS if not list(verb_methods(cls))}
    assert unrouted <= bases, f"handlers with verbs that no route reaches: {sorted(unrouted - bases)}"


@pytest.mark.parametrize("cls, verb", CASES, ids=[f"{cls.__name__}.{verb}" for cls, verb in CASES])
def test_each_verb_is_decorated(cls: type[web.RequestHandler], verb: str) -> None:
    codes = wrapper_codes(getattr(cls, verb))
    assert AUTHENTICATED_CODE in codes, f"{cls.__qualname__}.{verb} is not wrapped by @web.authenticated"
    assert AUTHORIZED_CODE in codes, f"{cls.__qualname__}.{verb} is not wrapped by @authorized"


def call(app: web.Application, cls: type[web.RequestHandler], verb: str, user: Any) -> int:
    """The status a request with this user gets from cls.verb (prepare first, as tornado does)."""
    connection = FakeConnection()
    request = httputil.HTTPServerRequest(
        connection=connection,  # type: ignore[arg-type]
        headers=httputil.HTTPHeaders({"Host": "127.0.0.1"}),
        start_line=httputil.RequestStartLine(verb.upper(), f"{BASE_URL}sandbox/api/sandboxes", "HTTP/1.1"),
    )
    service = app.settings["untouchable"]
    service.used.clear()
    app.settings["identity_provider"].user = user
    # Each handler's own initialize argument, given the object that fails the test when touched.
    argument = next(iter(inspect.signature(cls.initialize).parameters.keys() - {"self"}), "service")
    handler = cls(app, request, **{argument: service})
    method = getattr(handler, verb)
    parameters = [name for name in inspect.signature(inspect.unwrap(method)).parameters if name != "self"]
    kwargs = {name: "0123456789ab" for name in parameters}
    handler.path_kwargs = kwargs

    async def run() -> None:
        prepared = handler.prepare()
        if prepared is not None:
            await prepared
        if handler._finished:
            return
        result = method(**kwargs)
        if inspect.isawaitable(result):
            await result

    try:
        asyncio.run(run())
    except web.HTTPError as exc:
        return exc.status_code
    assert not service.used
    assert connection.status is not None, f"{cls.__qualname__}.{verb} answered nothing"
    return connection.status


@pytest.fixture(scope="module")
def app() -> web.Application:
    return registered_targets()[0]


@pytest.mark.parametrize("cls, verb", CASES, ids=[f"{cls.__name__}.{verb}" for cls, verb in CASES])
def test_nobody_logged_in_is_refused_before_the_service(app: web.Application, cls: type, verb: str) -> None:
    status = call(app, cls, verb, user=None)
    # 403 for the API; a page handler may send the browser to the login page instead.
    assert status in (302, 403), f"{cls.__qualname__}.{verb} answered {status} to an anonymous request"
    assert not app.settings["untouchable"].used


@pytest.mark.parametrize("cls, verb", CASES, ids=[f"{cls.__name__}.{verb}" for cls, verb in CASES])
def test_a_user_the_authorizer_refuses_is_refused_before_the_service(
    app: web.Application, cls: type, verb: str
) -> None:
    user = User(username="mallory")
    assert call(app, cls, verb, user=user) == 403
    assert not app.settings["untouchable"].used
