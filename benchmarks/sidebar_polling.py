"""In the browser: how many requests a minute the Sandbox sidebar sends to /sandbox/api while it is
shown, while another left panel hides it, while the browser tab is hidden, and while the server
cannot be reached; this build beside a baseline build of the sidebar, in the same run.

Each build is served by a JupyterLab of its own (JUPYTER_PATH puts the build's folder first, so it
shadows the installed one). Chromium opens a notebook on the sandbox kernel, runs a cell, shows
the sidebar, and Playwright counts the sidebar's requests in each phase. Headless Chromium never
hides a page, so the hidden tab is what the browser reports for one: `document.hidden` true and a
`visibilitychange` event.

    python benchmarks/sidebar_polling.py --baseline /path/to/old/jupyter_sandbox/labextension
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from lab_first_result import CHROMIUM_ARGS, Lab, write_notebook
from playwright.sync_api import Page, Request, expect, sync_playwright

from jupyter_sandbox.sandbox.manager import SandboxManager

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "jupyter_sandbox" / "labextension"
INSTALLED = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyter-sandbox"

HIDE_TAB = """() => {
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
  document.dispatchEvent(new Event('visibilitychange'));
}"""

SHOW_TAB = """() => {
  delete document.hidden;
  delete document.visibilityState;
  document.dispatchEvent(new Event('visibilitychange'));
}"""


class Counter:
    """Requests the page sends to the sandbox REST API (sent, whatever their answer)."""

    def __init__(self, page: Page) -> None:
        self.count = 0
        self.page = page
        page.on("request", self.seen)

    def seen(self, request: Request) -> None:
        if "/sandbox/api/" in request.url:
            self.count += 1

    def per_minute(self, seconds: float) -> float:
        before = self.count
        # Playwright's events arrive only while it runs: wait in it, not in time.sleep.
        self.page.wait_for_timeout(seconds * 1000)
        return (self.count - before) * 60 / seconds


def measure(build: Path, seconds: float, manager: SandboxManager) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root, jupyter_path = Path(folder, "root"), Path(folder, "jupyter")
        root.mkdir()
        (jupyter_path / "labextensions").mkdir(parents=True)
        (jupyter_path / "labextensions" / "jupyter-sandbox").symlink_to(build.resolve())
        write_notebook(root / "poll.ipynb", "sandbox-python")
        saved = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = str(jupyter_path)
        try:
            lab = Lab(root, 0)
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH")
            else:
                os.environ["JUPYTER_PATH"] = saved
        figures: dict[str, float] = {}
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                counter = Counter(page)
                page.goto(f"http://127.0.0.1:{lab.port}/lab/workspaces/poll/tree/poll.ipynb?token={lab.token}")
                expect(page.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"\| Idle"))).to_be_visible(
                    timeout=180_000
                )
                cell = page.locator(".jp-Notebook .jp-Cell").first
                cell.locator(".jp-InputPrompt").click()
                page.keyboard.press("Escape")
                page.keyboard.press("Shift+Enter")
                expect(cell.locator(".jp-OutputArea")).to_contain_text("42", timeout=180_000)
                page.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
                expect(page.locator(".jp-SandboxSidebar-header")).to_contain_text("is running", timeout=60_000)
                page.wait_for_timeout(3000)
                figures["shown"] = counter.per_minute(seconds)
                page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
                expect(page.locator("#jupyter-sandbox-sidebar")).to_be_hidden()
                figures["panel hidden"] = counter.per_minute(seconds)
                page.locator('.lm-TabBar-tab[data-id="jupyter-sandbox-sidebar"]').click()
                expect(page.locator("#jupyter-sandbox-sidebar")).to_be_visible()
                page.evaluate(HIDE_TAB)
                figures["tab hidden"] = counter.per_minute(seconds)
                page.evaluate(SHOW_TAB)
                page.wait_for_timeout(3000)
                # The server goes away with the sidebar shown: every lookup fails from here on.
                lab.stop()
                figures["server gone"] = counter.per_minute(2 * seconds)
                browser.close()
        finally:
            if lab.process.poll() is None:
                lab.stop()
            for sandbox in manager.list(owner=manager.owner):
                if sandbox.workspace or sandbox.kernel_id:
                    manager.remove(sandbox)
    return figures


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, default=INSTALLED, help="a built labextension folder to compare")
    parser.add_argument("--build", type=Path, default=OURS, help="the built labextension folder to measure")
    parser.add_argument("--seconds", type=float, default=30, help="length of each phase")
    args = parser.parse_args()
    manager = SandboxManager()
    if args.baseline.resolve() == args.build.resolve():
        print("note: the baseline is this build itself; pass --baseline with an older build to compare")
    baseline = measure(args.baseline, args.seconds, manager)
    ours = measure(args.build, args.seconds, manager)
    print(f"requests a minute from the Sandbox sidebar to /sandbox/api ({args.seconds:.0f} s a phase)")
    print(f"  {'':24}{'this build':>12}{'baseline':>12}")
    for phase in ours:
        print(f"  {phase:24}{ours[phase]:12.1f}{baseline[phase]:12.1f}")
    return {f"sidebar_requests_per_min_{k.replace(' ', '_')}": v for k, v in ours.items()}


if __name__ == "__main__":
    main()
