"""What the sandbox may show in the browser.

JupyterLab marks outputs produced in the current session as trusted and runs their scripts on the
Jupyter origin, with the user's credentials. Output from a sandbox is therefore filtered on the host
before any front end sees it:

- `safe` (default): an allow list of MIME types; `text/html` and `image/svg+xml` are sanitised with
  nh3 (the ammonia sanitiser), `text/markdown` is rendered and sanitised into `text/html`; scripts,
  event handlers, `javascript:` URLs, relative URLs (they would point at the host's files), iframes,
  forms, JupyterLab's own CSS classes and every unknown MIME type are dropped.
- `text`: only `text/plain`.
- `trusted`: everything passes, for operators who accept the risk.

Under every policy but `trusted`, text is made inert for the renderers JupyterLab applies to it:
plain text is auto-linked by JupyterLab (any `scheme://` becomes a link, `javascript://` included),
so only http(s) links stay linkable; TeX is typeset by MathJax, so the commands that make links,
styles, classes, ids or load extensions lose their backslash.

This module knows bundles and strings; which message carries them is `inbound.py`'s business, and
widget state is `widgets.py`'s.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import urlsplit

import nh3

from .isolation import ISOLATED_MIME, isolated_bundle

POLICIES = ("safe", "text", "trusted")

# Passed under `safe` after a type check: data, not code.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
JSON_TYPES = frozenset({"application/json", "application/vnd.jupyter.widget-view+json"})
HTML_TAGS = frozenset(nh3.ALLOWED_TAGS) | {
    "span",
    "div",
    "img",
    "figure",
    "figcaption",
    "caption",
    "details",
    "summary",
    "mark",
    "small",
    "sub",
    "sup",
    "hr",
    "br",
    "pre",
    "code",
}
HTML_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"class", "style", "title", "lang", "dir", "align", "colspan", "rowspan"},
    "img": {"src", "alt", "width", "height"},
    "a": {"href", "title"},
}
STYLE_PROPERTIES = {
    "color",
    "background-color",
    "text-align",
    "vertical-align",
    "font-weight",
    "font-style",
    "font-size",
    "font-family",
    "text-decoration",
    "white-space",
    "border",
    "border-top",
    "border-bottom",
    "border-left",
    "border-right",
    "border-collapse",
    "border-color",
    "border-width",
    "border-style",
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "margin",
    "margin-top",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "width",
    "height",
    "max-width",
    "max-height",
    "min-width",
    "display",
}
URL_SCHEMES = {"http", "https", "mailto", "data"}
SVG_TAGS = {
    "svg",
    "g",
    "path",
    "rect",
    "circle",
    "ellipse",
    "line",
    "polyline",
    "polygon",
    "text",
    "tspan",
    "textPath",
    "defs",
    "clipPath",
    "mask",
    "pattern",
    "linearGradient",
    "radialGradient",
    "stop",
    "use",
    "symbol",
    "marker",
    "title",
    "desc",
    "image",
}
SVG_ATTRIBUTES = {
    "*": {
        "id",
        "class",
        "style",
        "transform",
        "d",
        "x",
        "y",
        "x1",
        "x2",
        "y1",
        "y2",
        "cx",
        "cy",
        "r",
        "rx",
        "ry",
        "width",
        "height",
        "viewBox",
        "points",
        "fill",
        "fill-opacity",
        "fill-rule",
        "stroke",
        "stroke-width",
        "stroke-opacity",
        "stroke-linecap",
        "stroke-linejoin",
        "stroke-dasharray",
        "stroke-miterlimit",
        "opacity",
        "clip-path",
        "clip-rule",
        "mask",
        "offset",
        "stop-color",
        "stop-opacity",
        "gradientUnits",
        "gradientTransform",
        "patternUnits",
        "markerWidth",
        "markerHeight",
        "refX",
        "refY",
        "orient",
        "preserveAspectRatio",
        "font-family",
        "font-size",
        "font-weight",
        "text-anchor",
        "dominant-baseline",
        "dx",
        "dy",
        "xmlns",
        "xlink",
        "version",
        "href",
    }
}
SVG_SCHEMES = {"data"}  # only embedded images and #fragments; nothing is fetched from elsewhere
DROPPED_CONTENT = {"script", "style", "foreignObject", "iframe", "object", "embed", "template", "noscript"}
URL_ATTRIBUTES = frozenset({"href", "src", "xlink:href"})
# Class names JupyterLab, Lumino, CodeMirror, MathJax and the widgets style: sandbox HTML wearing them
# could dress up as the application (a fixed full-window "dialog" asking for a password).
APP_CLASS_RE = re.compile(r"^(?:jp|lm|p|cm|mjx|jupyter|widget|Toastify)-|^MathJax", re.IGNORECASE)

# JupyterLab's auto-linker (rendermime's webLinkRegex) links `[a-zA-Z][a-zA-Z0-9+.-]{2,40}://...`, so
# `javascript://%0Aalert(1)` in plain text becomes a live link. A word joiner (U+2060, invisible) before
# the `://` of any scheme but http(s) leaves the text as it reads and stops the match.
SCHEME_BEFORE_SEPARATOR_RE = re.compile(r"([A-Za-z0-9+.-]+)(?=://)")
LINKABLE_SCHEMES = frozenset({"http", "https"})
WORD_JOINER = "\u2060"
# JupyterLab strips these (its ansiSpan) before linking, so they can hide a scheme: `java\x1b[0mscript://`.
ANSI_CSI_RE = re.compile(r"\x1b\[(.*?)([@-~])")
# MathJax (TeX input with all packages) typesets text/latex, HTML, Markdown and widget labels. Its
# safe extension filters most of what follows, but a front end may lack it: these commands lose
# their backslash (U+29F5 looks the same and is inert) before any front end sees them.
TEX_COMMAND_RE = re.compile(
    r"\\(href|url|class|cssId|style|data|require|unicode|html|mmlToken|toggle|"
    r"texttip|mathtip|fbox|bbox|attr)(?![A-Za-z])"
)
TEX_BACKSLASH = "\u29f5"


@functools.lru_cache(maxsize=1)
def _markdown() -> Any:
    # Imported on first use: most kernels never see Markdown output, and every kernel start pays imports.
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table")


def neutralise_links(text: str) -> str:
    """Text as it reads, but JupyterLab's auto-linker makes links of http(s) URLs only."""
    if "://" not in text:
        return text  # the common case, and the hot one (streams)
    # JupyterLab links the text it shows, i.e. without the escape codes (which could split a scheme).
    plain = ANSI_CSI_RE.sub("", text) if "\x1b" in text else text
    if not _has_unsafe_scheme(plain):
        return text
    # Colours are lost only for text that carries such a link.
    return SCHEME_BEFORE_SEPARATOR_RE.sub(_break_scheme, plain)


def _has_unsafe_scheme(text: str) -> bool:
    return any(m.group(1).lower() not in LINKABLE_SCHEMES for m in SCHEME_BEFORE_SEPARATOR_RE.finditer(text))


def _break_scheme(match: re.Match[str]) -> str:
    scheme = match.group(1)
    return scheme if scheme.lower() in LINKABLE_SCHEMES else scheme + WORD_JOINER


def neutralise_tex(text: str) -> str:
    if "\\" not in text:
        return text
    return TEX_COMMAND_RE.sub(lambda m: TEX_BACKSLASH + m.group(1), text)


def _safe_url(value: str, schemes: set[str]) -> bool:
    value = value.strip()
    if value.startswith("#"):
        return True
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    # No relative URLs: JupyterLab resolves them against the notebook's folder on the host.
    return bool(parts.scheme) and parts.scheme.lower() in schemes


def _html_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute in URL_ATTRIBUTES:
        schemes = URL_SCHEMES if tag == "img" else URL_SCHEMES - {"data"}
        return value if _safe_url(value, schemes) else None
    if attribute == "class":
        kept = " ".join(name for name in value.split() if not APP_CLASS_RE.match(name))
        return kept or None
    return value


def _svg_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute in URL_ATTRIBUTES:
        return value if _safe_url(value, SVG_SCHEMES) else None
    return value


def sanitize_html(html: str) -> str:
    return nh3.clean(
        neutralise_tex(html),
        tags=set(HTML_TAGS),
        attributes=HTML_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        clean_content_tags=DROPPED_CONTENT - {"template"},
        filter_style_properties=STYLE_PROPERTIES,
        link_rel="noopener noreferrer nofollow",
        attribute_filter=_html_attribute,
    )


def sanitize_svg(svg: str) -> str:
    return nh3.clean(
        svg,
        tags=SVG_TAGS,
        attributes=SVG_ATTRIBUTES,
        url_schemes=SVG_SCHEMES,
        clean_content_tags=DROPPED_CONTENT - {"template"},
        link_rel=None,
        attribute_filter=_svg_attribute,
    )


def as_text(value: Any) -> str | None:
    """A string as nbformat allows it (a string or a list of strings); None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return None


class OutputPolicy:
    """Filters MIME bundles and the text the front end renders, for one policy."""

    def __init__(self, policy: str = "safe", isolate: bool = False) -> None:
        if policy not in POLICIES:
            raise ValueError(f"output policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        self.policy = policy
        # Under `safe`, outputs shown in a notebook also carry their original for the labextension's
        # isolated frames (isolation.py); the sanitised fallback stays in the same bundle.
        self.isolate = isolate and policy == "safe"

    @property
    def active(self) -> bool:
        return self.policy != "trusted"

    def text(self, value: str) -> str:
        """Plain text that JupyterLab renders (and auto-links): streams, text/plain, tracebacks."""
        return neutralise_links(value) if self.active else value

    def filter_bundle(self, data: Any, isolate: bool = False) -> dict[str, Any]:
        """A MIME bundle with only what the policy allows; a note replaces what was removed. With
        `isolate` (an output in a notebook: display data, results, Output widgets), and when this
        policy isolates, the original HTML, JavaScript and Markdown ride along under ISOLATED_MIME."""
        if not isinstance(data, dict):
            return {"text/plain": "[output removed: malformed]"}
        if not self.active:
            return data
        kept: dict[str, Any] = {}
        removed = []
        for mime, value in data.items():
            filtered = self._filter_value(str(mime), value)
            if filtered is None:
                removed.append(str(mime)[:100])
            else:
                kept.setdefault("text/html" if mime == "text/markdown" else mime, filtered)
        if not kept:
            kept["text/plain"] = f"[output removed by the sandbox's output policy: {', '.join(sorted(removed))}]"
        if isolate and self.isolate:
            # An Output widget's outputs come back from the front end with the fallback in the usual
            # types: the original is the one carried under ISOLATED_MIME (it is isolated all the same).
            carried = data.get(ISOLATED_MIME)
            source = (
                {**data, **carried["data"]}
                if isinstance(carried, dict) and isinstance(carried.get("data"), dict)
                else data
            )
            original = isolated_bundle(source, neutralise_tex)
            if original is not None:
                kept[ISOLATED_MIME] = original
        return kept

    def filter_output(self, output: Any) -> dict[str, Any] | None:
        """An nbformat output (as an Output widget holds them), or None to drop it."""
        if not isinstance(output, dict):
            return None
        if not self.active:
            return output
        kind = output.get("output_type")
        if kind == "stream":
            text = as_text(output.get("text"))
            if output.get("name") not in ("stdout", "stderr") or text is None:
                return None
            return {"output_type": kind, "name": output["name"], "text": neutralise_links(text)}
        if kind in ("display_data", "execute_result"):
            metadata = output.get("metadata")
            out = {
                "output_type": kind,
                "data": self.filter_bundle(output.get("data"), isolate=True),
                "metadata": metadata if isinstance(metadata, dict) else {},
            }
            if kind == "execute_result":
                count = output.get("execution_count")
                out["execution_count"] = count if isinstance(count, int) and not isinstance(count, bool) else None
            return out
        if kind == "error":
            return {"output_type": kind, **self.filter_error(output)}
        return None

    def filter_error(self, content: dict[str, Any]) -> dict[str, str | list[str]]:
        """ename, evalue and traceback as strings, the traceback's text made inert for the renderer."""
        traceback = content.get("traceback")
        lines = [line for line in traceback if isinstance(line, str)] if isinstance(traceback, list) else []
        ename, evalue = content.get("ename"), content.get("evalue")
        return {
            "ename": self.text(ename) if isinstance(ename, str) else "Error",
            "evalue": self.text(evalue) if isinstance(evalue, str) else "",
            "traceback": [self.text(line) for line in lines],
        }

    def _filter_value(self, mime: str, value: Any) -> Any:
        if mime == "text/plain":
            text = as_text(value)
            return None if text is None else neutralise_links(text)
        if self.policy != "safe":
            return None
        if mime in IMAGE_TYPES:
            text = as_text(value)
            return None if text is None else text
        if mime == "text/latex":
            text = as_text(value)
            return None if text is None else neutralise_tex(text)
        if mime in JSON_TYPES:
            if mime == "application/vnd.jupyter.widget-view+json":
                if not (isinstance(value, dict) and isinstance(value.get("model_id"), str)):
                    return None
                return {
                    k: v
                    for k, v in value.items()
                    if k == "model_id" or (k in ("version_major", "version_minor") and isinstance(v, int))
                }
            return value  # rendered as a tree of text; inbound.py has already bounded it
        text = as_text(value)
        if text is None:
            return None
        if mime == "text/html":
            return sanitize_html(text)
        if mime == "image/svg+xml":
            return sanitize_svg(text)
        if mime == "text/markdown":
            return sanitize_html(_markdown().render(text))
        return None
