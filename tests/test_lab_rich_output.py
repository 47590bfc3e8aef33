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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import Server, lab_args, start_jupyter_server
from playwright.sync_api import Browser, Frame, Locator, Page, Request, expect
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


def open_notebook(page: Page, lab: Server, path: str, kernel: str) -> None:
    # A workspace of its own: the notebook alone in the page (no tab restored from another page).
    workspace = path.replace(".", "-").replace("/", "-")
    page.goto(f"{lab.base}/lab/workspaces/{workspace}/tree/{path}?reset&token={lab.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    expect(
        page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(re.escape(kernel) + r" \| Idle"))
    ).to_be_visible(timeout=180_000)


def run_all(page: Page, count: int, timeout: float = 240_000) -> None:
    """Run every cell (JupyterLab's own command) and wait until each has its count."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    prompts = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt")
    for index in range(count):
        expect(prompts.nth(index)).to_have_text(re.compile(r"\[\d+\]:"), timeout=timeout)


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


def check_rich_outputs(page: Page, framed: bool) -> dict[str, dict[str, float]]:
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
        box = area.bounding_box()
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
