"""In the browser: from opening a notebook to its first cell's result, cold and with the warm pool,
beside the same notebook on a local ipykernel; and the size of the labextension's bundle beside
another prebuilt extension in the same environment.

Drives Debian's Chromium with Playwright against a real JupyterLab, as a user would: open the
notebook's URL, wait for the notebook, press Shift+Enter on the first cell, wait for "42".
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import start_server
from playwright.sync_api import Page, expect, sync_playwright

from jupyter_sandbox.sandbox.manager import SandboxManager

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]


def write_notebook(path: Path, kernel: str) -> None:
    display = "Python 3 (sandbox)" if kernel == "sandbox-python" else "Python 3"
    path.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "execution_count": None,
                        "id": "first",
                        "metadata": {},
                        "outputs": [],
                        "source": "print(6 * 7)",
                    }
                ],
                "metadata": {"kernelspec": {"name": kernel, "display_name": display, "language": "python"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )


class Lab:
    def __init__(self, root: Path, pool: int) -> None:
        self.root = root
        settings = Path(tempfile.mkdtemp()) / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        self.process, self.port, self.token = start_server(
            root,
            [
                f"--LabApp.user_settings_dir={settings.parent.parent}",
                f"--SandboxManager.warm_pool_size={pool}",
                "--SandboxService.pool_interval=1",
            ],
            module="jupyterlab",
            timeout=90,
        )

    def close_all_sessions(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        base = f"http://127.0.0.1:{self.port}/api/sessions"
        sessions = json.loads(opener.open(f"{base}?token={self.token}").read())
        for session in sessions:
            opener.open(urllib.request.Request(f"{base}/{session['id']}?token={self.token}", method="DELETE"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def first_result(page: Page, lab: Lab, name: str) -> float:
    started = time.perf_counter()
    # A workspace of its own: nothing of the previous run is restored next to it.
    page.goto(f"http://127.0.0.1:{lab.port}/lab/workspaces/{name.replace('.', '-')}/tree/{name}?token={lab.token}")
    cell = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").first
    # As a user does: wait until the status bar shows the kernel idle, then run the cell.
    expect(page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"\| Idle"))).to_be_visible(timeout=180_000)
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-OutputArea")).to_contain_text("42", timeout=180_000)
    return time.perf_counter() - started


def measure(page: Page, kernel: str, pool: int, repeat: int, manager: SandboxManager) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        lab = Lab(root, pool)
        times = []
        try:
            for index in range(repeat + 1):  # the first run warms the browser's cache; not counted
                name = f"{kernel}-{index}.ipynb"
                write_notebook(root / name, kernel)
                if pool:
                    deadline = time.monotonic() + 120
                    while len(manager.pool_sandboxes()) < pool and time.monotonic() < deadline:
                        time.sleep(0.2)
                elapsed = first_result(page, lab, name)
                if index:
                    times.append(elapsed)
                lab.close_all_sessions()
                page.goto("about:blank")
        finally:
            lab.stop()
            for sandbox in manager.list(owner=manager.owner):
                if sandbox.workspace or sandbox.pool:
                    manager.remove(sandbox)
    return times


def bundle_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.js"))


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    manager = SandboxManager()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        local = measure(page, "python3", 0, args.repeat, manager)
        cold = measure(page, "sandbox-python", 0, args.repeat, manager)
        warm = measure(page, "sandbox-python", 1, args.repeat, manager)
        browser.close()
    ours = bundle_size(ROOT / "jupyter_sandbox" / "labextension" / "static")
    widgets = bundle_size(
        Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter-widgets" / "jupyterlab-manager" / "static"
    )
    print(f"opening a notebook to its first cell's result in Chromium, median of {args.repeat}")
    print(f"  local ipykernel            {statistics.median(local):6.2f} s")
    print(f"  sandbox, cold              {statistics.median(cold):6.2f} s")
    print(
        f"  sandbox, warm pool         {statistics.median(warm):6.2f} s   "
        f"(warm - local = {statistics.median(warm) - statistics.median(local):+.2f} s)"
    )
    print(
        f"labextension bundle (all .js): {ours / 1024:.0f} KiB; "
        f"baseline, @jupyter-widgets/jupyterlab-manager: {widgets / 1024:.0f} KiB"
    )
    return {"lab_cold_s": statistics.median(cold), "lab_warm_s": statistics.median(warm)}


if __name__ == "__main__":
    main()
