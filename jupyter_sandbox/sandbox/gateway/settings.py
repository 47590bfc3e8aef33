"""The operator's knobs of the egress gateway (`c.EgressGateway.*`), and the settings the gateway
process runs with (written by the manager that starts it, read once by the process)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from traitlets import Dict, Float, Int, List, Unicode
from traitlets.config import LoggingConfigurable


@dataclass
class Settings:
    network_name: str
    address: str
    port: int
    resolve_overrides: dict[str, str] = field(default_factory=dict)
    upstream_proxy: str = ""
    upstream_ca_file: str = ""
    allowed_ports: list[int] = field(default_factory=lambda: [80, 443])
    deny_domains: list[str] = field(default_factory=list)
    log_entries: int = 500
    max_connections_per_sandbox: int = 64
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    idle_exit_seconds: float = 600.0
    state_root: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


class EgressGateway(LoggingConfigurable):
    """The host's egress gateway: the one way out of sandboxes whose allow list names domains."""

    port = Int(
        3128,
        config=True,
        help=(
            "TCP port the gateway listens on, at the host's address on the sandbox network (the bridge's "
            "gateway address; never on the machine's other interfaces)."
        ),
    )
    resolve_overrides = Dict(
        value_trait=Unicode(),
        per_key_traits=None,
        default_value={},
        config=True,
        help=(
            "Host names the gateway resolves to fixed addresses instead of asking DNS, e.g. "
            "{'pypi.internal': '10.1.2.3'}: for tests (servers in containers) and split-horizon sites. "
            "Addresses given here may be private; ones from DNS must be public. Such hosts are reached "
            "directly, never through upstream_proxy."
        ),
    )
    upstream_proxy = Unicode(
        "",
        config=True,
        help=(
            "Send the gateway's traffic through this HTTP proxy (host:port or http://host:port), e.g. a "
            "company's own. HTTPS goes to it as CONNECT host:port; plain HTTP in absolute form."
        ),
    )
    upstream_ca_file = Unicode(
        "",
        config=True,
        help=(
            "A PEM bundle of CAs the gateway trusts, besides the host's own store, when it verifies the "
            "servers it re-encrypts to (hosts with a secret): an intercepting company proxy's CA, or a "
            "test CA."
        ),
    )
    allowed_ports = List(
        Int(), default_value=[80, 443], config=True, help="Ports of allowed domains a sandbox may reach through it."
    )
    log_entries = Int(500, config=True, help="Connection attempts kept in each sandbox's network log.")
    max_connections_per_sandbox = Int(
        64, config=True, help="Connections one sandbox may have open through the gateway at once."
    )
    connect_timeout = Float(10.0, config=True, help="Seconds to reach an upstream server.")
    idle_timeout = Float(300.0, config=True, help="Seconds a connection may stay silent both ways before it is closed.")
    idle_exit_seconds = Float(
        600.0,
        config=True,
        help="Seconds the gateway process keeps running with no sandbox using it, before it exits.",
    )

    def settings(self, network_name: str, address: str, deny_domains: list[str], state_root: str) -> Settings:
        return Settings(
            network_name=network_name,
            address=address,
            port=self.port,
            resolve_overrides={str(k).lower().rstrip("."): str(v) for k, v in self.resolve_overrides.items()},
            upstream_proxy=self.upstream_proxy,
            upstream_ca_file=self.upstream_ca_file,
            allowed_ports=list(self.allowed_ports),
            deny_domains=list(deny_domains),
            log_entries=self.log_entries,
            max_connections_per_sandbox=self.max_connections_per_sandbox,
            connect_timeout=self.connect_timeout,
            idle_timeout=self.idle_timeout,
            idle_exit_seconds=self.idle_exit_seconds,
            state_root=state_root,
        )
