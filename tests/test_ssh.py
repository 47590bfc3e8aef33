"""SSH into a sandbox through the gateway, with Debian's OpenSSH client against a real Jupyter server
(gateway on a free loopback port) and a real sandbox."""

from __future__ import annotations

import concurrent.futures
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from conftest import Server, free_port, host_http_server, run_over_websocket, start_jupyter_server, wait_until

from jupyter_sandbox.sandbox import secrets as sandbox_secrets

pytestmark = pytest.mark.timeout(600)

SSH_OPTIONS = [
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=20",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityFile=/dev/null",
    "-F", "/dev/null",
]  # fmt: skip


class Gateway:
    def __init__(self, server: Server, port: int, sandbox_id: str, other_id: str, log: Path) -> None:
        self.server, self.port, self.sandbox_id, self.other_id = server, port, sandbox_id, other_id
        self.log = log

    def token(self, sandbox_id: str | None = None, **body: object) -> str:
        status, answer = self.server.request(
            "POST", f"/sandbox/api/sandboxes/{sandbox_id or self.sandbox_id}/ssh", body
        )
        assert status == 201, answer
        return answer["token"]

    def ssh(
        self, user: str, *args: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", *SSH_OPTIONS, "-p", str(self.port), f"{user}@127.0.0.1", *args],
            input=input,
            capture_output=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def gateway(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    root = tmp_path_factory.mktemp("ssh-root")
    log = Path(os.environ.get("SSH_TEST_SERVER_LOG") or root / "server.log")
    # Host state of its own (host key, token hashes, registered keys), shared with this process.
    state = {sandbox_secrets.SECRET_ENV: str(tmp_path_factory.mktemp("ssh-state") / "host.secret")}
    saved = os.environ.get(sandbox_secrets.SECRET_ENV)
    os.environ.update(state)
    server, process = start_jupyter_server(
        root,
        [f"--SSHGateway.port={port}", "--SSHGateway.failure_delay=0.2", "--SSHGateway.recheck_interval=1"],
        log=log,
        env=state,
    )
    ids = []
    try:
        for _ in range(2):
            status, answer = server.request("POST", "/sandbox/api/sandboxes", {})
            assert status == 201, answer
            ids.append(answer["id"])
        assert wait_until(lambda: _listening(port), timeout=30)
        yield Gateway(server, port, ids[0], ids[1], log)
    finally:
        for sandbox_id in ids:
            server.request("DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")
        process.terminate()
        process.wait(timeout=30)
        if saved is None:
            os.environ.pop(sandbox_secrets.SECRET_ENV, None)
        else:
            os.environ[sandbox_secrets.SECRET_ENV] = saved


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# -- sessions -------------------------------------------------------------------------------


def test_a_command_runs_in_the_sandbox_with_its_exit_status_and_streams(gateway: Gateway) -> None:
    token = gateway.token()
    done = gateway.ssh(token, "echo out; echo err >&2; id -u; hostname; exit 7")
    assert done.returncode == 7, done
    lines = done.stdout.decode().split()
    assert lines[0] == "out" and lines[1] == "1000"
    assert done.stderr.decode().strip() == "err"
    # stdin reaches the command, and its end is the command's end of input
    done = gateway.ssh(token, "wc -c", input=b"x" * 100000)
    assert done.returncode == 0 and done.stdout.decode().strip() == "100000"


def test_a_shell_has_a_terminal_that_resizes_and_reports_its_exit(gateway: Gateway) -> None:
    token = gateway.token()
    child = pexpect.spawn(
        "ssh", [*SSH_OPTIONS, "-tt", "-p", str(gateway.port), f"{token}@127.0.0.1"], timeout=30, dimensions=(30, 100)
    )
    try:
        child.sendline("echo READY$((6*7)); tty")
        child.expect("READY42")
        child.expect("/dev/pts/")
        child.sendline("stty size")
        child.expect("30 100")
        child.setwinsize(40, 120)
        time.sleep(0.5)
        child.sendline("stty size")
        child.expect("40 120")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3


def test_scp_both_ways_and_sftp(gateway: Gateway, tmp_path: Path) -> None:
    token = gateway.token()
    data = secrets.token_bytes(3 * 1024 * 1024 + 17)
    (tmp_path / "up.bin").write_bytes(data)
    scp = ["scp", *SSH_OPTIONS, "-P", str(gateway.port)]
    done = subprocess.run(
        [*scp, str(tmp_path / "up.bin"), f"{token}@127.0.0.1:up.bin"], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done
    assert (
        gateway.ssh(token, "sha256sum up.bin").stdout.split()[0].decode()
        == __import__("hashlib").sha256(data).hexdigest()
    )
    done = subprocess.run(
        [*scp, f"{token}@127.0.0.1:up.bin", str(tmp_path / "down.bin")], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done
    assert (tmp_path / "down.bin").read_bytes() == data
    batch = tmp_path / "batch"
    batch.write_text(
        "mkdir made\ncd made\nput " + str(tmp_path / "up.bin") + " copy.bin\nls -l\nrename copy.bin moved.bin\nls\n"
    )
    done = subprocess.run(
        ["sftp", *SSH_OPTIONS, "-P", str(gateway.port), "-b", str(batch), f"{token}@127.0.0.1"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done
    assert "moved.bin" in done.stdout.decode()
    assert gateway.ssh(token, "stat -c %s made/moved.bin").stdout.decode().strip() == str(len(data))
    # a path that is not there is a clear error, not a hang
    done = subprocess.run(
        [*scp, f"{token}@127.0.0.1:nothing-here", str(tmp_path / "x")], capture_output=True, timeout=60
    )
    assert done.returncode != 0 and b"No such file" in done.stderr


def _forward(gateway: Gateway, token: str, target: str, command: str = "sleep 20") -> tuple[subprocess.Popen, int]:
    local = free_port()
    process = subprocess.Popen(
        ["ssh", *[o if o != "LogLevel=ERROR" else "LogLevel=INFO" for o in SSH_OPTIONS],
         "-o", "ExitOnForwardFailure=yes", "-p", str(gateway.port), "-L", f"127.0.0.1:{local}:{target}", f"{token}@127.0.0.1", command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert wait_until(lambda: _listening(local), timeout=30)
    return process, local


def _fetch(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks: list[bytes] = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # the client gives up a forward the gateway refused
                chunk = b""
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_the_remote_editor_path_exec_a_script_that_starts_a_server_then_forward_to_it(gateway: Gateway) -> None:
    """What an editor's remote-SSH extension does: pipe a setup script into `bash` over exec, read the
    port it prints, then reach that port with -L."""
    token = gateway.token()
    script = b"""set -e
mkdir -p ~/.editor-server && cd ~/.editor-server
echo editor-says-hello > index.html
nohup python3 -m http.server 8765 --bind 127.0.0.1 >log 2>&1 &
for i in $(seq 100); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8765))' 2>/dev/null && break; sleep 0.1; done
echo "listeningOn==8765=="
"""
    done = gateway.ssh(token, "bash", input=script)
    assert done.returncode == 0 and b"listeningOn==8765==" in done.stdout, done
    process, local = _forward(gateway, token, "localhost:8765")
    try:
        assert b"editor-says-hello" in _fetch(local)
    finally:
        process.kill()


# -- refused ----------------------------------------------------------------------------------


def test_forwarding_reaches_only_the_sandboxes_own_ports(gateway: Gateway) -> None:
    token = gateway.token()
    with host_http_server(b"the host's own server") as host_port:
        # localhost means the sandbox's: the host's server on that port is never reached
        process, local = _forward(gateway, token, f"localhost:{host_port}")
        try:
            assert b"the host's own server" not in _fetch(local)
        finally:
            process.kill()
        for target in (
            f"127.0.0.2:{host_port}",
            f"host.docker.internal:{host_port}",
            "169.254.169.254:80",
            "10.0.0.1:22",
            "example.com:80",
        ):
            process, local = _forward(gateway, token, target)
            try:
                assert _fetch(local) == b""
            finally:
                process.kill()
            _, err = process.communicate(timeout=10)
            # refused by the gateway from the request's text: no connection to it was ever tried
            assert b"administratively prohibited" in err, (target, err)
    assert wait_until(lambda: b"forwarding refused" in gateway.log.read_bytes(), timeout=10)
    assert b"169.254.169.254 port 80" in gateway.log.read_bytes()


def test_remote_forwarding_is_refused(gateway: Gateway) -> None:
    token = gateway.token()
    port = free_port()
    done = subprocess.run(
        ["ssh", *SSH_OPTIONS, "-o", "ExitOnForwardFailure=yes", "-p", str(gateway.port),
         "-R", f"127.0.0.1:{port}:127.0.0.1:22", f"{token}@127.0.0.1", "true"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and b"remote port forwarding failed" in done.stderr.lower(), done


def _refused(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 255 and b"Permission denied" in done.stderr, done


def test_bad_logins_fail_alike(gateway: Gateway) -> None:
    good = gateway.token()
    _refused(gateway.ssh(good[:-1] + ("0" if good[-1] != "0" else "1"), "true"))  # one digit off
    _refused(gateway.ssh(gateway.other_id + good[12:], "true"))  # another sandbox's id on this one's secret
    for garbage in ("root", "sandbox", "a" * 300, "%00", "0123456789ab", gateway.sandbox_id):
        _refused(gateway.ssh(garbage, "true"))
    # the other sandbox's token opens the other sandbox, not this one
    other = gateway.token(gateway.other_id)
    assert gateway.ssh(other, "hostname").stdout != gateway.ssh(good, "hostname").stdout


def test_password_attempts_fail(gateway: Gateway, tmp_path: Path) -> None:
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho hunter2\n")
    askpass.chmod(0o700)
    options = [o for o in SSH_OPTIONS if o != "BatchMode=yes"]
    options[options.index("-o") + 0 : 0] = []
    done = subprocess.run(
        ["ssh", *[o if o != "BatchMode=yes" else "BatchMode=no" for o in SSH_OPTIONS],
         "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=2",
         "-p", str(gateway.port), f"{gateway.sandbox_id}@127.0.0.1", "true"],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"},
    )  # fmt: skip
    _refused(done)
    assert done.stdout == b""


def test_revoked_and_expired_tokens_no_longer_work_and_end_their_sessions(gateway: Gateway) -> None:
    token = gateway.token()
    session = subprocess.Popen(
        ["ssh", *SSH_OPTIONS, "-p", str(gateway.port), f"{token}@127.0.0.1", "echo started; sleep 60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert session.stdout is not None and session.stdout.readline() == b"started\n"
    status, _ = gateway.server.request("DELETE", f"/sandbox/api/sandboxes/{gateway.sandbox_id}/ssh")
    assert status == 204
    session.wait(timeout=30)  # the live session ends too
    _refused(gateway.ssh(token, "true"))
    # expiry: a token whose time is up is refused (its stored expiry moved into the past)
    import json

    from jupyter_sandbox.sandbox.ssh import tokens

    token = gateway.token()
    path = tokens._file(gateway.sandbox_id)
    entries = json.loads(path.read_text())
    for entry in entries:
        entry["expires"] = time.time() - 1
    path.write_text(json.dumps(entries))
    _refused(gateway.ssh(token, "true"))


def test_a_hundred_parallel_failed_logins_leave_the_gateway_usable(gateway: Gateway) -> None:
    token = gateway.token()
    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        results = list(pool.map(lambda i: gateway.ssh(f"nobody{i}", "true", timeout=120), range(100)))
    assert all(r.returncode == 255 for r in results)
    done = gateway.ssh(token, "echo still-here", timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == b"still-here"


# -- REST -------------------------------------------------------------------------------------


def test_rest_issues_tokens_and_refuses_bad_input(gateway: Gateway) -> None:
    box = f"/sandbox/api/sandboxes/{gateway.sandbox_id}/ssh"
    status, answer = gateway.server.request("POST", box, {"expires_in": "30m"})
    assert status == 201 and answer["expires_in"] == 1800
    assert answer["command"] == f"ssh -p {gateway.port} {answer['token']}@localhost"
    assert answer["host_key_fingerprint"].startswith("SHA256:")
    bad: object
    for bad in ("soon", -5, 0, True, "99999d", [], "1h; rm -rf /"):
        status, answer = gateway.server.request("POST", box, {"expires_in": bad})
        assert status == 400 and "expires_in" in answer["message"], (bad, answer)
    for method in ("POST", "DELETE"):
        status, answer = gateway.server.request(
            method, "/sandbox/api/sandboxes/0123456789ab/ssh", {} if method == "POST" else None
        )
        assert status == 404 and "no sandbox" in answer["message"]
    status, _ = gateway.server.request("POST", box, {}, auth=False)
    assert status == 403


# -- the magic and the sandbox's life ----------------------------------------------------------


def test_the_magic_hands_out_a_working_token_and_revokes_it(gateway: Gateway) -> None:
    status, kernel = gateway.server.request("POST", "/api/kernels", {"name": "sandbox-python"})
    assert status == 201, kernel
    try:
        state, text = run_over_websocket(gateway.server, kernel["id"], "%sandbox ssh --expires 10m")
        assert state == "ok", text
        match = re.search(r"ssh -p (\d+) ([0-9a-f]{52})@localhost", text)
        assert match and int(match.group(1)) == gateway.port, text
        assert "SHA256:" in text and "valid until" in text
        token = match.group(2)
        done = gateway.ssh(token, "echo in-the-notebooks-sandbox")
        assert done.returncode == 0 and done.stdout.strip() == b"in-the-notebooks-sandbox"
        for bad, says in (
            ("%sandbox ssh --expires soon", "--expires must be"),
            ("%sandbox ssh --expires 99999d", "--expires must be from"),
            ("%sandbox ssh --colour red", "unrecognized arguments"),
            ("%sandbox ssh --revoke --expires 1h", "--revoke takes no --expires"),
        ):
            state, text = run_over_websocket(gateway.server, kernel["id"], bad)
            assert says in text, (bad, text)
        state, text = run_over_websocket(gateway.server, kernel["id"], "%sandbox ssh --revoke")
        assert state == "ok" and "revoked 1 SSH token" in text, text
        _refused(gateway.ssh(token, "true"))
    finally:
        gateway.server.request("DELETE", f"/api/kernels/{kernel['id']}")


def test_connecting_starts_a_stopped_sandbox_and_deleting_it_ends_its_tokens(gateway: Gateway) -> None:
    status, answer = gateway.server.request("POST", "/sandbox/api/sandboxes", {})
    assert status == 201, answer
    sandbox_id = answer["id"]
    try:
        token = gateway.token(sandbox_id)
        status, answer = gateway.server.request("POST", f"/sandbox/api/sandboxes/{sandbox_id}/stop")
        assert status == 200 and answer["state"] != "running", answer
        done = gateway.ssh(token, "echo woke-up", timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == b"woke-up", done
        assert gateway.server.request("GET", f"/sandbox/api/sandboxes/{sandbox_id}")[1]["state"] == "running"
    finally:
        assert gateway.server.request("DELETE", f"/sandbox/api/sandboxes/{sandbox_id}")[0] == 204
    _refused(gateway.ssh(token, "true"))
    from jupyter_sandbox.sandbox.ssh import tokens

    assert not tokens._file(sandbox_id).exists()  # no hash of it is left on the host


def test_an_upload_cut_short_leaves_the_old_file_in_place(gateway: Gateway, tmp_path: Path) -> None:
    token = gateway.token()
    assert gateway.ssh(token, "echo old > kept.txt").returncode == 0
    (tmp_path / "big.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    upload = subprocess.Popen(
        ["scp", *SSH_OPTIONS, "-l", "8000", "-P", str(gateway.port), str(tmp_path / "big.bin"), f"{token}@127.0.0.1:kept.txt"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(3)
    assert upload.poll() is None, "the upload finished before it could be cut short"
    upload.kill()
    upload.wait()
    time.sleep(1)
    assert gateway.ssh(token, "cat kept.txt").stdout == b"old\n"


def test_a_registered_public_key_logs_in_as_the_sandbox_id(gateway: Gateway, tmp_path: Path) -> None:
    for name in ("mine", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    # Registered by the machine's user, with the CLI (no notebook or API can add a key).
    cli = [sys.executable, "-m", "jupyter_sandbox.cli", "ssh-key"]
    added = subprocess.run([*cli, "add", str(tmp_path / "mine.pub")], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0 and added.stdout.startswith("registered SHA256:"), added
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, timeout=60)
    assert added.stdout.split()[-1] in listed.stdout.split(), listed
    for bad, says in (
        (tmp_path / "mine", "that is a private key"),
        (tmp_path / "nothing-here.pub", "cannot read"),
        (tmp_path / "mine.pub.garbled", "not an OpenSSH public key"),
    ):
        if bad.name.endswith("garbled"):
            bad.write_text("ssh-ed25519 not-base64!!\n")
        refused = subprocess.run([*cli, "add", str(bad)], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and says in refused.stderr, refused

    def login(key: str, user: str) -> subprocess.CompletedProcess:
        options = [o if o != "IdentityFile=/dev/null" else f"IdentityFile={tmp_path / key}" for o in SSH_OPTIONS]
        return subprocess.run(
            ["ssh", *options, "-p", str(gateway.port), f"{user}@127.0.0.1", "echo by-key"],
            capture_output=True,
            timeout=60,
        )

    done = login("mine", gateway.sandbox_id)
    assert done.returncode == 0 and done.stdout.strip() == b"by-key", done
    _refused(login("stranger", gateway.sandbox_id))
    _refused(login("mine", "0123456789ab"))  # a sandbox that is not there
    _refused(login("mine", "root"))


def test_subsystems_other_than_sftp_are_refused(gateway: Gateway) -> None:
    token = gateway.token()
    done = subprocess.run(
        ["ssh", *SSH_OPTIONS, "-p", str(gateway.port), "-s", f"{token}@127.0.0.1", "netconf"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 1 and b"no subsystem 'netconf'" in done.stderr, done
