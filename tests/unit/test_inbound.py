"""The relay's table of what the inner kernel may send, per channel and message type (no Docker).

Each vector is something a hostile kernel can send; each assertion is what JupyterLab would then do
with what passes: no markup that runs script, no link other than http(s) in auto-linked text, no TeX
command that makes links or styles, no `%sandbox` line in text that lands in the editor, and a
malformed message is dropped without taking the relay down.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from jupyter_sandbox.kernel.cells import split_cell
from jupyter_sandbox.kernel.inbound import TABLE, InboundFilter
from jupyter_sandbox.kernel.messages import dumps
from jupyter_sandbox.kernel.output_policy import OutputPolicy

# JupyterLab 4's auto-linker (rendermime ILinker.webLinkRegex), applied, as JupyterLab does, to the
# text with its ANSI colour codes removed.
CONTROL = "\u0000-\u0020\u007f-\u009f"
LAB_WEB_LINK = re.compile(
    rf"(?:[a-zA-Z][a-zA-Z0-9+.-]{{2,40}}://|data:|www\.)[^\s{CONTROL}\"]{{2,}}"
    rf"[^\s{CONTROL}\"'(){{}}\[\],:;.!?]"
)
LAB_ANSI = re.compile(r"\x1b\[(.*?)([@-~])")
SCRIPT_TAGS = {
    "script",
    "iframe",
    "form",
    "object",
    "embed",
    "meta",
    "base",
    "link",
    "style",
    "math",
    "foreignobject",
    "template",
    "noscript",
    "input",
    "button",
    "isindex",
    "animate",
    "set",
    "frame",
    "frameset",
    "applet",
}
URL_ATTRIBUTES = {"href", "src", "xlink:href", "action", "formaction", "data", "srcdoc", "background", "poster"}
TEX_COMMANDS = ("\\href", "\\style", "\\class", "\\cssId", "\\require", "\\data", "\\unicode", "\\mmlToken")


class Markup(HTMLParser):
    """What a browser would build from a string: its tags and their attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def assert_no_script(value: Any) -> None:
    """No element that runs or loads script, no event handler, no script or relative URL, no fixed
    positioning or application class, no TeX command that links or styles: in any string of `value`
    read as markup (what JupyterLab would put into innerHTML). Words may stay as text."""
    for text in strings(value):
        parser = Markup()
        parser.feed(text)
        for tag, attrs in parser.found:
            assert tag.lower() not in SCRIPT_TAGS, (tag, text)
            for name, attr_value in attrs:
                name, attr_value = name.lower(), (attr_value or "").strip().lower()
                assert not name.startswith("on"), (name, text)
                if name in URL_ATTRIBUTES:
                    assert attr_value.startswith(("https:", "http:", "mailto:", "data:image/", "#")), (name, text)
                assert not (name == "style" and "position" in attr_value), text
                assert not (name == "class" and re.search(r"\b(jp|lm)-", attr_value)), text
        for command in TEX_COMMANDS:
            assert command not in text, (command, text)


def filtered(
    channel: str,
    msg_type: str,
    content: Any,
    policy: str = "safe",
    flt: InboundFilter | None = None,
    metadata: Any = None,
    buffers: tuple[bytes, ...] = (),
) -> dict | None:
    flt = flt or InboundFilter(OutputPolicy(policy))
    body = [
        b"signature",
        dumps(
            {
                "msg_id": "m1",
                "msg_type": msg_type,
                "session": "s",
                "username": "u",
                "date": "2026-01-01T00:00:00Z",
                "version": "5.3",
            }
        ),
        dumps({"msg_id": "p1", "msg_type": "execute_request"}),
        dumps(metadata or {}),
        dumps(content),
        *buffers,
    ]
    out = flt.frames(channel, body)
    return None if out is None else json.loads(out[4])


def lab_links(text: str) -> list[str]:
    return [m.group(0) for m in LAB_WEB_LINK.finditer(LAB_ANSI.sub("", text))]


def assert_links_inert(text: str) -> None:
    for link in lab_links(text):
        assert link.lower().startswith(("http://", "https://", "www.", "data:")), (link, text)


# -- vectors ------------------------------------------------------------------------------------

HTML_VECTORS = [
    "<script>window.pwned=1</script>",
    '<img src=x onerror="window.pwned=1">',
    '<svg onload="window.pwned=1"></svg>',
    '<a href="javascript:window.pwned=1">x</a>',
    '<a href="  JaVaScRiPt:window.pwned=1">x</a>',
    '<a href="jav&#x09;ascript:window.pwned=1">x</a>',
    '<a href="&#106;avascript:window.pwned=1">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="&lt;script&gt;parent.pwned=1&lt;/script&gt;"></iframe>',
    '<form action="https://evil.example"><input name=a autofocus onfocus="window.pwned=1"></form>',
    '<object data="javascript:window.pwned=1"></object><embed src="javascript:window.pwned=1">',
    '<meta http-equiv="refresh" content="0;url=javascript:window.pwned=1">',
    '<base href="javascript:/">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    '<style>@import "https://evil.example/x.css"; body{display:none}</style>',
    '<details open ontoggle="window.pwned=1">x</details>',
    '<video><source onerror="window.pwned=1"></video>',
    '<button formaction="javascript:window.pwned=1">x</button>',
    '<isindex action="javascript:window.pwned=1">',
    "<template><script>window.pwned=1</script></template>",
    # mXSS shapes: markup that parses differently once serialised and parsed again
    '<noscript><p title="</noscript><img src=x onerror=window.pwned=1>">',
    "<svg><style><img src=x onerror=window.pwned=1></style></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.pwned=1></style></mglyph></table></mtext></math>",
    '<form><math><mtext></form><form><mglyph><svg><mtext><style><path id="</style><img onerror=window.pwned=1 src>">',
    '<svg></p><style><a id="</style><img src=1 onerror=window.pwned=1>">',
    '<div style="background:url(javascript:window.pwned=1);position:fixed;top:0">cover</div>',
    '<div class="jp-Dialog lm-Widget">a fake Jupyter dialog</div>',
    '<img src="/api/terminals"><a href="../../api/contents">x</a>',
    r"<span>$\href{javascript:window.pwned=1}{click}$ $\style{position:fixed}{x}$ \class{jp-Dialog}{y}</span>",
]
MARKDOWN_VECTORS = [
    "[click](javascript:window.pwned=1)",
    "[click](  javascript:window.pwned=1 )",
    "[click][1]\n\n[1]: javascript:window.pwned=1",
    "<javascript:window.pwned=1>",
    "![x](javascript:window.pwned=1)",
    "<img src=x onerror=window.pwned=1> **bold**",
    "<script>window.pwned=1</script>",
    "[x](data:text/html,<script>window.pwned=1</script>)",
    r"$\href{javascript:window.pwned=1}{x}$",
    "<a href='javascript:window.pwned=1'>raw</a>",
    "```html\n<script>window.pwned=1</script>\n```",
]
SVG_VECTORS = [
    '<svg xmlns="http://www.w3.org/2000/svg" onload="window.pwned=1"><script>window.pwned=2</script></svg>',
    '<svg><a xlink:href="javascript:window.pwned=1"><circle r="4"/></a></svg>',
    '<svg><a href="javascript:window.pwned=1"><circle r="4"/></a></svg>',
    '<svg><foreignObject><iframe src="https://evil.example"></iframe></foreignObject></svg>',
    '<svg><animate attributeName="href" to="javascript:window.pwned=1"/><set attributeName="onclick"/></svg>',
    '<svg><image href="https://evil.example/track.png"/><use href="https://evil.example/x.svg#a"/></svg>',
]
LATEX_VECTORS = [
    r"$\href{javascript:window.pwned=1}{x}$",
    r"$$\style{position:fixed;top:0}{\text{cover}}$$",
    r"\(\class{jp-Dialog}{x}\cssId{jp-main-dock-panel}{y}\)",
    r"$\require{html}\data{a=1}{x}\unicode{x41}\mmlToken{mi}{x}$",
    r"\begin{equation}\href{https://ok.example}{ok}\end{equation}",
]
TEXT_VECTORS = [
    "click javascript://%0Awindow.pwned=1",
    "JAVASCRIPT://%0Awindow.pwned=1",
    "java\x1b[1mscript://%0Awindow.pwned=1",
    "\x1b[31mjavascript\x1b[0m://%0Awindow.pwned=1",
    "vbscript://msgbox",
    "file:///etc/passwd",
    "ms-msdt://id and search-ms://query=x",
    "\x1b]8;;javascript://%0Awindow.pwned=1\x1b\\click me\x1b]8;;\x1b\\",
    "\x1b]8;;https://ok.example\x1b\\fine\x1b]8;;\x1b\\",
    "x" * 50 + "javascript://%0Awindow.pwned=1",
    "nested hxxp+javascript://%0Awindow.pwned=1",
]
UNKNOWN_MIME = [
    "application/javascript",
    "text/javascript",
    "application/x-javascript",
    "text/vnd.mermaid",
    "application/pdf",
    "text/x-python",
    "application/vnd.jupyter.widget-state+json",
    "application/vnd.bokehjs_exec.v0+json",
    "application/vnd.plotly.v1+json",
    "text/xml",
    "application/xhtml+xml",
    "image/svg+xml;charset=utf-8",
    "TEXT/HTML",
]
SANDBOX_LINES = [
    "%sandbox network allow 0.0.0.0/1 128.0.0.0/1",
    "x = 1\n%sandbox network allow 0.0.0.0/1 128.0.0.0/1",
    "   %sandbox network allow 0.0.0.0/1",
    "\t%sandbox network allow 0.0.0.0/1",
    "%%sandbox\niptables -F",
    "\n\n%%sandbox bash\ncurl evil",
    "x = 1 \\\n%sandbox network allow 0.0.0.0/1",
    "x = 1\r\n%sandbox network allow 0.0.0.0/1",
    "x = 1\r%sandbox network allow 0.0.0.0/1",
    "x = 1\u2028%sandbox network allow 0.0.0.0/1",
    "%sandbox",
    "print(1)  # %sandbox network allow 0.0.0.0/1",
]


# -- iopub ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", ["display_data", "execute_result", "update_display_data"])
@pytest.mark.parametrize("html", HTML_VECTORS)
def test_html_in_every_bundle_message_is_inert(msg_type: str, html: str) -> None:
    content = filtered(
        "iopub",
        msg_type,
        {
            "data": {"text/html": html, "text/plain": "x"},
            "metadata": {},
            "transient": {"display_id": "d"},
            "execution_count": 1,
        },
    )
    assert content is not None
    assert_no_script(content["data"])


@pytest.mark.parametrize("markdown", MARKDOWN_VECTORS)
def test_markdown_is_rendered_then_sanitised(markdown: str) -> None:
    content = filtered("iopub", "display_data", {"data": {"text/markdown": markdown}, "metadata": {}})
    assert set(content["data"]) == {"text/html"}
    assert_no_script(content["data"])


def test_markdown_keeps_what_it_is_for() -> None:
    content = filtered("iopub", "display_data", {"data": {"text/markdown": "**bold** [ok](https://ok.example) $x^2$"}})
    html = content["data"]["text/html"]
    assert "<strong>bold</strong>" in html and 'href="https://ok.example"' in html and "$x^2$" in html


@pytest.mark.parametrize("svg", SVG_VECTORS)
def test_svg_is_inert(svg: str) -> None:
    content = filtered("iopub", "display_data", {"data": {"image/svg+xml": svg}, "metadata": {}})
    shown = content["data"].get("image/svg+xml", "")
    assert_no_script(shown)
    assert "evil.example" not in shown


@pytest.mark.parametrize("latex", LATEX_VECTORS)
def test_latex_loses_the_commands_that_link_or_style(latex: str) -> None:
    content = filtered("iopub", "display_data", {"data": {"text/latex": latex}, "metadata": {}})
    assert_no_script(content["data"])


@pytest.mark.parametrize("text", TEXT_VECTORS)
def test_text_that_lab_autolinks_links_only_http(text: str) -> None:
    stream = filtered("iopub", "stream", {"name": "stdout", "text": text})
    assert_links_inert(stream["text"])
    plain = filtered("iopub", "execute_result", {"data": {"text/plain": text}, "metadata": {}, "execution_count": 1})
    assert_links_inert(plain["data"]["text/plain"])
    error = filtered("iopub", "error", {"ename": text, "evalue": text, "traceback": [text, text]})
    for line in [error["ename"], error["evalue"], *error["traceback"]]:
        assert_links_inert(line)


def test_http_links_and_colours_stay() -> None:
    text = "see \x1b[32mhttps://ok.example/a\x1b[0m and http://b.example"
    assert filtered("iopub", "stream", {"name": "stdout", "text": text})["text"] == text
    assert lab_links(text) == ["https://ok.example/a", "http://b.example"]


@pytest.mark.parametrize("mime", UNKNOWN_MIME)
def test_unknown_mime_types_are_dropped(mime: str) -> None:
    content = filtered("iopub", "display_data", {"data": {mime: "<script>window.pwned=1</script>"}, "metadata": {}})
    assert list(content["data"]) == ["text/plain"]
    assert "removed by the sandbox's output policy" in content["data"]["text/plain"]


@pytest.mark.parametrize(
    "content",
    [
        {"data": {"text/html": {"not": "text"}}},
        {"data": {"text/plain": 42}},
        {"data": {"image/png": ["iVBOR", 7]}},
        {"data": "text/html"},
        {"data": {"application/vnd.jupyter.widget-view+json": "IPY_MODEL_x"}},
        {"data": {"text/plain": "x"}, "metadata": {"__proto__": {"trusted": True}}},
        {"data": {"text/plain": "x"}, "transient": {"display_id": {"x": 1}}},
    ],
)
def test_wrong_types_in_bundles_never_pass_as_they_are(content: dict) -> None:
    out = filtered("iopub", "display_data", content)
    assert out is not None
    assert "__proto__" not in json.dumps(out)
    for value in out["data"].values():
        assert isinstance(value, (str, dict))
    assert "transient" not in out or isinstance(out["transient"]["display_id"], str)


def test_an_update_must_name_its_display() -> None:
    assert filtered("iopub", "update_display_data", {"data": {"text/plain": "x"}, "metadata": {}}) is None


@pytest.mark.parametrize(
    ("msg_type", "content", "expected"),
    [
        ("status", {"execution_state": "busy"}, {"execution_state": "busy"}),
        ("status", {"execution_state": "dead"}, None),
        ("status", {"execution_state": "idle", "x": "<script>"}, {"execution_state": "idle"}),
        ("stream", {"name": "stdin", "text": "x"}, None),
        ("stream", {"name": "stdout", "text": ["a", "b"]}, {"name": "stdout", "text": "ab"}),
        ("stream", {"name": "stdout", "text": None}, None),
        ("clear_output", {"wait": "yes"}, {"wait": False}),
        ("execute_input", {"code": 1, "execution_count": "2"}, {"code": "", "execution_count": 0}),
        (
            "error",
            {"ename": None, "evalue": ["x"], "traceback": "<script>"},
            {"ename": "Error", "evalue": "", "traceback": []},
        ),
        ("shutdown_reply", {"status": "ok", "restart": 1}, {"status": "ok", "restart": False}),
    ],
)
def test_small_iopub_messages_are_checked_field_by_field(msg_type: str, content: dict, expected: dict | None) -> None:
    assert filtered("iopub", msg_type, content) == expected


def test_a_debug_event_is_plain_json_and_a_rich_variable_is_filtered() -> None:
    event = filtered(
        "iopub",
        "debug_event",
        {"seq": 1, "type": "event", "event": "output", "body": {"output": "x", "__proto__": {"polluted": True}}},
    )
    assert event == {"seq": 1, "type": "event", "event": "output", "body": {"output": "x"}}
    reply = filtered(
        "control",
        "debug_reply",
        {
            "seq": 2,
            "type": "response",
            "command": "richInspectVariables",
            "success": True,
            "body": {
                "data": {"text/html": "<img src=x onerror=window.pwned=1>", "application/javascript": "window.pwned=1"}
            },
        },
    )
    assert_no_script(reply)


# -- widgets ----------------------------------------------------------------------------------------

CONTROLS = {"_model_module": "@jupyter-widgets/controls", "_view_module": "@jupyter-widgets/controls"}


def open_widget(flt: InboundFilter, comm_id: str, model: str, **state: Any) -> dict | None:
    return filtered(
        "iopub",
        "comm_open",
        {
            "comm_id": comm_id,
            "target_name": "jupyter.widget",
            "data": {"state": {**CONTROLS, "_model_name": model, **state}, "buffer_paths": []},
            "metadata": {"version": "2.1.0"},
        },
        flt=flt,
    )


@pytest.mark.parametrize("html", HTML_VECTORS)
@pytest.mark.parametrize("model", ["HTMLModel", "HTMLMathModel"])
def test_html_widget_values_are_sanitised_on_open_and_update(model: str, html: str) -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    opened = open_widget(flt, "c1", model, value=html)
    assert_no_script(opened["data"]["state"])
    update = filtered(
        "iopub", "comm_msg", {"comm_id": "c1", "data": {"method": "update", "state": {"value": html}}}, flt=flt
    )
    assert_no_script(update["data"]["state"])
    echo = filtered(
        "iopub", "comm_msg", {"comm_id": "c1", "data": {"method": "echo_update", "state": {"value": html}}}, flt=flt
    )
    assert_no_script(echo["data"]["state"])


def test_widget_descriptions_are_text_and_their_tex_is_inert() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    opened = open_widget(
        flt,
        "c2",
        "IntSliderModel",
        description=r"<b>x</b> $\href{javascript:window.pwned=1}{y}$",
        description_allow_html=True,
        tooltip="<img src=x onerror=1>",
    )
    state = opened["data"]["state"]
    assert state["description_allow_html"] is False  # shown with textContent, never innerHTML
    assert "\\href" not in state["description"]
    update = filtered(
        "iopub",
        "comm_msg",
        {
            "comm_id": "c2",
            "data": {
                "method": "update",
                "state": {"description_allow_html": True, "_model_name": "HTMLModel", "_view_name": "HTMLView"},
            },
        },
        flt=flt,
    )
    assert update["data"]["state"] == {"description_allow_html": False}  # the class stays what it opened as


def test_label_values_and_option_labels_have_inert_tex() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    label = open_widget(flt, "c3", "LabelModel", value=r"$\href{javascript:x}{y}$")
    assert "\\href" not in label["data"]["state"]["value"]
    buttons = open_widget(flt, "c4", "ToggleButtonsModel", _options_labels=[r"$\style{position:fixed}{a}$", 3])
    assert "\\style" not in json.dumps(buttons) and buttons["data"]["state"]["_options_labels"][1] == ""


def test_widget_classes_and_icons_cannot_wear_jupyterlabs_classes() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    box = open_widget(
        flt,
        "b1",
        "ButtonModel",
        _dom_classes=["mine", "jp-Dialog", "lm-Widget", "a b", 3],
        icon="check jp-Dialog",
        icons=["x jp-Dialog", "check"],
    )
    state = box["data"]["state"]
    assert state["_dom_classes"] == ["mine"] and state["icon"] == "" and state["icons"] == ["", "check"]


def test_output_widget_outputs_go_through_the_output_policy() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    opened = filtered(
        "iopub",
        "comm_open",
        {
            "comm_id": "o1",
            "target_name": "jupyter.widget",
            "data": {
                "state": {
                    "_model_module": "@jupyter-widgets/output",
                    "_view_module": "@jupyter-widgets/output",
                    "_model_name": "OutputModel",
                    "outputs": [
                        {
                            "output_type": "display_data",
                            "data": {
                                "text/html": "<script>window.pwned=1</script>ok",
                                "application/javascript": "window.pwned=2",
                            },
                            "metadata": {},
                        },
                        {"output_type": "stream", "name": "stdout", "text": "javascript://%0Awindow.pwned=3"},
                        {
                            "output_type": "error",
                            "ename": "E",
                            "evalue": "v",
                            "traceback": ["javascript://%0Awindow.pwned=4"],
                        },
                        {"output_type": "unknown", "data": {"text/html": "<script>"}},
                        "not an output",
                    ],
                }
            },
        },
        flt=flt,
    )
    outputs = opened["data"]["state"]["outputs"]
    assert [o["output_type"] for o in outputs] == ["display_data", "stream", "error"]
    assert_no_script(outputs[0])
    assert_links_inert(outputs[1]["text"])
    assert_links_inert(outputs[2]["traceback"][0])
    update = filtered(
        "iopub",
        "comm_msg",
        {
            "comm_id": "o1",
            "data": {
                "method": "update",
                "state": {
                    "outputs": [
                        {
                            "output_type": "execute_result",
                            "data": {"text/html": "<img src=x onerror=1>"},
                            "execution_count": 1,
                        }
                    ]
                },
            },
        },
        flt=flt,
    )
    assert_no_script(update)


@pytest.mark.parametrize("fmt", ["svg+xml", "SVG+xml", "html", "xhtml+xml", "x/../svg", ""])
def test_media_widgets_cannot_make_an_svg_or_html_blob(fmt: str) -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    for model in ("ImageModel", "VideoModel", "AudioModel"):
        opened = open_widget(flt, f"m-{model}", model, format=fmt)
        assert opened["data"]["state"]["format"] in ("png", "mp4", "mp3")
    assert open_widget(flt, "m-ok", "ImageModel", format="jpeg")["data"]["state"]["format"] == "jpeg"


def test_jslink_cannot_write_html_or_flags() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    open_widget(flt, "t1", "TextModel", value="<img src=x onerror=window.pwned=1>")
    open_widget(flt, "h1", "HTMLModel", value="")
    open_widget(flt, "s1", "IntSliderModel", value=1)
    open_widget(flt, "s2", "IntSliderModel", value=2)
    for target in (
        ["IPY_MODEL_h1", "value"],
        ["IPY_MODEL_s1", "description_allow_html"],
        ["IPY_MODEL_s1", "_view_name"],
        ["IPY_MODEL_nowhere", "value"],
        "IPY_MODEL_h1",
    ):
        for model in ("LinkModel", "DirectionalLinkModel"):
            assert open_widget(flt, "l1", model, source=["IPY_MODEL_t1", "value"], target=target) is None
    assert open_widget(flt, "l2", "LinkModel", source=["IPY_MODEL_s1", "value"], target=["IPY_MODEL_s2", "value"])
    later = filtered(
        "iopub",
        "comm_msg",
        {"comm_id": "l2", "data": {"method": "update", "state": {"target": ["IPY_MODEL_h1", "value"]}}},
        flt=flt,
    )
    assert later is None


@pytest.mark.parametrize(
    "state",
    [
        {"_model_module": "evil-widgets", "_view_module": "evil-widgets", "_model_name": "EvilModel"},
        {"_model_module": "@jupyter-widgets/controls", "_view_module": "evil-widgets", "_model_name": "HTMLModel"},
        {"_model_module": "@jupyter-widgets/controls"},
        "not a state",
    ],
)
def test_widgets_of_unknown_modules_do_not_open(state: Any) -> None:
    assert (
        filtered("iopub", "comm_open", {"comm_id": "e1", "target_name": "jupyter.widget", "data": {"state": state}})
        is None
    )


def test_comms_of_other_targets_and_unknown_comms_are_dropped() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    opened = filtered(
        "iopub",
        "comm_open",
        {
            "comm_id": "w",
            "target_name": "jupyter.widget",
            "target_module": "https://evil.example/x.js",
            "data": {"state": {**CONTROLS, "_model_name": "IntSliderModel"}},
        },
        flt=flt,
    )
    assert "target_module" not in opened  # JupyterLab would load it with require.js
    assert filtered("iopub", "comm_open", {"comm_id": "x", "target_name": "jupyter.bokeh", "data": {}}, flt=flt) is None
    assert filtered("iopub", "comm_msg", {"comm_id": "x", "data": {"method": "update", "state": {}}}, flt=flt) is None
    assert filtered("iopub", "comm_close", {"comm_id": "x", "data": {}}, flt=flt) is None
    assert filtered(
        "shell",
        "comm_info_reply",
        {
            "status": "ok",
            "comms": {"a": {"target_name": "jupyter.widget"}, "b": {"target_name": "jupyter.bokeh"}, "c": "x"},
        },
        flt=flt,
    ) == {"status": "ok", "comms": {"a": {"target_name": "jupyter.widget"}}}


def test_the_control_comm_reply_is_filtered_model_by_model() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    reply = filtered(
        "iopub",
        "comm_msg",
        {
            "comm_id": "front-end-control",
            "data": {
                "method": "update_states",
                "buffer_paths": {"h": [], "e": []},
                "states": {
                    "h": {
                        "model_name": "HTMLModel",
                        "model_module": "@jupyter-widgets/controls",
                        "model_module_version": "2",
                        "state": {**CONTROLS, "_model_name": "HTMLModel", "value": "<script>window.pwned=1</script>ok"},
                    },
                    "e": {"model_name": "EvilModel", "model_module": "evil", "state": {"value": "<script>"}},
                },
            },
        },
        flt=flt,
    )
    assert list(reply["data"]["states"]) == ["h"]
    assert_no_script(reply)
    update = filtered(
        "iopub",
        "comm_msg",
        {"comm_id": "h", "data": {"method": "update", "state": {"value": "<img src=x onerror=1>"}}},
        flt=flt,
    )
    assert_no_script(update)


def test_widget_buffers_pass_only_on_comm_messages() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    body = [
        b"s",
        dumps({"msg_type": "stream", "msg_id": "1"}),
        b"{}",
        b"{}",
        dumps({"name": "stdout", "text": "x"}),
        b"binary",
    ]
    assert flt.frames("iopub", body)[5:] == []
    open_widget(flt, "img", "ImageModel", format="png")
    body = [
        b"s",
        dumps({"msg_type": "comm_msg", "msg_id": "1"}),
        b"{}",
        b"{}",
        dumps({"comm_id": "img", "data": {"method": "update", "state": {}, "buffer_paths": [["value"]]}}),
        b"PNG",
    ]
    assert flt.frames("iopub", body)[5:] == [b"PNG"]


# -- shell and control --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", SANDBOX_LINES)
def test_set_next_input_never_carries_a_sandbox_line(text: str) -> None:
    content = filtered(
        "shell",
        "execute_reply",
        {
            "status": "ok",
            "execution_count": 3,
            "user_expressions": {},
            "payload": [{"source": "set_next_input", "text": text, "replace": False}],
        },
    )
    assert content["payload"] == []


def test_every_sandbox_line_variant_is_one_the_relay_would_run() -> None:
    # The variants above include every shape cells.py treats as a %sandbox line (and more): so no line the
    # relay would run on the host can be planted through set_next_input.
    ran = [t for t in SANDBOX_LINES if any(s.kind != "code" for s in split_cell(t))]
    assert len(ran) >= 5


def test_set_next_input_without_magic_still_works() -> None:
    content = filtered(
        "shell",
        "execute_reply",
        {
            "status": "ok",
            "execution_count": 3,
            "user_expressions": {},
            "payload": [{"source": "set_next_input", "text": "x = 1", "replace": "yes", "extra": "<script>"}],
        },
    )
    assert content["payload"] == [{"source": "set_next_input", "text": "x = 1", "replace": False}]


@pytest.mark.parametrize(
    "payload",
    [
        {
            "source": "page",
            "data": {
                "text/html": "<script>window.pwned=1</script>",
                "application/javascript": "window.pwned=1",
                "text/plain": "javascript://%0Awindow.pwned=1",
            },
            "start": 0,
        },
        {"source": "page", "data": "<script>"},
        {"source": "edit_magic", "filename": "/home/user/.bashrc", "line_number": 1},
        {"source": "ask_exit", "keepkernel": "<script>"},
        {"source": "something_new", "html": "<script>window.pwned=1</script>"},
        "not a payload",
    ],
)
def test_reply_payloads_are_inert(payload: Any) -> None:
    content = filtered(
        "shell",
        "execute_reply",
        {
            "status": "ok",
            "execution_count": 1,
            "payload": [payload],
            "user_expressions": {"e": {"status": "ok", "data": {"text/html": "<img src=x onerror=1>"}}},
        },
    )
    assert_no_script(content)
    for item in content["payload"]:
        assert item["source"] in ("page", "ask_exit")
        if item["source"] == "page":
            assert_links_inert(item["data"].get("text/plain", ""))


def test_an_error_reply_keeps_its_message_and_loses_its_links() -> None:
    content = filtered(
        "shell",
        "execute_reply",
        {
            "status": "error",
            "execution_count": 2,
            "ename": "E",
            "evalue": "javascript://%0Ax",
            "traceback": ["javascript://%0Ax"],
            "payload": [{"source": "set_next_input", "text": "%sandbox x"}],
        },
    )
    assert content["status"] == "error" and content["payload"] == [] and content["user_expressions"] == {}
    assert_links_inert(content["evalue"])


@pytest.mark.parametrize("html", HTML_VECTORS[:8])
def test_inspector_bundles_are_filtered(html: str) -> None:
    content = filtered(
        "shell",
        "inspect_reply",
        {
            "status": "ok",
            "found": True,
            "data": {"text/html": html, "text/plain": "javascript://%0Ax", "application/javascript": "x"},
            "metadata": {"__proto__": {"x": 1}},
        },
    )
    assert_no_script(content)
    assert_links_inert(content["data"]["text/plain"])
    assert content["metadata"] == {}


def test_completions_never_insert_a_sandbox_line() -> None:
    content = filtered(
        "shell",
        "complete_reply",
        {
            "status": "ok",
            "cursor_start": 0,
            "cursor_end": 2,
            "matches": ["print", "%sandbox network allow 0.0.0.0/1", 42, "pri\n%sandbox x", "printf"],
            "metadata": {
                "_jupyter_types_experimental": [
                    {"start": 0, "end": 2, "text": "print", "type": "function"},
                    {"start": 0, "end": 2, "text": "%sandbox", "type": "magic"},
                    {"start": 0, "end": 2, "text": "x", "type": "x"},
                    {"start": 0, "end": 2, "text": "y", "type": "y"},
                    {
                        "start": 0,
                        "end": 2,
                        "text": "print\n%sandbox network allow 0.0.0.0/1",
                        "type": "function",
                        "signature": "<img src=x onerror=1>",
                    },
                ]
            },
        },
    )
    assert content["matches"] == ["print"]
    assert [t["text"] for t in content["metadata"]["_jupyter_types_experimental"]] == ["print"]


def test_completion_types_that_do_not_line_up_are_dropped() -> None:
    content = filtered(
        "shell",
        "complete_reply",
        {
            "status": "ok",
            "cursor_start": "0",
            "cursor_end": 1,
            "matches": ["a", "b"],
            "metadata": {"_jupyter_types_experimental": [{"text": "%sandbox"}]},
        },
    )
    assert content == {"status": "ok", "matches": ["a", "b"], "cursor_start": 0, "cursor_end": 1, "metadata": {}}


def test_history_never_offers_a_sandbox_line() -> None:
    content = filtered(
        "shell",
        "history_reply",
        {
            "status": "ok",
            "history": [
                [1, 1, "x = 1"],
                [1, 2, "%sandbox network allow 0.0.0.0/1"],
                [1, 3, ["y = 2", "2"]],
                [1, 4, ["ok", "\n%%sandbox\nrm -rf"]],
                [1, 5, 6],
                "junk",
                [1, 6],
            ],
        },
    )
    assert content["history"] == [[1, 1, "x = 1"], [1, 3, ["y = 2", "2"]]]


@pytest.mark.parametrize(
    ("indent", "expected"),
    [("    ", "    "), ("%sandbox network allow 0.0.0.0/1", ""), ("\n%sandbox x", ""), (4, ""), (" " * 1000, "")],
)
def test_is_complete_indent_is_whitespace_only(indent: Any, expected: str) -> None:
    assert filtered("shell", "is_complete_reply", {"status": "incomplete", "indent": indent}) == {
        "status": "incomplete",
        "indent": expected,
    }


def test_kernel_info_is_plain_names_and_http_help_links() -> None:
    content = filtered(
        "shell",
        "kernel_info_reply",
        {
            "status": "ok",
            "protocol_version": "5.3",
            "implementation": "<script>",
            "implementation_version": "7",
            "banner": "Python",
            "debugger": "yes",
            "supported_features": ["kernel subshells", "<b>"],
            "language_info": {
                "name": "python",
                "version": "3.12",
                "mimetype": 'text/html"',
                "file_extension": ".py",
                "nbconvert_exporter": "evil_module.Exporter",
                "pygments_lexer": "ipython3",
                "codemirror_mode": {"name": "ipython", "version": 3, "x": "<script>"},
            },
            "help_links": [
                {"text": "js", "url": "javascript:window.pwned=1"},
                {"text": "js2", "url": " JavaScript:window.pwned=1"},
                {"text": "data", "url": "data:text/html,<script>window.pwned=1</script>"},
                {"text": "rel", "url": "/api/terminals"},
                {"text": "proto", "url": "//evil.example"},
                {"text": "lo", "url": "http://127.0.0.1:8888/api/terminals"},
                {"text": "lo6", "url": "http://[::1]:8888/"},
                {"text": "lo-name", "url": "http://localhost:8888/"},
                {"text": "preview", "url": "http://8000-abc.localhost:8888/"},
                {"text": "ok", "url": "https://docs.python.org/3"},
                "junk",
            ],
        },
    )
    assert content["help_links"] == [{"text": "ok", "url": "https://docs.python.org/3"}]
    assert content["language_info"] == {
        "name": "python",
        "version": "3.12",
        "file_extension": ".py",
        "pygments_lexer": "ipython3",
        "codemirror_mode": {"name": "ipython", "version": 3},
    }
    assert content["debugger"] is False and "implementation" not in content
    assert content["supported_features"] == ["kernel subshells"]


@pytest.mark.parametrize(
    ("msg_type", "content", "expected"),
    [
        ("interrupt_reply", {"status": "ok", "x": "<script>"}, {"status": "ok"}),
        ("connect_reply", {"status": "ok", "shell_port": 40000}, {"status": "ok"}),
        ("shutdown_reply", {"status": "weird"}, {"status": "error", "restart": False}),
        ("create_subshell_reply", {"status": "ok", "subshell_id": 5}, {"status": "ok", "subshell_id": ""}),
        ("list_subshell_reply", {"status": "ok", "subshell_id": ["a", 1]}, {"status": "ok", "subshell_id": ["a"]}),
        ("usage_reply", {"kernel_cpu": 1.5, "__proto__": {}}, {"kernel_cpu": 1.5}),
    ],
)
def test_control_replies_keep_their_fields_only(msg_type: str, content: dict, expected: dict) -> None:
    assert filtered("control", msg_type, content) == expected


# -- stdin ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"prompt": "Name: ", "password": False}, {"prompt": "Name: ", "password": False}),
        ({"prompt": {"html": "<script>"}, "password": "no"}, {"prompt": "", "password": False}),
        ({"prompt": "x" * 100_000}, {"prompt": "x" * 4096, "password": False}),
    ],
)
def test_input_request_prompts_are_bounded_strings(content: dict, expected: dict) -> None:
    assert filtered("stdin", "input_request", content) == expected


# -- default deny and malformed input -------------------------------------------------------------


@pytest.mark.parametrize("channel", ["shell", "control", "stdin", "iopub"])
@pytest.mark.parametrize(
    "msg_type",
    [
        "execute_request",
        "made_up_reply",
        "display_data_v2",
        "comm_open_html",
        "",
        "page",
        "html_reply",
        "subshell_event",
    ],
)
def test_what_the_table_does_not_know_is_dropped(channel: str, msg_type: str) -> None:
    assert (channel, msg_type) not in TABLE
    assert filtered(channel, msg_type, {"data": {"text/html": "<script>"}}) is None


def test_the_table_names_each_channel() -> None:
    assert {channel for channel, _ in TABLE} == {"shell", "control", "stdin", "iopub"}
    assert ("stdin", "input_request") in TABLE and ("iopub", "comm_msg") in TABLE
    # A type that belongs to one channel is unknown on the others.
    assert ("stdin", "stream") not in TABLE and ("iopub", "input_request") not in TABLE
    assert filtered("stdin", "stream", {"name": "stdout", "text": "x"}) is None
    assert filtered("shell", "display_data", {"data": {"text/plain": "x"}}) is None


@pytest.mark.parametrize(
    "frames",
    [
        [b"s", b"not json", b"{}", b"{}", b"{}"],
        [b"s", b"[]", b"{}", b"{}", b"{}"],
        [b"s", dumps({"msg_type": 5}), b"{}", b"{}", b"{}"],
        [b"s", dumps({"msg_type": "stream", "msg_id": {"x": 1}}), b"{}", b"{}", dumps({"name": "stdout", "text": "x"})],
        [
            b"s",
            dumps({"msg_type": "stream", "date": "x" * 10_000}),
            b"{}",
            b"{}",
            dumps({"name": "stdout", "text": "x"}),
        ],
        [b"s", dumps({"msg_type": "stream"}), b"[1]", b"{}", dumps({"name": "stdout", "text": "x"})],
        [b"s", dumps({"msg_type": "stream"}), b"{}", b"[]", dumps({"name": "stdout", "text": "x"})],
        [b"s", dumps({"msg_type": "stream"}), b"{}", b"{}", b"[]"],
        [b"s", dumps({"msg_type": "stream"}), b"{}", b"{}", b"\xff\xfe"],
        [
            b"s",
            dumps({"msg_type": "stream"}),
            b"{}",
            b"{}",
            b'{"name": "stdout", "text": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        ],
        [
            b"s",
            dumps({"msg_type": "display_data"}),
            b"{}",
            b"{}",
            json.dumps(
                {
                    "data": {
                        "application/json": {
                            "a": [
                                [
                                    [
                                        [
                                            [
                                                [
                                                    [
                                                        [
                                                            [
                                                                [
                                                                    [
                                                                        [
                                                                            [
                                                                                [
                                                                                    [
                                                                                        [
                                                                                            [
                                                                                                [
                                                                                                    [
                                                                                                        [
                                                                                                            [
                                                                                                                [
                                                                                                                    [
                                                                                                                        [
                                                                                                                            [
                                                                                                                                [
                                                                                                                                    [
                                                                                                                                        [
                                                                                                                                            [
                                                                                                                                                [
                                                                                                                                                    [
                                                                                                                                                        [
                                                                                                                                                            [
                                                                                                                                                                [
                                                                                                                                                                    [
                                                                                                                                                                        [
                                                                                                                                                                            [
                                                                                                                                                                                [
                                                                                                                                                                                    [
                                                                                                                                                                                        [
                                                                                                                                                                                            [
                                                                                                                                                                                                [
                                                                                                                                                                                                    [
                                                                                                                                                                                                        [
                                                                                                                                                                                                            [
                                                                                                                                                                                                                [
                                                                                                                                                                                                                    [
                                                                                                                                                                                                                        [
                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                                                                            1
                                                                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                ]
                                                                                                                                                                                                            ]
                                                                                                                                                                                                        ]
                                                                                                                                                                                                    ]
                                                                                                                                                                                                ]
                                                                                                                                                                                            ]
                                                                                                                                                                                        ]
                                                                                                                                                                                    ]
                                                                                                                                                                                ]
                                                                                                                                                                            ]
                                                                                                                                                                        ]
                                                                                                                                                                    ]
                                                                                                                                                                ]
                                                                                                                                                            ]
                                                                                                                                                        ]
                                                                                                                                                    ]
                                                                                                                                                ]
                                                                                                                                            ]
                                                                                                                                        ]
                                                                                                                                    ]
                                                                                                                                ]
                                                                                                                            ]
                                                                                                                        ]
                                                                                                                    ]
                                                                                                                ]
                                                                                                            ]
                                                                                                        ]
                                                                                                    ]
                                                                                                ]
                                                                                            ]
                                                                                        ]
                                                                                    ]
                                                                                ]
                                                                            ]
                                                                        ]
                                                                    ]
                                                                ]
                                                            ]
                                                        ]
                                                    ]
                                                ]
                                            ]
                                        ]
                                    ]
                                ]
                            ]
                        }
                    }
                }
            ).encode(),
        ],
        [b"s", dumps({"msg_type": "stream"}), b"{}", b"{}", b'{"name": "stdout", "text": NaN}'],
    ],
)
def test_malformed_messages_are_dropped_not_fatal(frames: list[bytes]) -> None:
    assert InboundFilter(OutputPolicy("safe")).frames("iopub", frames) is None


def test_a_message_that_passes_unchanged_keeps_its_bytes() -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    body = [
        b"s",
        dumps({"msg_type": "stream", "msg_id": "1"}),
        b'{"p":1}',
        b"{}",
        b'{"name": "stdout", "text": "0\\n1\\n2\\n"}',
    ]
    out = flt.frames("iopub", body)
    assert out[4] is body[4] and out[1] is body[1]


# -- policies ------------------------------------------------------------------------------------------


def test_text_policy_keeps_plain_text_and_no_widgets() -> None:
    content = filtered("iopub", "display_data", {"data": {"text/html": "<b>x</b>", "text/plain": "x"}}, policy="text")
    assert content["data"] == {"text/plain": "x"}
    assert (
        filtered(
            "iopub",
            "comm_open",
            {
                "comm_id": "c",
                "target_name": "jupyter.widget",
                "data": {"state": {**CONTROLS, "_model_name": "IntSliderModel"}},
            },
            policy="text",
        )
        is None
    )


def test_trusted_policy_passes_outputs_but_never_a_planted_sandbox_line() -> None:
    content = filtered("iopub", "display_data", {"data": {"application/javascript": "x=1"}}, policy="trusted")
    assert content["data"] == {"application/javascript": "x=1"}
    reply = filtered(
        "shell",
        "execute_reply",
        {
            "status": "ok",
            "execution_count": 1,
            "payload": [{"source": "set_next_input", "text": "%sandbox network allow 0.0.0.0/1"}],
        },
        policy="trusted",
    )
    assert reply["payload"] == []
    info = filtered(
        "shell",
        "kernel_info_reply",
        {
            "status": "ok",
            "help_links": [{"text": "x", "url": "javascript:1"}],
            "language_info": {"nbconvert_exporter": "a.b"},
        },
        policy="trusted",
    )
    assert info["help_links"] == [] and "nbconvert_exporter" not in info["language_info"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "stdout", "text": "javascript://%0Ax"}',
        b'{"name": "stdout", "text": "javascript:\\/\\/%0Ax"}',
        b'{"name": "stdout", "text": "javascript:\\u002f\\u002f%0Ax"}',
        b'{"name": "stdout", "text": "javascript\\u003a//%0Ax"}',
        b'{"name": "stdout", "text": "javascript\\u003A\\/\\u002F%0Ax"}',
        b'{"name": "stdout", "text": "java\\u001b[0mscript://%0Ax"}',
        b'{"name": "stdout", "text": "x", "text": "javascript://%0Ax"}',
        b'{"name": "stdout", "text": "x", "__proto__": {"trusted": true}, "text": "y"}',
        b'{"name": "stdout", "text": "x\\\\", "text": "javascript://%0Ax"}',
        b'{"name":"stderr","text":"javascript://%0Ax"}',
    ],
)
def test_the_stream_fast_path_never_passes_a_link_or_a_second_field(raw: bytes) -> None:
    flt = InboundFilter(OutputPolicy("safe"))
    out = flt.frames("iopub", [b"s", dumps({"msg_type": "stream", "msg_id": "1"}), b"{}", b"{}", raw])
    content = json.loads(out[4])
    assert set(content) == {"name", "text"}
    assert_links_inert(content["text"])
