"""The proxy's own answers: error pages a person can read, with everything from the request escaped."""

from __future__ import annotations

import html
from http import HTTPStatus

from .http1 import Head

# The proxy's own pages need no script, no subresource and no frame, on either form of a preview.
PROXY_PAGE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


class PreviewFailure(Exception):
    """A request the proxy answers itself. `detail` is HTML: whatever came from outside is escaped."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail


def error_response(failure: PreviewFailure, address: str, extra: list[tuple[str, str]]) -> tuple[Head, bytes]:
    """(head, body) of the page for a failure; `address` is what was asked for, shown escaped."""
    title = html.escape(failure.title)
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{failure.detail}</p>"
        f"<p>Address: <code>{html.escape(address)}</code></p></body></html>"
    ).encode()
    try:
        reason = HTTPStatus(failure.status).phrase
    except ValueError:
        reason = "Error"
    head = Head(
        ("HTTP/1.1", str(failure.status), reason),
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            ("Content-Security-Policy", PROXY_PAGE_CSP),
            *extra,
        ],
    )
    return head, body


def redirect_response(location: str, cookie: str, extra: list[tuple[str, str]], keep_alive: bool) -> Head:
    return Head(
        ("HTTP/1.1", "302", "Found"),
        [
            ("Location", location),
            ("Set-Cookie", cookie),
            ("Content-Length", "0"),
            ("Cache-Control", "no-store"),
            ("Connection", "keep-alive" if keep_alive else "close"),
            *extra,
        ],
    )
