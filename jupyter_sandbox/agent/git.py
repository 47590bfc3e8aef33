"""Git inside the sandbox: argv lists (never a shell), no prompts, `--` before paths, time limits.

Credentials come with each call and reach git only through its environment
(GIT_CONFIG_COUNT/KEY/VALUE set an http.extraHeader for that one process): never in argv, on disk, in
.git/config or in a log line.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any, Awaitable, Callable

from .files import resolve

ALLOWED_URL = re.compile(r"^(https?|git)://[^\s/@]+(@[^\s/]+)?(/[^\s]*)?$")
GIT_TIMEOUT = 120.0
Runner = Callable[..., Awaitable[dict]]


class GitError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_url(url: Any) -> str:
    if not isinstance(url, str) or not ALLOWED_URL.match(url) or url.startswith("-"):
        raise GitError(400, "only https://, http:// and git:// repository URLs are allowed")
    if re.match(r"^https?://[^/]*:[^/]*@", url):
        raise GitError(400, "put credentials in username and password, not in the URL")
    return url


def check_ref(name: Any, what: str = "branch name") -> str:
    if (not isinstance(name, str) or not name or name.startswith("-") or len(name) > 255
            or re.search(r"[\x00-\x20~^:?*\[\\]|\.\.|@\{|//|/$|\.lock$|^/|\.$", name)):
        raise GitError(400, f"{name!r} is not an acceptable {what}")
    return name


def check_paths(files: Any) -> list[str]:
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f and "\0" not in f for f in files):
        raise GitError(400, "files must be a non-empty list of paths")
    return files


def environment(username: str | None, password: str | None) -> dict[str, str]:
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GCM_INTERACTIVE": "never",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    }
    count = 0
    settings = [("credential.helper", ""), ("core.askPass", "/bin/false"), ("protocol.ext.allow", "never"),
                ("protocol.file.allow", "never")]
    if password:
        pair = f"{username or 'git'}:{password}".encode()
        settings.append(("http.extraHeader", "Authorization: Basic " + base64.b64encode(pair).decode()))
    for key, value in settings:
        env[f"GIT_CONFIG_KEY_{count}"] = key
        env[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    env["GIT_CONFIG_COUNT"] = str(count)
    return env


def redact(text: str, password: str | None) -> str:
    if password:
        text = text.replace(password, "***")
        text = re.sub(r"Authorization: Basic [A-Za-z0-9+/=]+", "Authorization: Basic ***", text)
    return text


class Git:
    def __init__(self, run: Runner) -> None:
        self._run = run

    async def git(self, args: list[str], cwd: str, username: str | None = None, password: str | None = None,
                  check: bool = True) -> dict:
        output: dict[str, list[str]] = {"stdout": [], "stderr": []}

        async def emit(chunk: dict) -> None:
            output[chunk["stream"]].append(chunk["text"])

        if not os.path.isdir(cwd):
            raise GitError(404, f"{cwd} is not a folder")
        try:
            result = await self._run(["git", *args], cwd, environment(username, password), GIT_TIMEOUT, emit)
        except UnicodeEncodeError:
            raise GitError(400, "paths and names must be valid Unicode text") from None
        except OSError as exc:
            raise GitError(400, f"cannot run git: {exc.strerror}") from None
        stdout, stderr = "".join(output["stdout"]), redact("".join(output["stderr"]), password)
        if result["timed_out"]:
            raise GitError(504, f"git {args[0]} took longer than {GIT_TIMEOUT:g} s and was stopped")
        if check and result["exit_code"] != 0:
            lines = stderr.strip().splitlines()
            # git's own verdict, not a hint after it (at a mount point "Stopping at filesystem boundary" follows).
            message = next((line for line in lines if line.startswith("fatal:")), lines[-1] if lines else
                           f"git {args[0]} failed")
            raise GitError(400 if "not a git repository" not in stderr else 404, redact(message, password))
        return {"stdout": stdout, "stderr": stderr, "exit_code": result["exit_code"]}

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
        await self.git(args, str(resolve(None)), body.get("username"), body.get("password"))
        if body.get("commit"):
            commit = body["commit"]
            if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-fA-F]{4,64}", commit):
                raise GitError(400, "commit must be a hexadecimal commit id")
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
            files.append({"path": name, "index": index, "worktree": worktree,
                          "staged": index not in (" ", "?"), "untracked": index == "?"})
            skip = index in ("R", "C")
        if branch.startswith("No commits yet on "):
            branch = branch[len("No commits yet on "):]
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

    async def push(self, body: dict) -> dict:
        result = await self.git(["push", "--porcelain"], self.repo(body.get("path")), body.get("username"),
                                body.get("password"))
        return {"output": redact(result["stdout"], body.get("password"))}

    async def pull(self, body: dict) -> dict:
        result = await self.git(["pull", "--ff-only"], self.repo(body.get("path")), body.get("username"),
                                body.get("password"))
        return {"output": redact(result["stdout"], body.get("password"))}
