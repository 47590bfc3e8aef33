"""A notebook run and saved in JupyterLab (real Chromium, real JupyterLab, real sandbox) is what a
local ipykernel would have saved: valid nbformat (a refused %sandbox line's error output too), counts
1..N with %sandbox cells among them, the sandbox's Python version in its metadata."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import Server, lab_args, launch_chromium, start_jupyter_server
from playwright.sync_api import Page, expect, sync_playwright

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

CELLS = [
    "%sandbox config --memory 2g",
    "%sandbox bogus",
    "%sandbox status",
    "import sys\nprint(sys.version.split()[0])",
    "x = 2\n%sandbox help\nx",
]


@pytest.fixture(scope="module")
def lab(
    sandbox_image: str, docker_backend: DockerBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("lab-root")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    nb.metadata["kernelspec"] = {"name": "sandbox-python", "display_name": "Python 3 (sandbox)", "language": "python"}
    nbformat.write(nb, root / "saved.ipynb")
    server, process = start_jupyter_server(
        root,
        lab_args(tmp_path_factory.mktemp("lab")),
        log=tmp_path_factory.mktemp("lab-log") / "lab.log",
        module="jupyterlab",
        env={"NO_PROXY": "127.0.0.1,localhost"},
    )
    yield server, root
    process.terminate()
    process.wait(timeout=60)
    # The notebook's sandbox is kept for it after its kernel ends, as for a person's notebook: the
    # test removes it, with the server's note of the notebook.
    manager = SandboxManager(backend=docker_backend)
    prefix = str(root.resolve())
    for workspace, record in binding.notebooks().items():
        if str(record["path"]).startswith(prefix):
            for sandbox in manager.list(workspace=workspace):
                manager.remove(sandbox)
            binding.forget_notebook(workspace)


def run_cell(page: Page, index: int) -> None:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]:"), timeout=120_000)


def test_a_notebook_saved_in_lab_is_valid_and_counted_as_ipykernel_counts(lab: tuple[Server, Path]) -> None:
    server, root = lab
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{server.base}/lab/tree/saved.ipynb?token={server.token}")
            expect(
                page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"Python 3 \(sandbox\) \| Idle"))
            ).to_be_visible(timeout=120_000)
            for index in range(len(CELLS)):
                run_cell(page, index)
            page.locator(".jp-Notebook").first.click()
            page.keyboard.press("Control+s")
            expect(page.locator(".jp-mod-dirty")).to_have_count(0, timeout=30_000)
        finally:
            browser.close()
    saved = nbformat.read(root / "saved.ipynb", as_version=4)
    nbformat.validate(saved)  # raises on an invalid notebook, as JupyterLab's "Notebook JSON is invalid"
    saved.cells = [cell for cell in saved.cells if cell.source]  # Shift+Enter on the last cell adds one
    assert [cell.execution_count for cell in saved.cells] == [1, 2, 3, 4, 5]
    errors = [o for o in saved.cells[1].outputs if o.output_type == "error"]
    assert errors and set(errors[0]) == {"output_type", "ename", "evalue", "traceback"}
    assert "memory 2 GiB" in "".join(o.get("text", "") for o in saved.cells[2].outputs)
    version = "".join(o.get("text", "") for o in saved.cells[3].outputs).strip()
    assert saved.metadata["language_info"]["version"] == version
    results = [o for o in saved.cells[4].outputs if o.output_type == "execute_result"]
    assert results and results[0].execution_count == 5 and results[0].data["text/plain"] == "2"
