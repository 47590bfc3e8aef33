"""A notebook's sandbox follows the notebook through what a JupyterLab user does to its file, in real
JupyterLab in Chromium: a new notebook renamed on its first save, a rename while it runs, a move to a
folder, Duplicate, Delete and a new notebook under the same name, with a server restart between
steps. Judged by files: each notebook writes a marker in its sandbox and lists the markers it sees."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RestartableServer, Server, lab_args, wait_until
from playwright.sync_api import Browser, Page, expect
from test_notebook_identity import LIST_HOME
from test_persistence import sandbox_id_of

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager
from jupyter_sandbox.sandbox.spec import LABEL_ID

IDLE = re.compile(r"Python 3 \(sandbox\) \| Idle")


@pytest.fixture
def lab(sandbox_image: str, docker_backend: DockerBackend, tmp_path: Path) -> Iterator[RestartableServer]:
    root = tmp_path / "root"
    (root / "reports").mkdir(parents=True)
    lab = RestartableServer(
        root,
        # Every cell rendered at once, so the test sees a reopened notebook's cells as they are.
        lab_args(tmp_path / "lab", {"notebook-extension/tracker": {"windowingMode": "none"}}),
        log=tmp_path / "lab.log",
        module="jupyterlab",
        env={"NO_PROXY": "127.0.0.1,localhost"},
    )
    lab.start()
    yield lab
    lab.stop()
    manager = SandboxManager(backend=docker_backend)
    prefix = str(root.resolve())
    for workspace, record in binding.notebooks().items():
        if str(record["path"]).startswith(prefix):
            for sandbox in manager.list(workspace=workspace):
                manager.remove(sandbox)
            binding.forget_notebook(workspace)


def open_lab(browser: Browser, server: Server, path: str = "", root: Path | None = None) -> Page:
    """A fresh browser tab on JupyterLab (at the notebook `path` under `root`, shown whole, with its
    kernel idle)."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    # A JupyterLab workspace of its own each time: no tabs of an earlier visit are restored.
    where = f"/lab/workspaces/visit-{secrets.token_hex(4)}" + (f"/tree/{path}" if path else "")
    page.goto(f"{server.base}{where}?token={server.token}")
    if path:
        assert root is not None
        wait_for_kernel(page)
        # Until the file's cells are all there, JupyterLab may still replace the first one it shows.
        saved = len(json.loads((root / path).read_text())["cells"])
        expect(page.locator(".jp-NotebookPanel:visible .jp-Cell")).to_have_count(max(saved, 1), timeout=60_000)
    else:
        expect(page.locator(".jp-Launcher").first).to_be_visible(timeout=90_000)
    return page


def wait_for_kernel(page: Page) -> None:
    expect(page.locator(".jp-NotebookPanel:visible .jp-Cell").first).to_be_visible(timeout=90_000)
    expect(page.locator(".jp-StatusBar-Widget").filter(has_text=IDLE)).to_be_visible(timeout=120_000)


def new_notebook(page: Page) -> None:
    """The launcher's "Python 3 (sandbox)" notebook card, in the file browser's folder."""
    dismiss_lab_notices(page)
    page.locator('.jp-LauncherCard[data-category="Notebook"][title="Python 3 (sandbox)"]').first.click()
    wait_for_kernel(page)


def run_code(page: Page, code: str) -> str:
    """Type code into a new cell at the end of the visible notebook, run it, return its output."""
    dismiss_lab_notices(page)
    notebook = page.locator(".jp-NotebookPanel:visible")
    cells = notebook.locator(".jp-Cell")
    expect(cells.last.locator(".cm-content")).to_be_visible(timeout=30_000)
    index = cells.count() - 1
    # By index: running the last cell adds another below, which `.last` would then mean.
    if cells.nth(index).locator(".cm-content").inner_text().strip():
        cells.nth(index).locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        expect(cells).to_have_count(index + 2)
        index += 1
    cell = cells.nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    # A new notebook's first cell can be replaced while its model settles, and a notice of
    # JupyterLab's own can take the keys: then the cell was never sent ("[ ]" stays). Only then is it
    # typed and run again, so no cell runs twice.
    for _attempt in range(3):
        dismiss_lab_notices(page)
        editor = cell.locator(".cm-content")
        if editor.inner_text().strip() != code.strip():
            editor.click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(code)
        else:
            editor.click()
        page.keyboard.press("Shift+Enter")
        try:
            expect(prompt).not_to_have_text(re.compile(r"^\[ \]"), timeout=15_000)
            break
        except AssertionError:
            continue
    dialogs = page.locator(".jp-Dialog")
    expect(prompt, f"notices on the page: {dialogs.all_inner_texts()}").to_have_text(
        re.compile(r"\[\d+\]"), timeout=120_000
    )
    return cell.locator(".jp-OutputArea").inner_text()


def markers(page: Page) -> tuple[list[str], str]:
    text = run_code(page, LIST_HOME)
    listed = next(line for line in text.splitlines() if line.startswith("markers: "))
    return json.loads(listed[len("markers: ") :]), sandbox_id_of(text)


def listing_item(page: Page, name: str):
    return page.locator(".jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$"))
    )


def context_menu(page: Page, name: str, command: str) -> None:
    """`command` is a regular expression for the menu item's label."""
    dismiss_lab_notices(page)
    listing_item(page, name).click(button="right")
    page.locator(".lm-Menu-item").filter(has_text=re.compile(rf"^(?:{command})")).first.click()


def save_first_time_as(page: Page, name: str) -> None:
    """Ctrl+S on an Untitled notebook: JupyterLab asks for a name."""
    page.locator(".jp-NotebookPanel:visible .jp-Cell").first.click()
    page.keyboard.press("Control+s")
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Rename file")
    field = dialog.locator("input[type='text'], input:not([type])").first
    field.fill(name)
    dialog.get_by_role("button", name="Rename and Save").click()
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(name, timeout=30_000)
    # JupyterLab's address bar still names the old file for a moment; its file browser may then ask
    # for it and say "Directory not found" (JupyterLab's own message, about the name that went).
    with contextlib.suppress(AssertionError):
        expect(page.locator(".jp-Dialog").filter(has_text="Directory not found")).to_be_visible(timeout=3_000)
    dismiss_lab_notices(page)
    expect(page.locator(".jp-Dialog")).to_have_count(0)


def dismiss_lab_notices(page: Page) -> None:
    """Close JupyterLab's own notices that say nothing of sandboxes: "Directory not found" for a file
    just renamed (above), and "Error Loading Theme" when a loaded machine serves its CSS slowly."""
    notices = page.locator(".jp-Dialog").filter(has_text=re.compile("Directory not found|Error Loading Theme"))
    while notices.count():
        notices.first.get_by_role("button").last.click()
        page.wait_for_timeout(200)


def close_page(page: Page) -> None:
    page.context.close()


# Five JupyterLab starts and a dozen notebooks opened in a browser: longer than one test usually takes.
@pytest.mark.timeout(1200)
def test_the_sandbox_follows_its_notebook_through_jupyterlab(
    lab: RestartableServer, browser: Browser, docker_backend: DockerBackend
) -> None:
    manager = SandboxManager(backend=docker_backend)
    root = lab.root

    # New notebook, a marker, then its first save: JupyterLab asks for a name.
    page = open_lab(browser, lab.server)
    new_notebook(page)
    run_code(page, "open('/home/sandbox/marker-tour', 'w').write('1'); print('written')")
    found, tour = markers(page)
    assert found == ["marker-tour"]
    save_first_time_as(page, "walkthrough.ipynb")
    assert (root / "walkthrough.ipynb").exists() and not (root / "Untitled.ipynb").exists()
    # The next new notebook (Untitled again) starts empty, with no word of another kernel.
    new_launcher(page)
    new_notebook(page)
    text = run_code(page, LIST_HOME)
    assert "in use by another kernel" not in text and '"marker-tour"' not in text, text
    assert sandbox_id_of(text) != tour
    close_page(page)

    # Server restart, then renamed while it runs.
    server = lab.restart()
    page = open_lab(browser, server, "walkthrough.ipynb", root)
    assert markers(page) == (["marker-tour"], tour)
    context_menu(page, "walkthrough.ipynb", "Rename")
    editor = page.locator(".jp-DirListing-editor")
    editor.fill("tour.ipynb")
    editor.press("Enter")
    expect(listing_item(page, "tour.ipynb")).to_be_visible(timeout=30_000)
    assert wait_until(lambda: manager.get(tour).workspace == key(root / "tour.ipynb"), 30)
    # The kernel that kept running deletes its sandbox: the next one is tour.ipynb's, empty.
    assert "deleted" in run_code(page, "%sandbox delete --yes")
    run_code(page, "open('/home/sandbox/marker-tour', 'w').write('2'); print('written')")
    found, tour = markers(page)
    assert found == ["marker-tour"] and manager.get(tour).workspace == key(root / "tour.ipynb")

    # Moved to a folder (Cut, then Paste in the folder), then a restart.
    context_menu(page, "tour.ipynb", "Cut")
    listing_item(page, "reports").dblclick()
    expect(page.locator(".jp-BreadCrumbs")).to_contain_text("reports")
    page.locator(".jp-DirListing-content").click(button="right", position={"x": 100, "y": 300})
    page.locator(".lm-Menu-item").filter(has_text=re.compile(r"^Paste")).first.click()
    expect(listing_item(page, "tour.ipynb")).to_be_visible(timeout=30_000)
    assert wait_until(lambda: (root / "reports" / "tour.ipynb").exists(), 30)
    assert wait_until(lambda: manager.get(tour).workspace == key(root / "reports" / "tour.ipynb"), 30)
    close_page(page)
    server = lab.restart()
    page = open_lab(browser, server, "reports/tour.ipynb", root)
    assert markers(page) == (["marker-tour"], tour)

    # Duplicate: the copy gets a sandbox of its own.
    context_menu(page, "tour.ipynb", "Duplicate")
    expect(listing_item(page, "tour-Copy1.ipynb")).to_be_visible(timeout=30_000)
    listing_item(page, "tour-Copy1.ipynb").dblclick()
    wait_for_kernel(page)
    found, copy_id = markers(page)
    assert found == [] and copy_id != tour
    close_page(page)

    # Delete (JupyterLab shuts its kernel down first), a restart, and a new notebook under the name.
    server = lab.restart()
    page = open_lab(browser, server, "reports/tour.ipynb", root)
    # "Move to Trash" where the server deletes to the trash (its default), else "Delete".
    context_menu(page, "tour.ipynb", "Delete|Move to Trash")
    page.locator(".jp-Dialog").get_by_role("button", name=re.compile("^(Delete|Move to Trash)$")).click()
    expect(listing_item(page, "tour.ipynb")).to_have_count(0, timeout=30_000)
    # At once, or at the server's next check when the kernel's shutdown was still under way.
    assert wait_until(lambda: not docker_backend.list_containers({LABEL_ID: tour}), 150)
    close_page(page)
    server = lab.restart()
    page = open_lab(browser, server)
    listing_item(page, "reports").dblclick()
    expect(page.locator(".jp-BreadCrumbs")).to_contain_text("reports")
    new_notebook(page)
    save_first_time_as(page, "tour.ipynb")
    found, sandbox_id = markers(page)
    assert found == [] and sandbox_id != tour
    close_page(page)


def key(path: Path) -> str:
    return binding.workspace_key(SandboxManager().owner, str(path.resolve()))


def new_launcher(page: Page) -> None:
    """A new Launcher tab, as the file browser's "+" button opens it."""
    dismiss_lab_notices(page)
    page.locator(
        '.jp-FileBrowser [data-command="launcher:create"], .jp-ToolbarButtonComponent[title="New Launcher"]'
    ).first.click()
    expect(page.locator(".jp-Launcher:visible")).to_be_visible(timeout=30_000)
