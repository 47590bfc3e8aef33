"""Output from the sandbox is hostile: scripts never reach the browser, data still does."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from conftest import SandboxKernel, start_sandbox_kernel

from jupyter_sandbox.kernel.output_policy import OutputPolicy, sanitize_html, sanitize_svg

SVG_WITH_SCRIPT = ('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script>'
                   '<a href="javascript:alert(3)"><circle r="4" onclick="alert(4)"/></a>'
                   '<foreignObject><iframe src="https://evil.example"></iframe></foreignObject></svg>')


def bundles(run) -> list[dict]:
    return [o["content"]["data"] for o in run.outputs
            if o["msg_type"] in ("display_data", "execute_result", "update_display_data")]


def assert_no_script(text: str) -> None:
    lowered = text.lower()
    for needle in ("<script", "onerror", "onload", "onclick", "javascript:", "<iframe", "<form", "alert(2)"):
        assert needle not in lowered, (needle, text)


def test_javascript_output_is_dropped(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run("from IPython.display import Javascript, display\n"
                            "display(Javascript('window.pwned = 1'))")
    assert run.status == "ok"
    data = bundles(run)[0]
    assert "application/javascript" not in data
    assert "removed by the sandbox's output policy" in data["text/plain"] or data["text/plain"].startswith("<IPython")


@pytest.mark.parametrize("html", [
    "<b>bold</b><script>window.pwned = 1</script>",
    '<img src="x" onerror="window.pwned = 1">',
    '<a href="javascript:window.pwned = 1">click</a>',
    '<iframe src="https://evil.example"></iframe><form action="https://evil.example"><input name=a></form>',
    '<div style="position: fixed; top: 0">cover</div><svg onload="alert(1)"></svg>',
])
def test_hostile_html_is_neutralised(shared_kernel: SandboxKernel, html: str) -> None:
    run = shared_kernel.run(f"from IPython.display import HTML, display\ndisplay(HTML({html!r}))")
    assert run.status == "ok"
    shown = bundles(run)[0]["text/html"]
    assert_no_script(shown)
    assert "position" not in shown


def test_svg_with_script_is_neutralised(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run(f"from IPython.display import SVG, display\ndisplay(SVG({SVG_WITH_SCRIPT!r}))")
    assert run.status == "ok"
    svg = bundles(run)[0]["image/svg+xml"]
    assert_no_script(svg)
    assert "<circle" in svg


def test_markdown_javascript_link_is_neutralised(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run("from IPython.display import Markdown, display\n"
                            "display(Markdown('[click me](javascript:alert(1)) and <img src=x onerror=alert(1)> **bold**'))")
    data = bundles(run)[0]
    assert "text/markdown" not in data
    html = data["text/html"]
    assert "<a " not in html and "onerror" not in html  # the link stays text, the handler is gone
    assert "<strong>bold</strong>" in html


def test_good_output_still_arrives(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\n"
        "import pandas as pd\nfrom IPython.display import display, Latex\n"
        "display(Latex(r'$\\alpha$'))\npd.DataFrame({'a': [1, 2]})")
    assert run.status == "ok", run.error
    data = bundles(run)
    png = [d["image/png"] for d in data if "image/png" in d]
    assert png and base64.b64decode(png[0]).startswith(b"\x89PNG")
    assert any(d.get("text/latex") == r"$\alpha$" for d in data)
    table = [d["text/html"] for d in data if "text/html" in d][-1]
    assert "<table" in table and "<td>1</td>" in table


def test_widget_views_still_arrive_and_widget_html_is_sanitised(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run("import ipywidgets as w\n"
                            "s = w.IntSlider(value=3)\ndisplay(s)\n"
                            "h = w.HTML(value='<b>hi</b><img src=x onerror=\"window.pwned=1\">')\ndisplay(h)\n"
                            "h.value = '<script>window.pwned=2</script>ok'")
    assert run.status == "ok", run.error
    assert any("application/vnd.jupyter.widget-view+json" in d for d in bundles(run))
    opens = [o["content"] for o in run.of_type("comm_open")]
    html_state = [c["data"]["state"] for c in opens if c["data"]["state"].get("_model_name") == "HTMLModel"][0]
    assert "<b>hi</b>" in html_state["value"]
    assert_no_script(html_state["value"])
    updates = [o["content"]["data"] for o in run.of_type("comm_msg") if "value" in o["content"]["data"].get("state", {})]
    assert updates and all("<script" not in u["state"]["value"] for u in updates)


def test_text_policy_keeps_plain_text_only(sandbox_image: str, tmp_path: Path) -> None:
    kernel = start_sandbox_kernel(extra_argv=["--SandboxKernel.output_policy=text"], tmp_path=tmp_path)
    try:
        run = kernel.run("from IPython.display import HTML, display\ndisplay(HTML('<b>x</b>'))\n"
                         "import ipywidgets as w\nw.IntSlider()")
        assert run.status == "ok", run.error
        for data in bundles(run):
            assert set(data) == {"text/plain"}
        assert not run.of_type("comm_open")
    finally:
        kernel.shutdown()


def test_trusted_policy_passes_everything(sandbox_image: str, tmp_path: Path) -> None:
    kernel = start_sandbox_kernel(extra_argv=["--SandboxKernel.output_policy=trusted"], tmp_path=tmp_path)
    try:
        run = kernel.run("from IPython.display import HTML, Javascript, display\n"
                         "display(HTML('<script>x=1</script>'))\ndisplay(Javascript('x=2'))")
        data = bundles(run)
        assert data[0]["text/html"] == "<script>x=1</script>"
        assert data[1]["application/javascript"] == "x=2"
    finally:
        kernel.shutdown()


def test_policy_unit_behaviour() -> None:
    policy = OutputPolicy("safe")
    assert policy.filter_bundle({"application/vnd.unknown+json": {}}) == {
        "text/plain": "[output removed by the sandbox's output policy: application/vnd.unknown+json]"}
    assert policy.filter_bundle("nonsense") == {"text/plain": "[output removed: malformed]"}
    assert sanitize_html('<a href="https://example.org">x</a>') == \
        '<a href="https://example.org" rel="noopener noreferrer nofollow">x</a>'
    assert "xlink:href" not in sanitize_svg('<svg><use xlink:href="javascript:alert(1)"/></svg>')
    with pytest.raises(ValueError, match="output policy"):
        OutputPolicy("anything-goes")
