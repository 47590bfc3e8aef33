"""A sandbox cannot fill the host's disk: its home is a filesystem of its own (bytes and inodes), its
root is read-only, /tmp and /var/tmp are small tmpfs; files are kept across restarts and resizes, and
a deleted sandbox leaves no image or loop device behind. Driven as an attacker would: cells that
write until something stops them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SandboxKernel, Server, start_sandbox_kernel, wait_until

from jupyter_sandbox.sandbox import binding
from jupyter_sandbox.sandbox.docker_backend import DockerBackend, SandboxError
from jupyter_sandbox.sandbox.manager import LABEL_HOME_IMAGE, Sandbox, SandboxManager
from jupyter_sandbox.sandbox.spec import LABEL_ID

API = "/sandbox/api"
MiB = 1024**2
HOME_SIZE = 256 * MiB
TMP_SIZE = 64 * MiB

# Write `count` files of `each` MiB under `folder` until the filesystem says no; print what stopped
# it (the errno's name) and how much went in.
FILL = """
import errno, os
written, stopped = 0, None
block = b'x' * (1 << 20)
try:
    os.makedirs({folder!r}, exist_ok=True)
    for i in range({count}):
        with open(os.path.join({folder!r}, f'fill{{i}}'), 'wb') as handle:
            for _ in range({each}):
                handle.write(block)
                written += len(block)
            handle.flush()
            os.fsync(handle.fileno())
except OSError as exc:
    stopped = errno.errorcode.get(exc.errno, str(exc.errno))
print('RESULT', stopped, written)
"""

# Create up to `count` empty files in a new folder under `folder`, then print what stopped it.
MANY_FILES = """
import errno, os
made, stopped = 0, None
target = os.path.join({folder!r}, 'many')
os.makedirs(target, exist_ok=True)
try:
    for i in range({count}):
        os.close(os.open(os.path.join(target, str(i)), os.O_CREAT | os.O_WRONLY, 0o644))
        made += 1
except OSError as exc:
    stopped = errno.errorcode.get(exc.errno, str(exc.errno))
print('RESULT', stopped, made)
"""

CLEAN = (
    "import shutil, glob, os\nfor p in glob.glob({folder!r} + '/fill*'): os.remove(p)\n"
    "shutil.rmtree({folder!r} + '/many', ignore_errors=True)"
)


def result_of(run) -> tuple[str | None, int]:
    assert run.status == "ok", (run.error, run.stderr)
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT"))
    _, stopped, amount = line.split()
    return (None if stopped == "None" else stopped), int(amount)


def sandbox_of(kernel: SandboxKernel) -> Sandbox:
    found = SandboxManager().find_for_kernel(kernel.kernel_id)
    assert found is not None
    return found


def home_image(docker_backend: DockerBackend, sandbox: Sandbox) -> Path:
    volume = docker_backend.volume(binding.volume_name(sandbox.id))
    assert volume is not None
    return Path(volume.labels[LABEL_HOME_IMAGE])


def loop_devices(image: Path) -> list[str]:
    listed = subprocess.run(
        ["losetup", "--associated", str(image), "--noheadings", "--output", "NAME"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return listed.stdout.split()


def free_bytes(path: Path) -> int:
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize


def writable_layer_bytes(docker_backend: DockerBackend, sandbox: Sandbox) -> int:
    api = docker_backend.api
    info = api._result(api._get(api._url("/containers/{0}/json", sandbox.container_id), params={"size": 1}), True)
    return int(info.get("SizeRw") or 0)


@pytest.fixture(scope="module")
def small_kernel(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxKernel]:
    kernel = start_sandbox_kernel(
        extra_argv=[f"--SandboxManager.disk={HOME_SIZE}", f"--SandboxManager.tmp_size={TMP_SIZE}"],
        tmp_path=tmp_path_factory.mktemp("spec"),
    )
    assert kernel.run("1").status == "ok"
    yield kernel
    kernel.shutdown()


def test_big_files_stop_at_the_home_limit_and_the_host_keeps_its_space(
    small_kernel: SandboxKernel, docker_backend: DockerBackend
) -> None:
    sandbox = sandbox_of(small_kernel)
    image = home_image(docker_backend, sandbox)
    before = free_bytes(image.parent)
    # Ten 64 MiB files (640 MiB) into a 256 MiB home.
    stopped, written = result_of(small_kernel.run(FILL.format(count=10, each=64, folder="/home/sandbox"), timeout=300))
    assert stopped in ("ENOSPC", "EDQUOT")
    assert written <= HOME_SIZE
    # The host's space went down by no more than the limit (a margin for what else runs on this machine)
    # and the image holds no more than its size.
    assert before - free_bytes(image.parent) <= HOME_SIZE + 128 * MiB
    assert image.stat().st_blocks * 512 <= HOME_SIZE
    assert writable_layer_bytes(docker_backend, sandbox) == 0
    status = json.loads(small_kernel.run("%sandbox status --json").stdout)["disk"]
    assert status["enforced"] == "total" and status["limit_bytes"] == HOME_SIZE
    assert status["used_bytes"] >= HOME_SIZE * 0.8 and status["free_bytes"] < 8 * MiB
    # Deleted files give their blocks back to the host (the home is mounted with discard).
    allocated = image.stat().st_blocks * 512
    assert small_kernel.run(CLEAN.format(folder="/home/sandbox")).status == "ok"

    # The filesystem hands freed extents back in batches: wait for them rather than read once.
    def given_back() -> bool:
        small_kernel.run("import os; os.sync()")
        return image.stat().st_blocks * 512 < allocated - 96 * MiB

    assert wait_until(given_back, 60, interval=1), (allocated, image.stat().st_blocks * 512)
    # And the home is usable again.
    stopped, written = result_of(small_kernel.run(FILL.format(count=1, each=16, folder="/home/sandbox")))
    assert stopped is None and written == 16 * MiB
    small_kernel.run(CLEAN.format(folder="/home/sandbox"))


def test_many_empty_files_stop_at_the_inode_limit(small_kernel: SandboxKernel) -> None:
    stopped, made = result_of(small_kernel.run(MANY_FILES.format(count=200_000, folder="/home/sandbox"), timeout=300))
    assert stopped in ("ENOSPC", "EDQUOT")
    assert made < HOME_SIZE // 16384  # one inode per 16 KiB of home
    status = json.loads(small_kernel.run("%sandbox status --json").stdout)["disk"]
    assert status["limit_inodes"] == HOME_SIZE // 16384
    assert status["used_inodes"] >= status["limit_inodes"] - 64
    small_kernel.run(CLEAN.format(folder="/home/sandbox"), timeout=120)
    stopped, made = result_of(small_kernel.run(MANY_FILES.format(count=200_000, folder="/tmp"), timeout=300))
    assert stopped in ("ENOSPC", "EDQUOT") and made < TMP_SIZE // 16384
    small_kernel.run(CLEAN.format(folder="/tmp"), timeout=120)


@pytest.mark.parametrize(
    "folder, errors, bound",
    [
        ("/tmp", ("ENOSPC",), TMP_SIZE),
        ("/var/tmp", ("ENOSPC",), TMP_SIZE),
        ("/dev/shm", ("ENOSPC",), 64 * MiB),  # Docker's default shm size
        ("/", ("EROFS", "EACCES"), 0),
        ("/opt/sandbox-cache", ("EROFS",), 0),  # writable by uid 1000 in the image, read-only here
        ("/opt/sandbox-python/lib", ("EROFS", "EACCES"), 0),
        ("/opt/jupyter-sandbox", ("EACCES",), 0),  # the agent's own volume belongs to root
        ("/run", ("EACCES",), 0),
    ],
)
def test_nothing_outside_the_home_takes_more_than_its_bound(
    small_kernel: SandboxKernel, docker_backend: DockerBackend, folder: str, errors: tuple[str, ...], bound: int
) -> None:
    stopped, written = result_of(small_kernel.run(FILL.format(count=4, each=32, folder=folder), timeout=300))
    assert stopped in errors, (stopped, written)
    assert written <= bound
    assert writable_layer_bytes(docker_backend, sandbox_of(small_kernel)) == 0
    small_kernel.run(CLEAN.format(folder=folder))


def test_the_image_prepared_caches_work_on_a_read_only_root(small_kernel: SandboxKernel) -> None:
    run = small_kernel.run(
        "import os, matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "print(matplotlib.get_configdir(), os.environ['XDG_CACHE_HOME'])\n"
        "print(sorted(os.listdir(os.environ['XDG_CACHE_HOME'])))"
    )
    assert run.status == "ok" and "temporary cache directory" not in run.stderr, run.stderr
    assert "/home/sandbox/.config/matplotlib /home/sandbox/.cache" in run.stdout
    assert "jedi" in run.stdout  # the image's jedi cache, copied into the home at the first start


def test_status_and_the_api_show_disk_use_and_limit(small_kernel: SandboxKernel, jupyter_server: Server) -> None:
    run = small_kernel.run("%sandbox status")
    assert "disk 256 MiB (home)" in run.stdout
    assert "of 256 MiB used" in run.stdout and "of 16384 inodes" in run.stdout
    assert "enforced: a filesystem of its own" in run.stdout and "read-only" in run.stdout
    status, created = jupyter_server.request("POST", f"{API}/sandboxes", {"disk": "128m"})
    assert status == 201, created
    try:
        status, info = jupyter_server.request("GET", f"{API}/sandboxes/{created['id']}")
        assert status == 200
        disk = info["disk"]
        assert disk["enforced"] == "total" and disk["limit_bytes"] == 128 * MiB
        assert disk["limit_inodes"] == 128 * MiB // 16384 and 0 < disk["used_inodes"] < 200
        assert 0 < disk["used_bytes"] < 32 * MiB
        assert disk["tmpfs"]["/tmp"] == 256 * MiB and disk["read_only_root"] is True
        assert info["limits"]["disk"] == 128 * MiB
        # Stopped, the figures come from the filesystem itself.
        assert jupyter_server.request("POST", f"{API}/sandboxes/{created['id']}/stop")[0] == 200
        status, info = jupyter_server.request("GET", f"{API}/sandboxes/{created['id']}")
        assert info["state"] != "running" and info["disk"]["limit_bytes"] == 128 * MiB
        # The sandbox's kernel may have written a file more (its profile, its history) since the
        # running figure was read; the stopped figure is the filesystem's own, at least as large.
        assert disk["used_inodes"] <= info["disk"]["used_inodes"] < 200
        assert 0 < info["disk"]["used_bytes"] < 32 * MiB
    finally:
        assert jupyter_server.request("DELETE", f"{API}/sandboxes/{created['id']}")[0] == 204


def test_resizing_keeps_the_files_and_refuses_to_shrink_below_them(
    sandbox_image: str, tmp_path: Path, docker_backend: DockerBackend
) -> None:
    kernel = start_sandbox_kernel(extra_argv=["--SandboxManager.disk=128m"], tmp_path=tmp_path)
    try:
        stopped, written = result_of(kernel.run(FILL.format(count=1, each=64, folder="/home/sandbox")))
        assert stopped is None
        kernel.run("open('/home/sandbox/keep.txt', 'w').write('kept')")
        before = sandbox_of(kernel)

        # Too small for what is there: refused before anything changes.
        run = kernel.run("%sandbox config --disk 64m")
        assert run.status == "error"
        assert "cannot hold the files in /home/sandbox" in run.reply["content"]["evalue"]
        after = sandbox_of(kernel)
        assert after.container_id == before.container_id and after.running

        # Grow: the files stay, the room is there.
        run = kernel.run("%sandbox config --disk 512m", timeout=180)
        assert run.status == "ok", run.error
        kept = kernel.run(
            "import os; print(open('/home/sandbox/keep.txt').read(), os.path.getsize('/home/sandbox/fill0'))"
        ).stdout.split()
        assert kept == ["kept", str(64 * MiB)]
        stopped, written = result_of(
            kernel.run(FILL.format(count=3, each=100, folder="/home/sandbox/more"), timeout=300)
        )
        assert stopped is None and written == 300 * MiB
        status = json.loads(kernel.run("%sandbox status --json").stdout)
        assert status["limits"]["disk"] == 512 * MiB and status["disk"]["limit_bytes"] == 512 * MiB
        assert home_image(docker_backend, sandbox_of(kernel)).stat().st_size == 512 * MiB

        # Shrink once the big files are gone: allowed, and the rest is kept.
        kernel.run("import shutil, os; shutil.rmtree('/home/sandbox/more'); os.remove('/home/sandbox/fill0')")
        run = kernel.run("%sandbox config --disk 96m", timeout=180)
        assert run.status == "ok", run.error
        assert "kept" in kernel.run("print(open('/home/sandbox/keep.txt').read())").stdout
        status = json.loads(kernel.run("%sandbox status --json").stdout)["disk"]
        # Inodes come in groups of 128 MiB of filesystem: fewer again, as before the growth.
        assert status["limit_bytes"] == 96 * MiB and status["limit_inodes"] < 512 * MiB // 16384
        stopped, written = result_of(kernel.run(FILL.format(count=2, each=64, folder="/home/sandbox")))
        assert stopped == "ENOSPC" and written < 96 * MiB
        listing = kernel.run("import os; print(sorted(os.listdir('/home/sandbox')))").stdout
        assert "lost+found" not in listing
    finally:
        kernel.shutdown()


def test_files_are_kept_across_restarts_and_a_vanished_loop_device(
    manager: SandboxManager, docker_backend: DockerBackend
) -> None:
    lease = binding.KernelLease("test_disk_restart")
    lease.acquire()
    sandbox = manager.create(manager.default_spec(disk=128 * MiB), kernel_id="test_disk_restart")
    try:
        manager.wait_for_agent(sandbox)
        container = docker_backend.client.containers.get(sandbox.container_id)
        assert container.exec_run(["sh", "-c", "echo kept > ~/note"], user="1000").exit_code == 0
        image = home_image(docker_backend, sandbox)
        link = Path("/run/jupyter-sandbox/disks") / sandbox.id

        sandbox = manager.start(manager.stop(sandbox))
        manager.wait_for_agent(sandbox)
        assert container.exec_run(["cat", "/home/sandbox/note"], user="1000").output == b"kept\n"

        # What a reboot does: the loop device and the link under /run are gone.
        manager.stop(sandbox)
        for device in loop_devices(image):
            subprocess.run(["losetup", "--detach", device], check=True, timeout=30)
        link.unlink()
        assert not loop_devices(image)
        # Docker alone cannot start it: the volume's device is missing, so no other filesystem is mounted.
        with pytest.raises(Exception, match=r"(?i)no such file|mount"):
            docker_backend.start(sandbox.container_id)
        sandbox = manager.start(manager.get(sandbox.id))
        manager.wait_for_agent(sandbox)
        assert container.exec_run(["cat", "/home/sandbox/note"], user="1000").output == b"kept\n"
        assert os.readlink(link) == loop_devices(image)[0]
    finally:
        manager.remove(sandbox)
        lease.release(forget=True)


def test_delete_removes_the_image_the_loop_device_and_the_volume(
    manager: SandboxManager, docker_backend: DockerBackend
) -> None:
    sandbox = manager.create(manager.default_spec(disk=64 * MiB), start=True)
    image = home_image(docker_backend, sandbox)
    assert image.exists() and loop_devices(image)
    manager.remove(sandbox)
    assert not image.exists()
    assert not (Path("/run/jupyter-sandbox/disks") / sandbox.id).exists()
    listed = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert str(image) not in listed
    assert binding.volume_name(sandbox.id) not in docker_backend.list_volumes([LABEL_ID])


def test_where_no_filesystem_can_be_made_the_operator_chooses(
    sandbox_image: str, docker_backend: DockerBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A machine without e2fsprogs/util-linux tools (as without root or loop devices): nothing to enforce with.
    monkeypatch.setenv("PATH", str(tmp_path))
    required = SandboxManager(backend=docker_backend)
    with pytest.raises(SandboxError, match=r"disk limit cannot be enforced here: the tools .* are missing"):
        required.create(required.default_spec(), start=False)
    lenient = SandboxManager(backend=docker_backend, enforce_disk="if-possible")
    sandbox = lenient.create(lenient.default_spec(), start=False)
    try:
        info = lenient.disk_enforcement(sandbox)
        assert info["enforced"] == "per-file" and info["limit_bytes"] is None
        assert "total size of the home NOT limited" in info["note"] and "are missing" in info["note"]
        assert info["read_only_root"] is True
    finally:
        lenient.remove(sandbox)


def test_an_upload_into_a_full_home_is_refused_plainly(jupyter_server: Server) -> None:
    status, created = jupyter_server.request("POST", f"{API}/sandboxes", {"disk": "64m"})
    assert status == 201, created
    try:
        status, answer = jupyter_server.request(
            "PUT",
            f"{API}/sandboxes/{created['id']}/files/content?path=big.bin",
            raw=b"x" * (96 * MiB),
            headers={"Content-Type": "application/octet-stream"},
            timeout=300,
        )
        assert status == 507, (status, answer)
        assert "no space left" in answer["message"].lower()
        # Nothing half-written stays behind, and the home takes files again.
        status, listing = jupyter_server.request("GET", f"{API}/sandboxes/{created['id']}/files?path=")
        assert status == 200 and not [e for e in listing["entries"] if "big.bin" in e["name"]], listing
        status, _ = jupyter_server.request(
            "PUT",
            f"{API}/sandboxes/{created['id']}/files/content?path=small.txt",
            raw=b"fits",
            headers={"Content-Type": "application/octet-stream"},
        )
        assert status in (200, 201)
    finally:
        assert jupyter_server.request("DELETE", f"{API}/sandboxes/{created['id']}")[0] == 204
