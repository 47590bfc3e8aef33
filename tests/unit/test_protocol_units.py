"""The pieces of the proxy's protocol handling that need no sandbox: the answers it gives while the
sandbox starts (checked against a local ipykernel), the recorded kernel info, the size format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from jupyter_sandbox.kernel import kernel_info, offline
from jupyter_sandbox.kernel.cells import Segment, magic_waits
from jupyter_sandbox.sandbox import secrets
from jupyter_sandbox.sandbox.spec import limit_size, readable_size

CODES = [
    "for i in range(3):",
    "x = 1",
    "def f():\n  return 1",
    "x = (",
    "%ls",
    "1 +",
    "x = [1,\n",
    "%%bash\necho",
    "if x:\n    pass\n",
    "a b c",
    "print('''hello",
    "!ls -l",
    "x = 1 \\",
    "",
    "class A:\n    def f(self):",
    "try:\n    pass\nexcept:\n    pass\n\n",
    "%sandbox status",
]


@pytest.fixture(scope="module")
def local_kernel() -> Iterator:
    km, client = start_new_kernel(kernel_name="python3")
    yield client
    client.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.mark.parametrize("code", CODES)
def test_is_complete_answers_as_ipykernel(local_kernel, code: str) -> None:
    msg_id = local_kernel.is_complete(code)
    reply = local_kernel.get_shell_msg(timeout=30)
    while reply["parent_header"]["msg_id"] != msg_id:  # a second kernel_info reply from the start
        reply = local_kernel.get_shell_msg(timeout=30)
    assert offline.is_complete(code) == reply["content"]


REAL = {
    "status": "ok",
    "protocol_version": "5.3",
    "implementation": "ipython",
    "implementation_version": "9.1.0",
    "language_info": {
        "name": "python",
        "version": "3.12.1",
        "mimetype": "text/x-python",
        "codemirror_mode": {"name": "ipython", "version": 3},
        "pygments_lexer": "ipython3",
        "nbconvert_exporter": "python",
        "file_extension": ".py",
    },
    "banner": "Python 3.12.1\n",
    "help_links": [{"text": "Python Reference", "url": "https://docs.python.org/3.12"}],
    "supported_features": ["kernel subshells", "debugger"],
}


def test_kernel_info_keeps_what_front_ends_use() -> None:
    assert kernel_info.sanitize(REAL) == REAL


@pytest.mark.parametrize(
    "change",
    [
        {
            "help_links": [
                {"text": "x", "url": "javascript:alert(1)"},
                {"text": "y", "url": "https://ok.example/a b"},
                {"text": 1, "url": "https://x.example"},
                "not a link",
            ]
        },
        {"banner": "x" * 100_000},
        {"supported_features": ["kernel subshells", "<img src=x>", 7, "x" * 300]},
        {"language_info": {**REAL["language_info"], "version": "<script>", "codemirror_mode": {"name": ["x"]}}},
        {"extra": {"nested": "anything"}, "debugger": "yes"},
    ],
)
def test_kernel_info_from_a_hostile_kernel_is_reduced_to_plain_fields(change: dict) -> None:
    info = kernel_info.sanitize({**REAL, **change})
    assert info is not None
    assert all(
        link["url"].startswith(("https://", "http://")) and " " not in link["url"] for link in info["help_links"]
    )
    assert len(info["banner"]) <= kernel_info.MAX_BANNER
    assert set(info) <= set(REAL) | {"debugger"}
    assert all(isinstance(f, str) and "<" not in f and len(f) <= 41 for f in info.get("supported_features", []))
    assert "<" not in json.dumps(info["language_info"])
    assert not isinstance(info.get("debugger", False), str)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        "x",
        {"status": "error"},
        {**REAL, "language_info": "python"},
        {**REAL, "protocol_version": {"x": 1}},
        {**REAL, "implementation": ""},
    ],
)
def test_what_is_not_a_kernel_info_is_not_recorded(bad) -> None:
    assert kernel_info.sanitize(bad) is None


def test_kernel_info_is_recorded_once_per_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.SECRET_ENV, str(tmp_path / "host.secret"))
    image = "sha256:" + "a" * 64
    assert kernel_info.load(image) is None
    kernel_info.store(image, REAL)
    kernel_info.store(image, {**REAL, "banner": "rewritten by a sandbox"})
    assert kernel_info.load(image) == REAL
    for path in (tmp_path / "kernel-info").iterdir():
        assert path.stat().st_mode & 0o077 == 0
    kernel_info.store("../../etc/x", REAL)  # not an image id: nothing written anywhere
    assert kernel_info.load("../../etc/x") is None
    assert [p.name for p in (tmp_path / "kernel-info").iterdir()] == [
        f"{kernel_info.RECORD_VERSION}-" + "a" * 64 + ".json"
    ]


@pytest.mark.parametrize(
    "size,text",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (57_683_968, "55 MiB"),
        (177_541_120, "169 MiB"),
        (1_288_490_189, "1.2 GiB"),
        (1024**3, "1 GiB"),
        (10 * 1024**2 - 1, "10 MiB"),
    ],
)
def test_measured_sizes_read_as_people_read_them(size: int, text: str) -> None:
    assert readable_size(size) == text


def test_limits_stay_exact_when_they_are_round() -> None:
    assert [limit_size(n) for n in (2 * 1024**3, 1536 * 1024**2, 1_395_864_371)] == ["2 GiB", "1.5 GiB", "1.3 GiB"]


@pytest.mark.parametrize(
    "line,waits",
    [
        ("", "start"),
        ("status", "start"),
        ("config --memory 2g", "start"),
        ("network none", "start"),
        ("help", ""),
        ("config --help", ""),
        ("stop", "up"),
        ("delete --yes", "up"),
    ],
)
def test_which_sandbox_lines_wait_for_the_sandbox(line: str, waits: str) -> None:
    assert magic_waits(Segment("line", line)) == waits
