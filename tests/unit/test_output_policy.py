"""The output policy (kernel/output_policy.py) on its own: what each of `safe`, `text` and `trusted`
lets through of a bundle, an output and an error the sandbox sends. (tests/unit/test_inbound.py checks
the same rules as the relay applies them, message by message; test_output_safety.py in a browser.)"""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_sandbox.kernel.output_policy import OutputPolicy, neutralise_links, neutralise_tex

HOSTILE_HTML = '<img src=x onerror="alert(1)"><script>alert(2)</script><a href="javascript:alert(3)">x</a><b>kept</b>'
RICH = {
    "text/plain": "plain",
    "text/html": HOSTILE_HTML,
    "text/markdown": "[x](javascript:alert(4)) **bold**",
    "image/png": "iVBORw0KGgo=",
    "image/svg+xml": '<svg><script>alert(5)</script><a xlink:href="javascript:alert(6)"><circle r="1"/></a></svg>',
    "application/javascript": "alert(7)",
    "text/latex": r"$\href{javascript:alert(8)}{x}$",
    "application/json": {"a": 1},
}


def scripts_in(value: Any) -> list[str]:
    text = str(value).lower()
    return [marker for marker in ("<script", "onerror", "javascript:", "\\href") if marker in text]


def test_safe_keeps_what_renders_inertly_and_drops_code() -> None:
    kept = OutputPolicy("safe").filter_bundle(RICH)
    assert "application/javascript" not in kept
    assert kept["image/png"] == RICH["image/png"]
    assert kept["application/json"] == {"a": 1}
    assert "<b>kept</b>" in kept["text/html"]
    # TeX keeps its text, but no command that MathJax would turn into a link.
    assert "\\href" not in kept["text/latex"] and "href" in kept["text/latex"]
    for mime, value in kept.items():
        if mime != "text/latex":
            assert not scripts_in(value), (mime, value)


def test_markdown_becomes_sanitised_html_and_never_replaces_html_that_was_sent() -> None:
    alone = OutputPolicy("safe").filter_bundle({"text/markdown": "# Title"})
    assert set(alone) == {"text/html"} and "<h1>Title</h1>" in alone["text/html"]
    both = OutputPolicy("safe").filter_bundle({"text/html": "<i>html</i>", "text/markdown": "*md*"})
    assert both["text/html"] == "<i>html</i>"


def test_text_keeps_plain_text_only() -> None:
    kept = OutputPolicy("text").filter_bundle(RICH)
    assert kept == {"text/plain": "plain"}
    # With nothing left, a note says what went, so the user knows output was there.
    note = OutputPolicy("text").filter_bundle({"text/html": "<b>x</b>", "image/png": "iVBOR"})
    assert note == {"text/plain": "[output removed by the sandbox's output policy: image/png, text/html]"}


def test_trusted_passes_everything_unchanged() -> None:
    policy = OutputPolicy("trusted")
    assert not policy.active
    assert policy.filter_bundle(RICH) is RICH
    assert policy.text("javascript:alert(1)") == "javascript:alert(1)"


@pytest.mark.parametrize("policy", ["", "Safe", "anything-goes", "none"])
def test_an_unknown_policy_is_refused_with_the_choices(policy: str) -> None:
    with pytest.raises(ValueError, match="output policy must be one of safe, text, trusted"):
        OutputPolicy(policy)


@pytest.mark.parametrize("bundle", ["nonsense", None, ["text/plain"], 42])
def test_a_bundle_that_is_not_one_becomes_a_note(bundle: Any) -> None:
    assert OutputPolicy("safe").filter_bundle(bundle) == {"text/plain": "[output removed: malformed]"}


@pytest.mark.parametrize(
    "value",
    [{"not": "text"}, 42, ["a", 1], None],
)
def test_values_of_the_wrong_type_are_dropped_not_passed(value: Any) -> None:
    for mime in ("text/plain", "text/html", "image/png", "image/svg+xml", "text/latex", "text/markdown"):
        kept = OutputPolicy("safe").filter_bundle({mime: value})
        # Dropped, and a note says so: never passed on as it came.
        assert kept == {"text/plain": f"[output removed by the sandbox's output policy: {mime}]"}


def test_a_widget_view_keeps_its_model_id_and_versions_only() -> None:
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0, "html": HOSTILE_HTML}
    kept = OutputPolicy("safe").filter_bundle({"application/vnd.jupyter.widget-view+json": view})
    assert kept["application/vnd.jupyter.widget-view+json"] == {
        "model_id": "abc",
        "version_major": 2,
        "version_minor": 0,
    }
    bad = OutputPolicy("safe").filter_bundle({"application/vnd.jupyter.widget-view+json": {"model_id": 7}})
    assert "application/vnd.jupyter.widget-view+json" not in bad


def test_outputs_as_an_output_widget_holds_them() -> None:
    policy = OutputPolicy("safe")
    stream = policy.filter_output({"output_type": "stream", "name": "stdout", "text": ["a ", "javascript://x"]})
    assert stream is not None and stream["name"] == "stdout" and "javascript://" not in stream["text"]
    assert policy.filter_output({"output_type": "stream", "name": "/etc/passwd", "text": "x"}) is None
    assert policy.filter_output({"output_type": "stream", "name": "stdout", "text": 5}) is None
    result = policy.filter_output(
        {"output_type": "execute_result", "execution_count": True, "data": {"text/html": HOSTILE_HTML}, "metadata": 3}
    )
    assert result is not None
    assert result["execution_count"] is None and result["metadata"] == {}
    assert not scripts_in(result["data"])
    for dropped in ({"output_type": "javascript"}, "text", None, {"output_type": "update_display_data"}):
        assert policy.filter_output(dropped) is None


def test_an_error_is_strings_only_and_its_links_are_inert() -> None:
    policy = OutputPolicy("safe")
    error = policy.filter_error({"ename": 3, "evalue": "see javascript://%0Aalert(1)", "traceback": ["ok", 5, None]})
    assert error["ename"] == "Error"
    assert "javascript://" not in str(error["evalue"])
    assert error["traceback"] == ["ok"]
    assert policy.filter_error({"traceback": "not a list"}) == {"ename": "Error", "evalue": "", "traceback": []}


@pytest.mark.parametrize(
    "text", ["javascript://%0Aalert(1)", "JavaScript://x", "\x1b[31mjava\x1b[0mscript://x", "vbscript://x"]
)
def test_text_never_autolinks_anything_but_http(text: str) -> None:
    assert "script://" not in neutralise_links(text).lower()


def test_http_links_and_plain_text_are_left_as_they_are() -> None:
    for text in ("see https://example.org/x", "no links here", "\x1b[32mgreen\x1b[0m"):
        assert neutralise_links(text) == text


def test_tex_commands_that_link_or_style_are_inert() -> None:
    for command in (r"\href{javascript:x}{y}", r"\url{javascript:x}", r"\style{color:red}{x}", r"\class{jp-x}{y}"):
        assert command.split("{")[0] not in neutralise_tex(command)
    assert neutralise_tex("x^2 + y^2") == "x^2 + y^2"
