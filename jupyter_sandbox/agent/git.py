"""Git inside the sandbox: argv lists (never a shell), no prompts, `--` before paths, time limits.

No credential ever reaches this module. A clone, pull or push that needs one comes with a `relay`
(a call id and, for https, the certificate of a CA the host made for that call): git is pointed at a
proxy port on the sandbox's loopback that the host serves (see git_relay), and the host adds the
credential to the requests it forwards, on its own side.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Callable

from .files import HOME, resolve
from .git_relay import CALL_ID, Relays

ALLOWED_URL = re.compile(r"^(https?|git)://[^\s/@?#]+(/[^\s]*)?$")
GIT_TIMEOUT = 120.0
# git from the image's root-owned folders, never one the sandbox put first on PATH.
TRUSTED_GIT = ("/usr/bin/git", "/usr/local/bin/git", "/bin/git")
Runner = Callable[..., Awaitable[dict]]
CREDENTIAL_FIELDS = ("username", "password", "token")


class GitError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def git_executable() -> str:
    for candidate in TRUSTED_GIT:
        if os.access(candidate, os.X_OK):
            return candidate
    return "git"


def check_url(url: Any) -> str:
    if isinstance(url, str) and re.match(r"^[a-z+]+://[^/]*@", url):
        raise GitError(400, "put credentials in username and password (or token), not in the URL")
    if not isinstance(url, str) or not ALLOWED_URL.match(url) or url.startswith("-"):
        raise GitError(400, "only https://, http:// and git:// repository URLs are allowed")
    return url


def check_ref(name: Any, what: str = "branch name") -> str:
    if (
        not isinstance(name, str)
        or not name
        or name.startswith("-")
        or len(name) > 255
        or re.search(r"[\x00-\x20~^:?*\[\\]|\.\.|@\{|//|/$|\.lock$|^/|\.$", name)
    ):
        raise GitError(400, f"{name!r} is not an acceptable {what}")
    return name


def check_paths(files: Any) -> list[str]:
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f and "\0" not in f for f in files):
        raise GitError(400, "files must be a non-empty list of paths")
    return files


def environment(extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GCM_INTERACTIVE": "never",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    }
    settings = [
        ("credential.helper", ""),
        ("core.askPass", "/bin/false"),
        ("protocol.ext.allow", "never"),
        ("protocol.file.allow", "never"),
        *extra,
    ]
    for count, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{count}"] = key
        env[f"GIT_CONFIG_VALUE_{count}"] = value
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    if extra:
        # Every host through the call's proxy: a no_proxy in the agent's environment would bypass it.
        env["NO_PROXY"] = env["no_proxy"] = ""
        # A call through the proxy reads no ~/.gitconfig (sandbox code writes it); a repository's own
        # config is outranked by the settings above.
        env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    return env


def refuse_credentials(body: dict) -> None:
    if any(body.get(key) for key in CREDENTIAL_FIELDS):
        raise GitError(400, "credentials are added by the host, outside the sandbox; the agent never takes them")


class Git:
    def __init__(self, run: Runner, relays: Relays | None = None) -> None:
        self._run = run
        self.relays = relays or Relays()

    async def git(
        self, args: list[str], cwd: str, check: bool = True, settings: Sequence[tuple[str, str]] = ()
    ) -> dict:
        output: dict[str, list[str]] = {"stdout": [], "stderr": []}

        async def emit(chunk: dict) -> None:
            output[chunk["stream"]].append(chunk["text"])

        if not os.path.isdir(cwd):
            raise GitError(404, f"{cwd} is not a folder")
        try:
            result = await self._run([git_executable(), *args], cwd, environment(settings), GIT_TIMEOUT, emit)
        except UnicodeEncodeError:
            raise GitError(400, "paths and names must be valid Unicode text") from None
        except OSError as exc:
            raise GitError(400, f"cannot run git: {exc.strerror}") from None
        stdout, stderr = "".join(output["stdout"]), "".join(output["stderr"])
        if result["timed_out"]:
            raise GitError(504, f"git {args[0]} took longer than {GIT_TIMEOUT:g} s and was stopped")
        if check and result["exit_code"] != 0:
            lines = stderr.strip().splitlines()
            # git's own verdict, not a hint after it (at a mount point "Stopping at filesystem boundary" follows).
            message = next(
                (line for line in lines if line.startswith("fatal:")), lines[-1] if lines else f"git {args[0]} failed"
            )
            if "not a git repository" in stderr:
                # git's words name .git and filesystem boundaries; a person wants to know what to do.
                shown = "~" + cwd[len(HOME) :] if cwd == HOME or cwd.startswith(HOME + "/") else cwd
                raise GitError(404, f"{shown} is not a git repository: initialise one there, or clone into it")
            raise GitError(400, message)
        return {"stdout": stdout, "stderr": stderr, "exit_code": result["exit_code"]}

    @contextlib.asynccontextmanager
    async def relayed(self, body: dict) -> AsyncIterator[tuple[str | None, list[tuple[str, str]]]]:
        """(URL, git settings) that send this call's HTTP(S) traffic through the host's credential
        proxy; (None, []) when the call has no relay: git then goes out on its own, as any git in
        the sandbox does."""
        refuse_credentials(body)
        spec = body.get("relay")
        if spec is None:
            yield None, []
            return
        if not isinstance(spec, dict) or not isinstance(spec.get("id"), str) or not CALL_ID.match(spec["id"]):
            raise GitError(400, "relay must be {id, url, ca} as the host sends it")
        url, ca = spec.get("url"), spec.get("ca")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/@?#]+/[^\s?#]*$", url):
            raise GitError(400, "relay.url must be an http(s) repository URL")
        if ca is not None and (
            not isinstance(ca, str)
            or not ca.startswith("-----BEGIN CERTIFICATE-----")
            or len(ca) > 16384
            or "PRIVATE" in ca
        ):
            raise GitError(400, "relay.ca must be one PEM certificate")
        try:
            relay = await self.relays.open(spec["id"])
        except (ValueError, OSError) as exc:
            raise GitError(409, f"cannot open the git relay: {exc}") from None
        ca_path = None
        try:
            proxy = f"http://127.0.0.1:{relay.port}"
            # Keyed on the exact URL git is given: command-line settings for it beat any http.* of
            # the repository's own config, and the identity rewrite beats any shorter url.insteadOf.
            settings = [
                ("http.proxy", proxy),
                (f"http.{url}.proxy", proxy),
                (f"http.{url}.version", "HTTP/1.1"),
                (f"url.{url}.insteadOf", url),
            ]
            if ca is not None:
                # The call's CA certificate (public): git verifies the host's TLS answers with it.
                fd, ca_path = tempfile.mkstemp(prefix="git-call-", suffix=".pem")
                with os.fdopen(fd, "w") as handle:
                    handle.write(ca)
                settings += [(f"http.{url}.sslCAInfo", ca_path), (f"http.{url}.sslVerify", "true")]
            yield url, settings
        finally:
            self.relays.close(relay)
            if ca_path:
                with contextlib.suppress(OSError):
                    os.unlink(ca_path)

    def repo(self, path: Any) -> str:
        if path is not None and not isinstance(path, str):
            raise GitError(400, "path must be a string")
        return str(resolve(path))

    async def clone(self, body: dict) -> dict:
        url = check_url(body.get("url"))
        target = self.repo(body.get("path") or url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
        args = ["clone"]
        if body.get("branch"):
            args += ["--branch", check_ref(body["branch"])]
        args += ["--", url, target]
        commit = body.get("commit")
        if commit and (not isinstance(commit, str) or not re.fullmatch(r"[0-9a-fA-F]{4,64}", commit)):
            raise GitError(400, "commit must be a hexadecimal commit id")
        async with self.relayed(body) as (relay_url, settings):
            if relay_url is not None:
                args[-2] = relay_url
            await self.git(args, str(resolve(None)), settings=settings)
        if commit:
            await self.git(["checkout", "--detach", commit, "--"], target)
        return {"path": target}

    async def status(self, path: Any) -> dict:
        repo = self.repo(path)
        out = (await self.git(["status", "--porcelain=v1", "--branch", "-z", "--untracked-files=all"], repo))["stdout"]
        entries = out.split("\0")
        head = entries[0][3:] if entries and entries[0].startswith("## ") else ""
        branch, ahead, behind = head.split("...")[0], 0, 0
        for key, value in re.findall(r"(ahead|behind) (\d+)", head):
            ahead, behind = (int(value), behind) if key == "ahead" else (ahead, int(value))
        files = []
        skip = False
        for item in entries[1:]:
            if skip:
                skip = False
                continue
            if len(item) < 4:
                continue
            index, worktree, name = item[0], item[1], item[3:]
            files.append(
                {
                    "path": name,
                    "index": index,
                    "worktree": worktree,
                    "staged": index not in (" ", "?"),
                    "untracked": index == "?",
                }
            )
            skip = index in ("R", "C")
        branch = branch.removeprefix("No commits yet on ")
        return {"branch": branch, "ahead": ahead, "behind": behind, "files": files}

    async def branches(self, path: Any) -> dict:
        repo = self.repo(path)
        out = (await self.git(["for-each-ref", "--format=%(HEAD) %(refname:short)", "refs/heads/"], repo))["stdout"]
        names, current = [], None
        for line in out.splitlines():
            if len(line) > 2:
                names.append(line[2:])
                if line[0] == "*":
                    current = line[2:]
        return {"branches": names, "current": current}

    async def create_branch(self, path: Any, name: Any) -> dict:
        await self.git(["branch", check_ref(name)], self.repo(path))
        return await self.branches(path)

    async def delete_branch(self, path: Any, name: Any) -> dict:
        await self.git(["branch", "-D", check_ref(name)], self.repo(path))
        return await self.branches(path)

    async def checkout(self, path: Any, name: Any) -> dict:
        await self.git(["switch", check_ref(name)], self.repo(path))
        return await self.branches(path)

    async def add(self, path: Any, files: Any) -> dict:
        await self.git(["add", "--", *check_paths(files)], self.repo(path))
        return await self.status(path)

    async def commit(self, body: dict) -> dict:
        repo = self.repo(body.get("path"))
        message, author, email = body.get("message"), body.get("author"), body.get("email")
        if not isinstance(message, str) or not message.strip():
            raise GitError(400, "a commit message is needed")
        for value, what in ((author, "author"), (email, "email")):
            if not isinstance(value, str) or not value.strip() or "\n" in value or "<" in value or ">" in value:
                raise GitError(400, f"{what} must be a one-line string")
        await self.git(["-c", f"user.name={author}", "-c", f"user.email={email}", "commit", "-m", message], repo)
        sha = (await self.git(["rev-parse", "HEAD"], repo))["stdout"].strip()
        return {"commit": sha}

    async def _tracking(self, repo: str) -> tuple[str, str, str]:
        """(local branch, branch on the remote, remote name) of the current branch."""
        branch = (await self.git(["symbolic-ref", "--short", "-q", "HEAD"], repo, check=False))["stdout"].strip()
        if not branch:
            raise GitError(400, "the repository is not on a branch (detached HEAD)")
        check_ref(branch)
        merge = (await self.git(["config", "--get", f"branch.{branch}.merge"], repo, check=False))["stdout"].strip()
        upstream = merge.removeprefix("refs/heads/") if merge.startswith("refs/heads/") else branch
        remote = (await self.git(["config", "--get", f"branch.{branch}.remote"], repo, check=False))["stdout"].strip()
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", remote or "") or remote.startswith("-"):
            remote = "origin"
        return branch, check_ref(upstream), remote

    async def push(self, body: dict) -> dict:
        repo = self.repo(body.get("path"))
        async with self.relayed(body) as (url, settings):
            if url is None:
                result = await self.git(["push", "--porcelain"], repo)
                return {"output": result["stdout"]}
            # To the URL of this call, not to the remote named in the repository's config (which
            # sandbox code may have pointed anywhere); the remote-tracking branch follows.
            _, upstream, remote = await self._tracking(repo)
            result = await self.git(
                ["push", "--porcelain", "--", url, f"HEAD:refs/heads/{upstream}"], repo, settings=settings
            )
        await self.git(["update-ref", f"refs/remotes/{remote}/{upstream}", "HEAD"], repo, check=False)
        return {"output": result["stdout"]}

    async def pull(self, body: dict) -> dict:
        repo = self.repo(body.get("path"))
        async with self.relayed(body) as (url, settings):
            if url is None:
                result = await self.git(["pull", "--ff-only"], repo)
                return {"output": result["stdout"]}
            _, upstream, remote = await self._tracking(repo)
            tracking = f"refs/remotes/{remote}/{upstream}"
            await self.git(
                ["fetch", "--no-write-fetch-head", "--", url, f"+refs/heads/{upstream}:{tracking}"],
                repo,
                settings=settings,
            )
        result = await self.git(["merge", "--ff-only", tracking], repo)
        return {"output": result["stdout"]}
