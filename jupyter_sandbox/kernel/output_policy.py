"""What the sandbox may show in the browser.

JupyterLab marks outputs produced in the current session as trusted and runs their scripts on the
Jupyter origin, with the user's credentials. Output from a sandbox is therefore filtered on the host
before any front end sees it:

- `safe` (default): an allow list of MIME types; `text/html` and `image/svg+xml` are sanitised with
  nh3 (the ammonia sanitiser), `text/markdown` is rendered and sanitised into `text/html`; scripts,
  event handlers, `javascript:` URLs, iframes, forms and every unknown MIME type are dropped.
- `text`: only `text/plain`.
- `trusted`: everything passes, for operators who accept the risk.

Widget state that ipywidgets renders as HTML (HTML and HTMLMath values, descriptions, the outputs of
an Output widget) is filtered the same way.
"""

from __future__ import annotations

import functools
from typing import Any

import nh3

POLICIES = ("safe", "text", "trusted")
BUNDLE_MESSAGES = frozenset({"display_data", "execute_result", "update_display_data"})
COMM_MESSAGES = frozenset({"comm_open", "comm_msg"})
FILTERED_MESSAGES = BUNDLE_MESSAGES | COMM_MESSAGES

# Passed through untouched under `safe`: data, not code.
PLAIN_TYPES = frozenset({
    "text/plain", "text/latex", "application/json", "image/png", "image/jpeg", "image/gif",
    "image/webp", "image/bmp", "application/vnd.jupyter.widget-view+json",
})
HTML_TAGS = frozenset(nh3.ALLOWED_TAGS) | {"span", "div", "img", "figure", "figcaption", "caption", "details",
                                           "summary", "mark", "small", "sub", "sup", "hr", "br", "pre", "code"}
HTML_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"class", "style", "title", "lang", "dir", "align", "colspan", "rowspan"},
    "img": {"src", "alt", "width", "height"},
    "a": {"href", "title"},
}
STYLE_PROPERTIES = {
    "color", "background-color", "text-align", "vertical-align", "font-weight", "font-style", "font-size",
    "font-family", "text-decoration", "white-space", "border", "border-top", "border-bottom", "border-left",
    "border-right", "border-collapse", "border-color", "border-width", "border-style", "padding",
    "padding-top", "padding-bottom", "padding-left", "padding-right", "margin", "margin-top", "margin-bottom",
    "margin-left", "margin-right", "width", "height", "max-width", "max-height", "min-width", "display",
}
URL_SCHEMES = {"http", "https", "mailto", "data"}
SVG_TAGS = {
    "svg", "g", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text", "tspan",
    "textPath", "defs", "clipPath", "mask", "pattern", "linearGradient", "radialGradient", "stop", "use",
    "symbol", "marker", "title", "desc", "image",
}
SVG_ATTRIBUTES = {"*": {
    "id", "class", "style", "transform", "d", "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "rx", "ry",
    "width", "height", "viewBox", "points", "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width",
    "stroke-opacity", "stroke-linecap", "stroke-linejoin", "stroke-dasharray", "stroke-miterlimit", "opacity",
    "clip-path", "clip-rule", "mask", "offset", "stop-color", "stop-opacity", "gradientUnits",
    "gradientTransform", "patternUnits", "markerWidth", "markerHeight", "refX", "refY", "orient",
    "preserveAspectRatio", "font-family", "font-size", "font-weight", "text-anchor", "dominant-baseline",
    "dx", "dy", "xmlns", "xlink", "version", "href",
}}
SVG_SCHEMES = {"data"}  # only embedded images and #fragments; nothing is fetched from elsewhere
DROPPED_CONTENT = {"script", "style", "foreignObject", "iframe", "object", "embed", "template", "noscript"}

@functools.lru_cache(maxsize=1)
def _markdown() -> Any:
    # Imported on first use: most kernels never see Markdown output, and every kernel start pays imports.
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table")


def sanitize_html(html: str) -> str:
    return nh3.clean(html, tags=set(HTML_TAGS), attributes=HTML_ATTRIBUTES, url_schemes=URL_SCHEMES,
                     clean_content_tags=DROPPED_CONTENT - {"template"}, filter_style_properties=STYLE_PROPERTIES,
                     link_rel="noopener noreferrer nofollow")


def sanitize_svg(svg: str) -> str:
    return nh3.clean(svg, tags=SVG_TAGS, attributes=SVG_ATTRIBUTES, url_schemes=SVG_SCHEMES,
                     clean_content_tags=DROPPED_CONTENT - {"template"}, link_rel=None)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


class OutputPolicy:
    """Filters the content of output and comm messages for one policy."""

    def __init__(self, policy: str = "safe") -> None:
        if policy not in POLICIES:
            raise ValueError(f"output policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        self.policy = policy
        self._html_comms: set[str] = set()

    @property
    def active(self) -> bool:
        return self.policy != "trusted"

    def filter_bundle(self, data: dict[str, Any]) -> dict[str, Any]:
        """A MIME bundle with only what the policy allows; a note replaces what was removed."""
        if not isinstance(data, dict):
            return {"text/plain": "[output removed: malformed]"}
        kept: dict[str, Any] = {}
        removed = []
        for mime, value in data.items():
            if mime == "text/plain" or (self.policy == "safe" and mime in PLAIN_TYPES):
                kept[mime] = value
            elif self.policy == "safe" and mime == "text/html":
                kept[mime] = sanitize_html(_text(value))
            elif self.policy == "safe" and mime == "image/svg+xml":
                kept[mime] = sanitize_svg(_text(value))
            elif self.policy == "safe" and mime == "text/markdown":
                kept.setdefault("text/html", sanitize_html(_markdown().render(_text(value))))
            else:
                removed.append(mime)
        if not kept:
            kept["text/plain"] = f"[output removed by the sandbox's output policy: {', '.join(sorted(removed))}]"
        return kept

    def filter_content(self, msg_type: str, content: dict[str, Any]) -> dict[str, Any] | None:
        """The content to send on, or None to drop the message."""
        if msg_type in BUNDLE_MESSAGES:
            return {**content, "data": self.filter_bundle(content.get("data") or {})}
        if msg_type in COMM_MESSAGES:
            if self.policy == "text":
                return None  # widgets are not plain text
            return self._filter_comm(content)
        return content

    def _filter_comm(self, content: dict[str, Any]) -> dict[str, Any]:
        data = content.get("data")
        if not isinstance(data, dict):
            return content
        state = data.get("state")
        if not isinstance(state, dict):
            return content
        comm_id = str(content.get("comm_id", ""))
        if state.get("_model_name") in ("HTMLModel", "HTMLMathModel"):
            self._html_comms.add(comm_id)
        state = dict(state)
        if comm_id in self._html_comms and "value" in state:
            state["value"] = sanitize_html(_text(state["value"]))
        for key in ("description", "placeholder", "tooltip"):
            if isinstance(state.get(key), str):
                state[key] = sanitize_html(state[key])
        if isinstance(state.get("outputs"), list):
            state["outputs"] = [self._filter_output(o) for o in state["outputs"]]
        return {**content, "data": {**data, "state": state}}

    def _filter_output(self, output: Any) -> Any:
        if isinstance(output, dict) and isinstance(output.get("data"), dict):
            return {**output, "data": self.filter_bundle(output["data"])}
        return output
