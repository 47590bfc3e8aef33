"""The "TypeScript (sandbox)" kernel: Deno's Jupyter kernel inside the node image, behind the relay.

What a notebook user sees: TypeScript runs in the sandbox (as the sandbox user, with its files),
`%sandbox` lines work in a TypeScript cell, rich output passes the output policy, what `npm install -g`
puts in the home survives a fresh container, and bad input (an unknown language, an image with no
TypeScript kernel, a missing npm package, a base that is not here) is refused in words a person reads.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from conftest import ROOT, Server, start_jupyter_server
from typescript_support import node_image, run_cell, start_typescript_kernel  # noqa: F401 - fixtures

from jupyter_sandbox.sandbox.image import DEFAULT_IMAGE


@pytest.fixture(scope="module")
def ts_kernel(node_image: str) -> Iterator:  # noqa: F811
    kernel = start_typescript_kernel()
    yield kernel
    kernel.run("%sandbox delete --yes", timeout=120)
    kernel.shutdown()


def test_typescript_runs_in_the_sandbox_as_its_user(ts_kernel) -> None:
    info = ts_kernel.client.kernel_info(reply=True)["content"]
    assert info["language_info"]["name"] == "typescript"
    run = run_cell(ts_kernel, 'const answer: number = 6 * 7;\nconsole.log(answer, Deno.env.get("HOME"), Deno.uid())')
    assert run.status == "ok", run.error
    assert run.stdout.strip() == "42 /home/sandbox 1000"
    # State is kept between cells, as in any kernel.
    assert run_cell(ts_kernel, "console.log(answer + 1)").stdout.strip() == "43"


def test_sandbox_lines_work_in_a_typescript_cell(ts_kernel) -> None:
    run = run_cell(ts_kernel, '%sandbox exec echo from-the-shell\nconsole.log("from-typescript")')
    assert run.status == "ok", run.error
    assert "from-the-shell" in run.stdout and "from-typescript" in run.stdout
    assert run.stdout.index("from-the-shell") < run.stdout.index("from-typescript")
    status = run_cell(ts_kernel, "%sandbox status")
    assert "node" in status.stdout  # the image of a TypeScript sandbox


def test_rich_output_passes_the_output_policy(ts_kernel) -> None:
    run = run_cell(
        ts_kernel, 'Deno.jupyter.html`<b id="x">bold</b><script>parent.stolen = 1</script><img src=x onerror=alert(1)>`'
    )
    assert run.status == "ok", run.error
    bundles = [o["content"]["data"] for o in run.outputs if o["msg_type"] in ("execute_result", "display_data")]
    html = "".join(b.get("text/html", "") for b in bundles)
    assert "<b" in html and "bold" in html
    assert "<script" not in html and "onerror" not in html
    image = run_cell(
        ts_kernel,
        'await Deno.jupyter.display({"image/svg+xml": \'<svg xmlns="http://www.w3.org/2000/svg" width="4" '
        'height="4"><rect width="4" height="4"/></svg>\'}, {raw: true})',
    )
    assert image.status == "ok", image.error
    assert any("image/svg+xml" in o["content"].get("data", {}) for o in image.outputs if "data" in o["content"])


def test_an_error_is_a_typescript_error(ts_kernel) -> None:
    run = run_cell(ts_kernel, "const n: number = 'text' as unknown as number; throw new Error('boom ' + n)")
    assert run.status == "error"
    assert "boom text" in (run.error or {}).get("evalue", "")


def test_npm_global_installs_land_in_the_home_and_survive_a_fresh_container(ts_kernel) -> None:
    # A package made in the sandbox (no registry needed), installed globally as a user would.
    script = (
        "set -e; rm -rf /tmp/hello && mkdir -p /tmp/hello && cd /tmp/hello\n"
        'printf \'{"name":"hello-cli","version":"1.0.0","bin":{"hello-cli":"cli.js"}}\' > package.json\n'
        "printf '#!/usr/bin/env node\\nconsole.log(\"hello from hello-cli\")\\n' > cli.js\n"
        "npm pack --silent >/dev/null && npm install -g --silent ./hello-cli-1.0.0.tgz\n"
        "command -v hello-cli && hello-cli"
    )
    run = run_cell(ts_kernel, f"%%sandbox exec\n{script}", timeout=180)
    assert "/home/sandbox/.local/bin/hello-cli" in run.stdout, run.stdout + run.stderr
    assert "hello from hello-cli" in run.stdout
    changed = run_cell(ts_kernel, "%sandbox config --pids 300", timeout=300)
    assert changed.status == "ok", changed.stdout + changed.stderr
    again = run_cell(ts_kernel, "%sandbox exec hello-cli", timeout=120)
    assert "hello from hello-cli" in again.stdout, again.stdout + again.stderr


@pytest.fixture(scope="module")
def server(node_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    server, process = start_jupyter_server(tmp_path_factory.mktemp("ts-server"))
    yield server
    process.terminate()
    process.wait(timeout=30)


def test_rest_refuses_an_unknown_language_and_an_image_without_the_kernel(server: Server) -> None:
    status, body = server.request("POST", "/sandbox/api/sandboxes", {"language": "cobol"})
    assert status == 400, body
    assert "cobol" in body["message"] and "typescript" in body["message"]
    status, body = server.request("POST", "/sandbox/api/sandboxes", {"language": 3})
    assert status == 400, body
    status, body = server.request("POST", "/sandbox/api/sandboxes", {"language": "typescript", "image": DEFAULT_IMAGE})
    assert status == 400, body
    assert "no typescript kernel" in body["message"] and "--lang node" in body["message"]


def _build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_sandbox.cli", "image", "build", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def test_image_build_refuses_a_missing_package_a_bad_name_and_a_base_that_is_not_here(node_image: str) -> None:  # noqa: F811
    missing = f"jupyter-sandbox-no-such-package-{uuid.uuid4().hex[:8]}"
    done = _build("--lang", "node", "--bootstrap", "--npm", missing)
    assert done.returncode != 0
    assert f"npm package not found in the registry: {missing}" in done.stderr + done.stdout
    done = _build("--npm", "left-pad")
    assert done.returncode != 0 and "--lang node" in done.stderr
    done = _build("--lang", "node", "--apt", "bad;name")
    assert done.returncode != 0 and "not a Debian package name" in done.stderr
    done = _build("--lang", "cobol")
    assert done.returncode != 0 and "invalid choice: 'cobol'" in done.stderr
    base = f"jupyter-sandbox-test/not-here-{uuid.uuid4().hex[:8]}:1"
    done = _build("--base", base)
    assert done.returncode != 0
    assert f"`docker pull {base}`" in done.stderr and "not on this Docker engine" in done.stderr


def test_an_install_without_network_says_so_at_once_and_the_cache_still_installs(server: Server) -> None:
    status, sandbox = server.request(
        "POST", "/sandbox/api/sandboxes", {"language": "typescript", "network": {"mode": "none"}}
    )
    assert status == 201, sandbox
    box = f"/sandbox/api/sandboxes/{sandbox['id']}"
    try:

        def run(command: str) -> dict:
            status, result = server.request("POST", f"{box}/process/exec", {"command": command, "timeout": 300})
            assert status == 200, result
            return result

        pip = run("pip install six")
        assert pip["exit_code"] != 0
        assert "cannot reach the package index pypi.org" in pip["stderr"], pip
        assert "%sandbox network internet" in pip["stderr"] and "Retrying" not in pip["stderr"] + pip["stdout"]
        npm = run("mkdir -p /tmp/p && cd /tmp/p && npm install jupyter-sandbox-not-in-the-cache")
        assert npm["exit_code"] != 0
        assert "cannot reach the npm registry registry.npmjs.org" in npm["stderr"], npm
        cached = run(
            "mkdir -p /tmp/q && cd /tmp/q && npm install hono && node -e \"import('hono').then(() => console.log('hono ok'))\""
        )
        assert cached["exit_code"] == 0 and "hono ok" in cached["stdout"], cached
    finally:
        server.request("DELETE", box)
