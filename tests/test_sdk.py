"""The Python SDK (jupyter_sandbox.client) against a real Jupyter server and real sandboxes: every
method, bad input as typed errors carrying the server's message, and a terminal driven to exit."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, git_http_server, network_subnet, start_jupyter_server, wait_until

from jupyter_sandbox.client import (
    AsyncSandbox,
    AuthenticationFailed,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    Sandbox,
    SandboxNotFound,
)
from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

NETWORK = "jupyter-sandbox-sdktest"
GIT_USER, GIT_TOKEN = "bob", "sdk-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def git_server(docker_backend: DockerBackend, sandbox_image: str) -> Iterator[str]:
    with git_http_server(docker_backend, sandbox_image, NETWORK, GIT_USER, GIT_TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def server(git_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server, process = start_jupyter_server(
        tmp_path_factory.mktemp("root"),
        [f"--SandboxManager.network_name={NETWORK}", "--SandboxManager.dns_in_allow_mode=True"],
    )
    yield server
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def sb(server: Server, docker_backend: DockerBackend, git_server: str) -> Iterator[Sandbox]:
    subnet = network_subnet(docker_backend, NETWORK)
    sandbox = Sandbox.create(
        url=server.base,
        token=server.token,
        memory="1g",
        labels={"team": "sdk"},
        network={"mode": "allow", "cidrs": [subnet]},
        env={"WHO": "sdk"},
    )
    yield sandbox
    try:
        sandbox.delete()
    except NotFound:
        pass
    if any(s.id == sandbox.id for s in SandboxManager(backend=docker_backend).list()):
        SandboxManager(backend=docker_backend).remove(sandbox.id)


@pytest.fixture(scope="module")
def kernel_sb(server: Server) -> Iterator[Sandbox]:
    sandbox = Sandbox.create(url=server.base, token=server.token, language="python")
    yield sandbox
    sandbox.delete()


def test_create_get_list_and_labels(server: Server, sb: Sandbox, docker_backend: DockerBackend) -> None:
    assert sb.info.running and sb.info.raw["spec"]["memory"] == 1024**3
    assert sb.info.labels == {"team": "sdk"}  # its creator's labels only, not the image's or the project's
    [container] = [c for c in docker_backend.client.containers.list() if c.name and sb.id in c.name]
    assert container.labels.get("team") == "sdk"
    again = Sandbox.get(sb.id, url=server.base, token=server.token)
    assert again.id == sb.id and again.info.raw["limits"] and again.info.labels == {"team": "sdk"}
    assert sb.id in [s.id for s in Sandbox.list(url=server.base, token=server.token)]
    listed = Sandbox.list(url=server.base, token=server.token, labels={"team": "sdk"})
    assert [s.id for s in listed] == [sb.id] and listed[0].labels == {"team": "sdk"}
    assert Sandbox.list(url=server.base, token=server.token, labels={"team": "other"}) == []
    assert Sandbox.list(url=server.base, token=server.token, labels={"team": "sdk", "x": "y"}) == []
    with pytest.raises(InvalidRequest, match="KEY=VALUE"):
        Sandbox.list(url=server.base, token=server.token, labels={"": "x"})


def test_environment_gives_the_server(server: Server, sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_SANDBOX_URL", server.base)
    monkeypatch.setenv("JUPYTER_SANDBOX_TOKEN", server.token)
    assert sb.id in [s.id for s in Sandbox.list()]


def test_bad_input_is_a_typed_error_with_the_servers_message(server: Server, sb: Sandbox) -> None:
    with pytest.raises(SandboxNotFound) as missing:
        Sandbox.get("0123456789ab", url=server.base, token=server.token)
    assert missing.value.status == 404 and "no sandbox" in missing.value.message
    with pytest.raises(InvalidRequest) as bad:
        Sandbox.create(url=server.base, token=server.token, memory="lots")
    assert bad.value.status == 400 and "memory" in bad.value.message
    with pytest.raises(InvalidRequest) as bad_policy:
        sb.network.set("everything")
    assert "mode" in bad_policy.value.message or "everything" in bad_policy.value.message
    with pytest.raises(InvalidRequest):
        sb.process.exec("true", timeout=99999)
    with pytest.raises(InvalidRequest):
        sb.fs.info("../../etc/passwd")
    with pytest.raises(NotFound) as no_file:
        sb.fs.info("no/such/file")
    assert no_file.value.status == 404
    with pytest.raises(AuthenticationFailed):
        Sandbox.list(url=server.base, token="wrong")
    with pytest.raises(ConnectionFailed):
        Sandbox.list(url="ftp://example", token="x")
    with pytest.raises(InvalidRequest) as spec_with_kernel:
        Sandbox.create(url=server.base, token=server.token, language="python", cpu=1)
    assert "cpu" in spec_with_kernel.value.message
    with pytest.raises(InvalidRequest):
        Sandbox.create(url=server.base, token=server.token, language="cobol")


def test_exec_argv_cwd_env_timeout(sb: Sandbox) -> None:
    result = sb.process.exec(["printf", "%s|", "a b", "$(id)", ";rm -rf ~"])
    assert result.ok and result.stdout == "a b|$(id)|;rm -rf ~|"
    sb.fs.mkdir("work")
    result = sb.process.exec("pwd; echo $WHO $EXTRA; echo oops >&2; exit 3", cwd="work", env={"EXTRA": "x"})
    assert result.exit_code == 3 and result.stdout.split() == ["/home/sandbox/work", "sdk", "x"]
    assert result.stderr.strip() == "oops"
    slow = sb.process.exec("sleep 5", timeout=0.5)
    assert slow.timed_out and not slow.ok


def test_background_sessions_and_streamed_logs(sb: Sandbox) -> None:
    session = sb.process.create_session("sdk-session", cwd="work")
    assert session.run("echo here; pwd").stdout.split() == ["here", "/home/sandbox/work"]
    cmd = session.start("for i in 1 2 3; do echo line$i; sleep 0.2; done; echo bad >&2; exit 4")
    chunks = list(cmd.follow())
    assert "".join(c.text for c in chunks if c.stream == "stdout") == "line1\nline2\nline3\n"
    assert chunks[-1].exit_code == 4
    assert cmd.logs().stderr == "bad\n"
    reader = sb.process.start(["python3", "-c", "print(input()[::-1])"])
    reader.send_input("olleh\n")
    assert reader.wait(timeout=30).stdout == "hello\n"
    sleeper = session.start("sleep 60")
    sleeper.kill()
    assert sleeper.wait(timeout=30).exit_code != 0
    assert "sdk-session" in [s.id for s in sb.process.sessions()]
    session.delete()
    with pytest.raises(NotFound):
        sb.process.get_session("sdk-session")


def test_files(sb: Sandbox, tmp_path: Path) -> None:
    sb.fs.upload("dir/a.txt", "alpha\nneedle one\n")
    sb.fs.upload("dir/b.py", b"x = 'needle'\n")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40_000)  # 10 MB, streamed both ways
    sb.fs.upload("dir/big.bin", big)
    with open(big, "rb") as handle:
        sb.fs.upload("dir/big2.bin", handle)
    copy = tmp_path / "copy.bin"
    assert sb.fs.download_to("dir/big2.bin", copy) == big.stat().st_size
    assert copy.read_bytes() == big.read_bytes()
    assert sb.fs.read_text("dir/a.txt") == "alpha\nneedle one\n"
    names = {e.name for e in sb.fs.list("dir")}
    assert names == {"a.txt", "b.py", "big.bin", "big2.bin"}
    info = sb.fs.info("dir/a.txt")
    assert info.type == "file" and info.size == 17
    assert sb.fs.search("*.py", "dir") == ["dir/b.py"] or sb.fs.search("*.py", "dir")[0].endswith("b.py")
    matches = sb.fs.find("needle", "dir")
    assert sorted(m.file.rsplit("/", 1)[-1] for m in matches) == ["a.txt", "b.py"]
    sb.fs.replace(["dir/a.txt"], "needle", "pin")
    assert "pin one" in sb.fs.read_text("dir/a.txt")
    sb.fs.move("dir/a.txt", "dir/c.txt")
    assert not sb.fs.exists("dir/a.txt") and sb.fs.exists("dir/c.txt")
    sb.fs.chmod("dir/c.txt", mode="600")
    assert sb.fs.info("dir/c.txt").mode.endswith("600")
    with tarfile.open(fileobj=io.BytesIO(sb.fs.download("dir"))) as archive:
        assert any(n.endswith("c.txt") for n in archive.getnames())
    sb.fs.remove("dir", recursive=True)
    assert not sb.fs.exists("dir")


def test_git(sb: Sandbox, git_server: str) -> None:
    sb.process.exec(["git", "config", "--global", "init.defaultBranch", "main"])
    path = sb.git.clone(git_server, path="repo", username=GIT_USER, password=GIT_TOKEN)
    assert path.endswith("repo")
    sb.fs.upload("repo/hello.txt", "hi\n")
    status = sb.git.status("repo")
    assert [f.path for f in status.files if f.untracked] == ["hello.txt"]
    assert [f.path for f in sb.git.add(["hello.txt"], "repo").files if f.staged] == ["hello.txt"]
    assert len(sb.git.commit("first", "Bob", "bob@example.org", "repo")) >= 7
    sb.git.push("repo", username=GIT_USER, password=GIT_TOKEN)
    assert sb.git.create_branch("feature", "repo").branches
    assert sb.git.checkout("feature", "repo").current == "feature"
    sb.git.checkout(status.branch or "main", "repo")
    assert "feature" not in sb.git.delete_branch("feature", "repo").branches
    assert "feature" not in sb.git.branches("repo").branches
    sb.git.pull("repo", username=GIT_USER, password=GIT_TOKEN)


def test_terminal_driven_to_exit(sb: Sandbox) -> None:
    seen: list[bytes] = []
    sb.fs.mkdir("work")
    term = sb.pty(cols=100, rows=30, cwd="work", env={"MOOD": "calm"}, id="sdk-term", on_data=seen.append)
    assert term.id == "sdk-term" and term.info.running and term.info.cwd == "/home/sandbox/work"
    term.send_input("stty size; pwd; echo mood=$MOOD\n")
    term.wait_for("mood=calm")
    assert b"30 100" in bytes(term.output)
    assert term.resize(120, 40).cols == 120
    term.send_input("stty size\n")
    term.wait_for("40 120")
    assert b"/home/sandbox/work" in bytes(term.output)
    term.close()  # the PTY keeps running without a connection
    assert sb.ptys.get("sdk-term").running and "sdk-term" in [p.id for p in sb.ptys.list()]
    again = sb.ptys.connect("sdk-term")
    again.wait_for("mood=calm")  # replayed
    again.send_input("exit 7\n")
    assert again.wait(timeout=30) == 7
    assert seen
    assert sb.ptys.get("sdk-term").exit_code == 7
    after = sb.ptys.connect("sdk-term")  # exited: the replay and the exit code
    assert after.wait(timeout=30) == 7 and b"mood=calm" in bytes(after.output)
    with pytest.raises(InvalidRequest):
        sb.pty(cols=0)
    with pytest.raises(Conflict, match="sdk-term"):
        sb.pty(id="sdk-term")
    with pytest.raises(InvalidRequest, match="inside the sandbox"):
        sb.pty(cwd="/etc")
    with pytest.raises(NotFound, match="nope"):
        sb.ptys.connect("nope")
    killed = sb.pty()
    killed.send_input("sleep 100\n")
    assert killed.kill().exit_code == -9
    assert killed.wait(timeout=30) == -9


def test_preview_link_a_script_can_fetch(server: Server, sb: Sandbox) -> None:
    session = sb.process.create_session("web")
    session.start("python3 -m http.server 8123")
    assert wait_until(lambda: 8123 in sb.ports(), timeout=30)
    sb.fs.upload("index.html", "<p>from the sandbox</p>")
    preview = sb.preview(8123, expires_in=600)
    assert preview.token and preview.url.startswith("http")
    # A script fetches it through the SDK (the *.localhost name is sent as Host to the server's address).
    response = preview.fetch("/index.html")
    assert response.status_code == 200 and "from the sandbox" in response.text
    # curl takes *.localhost to loopback itself: the link with its token is fetched as is.
    curl = ["curl", "-s", "--noproxy", "*", "--max-time", "30", preview.fetch_url.replace("/?", "/index.html?")]
    assert "from the sandbox" in subprocess.run(curl, capture_output=True, text=True, timeout=60).stdout
    sb.rotate_previews()
    refused = preview.fetch("/index.html")
    assert refused.status_code in (401, 403)
    with pytest.raises(InvalidRequest):
        sb.preview(70000)
    session.delete()


def test_code_runs_statefully_with_rich_results(kernel_sb: Sandbox) -> None:
    assert kernel_sb.kernel_id
    assert kernel_sb.code.run("x = 20").ok
    printed: list[str] = []
    run = kernel_sb.code.run("print('sum', x + 1); x * 2 + 2", on_stdout=printed.append)
    assert run.text == "42" and run.stdout == "sum 21\n" and printed
    html = kernel_sb.code.run("from IPython.display import HTML, display; display(HTML('<b>bold</b>'))")
    assert html.outputs and html.outputs[0].html == "<b>bold</b>"
    image = kernel_sb.code.run("import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.show()")
    assert any(o.png and o.png.startswith(b"\x89PNG") for o in image.outputs), image
    failed = kernel_sb.code.run("1 / 0")
    assert failed.error and failed.error.name == "ZeroDivisionError" and failed.error.traceback
    # The kernel's sandbox is the sandbox: files written by code are seen over REST.
    kernel_sb.code.run("open('/home/sandbox/from_code.txt', 'w').write('c')")
    assert kernel_sb.fs.read_text("from_code.txt") == "c"
    assert kernel_sb.process.exec("cat from_code.txt").stdout == "c"


def test_code_runs_in_a_sandbox_made_over_rest(server: Server, sb: Sandbox) -> None:
    """A kernel is attached on the first run; it sees the sandbox's files; at its end the sandbox
    stays (running, the API's), and a second SDK object gets a kernel of its own."""
    sb.fs.upload("from-rest.txt", "made over REST")
    first = sb.code.run("open('/home/sandbox/from-rest.txt').read()")
    assert first.text == "'made over REST'", first
    assert sb.code.run("x = 41").error is None and sb.code.run("x + 1").text == "42"
    kernel_id = sb.code.kernel_id
    assert kernel_id and Sandbox.get(sb.id, url=server.base, token=server.token).info.kernel_id == kernel_id
    # Found again while the kernel runs: the same kernel; a second kernel is refused.
    assert Sandbox.get(sb.id, url=server.base, token=server.token).code.run("x").text == "41"
    status, answer = server.request("POST", f"/sandbox/api/sandboxes/{sb.id}/kernel", {})
    assert status == 409 and "in use by kernel" in answer["message"]
    sb.code.detach()
    assert wait_until(lambda: Sandbox.get(sb.id, url=server.base, token=server.token).info.kernel_id is None, 60)
    assert sb.refresh().running and sb.process.exec("cat from-rest.txt").stdout == "made over REST"
    other = Sandbox.get(sb.id, url=server.base, token=server.token)
    assert other.code.run("'x' in dir()").text == "False"  # a fresh kernel, the same files
    other.close()
    assert wait_until(lambda: Sandbox.get(sb.id, url=server.base, token=server.token).info.kernel_id is None, 60)
    with pytest.raises(InvalidRequest):
        sb.code.run("1", language="cobol")


def test_stop_start_and_context_manager_deletes(server: Server, sb: Sandbox) -> None:
    with Sandbox.create(url=server.base, token=server.token) as temp:
        temp.fs.upload("keep.txt", "kept")
        assert temp.stop().state != "running"
        assert temp.start().running
        assert temp.fs.read_text("keep.txt") == "kept"
        made = temp.id
    with pytest.raises(SandboxNotFound):
        Sandbox.get(made, url=server.base, token=server.token)


def test_async_api(server: Server, sb: Sandbox) -> None:
    async def main() -> None:
        box = await AsyncSandbox.get(sb.id, url=server.base, token=server.token)
        results = await asyncio.gather(*(box.process.exec(["echo", str(i)]) for i in range(3)))
        assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
        cmd = await box.process.start("echo a; sleep 0.2; echo b")
        assert [c.text async for c in cmd.follow() if c.text] in (["a\n", "b\n"], ["a\nb\n"])
        await box.close()

    asyncio.run(main())


def test_walkthrough_example(server: Server) -> None:
    env = {**os.environ, "JUPYTER_SANDBOX_URL": server.base, "JUPYTER_SANDBOX_TOKEN": server.token}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "walkthrough_sdk.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "build: 0" in done.stdout
    assert "the app says: Hello from the sandbox!" in done.stdout, done.stdout[-3000:]
    assert "terminal exit code: 0" in done.stdout


def test_argv_is_quoted_and_errors_are_typed_by_status() -> None:
    from jupyter_sandbox.client.errors import Conflict, LimitExceeded, SandboxUnavailable, error_for
    from jupyter_sandbox.client.sandbox import command_line

    assert command_line(["echo", "a b", "$(x)", "'"]) == "echo 'a b' '$(x)' ''\"'\"''"
    with pytest.raises(InvalidRequest):
        command_line([])
    assert isinstance(error_for(404, "there is no sandbox 'x'"), SandboxNotFound)
    assert type(error_for(404, "no such file")) is NotFound
    assert isinstance(error_for(409, "m"), Conflict) and isinstance(error_for(429, "m"), LimitExceeded)
    assert isinstance(error_for(503, "m"), SandboxUnavailable) and error_for(503, "m").message == "m"


@pytest.mark.timeout(600)
def test_create_claims_from_the_warm_pool(docker_backend: DockerBackend, tmp_path: Path) -> None:
    """POST /sandboxes with the pool's spec takes one of the server's warm sandboxes (started and
    answering already), which no kernel can take after it; one with labels is made fresh."""
    log = tmp_path / "server.log"
    server, process = start_jupyter_server(
        tmp_path, ["--SandboxManager.warm_pool_size=1", "--SandboxService.pool_interval=1"], log=log
    )
    manager = SandboxManager(backend=docker_backend)
    made: list[str] = []
    try:
        assert wait_until(lambda: "(server " in log.read_text(), timeout=60)
        server_id = re.search(r"\(server ([0-9a-f]+)\)", log.read_text()).group(1)  # type: ignore[union-attr]

        def pool() -> list[str]:
            """The server's warm sandboxes, once the pool has seen them answer."""
            return [s.id for s in manager.pool_sandboxes(server=server_id) if binding.pool_ready(s.id)]

        assert wait_until(lambda: bool(pool()), timeout=180)
        warm = pool()[0]
        with Sandbox.create(url=server.base, token=server.token) as sb:
            made.append(sb.id)
            assert sb.id == warm and not sb.info.raw["pool"]
            assert sb.process.exec("echo warm").stdout == "warm\n"
            assert warm not in pool() and warm in [s.id for s in Sandbox.list(url=server.base, token=server.token)]
            labelled = Sandbox.create(url=server.base, token=server.token, labels={"kind": "fresh"})
            made.append(labelled.id)
            assert labelled.id != warm and labelled.info.labels == {"kind": "fresh"}
            labelled.delete()
            # The pool fills again; a kernel takes the new one, never the API's.
            assert wait_until(lambda: bool(pool()) and warm not in pool(), timeout=180)
        assert warm not in [s.id for s in manager.list(owner=manager.owner)]  # deleted with the block
    finally:
        process.terminate()
        process.wait(timeout=120)
        for sandbox_id in made:
            try:
                manager.remove(sandbox_id)
            except Exception:
                pass
