"""Widget state from the sandbox, made inert for ipywidgets 8 in JupyterLab.

A widget is a comm (target `jupyter.widget`) whose state the front end turns into a model and views.
What ipywidgets 8 renders as HTML or typesets, and so what is filtered here:

- `value` of HTMLModel and HTMLMathModel goes to `innerHTML` unsanitised: sanitised here.
- `description` goes to `innerHTML` when `description_allow_html` is set: that flag is forced off,
  so descriptions are text; they, Label values and option labels are typeset, so TeX is neutralised.
- OutputModel's `outputs` are rendered as trusted outputs: each goes through the output policy.
- Image, Video and Audio put their bytes in a blob of type `image/<format>`: a format naming SVG or
  HTML would make a blob that runs script on the Jupyter origin when opened in a tab.
- `_dom_classes` and icons (which become `fa-<icon>` classes) may not name JupyterLab's own classes.
- jslink/jsdlink (LinkModel, DirectionalLinkModel) copy attributes in the browser, past this filter:
  a link may not write `value` of an HTML model, class or flag attributes, or models not seen here.

Only models of the widget modules the operator allows are passed (default: ipywidgets' own); the
model's class is fixed when it opens, later updates cannot change it. Comms of other targets, and
messages of comms that were never opened here, are dropped (default deny). Control-comm replies
(`update_states`, the state of every widget at once) are filtered model by model.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .output_policy import (
    APP_CLASS_RE,
    OutputPolicy,
    as_text,
    neutralise_tex,
    sanitize_html,
)

log = logging.getLogger(__name__)

WIDGET_TARGET = "jupyter.widget"
CORE_MODULES = ("@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output")
HTML_VALUE_MODELS = frozenset({"HTMLModel", "HTMLMathModel"})
TYPESET_VALUE_MODELS = frozenset({"LabelModel"})
MEDIA_MODELS = frozenset({"ImageModel", "VideoModel", "AudioModel"})
LINK_MODELS = frozenset({"LinkModel", "DirectionalLinkModel"})
CLASS_KEYS = (
    "_model_name",
    "_model_module",
    "_model_module_version",
    "_view_name",
    "_view_module",
    "_view_module_version",
)
MEDIA_FORMAT_RE = re.compile(r"^[A-Za-z0-9]{1,16}$")
ICON_RE = re.compile(r"^[A-Za-z0-9-]{0,64}$")
UNSAFE_MEDIA_FORMATS = frozenset({"svg", "html", "htm", "xhtml", "xml"})
# Attributes a jslink may never write: they decide how (or whether) other attributes are rendered.
UNLINKABLE = frozenset({"description_allow_html", "format", "outputs", "msg_id", "layout", "style", "children"})
MAX_MODELS = 100_000


class WidgetFilter:
    """Widget comms, for one kernel: remembers each model's class from the moment it opens."""

    def __init__(self, policy: OutputPolicy, modules: tuple[str, ...] | list[str] = CORE_MODULES) -> None:
        self.policy = policy
        self.modules = frozenset(modules)
        self.models: dict[str, str] = {}  # comm id -> model name

    def comm_open(self, content: dict[str, Any]) -> dict[str, Any] | None:
        comm_id, target = content.get("comm_id"), content.get("target_name")
        if not isinstance(comm_id, str) or not isinstance(target, str):
            return None
        if not self.policy.active:
            self.models[comm_id] = ""
            return content
        if target != WIDGET_TARGET or self.policy.policy == "text":
            return None
        data = content.get("data")
        state = data.get("state") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(state, dict):
            return None
        model = self._model_name(state)
        if model is None or (comm_id not in self.models and len(self.models) >= MAX_MODELS):
            return None
        filtered = self._filter_state(model, state, opening=True)
        if filtered is None:
            return None
        self.models[comm_id] = model
        out = {"comm_id": comm_id, "target_name": target, "data": {**data, "state": filtered}}
        if isinstance(content.get("metadata"), dict):
            out["metadata"] = content["metadata"]
        # Never `target_module`: JupyterLab would load that module by URL with require.js, where a page has it.
        return out

    def comm_msg(self, content: dict[str, Any]) -> dict[str, Any] | None:
        comm_id, data = content.get("comm_id"), content.get("data")
        if not isinstance(comm_id, str) or not isinstance(data, dict):
            return None
        if not self.policy.active:
            return content
        if self.policy.policy == "text":
            return None
        model = self.models.get(comm_id)
        if model is None:
            # Not opened by the sandbox: the only such comm the widgets use is the front end's control
            # comm, whose answer carries every widget's state.
            if data.get("method") != "update_states":
                return None
            return {"comm_id": comm_id, "data": self._filter_states(data)}
        method = data.get("method")
        if method in ("update", "echo_update"):
            state = data.get("state")
            if not isinstance(state, dict):
                return None
            filtered = self._filter_state(model, state, opening=False)
            if filtered is None:
                return None
            return {"comm_id": comm_id, "data": {**data, "state": filtered}}
        if method == "custom":
            return {"comm_id": comm_id, "data": {"method": "custom", "content": data.get("content")}}
        return None

    def comm_close(self, content: dict[str, Any]) -> dict[str, Any] | None:
        comm_id = content.get("comm_id")
        if not isinstance(comm_id, str):
            return None
        if self.models.pop(comm_id, None) is None and self.policy.active:
            return None
        return {"comm_id": comm_id, "data": content.get("data") if isinstance(content.get("data"), dict) else {}}

    def known_target(self, target: Any) -> bool:
        return not self.policy.active or (target == WIDGET_TARGET and self.policy.policy != "text")

    # -- state ------------------------------------------------------------------------------

    def _model_name(self, state: dict[str, Any]) -> str | None:
        model, module = state.get("_model_name"), state.get("_model_module")
        view_module = state.get("_view_module")
        if not isinstance(model, str) or module not in self.modules:
            return None
        if view_module is not None and view_module not in self.modules:
            return None
        return model

    def _filter_states(self, data: dict[str, Any]) -> dict[str, Any]:
        states = data.get("states")
        kept: dict[str, Any] = {}
        if isinstance(states, dict):
            for model_id, entry in states.items():
                if not isinstance(entry, dict) or not isinstance(entry.get("state"), dict):
                    continue
                state = entry["state"]
                model = self._model_name(
                    {
                        "_model_name": entry.get("model_name"),
                        "_model_module": entry.get("model_module"),
                        "_view_module": state.get("_view_module"),
                    }
                )
                if model is None or (model_id not in self.models and len(self.models) >= MAX_MODELS):
                    continue
                filtered = self._filter_state(
                    model, {**state, "_model_name": model, "_model_module": entry["model_module"]}, opening=True
                )
                if filtered is None:
                    continue
                self.models[model_id] = model
                kept[model_id] = {**entry, "model_name": model, "state": filtered}
        paths = data.get("buffer_paths")
        return {
            "method": "update_states",
            "states": kept,
            "buffer_paths": {k: v for k, v in paths.items() if k in kept} if isinstance(paths, dict) else {},
        }

    def _filter_state(self, model: str, state: dict[str, Any], opening: bool) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key, value in state.items():
            if not isinstance(key, str):
                continue
            if key in CLASS_KEYS:
                if opening:
                    out[key] = value
                continue  # the class of a model is fixed when it opens
            out[key] = value
        if "description_allow_html" in out or opening:
            out["description_allow_html"] = False
        if isinstance(out.get("description"), str):
            out["description"] = neutralise_tex(out["description"])
        if "value" in out:
            if model in HTML_VALUE_MODELS:
                text = as_text(out["value"])
                out["value"] = sanitize_html(text) if text is not None else ""
            elif model in TYPESET_VALUE_MODELS and isinstance(out["value"], str):
                out["value"] = neutralise_tex(out["value"])
        if isinstance(out.get("_options_labels"), list):
            out["_options_labels"] = [neutralise_tex(v) if isinstance(v, str) else "" for v in out["_options_labels"]]
        # CSS classes on the widget's element: never JupyterLab's own (a fixed full-window "dialog").
        if "_dom_classes" in out:
            classes = out["_dom_classes"]
            out["_dom_classes"] = (
                [
                    c
                    for c in classes
                    if isinstance(c, str) and not APP_CLASS_RE.match(c) and c.strip() == c and " " not in c
                ]
                if isinstance(classes, list)
                else []
            )
        # Icons become the class `fa-<icon>`: a name, not a list of classes.
        if "icon" in out and not (isinstance(out["icon"], str) and ICON_RE.match(out["icon"])):
            out["icon"] = ""
        if isinstance(out.get("icons"), list):
            out["icons"] = [i if isinstance(i, str) and ICON_RE.match(i) else "" for i in out["icons"]]
        if "outputs" in out:
            outputs = out["outputs"]
            out["outputs"] = (
                [o for o in (self.policy.filter_output(o) for o in outputs) if o is not None]
                if isinstance(outputs, list)
                else []
            )
        if model in MEDIA_MODELS and "format" in out:
            fmt = out["format"]
            if not (
                isinstance(fmt, str)
                and MEDIA_FORMAT_RE.match(fmt)
                and not any(bad in fmt.lower() for bad in UNSAFE_MEDIA_FORMATS)
            ):
                out["format"] = "png" if model == "ImageModel" else "mp4" if model == "VideoModel" else "mp3"
        if model in LINK_MODELS:
            for end in ("source", "target"):
                if end in out and not self._safe_link_end(out[end]):
                    return None
        return out

    def _safe_link_end(self, end: Any) -> bool:
        if not (isinstance(end, list) and len(end) == 2 and isinstance(end[0], str) and isinstance(end[1], str)):
            return False
        reference, attribute = end
        model = self.models.get(reference[len("IPY_MODEL_") :]) if reference.startswith("IPY_MODEL_") else None
        if model is None or attribute.startswith("_") or attribute in UNLINKABLE:
            return False
        return not (attribute == "value" and model in HTML_VALUE_MODELS | TYPESET_VALUE_MODELS)
