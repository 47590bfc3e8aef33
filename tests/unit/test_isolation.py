"""The isolated original beside the sanitised fallback (kernel/isolation.py, output_policy.py), as the
relay applies it message by message: what a front end without the labextension sees is exactly the
sanitised fallback; what the labextension gets is the original, for a frame, and only for outputs."""

from __future__ import annotations

import pytest
from test_inbound import filtered

from jupyter_sandbox.kernel.inbound import InboundFilter
from jupyter_sandbox.kernel.isolation import ISOLATED_MIME
from jupyter_sandbox.kernel.output_policy import OutputPolicy

SCRIPTED = {
    "text/plain": "<Figure>",
    "text/html": '<div id="plot"></div><script>draw("plot")</script>',
    "application/javascript": "element.textContent = 'hi'",
}


def isolating(policy: str = "safe") -> InboundFilter:
    return InboundFilter(OutputPolicy(policy, isolate=True))


@pytest.mark.parametrize("msg_type", ["display_data", "execute_result", "update_display_data"])
def test_an_output_carries_its_original_beside_the_sanitised_fallback(msg_type: str) -> None:
    content = {"data": SCRIPTED, "metadata": {}, "transient": {"display_id": "d"}, "execution_count": 1}
    out = filtered("iopub", msg_type, content, flt=isolating())
    assert out is not None
    data = out["data"]
    # The fallback every other front end shows: no script, nothing that runs.
    assert "<script" not in data["text/html"] and "application/javascript" not in data
    assert data["text/plain"] == "<Figure>"
    # The original, only under the labextension's own type.
    assert data[ISOLATED_MIME] == {
        "version": 1,
        "data": {"text/html": SCRIPTED["text/html"], "application/javascript": SCRIPTED["application/javascript"]},
    }


def test_markdown_is_carried_with_its_tex_made_inert_and_falls_back_to_sanitised_html() -> None:
    source = "# T\n\n$x_1 + y_1 = z_{i*j}*2$ $\\href{javascript:alert(1)}{x}$\n\n- [x] done"
    out = filtered("iopub", "display_data", {"data": {"text/markdown": source}, "metadata": {}}, flt=isolating())
    assert out is not None
    original = out["data"][ISOLATED_MIME]["data"]["text/markdown"]
    assert "x_1 + y_1" in original and "\\href" not in original
    assert "<h1>T</h1>" in out["data"]["text/html"]


@pytest.mark.parametrize("policy", ["text", "trusted"])
def test_only_the_safe_policy_isolates(policy: str) -> None:
    out = filtered("iopub", "display_data", {"data": SCRIPTED, "metadata": {}}, flt=isolating(policy))
    assert out is not None and ISOLATED_MIME not in out["data"]


def test_off_by_setting_means_the_fallback_alone() -> None:
    out = filtered("iopub", "display_data", {"data": SCRIPTED, "metadata": {}})
    assert out is not None and ISOLATED_MIME not in out["data"]


def test_plain_data_needs_no_frame() -> None:
    bundle = {"text/plain": "x", "image/png": "iVBORw0KGgo=", "image/svg+xml": "<svg></svg>", "text/latex": "$x$"}
    out = filtered("iopub", "display_data", {"data": bundle, "metadata": {}}, flt=isolating())
    assert out is not None and ISOLATED_MIME not in out["data"]


@pytest.mark.parametrize(
    "forged",
    [
        {"version": 1, "data": {"text/html": "<script>x</script>"}},
        "<script>x</script>",
        {"data": {"application/x-made-up": "x"}},
    ],
)
def test_the_sandbox_cannot_send_the_isolated_type_where_nothing_is_isolated(forged: object) -> None:
    # Where nothing is isolated (the text policy, an inspector tooltip) it would pass as something to render.
    out = filtered(
        "iopub",
        "display_data",
        {"data": {"text/plain": "p", ISOLATED_MIME: forged}, "metadata": {}},
        flt=isolating("text"),
    )
    assert out is not None and ISOLATED_MIME not in out["data"]
    reply = {"status": "ok", "found": True, "data": {"text/plain": "doc", ISOLATED_MIME: forged}, "metadata": {}}
    out = filtered("shell", "inspect_reply", reply, flt=isolating())
    assert out is not None and ISOLATED_MIME not in out["data"]
    # Where outputs are isolated it is rebuilt from its known types only, and isolated like the rest.
    out = filtered(
        "iopub", "display_data", {"data": {"text/plain": "p", ISOLATED_MIME: forged}, "metadata": {}}, flt=isolating()
    )
    assert out is not None
    carried = out["data"].get(ISOLATED_MIME)
    assert carried is None or carried == {"version": 1, "data": {"text/html": "<script>x</script>"}}


@pytest.mark.parametrize("value", [["<b>a", "</b>"], "<b>ab</b>"])
def test_nbformat_lists_of_strings_are_joined_and_other_values_left_out(value: object) -> None:
    bundle = {"text/html": value, "application/javascript": {"not": "a string"}}
    out = filtered("iopub", "display_data", {"data": bundle, "metadata": {}}, flt=isolating())
    assert out is not None
    assert out["data"][ISOLATED_MIME]["data"] == {"text/html": "".join(value) if isinstance(value, list) else value}


def test_outputs_inside_an_output_widget_are_isolated_too() -> None:
    flt = isolating()
    state = {
        "_model_name": "OutputModel",
        "_model_module": "@jupyter-widgets/output",
        "_view_module": "@jupyter-widgets/output",
        "outputs": [{"output_type": "display_data", "metadata": {}, "data": SCRIPTED}],
    }
    out = filtered(
        "iopub", "comm_open", {"comm_id": "c", "target_name": "jupyter.widget", "data": {"state": state}}, flt=flt
    )
    assert out is not None
    data = out["data"]["state"]["outputs"][0]["data"]
    assert "<script" not in data["text/html"]
    assert data[ISOLATED_MIME]["data"]["application/javascript"] == SCRIPTED["application/javascript"]


def test_a_pager_payload_and_an_inspector_tooltip_are_never_framed() -> None:
    flt = isolating()
    reply = {"status": "ok", "found": True, "data": SCRIPTED, "metadata": {}}
    out = filtered("shell", "inspect_reply", reply, flt=flt)
    assert out is not None and ISOLATED_MIME not in out["data"]


def test_an_output_widget_sent_back_by_the_front_end_keeps_its_original() -> None:
    # ipywidgets 8 syncs an Output widget's outputs from the front end, which holds the fallback and the
    # original; the echo must not make the fallback the new original.
    policy = OutputPolicy("safe", isolate=True)
    shown = policy.filter_bundle(SCRIPTED, isolate=True)
    echoed = policy.filter_bundle(shown, isolate=True)
    assert echoed[ISOLATED_MIME] == shown[ISOLATED_MIME]
    assert "<script" not in echoed["text/html"]
