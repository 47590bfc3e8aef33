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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import __version__
from . import image_packages
from .backend import Backend
from .docker_backend import SandboxError, tar_bytes
from .spec import LABEL_IMAGE_INPUTS, LABEL_KERNELS, LABEL_PREFIX

Progress = Callable[[str], None]

DEFAULT_REPOSITORY = "jupyter-sandbox/python"
DEFAULT_IMAGE = f"{DEFAULT_REPOSITORY}:{__version__}"
DEFAULT_BASE = "python:3.12-slim"
BOOTSTRAP_REPOSITORY = "jupyter-sandbox/base"
BOOTSTRAP_PACKAGES = ["python3", "python3-venv", "ca-certificates", "git", "procps", "passwd"]
PIP_DOWNLOAD_TIMEOUT = 1800

# The build context's own files (docker/), besides the downloaded packages.
CONTEXT_FILES = ("Dockerfile", "requirements.txt", "sandbox_network_check.py")
NODE_REPOSITORY = "jupyter-sandbox/node"
NODE_IMAGE = f"{NODE_REPOSITORY}:{__version__}"
LANGUAGE_REPOSITORIES = {"python": DEFAULT_REPOSITORY, "node": NODE_REPOSITORY}
# The node preset: Debian's Node.js (bookworm: 18), npm, TypeScript and Deno (whose built-in Jupyter
# kernel is the sandbox's TypeScript kernel) from the npm registry, and create-hono for the starter.
NODE_APT = ["nodejs"]
NPM_SPEC = "npm@10"
DENO_VERSION = "2"
NODE_GLOBAL_NPM = ["typescript@5"]
CREATE_HONO = "create-hono@latest"
TYPESCRIPT_KERNEL_ARGV = ["/usr/local/bin/deno", "jupyter", "--kernel", "--conn", "{connection_file}"]
LABEL_IMAGE_RECIPE = f"{LABEL_PREFIX}.image-recipe"
# npm's built-in config in the image: `npm install -g` lands in ~/.local (on the home volume, kept with
# the files, its bin already on PATH); the cache is the one the build filled (in XDG_CACHE_HOME, which a
# sandbox has in its home, seeded from the image), preferred over the registry, so the preset's
# packages install with no network.
NPMRC = """prefix=/home/sandbox/.local
cache=${XDG_CACHE_HOME}/npm
prefer-offline=true
update-notifier=false
fund=false
audit=false
"""


@dataclass
class ImageRecipe:
    """What goes into an image besides the Python preset."""

    lang: str = "python"
    requirements: Path | None = None
    apt: list[str] = field(default_factory=list)
    npm: list[str] = field(default_factory=list)

    def checked(self) -> ImageRecipe:
        if self.lang not in LANGUAGE_REPOSITORIES:
            raise SandboxError(
                f"--lang: {self.lang!r} is not a preset; choose one of {', '.join(LANGUAGE_REPOSITORIES)}"
            )
        if self.requirements is not None and not Path(self.requirements).is_file():
            raise SandboxError(f"--requirements: {self.requirements} is not a readable file")
        image_packages.check_apt_names(self.apt)
        image_packages.check_npm_specs(self.npm)
        if self.npm and self.lang != "node":
            raise SandboxError("--npm needs Node.js in the image: add --lang node")
        return self

    def extras(self) -> bool:
        return bool(self.apt or self.npm or self.requirements is not None)

    def to_dict(self) -> dict[str, object]:
        requirements = Path(self.requirements).read_text() if self.requirements is not None else None
        return {"lang": self.lang, "requirements": requirements, "apt": sorted(self.apt), "npm": sorted(self.npm)}

    def describe(self) -> str:
        parts = [f"{self.lang} preset"]
        if self.requirements is not None:
            parts.append(f"requirements from {self.requirements}")
        parts += [f"apt: {' '.join(self.apt)}"] if self.apt else []
        parts += [f"npm: {' '.join(self.npm)}"] if self.npm else []
        return ", ".join(parts)


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


def resolve_base(backend: Backend, base: str, progress: Progress, bootstrap: bool, explicit: bool = False) -> str:
    """The base image to build on. An explicit base is used only if it is on this engine: it is the
    user's choice, so it is never swapped for another one, and the error says how to get it."""
    if bootstrap:
        return bootstrap_base(backend, progress)
    if backend.image_id(base):
        return base
    if explicit:
        raise SandboxError(
            f"the base image {base!r} is not on this Docker engine; get it with `docker pull {base}` "
            f"(or `docker load -i FILE` where no registry is reachable), or leave out --base to build on "
            f"the default ({DEFAULT_BASE}, or a Debian base bootstrapped with --bootstrap)"
        )
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


def _node_dir(context: Path) -> Path:
    return context / "node"


def inputs_hash(context: Path, base_id: str, target: dict[str, str], recipe: ImageRecipe | None = None) -> str:
    recipe = recipe or ImageRecipe()
    digest = hashlib.sha256()
    for name in CONTEXT_FILES:
        digest.update(name.encode() + b"\0" + (context / name).read_bytes() + b"\0")
    digest.update(f"{base_id}\0{target['version']}\0{target['machine']}\0{__version__}".encode())
    if recipe.lang != "python" or recipe.apt or recipe.npm or recipe.requirements is not None:
        # Only an image with more than the Python preset hashes more, so the default image's tag is stable.
        digest.update(json.dumps(recipe.to_dict(), sort_keys=True).encode())
        if recipe.lang == "node":
            for path in sorted(_node_dir(context).rglob("*")):
                if path.is_file() and path.suffix != ".md":  # what goes into the image, not its notes
                    digest.update(path.relative_to(context).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _deno_package(machine: str) -> str:
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise SandboxError(f"the node preset has no Deno build for {machine}")
    return f"@deno/linux-{arch}-glibc@{DENO_VERSION}"


def _base_packages(backend: Backend, base: str) -> tuple[str | None, str]:
    """The base's Debian release and its dpkg status (what is installed), read without network."""
    output = backend.run_once(base, ["sh", "-c", "cat /etc/os-release; echo @@status@@; cat /var/lib/dpkg/status"])
    release, _, status = output.partition("@@status@@\n")
    from .image_packages import _os_release_codename

    return _os_release_codename(release), status


def _node_files(context: Path, recipe: ImageRecipe, target: dict[str, str], progress: Progress) -> dict[str, bytes]:
    """npm/ of the build context: npm and Deno tarballs, the npm cache, the global specs, the npm
    config and create-hono's template cache, all fetched and made on the host."""
    work = Path(tempfile.mkdtemp(prefix="jupyter-sandbox-node-"))
    files: dict[str, bytes] = {}
    try:
        packs = work / "packs"
        if recipe.lang == "node":
            npm_tgz = image_packages.npm_pack(NPM_SPEC, packs, progress)
            deno_tgz = image_packages.npm_pack(_deno_package(target["machine"]), packs, progress)
            files["npm.tgz"], files["deno.tgz"] = npm_tgz.read_bytes(), deno_tgz.read_bytes()
            files["npmrc"] = NPMRC.encode()
            files["npm.sh"] = (_node_dir(context) / "npm.sh").read_bytes()
        cache = work / "cache"
        global_specs = (NODE_GLOBAL_NPM if recipe.lang == "node" else []) + list(recipe.npm)
        if global_specs:
            image_packages.npm_fill_cache(cache, global_specs, None, progress)
            files["global.txt"] = ("\n".join(global_specs) + "\n").encode()
        if recipe.lang == "node":
            template = _node_dir(context) / "hono-nodejs"
            package_json = json.loads((template / "package.json").read_text())
            image_packages.npm_fill_cache(cache, [], package_json, progress)
            staging = image_packages.npm_fill_cache(cache, [CREATE_HONO], None, progress)
            version = json.loads((staging / "node_modules" / "create-hono" / "package.json").read_text())["version"]
            major, minor = str(version).split(".")[:2]
            # create-hono downloads the starter at tag v<major>.<minor> and, when that fails, extracts
            # this file from its cache: the template an offline site hands its users.
            files[f"xdg-cache/bluwy-giget/gh/honojs-starter/v{major}.{minor}.tar.gz"] = image_packages.tar_gz_tree(
                template, "honojs-starter-offline/templates/nodejs"
            )
        for path in sorted(cache.rglob("*")) if cache.exists() else []:
            if path.is_file() and "_logs" not in path.parts:
                files[f"cache/{path.relative_to(cache).as_posix()}"] = path.read_bytes()
        return files
    finally:
        shutil.rmtree(work, ignore_errors=True)


def default_tag(lang: str) -> str:
    return f"{LANGUAGE_REPOSITORIES[lang]}:{__version__}"


def build_image(
    backend: Backend,
    progress: Progress,
    tag: str | None = DEFAULT_IMAGE,
    base: str = DEFAULT_BASE,
    bootstrap: bool = False,
    force: bool = False,
    recipe: ImageRecipe | None = None,
    explicit_base: bool = False,
) -> ImageBuildResult:
    """Build the sandbox image unless one with the same inputs exists; print progress on the way.

    `recipe` adds to the Python preset (the node preset, Debian, Python and npm packages); without a
    `tag`, an image with extra packages is tagged `<repository>:<version>-<inputs hash>`, so it never
    takes the name of the preset's own image."""
    recipe = (recipe or ImageRecipe()).checked()
    context = build_context_dir()
    base_image = resolve_base(backend, base, progress, bootstrap, explicit=explicit_base)
    base_id = backend.image_id(base_image) or base_image
    target = _python_target(backend, base_image)
    digest = inputs_hash(context, base_id, target, recipe)
    if tag is None:
        tag = default_tag(recipe.lang) if not recipe.extras() else f"{default_tag(recipe.lang)}-{digest[:12]}"
    labels = backend.image_labels(tag)
    if not force and labels and labels.get(LABEL_IMAGE_INPUTS) == digest:
        progress(f"{tag} is up to date")
        return ImageBuildResult(tag, False, base_image, digest)

    if recipe.npm:
        image_packages.check_npm_exist(recipe.npm, progress)
    wheels = download_wheels(context / "requirements.txt", target, progress)
    files = {name: ((context / name).read_bytes(), 0o644) for name in CONTEXT_FILES}
    for wheel in sorted(wheels.glob("*.whl")):
        files[f"wheels/{wheel.name}"] = (wheel.read_bytes(), 0o644)
    count = len(files) - len(CONTEXT_FILES)
    dirs = {name: (0o755, 0, 0) for name in ("wheels", "debs", "npm", "extra-wheels")}
    if recipe.requirements is not None:
        extra = download_wheels(recipe.requirements, target, progress)
        files["extra-wheels/requirements.txt"] = (recipe.requirements.read_bytes(), 0o644)
        for wheel in sorted(extra.glob("*.whl")):
            files[f"extra-wheels/{wheel.name}"] = (wheel.read_bytes(), 0o644)
    apt = (NODE_APT if recipe.lang == "node" else []) + list(recipe.apt)
    if apt:
        codename, status = _base_packages(backend, base_image)
        debs = image_packages.download_debs(apt, status, codename, _debian_suite(), progress)
        for deb in debs:
            files[f"debs/{deb.name}"] = (deb.read_bytes(), 0o644)
        if debs:
            shutil.rmtree(debs[0].parent.parent, ignore_errors=True)
    if recipe.lang == "node" or recipe.npm:
        for name, data in _node_files(context, recipe, target, progress).items():
            files[f"npm/{name}"] = (data, 0o644)
    for name in list(files):
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:depth]), (0o755, 0, 0))
    image_labels = {LABEL_IMAGE_INPUTS: digest, f"{LABEL_PREFIX}.created-by": "jupyter-sandbox"}
    image_labels[LABEL_IMAGE_RECIPE] = json.dumps(recipe.to_dict(), sort_keys=True)
    if recipe.lang == "node":
        image_labels[LABEL_KERNELS] = json.dumps({"typescript": TYPESCRIPT_KERNEL_ARGV})
    progress(f"building {tag} on {base_image} ({count} wheels, {recipe.describe()})...")
    repository, _, version = tag.rpartition(":")
    backend.build(
        tar_bytes(files, dirs=dirs),
        tag=tag,
        buildargs={"BASE_IMAGE": base_image},
        labels=image_labels,
        progress=progress,
    )
    if not version.endswith(digest[:12]):
        backend.tag(tag, repository, f"{version}-{digest[:12]}")
    progress(f"built {tag}")
    return ImageBuildResult(tag, True, base_image, digest)
