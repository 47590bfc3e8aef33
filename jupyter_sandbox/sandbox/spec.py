"""What a sandbox is made of: its image and limits, and the parsing of sizes people type."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

LABEL_PREFIX = "io.jupyter-sandbox"
LABEL_ID = f"{LABEL_PREFIX}.id"
LABEL_OWNER = f"{LABEL_PREFIX}.owner"
LABEL_KERNEL_ID = f"{LABEL_PREFIX}.kernel-id"
LABEL_CREATED_BY = f"{LABEL_PREFIX}.created-by"
LABEL_SPEC = f"{LABEL_PREFIX}.spec"
# Set on sandboxes made for the warm pool; whether one is still free is in its name (binding.py).
LABEL_POOL = f"{LABEL_PREFIX}.pool"
# The Jupyter server (binding.ServerLease) whose kernel, pool or API made the sandbox.
LABEL_SERVER = f"{LABEL_PREFIX}.server"
LABEL_IMAGE_INPUTS = f"{LABEL_PREFIX}.image-inputs"
# Kernels an image offers besides ipykernel: {"typescript": [argv with {connection_file}]}.
LABEL_KERNELS = f"{LABEL_PREFIX}.kernels"
LANGUAGES = ("python", "typescript")

# Ports the agent and the inner ipykernel listen on inside the container. Each is published on
# 127.0.0.1 only, on a host port Docker picks.
AGENT_PORT = 8750
KERNEL_PORTS = {"shell": 8751, "iopub": 8752, "stdin": 8753, "control": 8754, "hb": 8755}
RESERVED_PORTS = frozenset({AGENT_PORT, *KERNEL_PORTS.values()})


def user_ports(ports: list[int]) -> list[int]:
    """Listening ports without the agent's and the inner kernel's own."""
    return [p for p in ports if p not in RESERVED_PORTS]


SANDBOX_USER_UID = 1000
SANDBOX_HOME = "/home/sandbox"

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class SpecError(ValueError):
    """A sandbox spec that cannot be honoured; the message says which value and why."""


def parse_size(value: str | int | float, what: str = "size") -> int:
    """Turn '512m', '1g', '1.5GiB' or a plain number of bytes into bytes."""
    if isinstance(value, bool):
        raise SpecError(f"{what}: expected a size such as 512m or 2g, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise SpecError(f"{what}: expected a size such as 512m or 2g, got {value!r}")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise SpecError(f"{what}: must be more than zero, got {value!r}")
    return size


def format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        step = _SIZE_UNITS[unit.lower()]
        if size >= step and size % (step // 1024 or 1) == 0:
            value = size / step
            return f"{value:g} {unit}iB"
    return f"{size} B"


def readable_size(size: int | float) -> str:
    """A measured size as people read it: "512 B", "55 MiB", "169 MiB", "1.2 GiB" (two or three
    significant digits; limits, which are round, keep spec.format_size's exact form)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    text = f"{value:.1f}" if abs(value) < 9.95 else f"{value:.0f}"
    return f"{text.removesuffix('.0')} {unit}"


def limit_size(size: int) -> str:
    """A limit: exact when it is round ("2 GiB", "1.5 GiB"), else as a measured size is read."""
    exact = format_size(size)
    return exact if re.fullmatch(r"\d+(\.\d{1,2})? [KMGT]?i?B", exact) else readable_size(size)


@dataclass
class SandboxSpec:
    """Everything needed to create one sandbox container."""

    image: str
    cpu: float = 1.0
    memory: int = 1024**3
    disk: int = 3 * 1024**3  # the home's size (its inodes in proportion); also the largest file
    pids: int = 512
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str | None = None
    # The language of the sandbox's kernel: "python" (ipykernel) or "typescript" (the image's
    # TypeScript kernel, named in its io.jupyter-sandbox.kernels label).
    language: str = "python"

    def validate(self) -> SandboxSpec:
        if self.language not in LANGUAGES:
            raise SpecError(f"language: {self.language!r} is not one of {', '.join(LANGUAGES)}")
        if not isinstance(self.image, str) or not self.image.strip():
            raise SpecError("image: a sandbox needs an image name, e.g. jupyter-sandbox/python:0.1.0")
        if any(ch.isspace() for ch in self.image):
            raise SpecError(f"image: {self.image!r} is not a valid image name")
        if not (0.01 <= float(self.cpu) <= 512):
            raise SpecError(f"cpu: expected between 0.01 and 512 vCPUs, got {self.cpu!r}")
        if self.memory < 16 * 1024**2:
            raise SpecError(f"memory: at least 16 MiB is needed, got {format_size(self.memory)}")
        if self.disk < 64 * 1024**2:
            raise SpecError(f"disk: at least 64 MiB is needed, got {format_size(self.disk)}")
        if not (16 <= int(self.pids) <= 1_000_000):
            raise SpecError(f"pids: expected between 16 and 1000000, got {self.pids!r}")
        for key, value in self.env.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise SpecError(f"env: {key!r} is not a valid variable name")
            if "\0" in value:
                raise SpecError(f"env: the value of {key} contains a NUL byte")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
