"""Egress policy: what a sandbox may reach on the network.

Three modes:
- `internet` (the default): public addresses only; private ranges, CGNAT, loopback, link-local and
  metadata addresses, the host and other sandboxes are blocked. DNS through Docker's embedded
  resolver works.
- `allow`: only the listed CIDR blocks and domains. No DNS (Docker's embedded resolver forwards to the host's
  resolver, a channel out even to names that resolve to nothing allowed) unless the operator turns
  `dns_in_allow_mode` on. A resolver at an allowed address is ordinary allowed traffic.
  When the list names domains (`pypi.org`, `*.npmjs.org`), the sandbox reaches them only through
  the host's egress gateway (sandbox/gateway/): its proxy variables point there, its rules accept the
  gateway's one address and port besides the listed blocks, and DNS is closed whatever
  `dns_in_allow_mode` says, so no name leaves the sandbox in a query.
- `none`: nothing leaves, not even DNS.
In every mode the sandbox's own loopback works, link-local/metadata addresses and the host's address
on the sandbox network are unreachable, and connections made *to* the sandbox from outside (the host
reaching the agent, the kernel's ports, previews) are answered.

The rules live in the sandbox's own network namespace, put there from the host with `nsenter` and
`iptables-restore` (one atomic table swap per IP version, so a change never passes through an open
moment). The sandbox's processes hold no NET_ADMIN, so they cannot change them. Packets the sandbox
originates are judged against the current rules one by one (only the reply direction of connections
made from outside is accepted by state), so a tightened policy cuts live flows it now forbids. The
policy itself is kept on the host, never in the sandbox.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

from . import secrets as sandbox_secrets
from .gateway import domains as domain_names

MODES = ("internet", "none", "allow")
CHAIN = "JUPYTER-SANDBOX-EGRESS"
# Refusals go through this chain: a TCP packet is answered with a reset, so a live flow the policy no
# longer allows ends at once for the program that holds it (ECONNRESET) instead of hanging.
REFUSE = "JUPYTER-SANDBOX-REFUSE"
# Docker's embedded DNS server, on the sandbox's loopback (its nat rules move port 53 elsewhere).
EMBEDDED_DNS = "127.0.0.11"
BLOCKED_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
BLOCKED_V6 = [
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
]
# Never reachable, whatever an allow list says: link-local (cloud metadata services live there),
# multicast, broadcast and "this network". A block inside one of them is refused; a wider block
# keeps them as holes.
NEVER_V4 = ["0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32"]
NEVER_V6 = ["::/128", "fe80::/10", "ff00::/8"]
# The sandbox's own loopback is always reachable inside it and never leads to the host: naming it
# in an allow list means nothing, and is refused so that nobody believes it opens the host.
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
COMMAND_TIMEOUT = 20
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_N = TypeVar("_N", ipaddress.IPv4Network, ipaddress.IPv6Network)


class PolicyError(ValueError):
    """A policy that cannot be set; the message says why."""


class EgressError(RuntimeError):
    """The policy could not be put in force; the message says why."""


@dataclass
class EgressPolicy:
    mode: str = "internet"
    cidrs: list[str] = field(default_factory=list)
    # Normalised names and `*.suffix` patterns (gateway/domains.py), reached through the gateway.
    domains: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        if self.mode != "allow":
            return {"mode": self.mode, "cidrs": []}
        return {"mode": self.mode, "cidrs": list(self.cidrs), "domains": list(self.domains)}

    @property
    def uses_gateway(self) -> bool:
        return self.mode == "allow" and bool(self.domains)

    def describe(self) -> str:
        if self.mode == "internet":
            return "internet (public addresses only; private, link-local and metadata addresses blocked)"
        if self.mode == "none":
            return "none (nothing leaves the sandbox, no DNS)"
        if self.domains:
            return "allow list (through the egress gateway, no DNS): " + ", ".join([*self.domains, *self.cidrs])
        return "allow list: " + ", ".join(self.cidrs)


@dataclass(frozen=True)
class Limits:
    """What an allow list may cover, as the operator configured it."""

    max_cidrs: int = 10
    allow_any: bool = False
    # The most domains a list may name, and names no list may allow (they win over every list).
    max_domains: int = 50
    deny_domains: tuple[str, ...] = ()
    # Blocks no allow list may reach into (SandboxManager.network_deny_cidrs; the sandbox service's
    # default: the private and special ranges, so that a user cannot open their sandbox to the hub's
    # own network).
    deny_cidrs: tuple[str, ...] = ()
    # The union of an allow list may cover at most as many addresses as one block of this prefix.
    max_v4_prefix: int = 8
    max_v6_prefix: int = 32


def _subnet(network: Network, other: Network) -> bool:
    """`network` lies wholly in `other` (never when their IP versions differ)."""
    if isinstance(network, ipaddress.IPv4Network) and isinstance(other, ipaddress.IPv4Network):
        return network.subnet_of(other)
    if isinstance(network, ipaddress.IPv6Network) and isinstance(other, ipaddress.IPv6Network):
        return network.subnet_of(other)
    return False


def _inside(network: Network, blocks: Iterable[str]) -> str | None:
    """The block of `blocks` that holds all of `network`, if any. (A wider network that only
    overlaps one keeps it as a hole: those rules come before the allow list's.)"""
    for block in blocks:
        if _subnet(network, ipaddress.ip_network(block)):
            return block
    return None


def covered(networks: Sequence[Network], version: int) -> int:
    """How many addresses of one IP version the networks cover together (overlaps counted once)."""
    if version == 4:
        return sum(n.num_addresses for n in ipaddress.collapse_addresses(_of_type(networks, ipaddress.IPv4Network)))
    return sum(n.num_addresses for n in ipaddress.collapse_addresses(_of_type(networks, ipaddress.IPv6Network)))


def _of_type(networks: Sequence[Network], kind: type[_N]) -> list[_N]:
    return [n for n in networks if isinstance(n, kind)]


def split_entries(entries: Sequence[str]) -> dict[str, list[str]]:
    """A mixed allow list (`pypi.org 203.0.113.0/24 '*.npmjs.org'`) as {"cidrs": [...], "domains": [...]}."""
    # What is written like an address (digits and dots, or has a colon) is one, well formed or not,
    # so that a bad block is refused as a bad block, not as a bad name.
    cidrs = [e for e in entries if domain_names.is_address(e) or _ADDRESS_LIKE.fullmatch(e.strip())]
    return {"cidrs": cidrs, "domains": [e for e in entries if e not in cidrs]}


_ADDRESS_LIKE = re.compile(r"[\d.]+(/\d*)?|[0-9a-fA-F]*:[0-9a-fA-F:.]*(/\d*)?")


def parse_policy(value: Any, max_cidrs: int | Limits, allow_any: bool = False) -> EgressPolicy:
    """A policy from {"mode": ..., "cidrs": [...], "domains": [...]} (or a bare mode string); refuses
    what is malformed and allow lists that cover more than the operator permits."""
    limits = max_cidrs if isinstance(max_cidrs, Limits) else Limits(max_cidrs=max_cidrs, allow_any=allow_any)
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, dict):
        raise PolicyError("network must be a mode (internet, none, allow) or {mode, cidrs, domains}")
    unknown = set(value) - {"mode", "cidrs", "domains"}
    if unknown:
        raise PolicyError(f"unknown network field(s): {', '.join(sorted(map(str, unknown)))} (mode, cidrs, domains)")
    listed = value.get("cidrs") or value.get("domains")
    mode = value.get("mode", "allow" if listed else "internet")
    cidrs, names = value.get("cidrs") or [], value.get("domains") or []
    if mode not in MODES:
        raise PolicyError(f"network mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
        raise PolicyError("cidrs must be a list of CIDR blocks such as 203.0.113.0/24")
    if not isinstance(names, list) or not all(isinstance(d, str) for d in names):
        raise PolicyError("domains must be a list of names such as pypi.org or '*.npmjs.org'")
    if mode != "allow":
        if cidrs or names:
            raise PolicyError(f"cidrs and domains only go with mode allow, not {mode}")
        return EgressPolicy(mode)
    if not cidrs and not names:
        raise PolicyError("mode allow needs at least one CIDR block or domain")
    domains = _parse_domains(names, limits)
    if not cidrs:
        return EgressPolicy("allow", [], domains)
    if len(cidrs) > limits.max_cidrs:
        raise PolicyError(f"at most {limits.max_cidrs} CIDR blocks are allowed, got {len(cidrs)}")
    networks: list[Network] = []
    for text in cidrs:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise PolicyError(f"{text!r} is not a CIDR block (e.g. 203.0.113.0/24)") from None
        if network.prefixlen == 0 and not limits.allow_any:
            raise PolicyError(f"{text!r} would allow everything; the operator does not permit that")
        networks.append(network)
    if not limits.allow_any:
        # Judged by the space the list covers together, not block by block: 0.0.0.0/1 plus
        # 128.0.0.0/1, or 256 /8 blocks, are everything too.
        for version, prefix, bits in ((4, limits.max_v4_prefix, 32), (6, limits.max_v6_prefix, 128)):
            total, most = covered(networks, version), 2 ** (bits - prefix)
            if total > most:
                raise PolicyError(
                    f"the allow list covers {_share(total, bits)} of the IPv{version} address space, more than "
                    f"one /{prefix} block ({_share(most, bits)}), the most the operator permits; "
                    "name the hosts or networks you need"
                )
    for text, network in zip(cidrs, networks):
        if any(_subnet(network, lo) for lo in LOOPBACK):
            raise PolicyError(
                f"{text!r} is the sandbox's own loopback, which is always reachable inside the "
                "sandbox and never leads to the host; leave it out"
            )
        for block in limits.deny_cidrs:
            denied = ipaddress.ip_network(block, strict=False)
            if denied.version == network.version and network.overlaps(denied):
                raise PolicyError(
                    f"{text!r} reaches into {block}, which the operator does not let sandboxes reach "
                    "(SandboxManager.network_deny_cidrs)"
                )
        never = _inside(network, NEVER_V4 if network.version == 4 else NEVER_V6)
        if never:
            raise PolicyError(
                f"{text!r} lies in {never} (link-local/metadata, multicast or broadcast "
                "addresses), which a sandbox can never reach"
            )
    normalised = [str(n) for n in networks]
    return EgressPolicy("allow", list(dict.fromkeys(normalised)), domains)


def _parse_domains(names: Sequence[str], limits: Limits) -> list[str]:
    if len(names) > limits.max_domains:
        raise PolicyError(f"at most {limits.max_domains} domains are allowed, got {len(names)}")
    domains: list[str] = []
    for text in names:
        if domain_names.is_address(text):
            raise PolicyError(f"{text!r} is an address; list it under cidrs")
        try:
            name = domain_names.normalise(text)
        except domain_names.DomainError as exc:
            raise PolicyError(str(exc)) from None
        denied = domain_names.denied_by(name, limits.deny_domains)
        if denied:
            raise PolicyError(f"{text!r} is on the operator's deny list ({denied}); no sandbox may reach it")
        domains.append(name)
    return list(dict.fromkeys(domains))


def _share(count: int, bits: int) -> str:
    fraction = count / 2**bits
    return f"{fraction:.4%}" if fraction >= 0.0001 else f"{count} addresses"


def policy_path(sandbox_id: str) -> Path:
    return sandbox_secrets.state_dir("egress") / f"{sandbox_id}.json"


def load(sandbox_id: str) -> EgressPolicy:
    try:
        data = json.loads(policy_path(sandbox_id).read_text())
        return EgressPolicy(data["mode"], list(data.get("cidrs") or []), list(data.get("domains") or []))
    except (OSError, ValueError, KeyError, TypeError):
        return EgressPolicy()


def save(sandbox_id: str, policy: EgressPolicy) -> None:
    sandbox_secrets.write_state(policy_path(sandbox_id), json.dumps(policy.to_dict()).encode())


def forget(sandbox_id: str) -> None:
    try:
        policy_path(sandbox_id).unlink()
    except FileNotFoundError:
        pass


def _rules(
    policy: EgressPolicy,
    version: int,
    host_addresses: Sequence[str] = (),
    dns_in_allow_mode: bool = False,
    gateway: tuple[str, int] | None = None,
) -> list[list[str]]:
    """iptables argument lists that fill CHAIN for one IP version, in order. `gateway`: the egress
    gateway's address and port, the one place on the host a domain list may reach."""
    rules: list[list[str]] = []
    dns = policy.mode == "internet" or (policy.mode == "allow" and dns_in_allow_mode and not policy.domains)
    if version == 4 and not dns:
        # Before the loopback accept: the embedded resolver sits on the sandbox's loopback.
        rules.append(["-d", EMBEDDED_DNS, "-j", REFUSE])
    rules += [
        ["-o", "lo", "-j", "ACCEPT"],
        # Only replies to connections made from outside (the host reaching the agent, the kernel's
        # ports, previews) pass by state. What the sandbox starts itself is judged packet by packet
        # below, so a tighter policy cuts a flow at its next packet.
        ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "--ctdir", "REPLY", "-j", "ACCEPT"],
    ]
    if dns and version == 4:
        # Docker's embedded resolver asks the host's resolvers from inside this namespace, from the
        # engine's own (root's) sockets; those may be private addresses. No sandbox process is root
        # (uid 1000, no-new-privileges), so this passes the resolver's port-53 queries and nothing else.
        for protocol in ("udp", "tcp"):
            rules.append(["-p", protocol, "--dport", "53", "-m", "owner", "--uid-owner", "0", "-j", "ACCEPT"])
    if policy.uses_gateway:
        if gateway is None:
            raise EgressError("the policy names domains, but no egress gateway is running for them")
        address, port = gateway
        if ipaddress.ip_address(address).version == version:
            # Before the host's addresses are refused: this one port of the host is the way out.
            rules.append(["-p", "tcp", "-d", address, "--dport", str(int(port)), "-j", "ACCEPT"])
    for address in host_addresses:
        if ipaddress.ip_address(address).version == version:
            rules.append(["-d", address, "-j", REFUSE])
    for block in NEVER_V4 if version == 4 else NEVER_V6:
        rules.append(["-d", block, "-j", REFUSE])
    if policy.mode == "internet":
        for block in BLOCKED_V4 if version == 4 else BLOCKED_V6:
            rules.append(["-d", block, "-j", REFUSE])
        rules.append(["-j", "ACCEPT"])
    elif policy.mode == "allow":
        for cidr in policy.cidrs:
            if ipaddress.ip_network(cidr).version == version:
                rules.append(["-d", cidr, "-j", "ACCEPT"])
        rules.append(["-j", REFUSE])
    else:
        rules.append(["-j", REFUSE])
    return rules


def restore_input(rules: list[list[str]]) -> str:
    """The filter table of the sandbox's namespace, whole: iptables-restore swaps it in at once.

    The namespace's filter table is ours alone (Docker keeps its rules for the embedded resolver in
    the nat table, which this leaves untouched)."""
    lines = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT DROP [0:0]",
        f":{CHAIN} - [0:0]",
        f":{REFUSE} - [0:0]",
        f"-A OUTPUT -j {CHAIN}",
        f"-A {REFUSE} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {REFUSE} -j REJECT",
    ]
    lines += [" ".join([f"-A {CHAIN}", *rule]) for rule in rules]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _has_ipv6(pid: int) -> bool:
    """Whether the namespace of `pid` has an IPv6 address besides loopback (then IPv6 must be guarded)."""
    try:
        lines = Path(f"/proc/{int(pid)}/net/if_inet6").read_text().splitlines()
    except FileNotFoundError:
        return False  # IPv6 is off in the kernel
    return any(line.split()[-1] != "lo" for line in lines if line.split())


@dataclass(frozen=True)
class Enforcer:
    """Puts policies into network namespaces. The commands are the operator's (an absolute path or a
    name on the host's PATH); a failure anywhere is an EgressError, never a silent pass."""

    nsenter: str = "nsenter"
    iptables_restore: str = "iptables-restore"
    ip6tables_restore: str = "ip6tables-restore"
    dns_in_allow_mode: bool = False

    def _tool(self, name: str) -> str:
        found = shutil.which(name)
        if not found:
            raise EgressError(f"{name!r} is not installed on the host (or not on its PATH)")
        return found

    def check(self) -> None:
        """Refuse early when this host cannot enforce any policy."""
        if os.geteuid() != 0:
            raise EgressError(
                "the process starting sandboxes is not root, so it cannot put rules into "
                "the sandbox's network namespace"
            )
        self._tool(self.nsenter)
        self._tool(self.iptables_restore)

    def apply(
        self,
        pid: int,
        policy: EgressPolicy,
        host_addresses: Sequence[str] = (),
        gateway: tuple[str, int] | None = None,
    ) -> float:
        """Install the policy in the network namespace of process `pid` (the container's init);
        returns the seconds it took. `gateway`: where the egress gateway listens (domain lists)."""
        started = time.monotonic()
        self.check()
        nsenter = self._tool(self.nsenter)
        for version, tool in ((4, self.iptables_restore), (6, self.ip6tables_restore)):
            rules = restore_input(_rules(policy, version, host_addresses, self.dns_in_allow_mode, gateway))
            found = shutil.which(tool)
            if not found:
                if version == 6 and not _has_ipv6(pid):
                    continue  # no IPv6 in this namespace: nothing can leave over it
                raise EgressError(f"{tool!r} is not installed on the host (or not on its PATH)")
            try:
                result = subprocess.run(
                    [nsenter, "-t", str(int(pid)), "-n", "--", found, "-w"],
                    input=rules,
                    check=False,
                    capture_output=True,
                    text=True,
                    timeout=COMMAND_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                raise EgressError(f"{tool} did not finish within {COMMAND_TIMEOUT} s") from None
            except OSError as exc:
                raise EgressError(f"could not run {tool}: {exc.strerror}") from None
            if result.returncode != 0:
                if version == 6 and not _has_ipv6(pid):
                    continue
                detail = (result.stderr or result.stdout).strip().splitlines()
                raise EgressError(f"{tool} failed (exit {result.returncode}): {detail[-1] if detail else 'no message'}")
        return time.monotonic() - started


def apply(pid: int, policy: EgressPolicy, host_addresses: Sequence[str] = ()) -> float:
    """`Enforcer().apply` with the host's default commands."""
    return Enforcer().apply(pid, policy, host_addresses)
