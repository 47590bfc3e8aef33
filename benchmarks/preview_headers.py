"""What the response header policy (server_extension/preview/confine.py) costs per response.

Each preview response head goes through the policy of its form before it is sent. This times building
the head the browser gets, with the policy (own origin; path form) and, as the baseline in the same
process, the app's headers passed as they are (what the proxy did before the policy). The heads are
typical: a page with a few cookies and caching headers, and a plain JSON answer.
"""

from __future__ import annotations

import time
from typing import Callable

from jupyter_sandbox.server_extension.preview import access, confine
from jupyter_sandbox.server_extension.preview.http1 import Head

PREFIX = "/sandbox/preview/0123456789ab/3000"
HOSTS = {"127.0.0.1:8888", "localhost:3000"}
HEADS = {
    "page": Head(
        ("HTTP/1.1", "200", "OK"),
        [
            ("Server", "TornadoServer/6.4"),
            ("Content-Type", "text/html; charset=UTF-8"),
            ("Date", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ("Etag", '"4b6b3f5bfea71148f022aecf1eecd6c2e8eebaf9"'),
            ("Content-Length", "5120"),
            ("Set-Cookie", "session=abc; Path=/; HttpOnly"),
            ("Set-Cookie", "theme=dark; Path=/; Max-Age=86400"),
            ("Cache-Control", "public, max-age=60"),
            ("Vary", "Accept-Encoding"),
            ("X-Request-Id", "42"),
        ],
    ),
    "json": Head(
        ("HTTP/1.1", "200", "OK"),
        [
            ("Server", "TornadoServer/6.4"),
            ("Content-Type", "application/json"),
            ("Date", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ("Content-Length", "120"),
        ],
    ),
    "redirect": Head(
        ("HTTP/1.1", "302", "Found"),
        [("Server", "TornadoServer/6.4"), ("Location", "/login?next=%2Fdashboard"), ("Content-Length", "0")],
    ),
}


def best_per_call(actions: dict[str, Callable[[], object]], rounds: int, repeats: int) -> dict[str, float]:
    """Seconds per call of each action: the best of `repeats` timings, the actions taking turns within
    each repeat, so that a busy moment of the machine weighs on all of them alike."""
    best = {name: float("inf") for name in actions}
    for _ in range(repeats):
        for name, action in actions.items():
            started = time.perf_counter()
            for _ in range(rounds):
                action()
            best[name] = min(best[name], (time.perf_counter() - started) / rounds)
    return best


def main() -> None:
    rounds, repeats = 2000, 25
    extra = confine.path_form_extra()
    print(f"response head built for the browser, best of {repeats} x {rounds:,} (microseconds per response)")
    for name, head in HEADS.items():
        timed = best_per_call(
            {
                "as sent": lambda head=head: access.client_response(head, head.headers, True, []).encode(),
                "own origin": lambda head=head: access.client_response(
                    head, confine.own_origin_headers(head, access.COOKIE), True, []
                ).encode(),
                "path form": lambda head=head: access.client_response(
                    head, confine.path_form_headers(head, PREFIX, PREFIX + "/", HOSTS), True, extra
                ).encode(),
            },
            rounds,
            repeats,
        )
        baseline = timed["as sent"]
        print(
            f"  {name:8} as sent {baseline * 1e6:5.2f}   own origin {timed['own origin'] * 1e6:5.2f} "
            f"({timed['own origin'] / baseline:.2f}x)   path form {timed['path form'] * 1e6:5.2f} "
            f"({timed['path form'] / baseline:.2f}x)"
        )


if __name__ == "__main__":
    main()
