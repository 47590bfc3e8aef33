"""Building the sandbox image.

The Dockerfile in `docker/` is built on a base image with Python 3. Python packages are downloaded
on the host (`pip download`, for the base's Python version and platform) and installed from the
build context with `--no-index`, so the build also works where containers cannot reach a package
index. When the base cannot be pulled (no registry reachable), a Debian base is bootstrapped with
mmdebstrap and `docker import`. The result is tagged by a hash of its inputs, and an image whose
inputs have not changed is not built again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import __version__
from .backend import Backend
from .docker_backend import SandboxError, tar_bytes
from .spec import LABEL_IMAGE_INPUTS, LABEL_PREFIX

Progress = Callable[[str], None]

DEFAULT_REPOSITORY = "jupyter-sandbox/python"
DEFAULT_IMAGE = f"{DEFAULT_REPOSITORY}:{__version__}"
DEFAULT_BASE = "python:3.12-slim"
BOOTSTRAP_REPOSITORY = "jupyter-sandbox/base"
BOOTSTRAP_PACKAGES = ["python3", "python3-venv", "ca-certificates", "git", "procps", "passwd"]
PIP_DOWNLOAD_TIMEOUT = 1800


def build_context_dir() -> Path:
    """docker/ from an installed wheel, or from the source tree in a development install."""
    packaged = Path(__file__).resolve().parent.parent / "_docker"
    if (packaged / "Dockerfile").exists():
        return packaged
    source = Path(__file__).resolve().parents[2] / "docker"
    if (source / "Dockerfile").exists():
        return source
    raise SandboxError("the sandbox image's Dockerfile is missing from this installation")


def wheel_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "jupyter-sandbox" / "wheels"


@dataclass
class ImageBuildResult:
    image: str
    built: bool
    base: str
    inputs_hash: str


def _debian_suite() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip('"') or "bookworm"
    except OSError:
        pass
    return "bookworm"


def _apt_sources_file() -> str | None:
    """The machine's own Debian sources, so mmdebstrap uses the mirror (and proxy) apt uses."""
    for candidate in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        path = Path(candidate)
        if path.exists() and path.read_text().strip():
            return candidate
    return None


def bootstrap_base(backend: Backend, progress: Progress) -> str:
    """A minimal Debian image with Python 3, made from Debian packages with mmdebstrap."""
    suite = _debian_suite()
    image = f"{BOOTSTRAP_REPOSITORY}:{suite}"
    if backend.image_id(image):
        progress(f"using the bootstrapped base {image}")
        return image
    if not shutil.which("mmdebstrap"):
        raise SandboxError(
            "no base image could be pulled and mmdebstrap is not installed to bootstrap one; "
            "install it (apt-get install mmdebstrap) or pass --base with a local image"
        )
    command = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(BOOTSTRAP_PACKAGES)}",
        "--format=tar",
        suite,
        "-",
    ]
    sources = _apt_sources_file()
    if sources:
        command.append(sources)
    progress(f"bootstrapping a Debian {suite} base with mmdebstrap (about a minute)...")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        backend.import_image(proc.stdout, BOOTSTRAP_REPOSITORY, suite)
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            raise SandboxError(f"mmdebstrap failed: {stderr.decode(errors='replace')[-2000:]}")
    progress(f"bootstrapped {image}")
    return image


def resolve_base(backend: Backend, base: str, progress: Progress, bootstrap: bool) -> str:
    if bootstrap:
        return bootstrap_base(backend, progress)
    if backend.image_id(base):
        return base
    progress(f"pulling the base image {base}...")
    try:
        backend.pull(base)
        return base
    except SandboxError as exc:
        progress(f"{exc}; bootstrapping a Debian base instead")
    return bootstrap_base(backend, progress)


def _python_target(backend: Backend, base: str) -> dict[str, str]:
    probe = (
        "import json, platform, sys; print(json.dumps({'version': '%d%d' % sys.version_info[:2], "
        "'machine': platform.machine()}))"
    )
    output = backend.run_once(base, ["python3", "-c", probe]).strip().splitlines()[-1]
    target = json.loads(output)
    if not str(target.get("version", "")).isdigit():
        raise SandboxError(f"could not tell the Python version of {base}")
    return target


def download_wheels(requirements: Path, target: dict[str, str], progress: Progress) -> Path:
    version, machine = target["version"], target["machine"]
    destination = wheel_cache_dir() / f"cp{version}-{machine}"
    destination.mkdir(parents=True, exist_ok=True)
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in (36, 35, 34, 31, 28, 27, 24, 17, 12, 5)]
    platforms += [f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}", f"linux_{machine}"]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        version,
        "--implementation",
        "cp",
        "--abi",
        f"cp{version}",
        "--abi",
        "abi3",
        "--abi",
        "none",
        "--dest",
        str(destination),
        "-r",
        str(requirements),
    ]
    for tag in platforms:
        command += ["--platform", tag]
    progress(f"downloading Python wheels for cp{version} {machine} on the host...")
    result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT)
    if result.returncode != 0:
        raise SandboxError(f"pip download failed: {(result.stderr or result.stdout)[-2000:]}")
    return destination


def inputs_hash(context: Path, base_id: str, target: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in ("Dockerfile", "requirements.txt"):
        digest.update(name.encode() + b"\0" + (context / name).read_bytes() + b"\0")
    digest.update(f"{base_id}\0{target['version']}\0{target['machine']}\0{__version__}".encode())
    return digest.hexdigest()


def build_image(
    backend: Backend,
    progress: Progress,
    tag: str = DEFAULT_IMAGE,
    base: str = DEFAULT_BASE,
    bootstrap: bool = False,
    force: bool = False,
) -> ImageBuildResult:
    """Build the sandbox image unless one with the same inputs exists; print progress on the way."""
    context = build_context_dir()
    base_image = resolve_base(backend, base, progress, bootstrap)
    base_id = backend.image_id(base_image) or base_image
    target = _python_target(backend, base_image)
    digest = inputs_hash(context, base_id, target)
    labels = backend.image_labels(tag)
    if not force and labels and labels.get(LABEL_IMAGE_INPUTS) == digest:
        progress(f"{tag} is up to date")
        return ImageBuildResult(tag, False, base_image, digest)

    wheels = download_wheels(context / "requirements.txt", target, progress)
    files = {
        "Dockerfile": ((context / "Dockerfile").read_bytes(), 0o644),
        "requirements.txt": ((context / "requirements.txt").read_bytes(), 0o644),
    }
    for wheel in sorted(wheels.glob("*.whl")):
        files[f"wheels/{wheel.name}"] = (wheel.read_bytes(), 0o644)
    progress(f"building {tag} on {base_image} ({len(files) - 2} wheels)...")
    repository, _, version = tag.rpartition(":")
    backend.build(
        tar_bytes(files, dirs={"wheels": (0o755, 0, 0)}),
        tag=tag,
        buildargs={"BASE_IMAGE": base_image},
        labels={LABEL_IMAGE_INPUTS: digest, f"{LABEL_PREFIX}.created-by": "jupyter-sandbox"},
        progress=progress,
    )
    backend.tag(tag, repository, f"{version}-{digest[:12]}")
    progress(f"built {tag}")
    return ImageBuildResult(tag, True, base_image, digest)
