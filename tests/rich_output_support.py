"""What the rich-output tests and benchmark share: the notebooks (the same cells for a sandbox kernel
and a local ipykernel), JupyterLab's command line with this tree's labextension build, a listener
that records what reaches it, and how to find an output's content whether it is framed or not. No
pytest here, so that benchmarks/ can import it too."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "jupyter_sandbox" / "labextension"
ISOLATED_MIME = "application/vnd.jupyter-sandbox.isolated+json"
FRAME = "iframe.jp-SandboxIsolatedOutput-frame"

KERNELS = {
    "sandbox": {"name": "sandbox-python", "display_name": "Python 3 (sandbox)", "language": "python"},
    "local": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
}

# One output per cell, as a data scientist writes them; every library ships inside its output.
RICH_CELLS: list[tuple[str, str]] = [
    (
        "plotly",
        "import plotly.graph_objects as go\nfrom IPython.display import HTML, display\n"
        "fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[4, 1, 2], mode='markers', marker={'size': 24}, name='points'))\n"
        "fig.update_layout(width=520, height=340, margin={'l': 40, 'r': 10, 't': 10, 'b': 40})\n"
        "display(HTML(fig.to_html(include_plotlyjs=True, full_html=False)))",
    ),
    (
        "altair",
        "import altair as alt, pandas as pd\nalt.renderers.enable('html', template='inline')\n"
        "data = pd.DataFrame({'fruit': ['apple', 'pear', 'plum'], 'count': [3, 5, 2]})\n"
        "alt.Chart(data).mark_bar().encode(x='fruit', y='count').properties(width=300, height=160)",
    ),
    (
        "bokeh",
        "from bokeh.plotting import figure\nfrom bokeh.embed import file_html\nfrom bokeh.resources import INLINE\n"
        "from IPython.display import HTML\n"
        "p = figure(width=420, height=260, toolbar_location=None)\np.line([1, 2, 3, 4], [3, 1, 4, 2], line_width=3)\n"
        "HTML(file_html(p, INLINE, 'plot'))",
    ),
    (
        "iframe",
        "from IPython.display import IFrame\n"
        "IFrame('about:blank', 320, 60, extras=['srcdoc=\"&lt;b&gt;inner-frame-text&lt;/b&gt;\"'])",
    ),
    (
        "audio",
        "import math, struct, io, wave\nfrom IPython.display import Audio\nbuffer = io.BytesIO()\n"
        "with wave.open(buffer, 'wb') as w:\n"
        "    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)\n"
        "    w.writeframes(b''.join(struct.pack('<h', int(8000 * math.sin(i / 8000 * 440 * 2 * math.pi))) for i in range(8000)))\n"
        "Audio(buffer.getvalue())",
    ),
    (
        "styler",
        "import pandas as pd\n"
        "df = pd.DataFrame({'a': [1, 5, 3], 'b': [9, 2, 4]}, index=['x', 'y', 'z'])\n"
        "df.style.highlight_max(color='yellow').set_caption('styled-table')",
    ),
    (
        "markdown",
        "from IPython.display import Markdown\n"
        "Markdown('Math: $x_1 + y_1 = z_{i*j}*2$\\n\\n```python\\ndef double(x):\\n    return 2 * x\\n```\\n\\n"
        "- [x] done-item\\n- [ ] open-item\\n')",
    ),
    (
        "svg",
        "from IPython.display import SVG\n"
        'SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60">'
        '<rect width="120" height="60" fill="teal"/><circle cx="60" cy="30" r="20" fill="gold"/></svg>\')',
    ),
]


def notebook(cells: list[str], kernel: str) -> dict[str, Any]:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [],
                "source": s,
            }
            for i, s in enumerate(cells)
        ],
        "metadata": {"kernelspec": KERNELS[kernel]},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def this_build(folder: Path) -> list[str]:
    """JupyterLab's arguments that load this tree's labextension build ahead of an installed one."""
    assert (BUILD / "package.json").exists(), "build the labextension first: cd labextension && jlpm build:prod"
    (folder / "jupyter-sandbox").symlink_to(BUILD, target_is_directory=True)
    return [f"--LabApp.extra_labextensions_path={folder}"]


class Listener:
    """An HTTP server on loopback that records every request's path (what phoned home)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        seen = self.paths

        class Record(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Record)
        self.port = self.server.server_address[1]


@contextlib.contextmanager
def listening() -> Iterator[Listener]:
    listener = Listener()
    threading.Thread(target=listener.server.serve_forever, daemon=True).start()
    try:
        yield listener
    finally:
        listener.server.shutdown()
        listener.server.server_close()
