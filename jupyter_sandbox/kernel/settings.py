"""The proxy kernel's operator settings: `c.SandboxKernel.*` in jupyter_sandbox_config.py."""

from __future__ import annotations

import os

from traitlets import Bool, Enum, Float, Int, List, Unicode, Union
from traitlets.config import Configurable

from .output_policy import POLICIES
from .widgets import CORE_MODULES


class SandboxKernel(Configurable):
    """Limits and policies that the notebook user cannot exceed from a cell."""

    output_policy = Enum(
        POLICIES,
        default_value="safe",
        config=True,
        help=(
            "What sandbox output may reach the browser. 'safe': scripts and unknown MIME types are "
            "dropped, HTML/SVG/markdown are sanitised. 'text': plain text only. 'trusted': outputs and widget "
            "state pass unfiltered (only for sandboxes whose code you trust); under every policy the relay "
            "still checks every message's shape and keeps %sandbox lines out of text bound for the editor."
        ),
    )
    isolate_rich_output = Bool(
        True,
        config=True,
        help=(
            "Under the 'safe' policy, also send each output's original HTML, JavaScript and Markdown "
            "(beside the sanitised fallback, under application/vnd.jupyter-sandbox.isolated+json) for "
            "the labextension to render in an iframe with an opaque origin and no network, so charts "
            "and scripts work without reaching the Jupyter origin. Off: only the sanitised fallback."
        ),
    )
    widget_modules = List(
        Unicode(),
        default_value=list(CORE_MODULES),
        config=True,
        help=(
            "Widget modules whose models the sandbox may open in the browser (policy 'safe'). Default: "
            "ipywidgets' own, whose rendering the relay knows; add a module (e.g. 'jupyter-matplotlib') "
            "only if you trust how its front end renders state."
        ),
    )
    output_limit = Union(
        [Int(), Unicode()],
        default_value="10m",
        config=True,
        help=(
            "Most output one cell may send to the browser, e.g. '10m'. Beyond it output is dropped "
            "with one notice; 0 means no limit."
        ),
    )
    cell_timeout = Float(
        0.0,
        config=True,
        help=(
            "Seconds a cell may run before it is interrupted (0: no limit). `%sandbox config "
            "--cell-timeout` changes it for one kernel, up to max_cell_timeout."
        ),
    )
    interrupt_grace = Float(
        5.0,
        config=True,
        help=(
            "Seconds a timed-out cell gets to stop after the interrupt; then the Python process in "
            "the sandbox is restarted (files are kept)."
        ),
    )
    max_cell_timeout = Float(0.0, config=True, help=("Largest --cell-timeout a notebook may set (0: no maximum)."))
    allow_file_transfer = Bool(
        True, config=True, help=("Allow `%sandbox upload` and `%sandbox download` between the host and the sandbox.")
    )
    max_transfer_size = Union(
        [Int(), Unicode()],
        default_value="100m",
        config=True,
        help=("Largest file `%sandbox upload` / `download` moves, e.g. '100m'."),
    )
    allow_hidden_files = Bool(
        False, config=True, help=("Allow host paths with a component starting with '.' in uploads and downloads.")
    )
    downloads_folder = Unicode(
        "sandbox-downloads",
        config=True,
        help=(
            "Folder, inside host_root, that `%sandbox download` writes to (in a subfolder per sandbox). "
            "Its first part must not be a Python identifier, so that a kernel started in the notebook's "
            "folder cannot import what the sandbox handed over."
        ),
    )
    host_root = Unicode(
        config=True,
        help=(
            "Host folder that uploads come from and downloads go to; nothing outside it is reachable. "
            "Default: the folder the kernel starts in (the notebook's folder under Jupyter Server)."
        ),
    )

    def _host_root_default(self) -> str:
        return os.getcwd()
