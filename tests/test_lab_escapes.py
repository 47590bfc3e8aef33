"""An attacker in the sandbox against a real JupyterLab in Chromium: nothing the inner kernel sends, on
any channel, may run as the Jupyter user.

One JupyterLab, one sandbox kernel, many vectors. Each script vector, if it ever ran on the Jupyter
origin, would set a window global and use the user's XSRF token to open a terminal on the host and
write a file into the server's root, exactly what the attack this guards against did. The test runs
the cells as a user does, triggers the inspector and the completer, answers an input prompt, lets the
pager and set_next_input act, reloads the page (so JupyterLab asks the hostile kernel for its info
again), and then checks what the attacker wanted: the global is unset, no terminal was asked for or
exists, nothing was written through /api/contents or changed through /sandbox/api or /api/kernels,
no host file appeared, no `%sandbox` line was planted in the notebook, no link with a script URL exists.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, lab_args, start_jupyter_server
from playwright.sync_api import Browser, Locator, Page, Request, expect
from test_lab import notebook

from jupyter_sandbox.kernel.cells import split_cell
from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

# What every script vector would run: mark the page, then act as the user on the host.
ATTACK = (
    "window.__sandboxPwned=(window.__sandboxPwned||0)+1;"
    "var t=(document.cookie.match(/_xsrf=([^;]*)/)||[])[1]||'';"
    "fetch('/api/terminals',{method:'POST',headers:{'X-XSRFToken':t}});"
    "fetch('/api/contents/pwned.txt',{method:'PUT',headers:{'X-XSRFToken':t,'Content-Type':'application/json'},"
    "body:JSON.stringify({type:'file',format:'text',content:'pwned'})});"
)
RUN = f"eval(atob('{base64.b64encode(ATTACK.encode()).decode()}'))"
LINK = "javascript://%0Awindow.__sandboxPwned=1"
PLANTED = "%sandbox network allow 0.0.0.0/1 128.0.0.0/1"
FILE_NAMES = [
    "<img src=x onerror=window.__sandboxPwned=1>.txt",
    "<svg onload=window.__sandboxPwned=1>",
    '"><iframe srcdoc=x onload=window.__sandboxPwned=1>',
]

PRELUDE = f"R = {RUN!r}\nLINK = {LINK!r}\n"
CELLS = [
    # 0: iopub outputs, every renderer
    PRELUDE + "from IPython.display import HTML, SVG, Markdown, Latex, Javascript, IFrame, display\n"
    "vectors = [\n"
    "    '<script>' + R + '</script>', '<img src=x onerror=\"' + R + '\">', '<svg onload=\"' + R + '\"></svg>',\n"
    "    '<a href=\"javascript:' + R + '\">html-link</a>', '<iframe src=\"javascript:' + R + '\"></iframe>',\n"
    "    '<iframe srcdoc=\"<script>parent.' + R + '</script>\"></iframe>', '<details open ontoggle=\"' + R + '\">d</details>',\n"
    "    '<noscript><p title=\"</noscript><img src=x onerror=' + R + '>\">', '<svg><style><img src=x onerror=\"' + R + '\"></style></svg>',\n"
    "    '<math><mtext><table><mglyph><style><img src=x onerror=\"' + R + '\"></style></mglyph></table></mtext></math>',\n"
    "    '<form><math><mtext></form><form><mglyph><svg><mtext><style><path id=\"</style><img onerror=' + R + ' src>\">',\n"
    "    '<object data=\"javascript:' + R + '\"></object>', '<meta http-equiv=\"refresh\" content=\"0;url=javascript:' + R + '\">',\n"
    '    \'<div class="jp-Dialog" style="position:fixed;top:0">fake-dialog</div>\',\n'
    "]\n"
    "for v in vectors:\n    display(HTML(v))\n"
    "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"' + R + '\"><script>' + R + '</script>'\n"
    "            '<a href=\"javascript:' + R + '\"><circle r=\"4\"/></a></svg>'))\n"
    "display(Markdown('[md-link](javascript:' + R + ') <img src=x onerror=\"' + R + '\"> **md-bold**'))\n"
    "display(Latex(r'$\\href{javascript:window.__sandboxPwned=1}{latex-link}$ $\\style{position:fixed}{x}$'))\n"
    "display(Javascript(R))\n"
    "display(IFrame('javascript:' + R, 10, 10))\n"
    "display({'text/html': '<script>' + R + '</script>', 'application/x-made-up': R}, raw=True)\n"
    "handle = display(HTML('<b>before-update</b>'), display_id=True)\n"
    "handle.update(HTML('<img src=x onerror=\"' + R + '\">after-update'))\n"
    "print('outputs-done')",
    # 1: widgets
    PRELUDE + "import ipywidgets as w\nfrom IPython.display import HTML, Javascript, display\n"
    "html = w.HTML(value='<img src=x onerror=\"' + R + '\">html-widget')\n"
    "math = w.HTMLMath(value='<svg onload=\"' + R + '\"></svg>math-widget $\\\\href{javascript:window.__sandboxPwned=1}{m}$')\n"
    "slider = w.IntSlider(description='<img src=x onerror=\"' + R + '\">', description_allow_html=True)\n"
    "out = w.Output()\n"
    "with out:\n    display(HTML('<img src=x onerror=\"' + R + '\">in-output'))\n    display(Javascript(R))\n"
    "out2 = w.Output()\n"
    "out2.outputs = ({'output_type': 'display_data', 'metadata': {}, 'data': {\n"
    "    'text/html': '<img src=x onerror=\"' + R + '\">set-outputs', 'application/javascript': R}},)\n"
    "text = w.Text(value='<img src=x onerror=\"' + R + '\">')\ntarget = w.HTML(value='link-target')\n"
    "w.jsdlink((text, 'value'), (target, 'value'))\n"
    "display(w.VBox([html, math, slider, out, out2, text, target]))\n"
    "html.value = '<script>' + R + '</script><img src=x onerror=\"' + R + '\">html-updated'\n"
    "print('widgets-done')",
    # 2: text that JupyterLab auto-links, ANSI, a traceback
    PRELUDE + "print('text-link ' + LINK)\n"
    "print('\\x1b[31mjava\\x1b[0mscript://%0Awindow.__sandboxPwned=1 ansi-link')\n"
    "print('\\x1b]8;;' + LINK + '\\x1b\\\\osc-link\\x1b]8;;\\x1b\\\\')\n"
    "raise ValueError('traceback-link ' + LINK)",
    # 3: reply payloads: the pager, and a %sandbox line for the next cell
    PRELUDE + "from IPython.core import page\n"
    "page.page({'text/html': '<img src=x onerror=\"' + R + '\">paged-html', 'text/plain': 'paged ' + LINK})\n"
    f"get_ipython().set_next_input({PLANTED!r})\n"
    "print('payloads-done')",
    # 4: an input prompt
    PRELUDE + "answer = input('<img src=x onerror=\"' + R + '\">prompt: ')\nprint('answered', answer)",
    # 5: the kernel answers inspect, complete and kernel_info itself, and names files for the sidebar
    PRELUDE + "k = get_ipython().kernel\n"
    "def answer(msg_type, content):\n"
    "    def handler(stream, ident, parent):\n        k.session.send(stream, msg_type, content, parent, ident)\n"
    "    return handler\n"
    "bundle = {'text/html': '<img src=x onerror=\"' + R + '\">inspected-doc', 'application/javascript': R,\n"
    "          'text/plain': 'inspected-doc ' + LINK}\n"
    "k.shell_handlers['inspect_request'] = answer('inspect_reply', {'status': 'ok', 'found': True, 'data': bundle, 'metadata': {}})\n"
    "k.shell_handlers['complete_request'] = answer('complete_reply', {'status': 'ok', 'cursor_start': 0, 'cursor_end': 1,\n"
    f"    'matches': ['pwned_completion', {PLANTED!r}], 'metadata': {{}}}})\n"
    "k.shell_handlers['kernel_info_request'] = answer('kernel_info_reply', {'status': 'ok', 'protocol_version': '5.3',\n"
    "    'implementation': 'ipython', 'banner': 'hostile',\n"
    "    'language_info': {'name': 'python', 'file_extension': '.py', 'mimetype': 'text/x-python', 'nbconvert_exporter': 'planted.X'},\n"
    "    'help_links': [{'text': 'Hostile Help', 'url': 'javascript:' + R}, {'text': 'Python Reference', 'url': 'https://docs.python.org/3/'}]})\n"
    f"for name in {FILE_NAMES!r}:\n    open('/home/sandbox/' + name, 'w').write('x')\n"
    "print('handlers-armed')",
    # 6: where the inspector and the completer are asked
    "p",
]


@pytest.fixture(scope="module")
def lab(
    docker_backend: DockerBackend, sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("escapes-root")
    (root / "escapes.ipynb").write_text(json.dumps(notebook(CELLS)))
    # The kernel reads its own config: its sandbox goes with it, and no warm pool is kept.
    config = tmp_path_factory.mktemp("escapes-config")
    (config / "jupyter_sandbox_config.json").write_text(
        json.dumps({"SandboxKernelApp": {"keep_notebook_sandboxes": False}, "SandboxManager": {"warm_pool_size": 0}})
    )
    server, process = start_jupyter_server(
        root,
        # No save: any write under /api/contents is then the attacker's.
        lab_args(tmp_path_factory.mktemp("escapes-lab"), {"docmanager-extension/plugin": {"autosave": False}}),
        log=tmp_path_factory.mktemp("escapes-log") / "lab.log",
        module="jupyterlab",
        env={"NO_PROXY": "127.0.0.1,localhost", "JUPYTER_CONFIG_DIR": str(config)},
    )
    server.root = root  # type: ignore[attr-defined]
    yield server
    process.terminate()
    process.wait(timeout=60)
    # Should the kernel not have released it: this notebook's sandbox, and no other (the engine is shared).
    manager = SandboxManager(backend=docker_backend)
    workspace = binding.workspace_key(manager.owner, str((root / "escapes.ipynb").resolve()))
    for sandbox in manager.list(owner=manager.owner):
        if sandbox.workspace == workspace:
            manager.remove(sandbox)


def runs_on_host(source: str) -> bool:
    """Whether the relay would run part of this cell on the host (its own test, from cells.py)."""
    return any(segment.kind != "code" for segment in split_cell(source))


def cell(page: Page, index: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def run(page: Page, index: int, expected: str, timeout: float = 180_000) -> None:
    target = cell(page, index)
    target.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    expect(target.locator(".jp-Cell-outputArea")).to_contain_text(expected, timeout=timeout)


def not_pwned(page: Page) -> None:
    assert page.evaluate("window.__sandboxPwned") is None
    bad = page.evaluate("""() => [...document.querySelectorAll('a[href], area[href]')]
        .map(a => a.href).filter(h => /^\\s*(javascript|vbscript):/i.test(h))""")
    assert bad == []
    # The one frame allowed is the labextension's isolated one, with an opaque origin.
    unisolated = ".jp-OutputArea iframe:not(.jp-SandboxIsolatedOutput-frame)"
    assert page.locator(f".jp-OutputArea script, {unisolated}, .jp-OutputArea object").count() == 0
    flags = page.locator(".jp-OutputArea iframe").evaluate_all("fs => fs.map(f => f.getAttribute('sandbox'))")
    assert all(flag == "allow-scripts" for flag in flags), flags


def shown(area: Locator) -> str:
    """The text a user sees in an output area, inside its isolated frames too."""
    frames = area.locator("iframe.jp-SandboxIsolatedOutput-frame").all()
    return " ".join([area.inner_text(), *(f.content_frame.locator("body").inner_text() for f in frames)])


def expect_shown(page: Page, area: Locator, text: str, present: bool = True, timeout: float = 30_000) -> None:
    waited = 0.0
    while (text in shown(area)) != present:
        assert waited < timeout, (text, present, shown(area))
        page.wait_for_timeout(250)
        waited += 250


def test_nothing_the_sandbox_sends_runs_as_the_jupyter_user(lab: Server, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        if dialog.type == "beforeunload":  # JupyterLab's own "leave with unsaved changes?" on the reload
            dialog.accept()
            return
        dialogs.append(dialog.message)  # an alert/confirm/prompt would be the sandbox's
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(f"{lab.base}/lab/tree/escapes.ipynb?token={lab.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
    expect(
        page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"Python 3 \(sandbox\) \| Idle"))
    ).to_be_visible(timeout=180_000)

    run(page, 0, "outputs-done")
    outputs = cell(page, 0).locator(".jp-Cell-outputArea")
    expect(outputs).to_contain_text("md-bold")
    expect_shown(page, outputs, "after-update")
    expect_shown(page, outputs, "before-update", present=False)

    run(page, 1, "widgets-done")
    widgets = cell(page, 1).locator(".jp-Cell-outputArea")
    for text in ("html-updated", "math-widget", "in-output", "set-outputs", "link-target"):
        expect_shown(page, widgets, text)
    page.wait_for_timeout(1000)  # a jslink would copy the Text's value by now

    run(page, 2, "ValueError")
    for shown in ("text-link", "ansi-link", "osc-link", "traceback-link"):
        expect(cell(page, 2).locator(".jp-Cell-outputArea")).to_contain_text(shown)

    cells_before = page.locator(".jp-Notebook .jp-Cell").count()
    run(page, 3, "payloads-done")
    expect(cell(page, 3).locator(".jp-Cell-outputArea")).to_contain_text("paged-html")
    page.wait_for_timeout(500)
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells_before  # no cell was planted
    sources = page.evaluate("""() => [...document.querySelectorAll('.jp-Notebook .jp-Cell .cm-content')]
        .map(e => [...e.querySelectorAll('.cm-line')].map(l => l.textContent).join('\\n'))""")
    assert len(sources) == cells_before and not any(runs_on_host(source) for source in sources)

    target = cell(page, 4)
    target.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    stdin = target.locator(".jp-Stdin-input")
    expect(stdin).to_be_visible(timeout=60_000)
    expect(target.locator(".jp-Stdin-prompt")).to_contain_text("<img src=x onerror=")  # shown as text
    stdin.fill("bob")
    stdin.press("Enter")
    expect(target.locator(".jp-Cell-outputArea")).to_contain_text("answered bob", timeout=30_000)

    run(page, 5, "handlers-armed")
    # The inspector (Shift+Tab shows the tooltip) and the completer (Tab), asked as a user asks them.
    probe = cell(page, 6)
    probe.locator(".cm-content").click()
    page.keyboard.press("End")
    page.keyboard.press("Shift+Tab")
    expect(page.locator(".jp-Tooltip")).to_contain_text("inspected-doc", timeout=30_000)
    not_pwned(page)
    page.keyboard.press("Escape")
    probe.locator(".cm-content").click()
    page.keyboard.press("End")
    page.keyboard.press("Tab")
    expect(page.locator(".jp-Completer")).to_contain_text("pwned_completion", timeout=30_000)
    assert "%sandbox" not in page.locator(".jp-Completer").inner_text()
    page.keyboard.press("Escape")

    # The sidebar lists the sandbox's files by name, as text.
    page.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
    for name in FILE_NAMES:
        expect(page.locator(".jp-SandboxSidebar-file").filter(has_text=name)).to_have_count(1, timeout=30_000)
    not_pwned(page)

    # A reload: JupyterLab asks the (now hostile) kernel for its info and help links again.
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
    expect(
        page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"Python 3 \(sandbox\) \| Idle"))
    ).to_be_visible(timeout=60_000)
    page.locator(".lm-MenuBar-item").filter(has_text="Help").click()
    menu = page.locator(".lm-Menu").last
    expect(menu).to_contain_text("Python Reference", timeout=30_000)
    assert "Hostile Help" not in menu.inner_text()
    page.keyboard.press("Escape")
    not_pwned(page)
    page.wait_for_timeout(1000)
    context.close()

    # What the attacker wanted, checked where it would have happened.
    assert dialogs == []
    mutating = [(r.method, r.url) for r in requests if r.method not in ("GET", "HEAD", "OPTIONS")]
    for method, url in mutating:
        path = url.split("?")[0].split(lab.base, 1)[-1]
        if (method, path) == ("POST", "/api/contents/escapes.ipynb/checkpoints"):
            continue  # JupyterLab's own, when it opens a notebook without a checkpoint
        assert not path.startswith(("/api/terminals", "/api/contents", "/api/kernels", "/sandbox/api")), (method, url)
    assert not any("/api/terminals" in r.url and r.method == "POST" for r in requests)
    status, terminals = lab.request("GET", "/api/terminals")
    assert status == 200 and terminals == []
    assert not (Path(lab.root) / "pwned.txt").exists()  # type: ignore[attr-defined]
    saved = json.loads((Path(lab.root) / "escapes.ipynb").read_text())  # type: ignore[attr-defined]
    assert not any(runs_on_host("".join(c["source"])) for c in saved["cells"])
