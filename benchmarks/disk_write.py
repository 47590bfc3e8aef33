"""File writes inside a sandbox's home: a size-limited home (its own ext4 filesystem on a loop device)
beside an unlimited one (a plain Docker volume, enforce_disk = 'off'), both made in this run.

Measured inside each sandbox as its user: one large file written and fsynced, then many small files
written and synced (syncfs of the home). The two are measured in turns, the same number of times each.
"""

from __future__ import annotations

import argparse
import json
import statistics

from jupyter_sandbox.sandbox.manager import Sandbox, SandboxManager

MiB = 1024**2

PROBE = """
import ctypes, json, os, time
libc = ctypes.CDLL(None, use_errno=True)
big, small_count, small_size = {big}, {small}, 4096
block = b'x' * (1 << 20)
os.makedirs('/home/sandbox/bench', exist_ok=True)
started = time.perf_counter()
with open('/home/sandbox/bench/big', 'wb') as handle:
    for _ in range(big):
        handle.write(block)
    handle.flush()
    os.fsync(handle.fileno())
large = time.perf_counter() - started
payload = b'y' * small_size
started = time.perf_counter()
for i in range(small_count):
    with open(f'/home/sandbox/bench/s{{i}}', 'wb') as handle:
        handle.write(payload)
# syncfs, not sync: only the home's filesystem, not whatever else the host has to write out.
folder = os.open('/home/sandbox/bench', os.O_RDONLY)
libc.syncfs(folder)
os.close(folder)
small = time.perf_counter() - started
for name in os.listdir('/home/sandbox/bench'):
    os.remove(os.path.join('/home/sandbox/bench', name))
print(json.dumps({{"large_mib_s": big / large, "small_files_s": small_count / small}}))
"""


def probe(manager: SandboxManager, sandbox: Sandbox, big: int, small: int) -> dict[str, float]:
    container = manager.backend.client.containers.get(sandbox.container_id)
    result = container.exec_run(["python3", "-c", PROBE.format(big=big, small=small)], user="1000")
    assert result.exit_code == 0, result.output
    return json.loads(result.output.decode().strip().splitlines()[-1])


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", type=int, default=512, help="MiB in the large file")
    parser.add_argument("--small", type=int, default=5000, help="number of 4 KiB files")
    args = parser.parse_args()
    limited_manager = SandboxManager(warm_pool_size=0)
    plain_manager = SandboxManager(warm_pool_size=0, enforce_disk="off")
    # Without a kernel id: no server's reconciliation takes them away meanwhile.
    limited = limited_manager.create(limited_manager.default_spec(disk=2 * args.big * MiB))
    plain = plain_manager.create(plain_manager.default_spec(disk=2 * args.big * MiB))
    try:
        assert limited_manager.disk_enforcement(limited)["enforced"] == "total"
        assert plain_manager.disk_enforcement(plain)["enforced"] == "per-file"
        for manager, sandbox in ((limited_manager, limited), (plain_manager, plain)):
            manager.wait_for_agent(sandbox)
            probe(manager, sandbox, 32, 200)  # warm up
        runs: dict[str, list[dict[str, float]]] = {"limited": [], "plain": []}
        for _ in range(args.repeat):  # alternate, so that neither gets a quieter moment of the machine
            runs["plain"].append(probe(plain_manager, plain, args.big, args.small))
            runs["limited"].append(probe(limited_manager, limited, args.big, args.small))
    finally:
        limited_manager.remove(limited)
        plain_manager.remove(plain)
    figures = {
        name: {key: statistics.median(r[key] for r in results) for key in ("large_mib_s", "small_files_s")}
        for name, results in runs.items()
    }
    print(f"writes in the sandbox's home, median of {args.repeat}")
    print(
        f"  {args.big} MiB file + fsync       unlimited home {figures['plain']['large_mib_s']:8.1f} MiB/s   "
        f"limited home {figures['limited']['large_mib_s']:8.1f} MiB/s   "
        f"limited / unlimited = {figures['limited']['large_mib_s'] / figures['plain']['large_mib_s']:.2f}"
    )
    print(
        f"  {args.small} files of 4 KiB + sync  unlimited home {figures['plain']['small_files_s']:8.0f} files/s  "
        f"limited home {figures['limited']['small_files_s']:8.0f} files/s  "
        f"limited / unlimited = {figures['limited']['small_files_s'] / figures['plain']['small_files_s']:.2f}"
    )
    return {
        "disk_large_ratio": figures["limited"]["large_mib_s"] / figures["plain"]["large_mib_s"],
        "disk_small_ratio": figures["limited"]["small_files_s"] / figures["plain"]["small_files_s"],
    }


if __name__ == "__main__":
    main()
