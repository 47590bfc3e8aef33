"""Building the desktop variant of the sandbox image (`jupyter sandbox image build --desktop`).

The desktop image is the default image plus Debian's X11 desktop packages (docker/desktop/). The
packages are downloaded on the host with apt, against the base image's own dpkg status file, so that
exactly the packages the base lacks (and their dependencies) land in the build context; the build
installs them with dpkg and reaches no network, as the default image's build does with its wheels.
The result is tagged by a hash of its inputs (the base image's id, the package list, the Dockerfile),
and an image whose inputs have not changed is not built again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .. import __version__
from .backend import Backend
from .docker_backend import SandboxError, tar_bytes
from .image import DEFAULT_IMAGE, Progress, build_context_dir
from .spec import LABEL_IMAGE_INPUTS, LABEL_PREFIX

DESKTOP_REPOSITORY = "jupyter-sandbox/desktop"
DESKTOP_IMAGE = f"{DESKTOP_REPOSITORY}:{__version__}"
LABEL_DESKTOP = f"{LABEL_PREFIX}.desktop"
APT_TIMEOUT = 1800


def desktop_context_dir() -> Path:
    return build_context_dir() / "desktop"


def deb_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "jupyter-sandbox" / "debs"


def packages(context: Path) -> list[str]:
    lines = (context / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _apt_options(status: Path, archives: Path) -> list[str]:
    # The base image's package database stands in for the host's: apt resolves what the image lacks.
    return [
        "-q",
        "-o",
        f"Dir::State::status={status}",
        "-o",
        f"Dir::Cache::archives={archives}",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Install-Recommends=0",
        "-o",
        "APT::Sandbox::User=root",
    ]


def download_debs(backend: Backend, base: str, wanted: list[str], digest: str, progress: Progress) -> list[Path]:
    """The .deb files `base` needs for `wanted`, downloaded on the host (noVNC's own package apart)."""
    if not shutil.which("apt-get"):
        raise SandboxError("the desktop image's packages are downloaded with apt-get, which this machine lacks")
    destination = deb_cache_dir() / digest[:16]
    archives = destination / "debs"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    novnc = destination / "novnc"
    novnc.mkdir(parents=True, exist_ok=True)
    status = destination / "status"
    status.write_text(backend.run_once(base, ["cat", "/var/lib/dpkg/status"]))
    progress(f"downloading {len(wanted)} Debian packages and their dependencies on the host...")
    command = ["apt-get", *_apt_options(status, archives), "install", "-y", "--download-only", "--", *wanted]
    result = subprocess.run(command, capture_output=True, text=True, timeout=APT_TIMEOUT)
    if result.returncode != 0:
        raise SandboxError(
            f"apt-get could not download the desktop packages: {(result.stderr or result.stdout)[-2000:]}"
        )
    if not any(novnc.glob("novnc_*.deb")):
        # Only noVNC's web client files are used (websockify serves them): its package is fetched
        # alone, without the launcher's dependencies.
        result = subprocess.run(
            ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", "--", "novnc"],
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT,
            cwd=novnc,
        )
        if result.returncode != 0:
            raise SandboxError(f"apt-get could not download noVNC: {(result.stderr or result.stdout)[-2000:]}")
    return sorted(archives.glob("*.deb")) + sorted(novnc.glob("novnc_*.deb"))


def inputs_hash(context: Path, base_id: str) -> str:
    digest = hashlib.sha256()
    for name in ("Dockerfile", "packages.txt"):
        digest.update(name.encode() + b"\0" + (context / name).read_bytes() + b"\0")
    digest.update(f"{base_id}\0{__version__}".encode())
    return digest.hexdigest()


def build_desktop_image(
    backend: Backend, progress: Progress, base: str = DEFAULT_IMAGE, tag: str = DESKTOP_IMAGE, force: bool = False
) -> str:
    """Build the desktop image on `base` (a built sandbox image) unless it is up to date; its tag."""
    context = desktop_context_dir()
    base_id = backend.image_id(base)
    if not base_id:
        raise SandboxError(f"the desktop image is built on {base}, which is not here; build it first")
    digest = inputs_hash(context, base_id)
    labels = backend.image_labels(tag)
    if not force and labels and labels.get(LABEL_IMAGE_INPUTS) == digest:
        progress(f"{tag} is up to date")
        return tag
    debs = download_debs(backend, base, packages(context), digest, progress)
    files = {"Dockerfile": ((context / "Dockerfile").read_bytes(), 0o644)}
    for deb in debs:
        folder = "novnc" if deb.parent.name == "novnc" else "debs"
        files[f"{folder}/{deb.name}"] = (deb.read_bytes(), 0o644)
    progress(f"building {tag} on {base} ({len(debs)} Debian packages)...")
    repository, _, version = tag.rpartition(":")
    backend.build(
        tar_bytes(files, dirs={"debs": (0o755, 0, 0), "novnc": (0o755, 0, 0)}),
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        labels={LABEL_IMAGE_INPUTS: digest, f"{LABEL_PREFIX}.created-by": "jupyter-sandbox", LABEL_DESKTOP: "1"},
        progress=progress,
    )
    backend.tag(tag, repository, f"{version}-{digest[:12]}")
    progress(f"built {tag}")
    return tag
