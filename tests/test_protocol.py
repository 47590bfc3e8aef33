"""The sandbox kernel speaks the protocol as ipykernel does, seen through real clients: execution
counts, %sandbox cells under nbclient and papermill, aborted queues, requests during a cold start,
jupyter console in a terminal, and every message the proxy makes itself checked against the message
spec and nbformat."""

from __future__ import annotations

import os
import queue
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pexpect
import pytest
from conftest import SandboxKernel, start_sandbox_kernel
from jupyter_client.manager import start_new_kernel
from jupyter_kernel_test.msgspec_v5 import validate_message
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

KERNEL = "sandbox-python"


@pytest.fixture(scope="module")
def kernel(sandbox_image: str) -> Iterator[SandboxKernel]:
    started = start_sandbox_kernel()
    yield started
    started.shutdown()


def collect(client: Any, msg_id: str, timeout: float = 120) -> tuple[dict, list[dict]]:
    """The reply to `msg_id` and its iopub messages up to its idle status."""
    reply = client.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=timeout)
    messages = []
    while True:
        message = client.get_iopub_msg(timeout=timeout)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(message)
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return reply, messages


def execute(client: Any, code: str, **options: Any) -> tuple[dict, list[dict]]:
    return collect(client, client.execute(code, **options))


def inner_count(kernel: SandboxKernel) -> int:
    """The inner kernel's next execution count, asked without taking one (a silent cell)."""
    reply, _ = execute(kernel.client, "", silent=True, user_expressions={"n": "get_ipython().execution_count"})
    return int(reply["content"]["user_expressions"]["n"]["data"]["text/plain"])


def notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3 (sandbox)", "language": "python"}
    return nb


# -- execution counts -------------------------------------------------------------------------


def test_counts_are_one_per_cell_that_stores_history(kernel: SandboxKernel) -> None:
    client = kernel.client
    first, _ = execute(client, "1")
    start = first["content"]["execution_count"]
    shown = []
    for code in ("%sandbox status", "2", "x = 5\n%sandbox help\nx", "%sandbox help\ny = 6", "y"):
        reply, messages = execute(client, code)
        assert reply["content"]["status"] == "ok", reply["content"]
        inputs = [m["content"]["execution_count"] for m in messages if m["msg_type"] == "execute_input"]
        results = [m["content"]["execution_count"] for m in messages if m["msg_type"] == "execute_result"]
        assert inputs == [reply["content"]["execution_count"]]
        assert all(count == inputs[0] for count in results)
        shown.append(reply["content"]["execution_count"])
    assert shown == list(range(start + 1, start + 6))
    # The sandbox agrees: Out[n] and the next count are the front end's.
    assert inner_count(kernel) == start + 6
    reply, messages = execute(client, f"Out[{start + 3}], Out[{start + 5}]")
    assert [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"] == ["(5, 6)"]


def test_silent_and_historyless_sandbox_cells_take_no_count(kernel: SandboxKernel) -> None:
    client = kernel.client
    before, _ = execute(client, "'before'")
    count = before["content"]["execution_count"]
    reply, messages = execute(client, "%sandbox status", silent=True)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["execution_count"] == count
    assert [m["msg_type"] for m in messages] == ["status", "status"]  # busy, idle: nothing published
    reply, messages = execute(client, "%sandbox bogus", silent=True)
    assert reply["content"]["status"] == "error"
    assert [m["msg_type"] for m in messages] == ["status", "status"]
    reply, _ = execute(client, "%sandbox help", store_history=False)
    assert reply["content"]["execution_count"] == count
    after, _ = execute(client, "'after'")
    assert after["content"]["execution_count"] == count + 1
    assert inner_count(kernel) == count + 2


def test_user_expressions_are_evaluated_for_sandbox_cells(kernel: SandboxKernel) -> None:
    client = kernel.client
    execute(client, "z = 21")
    for code in ("%sandbox help", "w = 1\n%sandbox help"):
        reply, _ = execute(client, code, user_expressions={"double": "z * 2", "bad": "1/0"})
        expressions = reply["content"]["user_expressions"]
        assert expressions["double"] == {"status": "ok", "data": {"text/plain": "42"}, "metadata": {}}
        assert expressions["bad"]["status"] == "error" and expressions["bad"]["ename"] == "ZeroDivisionError"
    reply, _ = execute(client, "%sandbox help", silent=True, user_expressions={"double": "z * 2"})
    assert reply["content"]["user_expressions"]["double"]["data"]["text/plain"] == "42"


def test_counts_go_on_across_sandbox_restarts(kernel: SandboxKernel) -> None:
    client = kernel.client
    for code in ("%sandbox restart", "%sandbox stop", "%sandbox restart --hard"):
        before, _ = execute(client, "'before'")
        reply, _ = execute(client, code)
        assert reply["content"]["status"] == "ok", reply["content"]
        after, _ = execute(client, "'after'")
        assert (reply["content"]["execution_count"], after["content"]["execution_count"]) == (
            before["content"]["execution_count"] + 1,
            before["content"]["execution_count"] + 2,
        ), code
        assert inner_count(kernel) == after["content"]["execution_count"] + 1


def test_restart_and_run_all_counts_one_to_n(kernel: SandboxKernel) -> None:
    kernel.restart()
    cells = ["1", "%sandbox status", "2", "3", "%sandbox network", "x = 4\n%sandbox help", "5"]
    counts = [execute(kernel.client, code)[0]["content"]["execution_count"] for code in cells]
    assert counts == [1, 2, 3, 4, 5, 6, 7]


# -- stop_on_error ----------------------------------------------------------------------------


def queued_statuses(client: Any, codes: list[str], stop_on_error: bool = True) -> list[tuple[str, str]]:
    """Send all cells at once (queued as in Run All), then (status, stdout) of each."""
    ids = [client.execute(code, stop_on_error=stop_on_error) for code in codes]
    results = []
    for msg_id in ids:
        reply, messages = collect(client, msg_id)
        if reply["content"]["status"] == "aborted":  # as ipykernel: busy, idle, nothing between
            assert [m["msg_type"] for m in messages] == ["status", "status"]
        results.append(
            (
                reply["content"]["status"],
                "".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream"),
            )
        )
    return results


# Each queue as the sandbox kernel runs it, and the same shape of queue for a local ipykernel.
QUEUES = [
    (
        ["%sandbox bogus", "print('a')", "%sandbox help --nope", "print('b')"],
        ["raise ValueError", "print('a')", "pass", "print('b')"],
    ),
    (["1/0", "%sandbox status", "print('c')"], ["1/0", "pass", "print('c')"]),
    (["print('d')\n%sandbox exec false", "print('e')"], ["print('d')\nraise SystemError", "print('e')"]),
]


@pytest.mark.parametrize("codes,local_codes", QUEUES)
def test_a_failing_cell_aborts_the_queued_cells_as_ipykernel_does(
    kernel: SandboxKernel, codes: list[str], local_codes: list[str]
) -> None:
    local_km, local = start_new_kernel(kernel_name="python3")
    try:
        expected = queued_statuses(local, local_codes)
    finally:
        local.stop_channels()
        local_km.shutdown_kernel(now=True)
    got = queued_statuses(kernel.client, codes)
    assert [status for status, _ in got] == [status for status, _ in expected]
    assert [text for _, text in got] == [text for _, text in expected]
    assert expected[0][0] == "error" and {status for status, _ in expected[1:]} == {"aborted"}


def test_without_stop_on_error_the_queue_runs_on(kernel: SandboxKernel) -> None:
    got = queued_statuses(kernel.client, ["%sandbox bogus", "print('runs')"], stop_on_error=False)
    assert got == [("error", ""), ("ok", "runs\n")]


# -- completion and rich output ---------------------------------------------------------------


def test_sandbox_is_offered_where_a_magic_starts(kernel: SandboxKernel) -> None:
    client = kernel.client
    kernel.run("pass")  # the sandbox is up: its kernel's matches come too
    for typed, expected in (("%sa", "%sandbox"), ("%%sa", "%%sandbox"), ("%", "%sandbox")):
        reply = client.complete(typed, len(typed), reply=True, timeout=30)["content"]
        assert expected in reply["matches"] and reply["cursor_start"] == 0, reply
    assert "%save" in client.complete("%sa", 3, reply=True, timeout=30)["content"]["matches"]
    # Inside code, or indented, it is not a magic of the host.
    assert "%sandbox" not in client.complete("x = %sa", 7, reply=True, timeout=30)["content"]["matches"]


def test_dataframe_style_renders(kernel: SandboxKernel) -> None:
    run = kernel.run("import pandas as pd\npd.DataFrame({'a': [1, 2]}).style.highlight_max()")
    assert run.status == "ok", run.error
    assert "<table" in run.of_type("execute_result")[0]["content"]["data"]["text/html"]


def test_sizes_read_as_people_read_them(kernel: SandboxKernel) -> None:
    usage = next(line for line in kernel.run("%sandbox status").stdout.splitlines() if line.startswith("usage"))
    for size in re.findall(r"(?:memory|disk) (\S+ \S*B)", usage):
        assert re.fullmatch(r"\d{1,4} (?:B|KiB|MiB|GiB)|\d\.\d (?:KiB|MiB|GiB)", size), usage


# -- notebooks under nbclient and papermill ---------------------------------------------------

FIRST_CELLS = (
    "%sandbox config --memory 2g",
    "%sandbox status",
    "%sandbox network none",
    "import os\nprint(next(open(p).read().strip() for p in ('/sys/fs/cgroup/memory.max',\n"
    "'/sys/fs/cgroup/memory/memory.limit_in_bytes') if os.path.exists(p)))",
    "%sandbox exec false",
    "print('never runs')",
)


def check_saved(nb: nbformat.NotebookNode) -> None:
    nbformat.validate(nb)
    counts = [cell.execution_count for cell in nb.cells]
    assert counts == [1, 2, 3, 4, 5, None], counts
    status = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "memory 2 GiB" in status
    assert "network: none" in "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "".join(o.get("text", "") for o in nb.cells[3].outputs).strip() == str(2 * 1024**3)
    errors = [o for o in nb.cells[4].outputs if o.output_type == "error"]
    assert errors and "exited with code 1" in errors[0].evalue
    assert not nb.cells[5].outputs


def test_notebook_starting_with_sandbox_lines_under_nbclient(sandbox_image: str) -> None:
    nb = notebook(*FIRST_CELLS)
    with pytest.raises(CellExecutionError, match="exited with code 1"):
        NotebookClient(nb, kernel_name=KERNEL, timeout=300, startup_timeout=300).execute()
    check_saved(nb)


def test_notebook_starting_with_sandbox_lines_under_papermill(
    sandbox_image: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import papermill

    source, output = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook(*FIRST_CELLS), source)
    with pytest.raises(papermill.PapermillExecutionError, match="exited with code 1"):
        for attempt in range(3):
            try:
                papermill.execute_notebook(
                    str(source), str(output), kernel_name=KERNEL, start_timeout=300, progress_bar=False
                )
                break
            except RuntimeError as exc:
                # jupyter_client picks free ports and the kernel binds them a moment later; on a machine
                # where other tests start containers, Docker may publish one of them meanwhile. Any
                # kernel dies of that (ipykernel too), so the run is started again, as a person would.
                if attempt == 2 or "Address already in use" not in capfd.readouterr().err:
                    raise
                print(f"papermill's kernel lost a port to another process ({exc}); starting it again")
    saved = nbformat.read(output, as_version=4)
    saved.cells = [cell for cell in saved.cells if cell.cell_type == "code"]  # papermill adds an error banner
    check_saved(saved)


# -- a cold start, request by request ----------------------------------------------------------


def check_message(message: dict) -> None:
    """The message spec's schema, and the exact fields of what a notebook stores."""
    content, msg_type = message["content"], message["msg_type"]
    if msg_type == "iopub_welcome":  # ipykernel 7's greeting; not in the suite's schemas yet
        assert content == {"subscription": ""} and message["parent_header"] == {}
        return
    if msg_type == "execute_reply" and content["status"] == "aborted":
        assert content == {"status": "aborted"} and message["metadata"]["status"] == "aborted"
        return
    validate_message(message)
    fields = {
        "error": {"ename", "evalue", "traceback"},
        "stream": {"name", "text"},
        "execute_input": {"code", "execution_count"},
        "status": {"execution_state"},
    }
    if msg_type in fields:
        assert set(content) == fields[msg_type], message
    if msg_type == "execute_reply":
        assert isinstance(content["execution_count"], int)
        assert {"user_expressions", "payload"} <= set(content), content


def drain(client: Any, seen: list[dict]) -> None:
    while True:
        try:
            seen.append(client.get_iopub_msg(timeout=2))
        except queue.Empty:
            return


def test_a_cold_start_answers_in_order_and_every_message_is_valid(sandbox_image: str) -> None:
    km, client = None, None
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel()
    client = km.client()
    client.start_channels()
    seen: list[dict] = []
    try:
        # What jupyter console sends at once while the sandbox comes up.
        ids = [
            client.kernel_info(),
            client.history(hist_access_type="tail", n=10),
            client.is_complete("for x in y:"),
            client.execute("%sandbox status\nprint('first')"),
            client.is_complete("x = 1"),
            client.execute("%sandbox bogus"),
            client.execute("print('aborted')"),
            client.complete("%sandbox sta", 12),
            client.execute("%sandbox help", silent=True),
        ]
        replies = []
        while len(replies) < len(ids):
            message = client.get_shell_msg(timeout=300)
            seen.append(message)
            replies.append(message)
        assert [r["parent_header"]["msg_id"] for r in replies] == ids
        early = replies[0]["content"]
        assert replies[1]["content"] == {"status": "ok", "history": []}
        assert replies[2]["content"] == {"status": "incomplete", "indent": "    "}
        assert [r["content"]["status"] for r in replies[3:7]] == ["ok", "complete", "error", "aborted"]
        assert [r["content"].get("execution_count") for r in replies[3:6:2]] == [1, 2]
        assert replies[7]["content"]["matches"] == ["status"]
        late = client.kernel_info(reply=True, timeout=60)
        seen.append(late)
        drain(client, seen)
        # What the front end was told before the sandbox was up is what the sandbox's kernel says
        # (but IPython's banner, which ends with a tip drawn at random at each start).
        assert {**early, "banner": ""} == {**late["content"], "banner": ""}
        assert early["implementation"] == "ipython" and re.fullmatch(r"3\.\d+\.\d+", early["language_info"]["version"])
        assert "kernel subshells" in early.get("supported_features", [])
        for code in ("1/0", "%sandbox bogus"):
            reply, messages = execute(client, code)
            seen += [reply, *messages]
        client.shutdown()
        time.sleep(1)
        drain(client, seen)
        for message in seen:
            check_message(message)
        outputs = [
            nbformat.v4.output_from_msg(m)
            for m in seen
            if m["msg_type"] in ("stream", "error", "execute_result", "display_data")
        ]
        assert any(o.output_type == "error" for o in outputs)
        nb = notebook("x")
        nb.cells[0].outputs = outputs
        nbformat.validate(nb)
        parentless = [m for m in seen if m["msg_type"] == "status" and not m["parent_header"]]
        assert not parentless
    finally:
        client.stop_channels()
        km.shutdown_kernel()


# -- jupyter console in a terminal -------------------------------------------------------------

ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def prompt(kind: str, number: int) -> str:
    return rf"{kind}{ANSI} ?{ANSI}\[{ANSI}{number}{ANSI}\]{ANSI}:"


def test_jupyter_console_through_a_cold_start(sandbox_image: str, tmp_path: Path) -> None:
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "HOME": str(tmp_path)}
    console = pexpect.spawn(
        sys.executable,
        ["-m", "jupyter_console", f"--kernel={KERNEL}"],
        env=env,
        encoding="utf-8",
        timeout=300,
        dimensions=(50, 200),
        cwd=str(tmp_path),
    )
    log = open(tmp_path / "console.log", "w")  # noqa: SIM115 - closed in the finally below, after the console
    console.logfile_read = log
    try:
        console.expect(prompt("In", 1))
        # Typed at once, while the sandbox is still coming up.
        console.sendline("1 + 1")
        console.expect(prompt("Out", 1))
        console.expect("2")
        console.expect(prompt("In", 2))
        console.sendline("%sandbox status")
        console.expect(r"sandbox\s+[0-9a-f]{12}")
        console.expect(prompt("In", 3))
        console.sendline("name = input('who? ')")
        console.expect(r"who\? ")
        console.sendline("Ada")
        console.expect(prompt("In", 4))
        console.sendline("for i in range(2):")
        console.sendline("    print('line', i)")
        console.sendline("")
        console.expect("line 1")
        console.expect(prompt("In", 5))
        console.sendline("print(name * 2)")
        console.expect("AdaAda")
        console.expect(prompt("In", 6))
        console.sendline("exit")
        console.expect(pexpect.EOF)
    finally:
        console.close(force=True)
        log.close()
    text = (tmp_path / "console.log").read_text()
    assert "did not respond" not in text and "Traceback" not in text, text[-3000:]


def test_an_interrupt_stops_a_cell_waiting_for_the_sandbox(sandbox_image: str) -> None:
    """Whether the cell still waits for the sandbox or already runs in it, an interrupt ends it with
    KeyboardInterrupt, the cell queued behind it is aborted, and the kernel goes on."""
    kernel = start_sandbox_kernel()
    try:
        client = kernel.client
        first = client.execute("import time\nwhile True:\n    time.sleep(0.01)")
        second = client.execute("print('queued')")
        time.sleep(0.5)  # both requests have reached the kernel
        kernel.km.interrupt_kernel()
        reply, _messages = collect(client, first)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        assert collect(client, second)[0]["content"]["status"] == "aborted"
        assert kernel.run("print('goes on')").stdout.endswith("goes on\n")
    finally:
        kernel.shutdown()
