"""Which kernel a sandbox runs: ipykernel for Python, or the kernel an image names for another language.

An image offers a kernel besides ipykernel with a label, io.jupyter-sandbox.kernels, mapping a
language to the argv that starts it inside the container ({connection_file} stands for the
connection file the agent writes). `jupyter sandbox image build --lang node` sets it for Deno's
Jupyter kernel. The argv only ever runs inside the sandbox, as the sandbox user (the agent starts it
in place of ipykernel); the host never runs it. It is checked for shape so a malformed label is an
error that names the image, not a kernel that never answers.
"""

from __future__ import annotations

import json
from typing import Any

from .spec import LABEL_KERNELS, LANGUAGES, SpecError

CONNECTION_FILE = "{connection_file}"
MAX_ARGS = 32
MAX_ARG_LENGTH = 512


def check_language(value: Any) -> str:
    """A language name a sandbox can be created for."""
    if not isinstance(value, str) or value not in LANGUAGES:
        shown = repr(value) if isinstance(value, str) else f"a {type(value).__name__}"
        raise SpecError(f"language: {shown} is not supported; choose one of {', '.join(LANGUAGES)}")
    return value


def image_kernels(labels: dict[str, str] | None) -> dict[str, list[str]]:
    """The kernels an image's labels offer, keeping only well-formed entries."""
    try:
        offered = json.loads((labels or {}).get(LABEL_KERNELS) or "{}")
    except ValueError:
        return {}
    if not isinstance(offered, dict):
        return {}
    kernels: dict[str, list[str]] = {}
    for language, argv in offered.items():
        if (
            language in LANGUAGES
            and isinstance(argv, list)
            and 0 < len(argv) <= MAX_ARGS
            and all(isinstance(a, str) and 0 < len(a) <= MAX_ARG_LENGTH and "\0" not in a for a in argv)
            and argv[0].startswith("/")
            and CONNECTION_FILE in argv
        ):
            kernels[language] = list(argv)
    return kernels


def kernel_argv(labels: dict[str, str] | None, language: str, image: str) -> list[str] | None:
    """None for Python (the agent starts ipykernel with its own interpreter); else the image's argv
    for `language`, or a SpecError (bad input: the caller chose them) that says which image to use."""
    if language == "python":
        return None
    argv = image_kernels(labels).get(language)
    if argv is None:
        raise SpecError(
            f"the image {image!r} has no {language} kernel; use an image built with "
            "`jupyter sandbox image build --lang node` (or one built FROM it)"
        )
    return argv
