"""The sidebar and the terminal as a newcomer meets them in JupyterLab (real Chromium, real sandboxes):
the terminal's size on open and after a resize, the state after Delete, upload rows, the message for a
folder that is not a repository and the commit identity, the port list, the notebook's name, whole
labels; and the screenshots in docs/screenshots/ (light and dark)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import lab_args, start_jupyter_server
from playwright.sync_api import Browser, Page, expect

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
NOTEBOOK = "polish.ipynb"
OTHER = "other.ipynb"


def notebook(cells: list[str]) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": c}
            for i, c in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"name": "sandbox-python", "display_name": "Python 3 (sandbox)", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def lab(sandbox_image: str, docker_backend: DockerBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("polish-root")
    (root / NOTEBOOK).write_text(json.dumps(notebook(["print('ready')"])))
    (root / OTHER).write_text(json.dumps(notebook(["print('other')"])))
    server, process = start_jupyter_server(
        root,
        lab_args(tmp_path_factory.mktemp("polish-lab")),
        log=tmp_path_factory.mktemp("polish-log") / "lab.log",
        module="jupyterlab",
        env={"NO_PROXY": "127.0.0.1,localhost"},
    )
    yield server
    process.terminate()
    process.wait(timeout=60)
    manager = SandboxManager(backend=docker_backend)
    for sandbox in manager.list(owner=manager.owner):
        record = binding.notebook_record(sandbox.workspace) if sandbox.workspace else None
        if record and str(record["path"]).startswith(str(root)):
            manager.remove(sandbox)


def wait_for_kernel(page: Page) -> None:
    expect(
        page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"Python 3 \(sandbox\) \| Idle"))
    ).to_be_visible(timeout=300_000)  # a first sandbox on a busy engine


@pytest.fixture(scope="module")
def page(browser: Browser, lab: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.goto(f"{lab.base}/lab/tree/{NOTEBOOK}?token={lab.token}")
    opened.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
    wait_for_kernel(opened)
    opened.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
    expect(opened.locator(".jp-SandboxSidebar-header")).to_be_visible()
    run_code(opened, "print('ready')", "ready")
    expect(state(opened)).to_contain_text("running", timeout=60_000)
    yield opened
    context.close()


def state(page: Page) -> Any:
    return page.locator('.jp-SandboxSidebar [data-field="state"]')


def show_notebook(page: Page, name: str = NOTEBOOK) -> None:
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab").filter(has_text=name).first.click()
    expect(page.locator(".jp-NotebookPanel:visible .jp-Notebook")).to_be_visible()


def run_code(page: Page, code: str, expected: str, timeout: float = 120_000) -> str:
    """Type `code` into the notebook's first cell and run it, as a person does."""
    show_notebook(page)
    cell = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").first
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea")
    expect(output).to_contain_text(expected, timeout=timeout)
    return output.inner_text()


def terminal_size(page: Page, terminal: Any) -> tuple[int, int]:
    terminal.click()
    marker = f"size-{page.evaluate('Date.now()')}"
    page.keyboard.type(f"echo {marker} $(stty size)\n")
    rows = page.locator(".jp-SandboxTerminal:visible .xterm-rows")
    expect(rows).to_contain_text(re.compile(rf"{marker} \d+ \d+"), timeout=30_000)
    found = re.findall(rf"{marker} (\d+) (\d+)", rows.inner_text())
    return int(found[-1][0]), int(found[-1][1])


def geometry(page: Page) -> dict:
    return page.evaluate(
        """() => {
        const widget = [...document.querySelectorAll('.jp-SandboxTerminal')].find(e => e.offsetParent);
        const screen = widget.querySelector('.xterm-screen').getBoundingClientRect();
        const row = widget.querySelector('.xterm-rows > div').getBoundingClientRect();
        const box = widget.getBoundingClientRect();
        return {width: box.width, height: box.height, screenW: screen.width, screenH: screen.height,
                rowH: row.height, rows: widget.querySelectorAll('.xterm-rows > div').length};
    }"""
    )


def test_the_notebook_name_and_whole_labels(page: Page) -> None:
    name = page.locator('.jp-SandboxSidebar [data-field="notebook"]')
    expect(name).to_have_text(NOTEBOOK)
    # Toolbar buttons are JupyterLab's, each label on one line and not cut.
    for label in ("Stop", "Restart", "Terminal", "Delete…"):
        button = page.get_by_role("button", name=label, exact=True)
        expect(button).to_have_class(re.compile("jp-ToolbarButtonComponent"))
        clipped = button.locator(".jp-ToolbarButtonComponent-label").evaluate(
            "e => e.scrollWidth > e.clientWidth + 1 || e.getClientRects().length > 1"
        )
        assert not clipped, label
    # The image name is on one line; the search boxes are wide enough for their placeholders.
    image = page.locator(".jp-SandboxSidebar-facts dd").nth(1)
    assert image.evaluate(
        "e => e.getClientRects().length === 1 && e.clientHeight < 2.5 * parseFloat(getComputedStyle(e).fontSize)"
    )
    for label in ("Search file names", "Find text in files"):
        fits = page.get_by_label(label).evaluate(
            """e => { const c = document.createElement('canvas').getContext('2d');
                      c.font = getComputedStyle(e).font;
                      return c.measureText(e.placeholder).width <= e.clientWidth; }"""
        )
        assert fits, label


def test_the_terminal_fits_its_tab_on_open_and_after_a_resize(page: Page) -> None:
    page.get_by_role("button", name="Terminal", exact=True).click()
    terminal = page.locator(".jp-SandboxTerminal:visible .xterm")
    expect(terminal).to_be_visible(timeout=30_000)
    rows, cols = terminal_size(page, terminal)
    shape = geometry(page)
    # Not xterm's 80x24 default: as many cells as the tab holds, the rows as tall as the font needs.
    assert (rows, cols) != (24, 80)
    assert shape["rows"] == rows
    assert shape["rowH"] >= 15, shape  # a 13 px font's line (descenders included)
    assert shape["screenH"] <= shape["height"] and shape["height"] - shape["screenH"] < 2 * shape["rowH"] + 8, shape
    assert shape["screenW"] <= shape["width"] and shape["width"] - shape["screenW"] < 40, shape

    page.set_viewport_size({"width": 1000, "height": 640})
    page.wait_for_timeout(500)
    smaller = terminal_size(page, terminal)
    assert smaller[0] < rows and smaller[1] < cols, (smaller, rows, cols)
    shape = geometry(page)
    assert shape["rows"] == smaller[0]
    assert shape["height"] - shape["screenH"] < 2 * shape["rowH"] + 8, shape
    page.set_viewport_size({"width": 1400, "height": 900})
    page.wait_for_timeout(500)
    assert terminal_size(page, terminal) == (rows, cols)
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab").filter(has_text="Sandbox").locator(
        ".lm-TabBar-tabCloseIcon"
    ).first.click()


def test_the_port_list_shows_only_what_the_user_started(page: Page) -> None:
    run_code(
        page,
        "import socket, subprocess, sys\n"
        "app = subprocess.Popen([sys.executable, '-m', 'http.server', '8123'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        # What the kernel's own machinery does (a debugger, a comm): a port the OS picks.
        "helper = socket.socket(); helper.bind(('127.0.0.1', 0)); helper.listen()\n"
        "import time; time.sleep(1); print('listening', helper.getsockname()[1])",
        "listening",
    )
    ports = page.locator('.jp-SandboxSidebar ul[aria-label="Listening ports"] li')
    expect(ports).to_have_count(1, timeout=30_000)
    expect(ports.first).to_contain_text("port 8123")
    run_code(page, "app.kill(); helper.close(); print('closed')", "closed")
    expect(ports).to_have_count(0, timeout=30_000)


def test_upload_rows_clear_themselves_and_stay_with_their_sandbox(page: Page, tmp_path: Path) -> None:
    upload = tmp_path / "greeting.txt"
    upload.write_text("hello")
    page.locator(".jp-SandboxSidebar input[type=file]").set_input_files(str(upload))
    rows = page.locator('.jp-SandboxSidebar ul[aria-label="Uploads"] li')
    expect(rows.filter(has_text="greeting.txt")).to_have_attribute("data-state", "done", timeout=30_000)
    # A finished row makes room by itself.
    expect(rows).to_have_count(0, timeout=10_000)
    # A failed one stays, saying so, until dismissed...
    run_code(page, "import os; os.makedirs('/home/sandbox/clash', exist_ok=True); print('made')", "made")
    clash = tmp_path / "clash"
    clash.write_text("x")
    page.locator(".jp-SandboxSidebar input[type=file]").set_input_files(str(clash))
    expect(rows.filter(has_text="clash")).to_have_attribute("data-state", "failed", timeout=30_000)
    page.wait_for_timeout(3500)
    expect(rows).to_have_count(1)
    # ...and never follows the person to another notebook's sandbox.
    page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
    page.locator(".jp-DirListing-item").filter(has_text=OTHER).dblclick()
    page.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
    expect(page.locator('.jp-SandboxSidebar [data-field="notebook"]')).to_have_text(OTHER, timeout=60_000)
    expect(rows).to_have_count(0)
    show_notebook(page)
    expect(page.locator('.jp-SandboxSidebar [data-field="notebook"]')).to_have_text(NOTEBOOK, timeout=30_000)
    expect(state(page)).to_contain_text("running", timeout=60_000)
    expect(rows).to_have_count(0)


def test_git_in_a_plain_folder_offers_init_and_clone_then_commits_as_the_person(page: Page) -> None:
    run_code(
        page,
        "import os; os.makedirs('/home/sandbox/plain', exist_ok=True); open('/home/sandbox/plain/a.txt','w').write('a'); print('ok')",
        "ok",
    )
    git = page.locator('.jp-SandboxSidebar-section[data-section="git"]')
    if not git.evaluate("e => e.open"):
        git.locator("> summary").click()
    folder = page.get_by_label("Repository folder")
    folder.fill("plain")
    folder.press("Enter")
    notice = git.locator('[data-field="not-a-repository"]')
    expect(notice).to_contain_text("~/plain is not a git repository.", timeout=30_000)
    assert "GIT_DISCOVERY_ACROSS_FILESYSTEM" not in git.inner_text()
    assert "filesystem boundary" not in git.inner_text()
    expect(notice.get_by_role("button", name="Clone…")).to_be_visible()
    notice.get_by_role("button", name="Initialise a repository").click()
    expect(git.locator('[data-field="branch"]')).to_be_visible(timeout=30_000)
    git.get_by_role("button", name="Stage all").click()
    expect(git.locator('[aria-label="Staged files"]')).to_contain_text("a.txt", timeout=30_000)
    git.get_by_label("Commit message").fill("First commit")
    git.get_by_role("button", name="Commit", exact=True).click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Your Git identity")
    dialog.get_by_label("Name").fill("Ada Lovelace")
    dialog.get_by_label("Email").fill("ada@example.org")
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator(".Toastify__toast").filter(has_text="Committed")).to_be_visible(timeout=30_000)
    expect(git.locator('[data-field="identity"]')).to_contain_text("Ada Lovelace <ada@example.org>")
    author = run_code(
        page,
        "import subprocess; print(subprocess.run(['git', '-C', '/home/sandbox/plain', 'log', '-1', '--format=%an <%ae>'], capture_output=True, text=True).stdout)",
        "<",
    )
    assert "Ada Lovelace <ada@example.org>" in author


def test_screenshots_light_and_dark(page: Page, lab: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sidebar = page.locator("#jupyter-sandbox-sidebar")
    git = page.locator('.jp-SandboxSidebar-section[data-section="git"]')
    if git.evaluate("e => e.open"):
        git.locator("> summary").click()  # folded for the picture
    page.wait_for_timeout(500)
    sidebar.screenshot(path=str(SCREENSHOTS / "sidebar-light.png"))
    status, _ = lab.request(
        "PUT",
        "/lab/api/settings/@jupyterlab/apputils-extension:themes",
        {"raw": json.dumps({"theme": "JupyterLab Dark"})},
        headers={"Content-Type": "application/json"},
    )
    assert status == 204
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
    show_notebook(page)  # the workspace brings back the other notebook too, maybe in front
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30_000)
    if not page.locator("#jupyter-sandbox-sidebar").is_visible():
        page.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
    expect(state(page)).to_contain_text("running", timeout=60_000)
    page.wait_for_timeout(1000)
    sidebar.screenshot(path=str(SCREENSHOTS / "sidebar-dark.png"))
    assert page.evaluate("getComputedStyle(document.querySelector('#jupyter-sandbox-sidebar')).backgroundColor") != (
        "rgb(255, 255, 255)"
    )
    lab.request(
        "PUT",
        "/lab/api/settings/@jupyterlab/apputils-extension:themes",
        {"raw": json.dumps({"theme": "JupyterLab Light"})},
        headers={"Content-Type": "application/json"},
    )


def test_after_delete_the_sidebar_shows_what_is_true(page: Page) -> None:
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
    show_notebook(page)  # the workspace brings back the other notebook too, maybe in front
    wait_for_kernel(page)
    if not page.locator("#jupyter-sandbox-sidebar").is_visible():
        page.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
    expect(state(page)).to_contain_text("running", timeout=60_000)
    old = page.locator(".jp-SandboxSidebar-header [role=status]").inner_text()
    page.get_by_role("button", name="Delete…", exact=True).click()
    page.locator(".jp-Dialog").get_by_role("button", name="Delete").click()
    status = page.locator(".jp-SandboxSidebar-header [role=status]")
    expect(status).to_contain_text("was deleted. The next cell you run starts a fresh one.", timeout=30_000)
    # Nothing starts, so nothing spins: still so a few refreshes later.
    page.wait_for_timeout(7000)
    expect(status).to_contain_text("was deleted")
    expect(page.locator(".jp-SandboxSidebar-header .jp-SandboxSidebar-spinner")).to_have_count(0)
    run_code(page, "print('fresh')", "fresh")
    expect(state(page)).to_contain_text("running", timeout=60_000)
    assert page.locator(".jp-SandboxSidebar-header [role=status]").inner_text() != old
