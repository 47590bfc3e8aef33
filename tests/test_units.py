"""Pure functions: sizes, specs, message signing."""

from __future__ import annotations

import pytest

from jupyter_sandbox.kernel.messages import DELIM, Signer, build, reply_type, split
from jupyter_sandbox.sandbox.spec import SandboxSpec, SpecError, format_size, parse_size


@pytest.mark.parametrize("text, expected", [
    ("1g", 1024**3), ("512m", 512 * 1024**2), ("1.5GiB", 1536 * 1024**2), ("2048", 2048), (4096, 4096),
    ("3 GB", 3 * 1024**3), ("10k", 10240),
])
def test_parse_size(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1g", "0", "1x", "1..5g", True, "1e9"])
def test_parse_size_rejects_nonsense_with_a_clear_message(text) -> None:
    with pytest.raises(SpecError, match="memory"):
        parse_size(text, "memory")


def test_format_size() -> None:
    assert format_size(1024**3) == "1 GiB"
    assert format_size(1536 * 1024**2) == "1.5 GiB"
    assert format_size(100) == "100 B"


@pytest.mark.parametrize("field, value, message", [
    ("image", "", "needs an image"),
    ("image", "bad image", "not a valid image"),
    ("cpu", 0, "cpu"),
    ("cpu", 1000, "cpu"),
    ("memory", 1024, "memory"),
    ("disk", 10, "disk"),
    ("pids", 1, "pids"),
    ("env", {"1BAD": "x"}, "not a valid variable"),
    ("env", {"OK": "a\0b"}, "NUL"),
])
def test_spec_validation(field, value, message) -> None:
    spec = SandboxSpec(image="img:1")
    setattr(spec, field, value)
    with pytest.raises(SpecError, match=message):
        spec.validate()


def test_signer_round_trip_and_tamper() -> None:
    signer = Signer("secret")
    frames = build(signer, "status", {"execution_state": "idle"}, None, "session")
    assert frames[0] == DELIM
    assert signer.verify(*frames[1:6])
    assert not signer.verify(frames[1], frames[2], frames[3], frames[4], b'{"execution_state":"busy"}')
    assert not Signer("other").verify(*frames[1:6])


def test_empty_key_means_unsigned() -> None:
    signer = Signer("")
    assert signer.sign(b"{}", b"{}", b"{}", b"{}") == b""
    assert signer.verify(b"", b"{}", b"{}", b"{}", b"{}")


def test_unknown_signature_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Signer("k", "rot13")


def test_split_and_reply_type() -> None:
    idents, body = split([b"a", b"b", DELIM, b"sig", b"h"])
    assert idents == [b"a", b"b"] and body == [b"sig", b"h"]
    with pytest.raises(ValueError):
        split([b"no delimiter"])
    assert reply_type("execute_request") == "execute_reply"
    assert reply_type("comm_msg") is None


def test_agent_answer_shapes() -> None:
    from jupyter_sandbox.sandbox.shapes import AGENT_SHAPES, ShapeError, reduce

    good = {"branch": "main", "ahead": 1, "behind": 0, "extra": "<dropped>",
            "files": [{"path": "a", "index": "M", "worktree": " ", "staged": True, "untracked": False}]}
    assert reduce(good, AGENT_SHAPES["git_status"]) == {k: v for k, v in good.items() if k != "extra"}
    for bad in ({**good, "ahead": "1"}, {**good, "files": "x"}, {**good, "ahead": True}, [good], None):
        with pytest.raises(ShapeError):
            reduce(bad, AGENT_SHAPES["git_status"])
    assert reduce({"branches": ["a"], "current": None}, AGENT_SHAPES["git_branches"]) == {"branches": ["a"], "current": None}
