"""The MCP server `jupyter sandbox mcp` through the MCP Python SDK's own stdio client, against a
real Jupyter server and real sandboxes: every tool, rich outputs as MCP content, the audit log and
operator approval."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, start_jupyter_server

from jupyter_sandbox.client import NotFound, Sandbox

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The streamable HTTP endpoint is on by default (SandboxExtension.mcp_http).
    state = tmp_path_factory.mktemp("http-state")
    server, process = start_jupyter_server(
        tmp_path_factory.mktemp("root"),
        [f"--SandboxMCP.audit_dir={state / 'audit'}", f"--SandboxMCP.approvals_dir={state / 'approvals'}"],
    )
    server.state = state  # type: ignore[attr-defined]
    yield server
    for box in Sandbox.list(url=server.base, token=server.token):
        try:
            Sandbox.get(box.id, url=server.base, token=server.token).delete()
        except NotFound:
            pass  # a kernel's sandbox removed with its kernel meanwhile
    process.terminate()
    process.wait(timeout=30)


def _text(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def _session(server: Server, state: Path, extra: list[str], calls: Any) -> Any:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "jupyter_sandbox.cli",
            "mcp",
            "--audit-dir",
            str(state / "audit"),
            "--approvals-dir",
            str(state / "approvals"),
            *extra,
        ],
        env={
            "JUPYTER_SANDBOX_URL": server.base,
            "JUPYTER_SANDBOX_TOKEN": server.token,
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
            "NO_PROXY": "127.0.0.1",
        },
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await calls(session)


def run(server: Server, state: Path, calls: Any, extra: list[str] = ()) -> Any:
    return asyncio.run(_session(server, state, list(extra), calls))


def test_every_tool_through_the_mcp_client(server: Server, tmp_path: Path) -> None:
    async def calls(session: Any) -> dict[str, Any]:
        names = {tool.name for tool in (await session.list_tools()).tools}
        created = await session.call_tool("create_sandbox", {"with_kernel": True})
        sandbox_id = _text(created).split()[2]
        out: dict[str, Any] = {"names": names, "id": sandbox_id}
        call = session.call_tool
        out["list"] = _text(await call("list_sandboxes", {}))
        await call("run_code", {"sandbox_id": sandbox_id, "code": "y = 6 * 7"})
        out["code"] = await call("run_code", {"sandbox_id": sandbox_id, "code": "print('y is', y); y"})
        out["plot"] = await call(
            "run_code",
            {"sandbox_id": sandbox_id, "code": "import matplotlib.pyplot as plt; plt.plot([3, 1, 2]); plt.show()"},
        )
        out["error"] = _text(await call("run_code", {"sandbox_id": sandbox_id, "code": "undefined_name"}))
        out["command"] = _text(await call("run_command", {"sandbox_id": sandbox_id, "command": "echo hi; exit 2"}))
        out["write"] = _text(
            await call("write_file", {"sandbox_id": sandbox_id, "path": "notes/a.txt", "content": "needle\n"})
        )
        out["read"] = _text(await call("read_file", {"sandbox_id": sandbox_id, "path": "notes/a.txt"}))
        out["ls"] = _text(await call("list_files", {"sandbox_id": sandbox_id, "path": "notes"}))
        out["glob"] = _text(await call("search_files", {"sandbox_id": sandbox_id, "pattern": "*.txt", "path": "notes"}))
        out["grep"] = _text(
            await call("search_files", {"sandbox_id": sandbox_id, "pattern": "need", "path": "notes", "content": True})
        )
        out["preview"] = _text(await call("preview_link", {"sandbox_id": sandbox_id, "port": 8000}))
        out["network"] = _text(await call("set_network", {"sandbox_id": sandbox_id, "mode": "none"}))
        out["bad"] = await call("set_network", {"sandbox_id": sandbox_id, "mode": "sideways"})
        out["missing"] = await call("read_file", {"sandbox_id": "0123456789ab", "path": "x"})
        out["delete"] = _text(await call("delete_sandbox", {"sandbox_id": sandbox_id}))
        return out

    out = run(server, tmp_path, calls)
    assert {"create_sandbox", "run_code", "run_command", "set_network", "preview_link"} <= out["names"]
    assert out["id"] in out["list"]
    code = out["code"]
    assert not code.is_error and "y is 42" in _text(code) and "42" in _text(code).splitlines()[-1]
    images = [b for b in out["plot"].content if b.type == "image"]
    assert images and base64.b64decode(images[0].data).startswith(b"\x89PNG") and images[0].mime_type == "image/png"
    assert "NameError" in out["error"]
    assert out["command"].startswith("exit code 2") and "hi" in out["command"]
    assert "7 bytes" in out["write"] and out["read"] == "needle\n"
    assert "a.txt" in out["ls"] and "a.txt" in out["glob"] and "a.txt:1: needle" in out["grep"]
    assert "token=" in out["preview"]
    assert "none" in out["network"]
    assert out["bad"].is_error and "network mode must be one" in _text(out["bad"]) and "400" in _text(out["bad"])
    assert out["missing"].is_error and "no sandbox" in _text(out["missing"])
    assert out["delete"] == f"deleted sandbox {out['id']}"
    # The audit trail: one JSON line per call in the sandbox's file.
    lines = [json.loads(line) for line in (tmp_path / "audit" / f"{out['id']}.jsonl").read_text().splitlines()]
    tools = [entry["tool"] for entry in lines]
    assert tools.count("run_code") == 4 and "delete_sandbox" in tools and "set_network" in tools
    assert [e["outcome"] for e in lines if e["tool"] == "set_network"] == ["ok", "error"]
    missing = (tmp_path / "audit" / "0123456789ab.jsonl").read_text()
    assert '"outcome": "error"' in missing


def test_approval_is_required_for_chosen_tools(server: Server, tmp_path: Path) -> None:
    box = Sandbox.create(url=server.base, token=server.token)
    try:

        async def first(session: Any) -> str:
            return _text(await session.call_tool("run_command", {"sandbox_id": box.id, "command": "touch ran"}))

        answer = run(server, tmp_path, first, ["--require-approval", "run_command"])
        assert answer.startswith("needs approval")
        assert not box.fs.exists("ran")
        request_id = answer.split("approval_id=")[1].strip('".')
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
        approve = [sys.executable, "-m", "jupyter_sandbox.cli", "mcp", "--approvals-dir", str(tmp_path / "approvals")]
        listed = subprocess.run([*approve, "pending"], capture_output=True, text=True, env=env, timeout=60)
        assert request_id in listed.stdout
        done = subprocess.run([*approve, "approve", request_id], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr

        async def again(session: Any) -> list[str]:
            other = _text(await session.call_tool("run_command", {"sandbox_id": box.id, "command": "touch other"}))
            same = _text(
                await session.call_tool(
                    "run_command", {"sandbox_id": box.id, "command": "touch ran", "approval_id": request_id}
                )
            )
            reused = _text(
                await session.call_tool(
                    "run_command", {"sandbox_id": box.id, "command": "touch ran", "approval_id": request_id}
                )
            )
            return [other, same, reused]

        other, same, reused = run(server, tmp_path, again, ["--require-approval", "run_command"])
        assert (
            other.startswith("needs approval")
            and same.startswith("exit code 0")
            and reused.startswith("needs approval")
        )
        assert box.fs.exists("ran") and not box.fs.exists("other")
        outcomes = [
            json.loads(line)["outcome"] for line in (tmp_path / "audit" / f"{box.id}.jsonl").read_text().splitlines()
        ]
        assert outcomes == ["needs_approval", "needs_approval", "ok", "needs_approval"]
    finally:
        box.delete()


def test_audit_summarises_long_text_and_names_files_only_by_sandbox_id(tmp_path: Path) -> None:
    from jupyter_sandbox.mcp_server.audit import AuditLog

    log = AuditLog(tmp_path)
    log.record("write_file", "../../etc", {"content": "s" * 5000}, "ok")
    log.record("write_file", "0123456789ab", {"content": "short"}, "ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0123456789ab.jsonl", "_server.jsonl"]
    entry = json.loads((tmp_path / "_server.jsonl").read_text())
    assert entry["arguments"]["content"]["length"] == 5000 and "sha256" in entry["arguments"]["content"]


def test_an_approval_is_for_one_call_with_the_same_arguments(tmp_path: Path) -> None:
    from jupyter_sandbox.mcp_server.audit import Approvals

    approvals = Approvals(tmp_path)
    request_id = approvals.request("run_command", {"sandbox_id": "0123456789ab", "command": "ls"})
    assert not approvals.consume(request_id, "run_command", {"sandbox_id": "0123456789ab", "command": "ls"})
    approvals.approve(request_id)
    assert not approvals.consume(request_id, "run_command", {"sandbox_id": "0123456789ab", "command": "rm -rf ~"})
    assert not approvals.consume(request_id, "run_code", {"sandbox_id": "0123456789ab", "command": "ls"})
    assert approvals.consume(request_id, "run_command", {"sandbox_id": "0123456789ab", "command": "ls"})
    assert not approvals.consume(request_id, "run_command", {"sandbox_id": "0123456789ab", "command": "ls"})
    with pytest.raises(ValueError):
        approvals.approve("../../x")
    assert not approvals.consume("../../x", "run_command", {})


def test_unknown_tools_in_require_approval_are_refused() -> None:
    from jupyter_sandbox.client.connection import ServerAddress
    from jupyter_sandbox.mcp_server.server import SandboxMCP, build_server

    with pytest.raises(ValueError, match="run_everything"):
        build_server(SandboxMCP(require_approval=["run_everything"]), ServerAddress("http://127.0.0.1:9/", "x"))


def test_streamable_http_on_the_jupyter_server_behind_its_auth(server: Server) -> None:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    endpoint = f"{server.base}/sandbox/mcp"

    async def calls(token: str) -> Any:
        client = httpx2.AsyncClient(headers={"Authorization": f"token {token}"}, trust_env=False, timeout=300)
        async with (
            client,
            streamable_http_client(endpoint, http_client=client) as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            created = _text(await session.call_tool("create_sandbox", {"with_kernel": False}))
            sandbox_id = created.split()[2]
            ran = _text(await session.call_tool("run_command", {"sandbox_id": sandbox_id, "command": "echo over http"}))
            await session.call_tool("delete_sandbox", {"sandbox_id": sandbox_id})
            return sandbox_id, ran

    sandbox_id, ran = asyncio.run(calls(server.token))
    assert "over http" in ran
    audit = (server.state / "audit" / f"{sandbox_id}.jsonl").read_text()  # type: ignore[attr-defined]
    assert '"tool": "run_command"' in audit
    # Without the server's token the endpoint is Jupyter's 403, before any MCP.
    status, _ = server.request("POST", "/sandbox/mcp", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, auth=False)
    assert status == 403
