"""Every message from the inner kernel, on every channel, made inert before a front end sees it.

The sandbox's ipykernel is hostile: whatever it sends on shell, control, stdin or iopub reaches
JupyterLab, which renders it, puts it into the notebook or acts on it. This module is the one place
that decides what passes. It is a table, per channel and message type, of what the relay knows:

- a message type not in the table is dropped (default deny: a type a future ipykernel adds, or one
  made up, is not passed as something a front end might render);
- a known type is rebuilt from the fields the protocol defines, each checked for its type and
  bounded in size; fields that a front end renders go through the output policy (bundles, text
  that JupyterLab auto-links, TeX that MathJax typesets) or the widget filter (comm data);
- text a front end may put into the user's editor (set_next_input, completions, history, the
  indent of is_complete) never carries `%sandbox`: the proxy runs such lines on the host, with more
  reach than the sandbox has, so a line planted by the sandbox must never be one the user runs
  without having written it. Those payloads and entries are dropped whole, whatever the line breaks,
  indentation or continuation around the marker (the same test the relay uses to find magic lines);
- `language_info` is reduced to plain names (nbconvert loads an exporter by the name it gives, on
  the host), `help_links` to absolute http(s) URLs.

Header, parent header and metadata frames must be JSON objects; buffers pass only on comm messages.
Malformed input (wrong JSON, wrong types, too deep, too big) drops the message, never the relay.

The fast path stays fast: frames are decoded only as far as a decision needs, and a message that
passes unchanged keeps its original bytes (a stream without `://` in its text is one decode).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from typing import Any, Callable
from urllib.parse import urlsplit

from .cells import MARKER
from .messages import dumps
from .output_policy import OutputPolicy, as_text
from .widgets import CORE_MODULES, WidgetFilter

log = logging.getLogger(__name__)

MAX_CONTENT_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
MAX_SHORT = 4096
MAX_MATCHES = 10_000
MAX_HISTORY = 100_000
MAX_HELP_LINKS = 32
MAX_BUFFERS = 256
MAGIC_TEXT = MARKER.decode()
# JavaScript treats these keys specially when objects are copied; they never carry data.
FORBIDDEN_KEYS = frozenset({"__proto__", "constructor", "prototype"})
NAME_RE = re.compile(r"^[\w.+-]{1,64}$")
EXPORTER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # no dots: nbconvert would import a dotted name
MIMETYPE_RE = re.compile(r"^[\w.+-]{1,64}/[\w.+-]{1,64}$")
EXTENSION_RE = re.compile(r"^\.[\w+-]{1,16}$")
VERSION_RE = re.compile(r"^[\w.+-]{1,64}$")
EXECUTION_STATES = frozenset({"busy", "idle", "starting"})
REPLY_STATUSES = frozenset({"ok", "error", "aborted"})
BUFFER_MESSAGES = frozenset({"comm_open", "comm_msg"})
# How jupyter_client's packer (json.dumps, default separators) and compact packers write a stream.
STREAM_PREFIXES = tuple(
    f'{{"name":{sep}"{name}",{sep}"text":{sep}"'.encode() for name in ("stdout", "stderr") for sep in (" ", "")
)


class Drop(Exception):
    """The message is not passed on."""


# -- plain values ---------------------------------------------------------------------------


def _str(value: Any, limit: int | None = None, default: str | None = None) -> str:
    if not isinstance(value, str):
        if default is None:
            raise Drop
        return default
    return value[:limit] if limit is not None else value


def _int(value: Any, default: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if default is None:
            raise Drop
        return default
    return value


def _bool(value: Any, default: bool = False) -> bool:
    return value if isinstance(value, bool) else default


def _status(content: dict[str, Any]) -> str:
    status = content.get("status")
    return status if status in REPLY_STATUSES else "error"


def inert(value: Any, depth: int = 0) -> Any:
    """Plain JSON (objects, arrays, strings, numbers, booleans, null), bounded in depth, without the keys
    JavaScript gives meaning to. Returns the same object when nothing had to change."""
    if depth > MAX_DEPTH:
        raise Drop
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or key in FORBIDDEN_KEYS:
                changed = True
                continue
            clean = inert(item, depth + 1)
            changed = changed or clean is not item
            out[key] = clean
        return out if changed else value
    if isinstance(value, list):
        items = [inert(item, depth + 1) for item in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise Drop


def _has_magic(text: str) -> bool:
    return MAGIC_TEXT in text


def _plain_stream(frame: bytes) -> bool:
    """Whether a stream's content is, byte for byte, `{"name": "stdout"|"stderr", "text": "..."}` with one
    JSON string whose text needs nothing done, i.e. cannot hold `://` once decoded (so there is no
    link to neutralise, and no escape code that could hide one). Streams are the hot path, and decoding
    a long text with many escaped newlines costs more than the rest of the relay; these tests are a
    few memchr-speed scans of the bytes. Anything else is decoded and checked as usual."""
    for prefix in STREAM_PREFIXES:
        if frame.startswith(prefix):
            break
    else:
        return False
    if not frame.endswith(b'"}'):
        return False
    text = frame[len(prefix) : -2]
    # A quote anywhere, or a backslash at the end, might be more than one string.
    if b'"' in text or text.endswith(b"\\"):
        return False
    # A decoded `://` needs a `:`, raw (then before a raw `/`, or a `\\/` or `\\u002f` escape) or
    # escaped (`\\u003a`). Without one there is no link, whatever escape codes the text holds.
    # One-byte tests first: they run at memchr speed, the longer ones only when the byte is there.
    if b":" in text and (b":/" in text or b":\\" in text):
        return False
    return not (b"u" in text and b"\\u003" in text)


def _load(frame: bytes) -> Any:
    try:
        return json.loads(frame)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise Drop from exc


# -- the filter -----------------------------------------------------------------------------

Rule = Callable[["InboundFilter", dict[str, Any]], dict[str, Any]]


class InboundFilter:
    """The one function every message from the inner kernel passes through (`frames`)."""

    def __init__(self, policy: OutputPolicy, widget_modules: tuple[str, ...] | list[str] = CORE_MODULES) -> None:
        self.policy = policy
        self.widgets = WidgetFilter(policy, widget_modules)
        self._warned = False

    def frames(self, channel: str, body: list[bytes]) -> list[bytes] | None:
        """`body` is [signature, header, parent, metadata, content, *buffers]; returns the body to send on
        (same signature frame, to be re-signed by the caller) or None to drop the message."""
        try:
            header = _load(body[1])
            if not isinstance(header, dict):
                raise Drop
            msg_type = header.get("msg_type")
            rule = TABLE.get((channel, msg_type)) if isinstance(msg_type, str) else None
            if rule is None:
                log.debug("dropping a %r message on %s from the sandbox: not one the relay passes", msg_type, channel)
                return None
            self._check_header(header)
            parent = _load(body[2])
            if not isinstance(parent, dict) or not FORBIDDEN_KEYS.isdisjoint(parent):
                raise Drop
            metadata_frame = body[3]
            if metadata_frame != b"{}":
                metadata = _load(metadata_frame)
                if not isinstance(metadata, dict):
                    raise Drop
                clean_metadata = inert(metadata)
                if clean_metadata is not metadata:
                    metadata_frame = dumps(clean_metadata)
            content_frame = body[4]
            if len(content_frame) > MAX_CONTENT_BYTES:
                raise Drop
            if msg_type == "stream" and _plain_stream(content_frame):
                return (
                    body
                    if metadata_frame is body[3] and len(body) == 5
                    else [body[0], body[1], body[2], metadata_frame, content_frame]
                )
            content = _load(content_frame)
            if not isinstance(content, dict):
                raise Drop
            filtered = rule(self, content)
            if filtered is not content:
                content_frame = dumps(filtered)
            buffers = body[5:] if msg_type in BUFFER_MESSAGES else []
            if len(buffers) > MAX_BUFFERS:
                raise Drop
            return [body[0], body[1], body[2], metadata_frame, content_frame, *buffers]
        except Drop:
            log.debug("dropping a malformed message on %s from the sandbox", channel)
            return None
        except Exception:  # hostile input must never take the relay down
            # Said once with its traceback (it is a gap in this table); the sandbox could repeat it at will.
            log.log(
                logging.DEBUG if self._warned else logging.WARNING,
                "dropping a message on %s from the sandbox that could not be checked",
                channel,
                exc_info=not self._warned,
            )
            self._warned = True
            return None

    @staticmethod
    def _check_header(header: dict[str, Any]) -> None:
        _str(header.get("msg_id"), default="")
        for key, value in header.items():
            if not isinstance(key, str) or key in FORBIDDEN_KEYS:
                raise Drop
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise Drop
            if isinstance(value, str) and len(value) > MAX_SHORT:
                raise Drop

    # -- iopub --------------------------------------------------------------------------------

    def status(self, content: dict[str, Any]) -> dict[str, Any]:
        if content.get("execution_state") not in EXECUTION_STATES:
            raise Drop
        return content if len(content) == 1 else {"execution_state": content["execution_state"]}

    def stream(self, content: dict[str, Any]) -> dict[str, Any]:
        name, text = content.get("name"), content.get("text")
        if name not in ("stdout", "stderr"):
            raise Drop
        if isinstance(text, str) and len(content) == 2:
            shown = self.policy.text(text)
            return content if shown is text else {"name": name, "text": shown}
        text = as_text(text)
        if text is None:
            raise Drop
        return {"name": name, "text": self.policy.text(text)}

    def display(self, content: dict[str, Any]) -> dict[str, Any]:
        metadata = content.get("metadata")
        out: dict[str, Any] = {
            "data": self.policy.filter_bundle(inert(content.get("data")), isolate=True),
            "metadata": inert(metadata) if isinstance(metadata, dict) else {},
        }
        transient = content.get("transient")
        if isinstance(transient, dict) and isinstance(transient.get("display_id"), str):
            out["transient"] = {"display_id": transient["display_id"][:MAX_SHORT]}
        if "execution_count" in content:
            out["execution_count"] = _int(content["execution_count"], default=0)
        return out

    def update_display(self, content: dict[str, Any]) -> dict[str, Any]:
        out = self.display(content)
        if "transient" not in out:
            raise Drop  # an update names the display it replaces
        return out

    def execute_result(self, content: dict[str, Any]) -> dict[str, Any]:
        return {**self.display(content), "execution_count": _int(content.get("execution_count"), default=0)}

    def clear_output(self, content: dict[str, Any]) -> dict[str, Any]:
        return {"wait": _bool(content.get("wait"))}

    def execute_input(self, content: dict[str, Any]) -> dict[str, Any]:
        if len(content) == 2 and isinstance(content.get("code"), str) and type(content.get("execution_count")) is int:
            return content
        return {
            "code": _str(content.get("code"), default=""),
            "execution_count": _int(content.get("execution_count"), default=0),
        }

    def error(self, content: dict[str, Any]) -> dict[str, Any]:
        return self.policy.filter_error(content)

    def comm_open(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._comm(self.widgets.comm_open, content)

    def comm_msg(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._comm(self.widgets.comm_msg, content)

    def comm_close(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._comm(self.widgets.comm_close, content)

    @staticmethod
    def _comm(handler: Callable[[dict[str, Any]], dict[str, Any] | None], content: dict[str, Any]) -> dict[str, Any]:
        filtered = handler(inert(content))
        if filtered is None:
            raise Drop
        return filtered

    def debug(self, content: dict[str, Any]) -> dict[str, Any]:
        """Debug Adapter Protocol traffic: plain JSON the debugger panel shows as text; the one bundle in
        it (a variable's rich view) goes through the output policy."""
        content = inert(content)
        body = content.get("body")
        if content.get("command") == "richInspectVariables" and isinstance(body, dict) and "data" in body:
            content = {**content, "body": {**body, "data": self.policy.filter_bundle(body["data"])}}
        return content

    def shutdown_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        return {"status": _status(content), "restart": _bool(content.get("restart"))}

    # -- stdin --------------------------------------------------------------------------------

    def input_request(self, content: dict[str, Any]) -> dict[str, Any]:
        return {
            "prompt": _str(content.get("prompt"), MAX_SHORT, default=""),
            "password": _bool(content.get("password")),
        }

    # -- shell and control replies ------------------------------------------------------------

    def _reply(self, content: dict[str, Any], **fields: Any) -> dict[str, Any]:
        status = _status(content)
        if status == "error":
            return {"status": status, **self.policy.filter_error(content)}
        return {"status": status, **fields}

    def execute_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        if (
            content
            == {
                "status": "ok",
                "execution_count": content.get("execution_count"),
                "user_expressions": {},
                "payload": [],
            }
            and type(content["execution_count"]) is int
        ):
            return content  # a plain cell's reply, as it is (the common case; no re-encoding)
        count = _int(content.get("execution_count"), default=0)
        if _status(content) == "error":
            # As ipykernel answers a failed cell: no payload, and no expressions were evaluated.
            return {**self._reply(content), "execution_count": count, "user_expressions": {}, "payload": []}
        if _status(content) != "ok":
            return {**self._reply(content), "execution_count": count}
        payload = content.get("payload")
        kept = [p for p in (self._payload(p) for p in payload) if p is not None] if isinstance(payload, list) else []
        expressions = content.get("user_expressions")
        return {
            "status": "ok",
            "execution_count": count,
            "payload": kept,
            "user_expressions": {str(k): self._expression(v) for k, v in expressions.items()}
            if isinstance(expressions, dict)
            else {},
        }

    def _expression(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict) or value.get("status") != "ok":
            return {"status": "error", **self.policy.filter_error(value if isinstance(value, dict) else {})}
        metadata = value.get("metadata")
        return {
            "status": "ok",
            "data": self.policy.filter_bundle(inert(value.get("data"))),
            "metadata": inert(metadata) if isinstance(metadata, dict) else {},
        }

    def _payload(self, payload: Any) -> dict[str, Any] | None:
        if not isinstance(payload, dict):
            return None
        source = payload.get("source")
        if source == "page":
            # JupyterLab adds the page to the cell's outputs, as trusted output.
            return {
                "source": "page",
                "data": self.policy.filter_bundle(inert(payload.get("data"))),
                "start": _int(payload.get("start"), default=0),
            }
        if source == "set_next_input":
            text = payload.get("text")
            if not isinstance(text, str) or len(text) > MAX_CONTENT_BYTES // 64 or _has_magic(text):
                log.info(
                    "dropped a set_next_input payload from the sandbox%s",
                    " that carried a %sandbox line" if isinstance(text, str) and _has_magic(text) else "",
                )
                return None
            return {"source": "set_next_input", "text": text, "replace": _bool(payload.get("replace"))}
        if source == "ask_exit":
            return {"source": "ask_exit", "keepkernel": _bool(payload.get("keepkernel"))}
        # edit_magic names a file for the front end to open on the host; anything else is unknown.
        return None

    def inspect_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        metadata = content.get("metadata")
        return self._reply(
            content,
            found=_bool(content.get("found")),
            data=self.policy.filter_bundle(inert(content.get("data") or {})) if content.get("found") else {},
            metadata=inert(metadata) if isinstance(metadata, dict) else {},
        )

    def complete_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        matches = content.get("matches")
        matches = matches[:MAX_MATCHES] if isinstance(matches, list) else []
        metadata = content.get("metadata")
        types = metadata.get("_jupyter_types_experimental") if isinstance(metadata, dict) else None
        paired = isinstance(types, list) and len(types) == len(matches)
        kept_matches, kept_types = [], []
        for index, match in enumerate(matches):
            if not isinstance(match, str) or len(match) > MAX_SHORT or _has_magic(match):
                continue
            if paired and isinstance(types, list):
                entry = self._completion_type(types[index])
                if entry is None:
                    continue
                kept_types.append(entry)
            kept_matches.append(match)
        return self._reply(
            content,
            matches=kept_matches,
            cursor_start=_int(content.get("cursor_start"), default=0),
            cursor_end=_int(content.get("cursor_end"), default=0),
            metadata={"_jupyter_types_experimental": kept_types} if paired else {},
        )

    @staticmethod
    def _completion_type(entry: Any) -> dict[str, Any] | None:
        # JupyterLab inserts `text`, not the match, when it is there.
        if not isinstance(entry, dict):
            return None
        text = entry.get("text")
        if not isinstance(text, str) or len(text) > MAX_SHORT or _has_magic(text):
            return None
        out: dict[str, Any] = {
            "text": text,
            "start": _int(entry.get("start"), default=0),
            "end": _int(entry.get("end"), default=0),
        }
        for key in ("type", "signature"):
            if isinstance(entry.get(key), str):
                out[key] = entry[key][:MAX_SHORT]
        return out

    def history_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        # The inner kernel never ran a %sandbox line (the proxy runs those), so an entry with one is planted.
        history = content.get("history")
        kept = []
        for entry in history[:MAX_HISTORY] if isinstance(history, list) else []:
            if not (isinstance(entry, list) and len(entry) == 3):
                continue
            session, line, cell = entry
            if isinstance(cell, list) and len(cell) == 2:
                source, output = cell
                texts = [source, *([output] if output is not None else [])]
            else:
                source, texts = cell, [cell]
            if not all(isinstance(t, str) for t in texts) or any(_has_magic(t) for t in texts):
                continue
            kept.append([_int(session, default=0), _int(line, default=0), cell])
        return self._reply(content, history=kept)

    def is_complete_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        status = content.get("status")
        if status not in ("complete", "incomplete", "invalid", "unknown"):
            status = "unknown"
        out: dict[str, Any] = {"status": status}
        indent = content.get("indent")
        if status == "incomplete":
            # Inserted into the editor: whitespace only.
            out["indent"] = indent if isinstance(indent, str) and len(indent) <= 64 and not indent.strip(" \t") else ""
        return out

    def comm_info_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        comms = content.get("comms")
        kept = {}
        if isinstance(comms, dict):
            for comm_id, info in list(comms.items())[: MAX_MATCHES * 10]:
                target = info.get("target_name") if isinstance(info, dict) else None
                if isinstance(target, str) and self.widgets.known_target(target):
                    kept[str(comm_id)[:MAX_SHORT]] = {"target_name": target}
        return self._reply(content, comms=kept)

    def kernel_info_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"status": _status(content)}
        for key in ("protocol_version", "implementation", "implementation_version"):
            value = content.get(key)
            if isinstance(value, str) and VERSION_RE.match(value):
                out[key] = value
        out["language_info"] = _language_info(content.get("language_info"))
        out["banner"] = _str(content.get("banner"), 64 * 1024, default="")
        out["help_links"] = _help_links(content.get("help_links"))
        out["debugger"] = _bool(content.get("debugger"))
        features = content.get("supported_features")
        if isinstance(features, list):
            out["supported_features"] = [
                f for f in features if isinstance(f, str) and NAME_RE.match(f.replace(" ", "_"))
            ]
        return out

    def interrupt_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._reply(content)

    def connect_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        # The inner kernel's ports are the container's, never the front end's business.
        return self._reply(content)

    def usage_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        return inert(content)  # figures and a host name, shown as text

    def create_subshell_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._reply(content, subshell_id=_str(content.get("subshell_id"), MAX_SHORT, default=""))

    def delete_subshell_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._reply(content)

    def list_subshell_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        ids = content.get("subshell_id")
        return self._reply(
            content, subshell_id=[i[:MAX_SHORT] for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
        )


def _language_info(info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        return {"name": "python"}
    out: dict[str, Any] = {}
    for key, pattern in (
        ("name", NAME_RE),
        ("version", VERSION_RE),
        ("mimetype", MIMETYPE_RE),
        ("file_extension", EXTENSION_RE),
        ("pygments_lexer", NAME_RE),
        ("nbconvert_exporter", EXPORTER_RE),
    ):
        value = info.get(key)
        if isinstance(value, str) and pattern.match(value):
            out[key] = value
    mode = info.get("codemirror_mode")
    if isinstance(mode, str) and NAME_RE.match(mode):
        out["codemirror_mode"] = mode
    elif isinstance(mode, dict) and isinstance(mode.get("name"), str) and NAME_RE.match(mode["name"]):
        out["codemirror_mode"] = {
            "name": mode["name"],
            **({"version": mode["version"]} if isinstance(mode.get("version"), int) else {}),
        }
    out.setdefault("name", "python")
    return out


def _help_links(links: Any) -> list[dict[str, str]]:
    kept = []
    for link in links[:MAX_HELP_LINKS] if isinstance(links, list) else []:
        if not isinstance(link, dict) or not isinstance(link.get("text"), str) or not isinstance(link.get("url"), str):
            continue
        url = link["url"].strip()
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        host = (parts.hostname or "").rstrip(".").lower()
        # Absolute http(s) only, and never this machine (the Jupyter origin, previews): a help page is
        # opened as the user, so it must not be one the sandbox serves or one of Jupyter's own.
        if parts.scheme.lower() in ("http", "https") and host and len(url) <= 2048 and not _loopback(host):
            kept.append({"text": link["text"][:200], "url": url})
    return kept


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost") or host in ("0.0.0.0", "[::]", "::"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_REPLIES: dict[str, Rule] = {
    "execute_reply": InboundFilter.execute_reply,
    "inspect_reply": InboundFilter.inspect_reply,
    "complete_reply": InboundFilter.complete_reply,
    "history_reply": InboundFilter.history_reply,
    "is_complete_reply": InboundFilter.is_complete_reply,
    "comm_info_reply": InboundFilter.comm_info_reply,
    "kernel_info_reply": InboundFilter.kernel_info_reply,
    "connect_reply": InboundFilter.connect_reply,
    "interrupt_reply": InboundFilter.interrupt_reply,
    "shutdown_reply": InboundFilter.shutdown_reply,
    "debug_reply": InboundFilter.debug,
    "usage_reply": InboundFilter.usage_reply,
    "create_subshell_reply": InboundFilter.create_subshell_reply,
    "delete_subshell_reply": InboundFilter.delete_subshell_reply,
    "list_subshell_reply": InboundFilter.list_subshell_reply,
}
_IOPUB: dict[str, Rule] = {
    "status": InboundFilter.status,
    "stream": InboundFilter.stream,
    "display_data": InboundFilter.display,
    "update_display_data": InboundFilter.update_display,
    "execute_result": InboundFilter.execute_result,
    "clear_output": InboundFilter.clear_output,
    "execute_input": InboundFilter.execute_input,
    "error": InboundFilter.error,
    "comm_open": InboundFilter.comm_open,
    "comm_msg": InboundFilter.comm_msg,
    "comm_close": InboundFilter.comm_close,
    "debug_event": InboundFilter.debug,
    "shutdown_reply": InboundFilter.shutdown_reply,
}

# (channel, msg_type) -> rule. What is not here is dropped.
TABLE: dict[tuple[str, str], Rule] = {
    **{("shell", t): rule for t, rule in _REPLIES.items()},
    **{("control", t): rule for t, rule in _REPLIES.items()},
    **{("iopub", t): rule for t, rule in _IOPUB.items()},
    ("stdin", "input_request"): InboundFilter.input_request,
}
