"""Preview links: a web app listening inside a sandbox, served on its own origin.

A request's way, folder by file: `entry.py` (tornado routes a preview origin or the path form here and
hands the connection over), `session.py` (the request loop), `access.py` (tokens, and what of a
request reaches the app), `confine.py` (what of the app's response reaches the browser),
`upstream.py` (reaching the app: straight or through the agent's tunnel), `http1.py` (the framing),
`pages.py` (the proxy's own answers).
"""

from .entry import PreviewGateway, host_pattern, install

__all__ = ["PreviewGateway", "host_pattern", "install"]
