"""%sandbox magics, run by the proxy on the host: each subcommand for real, with its bad input."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SandboxKernel, sandbox_containers, start_sandbox_kernel

from jupyter_sandbox.kernel.magics import complete
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.spec import LABEL_KERNEL_ID


@pytest.fixture(scope="module")
def host_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notebook-folder")
    (root / "data.csv").write_text("a,b\n1,2\n")
    (root / ".secret").write_text("hidden")
    (root / "big.bin").write_bytes(b"\0" * 300_000)
    (root / "escape").symlink_to("/etc")
    (root / "passwd-link").symlink_to("/etc/passwd")
    return root


@pytest.fixture(scope="module")
def magic_kernel(
    sandbox_image: str, host_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxKernel]:
    kernel = start_sandbox_kernel(
        extra_argv=[f"--SandboxKernel.host_root={host_root}", "--SandboxKernel.max_transfer_size=200k"],
        tmp_path=tmp_path_factory.mktemp("spec"),
    )
    yield kernel
    kernel.shutdown()


def error_of(run) -> str:
    assert run.status == "error", run.stdout
    return run.reply["content"]["evalue"]


def test_status_shows_limits_usage_and_ports(magic_kernel: SandboxKernel) -> None:
    magic_kernel.run(
        "import subprocess, sys\n"
        "server = subprocess.Popen([sys.executable, '-m', 'http.server', '8123'],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nimport time; time.sleep(1)"
    )
    run = magic_kernel.run("%sandbox")
    assert run.status == "ok", run.error
    for word in (
        "sandbox ",
        "running",
        "image     jupyter-sandbox/python",
        "cpu 1 vCPU",
        "memory 1 GiB",
        "pids 512",
        "usage",
        "network",
        "8123",
    ):
        assert word in run.stdout, word
    info = json.loads(magic_kernel.run("%sandbox status --json").stdout)
    assert info["state"] == "running" and info["limits"]["memory"] == 1024**3
    assert info["usage"]["memory_bytes"] > 0 and info["usage"]["pids"] >= 2
    assert 8123 in info["ports"]
    magic_kernel.run("server.kill()")


def test_help_and_per_subcommand_help(magic_kernel: SandboxKernel) -> None:
    run = magic_kernel.run("%sandbox help")
    assert "%sandbox config" in run.stdout and "%%sandbox exec" in run.stdout
    run = magic_kernel.run("%sandbox config --help")
    assert run.status == "ok" and "--memory" in run.stdout and "usage: %sandbox config" in run.stdout


@pytest.mark.parametrize(
    "line, message",
    [
        ("%sandbox explode", "unknown subcommand 'explode'"),
        ("%sandbox config --cpu -1", "must be a positive number"),
        ("%sandbox config --cpu lots", "expected a number"),
        ("%sandbox config --memory 12 bananas", "unrecognized arguments"),
        ("%sandbox config --memory lots", "expected a size"),
        ("%sandbox config --memory 0", "more than zero"),
        ("%sandbox config --memory 100g", "above the operator's maximum of 8 GiB"),
        ("%sandbox config --cpu 64", "above the operator's maximum of 4 vCPUs"),
        ("%sandbox config --pids 100000", "above the operator's maximum"),
        ("%sandbox config --disk 1t", "above the operator's maximum"),
        ("%sandbox config --image evil/image:latest", "not allowed here"),
        ("%sandbox config --env 1=2", "not a valid variable name"),
        ("%sandbox config --env NOEQUALS", "expected KEY=VALUE"),
        ("%sandbox config --cell-timeout -5", "must be 0"),
        ("%sandbox config --colour red", "unrecognized arguments: --colour"),
        ("%sandbox status --verbose", "unrecognized arguments"),
        ("%sandbox exec", "give a command to run"),
        ("%sandbox exec --timeout nope true", "expected a number"),
        ("%sandbox restart --soft", "unrecognized arguments"),
        ("%sandbox ls a b", "unrecognized arguments"),
        ("%sandbox upload", "the following arguments are required"),
        ("%sandbox status 'unclosed", "cannot parse the line"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    magic_kernel: SandboxKernel, docker_backend: DockerBackend, line: str, message: str
) -> None:
    before = sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: magic_kernel.kernel_id})[0].id
    magic_kernel.run("canary = 'alive'")
    assert message in error_of(magic_kernel.run(line))
    assert magic_kernel.run("print(canary)").stdout == "alive\n"
    after = sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: magic_kernel.kernel_id})[0]
    assert after.id == before and after.state == "running"


def test_exec_streams_output_and_reports_the_exit_code(magic_kernel: SandboxKernel) -> None:
    seen: list[tuple[float, str]] = []
    run = magic_kernel.run(
        "%sandbox exec for i in 1 2 3; do echo line $i; sleep 0.4; done; id -u",
        output_hook=lambda m: (
            seen.append((time.monotonic(), m["content"].get("text", ""))) if m["msg_type"] == "stream" else None
        ),
    )
    assert run.status == "ok", run.error
    assert run.stdout == "line 1\nline 2\nline 3\n1000\n"
    assert seen[-1][0] - seen[0][0] > 0.5  # it arrived as it came, not at the end
    run = magic_kernel.run("%sandbox exec echo oops >&2; exit 3")
    assert run.stderr == "oops\n"
    assert "exited with code 3" in error_of(run)


def test_cell_exec_runs_a_script(magic_kernel: SandboxKernel) -> None:
    run = magic_kernel.run("%%sandbox exec\ncd /tmp\nprintf 'a\\nb\\n' > list.txt\nwc -l < list.txt\npwd")
    assert run.stdout == "2\n/tmp\n"


def test_exec_is_stopped_by_an_interrupt(magic_kernel: SandboxKernel) -> None:
    reply = magic_kernel.interrupted("%sandbox exec sleep 300", magic_kernel.km.interrupt_kernel)
    assert reply["content"]["status"] == "error" and "interrupted" in reply["content"]["evalue"]
    assert "sleep 300" not in magic_kernel.run("%sandbox exec ps -eo cmd").stdout


def test_exec_timeout_kills_the_command(magic_kernel: SandboxKernel) -> None:
    assert "longer than 0.5 s" in error_of(magic_kernel.run("%sandbox exec --timeout 0.5 sleep 30"))


def test_magic_lines_and_code_run_in_order(magic_kernel: SandboxKernel) -> None:
    run = magic_kernel.run("x = 20\nprint('before')\n%sandbox exec echo middle\nprint('after', x + 1)\nx * 2")
    assert run.status == "ok", run.error
    assert run.stdout == "before\nmiddle\nafter 21\n"
    assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "40"
    # An error in the code stops the cell: the magic after it does not run.
    run = magic_kernel.run("1 / 0\n%sandbox exec echo never")
    assert run.status == "error" and run.reply["content"]["ename"] == "ZeroDivisionError"
    assert "never" not in run.stdout


def test_input_works_in_a_mixed_cell(magic_kernel: SandboxKernel) -> None:
    run = magic_kernel.run(
        "%sandbox exec true\nname = input('who? ')\nprint('hi', name)",
        stdin_hook=lambda msg: magic_kernel.client.input("Grace"),
    )
    assert run.status == "ok", run.error
    assert run.stdout.endswith("hi Grace\n")


def test_ls(magic_kernel: SandboxKernel) -> None:
    magic_kernel.run(
        "import os; os.makedirs('/home/sandbox/folder', exist_ok=True); open('/home/sandbox/folder/f.txt','w').write('12345')"
    )
    run = magic_kernel.run("%sandbox ls folder")
    assert "/home/sandbox/folder:" in run.stdout and "f.txt" in run.stdout and "5" in run.stdout
    assert "does not exist" in error_of(magic_kernel.run("%sandbox ls /nope"))


def test_upload_and_download_round_trip(magic_kernel: SandboxKernel, host_root: Path) -> None:
    run = magic_kernel.run("%sandbox upload data.csv")
    assert run.status == "ok", run.error
    assert "uploaded data.csv (8 bytes) to /home/sandbox/data.csv" in run.stdout
    assert magic_kernel.run("print(open('/home/sandbox/data.csv').read())").stdout == "a,b\n1,2\n\n"
    magic_kernel.run("open('/home/sandbox/result.txt', 'w').write('computed')")
    run = magic_kernel.run("%sandbox download result.txt out.txt")
    assert run.status == "ok", run.error
    # Downloads land in a folder of their own (tests/test_downloads.py), never beside the notebook.
    sandbox_id = json.loads(magic_kernel.run("%sandbox status --json").stdout)["id"]
    assert (host_root / "sandbox-downloads" / sandbox_id / "out.txt").read_text() == "computed"
    assert not (host_root / "out.txt").exists()


@pytest.mark.parametrize(
    "line, message",
    [
        ("%sandbox upload ../../etc/passwd", "'..' is not allowed"),
        ("%sandbox upload /etc/passwd", "outside the notebook's folder"),
        ("%sandbox upload escape/passwd", "leads outside"),
        ("%sandbox upload passwd-link", "leads outside"),
        ("%sandbox upload .secret", "hidden files"),
        ("%sandbox upload missing.txt", "does not exist"),
        ("%sandbox upload big.bin", "above the limit"),
        ("%sandbox download /etc/hostname ../stolen", "'..' is not allowed"),
        ("%sandbox download /etc/hostname /tmp/stolen", "is absolute"),
        ("%sandbox download /etc/hostname .bashrc", "hidden files"),
        ("%sandbox download /nope/missing.txt", "does not exist"),
    ],
)
def test_host_paths_are_confined(magic_kernel: SandboxKernel, host_root: Path, line: str, message: str) -> None:
    before = sorted(p.name for p in host_root.iterdir())
    assert message in error_of(magic_kernel.run(line))
    assert sorted(p.name for p in host_root.iterdir()) == before
    assert not Path("/tmp/stolen").exists()


def test_download_larger_than_the_limit_is_refused(magic_kernel: SandboxKernel, host_root: Path) -> None:
    magic_kernel.run("open('/home/sandbox/large.bin', 'wb').write(b'x' * 300_000)")
    assert "more than the limit" in error_of(magic_kernel.run("%sandbox download large.bin"))
    assert not [p for p in host_root.rglob("*") if "large.bin" in p.name or ".download-" in p.name]


def test_completion_of_subcommands_and_options(magic_kernel: SandboxKernel) -> None:
    def matches(code: str) -> list[str]:
        msg_id = magic_kernel.client.complete(code, len(code))
        reply = magic_kernel.client.get_shell_msg(timeout=10)
        assert reply["parent_header"]["msg_id"] == msg_id
        return reply["content"]["matches"]

    assert matches("%sandbox co") == ["config"]
    assert set(matches("%sandbox ")) >= {"status", "config", "exec", "upload", "download", "restart", "stop"}
    assert matches("%sandbox config --me") == ["--memory"]
    assert matches("%sandbox restart --") == ["--hard", "--help"]
    assert "print" in matches("pri")  # ordinary completion still comes from the sandbox
    assert complete("x = 1", 5) is None


def test_config_live_and_by_restart(sandbox_kernel: SandboxKernel, docker_backend: DockerBackend) -> None:
    kernel = sandbox_kernel
    kernel.run("kept = 'variable'\nopen('/home/sandbox/kept.txt', 'w').write('file')")
    before = sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel.kernel_id})[0].id
    run = kernel.run("%sandbox config --cpu 2 --memory 2g")
    assert run.status == "ok", run.error
    assert "changed live" in run.stdout
    limits = kernel.run(
        "print(open('/sys/fs/cgroup/memory.max').read() if __import__('os').path.exists("
        "'/sys/fs/cgroup/memory.max') else open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read())"
    )
    assert limits.stdout.strip() == str(2 * 1024**3)
    assert kernel.run("print(kept)").stdout == "variable\n"  # live: nothing restarted

    run = kernel.run("%sandbox config --pids 256 --env GREETING=hello")
    assert run.status == "ok", run.error
    assert "restarting the sandbox" in run.stdout
    after = sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel.kernel_id})[0].id
    assert after != before
    run = kernel.run(
        "import os\nprint(os.environ['GREETING'], open('/home/sandbox/kept.txt').read(), 'kept' in globals())\n"
        "print(open('/sys/fs/cgroup/pids.max' if os.path.exists('/sys/fs/cgroup/pids.max') else "
        "'/sys/fs/cgroup/pids/pids.max').read().strip())"
    )
    assert run.stdout == "hello file False\n256\n"
    info = json.loads(kernel.run("%sandbox status --json").stdout)
    assert info["limits"]["cpu"] == 2 and info["limits"]["memory"] == 2 * 1024**3 and info["limits"]["pids"] == 256


def test_cell_timeout_interrupts_then_restarts(sandbox_kernel: SandboxKernel) -> None:
    kernel = sandbox_kernel
    assert "cell timeout: 1 s" in kernel.run("%sandbox config --cell-timeout 1").stdout
    run = kernel.run("import time\ntime.sleep(30)", timeout=30)
    assert run.status == "error" and run.reply["content"]["ename"] == "KeyboardInterrupt"
    assert "limit of 1 s and was interrupted" in run.stderr
    assert kernel.run("print('usable')").stdout == "usable\n"
    # A cell that ignores the interrupt is ended by restarting the Python process.
    run = kernel.run("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)", timeout=60)
    assert run.status == "error"
    assert "did not stop within" in run.reply["content"]["evalue"]
    assert kernel.run("print('fresh')", timeout=60).stdout == "fresh\n"
    assert "cell timeout: none" in kernel.run("%sandbox config --cell-timeout 0").stdout


def test_restart_hard_restart_and_stop(sandbox_kernel: SandboxKernel, docker_backend: DockerBackend) -> None:
    kernel = sandbox_kernel
    kernel.run("v = 1\nopen('/home/sandbox/f.txt', 'w').write('kept')")
    run = kernel.run("%sandbox restart\nprint('v' in globals(), open('/home/sandbox/f.txt').read())")
    assert run.status == "ok", run.error
    assert run.stdout.endswith("False kept\n")
    before = sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel.kernel_id})[0].id
    run = kernel.run("%sandbox restart --hard")
    assert run.status == "ok", run.error
    assert sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel.kernel_id})[0].id != before
    assert kernel.run("print(open('/home/sandbox/f.txt').read())").stdout == "kept\n"
    run = kernel.run("%sandbox stop")
    assert run.status == "ok" and "stopped" in run.stdout
    assert sandbox_containers(docker_backend, **{LABEL_KERNEL_ID: kernel.kernel_id})[0].state == "exited"
    run = kernel.run("print(open('/home/sandbox/f.txt').read())", timeout=120)
    assert run.status == "ok", run.error
    assert run.stdout.endswith("kept\n")


def test_output_limit_is_configurable(sandbox_image: str, tmp_path: Path) -> None:
    kernel = start_sandbox_kernel(extra_argv=["--SandboxKernel.output_limit=2k"], tmp_path=tmp_path)
    try:
        run = kernel.run(
            "import sys, time\nfor i in range(50):\n    print('x' * 99)\n    sys.stdout.flush(); time.sleep(0.01)"
        )
        assert run.status == "ok"
        assert len(run.stdout) <= 2048 + 100
        assert run.stderr.count("passed the limit of 2 KiB") == 1
        assert kernel.run("print('next cell fine')").stdout == "next cell fine\n"
    finally:
        kernel.shutdown()


def test_transfer_can_be_turned_off(sandbox_image: str, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    kernel = start_sandbox_kernel(
        extra_argv=["--SandboxKernel.allow_file_transfer=False", f"--SandboxKernel.host_root={tmp_path}"],
        tmp_path=tmp_path,
    )
    try:
        assert "turned off by the operator" in error_of(kernel.run("%sandbox upload f.txt"))
    finally:
        kernel.shutdown()


def test_magics_work_before_the_sandbox_is_up(sandbox_image: str) -> None:
    kernel = start_sandbox_kernel(extra_env={"DOCKER_HOST": "tcp://127.0.0.1:9"})
    try:
        run = kernel.run("%sandbox help")
        assert run.status == "ok" and "%sandbox config" in run.stdout
        # %sandbox status waits for the sandbox as code does, and says why there is none.
        assert "could not be started" in error_of(kernel.run("%sandbox status"))
    finally:
        kernel.shutdown()
    assert os.environ.get("DOCKER_HOST") != "tcp://127.0.0.1:9"
