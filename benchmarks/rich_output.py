"""In the browser: the time to render N Plotly figures (each with plotly.js inside, as offline
output must be) from a sandbox kernel, isolated (`safe` policy: one opaque-origin frame per output)
beside the same notebook under the `trusted` policy (the figures run on the Jupyter origin), in the
same run; and the page's memory (CDP Performance.getMetrics, JS heap) with the N frames.

Drives Debian's Chromium with Playwright against a real JupyterLab with this tree's labextension
build: run all cells, wait until every figure has drawn its points.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import start_server
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rich_output_support import FRAME, notebook, this_build

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]
FIGURE = (
    "import plotly.graph_objects as go\nfrom IPython.display import HTML, display\n"
    "fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[4, 1, 2], mode='markers'))\n"
    "fig.update_layout(width=400, height=260, margin={'l': 30, 'r': 10, 't': 10, 'b': 30})\n"
    "display(HTML(fig.to_html(include_plotlyjs=True, full_html=False)))"
)


def drawn(page: Page, framed: bool) -> int:
    """How many figures have drawn their points (inside their frames, or on the page)."""
    if not framed:
        return page.locator(".jp-OutputArea .scatterlayer .point").count() // 3
    return sum(1 for frame in page.frames[1:] if frame.locator(".scatterlayer .point").count() == 3)


def measure(policy: str, count: int, work: Path) -> tuple[float, float]:
    """(seconds to render `count` figures, page JS heap in MiB) under a policy."""
    root, config, settings, ext = (work / policy / name for name in ("root", "config", "lab", "ext"))
    for folder in (root, config, settings, ext):
        folder.mkdir(parents=True)
    (root / "figures.ipynb").write_text(json.dumps(notebook([FIGURE] * count, "sandbox")))
    (config / "jupyter_sandbox_config.json").write_text(
        json.dumps(
            {
                "SandboxKernel": {"output_policy": policy, "output_limit": "0"},
                "SandboxKernelApp": {"keep_notebook_sandboxes": False},
                "SandboxManager": {"warm_pool_size": 0},
            }
        )
    )
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    os.environ["JUPYTER_CONFIG_DIR"] = str(config)
    process, port, token = start_server(
        root,
        [
            *this_build(ext),
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={settings}",
            "--LabApp.expose_app_in_browser=True",
            "--SandboxManager.warm_pool_size=0",
        ],
        module="jupyterlab",
        timeout=120,
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/figures.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(timeout=300_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")  # starts the sandbox
            page.locator(FRAME if policy == "safe" else ".scatterlayer").first.wait_for(
                state="attached", timeout=300_000
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
            page.wait_for_timeout(1000)
            started = time.perf_counter()
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            framed = policy == "safe"
            while drawn(page, framed) < count:
                if time.perf_counter() - started > 900:
                    raise RuntimeError(f"only {drawn(page, framed)} of {count} figures drew under {policy}")
                page.wait_for_timeout(100)
            elapsed = time.perf_counter() - started
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            browser.close()
        return elapsed, metrics.get("JSHeapUsedSize", 0) / 2**20
    finally:
        process.terminate()
        process.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        trusted, trusted_heap = measure("trusted", args.figures, Path(work))
        isolated, isolated_heap = measure("safe", args.figures, Path(work))
    print(f"{args.figures} Plotly figures (plotly.js inside each), sandbox kernel, in Chromium:")
    print(f"  trusted policy (baseline, on the Jupyter origin): {trusted:7.2f} s   JS heap {trusted_heap:7.1f} MiB")
    print(f"  isolated (safe policy, one frame per output):     {isolated:7.2f} s   JS heap {isolated_heap:7.1f} MiB")
    print(f"  isolated / trusted: {isolated / trusted:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
