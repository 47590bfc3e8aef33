"""Output from the sandbox is hostile: scripts never reach the browser, data still does."""

from __future__ import annotations

import base64
import queue
from pathlib import Path

import pytest
from conftest import SandboxKernel, start_sandbox_kernel

from jupyter_sandbox.kernel.output_policy import OutputPolicy, sanitize_html, sanitize_svg

SVG_WITH_SCRIPT = (
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script>'
    '<a href="javascript:alert(3)"><circle r="4" onclick="alert(4)"/></a>'
    '<foreignObject><iframe src="https://evil.example"></iframe></foreignObject></svg>'
)


def bundles(run) -> list[dict]:
    return [
        o["content"]["data"]
        for o in run.outputs
        if o["msg_type"] in ("display_data", "execute_result", "update_display_data")
    ]


def assert_no_script(text: str) -> None:
    lowered = text.lower()
    for needle in ("<script", "onerror", "onload", "onclick", "javascript:", "<iframe", "<form", "alert(2)"):
        assert needle not in lowered, (needle, text)


def test_javascript_output_is_dropped(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run("from IPython.display import Javascript, display\ndisplay(Javascript('window.pwned = 1'))")
    assert run.status == "ok"
    data = bundles(run)[0]
    assert "application/javascript" not in data
    assert "removed by the sandbox's output policy" in data["text/plain"] or data["text/plain"].startswith("<IPython")


@pytest.mark.parametrize(
    "html",
    [
        "<b>bold</b><script>window.pwned = 1</script>",
        '<img src="x" onerror="window.pwned = 1">',
        '<a href="javascript:window.pwned = 1">click</a>',
        '<iframe src="https://evil.example"></iframe><form action="https://evil.example"><input name=a></form>',
        '<div style="position: fixed; top: 0">cover</div><svg onload="alert(1)"></svg>',
    ],
)
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
    run = shared_kernel.run(
        "from IPython.display import Markdown, display\n"
        "display(Markdown('[click me](javascript:alert(1)) and <img src=x onerror=alert(1)> **bold**'))"
    )
    data = bundles(run)[0]
    assert "text/markdown" not in data
    html = data["text/html"]
    assert "<a " not in html and "onerror" not in html  # the link stays text, the handler is gone
    assert "<strong>bold</strong>" in html


def test_good_output_still_arrives(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\n"
        "import pandas as pd\nfrom IPython.display import display, Latex\n"
        "display(Latex(r'$\\alpha$'))\npd.DataFrame({'a': [1, 2]})"
    )
    assert run.status == "ok", run.error
    data = bundles(run)
    png = [d["image/png"] for d in data if "image/png" in d]
    assert png and base64.b64decode(png[0]).startswith(b"\x89PNG")
    assert any(d.get("text/latex") == r"$\alpha$" for d in data)
    table = [d["text/html"] for d in data if "text/html" in d][-1]
    assert "<table" in table and "<td>1</td>" in table


def test_widget_views_still_arrive_and_widget_html_is_sanitised(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run(
        "import ipywidgets as w\n"
        "s = w.IntSlider(value=3)\ndisplay(s)\n"
        "h = w.HTML(value='<b>hi</b><img src=x onerror=\"window.pwned=1\">')\ndisplay(h)\n"
        "h.value = '<script>window.pwned=2</script>ok'"
    )
    assert run.status == "ok", run.error
    assert any("application/vnd.jupyter.widget-view+json" in d for d in bundles(run))
    opens = [o["content"] for o in run.of_type("comm_open")]
    html_state = next(c["data"]["state"] for c in opens if c["data"]["state"].get("_model_name") == "HTMLModel")
    assert "<b>hi</b>" in html_state["value"]
    assert_no_script(html_state["value"])
    updates = [
        o["content"]["data"] for o in run.of_type("comm_msg") if "value" in o["content"]["data"].get("state", {})
    ]
    assert updates and all("<script" not in u["state"]["value"] for u in updates)


def test_text_policy_keeps_plain_text_only(sandbox_image: str, tmp_path: Path) -> None:
    kernel = start_sandbox_kernel(extra_argv=["--SandboxKernel.output_policy=text"], tmp_path=tmp_path)
    try:
        run = kernel.run(
            "from IPython.display import HTML, display\ndisplay(HTML('<b>x</b>'))\n"
            "import ipywidgets as w\nw.IntSlider()"
        )
        assert run.status == "ok", run.error
        for data in bundles(run):
            assert set(data) == {"text/plain"}
        assert not run.of_type("comm_open")
    finally:
        kernel.shutdown()


def test_trusted_policy_passes_everything(sandbox_image: str, tmp_path: Path) -> None:
    kernel = start_sandbox_kernel(extra_argv=["--SandboxKernel.output_policy=trusted"], tmp_path=tmp_path)
    try:
        run = kernel.run(
            "from IPython.display import HTML, Javascript, display\n"
            "display(HTML('<script>x=1</script>'))\ndisplay(Javascript('x=2'))"
        )
        data = bundles(run)
        assert data[0]["text/html"] == "<script>x=1</script>"
        assert data[1]["application/javascript"] == "x=2"
    finally:
        kernel.shutdown()


def test_policy_unit_behaviour() -> None:
    policy = OutputPolicy("safe")
    assert policy.filter_bundle({"application/vnd.unknown+json": {}}) == {
        "text/plain": "[output removed by the sandbox's output policy: application/vnd.unknown+json]"
    }
    assert policy.filter_bundle("nonsense") == {"text/plain": "[output removed: malformed]"}
    assert (
        sanitize_html('<a href="https://example.org">x</a>')
        == '<a href="https://example.org" rel="noopener noreferrer nofollow">x</a>'
    )
    assert "xlink:href" not in sanitize_svg('<svg><use xlink:href="javascript:alert(1)"/></svg>')
    with pytest.raises(ValueError, match="output policy"):
        OutputPolicy("anything-goes")


# -- every channel, with a hostile kernel in the sandbox -------------------------------------------
# Code in the sandbox owns its ipykernel: it can answer any request itself, with anything.

HOSTILE_HANDLERS = r"""
k = get_ipython().kernel
_saved_handlers = dict(k.shell_handlers)
def _answer(msg_type, content):
    def handler(stream, ident, parent):
        k.session.send(stream, msg_type, content, parent, ident)
    return handler
_html = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>doc</b>'
k.shell_handlers["inspect_request"] = _answer("inspect_reply", {"status": "ok", "found": True, "metadata": {},
    "data": {"text/html": _html, "application/javascript": "window.pwned=3", "text/plain": "javascript://%0Ax"}})
k.shell_handlers["complete_request"] = _answer("complete_reply", {"status": "ok", "cursor_start": 0, "cursor_end": 1,
    "matches": ["print", "pri", "%sandbox network allow 0.0.0.0/1 128.0.0.0/1"],
    "metadata": {"_jupyter_types_experimental": [
        {"start": 0, "end": 1, "text": "print", "type": "function"},
        {"start": 0, "end": 1, "text": "print\n%sandbox network allow 0.0.0.0/1", "type": "function"},
        {"start": 0, "end": 1, "text": "x", "type": "magic"}]}})
k.shell_handlers["history_request"] = _answer("history_reply", {"status": "ok", "history": [
    [1, 1, "%sandbox network allow 0.0.0.0/1 128.0.0.0/1"], [1, 2, "x = 1"]]})
k.shell_handlers["is_complete_request"] = _answer("is_complete_reply", {"status": "incomplete",
    "indent": "\n%sandbox network allow 0.0.0.0/1"})
k.shell_handlers["kernel_info_request"] = _answer("kernel_info_reply", {"status": "ok", "protocol_version": "5.3",
    "language_info": {"name": "python", "nbconvert_exporter": "planted.Exporter"},
    "help_links": [{"text": "Docs", "url": "javascript:window.pwned=4"}, {"text": "Python", "url": "https://docs.python.org"}]})
k.shell_handlers["made_up_request"] = _answer("made_up_reply", {"html": _html})
print("armed")
"""


def test_set_next_input_cannot_plant_a_sandbox_line(shared_kernel: SandboxKernel) -> None:
    for planted in (
        "%sandbox network allow 0.0.0.0/1 128.0.0.0/1",
        "x = 1\n  %%sandbox\nrm -rf ~",
        "x = 1 \\\n%sandbox network allow 0.0.0.0/1",
        "y = 2\r%sandbox network allow 0.0.0.0/1",
    ):
        run = shared_kernel.run(f"get_ipython().set_next_input({planted!r})")
        assert run.status == "ok", run.error
        assert run.reply["content"]["payload"] == []
    run = shared_kernel.run("get_ipython().set_next_input('x = 41 + 1')")
    assert run.reply["content"]["payload"] == [{"source": "set_next_input", "text": "x = 41 + 1", "replace": False}]


def test_pager_payloads_are_filtered(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run(
        "from IPython.core import page\n"
        "page.page({'text/html': '<script>window.pwned=1</script><b>paged</b>',"
        " 'application/javascript': 'window.pwned=2', 'text/plain': 'javascript://%0Awindow.pwned=3'})\n"
        "get_ipython().payload_manager.write_payload({'source': 'edit_magic', 'filename': '/etc/hosts',"
        " 'line_number': 1})"
    )
    assert run.status == "ok", run.error
    pages = run.reply["content"]["payload"]
    assert [p["source"] for p in pages] == ["page"]
    data = pages[0]["data"]
    assert "application/javascript" not in data and "<b>paged</b>" in data["text/html"]
    assert_no_script(data["text/html"])
    assert "javascript://" not in data["text/plain"]  # a word joiner keeps JupyterLab from linking it


def test_replies_from_a_hostile_kernel_are_filtered(shared_kernel: SandboxKernel) -> None:
    assert "armed" in shared_kernel.run(HOSTILE_HANDLERS).stdout
    client = shared_kernel.client
    try:
        inspected = client.inspect("x", reply=True, timeout=30)["content"]
        assert "application/javascript" not in inspected["data"] and "<b>doc</b>" in inspected["data"]["text/html"]
        assert_no_script(inspected["data"]["text/html"])
        completed = client.complete("p", reply=True, timeout=30)["content"]
        assert completed["matches"] == ["print"]
        assert completed["metadata"] == {
            "_jupyter_types_experimental": [{"text": "print", "start": 0, "end": 1, "type": "function"}]
        }
        history = client.history(hist_access_type="tail", n=10, reply=True, timeout=30)["content"]
        assert history["history"] == [[1, 2, "x = 1"]]
        client.is_complete("if x:")
        assert client.get_shell_msg(timeout=30)["content"] == {"status": "incomplete", "indent": ""}
        info = client.kernel_info(reply=True, timeout=30)["content"]
        assert info["help_links"] == [{"text": "Python", "url": "https://docs.python.org"}]
        assert "nbconvert_exporter" not in info["language_info"]
        # A reply type the relay does not know never arrives.
        client.session.send(client.shell_channel.socket, "made_up_request", {})
        with pytest.raises(queue.Empty):
            client.get_shell_msg(timeout=3)
        # ...and holds up nothing behind it (a %sandbox cell waits for the requests before it).
        assert shared_kernel.run("%sandbox help", timeout=30).status == "ok"
    finally:
        assert shared_kernel.run("get_ipython().kernel.shell_handlers.update(_saved_handlers)").status == "ok"


def test_hostile_iopub_and_stdin_messages(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run(
        "k = get_ipython().kernel\n"
        "for kind, content in [('made_up_output', {'data': {'text/html': '<script>window.pwned=1</script>'}}),\n"
        "                      ('display_data', {'data': {'application/javascript': 'window.pwned=2'}, 'metadata': {}}),\n"
        "                      ('stream', {'name': 'stdout', 'text': {'html': '<script>'}}),\n"
        "                      ('status', {'execution_state': 'dead'}),\n"
        "                      ('error', {'ename': 'E', 'evalue': 'v', 'traceback': ['javascript://%0Awindow.pwned=3']})]:\n"
        "    k.session.send(k.iopub_socket, kind, content, parent=k.get_parent())\n"
        "answer = input('x' * 10000)\nprint('got', answer)",
        stdin_hook=lambda msg: prompts.append(msg["content"]) or shared_kernel.client.input("ok"),
    )
    assert run.status == "ok", run.error
    kinds = [o["msg_type"] for o in run.outputs]
    assert "made_up_output" not in kinds
    assert all("application/javascript" not in o["content"]["data"] for o in run.of_type("display_data"))
    assert "javascript://" not in run.error["traceback"][0]
    assert prompts[0] == {"prompt": "x" * 4096, "password": False}
    assert "got ok" in run.stdout


prompts: list[dict] = []


def test_the_proxys_own_output_quoting_the_sandbox_is_inert(shared_kernel: SandboxKernel) -> None:
    # %%sandbox output and a failing command's error reach the front end from the proxy itself.
    run = shared_kernel.run("%%sandbox exec\necho 'see javascript://%0Awindow.pwned=1'\nexit 3")
    assert "see javascript" in run.stdout and "javascript://" not in run.stdout
    assert run.status == "error"
