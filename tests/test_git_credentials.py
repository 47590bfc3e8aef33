"""Git credentials never reach the sandbox: adversarial tests against a real HTTPS git server.

The git server runs on the host's loopback (which no sandbox can reach) with a CA of this test that
the Jupyter server is told to trust (GitCredentialProxy.ca_bundle). While a clone, a pull and a push
with credentials run through the REST API, code in the sandbox tries every channel it has: it scans
/proc/*/environ and /proc/*/cmdline, reads /tmp and its home, redirects git with ~/.gitconfig and
the repository's config (http.proxy, http.<url>.proxy, url.insteadOf, remote URL) to a listener of
its own, puts a `git` of its own first on PATH, plants hooks, asks for git traces, and talks to the
call's proxy port itself. Everything the sandbox could see is then brought to the host and searched
for every form of the secrets; the operations must still have succeeded.
"""

from __future__ import annotations

import base64
import io
import json
import ssl
import subprocess
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import API, Server, box, exec_command, start_jupyter_server, wait_until
from git_http_server import GitServer, make_ca, make_server_cert

from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager

USER, PASSWORD = "carol", "pw-9f8e7d6c5b4a392817060504"
TOKEN = "tok-0a1b2c3d4e5f60718293a4b5c6d7"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = [PASSWORD, TOKEN, BASIC, BASIC[:20], PASSWORD[3:20], TOKEN[4:22]]
EVIL_PORT = 47_123


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(cwd or "/tmp"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "T",
            "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "T",
            "GIT_COMMITTER_EMAIL": "t@example.org",
        },
    ).stdout


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    folder = tmp_path_factory.mktemp("pki")
    trusted, untrusted = make_ca("test git CA"), make_ca("a CA nobody trusts")
    (folder / "ca.pem").write_bytes(trusted[0].public_bytes(serialization.Encoding.PEM))
    cert, key = make_server_cert(trusted, folder, "server")
    other_cert, other_key = make_server_cert(untrusted, folder, "untrusted")
    return {
        "ca": str(folder / "ca.pem"),
        "cert": cert,
        "key": key,
        "untrusted_cert": other_cert,
        "untrusted_key": other_key,
    }


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, str]) -> Iterator[tuple[GitServer, str, Path]]:
    """A bare repository with one commit, served over HTTPS on the host's loopback, Basic and bearer."""
    root = tmp_path_factory.mktemp("srv")
    git("init", "-q", "--bare", "-b", "main", str(root / "repo.git"))
    git("config", "http.receivepack", "true", cwd=root / "repo.git")
    work = root / "seed"
    git("init", "-q", "-b", "main", str(work))
    (work / "README").write_text("seed\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "seed", cwd=work)
    git("push", "-q", str(root / "repo.git"), "main", cwd=work)
    server = GitServer(str(root), basic=(USER, PASSWORD), bearer=TOKEN, tls=(pki["cert"], pki["key"])).start()
    yield server, f"https://127.0.0.1:{server.port}/repo.git", root
    server.stop()


@pytest.fixture(scope="module")
def api_server(pki: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("log") / "server.log"
    server, process = start_jupyter_server(
        tmp_path_factory.mktemp("root"), [f"--GitCredentialProxy.ca_bundle={pki['ca']}", "--debug"], log=log
    )
    server.log = log
    yield server
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def sandbox(api_server: Server, docker_backend: DockerBackend) -> Iterator[str]:
    # The default egress policy: public internet only, the host and its loopback blocked.
    status, created = api_server.request("POST", f"{API}/sandboxes", {"memory": "1g"})
    assert status == 201, created
    yield created["id"]
    if api_server.request("DELETE", f"{API}/sandboxes/{created['id']}")[0] != 204:
        SandboxManager(backend=docker_backend).remove(created["id"])


def put(server: Server, sandbox_id: str, path: str, data: bytes) -> None:
    status, body = server.request(
        "PUT", box(sandbox_id, "/files/content?" + urllib.parse.urlencode({"path": path})), raw=data
    )
    assert status == 200, body


def everything_the_sandbox_sees(server: Server, sandbox_id: str) -> bytes:
    """Every file of the sandbox's home and /tmp, names and contents, as one blob (read on the host)."""
    blob = b""
    for folder in ("/home/sandbox", "/tmp"):
        status, data = server.request(
            "GET", box(sandbox_id, "/files/content?" + urllib.parse.urlencode({"path": folder}))
        )
        assert status == 200
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive:
                blob += member.name.encode() + b"\n"
                if member.isfile():
                    blob += archive.extractfile(member).read() + b"\n"
    return blob


def assert_no_secret(blob: bytes, where: str) -> None:
    for secret in SECRETS:
        assert secret.encode() not in blob, f"a credential is visible in the sandbox: {where}"


HUNTER = Path(__file__).with_name("git_hunter.py")


def test_credentials_stay_on_the_host_whatever_the_sandbox_tries(
    api_server: Server, sandbox: str, remote: tuple[GitServer, str, Path]
) -> None:
    server, url, root = remote
    authority = url.split("/")[2]
    put(api_server, sandbox, "hunt.py", HUNTER.read_bytes())
    # The sandbox's own traps, set before any call: its ~/.gitconfig, a git first on PATH, hooks
    # for any repository made from its template, and a listener that records what reaches it.
    exec_command(api_server, sandbox, f"python3 hunt.py plant {EVIL_PORT} {url}")
    status, _ = api_server.request("POST", box(sandbox, "/sessions"), {"id": "hunter"})
    assert status == 201
    status, command = api_server.request(
        "POST",
        box(sandbox, "/sessions/hunter/commands"),
        {"command": f"python3 hunt.py scan {EVIL_PORT} {authority}", "run_async": True},
    )
    assert status == 202
    logs = box(sandbox, f"/sessions/hunter/commands/{command['id']}/logs")
    assert wait_until(
        lambda: "scanning" in exec_command(api_server, sandbox, "cat loot/state 2>/dev/null")["stdout"], timeout=30
    ), api_server.request("GET", logs)

    # The remote is slow to answer: the clone runs long enough for the scanner to find it.
    server.delay = 1.5
    status, body = api_server.request(
        "POST", box(sandbox, "/git/clone"), {"url": url, "path": "repo", "username": USER, "password": PASSWORD}
    )
    server.delay = 0
    assert status == 200, body
    assert exec_command(api_server, sandbox, "cat repo/README")["stdout"] == "seed\n"

    # Now the repository's own config and hooks are the sandbox's too.
    exec_command(api_server, sandbox, f"python3 hunt.py poison repo {EVIL_PORT} {url}")
    exec_command(
        api_server,
        sandbox,
        "cd repo && echo two >> README && git -c user.name=A -c user.email=a@example.org commit -qam two",
    )
    status, body = api_server.request("POST", box(sandbox, "/git/push"), {"path": "repo", "token": TOKEN})
    assert status == 200, body
    assert "two" in git("log", "--format=%s", "main", cwd=root / "repo.git")

    # A commit made elsewhere comes down with a pull (Basic again).
    work = root / "seed"
    git("pull", "-q", str(root / "repo.git"), "main", cwd=work)
    (work / "THIRD").write_text("three\n")
    git("add", "THIRD", cwd=work)
    git("commit", "-q", "-m", "three", cwd=work)
    git("push", "-q", str(root / "repo.git"), "main", cwd=work)
    status, body = api_server.request(
        "POST", box(sandbox, "/git/pull"), {"path": "repo", "username": USER, "password": PASSWORD}
    )
    assert status == 200, body
    assert exec_command(api_server, sandbox, "cat repo/THIRD")["stdout"] == "three\n"
    status, state = api_server.request("GET", box(sandbox, "/git/status?path=repo"))
    assert state["ahead"] == 0 and state["behind"] == 0, state

    exec_command(api_server, sandbox, "touch loot/stop")
    assert wait_until(lambda: "stopped" in exec_command(api_server, sandbox, "cat loot/state")["stdout"], timeout=30)
    report = json.loads(exec_command(api_server, sandbox, "cat loot/report.json")["stdout"])

    # The attacks were real: the scanner saw git's process and reached the call's proxy port; the hooks
    # ran during the push and the pull's fetch with git's environment; the traps were in place.
    assert report["saw_git"], report
    assert report["proxy_ports"], report
    assert {"pre-push", "reference-transaction"} <= set(report["hooks"]), report
    answers = report["proxy_answers"]
    assert any(a.startswith("HTTP/1.1 200") for _, a in answers), answers  # the same repository, during the call
    refused = {name for name, answer in answers if answer.startswith(("HTTP/1.1 403", "HTTP/1.1 400"))}
    assert {"other-repo", "other-service", "other-host", "trace-method", "dumb-http"} <= set(refused), answers
    # Nothing reached the sandbox's own listener from the API's git.
    assert report["listener_hits"] == 0, report

    # ...and nowhere in all the sandbox can see is the secret, in any form.
    assert_no_secret(everything_the_sandbox_sees(api_server, sandbox), "home or /tmp")
    # The remote got the credential only on the repository's git paths.
    assert server.seen
    for request in server.seen:
        if request["authorization"]:
            assert request["path"].startswith("/repo.git/info/refs?service=git-") or request["path"] in (
                "/repo.git/git-upload-pack",
                "/repo.git/git-receive-pack",
            ), request
    assert {r["authorization"] for r in server.seen if r["authorization"]} <= {f"Basic {BASIC}", f"Bearer {TOKEN}"}
    # Neither in the server's log.
    assert_no_secret(api_server.log.read_bytes(), "the Jupyter server's log")


def test_credentials_go_only_where_the_call_named(
    api_server: Server, sandbox: str, pki: dict[str, str], remote: tuple[GitServer, str, Path]
) -> None:
    server, url, _ = remote
    before = len(server.seen)

    def clone(body: dict) -> tuple[int, dict]:
        return api_server.request("POST", box(sandbox, "/git/clone"), body)

    # Credentials inside the URL, or both kinds at once: refused before anything runs.
    for body, message in (
        ({"url": url.replace("https://", f"https://{USER}:{PASSWORD}@"), "path": "x1"}, "not in the URL"),
        ({"url": url.replace("https://", f"https://{TOKEN}@"), "path": "x1", "password": PASSWORD}, "not in the URL"),
        ({"url": url, "path": "x1", "token": TOKEN, "password": PASSWORD}, "not both"),
        ({"url": url, "path": "x1", "password": "a\r\nX-Injected: 1"}, "control characters"),
        ({"url": url, "path": "x1", "username": USER}, "needs a password"),
        ({"url": "git://127.0.0.1/repo.git", "path": "x1", "token": TOKEN}, "https://"),
    ):
        status, answer = clone(body)
        assert status == 400 and message in answer["message"], (body, answer)
        assert_no_secret(json.dumps(answer).encode(), "an error message")

    # A wrong password: git's refusal, without the password in it.
    status, answer = clone({"url": url, "path": "x2", "username": USER, "password": "wrong-pass-7777"})
    assert status == 400 and "wrong-pass-7777" not in json.dumps(answer), answer

    # A push with credentials for a repository the host did not clone: the remote must be named.
    exec_command(api_server, sandbox, f"git init -q own && cd own && git remote add origin {url}")
    status, answer = api_server.request("POST", box(sandbox, "/git/push"), {"path": "own", "token": TOKEN})
    assert status == 400 and "give url" in answer["message"], answer

    # A remote that redirects to another server: git is refused there, the credential never follows.
    victim = GitServer(str(remote[2]), basic=(USER, PASSWORD), tls=(pki["cert"], pki["key"])).start()
    redirector = redirecting_server(pki, f"https://127.0.0.1:{victim.port}/repo.git/info/refs?service=git-upload-pack")
    try:
        status, answer = clone(
            {
                "url": f"https://127.0.0.1:{redirector.server_address[1]}/repo.git",
                "path": "x3",
                "username": USER,
                "password": PASSWORD,
            }
        )
        assert status == 400 and "only for" in answer["message"], answer
        assert victim.seen == []
    finally:
        victim.stop()
        redirector.shutdown()
        redirector.server_close()

    # A remote whose certificate the host does not trust: nothing is sent to it, the caller is told.
    untrusted = GitServer(
        str(remote[2]), basic=(USER, PASSWORD), tls=(pki["untrusted_cert"], pki["untrusted_key"])
    ).start()
    try:
        status, answer = clone(
            {
                "url": f"https://127.0.0.1:{untrusted.port}/repo.git",
                "path": "x4",
                "username": USER,
                "password": PASSWORD,
            }
        )
        assert status == 502 and "could not be verified" in answer["message"], answer
        assert untrusted.seen == []
    finally:
        untrusted.stop()
    # A remote that echoes the credential in its answers: the answer is cut off before the sandbox
    # gets it, and the caller is told why.
    server.echo = True
    try:
        status, answer = clone({"url": url, "path": "x5", "token": TOKEN})
    finally:
        server.echo = False
    assert status == 502 and "sent the credential back" in answer["message"], answer
    assert_no_secret(everything_the_sandbox_sees(api_server, sandbox), "home or /tmp")
    before = len(server.seen)
    # The real remote saw no credential from any of these calls but the wrong one.
    assert all(
        r["authorization"] in (None, "Basic " + base64.b64encode(f"{USER}:wrong-pass-7777".encode()).decode())
        for r in server.seen[before:]
    ), server.seen[before:]


def test_git_without_credentials_works_as_before(api_server: Server, sandbox: str) -> None:
    # No credential, no proxy: git in the sandbox goes out on its own, under the sandbox's egress
    # policy. Here to a server of the sandbox's own, on its loopback.
    exec_command(
        api_server,
        sandbox,
        "rm -f ~/.gitconfig ~/.config/git/config && mkdir -p srv && cd srv && "
        "git init -q -b main src && cd src && echo hi > HI && git add HI && "
        "git -c user.name=A -c user.email=a@example.org commit -qm hi && "
        "git clone -q --bare . ../b.git && cd ../b.git && git update-server-info",
    )
    api_server.request("POST", box(sandbox, "/sessions"), {"id": "dumb"})
    api_server.request(
        "POST",
        box(sandbox, "/sessions/dumb/commands"),
        {"command": "python3 -m http.server 8123 --bind 127.0.0.1 --directory srv", "run_async": True},
    )
    assert wait_until(lambda: 8123 in api_server.request("GET", box(sandbox, "/ports"))[1].get("ports", []), timeout=30)
    status, answer = api_server.request(
        "POST", box(sandbox, "/git/clone"), {"url": "http://127.0.0.1:8123/b.git", "path": "plain"}
    )
    assert status == 200, answer
    assert exec_command(api_server, sandbox, "cat plain/HI")["stdout"] == "hi\n"
    status, answer = api_server.request("POST", box(sandbox, "/git/pull"), {"path": "plain"})
    assert status == 200, answer
    # Local operations take no credentials at all.
    status, answer = api_server.request(
        "POST", box(sandbox, "/git/branches"), {"path": "plain", "name": "b1", "token": TOKEN}
    )
    # (refused by the route's schema, before anything reaches the sandbox)
    assert status == 400 and "unknown fields: token" in answer["message"], answer
    api_server.request("DELETE", box(sandbox, "/sessions/dumb"))


def redirecting_server(pki: dict[str, str], location: str) -> ThreadingHTTPServer:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_a_large_push_and_clone_pass_whole(
    api_server: Server, sandbox: str, remote: tuple[GitServer, str, Path]
) -> None:
    # Over git's post buffer (1 MiB), git sends its pack chunked: the proxy carries chunked bodies too.
    server, url, root = remote
    status, body = api_server.request("POST", box(sandbox, "/git/clone"), {"url": url, "path": "big", "token": TOKEN})
    assert status == 200, body
    exec_command(
        api_server,
        sandbox,
        "cd big && head -c 3000000 /dev/urandom > blob.bin && git add blob.bin && "
        "git -c user.name=A -c user.email=a@example.org commit -qm big",
    )
    expected = exec_command(api_server, sandbox, "sha256sum big/blob.bin")["stdout"].split()[0]
    status, body = api_server.request("POST", box(sandbox, "/git/push"), {"path": "big", "token": TOKEN})
    assert status == 200, body
    assert any(
        r["path"] == "/repo.git/git-receive-pack" and r["chunked"] and r["size"] > 3_000_000 for r in server.seen
    ), [r for r in server.seen if r["method"] == "POST"]
    status, body = api_server.request(
        "POST", box(sandbox, "/git/clone"), {"url": url, "path": "big2", "username": USER, "password": PASSWORD}
    )
    assert status == 200, body
    assert exec_command(api_server, sandbox, "sha256sum big2/blob.bin")["stdout"].split()[0] == expected
    assert (
        expected
        in subprocess.run(
            ["sh", "-c", f"git -C {root / 'repo.git'} show main:blob.bin | sha256sum"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def test_the_hosts_connection_to_the_remote_is_bounded(
    sandbox: str, pki: dict[str, str], tmp_path: Path, remote: tuple[GitServer, str, Path]
) -> None:
    # Another server for the same sandbox, with small bounds: bytes moved per call, silence allowed.
    server, url, _ = remote
    strict, process = start_jupyter_server(
        tmp_path,
        [
            f"--GitCredentialProxy.ca_bundle={pki['ca']}",
            "--GitCredentialProxy.max_transfer=1m",
            "--GitCredentialProxy.read_timeout=5",
        ],
    )
    try:
        # The repository holds a 3 MB blob by now (the test above pushed it).
        status, answer = strict.request("POST", box(sandbox, "/git/clone"), {"url": url, "path": "cut", "token": TOKEN})
        assert status == 413 and "max_transfer" in answer["message"], answer
        server.delay = 12
        try:
            status, answer = strict.request(
                "POST", box(sandbox, "/git/clone"), {"url": url, "path": "slow", "token": TOKEN}
            )
        finally:
            server.delay = 0
        assert status == 502 and "timed out" in answer["message"], answer
        assert_no_secret(json.dumps(answer).encode(), "an error message")
    finally:
        process.terminate()
        process.wait(timeout=30)
