"""Per-sandbox home filesystems: a real limit on the bytes and inodes a sandbox can write.

The home of a sandbox is an ext4 filesystem in a sparse image file on the host, attached to a loop
device and mounted into the container by Docker's `local` volume driver (volume options type=ext4,
device=<link>). Whatever the sandbox writes, the filesystem is full at its size: the writer gets
ENOSPC, and the host's free space drops by no more than the image's size. Inodes are counted too:
the filesystem is formatted with one inode per `bytes_per_inode` bytes.

The volume names its device through a link under /run (a tmpfs, emptied at boot) rather than
/dev/loopN itself: loop devices are numbered anew after a reboot, and a volume that named
/dev/loop3 would then mount whatever image another sandbox attached as loop3. The link is set to
this sandbox's own loop device right before each start (`attach`), and after a reboot it is simply
missing until then, so a stale volume fails to mount instead of mounting another sandbox's files.

Everything here runs on the host as root with argv lists and timeouts. The host never opens a file
in a home: it reads statvfs figures and the superblock's counters, and e2fsck and resize2fs read the
metadata on a resize. That metadata was written by the kernel on the sandbox's behalf; the sandbox
never writes raw blocks (the device is not in the container, only the mounted filesystem).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .docker_backend import SandboxError
from .spec import limit_size, readable_size

log = logging.getLogger(__name__)

FS_TYPE = "ext4"
BLOCK_SIZE = 4096
# nosuid/nodev: nothing in the home gains privileges; discard: deleted files give their blocks back to
# the host (the loop device punches holes in the sparse image); noinit_itable: the kernel does not
# write out the never-used inode tables of a fresh filesystem, which keeps the image sparse.
MOUNT_OPTIONS = "nosuid,nodev,discard,noinit_itable"
LINK_DIR = Path("/run/jupyter-sandbox/disks")
TOOLS = ("losetup", "mkfs.ext4", "e2fsck", "resize2fs", "dumpe2fs", "debugfs")
TIMEOUT = 120.0  # an e2fsck or resize2fs of a few GiB, on a slow disk


class DiskError(SandboxError):
    """The home filesystem could not be made, attached, resized or read; the message says why."""


@dataclass
class DiskUsage:
    """What a home filesystem holds, read on the host."""

    size: int  # the limit: the image's size in bytes
    used_bytes: int
    free_bytes: int  # what the sandbox can still write
    inodes: int  # the inode limit
    used_inodes: int

    def to_dict(self) -> dict[str, int]:
        return {
            "limit_bytes": self.size,
            "used_bytes": self.used_bytes,
            "free_bytes": self.free_bytes,
            "limit_inodes": self.inodes,
            "used_inodes": self.used_inodes,
        }


def unavailable_reason(local_engine: bool) -> str | None:
    """Why per-sandbox filesystems cannot be used on this machine, or None when they can."""
    if not local_engine:
        return "the Docker engine is not on this machine (DOCKER_HOST), so it cannot mount a loop device made here"
    if os.geteuid() != 0:
        return f"attaching loop devices needs root, and this process runs as uid {os.geteuid()}"
    if not Path("/dev/loop-control").exists():
        return "this machine has no loop devices (/dev/loop-control is missing)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the tools {', '.join(missing)} are missing (packages util-linux and e2fsprogs)"
    return None


def _run(argv: list[str], what: str, timeout: float = TIMEOUT, ok: tuple[int, ...] = (0,)) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DiskError(f"{what}: {argv[0]} took longer than {timeout:g} s") from None
    except OSError as exc:
        raise DiskError(f"{what}: could not run {argv[0]}: {exc}") from None
    if done.returncode not in ok:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DiskError(f"{what}: {argv[0]} failed: {detail[-1] if detail else f'exit status {done.returncode}'}")
    return done.stdout


def inode_count(size: int, bytes_per_inode: int) -> int:
    return max(1024, size // bytes_per_inode)


def journal_mib(size: int) -> int:
    """A journal of 1/64 of the home, 4 to 64 MiB: mke2fs's default takes 16 MiB of a 128 MiB home."""
    return max(4, min(64, size // 1024**2 // 64))


class HomeDisk:
    """One sandbox's home filesystem: its image file and the link its volume names as device."""

    def __init__(self, sandbox_id: str, image: Path, bytes_per_inode: int = 16384, link_dir: Path = LINK_DIR) -> None:
        self.sandbox_id = sandbox_id
        self.image = Path(image)
        self.bytes_per_inode = bytes_per_inode
        self.link = Path(link_dir) / sandbox_id

    def volume_options(self) -> dict[str, str]:
        """Driver options of the `local` volume that mounts this filesystem."""
        return {"type": FS_TYPE, "device": str(self.link), "o": MOUNT_OPTIONS}

    def exists(self) -> bool:
        return self.image.is_file()

    # -- life -------------------------------------------------------------------------------

    def create(self, size: int, owner: int) -> None:
        """A fresh, sparse, empty filesystem of `size` bytes whose root belongs to uid/gid `owner`."""
        self.image.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        size = _blocks(size) * BLOCK_SIZE
        free = shutil.disk_usage(self.image.parent).free
        if free < size:
            # Sparse images promise more than the host holds: once the host is full, writes in the
            # sandboxes fail with I/O errors instead of ENOSPC at their own limits.
            log.warning(
                "sandbox %s: the host has %d bytes free in %s, less than the %d of this home",
                self.sandbox_id,
                free,
                self.image.parent,
                size,
            )
        temporary = self.image.with_name(f".{self.image.name}.{os.getpid()}")
        try:
            with open(temporary, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.truncate(size)
            # -m 0: no blocks held back for root (nothing in a sandbox is root). The journal and inode
            # tables of a fresh sparse file read as zeros, so they need not be written out (lazy_*).
            _run(
                [
                    "mkfs.ext4",
                    "-q",
                    "-F",
                    "-b",
                    str(BLOCK_SIZE),
                    "-m",
                    "0",
                    "-N",
                    str(inode_count(size, self.bytes_per_inode)),
                    "-J",
                    f"size={journal_mib(size)}",
                    "-E",
                    f"root_owner={owner}:{owner},lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                    "-L",
                    f"sandbox-{self.sandbox_id}"[:16],
                    "--",
                    str(temporary),
                ],
                "formatting the home filesystem",
            )
            # An empty root lets Docker copy the image's /home/sandbox (dot files) in at the first mount,
            # and the user sees no root-owned lost+found in the home.
            _run(["debugfs", "-w", "-R", "rmdir lost+found", "--", str(temporary)], "preparing the home filesystem")
            os.replace(temporary, self.image)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        log.info("sandbox %s: made a %d-byte home filesystem at %s", self.sandbox_id, size, self.image)

    def attach(self) -> str:
        """Make sure the image is on a loop device and the volume's link points at it; the device."""
        if not self.image.is_file():
            raise DiskError(f"the home filesystem of sandbox {self.sandbox_id} is missing ({self.image})")
        devices = self.devices()
        if devices:
            device = devices[0]
        else:
            # --nooverlap: a second attach of the same file (another process, the same moment) gets the
            # device already there instead of a second one, which would mount the filesystem twice.
            device = _run(
                ["losetup", "--find", "--show", "--nooverlap", "--direct-io=on", "--", str(self.image)],
                "attaching the home filesystem",
            ).strip()
            if not device.startswith("/dev/loop"):
                raise DiskError(f"attaching the home filesystem: losetup answered {device!r}")
        self.link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (self.link.is_symlink() and os.readlink(self.link) == device):
            temporary = self.link.with_name(f".{self.link.name}.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            os.symlink(device, temporary)
            os.replace(temporary, self.link)
        return device

    def devices(self) -> list[str]:
        """The loop devices backed by this image (matched by inode and device, not by name)."""
        try:
            stat = self.image.stat()
        except FileNotFoundError:
            return []
        listing = _run(
            ["losetup", "--json", "--list", "--output", "NAME,BACK-INO,BACK-MAJ:MIN"],
            "listing loop devices",
            timeout=30,
        )
        try:
            entries = json.loads(listing or "{}").get("loopdevices") or []
        except ValueError:
            raise DiskError("listing loop devices: losetup's answer is not JSON") from None
        found = []
        for entry in entries:
            major, _, minor = str(entry.get("back-maj:min") or "").strip().partition(":")
            try:
                same = (
                    int(entry.get("back-ino") or -1) == stat.st_ino
                    and os.makedev(int(major), int(minor)) == stat.st_dev
                )
            except ValueError:
                continue
            if same:
                found.append(str(entry.get("name")))
        return sorted(found)

    def detach(self) -> None:
        """Take the image off its loop devices (a device still mounted goes once it is unmounted)."""
        for device in self.devices():
            _run(["losetup", "--detach", device], "detaching the home filesystem", timeout=30)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def destroy(self) -> None:
        """Detach and delete the image: the sandbox's files are gone."""
        self.detach()
        with contextlib.suppress(FileNotFoundError):
            self.image.unlink()
        log.info("sandbox %s: removed its home filesystem %s", self.sandbox_id, self.image)

    # -- size -------------------------------------------------------------------------------

    def size(self) -> int:
        return self.image.stat().st_size

    def minimum_size(self, usage: DiskUsage) -> int:
        """The smallest size that still holds what is there now, with room for the filesystem's own
        needs (journal, inode tables) and a margin: a shrink below it is refused."""
        overhead = max(0, usage.size - (usage.used_bytes + usage.free_bytes))
        by_bytes = usage.used_bytes + overhead + max(8 * 1024**2, usage.used_bytes // 20)
        by_inodes = (usage.used_inodes + 64) * self.bytes_per_inode
        return _blocks(max(by_bytes, by_inodes, 64 * 1024**2)) * BLOCK_SIZE

    def resize(self, size: int) -> None:
        """Grow or shrink the filesystem to `size` bytes, keeping its files. The sandbox must be
        stopped (its volume unmounted); callers refuse a shrink below `minimum_size` first."""
        size = _blocks(size) * BLOCK_SIZE
        current = self.size()
        if size == current:
            return
        device = self.attach()
        what = f"resizing the home filesystem of sandbox {self.sandbox_id}"
        if _mounted(device):
            raise DiskError(f"{what}: it is still mounted; stop the sandbox first")
        # resize2fs wants a freshly checked filesystem; -p repairs only what is safe without asking
        # (exit status 1: errors corrected).
        _run(["e2fsck", "-f", "-p", "--", device], what, ok=(0, 1))
        if size > current:
            os.truncate(self.image, size)
            try:
                _run(["losetup", "--set-capacity", device], what, timeout=30)
                _run(["resize2fs", "--", device], what)
            except DiskError:
                # The filesystem did not grow: neither does its image (its limit stays what it was).
                os.truncate(self.image, current)
                with contextlib.suppress(DiskError):
                    _run(["losetup", "--set-capacity", device], what, timeout=30)
                raise
        else:
            _run(["resize2fs", "--", device, f"{size // 1024}K"], what)
            os.truncate(self.image, size)
            _run(["losetup", "--set-capacity", device], what, timeout=30)
        # e2fsck made lost+found again; it goes as after mkfs (debugfs leaves one that holds files).
        with contextlib.suppress(DiskError):
            _run(["debugfs", "-w", "-R", "rmdir lost+found", "--", device], what, timeout=30)
        log.info("sandbox %s: home filesystem resized from %d to %d bytes", self.sandbox_id, current, size)

    # -- usage ------------------------------------------------------------------------------

    def usage(self, mountpoint: str | None = None) -> DiskUsage | None:
        """Bytes and inodes used and allowed, read on the host: with statvfs where Docker has the
        filesystem mounted (checked to be this image's device), else from the superblock."""
        if not self.exists():
            return None
        size = self.size()
        devices = self.devices()
        if mountpoint and devices:
            try:
                # The mount's root lies on the loop device only while it is mounted; an unmounted
                # _data directory would report the host's own filesystem instead.
                if os.stat(mountpoint).st_dev == os.stat(devices[0]).st_rdev:
                    fs = os.statvfs(mountpoint)
                    return DiskUsage(
                        size=size,
                        used_bytes=(fs.f_blocks - fs.f_bfree) * fs.f_frsize,
                        free_bytes=fs.f_bavail * fs.f_frsize,
                        inodes=fs.f_files,
                        used_inodes=fs.f_files - fs.f_ffree,
                    )
            except OSError:
                pass
        return self._superblock_usage(size, devices[0] if devices else str(self.image))

    def _superblock_usage(self, size: int, target: str) -> DiskUsage:
        what = f"reading the home filesystem of sandbox {self.sandbox_id}"
        text = _run(["dumpe2fs", "-h", "--", target], what, timeout=30)
        fields: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(":")
            with contextlib.suppress(ValueError):
                fields[name.strip()] = int(value.strip().split()[0]) if value.strip() else 0
        try:
            block, blocks, free = fields["Block size"], fields["Block count"], fields["Free blocks"]
            inodes, free_inodes = fields["Inode count"], fields["Free inodes"]
        except KeyError as exc:
            raise DiskError(f"{what}: no {exc} in its superblock") from None
        # Count as statvfs does: the filesystem's own blocks (journal, inode tables, bitmaps) are not
        # "used"; mke2fs records how many there are, or they are reckoned from the layout.
        own = fields.get("Overhead clusters") or (
            fields.get("Inode blocks per group", 0) * _groups(fields) + fields.get("Total journal blocks", 0)
        )
        return DiskUsage(
            size=size,
            used_bytes=max(0, blocks - own - free) * block,
            free_bytes=free * block,
            inodes=inodes,
            used_inodes=inodes - free_inodes,
        )


@dataclass
class DiskStore:
    """Where new home filesystems are made, and how."""

    directory: Path
    bytes_per_inode: int = 16384
    link_dir: Path = LINK_DIR

    def home(self, sandbox_id: str, image: str | Path | None = None) -> HomeDisk:
        """The home filesystem of a sandbox: at `image` (as its volume records) or a new one here."""
        return HomeDisk(
            sandbox_id,
            Path(image) if image else Path(self.directory) / f"{sandbox_id}.ext4",
            self.bytes_per_inode,
            self.link_dir,
        )

    def is_home_volume(self, sandbox_id: str, options: dict[str, str] | None) -> bool:
        """Whether a volume with these driver options mounts this sandbox's limited filesystem."""
        if not options:
            return False
        return options.get("type") == FS_TYPE and options.get("device") == str(Path(self.link_dir) / sandbox_id)


def _groups(fields: dict[str, int]) -> int:
    per_group = fields.get("Blocks per group") or 1
    return -(-fields["Block count"] // per_group)


def _mounted(device: str) -> bool:
    """Whether the device is mounted anywhere this process can see (its number in mountinfo)."""
    try:
        number = os.stat(device).st_rdev
    except OSError:
        return False
    wanted = f"{os.major(number)}:{os.minor(number)}"
    with open("/proc/self/mountinfo") as handle:
        return any(len(fields) > 2 and fields[2] == wanted for fields in (line.split() for line in handle))


def _blocks(size: int) -> int:
    return -(-int(size) // BLOCK_SIZE)


def round_size(size: int) -> int:
    """The size a home of `size` bytes gets: whole filesystem blocks."""
    return _blocks(size) * BLOCK_SIZE


def describe(usage: dict[str, Any]) -> str:
    """'11.8 MiB of 1 GiB used · 40 of 65536 inodes' for a usage dict (DiskUsage.to_dict)."""
    return (
        f"{readable_size(usage['used_bytes'])} of {limit_size(usage['limit_bytes'])} used · "
        f"{usage['used_inodes']} of {usage['limit_inodes']} inodes"
    )
