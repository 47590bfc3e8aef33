"""The sandbox kernel, driven as a front end drives it: every cell runs in the container."""

from __future__ import annotations

import base64
import queue
import time

from conftest import SandboxKernel, start_sandbox_kernel


def test_state_is_kept_between_cells(shared_kernel: SandboxKernel) -> None:
    assert shared_kernel.run("answer = 6 * 7").status == "ok"
    run = shared_kernel.run("print(answer)\nanswer + 1")
    assert run.stdout == "42\n"
    result = run.of_type("execute_result")
    assert result and result[0]["content"]["data"]["text/plain"] == "43"


def test_cell_runs_in_the_container_not_on_the_host(shared_kernel: SandboxKernel) -> None:
    import socket

    run = shared_kernel.run("import socket, os; print(socket.gethostname()); print(os.path.exists('/home/sandbox'))")
    hostname, home_exists = run.stdout.split()
    assert hostname != socket.gethostname()
    assert hostname.startswith("jupyter-sandbox-")
    assert home_exists == "True"


def test_hardening_is_visible_from_inside(shared_kernel: SandboxKernel) -> None:
    code = r"""
import os
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
print('uid', os.getuid(), os.getgid())
print('capeff', status['CapEff'].strip())
print('nonewprivs', status['NoNewPrivs'].strip())
def first(*paths):
    for p in paths:
        if os.path.exists(p):
            return open(p).read().strip()
print('mem', first('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'))
print('swap', first('/sys/fs/cgroup/memory.swap.max', '/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes'))
print('pids', first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'))
print('docker_sock', os.path.exists('/var/run/docker.sock') or os.path.exists('/run/docker.sock'))
import resource
print('core', resource.getrlimit(resource.RLIMIT_CORE)[1])
print('pid1', open('/proc/1/cmdline').read().split('\0')[0])
"""
    run = shared_kernel.run(code)
    assert run.status == "ok", run.error
    facts = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
    assert facts["uid"] == "1000 1000"
    assert facts["capeff"] == "0000000000000000"
    assert facts["nonewprivs"] == "1"
    assert facts["mem"] == str(1024**3)
    # memory == memory + swap: cgroup v2 shows swap max 0, v1 shows memsw equal to the memory limit
    assert facts["swap"] in ("0", str(1024**3))
    assert facts["pids"] == "512"
    assert facts["docker_sock"] == "False"
    assert facts["core"] == "0"
    assert "init" in facts["pid1"]


def test_matplotlib_png_arrives(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()"
    )
    assert run.status == "ok", run.error
    images = [
        o["content"]["data"]["image/png"] for o in run.of_type("display_data") if "image/png" in o["content"]["data"]
    ]
    assert images
    assert base64.b64decode(images[0]).startswith(b"\x89PNG")


def test_rich_display_and_update(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run(
        "from IPython.display import display, HTML\n"
        "h = display(HTML('<b>one</b>'), display_id=True)\n"
        "h.update(HTML('<b>two</b>'))\n"
        "import pandas as pd\npd.DataFrame({'a': [1, 2]})"
    )
    assert run.status == "ok", run.error
    assert run.of_type("display_data")[0]["content"]["data"]["text/html"] == "<b>one</b>"
    assert run.of_type("update_display_data")[0]["content"]["data"]["text/html"] == "<b>two</b>"
    assert "<table" in run.of_type("execute_result")[0]["content"]["data"]["text/html"]


def test_errors_come_with_tracebacks(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run("def f():\n    return 1 / 0\nf()")
    assert run.status == "error"
    assert run.error["ename"] == "ZeroDivisionError"
    assert any("f()" in line for line in run.error["traceback"])


def test_stderr_is_relayed(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run("import sys; print('oops', file=sys.stderr)")
    assert run.stderr == "oops\n"


def test_complete_inspect_history_is_complete(shared_kernel: SandboxKernel) -> None:
    client = shared_kernel.client
    shared_kernel.run("import collections\nsandbox_value = 1")
    reply = client.complete("collections.Ord", 15, reply=True, timeout=30)
    assert any(match.endswith("OrderedDict") for match in reply["content"]["matches"])
    reply = client.inspect("sandbox_value", 13, reply=True, timeout=30)
    assert reply["content"]["found"] is True
    reply = client.history(hist_access_type="tail", n=5, reply=True, timeout=30)
    assert reply["content"]["status"] == "ok"
    assert any("sandbox_value" in entry[2] for entry in reply["content"]["history"])
    for code, expected in (("for i in range(3):", "incomplete"), ("x = 1", "complete")):
        msg_id = client.is_complete(code)
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == expected


def test_kernel_info_comes_from_the_sandbox_kernel(shared_kernel: SandboxKernel) -> None:
    reply = shared_kernel.client.kernel_info(reply=True, timeout=30)
    content = reply["content"]
    assert content["language_info"]["name"] == "python"
    assert content["implementation"] == "ipython"


def test_widget_comm_opens(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run("import ipywidgets as w\ns = w.IntSlider(value=3)\ns")
    assert run.status == "ok", run.error
    opens = run.of_type("comm_open")
    assert any(o["content"]["target_name"] == "jupyter.widget" for o in opens)
    views = [
        o
        for o in run.of_type("execute_result") + run.of_type("display_data")
        if "application/vnd.jupyter.widget-view+json" in o["content"]["data"]
    ]
    assert views
    # A comm message from the front end reaches the widget in the sandbox.
    model_id = views[0]["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    msg = shared_kernel.client.session.msg(
        "comm_msg", {"comm_id": model_id, "data": {"method": "update", "state": {"value": 9}, "buffer_paths": []}}
    )
    shared_kernel.client.shell_channel.send(msg)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        run = shared_kernel.run("print(s.value)")
        if run.stdout.strip() == "9":
            break
        time.sleep(0.2)
    assert run.stdout.strip() == "9"


def test_input_and_getpass_round_trip(shared_kernel: SandboxKernel) -> None:
    prompts = []

    def answer(msg: dict) -> None:
        prompts.append((msg["content"]["prompt"], msg["content"]["password"]))
        shared_kernel.client.input("secret-value" if msg["content"]["password"] else "Ada")

    run = shared_kernel.run(
        "import getpass\nname = input('name? ')\npw = getpass.getpass('pw? ')\nprint(name, len(pw))", stdin_hook=answer
    )
    assert run.status == "ok", run.error
    assert run.stdout.strip().endswith("Ada 12")
    assert prompts == [("name? ", False), ("pw? ", True)]


def test_infinite_loop_is_interrupted(shared_kernel: SandboxKernel) -> None:
    reply = shared_kernel.interrupted("while True:\n    pass", shared_kernel.km.interrupt_kernel)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert shared_kernel.run("print('still alive')").stdout == "still alive\n"


def test_many_lines_of_output(shared_kernel: SandboxKernel) -> None:
    run = shared_kernel.run("for i in range(20000):\n    print(i)", timeout=120)
    assert run.status == "ok"
    lines = run.stdout.splitlines()
    assert lines[0] == "0" and lines[-1] == "19999" and len(lines) == 20000


def test_debugger_requests_reach_the_sandbox_kernel(shared_kernel: SandboxKernel) -> None:
    client = shared_kernel.client
    msg = client.session.msg(
        "debug_request",
        {
            "type": "request",
            "seq": 1,
            "command": "initialize",
            "arguments": {
                "clientID": "test",
                "adapterID": "python",
                "pathFormat": "path",
                "linesStartAt1": True,
                "columnsStartAt1": True,
            },
        },
    )
    client.control_channel.send(msg)
    reply = client.get_control_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
        reply = client.get_control_msg(timeout=30)
    assert reply["msg_type"] == "debug_reply"
    assert reply["content"]["success"] is True


def test_start_up_sends_no_status_spam(sandbox_image: str) -> None:
    """As ipykernel: at most one parentless 'starting', no idle for the proxy's own handshake, and every
    other status belongs to a request of this client, also while a cold sandbox comes up."""
    kernel = start_sandbox_kernel()
    try:
        run = kernel.run("print('up')", timeout=120)
        assert run.stdout.endswith("up\n")
        statuses = []
        while True:
            try:
                message = kernel.client.get_iopub_msg(timeout=1)
            except queue.Empty:
                break
            if message["msg_type"] == "status":
                statuses.append(message)
        parentless = [m["content"]["execution_state"] for m in statuses if not m["parent_header"]]
        assert parentless in ([], ["starting"]), parentless
        assert all(
            m["parent_header"].get("session") == kernel.client.session.session for m in statuses if m["parent_header"]
        )
    finally:
        kernel.shutdown()
