"""Packages for the sandbox image, fetched on the host so the build itself needs no package index.

Debian packages: apt-get on the host resolves what the base lacks against the base's own dpkg status
(so the closure is what that base needs, not what the host has) and downloads the .deb files; the
build installs them with dpkg. npm packages: `npm pack` for single tarballs (npm itself, Deno's
binary), and a throwaway `npm install` per group of specs to fill an npm cache that the image
carries, so `npm install --offline` in the build, and npm's `prefer-offline` in the sandbox, find
every package and its dependencies there. Every name is checked before it reaches a command line.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from .docker_backend import SandboxError

Progress = Callable[[str], None]

APT_TIMEOUT = 900
NPM_TIMEOUT = 900
# Debian package names (policy 5.6.1), optionally with =version or /suite.
APT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,99}(=[A-Za-z0-9.+~:-]{1,60}|/[a-z0-9-]{1,40})?$")
# npm package names (scoped or not), optionally @version-range/tag; no spaces, no leading dash.
NPM_SPEC_RE = re.compile(
    r"^(@[a-z0-9][a-z0-9._~-]{0,100}/)?[a-z0-9][a-z0-9._~-]{0,213}(@[A-Za-z0-9.^~<>=*+_-]{1,60})?$"
)


def check_apt_names(names: list[str]) -> list[str]:
    bad = [n for n in names if not APT_NAME_RE.match(n)]
    if bad:
        raise SandboxError(f"--apt: {', '.join(repr(b) for b in bad)} is not a Debian package name (e.g. jq or curl)")
    return names


def check_npm_specs(specs: list[str]) -> list[str]:
    bad = [s for s in specs if not NPM_SPEC_RE.match(s)]
    if bad:
        raise SandboxError(
            f"--npm: {', '.join(repr(b) for b in bad)} is not an npm package name (e.g. typescript or prettier@3)"
        )
    return specs


def _os_release_codename(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"') or None
    return None


def download_debs(
    packages: list[str], base_status: str, base_codename: str | None, host_codename: str, progress: Progress
) -> list[Path]:
    """The .deb files of `packages` and of what they depend on that `base_status` (the base's
    /var/lib/dpkg/status) does not have, downloaded with the host's apt into a temporary folder."""
    if not packages:
        return []
    if not shutil.which("apt-get"):
        raise SandboxError("--apt needs apt-get on this machine, to download the Debian packages for the build")
    if base_codename and base_codename != host_codename:
        raise SandboxError(
            f"--apt: the base image is Debian {base_codename} but this machine's apt is set up for {host_codename}; "
            "build on a base of the same release (the default one is)"
        )
    work = Path(tempfile.mkdtemp(prefix="jupyter-sandbox-debs-"))
    (work / "archives" / "partial").mkdir(parents=True)
    (work / "cache").mkdir()
    status = work / "status"
    status.write_text(base_status)
    command = [
        "apt-get",
        "-q",
        "-y",
        "--download-only",
        "--no-install-recommends",
        "-o",
        f"Dir::State::status={status}",
        "-o",
        f"Dir::Cache={work / 'cache'}",
        "-o",
        f"Dir::Cache::archives={work / 'archives'}",
        "-o",
        "Debug::NoLocking=1",
        "install",
        "--",
        *packages,
    ]
    progress(f"downloading Debian packages on the host: {' '.join(packages)}...")
    result = subprocess.run(command, capture_output=True, text=True, timeout=APT_TIMEOUT)
    if result.returncode != 0:
        errors = [line for line in (result.stderr or result.stdout).splitlines() if line.startswith("E:")]
        message = "; ".join(errors) or (result.stderr or result.stdout)[-1500:]
        shutil.rmtree(work, ignore_errors=True)
        if "Unable to locate package" in message:
            message += (
                " (is the name right? `apt-cache search NAME` finds it; run `apt-get update` if the lists are old)"
            )
        raise SandboxError(f"--apt: {message}")
    return sorted((work / "archives").glob("*.deb"))


def _npm(args: list[str], cwd: Path, cache: Path | None) -> subprocess.CompletedProcess:
    if not shutil.which("npm"):
        raise SandboxError("building a Node image needs npm on this machine, to fetch npm packages for the build")
    # Options go before the `--` that args may end with (what follows it are package specs).
    options = ["--no-audit", "--no-fund", "--no-update-notifier", *(["--cache", str(cache)] if cache else [])]
    command = ["npm", args[0], *options, *args[1:]]
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_prefix")}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT, env=env)


def _npm_error(result: subprocess.CompletedProcess, what: str) -> SandboxError:
    text = result.stderr or result.stdout
    missing = re.findall(r"404 Not Found - GET \S+?/((?:@[^/\s]+%2[fF])?[^/\s]+)(?:\s|$)", text)
    if missing or "E404" in text:
        names = ", ".join(sorted({m.replace("%2f", "/").replace("%2F", "/") for m in missing})) or what
        return SandboxError(f"npm package not found in the registry: {names}")
    if "ETARGET" in text:
        return SandboxError(f"no version of {what} matches: {text.strip().splitlines()[-1][:300]}")
    return SandboxError(f"npm failed for {what}: {text[-1500:]}")


def check_npm_exist(specs: list[str], progress: Progress) -> None:
    """Each spec names a package (and a version) the registry has: a missing one is reported before
    any download, by name."""
    for spec in specs:
        progress(f"looking up {spec} in the npm registry...")
        result = _npm(["view", "--json", "--", spec, "name"], Path(tempfile.gettempdir()), None)
        if result.returncode != 0 or not result.stdout.strip():
            raise _npm_error(result, spec) if result.returncode != 0 else SandboxError(f"no version of {spec} exists")


def npm_pack(spec: str, destination: Path, progress: Progress) -> Path:
    """One package's tarball (from the host's npm cache when it has it)."""
    destination.mkdir(parents=True, exist_ok=True)
    progress(f"fetching {spec} from npm on the host...")
    result = _npm(["pack", "--json", "--pack-destination", str(destination), "--", spec], destination, None)
    if result.returncode != 0:
        raise _npm_error(result, spec)
    try:
        filename = json.loads(result.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        raise SandboxError(f"npm pack {spec}: unexpected output {result.stdout[-300:]!r}") from None
    return destination / str(filename).replace("@", "").replace("/", "-")


def npm_fill_cache(cache: Path, specs: list[str], package_json: dict | None, progress: Progress) -> Path:
    """Install `specs` (or the dependencies of `package_json`) into a throwaway folder with `cache` as
    npm's cache, so the cache holds them and everything they depend on. Returns that folder."""
    staging = Path(tempfile.mkdtemp(prefix="jupyter-sandbox-npm-"))
    (staging / "package.json").write_text(json.dumps(package_json or {"name": "staging", "private": True}))
    what = ", ".join(specs) if specs else "the template's dependencies"
    progress(f"resolving npm packages on the host: {what}...")
    args = ["install", "--ignore-scripts", *(["--no-save", "--", *specs] if specs else [])]
    result = _npm(args, staging, cache)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise _npm_error(result, what)
    return staging


def tar_gz_tree(root: Path, prefix: str) -> bytes:
    """`root`'s files as a .tar.gz under `prefix/`, owned by root, with fixed times (reproducible)."""
    buffer = io.BytesIO()
    # gzip's own header has a time too: fixed, so that the same tree always gives the same bytes.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w") as archive,
    ):
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            # Stored without the dot, as dotfiles in a build context are easy to lose.
            relative = "/".join(".gitignore" if part == "gitignore" else part for part in relative.split("/"))
            info = tarfile.TarInfo(f"{prefix}/{relative}")
            info.mtime = 0
            info.uid = info.gid = 0
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                data = path.read_bytes()
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
