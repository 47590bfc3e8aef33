"""The JupyterLab sidebar in a real browser (Debian's Chromium, driven by Playwright) against a real
JupyterLab with real sandboxes: files, upload, editor, git, previews, terminal, output safety, and
screenshots of the sidebar in the light and dark themes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, git_http_server, lab_args, network_subnet, start_jupyter_server
from playwright.sync_api import Browser, Page, expect

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

NETWORK = "jupyter-sandbox-labtest"
GIT_USER, GIT_TOKEN = "bob", "lab-token-0123456789abcdef"

CELLS = [
    # 0: the git server sits on a private network, which the default egress policy blocks
    "%sandbox network allow {subnet}",
    # 1
    "open('/home/sandbox/hello.txt', 'w').write('hello from a cell\\n')\nprint('written')",
    # 2
    "print(open('/home/sandbox/uploaded.txt').read())",
    # 3
    "import subprocess, sys, time\n"
    "server = subprocess.Popen([sys.executable, '-m', 'http.server', '8123', '--directory', '/home/sandbox'],\n"
    "                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "time.sleep(1)\nprint('serving')",
    # 4
    "open('/home/sandbox/repo/notes.md', 'w').write('# notes\\n')\nprint('edited')",
    # 5
    "from IPython.display import HTML, Javascript, display\n"
    "display(HTML('<b>bold survives</b><script>window.__sandboxPwned = 1</script>'\n"
    '             \'<img src="x" onerror="window.__sandboxPwned2 = 1">\'))\n'
    "display(Javascript('window.__sandboxPwned3 = 1'))",
    # 6
    "print(open('/home/sandbox/from-terminal.txt').read())",
    # 7
    "import subprocess\n"
    "print(subprocess.run(['git', '-C', '/home/sandbox/repo', 'log', '--format=%s'], capture_output=True, text=True).stdout)",
    # 8
    "print(open('/home/sandbox/hello.txt').read())",
]


def notebook(cells: list[str]) -> dict:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"name": "sandbox-python", "display_name": "Python 3 (sandbox)", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def git_repo(docker_backend: DockerBackend, sandbox_image: str) -> Iterator[str]:
    with git_http_server(docker_backend, sandbox_image, NETWORK, GIT_USER, GIT_TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def lab(git_repo: str, docker_backend: DockerBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """JupyterLab as `make lab` runs it. Kernels and server share a config file that puts sandboxes on
    the test's network (so they can reach the git server by name)."""
    root = tmp_path_factory.mktemp("lab-root")
    config = tmp_path_factory.mktemp("lab-config")
    (config / "jupyter_sandbox_config.json").write_text(
        json.dumps(
            {
                # The git server is reached by its name, and DNS in allow mode is the operator's choice.
                "SandboxManager": {"network_name": NETWORK, "warm_pool_size": 0, "dns_in_allow_mode": True}
            }
        )
    )
    subnet = network_subnet(docker_backend, NETWORK)
    (root / "work").mkdir()
    cells = [CELLS[0].format(subnet=subnet), *CELLS[1:]]
    (root / "work" / "sidebar.ipynb").write_text(json.dumps(notebook(cells)))
    server, process = start_jupyter_server(
        root,
        lab_args(tmp_path_factory.mktemp("lab")),
        log=tmp_path_factory.mktemp("lab-log") / "lab.log",
        module="jupyterlab",
        env={"NO_PROXY": "127.0.0.1,localhost", "JUPYTER_CONFIG_DIR": str(config)},
    )
    yield server
    process.terminate()
    process.wait(timeout=60)
    manager = SandboxManager(backend=docker_backend, network_name=NETWORK)
    for sandbox in manager.list(owner=manager.owner):
        if sandbox.workspace or sandbox.kernel_id:
            manager.remove(sandbox)


@pytest.fixture(scope="module")
def page(browser: Browser, lab: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.goto(f"{lab.base}/lab/tree/work/sidebar.ipynb?token={lab.token}")
    opened.wait_for_selector(".jp-Notebook .jp-Cell:visible", timeout=90_000)
    # As a user does: run cells once the status bar shows the notebook's kernel connected and idle.
    expect(
        opened.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"Python 3 \(sandbox\) \| Idle"))
    ).to_be_visible(timeout=120_000)
    opened.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
    expect(opened.locator(".jp-SandboxSidebar-header")).to_be_visible()
    yield opened
    context.close()


def run_cell(page: Page, index: int, expected: str, timeout: float = 120_000) -> str:
    """Select cell `index` as a user does and run it with Shift+Enter; wait for `expected` in its output."""
    show_notebook(page)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea")
    expect(output).to_contain_text(expected, timeout=timeout)
    return output.inner_text()


def show_notebook(page: Page) -> None:
    if not page.locator(".jp-Notebook").first.is_visible():
        page.locator(".jp-MainAreaWidget ~ * .lm-TabBar-tab, .lm-DockPanel-tabBar .lm-TabBar-tab").filter(
            has_text="sidebar.ipynb"
        ).first.click()
        expect(page.locator(".jp-Notebook").first).to_be_visible()


def sidebar_file(page: Page, name: str):
    return page.locator(f'.jp-SandboxSidebar-file[data-name="{name}"]')


def test_lab_lists_the_extension_as_enabled() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"], capture_output=True, text=True, check=True
    )
    line = next(line for line in (listing.stdout + listing.stderr).splitlines() if "jupyter-sandbox" in line)
    assert "enabled" in line and "OK" in line


def test_a_file_written_by_a_cell_appears_and_opens_in_an_editor(page: Page, lab: Server) -> None:
    run_cell(page, 0, "allow")
    run_cell(page, 1, "written")
    expect(page.locator('.jp-SandboxSidebar [data-field="state"]')).to_contain_text("running", timeout=30_000)
    expect(sidebar_file(page, "hello.txt")).to_be_visible(timeout=30_000)
    # Open it in a JupyterLab editor tab, change it, save it: the sandbox has the new text.
    sidebar_file(page, "hello.txt").locator(".jp-SandboxSidebar-link").click()
    editor = page.locator(".jp-FileEditor .cm-content").last
    expect(editor).to_contain_text("hello from a cell", timeout=30_000)
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type("edited in the lab")
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1500)
    assert "edited in the lab" in run_cell(page, 8, "edited in the lab")


def test_upload_with_progress_then_read_from_a_cell(page: Page) -> None:
    page.set_input_files(
        'input[aria-label="Upload files"]',
        files=[{"name": "uploaded.txt", "mimeType": "text/plain", "buffer": b"uploaded from the browser"}],
    )
    expect(page.locator(".jp-SandboxSidebar-uploads")).to_contain_text("uploaded.txt")
    expect(page.locator(".jp-SandboxSidebar-uploads")).to_contain_text("done", timeout=30_000)
    expect(sidebar_file(page, "uploaded.txt")).to_be_visible(timeout=30_000)
    run_cell(page, 2, "uploaded from the browser")
    # Files dropped on the list are uploaded too.
    dropped = page.evaluate_handle("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(['dropped on the list'], 'dropped.txt', {type: 'text/plain'}));
        return transfer;
    }""")
    page.locator(".jp-SandboxSidebar-files").dispatch_event("drop", {"dataTransfer": dropped})
    expect(sidebar_file(page, "dropped.txt")).to_be_visible(timeout=30_000)
    assert "dropped on the list" in run_cell_text(page, "print(open('/home/sandbox/dropped.txt').read())")


def test_clone_and_commit_from_the_sidebar(page: Page, git_repo: str) -> None:
    page.locator('.jp-SandboxSidebar-section[data-section="git"] > summary').click()
    page.get_by_role("button", name="Clone…").click()
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_label("Repository URL").fill(git_repo)
    dialog.get_by_label("Username").fill(GIT_USER)
    dialog.get_by_label("Token or password").fill(GIT_TOKEN)
    dialog.get_by_role("button", name="Clone").click()
    expect(page.locator('.jp-SandboxSidebar [data-field="branch"]')).to_be_visible(timeout=60_000)
    run_cell(page, 4, "edited")
    # The file tree opens the clone in place.
    folder = sidebar_file(page, "repo").locator(".jp-SandboxSidebar-link")
    folder.click()
    expect(folder).to_have_attribute("aria-expanded", "true")
    expect(page.locator('.jp-SandboxSidebar-file[data-path="repo/notes.md"]')).to_be_visible(timeout=15_000)
    folder.click()
    expect(folder).to_have_attribute("aria-expanded", "false", timeout=15_000)
    expect(page.locator('.jp-SandboxSidebar-file[data-path="repo/notes.md"]')).to_have_count(0, timeout=15_000)
    page.get_by_label("Repository folder").press("Enter")
    expect(page.locator('.jp-SandboxSidebar-git li[data-path="notes.md"]')).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Stage all").click()
    expect(page.get_by_role("button", name="Commit")).to_be_enabled(timeout=30_000)
    page.get_by_label("Commit message").fill("Notes from the sidebar")
    page.get_by_role("button", name="Commit").click()
    # A first commit from this browser asks who is committing (remembered for the next ones).
    identity = page.locator(".jp-Dialog")
    expect(identity).to_contain_text("Your Git identity", timeout=30_000)
    identity.get_by_label("Name").fill("Sidebar Tester")
    identity.get_by_label("Email").fill("tester@example.org")
    identity.get_by_role("button", name="Save").click()
    expect(page.locator(".jp-Notification-Toast-success, .Toastify__toast").filter(has_text="Committed")).to_be_visible(
        timeout=30_000
    )
    assert "Notes from the sidebar" in run_cell(page, 7, "Notes from the sidebar")
    # Push, with the credentials asked for again (nothing was kept), then the server has the commit.
    page.get_by_role("button", name="Push…").click()
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_label("Username").fill(GIT_USER)
    dialog.get_by_label("Token or password").fill(GIT_TOKEN)
    dialog.get_by_role("button", name="Push").click()
    expect(page.locator(".Toastify__toast").filter(has_text="Pushed")).to_be_visible(timeout=60_000)
    # A push without credentials fails with git's reason, shown as a notification.
    page.get_by_role("button", name="Push…").click()
    dialog.get_by_role("button", name="Push").click()
    expect(page.locator(".Toastify__toast").filter(has_text="Pushing:")).to_be_visible(timeout=60_000)
    # Branches: create one and check it out.
    page.get_by_role("button", name="New branch…").click()
    page.locator(".jp-Dialog").get_by_label("Branch name").fill("feature")
    page.locator(".jp-Dialog").get_by_role("button", name="Create").click()
    page.get_by_role("button", name="Check out feature").click()
    expect(page.locator('.jp-SandboxSidebar [data-field="branch"]')).to_contain_text("feature", timeout=30_000)
    # The token was used for the clone only: it is nowhere in the repository's config.
    config = run_cell_text(page, "print(open('/home/sandbox/repo/.git/config').read())")
    assert GIT_TOKEN not in config


def run_cell_text(page: Page, code: str) -> str:
    """Run code in a new cell at the end (typed without auto-closing brackets getting in the way)."""
    show_notebook(page)
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.last.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    before = cells.count()
    page.keyboard.press("b")
    expect(cells).to_have_count(before + 1)
    new_cell = cells.nth(before)  # running it adds yet another cell below; this one stays put
    new_cell.locator(".cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    # Done when the prompt shows an execution count instead of "*".
    expect(new_cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=120_000)
    return new_cell.locator(".jp-OutputArea").inner_text()


def test_server_errors_become_notifications(page: Page) -> None:
    page.get_by_role("button", name="New folder").click()
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_label("Name").fill("hello.txt")  # a file of that name exists
    dialog.get_by_role("button", name="Create").click()
    toast = page.locator(".Toastify__toast").filter(has_text="New folder:")
    expect(toast).to_be_visible(timeout=15_000)
    assert "exists" in toast.inner_text().lower()


def test_search_rename_permissions_download_and_delete(page: Page) -> None:
    page.get_by_label("Search file names").fill("upload")
    page.get_by_label("Search file names").press("Enter")
    expect(page.get_by_label("Files found")).to_contain_text("uploaded.txt")
    page.get_by_label("Find text in files").fill("edited in the lab")
    page.get_by_label("Find text in files").press("Enter")
    expect(page.get_by_label("Text found")).to_contain_text("hello.txt:")

    page.get_by_label("Rename uploaded.txt").click()
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_label("New name").fill("renamed.txt")
    dialog.get_by_role("button", name="Rename").click()
    expect(sidebar_file(page, "renamed.txt")).to_be_visible(timeout=15_000)

    page.get_by_label("Permissions of renamed.txt").click()
    dialog.get_by_label("Mode (octal)").fill("600")
    dialog.get_by_role("button", name="Change").click()
    expect(sidebar_file(page, "renamed.txt").locator(".jp-SandboxSidebar-link")).to_have_attribute(
        "title", re.compile(r"rw-------"), timeout=15_000
    )

    with page.expect_download() as download:
        page.get_by_label("Download renamed.txt").click()
    assert Path(download.value.path()).read_bytes() == b"uploaded from the browser"

    page.get_by_label("Delete renamed.txt").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(sidebar_file(page, "renamed.txt")).to_have_count(0, timeout=15_000)


def test_preview_of_a_server_started_from_the_notebook(page: Page) -> None:
    run_cell(page, 3, "serving")
    button = page.get_by_role("button", name="Open preview of port 8123")
    expect(button).to_be_visible(timeout=30_000)
    with page.context.expect_page() as opened:
        button.click()
    preview = opened.value
    preview.wait_for_load_state()
    expect(preview.locator("body")).to_contain_text("hello.txt", timeout=30_000)
    assert ".localhost:" in preview.url and "token=" not in preview.url
    preview.close()


def test_terminal_runs_the_sandbox_shell(page: Page) -> None:
    page.get_by_role("button", name="Terminal").click()
    terminal = page.locator(".jp-SandboxTerminal .xterm")
    expect(terminal).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1500)  # the shell's prompt
    terminal.click()
    page.keyboard.type("echo terminal-was-here > ~/from-terminal.txt\n")
    page.wait_for_timeout(1000)
    expect(page.locator(".jp-SandboxTerminal .xterm-rows")).to_contain_text("terminal-was-here")
    run_cell(page, 6, "terminal-was-here")


def test_scripts_in_output_leave_no_trace(page: Page) -> None:
    show_notebook(page)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(5)
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    # The HTML is drawn, script and all, in a frame whose origin is opaque, never on the page itself.
    frame = cell.locator(".jp-OutputArea iframe").first
    expect(frame).to_have_attribute("sandbox", "allow-scripts", timeout=120_000)
    expect(frame.content_frame.locator("body")).to_contain_text("bold survives", timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.evaluate("[window.__sandboxPwned, window.__sandboxPwned2, window.__sandboxPwned3]") == [
        None,
        None,
        None,
    ]
    assert page.locator(".jp-OutputArea script").count() == 0


def test_the_sidebar_is_keyboard_reachable_and_labelled(page: Page) -> None:
    for label in ("Upload files", "Search file names", "Find text in files", "Refresh files"):
        expect(page.get_by_label(label).first).to_be_attached()
    page.get_by_label("Refresh files").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement && document.activeElement.textContent")
    assert focused  # the next control took the focus


def test_the_status_section_shows_the_homes_use_and_limit(page: Page) -> None:
    disk = page.locator('.jp-SandboxSidebar [data-field="disk"]')
    expect(disk).to_contain_text(re.compile(r"of 3\.0 GiB · \d+ of 196608 files"), timeout=30_000)
    run_cell_text(page, "open('/home/sandbox/forty.bin', 'wb').write(b'x' * (40 << 20)); import os; os.sync()")
    # The sidebar refreshes itself: what the cell wrote shows up in the used figure.
    expect(disk).to_contain_text(re.compile(r"^(4\d|[5-9]\d) MiB of 3\.0 GiB"), timeout=30_000)
    assert "enforced" in (disk.get_attribute("title") or "")
    run_cell_text(page, "os.remove('/home/sandbox/forty.bin')")


def test_stop_start_and_delete_from_the_status_section(page: Page) -> None:
    state = page.locator('.jp-SandboxSidebar [data-field="state"]')
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(state).to_contain_text("exited", timeout=30_000)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(state).to_contain_text("running", timeout=30_000)
    # Delete asks first; cancelling keeps everything.
    page.get_by_role("button", name="Delete…").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("cannot be undone")
    dialog.get_by_role("button", name="Cancel").click()
    expect(sidebar_file(page, "hello.txt")).to_be_visible()
    page.get_by_role("button", name="Delete…").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(".Toastify__toast").filter(has_text="was deleted")).to_be_visible(timeout=30_000)
    # The next cell gets a fresh sandbox: the old files are gone.
    assert "False" in run_cell_text(page, "import os; print(os.path.exists('/home/sandbox/hello.txt'))")
