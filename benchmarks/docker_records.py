"""Engine calls and time of a status read: `manager.get()` then limits, disk enforcement, the current
spec, uptime and usage (what `%sandbox status` and GET /sandboxes/{id} read), on one real sandbox.

Baseline, in the same run: the same reads with the engine calls each reader made for itself before
the Sandbox carried its inspected record (a container inspect per reader, the home volume read by
each), so that the host-side work (the home's usage, the cgroup) is the same on both lines.

Run it against another checkout (PYTHONPATH=/path/to/checkout) to measure that checkout's manager
path beside the same baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend
from jupyter_sandbox.sandbox.manager import SandboxManager


@contextmanager
def counting(backend: DockerBackend) -> Iterator[list[str]]:
    """Every HTTP request the docker SDK sends to the engine, by method and path."""
    seen: list[str] = []
    api: Any = backend.api
    original = api.send

    def send(request: Any, **kwargs: Any) -> Any:
        seen.append(f"{request.method} {request.path_url.split('?')[0]}")
        return original(request, **kwargs)

    api.send = send
    try:
        yield seen
    finally:
        api.send = original


def manager_status(manager: SandboxManager, sandbox_id: str) -> None:
    sandbox = manager.get(sandbox_id)
    manager.limits(sandbox)
    manager.disk_enforcement(sandbox)
    manager.current_spec(sandbox)
    manager.uptime(sandbox)
    manager.usage(sandbox)


def baseline_status(manager: SandboxManager, backend: DockerBackend, sandbox_id: str, container: str) -> None:
    """The same reads and host-side work, plus the engine calls each reader made for itself before
    (a container inspect each for limits, disk enforcement, the spec, uptime and usage; the home
    volume read by each of limits, disk enforcement (twice) and the spec)."""
    manager_status(manager, sandbox_id)
    api: Any = backend.api
    volume = binding.volume_name(sandbox_id)
    for _ in range(4):
        api.inspect_container(container)
    for _ in range(3):
        api.inspect_volume(volume)


def measure(backend: DockerBackend, read: Callable[[], None], repeat: int) -> tuple[float, list[str]]:
    read()  # warm
    with counting(backend) as calls:
        read()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    return statistics.median(times), calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    backend = DockerBackend()
    manager = SandboxManager(backend=backend, enforce_disk="if-possible")
    sandbox = manager.create()
    try:
        new, new_calls = measure(backend, lambda: manager_status(manager, sandbox.id), args.repeat)
        old, old_calls = measure(
            backend, lambda: baseline_status(manager, backend, sandbox.id, sandbox.container_id), args.repeat
        )
    finally:
        manager.remove(sandbox)

    def kinds(calls: list[str]) -> str:
        inspects = sum(1 for c in calls if c.startswith("GET /") and c.endswith("/json") and "/containers/" in c)
        lists = sum(1 for c in calls if c.endswith("/containers/json"))
        volumes = sum(1 for c in calls if "/volumes/" in c)
        return f"{len(calls):2d} engine calls ({lists} list, {inspects - lists} container, {volumes} volume inspect)"

    print(f"status read of one running sandbox (get, limits, disk, spec, uptime, usage), median of {args.repeat}")
    print(f"  an inspect per reader (baseline)    {old * 1000:7.2f} ms   {kinds(old_calls)}")
    print(
        f"  manager path                        {new * 1000:7.2f} ms   {kinds(new_calls)}   ({old / new:.2f}x faster)"
    )


if __name__ == "__main__":
    main()
