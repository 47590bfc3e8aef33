"""What of an app's response reaches the browser: nothing in it may set or clear state of another origin.

Pure functions over response heads; the proxy (session.py) applies them to every response it relays,
the upgrade answer of a websocket included, and unit tests check them.

Two forms, two rules:
- On its own origin (`{port}-{id}.localhost`) a preview is a web site of its own and may use what a web
  site may use. Only what reaches beyond that origin is taken out: a cookie's `Domain` attribute (it
  would reach sibling previews and, on a hub's wildcard domain, the hub itself), `Clear-Site-Data`
  (its "cookies" type clears the whole registrable domain), the proxy's own token cookie, and caching
  by shared caches (a cache in front of the server would hand the response to anyone, token or not).
- The path form (`/sandbox/preview/{id}/{port}/`) is served on the Jupyter origin, so every header
  the browser would keep as state of that origin is refused: default deny, only headers known to
  concern this one response pass (plus `X-*` ones, which no browser acts on as origin state).
  Cookies, storage clearing, service worker scope, HSTS, Alt-Svc, reporting, client hints, HTTP
  authentication prompts, preload and speculation hints, caching: none of it passes. Redirects
  (`Location`, `Refresh`) are confined to the preview's own prefix, and a redirect to anywhere else
  is refused, so a response cannot send the browser to `/logout` or `/api/...` of Jupyter.
"""

from __future__ import annotations

import html
import re
import urllib.parse

from .http1 import Head
from .pages import PreviewFailure

# Our sandbox directive keeps a path-form page in an opaque origin: its script cannot read or write
# Jupyter's cookies or storage, and its requests to Jupyter are cross-origin. frame-ancestors: only
# Jupyter's own pages may frame it (no other site can put it under the user's clicks).
PATH_FORM_CSP = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads; frame-ancestors 'self'"

# Path form: the response headers that pass. Each concerns only this response (its body, its
# framing, how it may be embedded or read); none is kept by a browser as state of the origin.
PATH_FORM_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "content-language",
        "content-disposition",
        "content-range",
        "accept-ranges",
        "transfer-encoding",
        "date",
        "last-modified",
        "etag",
        "server",
        "allow",
        "retry-after",
        "server-timing",
        "timing-allow-origin",
        "referrer-policy",
        "permissions-policy",
        "content-security-policy",
        "content-security-policy-report-only",
        "cross-origin-resource-policy",
        "cross-origin-embedder-policy",
        "cross-origin-opener-policy",
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
        "access-control-allow-credentials",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "upgrade",
        "connection",
        "keep-alive",
        "digest",
        "repr-digest",
        "content-digest",
        "trailer",
    }
)
# Own-origin form: what leaves every response. Shared-cache directives are rewritten, not listed.
OWN_ORIGIN_DROPPED = frozenset({"clear-site-data", "surrogate-control", "cdn-cache-control", "set-cookie2"})
SHARED_CACHE_DIRECTIVES = ("public", "s-maxage", "proxy-revalidate")
# WHATWG URL parsing removes these anywhere in a URL, and these around it.
_URL_REMOVED = re.compile(r"[\t\n\r]")
_URL_STRIPPED = "".join(chr(c) for c in range(0x21))
# Characters written into a confined URL as they are; anything else is percent-encoded.
_URL_SAFE = "/?#[]@!$&'()*+,;=:-._~%"
_REFRESH = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(?:[;,]\s*(?:url\s*=\s*)?(.*))?$", re.IGNORECASE | re.DOTALL)


def _remove_dot_segments(path: str) -> str:
    """The path a browser requests for `path`: '.' and '..' segments resolved, '%2e' counted as '.'."""
    out: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments[1:], start=1):
        dots = segment.lower().replace("%2e", ".")
        last = index == len(segments) - 1
        if dots == "..":
            if len(out) > 0:
                out.pop()
            if last:
                out.append("")
        elif dots == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def confine_url(value: str, prefix: str, request_path: str, own_hosts: set[str]) -> str | None:
    """A redirect target of a path-form preview, as an absolute path inside `prefix`, or None when it
    leads anywhere else (another path of the Jupyter origin, another host, another scheme).

    The app believes it is at `/` (its requests arrive without the prefix): a path of its own such as
    `/login` means `prefix + /login`. `request_path` is the path the browser asked for (prefix
    included), against which a relative target resolves. `own_hosts` are the names the app may call
    itself in an absolute URL (the Host the browser used, and the one the app was sent)."""
    text = _URL_REMOVED.sub("", value).strip(_URL_STRIPPED)
    # Browsers read a backslash in an http URL as a slash: '/\\evil' is '//evil', another host.
    text = text.replace("\\", "/")
    if not text:
        return None
    parts = urllib.parse.urlsplit(text)
    # Only absolute http(s) URLs with an authority: not javascript:, data:, nor 'http:evil'.
    scheme_ok = parts.scheme.lower() in ("http", "https") and text[len(parts.scheme) + 1 :].startswith("//")
    if parts.scheme and not scheme_ok:
        return None
    if parts.scheme or text.startswith("//"):
        if parts.netloc.lower() not in own_hosts:
            return None
        path = parts.path or "/"
    elif text.startswith("/"):
        path = parts.path
    else:
        # Relative: resolved against the folder of the address the browser is at.
        path = request_path.rsplit("/", 1)[0] + "/" + parts.path if parts.path else request_path
    if path != prefix and not path.startswith(prefix + "/"):
        path = prefix + path
    path = _remove_dot_segments(path)
    if path == prefix:
        path = prefix + "/"
    if not path.startswith(prefix + "/"):
        return None
    confined = path + ("?" + parts.query if parts.query else "") + ("#" + parts.fragment if parts.fragment else "")
    return urllib.parse.quote(confined, safe=_URL_SAFE)


def _confined_refresh(value: str, prefix: str, request_path: str, own_hosts: set[str]) -> str | None:
    match = _REFRESH.match(value)
    if not match:
        return None
    delay, target = match.group(1), (match.group(2) or "").strip()
    if not target:
        return delay  # a reload of this very address
    if len(target) >= 2 and target[0] in "'\"" and target[-1] == target[0]:
        target = target[1:-1]
    confined = confine_url(target, prefix, request_path, own_hosts)
    return None if confined is None else f"{delay}; url={confined}"


def _cookie_without_domain(value: str, reserved: str) -> str | None:
    """An app's Set-Cookie on its own origin, host-only (no Domain); None for the proxy's own cookie."""
    name_value, *attributes = value.split(";")
    if name_value.partition("=")[0].strip().lower() == reserved.lower():
        return None
    if "domain" not in value.lower():
        return value  # host-only already (the common case: left as the app wrote it)
    kept = [name_value.strip()] + [
        a.strip() for a in attributes if a.strip() and a.split("=", 1)[0].strip().lower() != "domain"
    ]
    return "; ".join(kept)


def _private_cache_control(values: list[str]) -> str:
    directives = [item.strip() for value in values for item in value.split(",") if item.strip()]
    kept = [d for d in directives if d.split("=", 1)[0].strip().lower() not in SHARED_CACHE_DIRECTIVES]
    if not any(d.split("=", 1)[0].strip().lower() in ("private", "no-store") for d in kept):
        kept.insert(0, "private")
    return ", ".join(kept)


def own_origin_headers(head: Head, reserved_cookie: str) -> list[tuple[str, str]]:
    """The app's headers on its own origin: everything that stays within that origin."""
    headers: list[tuple[str, str]] = []
    caching: list[str] = []
    for name, value in head.headers:
        lowered = name.lower()
        if lowered == "cache-control":
            caching.append(value)
        elif lowered == "set-cookie":
            cookie = _cookie_without_domain(value, reserved_cookie)
            if cookie is not None:
                headers.append((name, cookie))
        elif lowered not in OWN_ORIGIN_DROPPED:
            headers.append((name, value))
    headers.append(("Cache-Control", _private_cache_control(caching) if caching else "private"))
    return headers


def path_form_headers(head: Head, prefix: str, request_path: str, own_hosts: set[str]) -> list[tuple[str, str]]:
    """The app's headers on the Jupyter origin: only those about this response; redirects confined.
    A redirect that leads outside the preview raises PreviewFailure (the browser gets an error page)."""
    headers: list[tuple[str, str]] = []
    for name, value in head.headers:
        lowered = name.lower()
        if lowered == "location":
            confined = confine_url(value, prefix, request_path, own_hosts)
            if confined is None:
                raise PreviewFailure(
                    502,
                    "The app redirected outside its preview",
                    "On the path form a preview shares the Jupyter server's address, so its redirects stay "
                    "inside <code>" + html.escape(prefix) + "/</code>. Open the preview on its own origin "
                    "(the link from JupyterLab or <code>%sandbox preview PORT</code>) to follow it.",
                )
            headers.append(("Location", confined))
        elif lowered == "refresh":
            refresh = _confined_refresh(value, prefix, request_path, own_hosts)
            if refresh is not None:
                headers.append(("Refresh", refresh))
        elif lowered in PATH_FORM_HEADERS or (lowered.startswith("x-") and lowered != "x-frame-options"):
            headers.append((name, value))
    headers.append(("Cache-Control", "no-store"))
    return headers


def path_form_extra() -> list[tuple[str, str]]:
    """What the proxy adds to every path-form response, its own pages included."""
    return [("Content-Security-Policy", PATH_FORM_CSP), ("X-Frame-Options", "SAMEORIGIN")]
