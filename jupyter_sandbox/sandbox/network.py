"""Egress policy: what a sandbox may reach on the network.

Three modes: `internet` (the default: public addresses only; private ranges, CGNAT, link-local and
metadata addresses, the host and other sandboxes are blocked), `none` (nothing leaves, not even DNS),
and `allow` (only the listed CIDRs, plus DNS).

The rules live in the sandbox's own network namespace, put there from the host with `nsenter` and
iptables. The sandbox's processes hold no NET_ADMIN, so they cannot change them. They are applied when
the container starts and whenever the policy changes; the policy itself is kept on the host, never in
the sandbox.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import secrets as sandbox_secrets

MODES = ("internet", "none", "allow")
CHAIN = "JUPYTER-SANDBOX-EGRESS"
# Docker's embedded DNS server, on the sandbox's loopback.
EMBEDDED_DNS = "127.0.0.11"
BLOCKED_V4 = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
              "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
              "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4"]
BLOCKED_V6 = ["::/128", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10",
              "ff00::/8"]
COMMAND_TIMEOUT = 20


class PolicyError(ValueError):
    """A policy that cannot be set; the message says why."""


@dataclass
class EgressPolicy:
    mode: str = "internet"
    cidrs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "cidrs": list(self.cidrs)}

    def describe(self) -> str:
        if self.mode == "internet":
            return "internet (public addresses only; private, link-local and metadata addresses blocked)"
        if self.mode == "none":
            return "none (nothing leaves the sandbox, no DNS)"
        return "allow list: " + ", ".join(self.cidrs)


def parse_policy(value: Any, max_cidrs: int, allow_any: bool) -> EgressPolicy:
    """A policy from {"mode": ..., "cidrs": [...]} (or a bare mode string); refuses what is malformed."""
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, dict):
        raise PolicyError("network must be a mode (internet, none, allow) or {mode, cidrs}")
    mode, cidrs = value.get("mode", "allow" if value.get("cidrs") else "internet"), value.get("cidrs") or []
    if mode not in MODES:
        raise PolicyError(f"network mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
        raise PolicyError("cidrs must be a list of CIDR blocks such as 203.0.113.0/24")
    if mode != "allow":
        if cidrs:
            raise PolicyError(f"cidrs only go with mode allow, not {mode}")
        return EgressPolicy(mode)
    if not cidrs:
        raise PolicyError("mode allow needs at least one CIDR block")
    if len(cidrs) > max_cidrs:
        raise PolicyError(f"at most {max_cidrs} CIDR blocks are allowed, got {len(cidrs)}")
    normalised = []
    for text in cidrs:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise PolicyError(f"{text!r} is not a CIDR block (e.g. 203.0.113.0/24)") from None
        if network.prefixlen == 0 and not allow_any:
            raise PolicyError(f"{text!r} would allow everything; the operator does not permit that")
        normalised.append(str(network))
    return EgressPolicy("allow", normalised)


def policy_path(sandbox_id: str) -> Path:
    return sandbox_secrets.state_dir("egress") / f"{sandbox_id}.json"


def load(sandbox_id: str) -> EgressPolicy:
    try:
        data = json.loads(policy_path(sandbox_id).read_text())
        return EgressPolicy(data["mode"], list(data.get("cidrs") or []))
    except (OSError, ValueError, KeyError, TypeError):
        return EgressPolicy()


def save(sandbox_id: str, policy: EgressPolicy) -> None:
    sandbox_secrets.write_state(policy_path(sandbox_id), json.dumps(policy.to_dict()).encode())


def forget(sandbox_id: str) -> None:
    try:
        policy_path(sandbox_id).unlink()
    except FileNotFoundError:
        pass


def _rules(policy: EgressPolicy, version: int) -> list[list[str]]:
    """iptables argument lists that fill CHAIN for one IP version."""
    rules = [["-o", "lo", "-d", EMBEDDED_DNS, "-j", "DROP"]] if policy.mode == "none" and version == 4 else []
    rules += [["-o", "lo", "-j", "ACCEPT"],
              ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]]
    if policy.mode == "internet":
        for block in (BLOCKED_V4 if version == 4 else BLOCKED_V6):
            rules.append(["-d", block, "-j", "REJECT"])
        rules.append(["-j", "ACCEPT"])
    elif policy.mode == "allow":
        for cidr in policy.cidrs:
            if ipaddress.ip_network(cidr).version == version:
                rules.append(["-d", cidr, "-j", "ACCEPT"])
        rules.append(["-j", "REJECT"])
    else:
        rules.append(["-j", "REJECT"])
    return rules


class EgressError(RuntimeError):
    pass


def apply(pid: int, policy: EgressPolicy) -> None:
    """Install the policy in the network namespace of process `pid` (the container's init)."""
    if os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("iptables"):
        raise EgressError("egress policies need root and iptables on the host running the Docker engine")
    for version, tool in ((4, "iptables"), (6, "ip6tables")):
        if not shutil.which(tool):
            continue
        base = ["nsenter", "-t", str(int(pid)), "-n", tool, "-w"]
        steps = [
            [*base, "-N", CHAIN],
            [*base, "-F", CHAIN],
            *[[*base, "-A", CHAIN, *rule] for rule in _rules(policy, version)],
        ]
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
            if result.returncode != 0 and not (step[-2:] == ["-N", CHAIN] and "exists" in result.stderr):
                if version == 6:
                    break  # no IPv6 in this namespace; nothing to guard
                raise EgressError(f"could not set the egress policy: {result.stderr.strip()}")
        else:
            check = subprocess.run([*base, "-C", "OUTPUT", "-j", CHAIN], capture_output=True, timeout=COMMAND_TIMEOUT)
            if check.returncode != 0:
                result = subprocess.run([*base, "-I", "OUTPUT", "1", "-j", CHAIN], capture_output=True, text=True,
                                        timeout=COMMAND_TIMEOUT)
                if result.returncode != 0 and version == 4:
                    raise EgressError(f"could not set the egress policy: {result.stderr.strip()}")
