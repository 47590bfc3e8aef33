"""The original of a rich output, carried beside its sanitised fallback for the labextension to isolate.

Under the `safe` policy the browser must never run what the sandbox sends on the Jupyter origin, so
HTML and SVG are sanitised and scripts are dropped. That keeps the origin safe and loses Plotly,
Altair, Bokeh, `IFrame`, `Audio`, Styler CSS and Markdown's math. The relay therefore sends both in
one bundle:

- the sanitised fallback, as before, under the usual MIME types: every front end without the
  labextension (nbclient, nbconvert, VS Code, classic Notebook, a JupyterLab without it) shows that
  and nothing it shows can run;
- the original, under `ISOLATED_MIME`, a type that only the labextension renders: HTML and
  JavaScript in an iframe with an opaque origin (`sandbox="allow-scripts"`, no `allow-same-origin`)
  and a no-network CSP, Markdown with JupyterLab's own renderer as untrusted output (its sanitiser).

A saved notebook keeps the bundle as it came, so it reopens isolated; a JupyterLab without the
labextension has no renderer for `ISOLATED_MIME` and shows the fallback. Nothing here is trusted:
the payload is plain strings under known MIME types, and the front end treats it as hostile too.
"""

from __future__ import annotations

from typing import Any

ISOLATED_MIME = "application/vnd.jupyter-sandbox.isolated+json"
ISOLATED_VERSION = 1
# What needs script or unsanitised HTML to look as it does with a local kernel. Plain images, text,
# LaTeX, SVG and JSON keep JupyterLab's own renderers: their sanitised form is already what a local
# kernel shows, and a frame per PNG would cost memory for nothing.
ISOLATED_SOURCES = ("text/html", "application/javascript", "text/markdown")


def isolated_bundle(data: dict[str, Any], neutralise_markdown: Any = None) -> dict[str, Any] | None:
    """The `ISOLATED_MIME` value for a bundle from the sandbox, or None when it has nothing to isolate.
    Values must be strings (or nbformat's lists of strings); anything else is left out.
    `neutralise_markdown` is applied to Markdown, which is rendered on the Jupyter origin."""
    kept: dict[str, str] = {}
    for mime in ISOLATED_SOURCES:
        value = data.get(mime)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "".join(value)
        if not isinstance(value, str) or not value:
            continue
        if mime == "text/markdown" and neutralise_markdown is not None:
            value = neutralise_markdown(value)
        kept[mime] = value
    if not kept:
        return None
    return {"version": ISOLATED_VERSION, "data": kept}
