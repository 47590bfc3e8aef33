"""The asynchronous SDK: AsyncSandbox and its namespaces (process, fs, git, network, code), each a
thin client of one group of /sandbox/api routes."""

from __future__ import annotations

import asyncio
import builtins
import os
import shlex
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import IO, Any, Callable, Union

from .code import CodeInterpreter, KernelConnection, kernel_name_for
from .connection import ServerAddress, Transport, quoted
from .errors import CommandTimeout, InvalidRequest, NotFound, SandboxError
from .models import (
    Command,
    ExecResult,
    FileEntry,
    GitBranches,
    GitStatus,
    LogChunk,
    Match,
    Preview,
    SandboxInfo,
)
from .pty import AsyncPty, DataCallback, Ptys

UploadData = Union[bytes, str, os.PathLike, IO[bytes]]
CHUNK = 1024 * 1024


def command_line(cmd: str | Iterable[str]) -> str:
    """A shell command line. A list is an argv: each item is quoted, so none is parsed by the shell."""
    if isinstance(cmd, str):
        return cmd
    argv = list(cmd)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidRequest("a command given as a list must be a non-empty list of strings")
    return shlex.join(argv)


def _network(network: str | dict[str, Any] | None, cidrs: builtins.list[str] | None = None) -> dict[str, Any]:
    if isinstance(network, dict):
        return network
    body: dict[str, Any] = {"mode": network}
    if cidrs is not None:
        body["cidrs"] = list(cidrs)
    return body


class _Part:
    def __init__(self, sandbox: AsyncSandbox) -> None:
        self.sandbox = sandbox
        self.transport = sandbox.transport

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.transport.request(method, f"/sandboxes/{quoted(self.sandbox.id)}{path}", **kwargs)


class BackgroundCommand:
    """A command running in a background session."""

    def __init__(self, session: Session, command: Command) -> None:
        self.session = session
        self.id = command.id
        self.command = command

    async def logs(self) -> ExecResult:
        """Its output so far (exit_code is -1 while it runs)."""
        answer = await self.session._call("GET", f"/commands/{quoted(self.id)}/logs")
        code = answer.get("exit_code")
        return ExecResult(
            code if isinstance(code, int) else -1, str(answer.get("stdout", "")), str(answer.get("stderr", ""))
        )

    async def follow(self) -> AsyncIterator[LogChunk]:
        """Its output as it is written, to the end; the last chunk carries the exit code."""
        path = f"/sandboxes/{quoted(self.session.sandbox.id)}/sessions/{quoted(self.session.id)}/commands/{quoted(self.id)}/logs"
        async for item in self.session.transport.stream_lines(path, {"follow": "1"}):
            if "stream" in item:
                yield LogChunk(str(item.get("stream")), str(item.get("text", "")))
            elif "exit_code" in item:
                code = item.get("exit_code")
                yield LogChunk("", "", code if isinstance(code, int) else -1)

    async def wait(self, timeout: float = 600, on_output: Callable[[LogChunk], Any] | None = None) -> ExecResult:
        """Until it ends; everything it wrote and its exit code."""
        out: list[str] = []
        err: list[str] = []
        code = -1

        async def drain() -> None:
            nonlocal code
            async for chunk in self.follow():
                if chunk.exit_code is not None:
                    code = chunk.exit_code
                    continue
                (err if chunk.stream == "stderr" else out).append(chunk.text)
                if on_output is not None:
                    on_output(chunk)

        try:
            await asyncio.wait_for(drain(), timeout=timeout)
        except asyncio.TimeoutError:
            raise CommandTimeout(f"the command did not end within {timeout:g} seconds") from None
        return ExecResult(code, "".join(out), "".join(err))

    async def send_input(self, data: str) -> int:
        answer = await self.session._call("POST", f"/commands/{quoted(self.id)}/input", json={"data": data})
        return int(answer.get("sent", 0))

    async def kill(self) -> Command:
        return Command.from_json(await self.session._call("POST", f"/commands/{quoted(self.id)}/kill", json={}))


class Session:
    """A background session: a working folder and environment where commands run one after another
    or in the background."""

    def __init__(self, sandbox: AsyncSandbox, data: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.transport = sandbox.transport
        self.id = str(data.get("id", ""))
        self.cwd = str(data.get("cwd", ""))
        self.commands = [Command.from_json(c) for c in data.get("commands") or [] if isinstance(c, dict)]

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.transport.request(
            method, f"/sandboxes/{quoted(self.sandbox.id)}/sessions/{quoted(self.id)}{path}", **kwargs
        )

    async def run(self, cmd: str | Iterable[str]) -> Command:
        """Run a command in the session and wait for it (output in Command.stdout/stderr)."""
        return Command.from_json(await self._call("POST", "/commands", json={"command": command_line(cmd)}))

    async def start(self, cmd: str | Iterable[str]) -> BackgroundCommand:
        """Start a command in the background; follow it with .follow() or .wait()."""
        answer = await self._call("POST", "/commands", json={"command": command_line(cmd), "run_async": True})
        return BackgroundCommand(self, Command.from_json(answer))

    def command(self, command_id: str) -> BackgroundCommand:
        return BackgroundCommand(self, Command(command_id, "", None, True))

    async def refresh(self) -> Session:
        fresh = Session(self.sandbox, await self._call("GET", ""))
        self.commands, self.cwd = fresh.commands, fresh.cwd
        return self

    async def delete(self) -> None:
        """Delete the session, killing its commands."""
        await self._call("DELETE", "")


class Process(_Part):
    """`sb.process`: commands in the sandbox."""

    async def exec(
        self,
        cmd: str | Iterable[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> ExecResult:
        """Run a command and wait for it. A string runs in a shell; a list is an argv (each item
        quoted). `timeout` in seconds (at most 3600): the command is killed then and
        `timed_out` is set."""
        body: dict[str, Any] = {"command": command_line(cmd), "timeout": timeout}
        if cwd is not None:
            body["cwd"] = cwd
        if env:
            body["env"] = env
        answer = await self._call("POST", "/process/exec", json=body, timeout=timeout + 60)
        return ExecResult(
            int(answer["exit_code"]),
            str(answer.get("stdout", "")),
            str(answer.get("stderr", "")),
            bool(answer.get("timed_out")),
        )

    async def create_session(
        self, session_id: str | None = None, cwd: str | None = None, env: dict[str, str] | None = None
    ) -> Session:
        body: dict[str, Any] = {}
        if session_id is not None:
            body["id"] = session_id
        if cwd is not None:
            body["cwd"] = cwd
        if env:
            body["env"] = env
        return Session(self.sandbox, await self._call("POST", "/sessions", json=body))

    async def get_session(self, session_id: str) -> Session:
        return Session(self.sandbox, await self._call("GET", f"/sessions/{quoted(session_id)}"))

    async def sessions(self) -> builtins.list[Session]:
        answer = await self._call("GET", "/sessions")
        return [Session(self.sandbox, s) for s in answer.get("sessions") or [] if isinstance(s, dict)]

    async def start(
        self, cmd: str | Iterable[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> BackgroundCommand:
        """Start a command in the background in a new session of its own."""
        session = await self.create_session(cwd=cwd, env=env)
        return await session.start(cmd)


class FileSystem(_Part):
    """`sb.fs`: files in the sandbox. Paths are relative to /home/sandbox (or absolute inside it)."""

    async def upload(self, path: str, data: UploadData) -> dict[str, Any]:
        """Write one file, streamed: bytes, text, a local file's path, or an open binary file."""
        content: Any
        size: int | None = None
        if isinstance(data, str):
            content = data.encode()
        elif isinstance(data, (bytes, bytearray)):
            content = bytes(data)
        elif isinstance(data, os.PathLike):
            local = Path(data)
            size = local.stat().st_size
            content = _file_chunks(local.open("rb"))
        elif hasattr(data, "read"):
            content = _file_chunks(data, close=False)
        else:
            raise InvalidRequest("data must be bytes, text, a local path or a binary file")
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        return await self._call(
            "PUT", "/files/content", params={"path": path}, content=content, headers=headers, timeout=None
        )

    async def write_text(self, path: str, text: str) -> dict[str, Any]:
        return await self.upload(path, text.encode())

    async def download(self, path: str, archive: str | None = None) -> bytes:
        """A file's bytes (a folder: a tar, or zip with archive='zip')."""
        chunks = [c async for c in self.stream(path, archive)]
        return b"".join(chunks)

    async def read_text(self, path: str) -> str:
        return (await self.download(path)).decode("utf-8", "replace")

    async def download_to(self, path: str, local: str | os.PathLike, archive: str | None = None) -> int:
        """Stream a file into a local file; the number of bytes written."""
        written = 0
        with open(local, "wb") as handle:
            async for chunk in self.stream(path, archive):
                handle.write(chunk)
                written += len(chunk)
        return written

    async def stream(self, path: str, archive: str | None = None) -> AsyncIterator[bytes]:
        """A file's bytes in chunks as they arrive (for files too large to hold)."""
        params = {"path": path, **({"format": archive} if archive else {})}
        url = self.transport.address.api(f"/sandboxes/{quoted(self.sandbox.id)}/files/content")
        import httpx

        from .connection import message_of
        from .errors import error_for

        try:
            async with self.transport.http.stream("GET", url, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_for(response.status_code, message_of(response))
                async for chunk in response.aiter_bytes(CHUNK):
                    yield chunk
        except httpx.HTTPError as exc:
            raise SandboxError(f"the download broke: {exc}") from None

    async def list(self, path: str = "", recursive: bool = False) -> builtins.list[FileEntry]:
        answer = await self._call("GET", "/files", params={"path": path, "recursive": "1" if recursive else "0"})
        return [FileEntry.from_json(e) for e in answer.get("entries") or []]

    async def info(self, path: str) -> FileEntry:
        return FileEntry.from_json(await self._call("GET", "/files/info", params={"path": path}))

    async def exists(self, path: str) -> bool:
        try:
            await self.info(path)
        except NotFound:
            return False
        return True

    async def search(self, pattern: str, path: str = "") -> builtins.list[str]:
        """Files whose names match a glob (e.g. '*.py') under `path`."""
        answer = await self._call("GET", "/files/search", params={"path": path, "pattern": pattern})
        return [str(f) for f in answer.get("files") or []]

    async def find(self, pattern: str, path: str = "") -> builtins.list[Match]:
        """Lines matching a regular expression in the files under `path`."""
        answer = await self._call("GET", "/files/find", params={"path": path, "pattern": pattern})
        return [Match(m["file"], m["line"], m["content"]) for m in answer.get("matches") or []]

    async def replace(self, files: builtins.list[str], pattern: str, new_value: str) -> builtins.list[dict[str, Any]]:
        """Replace `pattern` with `new_value` in each file; one result per file."""
        answer = await self._call(
            "POST", "/files/replace", json={"files": list(files), "pattern": pattern, "new_value": new_value}
        )
        return list(answer.get("results") or [])

    async def move(self, source: str, destination: str) -> Any:
        return await self._call("POST", "/files/move", json={"source": source, "destination": destination})

    async def remove(self, path: str, recursive: bool = False) -> None:
        await self._call("DELETE", "/files", params={"path": path, "recursive": "1" if recursive else "0"})

    async def mkdir(self, path: str, mode: str | None = None) -> Any:
        return await self._call("POST", "/files/folder", json={"path": path, **({"mode": mode} if mode else {})})

    async def chmod(
        self, path: str, mode: str | None = None, owner: str | None = None, group: str | None = None
    ) -> Any:
        body = {
            "path": path,
            **{k: v for k, v in (("mode", mode), ("owner", owner), ("group", group)) if v is not None},
        }
        return await self._call("POST", "/files/permissions", json=body)


async def _file_chunks(handle: IO[bytes], close: bool = True) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await asyncio.to_thread(handle.read, CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        if close:
            handle.close()


class Git(_Part):
    """`sb.git`: git in the sandbox (credentials go to the server for this one call, never into the sandbox's files)."""

    @staticmethod
    def _credentials(username: str | None, password: str | None, token: str | None) -> dict[str, str]:
        return {k: v for k, v in (("username", username), ("password", password), ("token", token)) if v is not None}

    async def clone(
        self,
        url: str,
        path: str | None = None,
        branch: str | None = None,
        commit: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> str:
        """Clone `url`; the folder it went to."""
        body = {"url": url, **{k: v for k, v in (("path", path), ("branch", branch), ("commit", commit)) if v}}
        body.update(self._credentials(username, password, token))
        return str((await self._call("POST", "/git/clone", json=body, timeout=None)).get("path", ""))

    async def status(self, path: str = "") -> GitStatus:
        return GitStatus.from_json(await self._call("GET", "/git/status", params={"path": path}))

    async def add(self, files: builtins.list[str], path: str = "") -> GitStatus:
        return GitStatus.from_json(await self._call("POST", "/git/add", json={"path": path, "files": list(files)}))

    async def commit(self, message: str, author: str, email: str, path: str = "") -> str:
        body = {"path": path, "message": message, "author": author, "email": email}
        return str((await self._call("POST", "/git/commit", json=body)).get("commit", ""))

    async def push(
        self,
        path: str = "",
        url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> str:
        return await self._remote("/git/push", path, url, username, password, token)

    async def pull(
        self,
        path: str = "",
        url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> str:
        return await self._remote("/git/pull", path, url, username, password, token)

    async def _remote(
        self, call: str, path: str, url: str | None, username: str | None, password: str | None, token: str | None
    ) -> str:
        """A push or pull (to `url`, else the repository's remote) with this call's credentials; git's output."""
        body: dict[str, Any] = {
            "path": path,
            **({"url": url} if url else {}),
            **self._credentials(username, password, token),
        }
        return str((await self._call("POST", call, json=body, timeout=None)).get("output", ""))

    async def branches(self, path: str = "") -> GitBranches:
        answer = await self._call("GET", "/git/branches", params={"path": path})
        return GitBranches([str(b) for b in answer.get("branches") or []], answer.get("current"))

    async def create_branch(self, name: str, path: str = "") -> GitBranches:
        answer = await self._call("POST", "/git/branches", json={"path": path, "name": name})
        return GitBranches([str(b) for b in answer.get("branches") or []], answer.get("current"))

    async def checkout(self, name: str, path: str = "") -> GitBranches:
        answer = await self._call("POST", "/git/checkout", json={"path": path, "name": name})
        return GitBranches([str(b) for b in answer.get("branches") or []], answer.get("current"))

    async def delete_branch(self, name: str, path: str = "") -> GitBranches:
        answer = await self._call("DELETE", "/git/branches", params={"path": path, "name": name})
        return GitBranches([str(b) for b in answer.get("branches") or []], answer.get("current"))


class Network(_Part):
    """`sb.network`: the sandbox's egress policy, changed live."""

    async def set(self, mode: str | dict[str, Any], cidrs: builtins.list[str] | None = None) -> dict[str, Any]:
        """mode 'internet' (public addresses only), 'none', or 'allow' with `cidrs` (at most 10)."""
        answer = await self._call("PATCH", "", json={"network": _network(mode, cidrs)})
        self.sandbox.info = SandboxInfo.from_json(answer)
        return self.sandbox.info.network

    async def get(self) -> dict[str, Any]:
        return (await self.sandbox.refresh()).network


class AsyncSandbox:
    """One sandbox, driven over the Jupyter server's REST API. Make one with `await
    AsyncSandbox.create(...)` or `get(id)`; `async with` deletes it at the end."""

    def __init__(
        self, transport: Transport, info: SandboxInfo, owns_transport: bool = False, language: str | None = None
    ) -> None:
        self.transport = transport
        self.info = info
        self._owns_transport = owns_transport
        self.process = Process(self)
        self.fs = FileSystem(self)
        self.git = Git(self)
        self.network = Network(self)
        self.ptys = Ptys(self)
        self.code = CodeInterpreter(transport, info.kernel_id, language, info.id)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def kernel_id(self) -> str | None:
        return self.info.kernel_id

    def __repr__(self) -> str:
        return f"<AsyncSandbox {self.id} {self.info.state}>"

    # -- making and finding sandboxes -------------------------------------------------------

    @classmethod
    async def create(
        cls,
        image: str | None = None,
        language: str | None = None,
        cpu: float | None = None,
        memory: str | None = None,
        network: str | dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        disk: str | None = None,
        env: dict[str, str] | None = None,
        url: str | None = None,
        token: str | None = None,
        transport: Transport | None = None,
        timeout: float = 300,
    ) -> AsyncSandbox:
        """A new sandbox. With `language` ('python') it is the sandbox of a new Jupyter kernel
        ("sandbox-python", from the warm pool when there is one), so `sb.code.run` keeps state;
        such a sandbox takes the server's default spec, so image/cpu/memory/disk/labels/env cannot
        be chosen with it (network can). Without `language` the sandbox is made over REST with
        the given spec, within the operator's maxima."""
        owns = transport is None
        transport = transport or Transport(ServerAddress.resolve(url, token))
        try:
            if language is not None:
                chosen = {"image": image, "cpu": cpu, "memory": memory, "labels": labels, "disk": disk, "env": env}
                refused = sorted(k for k, v in chosen.items() if v is not None)
                if refused:
                    raise InvalidRequest(
                        f"a sandbox with a kernel (language=) uses the server's default spec; {', '.join(refused)} "
                        "cannot be chosen for it"
                    )
                sandbox = await cls._create_with_kernel(transport, language, timeout)
                sandbox._owns_transport = owns
                if network is not None:
                    await sandbox.network.set(network)
                return sandbox
            body: dict[str, Any] = {}
            for key, value in (
                ("image", image),
                ("cpu", cpu),
                ("memory", memory),
                ("labels", labels),
                ("disk", disk),
                ("env", env),
            ):
                if value is not None:
                    body[key] = value
            if network is not None:
                body["network"] = _network(network)
            answer = await transport.request("POST", "/sandboxes", json=body, timeout=timeout)
            return cls(transport, SandboxInfo.from_json(answer), owns_transport=owns)
        except BaseException:
            if owns:
                await transport.close()
            raise

    @classmethod
    async def _create_with_kernel(cls, transport: Transport, language: str, timeout: float) -> AsyncSandbox:
        name = kernel_name_for(language)
        kernel = await transport.json("POST", transport.address.url + "api/kernels", json={"name": name})
        kernel_id = str(kernel.get("id", ""))
        try:
            connection = KernelConnection(transport, kernel_id, language)
            # The kernel answers kernel_info at once; a first (silent) cell waits for its sandbox
            # to be claimed or made, started, and its inner kernel (hence its agent) to answer.
            await connection.wait_ready(timeout)
            await connection.run("pass", timeout=timeout, silent=True)
            deadline = time.monotonic() + 30
            while True:
                found = await transport.request("GET", "/sandboxes", params={"kernel_id": kernel_id})
                boxes = found.get("sandboxes") or []
                if boxes:
                    break
                if time.monotonic() > deadline:
                    raise SandboxError(f"kernel {kernel_id} started but its sandbox was not found")
                await asyncio.sleep(0.2)
        except BaseException:
            await _shutdown_kernel(transport, kernel_id)
            raise
        sandbox = cls(transport, SandboxInfo.from_json(boxes[0]), language=language)
        sandbox.code._connection = connection
        return sandbox

    @classmethod
    async def get(
        cls, sandbox_id: str, url: str | None = None, token: str | None = None, transport: Transport | None = None
    ) -> AsyncSandbox:
        """An existing sandbox by id (SandboxNotFound when there is none of yours)."""
        owns = transport is None
        transport = transport or Transport(ServerAddress.resolve(url, token))
        try:
            answer = await transport.request("GET", f"/sandboxes/{quoted(sandbox_id)}")
        except BaseException:
            if owns:
                await transport.close()
            raise
        return cls(transport, SandboxInfo.from_json(answer), owns_transport=owns)

    @classmethod
    async def list(
        cls,
        url: str | None = None,
        token: str | None = None,
        transport: Transport | None = None,
        kernel_id: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        """Your sandboxes (optionally those of one kernel, or those with all of `labels`)."""
        owns = transport is None
        transport = transport or Transport(ServerAddress.resolve(url, token))
        params: builtins.list[tuple[str, str]] = [("kernel_id", kernel_id)] if kernel_id else []
        params += [("label", f"{key}={value}") for key, value in (labels or {}).items()]
        try:
            answer = await transport.request("GET", "/sandboxes", params=params or None)
        finally:
            if owns:
                await transport.close()
        return [SandboxInfo.from_json(s) for s in answer.get("sandboxes") or []]

    # -- this sandbox ----------------------------------------------------------------------

    async def refresh(self) -> SandboxInfo:
        """Its state now, with limits, disk, usage and egress policy."""
        self.info = SandboxInfo.from_json(await self.transport.request("GET", f"/sandboxes/{quoted(self.id)}"))
        return self.info

    async def stop(self) -> SandboxInfo:
        """Stop it; its files are kept."""
        self.info = SandboxInfo.from_json(
            await self.transport.request("POST", f"/sandboxes/{quoted(self.id)}/stop", json={})
        )
        return self.info

    async def start(self) -> SandboxInfo:
        self.info = SandboxInfo.from_json(
            await self.transport.request("POST", f"/sandboxes/{quoted(self.id)}/start", json={}, timeout=300)
        )
        return self.info

    async def delete(self) -> None:
        """Delete it with its files (and shut its kernel down, if it has one)."""
        await self.code.detach()
        try:
            await self.transport.request("DELETE", f"/sandboxes/{quoted(self.id)}")
        finally:
            if self.kernel_id:
                await _shutdown_kernel(self.transport, self.kernel_id)

    async def preview(self, port: int, expires_in: int | None = None) -> Preview:
        """A link to a web server listening on `port` inside the sandbox."""
        body: dict[str, Any] = {"port": port, **({"expires_in": expires_in} if expires_in is not None else {})}
        answer = await self.transport.request("POST", f"/sandboxes/{quoted(self.id)}/previews", json=body)
        return Preview(
            str(answer["url"]),
            str(answer["token"]),
            str(answer.get("expires_at", "")),
            str(answer.get("header", "X-Sandbox-Preview-Token")),
            self.transport.address.url,
        )

    async def rotate_previews(self) -> None:
        """Every earlier preview token stops working."""
        await self.transport.request("DELETE", f"/sandboxes/{quoted(self.id)}/previews")

    async def ports(self) -> builtins.list[int]:
        answer = await self.transport.request("GET", f"/sandboxes/{quoted(self.id)}/ports")
        return [int(p) for p in answer.get("ports") or []]

    async def pty(
        self,
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        id: str | None = None,
        on_data: DataCallback | None = None,
        command: str | builtins.list[str] | None = None,
    ) -> AsyncPty:
        """A new PTY (an interactive shell, or `command`), connected: drive it with
        send_input/resize/wait_for, wait() for its exit code, end it with kill(). It outlives the
        connection: `sb.ptys.connect(id)` gets its recent output and the rest."""
        return await self.ptys.create(cols, rows, cwd, env, id, command, on_data)

    async def close(self) -> None:
        """Let go of the connection (the sandbox stays; a kernel `code.run` attached to it ends)."""
        await self.code.detach()
        if self._owns_transport:
            await self.transport.close()

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.delete()
        except NotFound:
            pass
        finally:
            await self.close()


async def _shutdown_kernel(transport: Transport, kernel_id: str) -> None:
    try:
        await transport.json("DELETE", transport.address.url + f"api/kernels/{quoted(kernel_id)}")
    except NotFound:
        pass
