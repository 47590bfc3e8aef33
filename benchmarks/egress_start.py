"""Egress policy application at start: a sandbox's start with its policy put in force before its first
process (the start gate), beside the same start with enforcement off, in one run.

Timed: `SandboxManager.start` of a stopped sandbox until its agent answers. The policy is `internet`,
the one with the most rules. Also shown: the time the rules themselves take (both IP versions, one
atomic table swap each), beside putting the same rules in one iptables call per rule, the way they
were put before, in the same network namespace.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from jupyter_sandbox.sandbox import network
from jupyter_sandbox.sandbox.manager import SandboxManager


def timed_start(manager: SandboxManager, sandbox_id: str) -> float:
    stopped = manager.stop(manager.get(sandbox_id))
    started = time.perf_counter()
    manager.wait_for_agent(manager.start(stopped))
    return time.perf_counter() - started


def rule_by_rule(pid: int, policy: network.EgressPolicy) -> float:
    """The same rules, one nsenter + iptables call each."""
    started = time.perf_counter()
    for version, tool in ((4, "iptables"), (6, "ip6tables")):
        base = ["nsenter", "-t", str(pid), "-n", tool, "-w"]
        steps = [[*base, "-N", "BENCH-EGRESS"], [*base, "-F", "BENCH-EGRESS"]]
        steps += [
            [*base, "-A", "BENCH-EGRESS", *[a if a != network.REFUSE else "REJECT" for a in rule]]
            for rule in network._rules(policy, version)
        ]
        for step in steps:
            subprocess.run(step, capture_output=True, timeout=20, check=False)
        subprocess.run([*base, "-F", "BENCH-EGRESS"], capture_output=True, timeout=20, check=False)
        subprocess.run([*base, "-X", "BENCH-EGRESS"], capture_output=True, timeout=20, check=False)
    return time.perf_counter() - started


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    # A network and an owner of its own: a stopped sandbox is no member of the shared network, which
    # another process may remove meanwhile, and other servers' idle checks look at their owner's only.
    network_name = "jupyter-sandbox-bench-egress"
    gated = SandboxManager(network_name=network_name, owner="bench-egress")
    open_ = SandboxManager(network_name=network_name, owner="bench-egress", enforce_egress=False)
    sandbox = gated.create(kernel_id="bench-egress-start")
    try:
        gated.wait_for_agent(sandbox)
        policy = gated.network_policy("internet")
        gated.set_egress(sandbox, policy)
        timed_start(gated, sandbox.id)  # page cache warm
        with_gate, without, applies, one_by_one = [], [], [], []
        for _ in range(args.repeat):
            with_gate.append(timed_start(gated, sandbox.id))
            applies.append(gated.last_egress_seconds or 0.0)
            without.append(timed_start(open_, sandbox.id))
        record = gated.backend.inspect(sandbox.container_id)
        assert record is not None and record.pid
        pid = record.pid
        for _ in range(args.repeat):
            one_by_one.append(rule_by_rule(pid, policy))
    finally:
        gated.remove(sandbox)
    median = statistics.median
    print(f"sandbox start until its agent answers, policy 'internet', median of {args.repeat}")
    print(f"  enforcement off (no rules, gate opened at once)  {median(without) * 1000:7.1f} ms")
    print(
        f"  policy in force before the first process          {median(with_gate) * 1000:7.1f} ms"
        f"   ({median(with_gate) / median(without):.2f}x)"
    )
    print("putting the rules in (IPv4 and IPv6)")
    print(f"  one iptables call per rule (as before)            {median(one_by_one) * 1000:7.1f} ms")
    print(
        f"  iptables-restore, one table swap per version      {median(applies) * 1000:7.1f} ms"
        f"   ({median(applies) / median(one_by_one):.2f}x)"
    )
    return {"egress_apply_s": median(applies), "gated_start_s": median(with_gate), "open_start_s": median(without)}


if __name__ == "__main__":
    main()
