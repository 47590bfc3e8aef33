"""The SDK's result types: plain dataclasses built from the REST API's JSON answers."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class SandboxInfo:
    """A sandbox as GET /sandbox/api/sandboxes/{id} describes it. `raw` keeps the whole answer
    (limits, disk, usage, network policy, ...)."""

    id: str
    state: str
    image: str = ""
    kernel_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxInfo:
        kernel = data.get("kernel_id")
        return cls(
            id=_str(data.get("id")),
            state=_str(data.get("state")),
            image=_str(data.get("image")),
            kernel_id=kernel if isinstance(kernel, str) and kernel else None,
            raw=data,
        )

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def network(self) -> dict[str, Any]:
        value = self.raw.get("network")
        return value if isinstance(value, dict) else {}

    @property
    def labels(self) -> dict[str, str]:
        value = self.raw.get("labels")
        return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}


@dataclass
class ExecResult:
    """A finished command: its exit code and everything it wrote."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class FileEntry:
    name: str
    path: str
    type: str
    size: int = 0
    mode: str = ""
    mtime: float = 0.0
    target: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        mtime = data.get("mtime")
        return cls(
            name=_str(data.get("name")),
            path=_str(data.get("path")),
            type=_str(data.get("type")),
            size=_int(data.get("size")),
            mode=_str(data.get("mode")),
            mtime=float(mtime) if isinstance(mtime, (int, float)) and not isinstance(mtime, bool) else 0.0,
            target=_optional_str(data.get("target")),
        )

    @property
    def is_dir(self) -> bool:
        return self.type in ("dir", "directory")


@dataclass
class Match:
    """One line of a file that matched a regular expression (fs.find)."""

    file: str
    line: int
    content: str


@dataclass
class Command:
    """A command of a background session."""

    id: str
    command: str
    exit_code: int | None
    running: bool
    stdout: str | None = None
    stderr: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Command:
        return cls(
            id=_str(data.get("id")),
            command=_str(data.get("command")),
            exit_code=_optional_int(data.get("exit_code")),
            running=bool(data.get("running")),
            stdout=_optional_str(data.get("stdout")),
            stderr=_optional_str(data.get("stderr")),
        )


@dataclass
class PtyInfo:
    """A PTY as the server describes it: status "running" or "exited" (then `exit_code` is set)."""

    id: str
    cols: int
    rows: int
    cwd: str
    status: str
    exit_code: int | None
    created: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PtyInfo:
        return cls(
            id=_str(data.get("id")),
            cols=_int(data.get("cols")),
            rows=_int(data.get("rows")),
            cwd=_str(data.get("cwd")),
            status=_str(data.get("status")),
            exit_code=_optional_int(data.get("exit_code")),
            created=_str(data.get("created")),
        )

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class LogChunk:
    """A piece of a followed command's output; the last chunk has `exit_code` set and no text."""

    stream: str
    text: str
    exit_code: int | None = None


@dataclass
class GitFile:
    path: str
    index: str
    worktree: str
    staged: bool
    untracked: bool


@dataclass
class GitStatus:
    branch: str
    ahead: int
    behind: int
    files: list[GitFile]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GitStatus:
        files = [
            GitFile(
                path=_str(f.get("path")),
                index=_str(f.get("index")),
                worktree=_str(f.get("worktree")),
                staged=bool(f.get("staged")),
                untracked=bool(f.get("untracked")),
            )
            for f in data.get("files") or []
            if isinstance(f, dict)
        ]
        return cls(_str(data.get("branch")), _int(data.get("ahead")), _int(data.get("behind")), files)


@dataclass
class GitBranches:
    branches: list[str]
    current: str | None


@dataclass
class Preview:
    """A preview link of one port. `url` is the preview's address, `token` its credential (send it
    as the `header` header or `?token=`), `fetch_url` an address a script can GET as is (the token
    in the query)."""

    url: str
    token: str
    expires_at: str
    header: str = "X-Sandbox-Preview-Token"
    server_url: str = ""

    @property
    def fetch_url(self) -> str:
        """The link with its token in the query: for a browser (logged in once) or curl."""
        return f"{self.url}{'&' if '?' in self.url else '?'}token={self.token}"

    @property
    def headers(self) -> dict[str, str]:
        return {self.header: self.token}

    def target(self, path: str = "/") -> tuple[str, dict[str, str]]:
        """Where a script connects for `path` of the preview, and the headers to send. A name under
        .localhost (which browsers and curl take to loopback, Python's resolver does not) is reached
        at the Jupyter server's own address with the preview's name as Host."""
        from urllib.parse import urlsplit

        link, server = urlsplit(self.url), urlsplit(self.server_url)
        path = "/" + path.lstrip("/")
        headers = dict(self.headers)
        if (link.hostname or "").endswith(".localhost") and server.netloc:
            headers["Host"] = link.netloc
            return f"{server.scheme}://{server.netloc}{path}", headers
        return f"{link.scheme}://{link.netloc}{path}", headers

    def fetch(self, path: str = "/", method: str = "GET", **kwargs: Any) -> Any:
        """One HTTP request to the app in the sandbox (an httpx.Response); kwargs go to httpx."""
        import httpx

        url, headers = self.target(path)
        return httpx.request(method, url, headers={**headers, **kwargs.pop("headers", {})}, trust_env=False, **kwargs)


@dataclass
class Output:
    """One rich output of a cell (display_data or execute_result): its MIME bundle."""

    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    is_result: bool = False

    @property
    def text(self) -> str | None:
        value = self.data.get("text/plain")
        return value if isinstance(value, str) else None

    @property
    def html(self) -> str | None:
        value = self.data.get("text/html")
        return value if isinstance(value, str) else None

    @property
    def json(self) -> Any:
        return self.data.get("application/json")

    @property
    def png(self) -> bytes | None:
        value = self.data.get("image/png")
        return base64.b64decode(value) if isinstance(value, str) else None

    @property
    def jpeg(self) -> bytes | None:
        value = self.data.get("image/jpeg")
        return base64.b64decode(value) if isinstance(value, str) else None

    @property
    def svg(self) -> str | None:
        value = self.data.get("image/svg+xml")
        return value if isinstance(value, str) else None


@dataclass
class CodeError:
    """The exception a cell raised."""

    name: str
    value: str
    traceback: list[str]


@dataclass
class Execution:
    """What a cell did: its printed output, rich outputs (the last expression's value has
    `is_result`), and the error it raised, if any."""

    stdout: str = ""
    stderr: str = ""
    outputs: list[Output] = field(default_factory=list)
    error: CodeError | None = None
    execution_count: int | None = None

    @property
    def result(self) -> Output | None:
        """The value of the cell's last expression (its execute_result), if it had one."""
        for output in self.outputs:
            if output.is_result:
                return output
        return None

    @property
    def text(self) -> str | None:
        """The last expression's plain-text value, e.g. '2' for 1+1."""
        return self.result.text if self.result else None

    @property
    def ok(self) -> bool:
        return self.error is None
