"""Who may see a preview, and what of a request reaches the app.

Pure functions over heads: the proxy (session.py) decides with them, and unit tests check them.
Every request needs a preview token, in the `X-Sandbox-Preview-Token` header, in `?token=`, or in the
cookie a browser gets for `?token=`. Before a request goes on, everything meant for Jupyter or for
the proxy is taken out of it: the Authorization header, XSRF headers, the token (header, query
parameter and cookie) and Jupyter's own cookies (on the path form, every cookie).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from http.cookies import SimpleCookie

from .http1 import Head

TOKEN_HEADER = "X-Sandbox-Preview-Token"
COOKIE = "jupyter-sandbox-preview"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
}
# Credentials meant for Jupyter (or for the proxy itself) never reach the app.
STRIPPED_REQUEST_HEADERS = {
    "authorization",
    "x-xsrftoken",
    "x-csrftoken",
    TOKEN_HEADER.lower(),
    "host",
    "expect",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-forwarded-prefix",
    "forwarded",
}
JUPYTER_COOKIE = re.compile(r"^(_xsrf|username-.*|jupyterhub-.*|" + re.escape(COOKIE) + r")$")


def split_target(target: str) -> tuple[str, list[tuple[str, str]]]:
    path, _, query = target.partition("?")
    return path, urllib.parse.parse_qsl(query, keep_blank_values=True)


def join_target(path: str, query: list[tuple[str, str]]) -> str:
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def request_cookies(head: Head) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for value in head.values("Cookie"):
        for item in value.split(";"):
            name, equals, content = item.strip().partition("=")
            if equals and name:
                cookies.setdefault(name, content)
    return cookies


def given_token(head: Head, query: list[tuple[str, str]]) -> tuple[str | None, bool]:
    """(token, whether it came in the query string): the header first, then `?token=`, then the cookie."""
    header = head.get(TOKEN_HEADER)
    if header:
        return header, False
    in_query = [value for key, value in query if key == "token"]
    if in_query:
        return in_query[-1], True
    return request_cookies(head).get(COOKIE), False


def wants_cookie(head: Head, from_query: bool) -> bool:
    """A browser opening a link with `?token=`: it gets a cookie and the address without the token."""
    return from_query and head.first[0] == "GET" and "text/html" in head.get("Accept")


def token_cookie(token: str, path: str, expires_at: int) -> str:
    """A Set-Cookie value for this preview origin only (no Domain), unreadable by the page's scripts."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[COOKIE] = token
    morsel = cookie[COOKIE]
    morsel["path"] = path
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    morsel["max-age"] = str(max(0, expires_at - int(time.time())))
    return morsel.OutputString()


def token_expiry(token: str) -> int:
    try:
        return int(token.split(".")[2])
    except (IndexError, ValueError):
        return 0


def _kept_cookies(value: str) -> str:
    kept = []
    for item in value.split(";"):
        item = item.strip()
        if item and not JUPYTER_COOKIE.match(item.partition("=")[0].strip()):
            kept.append(item)
    return "; ".join(kept)


def websocket_origin_refused(head: Head, own_host: str | None) -> str | None:
    """Why a websocket upgrade is refused for its Origin, or None when it may go on.

    A browser names the page that opens a websocket in `Origin`, and sends the preview's cookie along
    whichever page that is: without this check a page of another origin (another preview, another
    port of the same host name, Jupyter's own pages) could talk to the app as the user. So a preview
    accepts its own pages only: an http(s) Origin whose host and port are `own_host` (the Host the
    request came to; the scheme is not compared, so a TLS-terminating proxy in front changes nothing),
    or, on the path form (`own_host` None), `null`, the origin of its pages there (they live in an
    opaque-origin sandbox). No Origin at all is a client that is not a browser (curl, a script),
    which holds the token itself."""
    origins = head.values("Origin") + head.values("Sec-WebSocket-Origin")
    if not origins:
        return None
    for origin in origins:
        origin = origin.strip().lower()
        if own_host is None:
            accepted = origin == "null"
        else:
            scheme, separator, host = origin.partition("://")
            accepted = (
                bool(separator)
                and scheme in ("http", "https")
                and _without_default_port(host) == _without_default_port(own_host.lower())
            )
        if not accepted:
            expected = "null" if own_host is None else own_host
            return (
                f"A websocket of this preview opens only from the preview's own pages "
                f"({expected}); this one came from {origin[:200]}."
            )
    return None


def _without_default_port(host: str) -> str:
    for port in (":80", ":443"):
        if host.endswith(port):
            return host[: -len(port)]
    return host


def upstream_request(
    head: Head,
    path: str,
    query: list[tuple[str, str]],
    port: int,
    public_host: str,
    scheme: str,
    keep_alive: bool,
    websocket: bool,
    path_prefix: str = "",
) -> Head:
    """The request as the app sees it: addressed to localhost:PORT, with nothing of Jupyter's in it."""
    headers: list[tuple[str, str]] = []
    for name, value in head.headers:
        lowered = name.lower()
        if lowered in STRIPPED_REQUEST_HEADERS:
            continue
        # The body is relayed as it is framed, so Transfer-Encoding goes along with it.
        if (
            lowered in HOP_BY_HOP
            and lowered != "transfer-encoding"
            and not (websocket and lowered in ("upgrade", "connection"))
        ):
            continue
        if lowered == "cookie":
            if path_prefix:
                # Path form: every cookie the browser sends there belongs to the Jupyter origin (the app
                # cannot set one there), whatever its name: none goes to the app.
                continue
            value = _kept_cookies(value)
            if not value:
                continue
        headers.append((name, value))
    headers.append(("Host", f"localhost:{port}"))
    headers.append(("X-Forwarded-Host", public_host))
    headers.append(("X-Forwarded-Proto", scheme))
    if path_prefix:
        # Path form: apps that honour it build their links and redirects inside the preview.
        headers.append(("X-Forwarded-Prefix", path_prefix))
    if not websocket:
        headers.append(("Connection", "keep-alive" if keep_alive else "close"))
    target = join_target(path, [(key, value) for key, value in query if key != "token"])
    return Head((head.first[0], target, "HTTP/1.1"), headers)


def client_response(
    head: Head, app_headers: list[tuple[str, str]], keep_alive: bool, extra: list[tuple[str, str]]
) -> Head:
    """The app's response head as the browser gets it: `app_headers` (the app's headers as confine.py
    let them through), without their hop-by-hop headers, which are replaced by ours."""
    headers = [
        (name, value)
        for name, value in app_headers
        if name.lower() not in HOP_BY_HOP or name.lower() == "transfer-encoding"
    ]
    if int(head.first[1]) == 101:
        headers += [(name, value) for name, value in head.headers if name.lower() in ("upgrade", "connection")]
    else:
        headers.append(("Connection", "keep-alive" if keep_alive else "close"))
    return Head(("HTTP/1.1", head.first[1], head.first[2]), headers + extra)
