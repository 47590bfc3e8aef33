"""What the sandbox's ipykernel says in its `kernel_info_reply`, known before the sandbox is up.

Front ends ask for kernel info the moment they connect, seconds before a cold sandbox answers. The
answer they get then is recorded in the notebook (language version) and decides what the front end
offers (subshells, the debugger, help links), so it must be what the inner kernel will say, not a
stand-in. It depends only on the image, so it is learnt once per image id from a sandbox's first
handshake and kept on the host (beside the other host-side state, never in a sandbox).

The reply comes from inside the sandbox and is hostile: only a fixed set of plain fields of bounded
size is kept (strings, http(s) help links), and an entry is written once per image id and never
replaced, so a sandbox that tampers with its kernel cannot rewrite what other kernels are told.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ..sandbox import secrets

log = logging.getLogger(__name__)

IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# Raised whenever sanitize() keeps other fields than before.
RECORD_VERSION = 2
VERSION_RE = re.compile(r"^[0-9A-Za-z.+_-]{1,40}$")
NAME_RE = re.compile(r"^[0-9A-Za-z._+/ -]{1,80}$")
FEATURE_RE = re.compile(r"^[a-z][a-z0-9 _-]{0,40}$")
MAX_BANNER = 4000
MAX_LINKS = 20
LANGUAGE_FIELDS = ("name", "version", "mimetype", "file_extension", "pygments_lexer", "nbconvert_exporter")


def _short(value: Any, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.match(value) else None


def sanitize(content: Any) -> dict[str, Any] | None:
    """The fields of a kernel_info_reply a front end relies on, checked; None if it is not one."""
    if not isinstance(content, dict) or content.get("status", "ok") != "ok":
        return None
    language = content.get("language_info")
    if not isinstance(language, dict):
        return None
    protocol = _short(content.get("protocol_version"), VERSION_RE)
    implementation = _short(content.get("implementation"), NAME_RE)
    if not (protocol and implementation and _short(language.get("name"), NAME_RE)):
        return None
    info: dict[str, Any] = {
        "status": "ok",
        "protocol_version": protocol,
        "implementation": implementation,
        "implementation_version": _short(content.get("implementation_version"), VERSION_RE) or "",
        "language_info": {
            key: language[key] for key in LANGUAGE_FIELDS if _short(language.get(key), NAME_RE) is not None
        },
        "banner": content["banner"][:MAX_BANNER] if isinstance(content.get("banner"), str) else "",
        "help_links": [],
    }
    mode = language.get("codemirror_mode")
    if isinstance(mode, str) and NAME_RE.match(mode):
        info["language_info"]["codemirror_mode"] = mode
    elif isinstance(mode, dict) and _short(mode.get("name"), NAME_RE):
        info["language_info"]["codemirror_mode"] = {
            "name": mode["name"],
            **(
                {"version": mode["version"]}
                if isinstance(mode.get("version"), int) and not isinstance(mode.get("version"), bool)
                else {}
            ),
        }
    links = content.get("help_links")
    for link in links[:MAX_LINKS] if isinstance(links, list) else []:
        if (
            isinstance(link, dict)
            and isinstance(link.get("text"), str)
            and isinstance(link.get("url"), str)
            and re.match(r"^https?://[^\s\"'<>\\]{1,500}$", link["url"])
        ):
            info["help_links"].append({"text": link["text"][:100], "url": link["url"]})
    features = content.get("supported_features")
    if isinstance(features, list):
        info["supported_features"] = [f for f in features[:20] if _short(f, FEATURE_RE)]
    if isinstance(content.get("debugger"), bool):
        info["debugger"] = content["debugger"]
    return info


def _path(image_id: str, language: str = "python") -> Path | None:
    if not IMAGE_ID_RE.match(image_id or "") or not re.fullmatch(r"[a-z]{1,20}", language):
        return None
    # Under the version of the rules that made it: a record written by other rules is not read. One
    # image may run kernels of several languages: each has its own record.
    suffix = "" if language == "python" else f"-{language}"
    return secrets.state_dir("kernel-info") / f"{RECORD_VERSION}-{image_id.split(':', 1)[1]}{suffix}.json"


def load(image_id: str, language: str = "python") -> dict[str, Any] | None:
    path = _path(image_id, language)
    if path is None:
        return None
    try:
        return sanitize(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def store(image_id: str, content: dict[str, Any], language: str = "python") -> None:
    """Record the first kernel info seen for an image (and language); an existing entry is kept."""
    path = _path(image_id, language)
    info = sanitize(content)
    if path is None or info is None or path.exists():
        return
    try:
        secrets.write_state(path, json.dumps(info).encode())
    except OSError as exc:
        log.warning("could not record the sandbox kernel's info for image %s: %s", image_id, exc)
