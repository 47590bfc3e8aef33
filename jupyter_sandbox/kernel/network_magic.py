"""`%sandbox network ...` and `%sandbox secret ...`: the sandbox's egress policy, the gateway's log
of where its connections went, and the secrets the gateway adds for it.

Runs in the proxy kernel on the host, over the operations layer. A secret's value is read from the
front end's password field (never echoed, never in the notebook or its history) and goes straight
to the host's store; the sandbox sees its placeholder.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..sandbox import network
from ..sandbox.docker_backend import SandboxError
from ..sandbox.spec import SpecError

if TYPE_CHECKING:
    from .magics import MagicContext, MagicResult

LOG_LINES = 30


def network_magic(args: list[str], ctx: MagicContext) -> MagicResult:
    from .magics import MagicResult, _Parser

    parser = _Parser(
        ctx.write,
        prog="%sandbox network",
        description="Show or change the sandbox's egress policy, live: 'internet' (public addresses only), "
        "'none' (nothing, not even DNS), or 'allow' with domains ('pypi.org', '*.npmjs.org', reached through "
        "the host's egress gateway) and CIDR blocks, mixed. 'log' shows where connections went.",
    )
    parser.add_argument("mode", nargs="?", choices=["internet", "none", "allow", "log"])
    parser.add_argument("entries", nargs="*", metavar="DOMAIN_OR_CIDR")
    options = parser.parse_args(args)
    sandbox = _require(ctx)
    if options.mode == "log":
        if options.entries:
            raise SpecError("%sandbox network log takes no arguments")
        found = ctx.access.network_log(sandbox, LOG_LINES)
        ctx.write("stdout", format_log(found["entries"]))
        return MagicResult()
    if options.mode is None:
        now = ctx.access.network_policy(sandbox)
    else:
        before = ctx.access.network_policy(sandbox)
        value: dict[str, Any] = {"mode": options.mode}
        if options.mode == "allow":
            value.update(network.split_entries(options.entries))
        elif options.entries:
            raise SpecError(f"mode {options.mode} takes no domains or CIDR blocks")
        now = ctx.access.set_network(sandbox, value)
        if now["gateway"] and not before["gateway"] and sandbox.running:
            ctx.write(
                "stdout",
                "note: the proxy settings (HTTP_PROXY, HTTPS_PROXY) reach the sandbox's processes from its next "
                "start: run %sandbox restart (until then only the listed CIDR blocks are reachable)\n",
            )
    ctx.write("stdout", f"network: {now['description']}\n")
    return MagicResult()


def format_log(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no connections through the egress gateway yet\n"
    lines = []
    for entry in entries:
        when = time.strftime("%H:%M:%S", time.localtime(float(entry.get("time") or 0)))
        verdict = "allowed" if entry.get("allowed") else "BLOCKED"
        size = int(entry.get("bytes_sent") or 0) + int(entry.get("bytes_received") or 0)
        lines.append(
            f"{when}  {verdict:7}  {str(entry.get('host'))[:80]}:{entry.get('port')}  {size} bytes  "
            f"{str(entry.get('reason') or '')[:160]}"
        )
    return "\n".join(lines) + "\n"


def secret_magic(args: list[str], ctx: MagicContext) -> MagicResult:
    from .magics import MagicResult, _Parser

    parser = _Parser(
        ctx.write,
        prog="%sandbox secret",
        description="Secrets the sandbox can use but never read: its environment holds a placeholder, and the "
        "host's egress gateway puts the value in its place in the headers of HTTPS requests to the secret's "
        "hosts only. 'set' asks for the value in a password field.",
    )
    parser.add_argument("action", choices=["set", "list", "delete"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("--host", action="append", default=[], help="a host the secret is for (repeat for more)")
    options = parser.parse_args(args)
    sandbox = _require(ctx)
    if options.action == "list":
        found = ctx.access.list_secrets(sandbox)
        if not found:
            ctx.write("stdout", "no secrets\n")
        for item in found:
            ctx.write("stdout", f"{item['name']}  for {', '.join(item['hosts'])}\n")
        return MagicResult()
    if not options.name:
        raise SpecError(f"%sandbox secret {options.action} needs the secret's NAME")
    if options.action == "delete":
        ctx.access.delete_secret(sandbox, options.name)
        ctx.write("stdout", f"deleted the secret {options.name}\n")
        return MagicResult()
    if not options.host:
        raise SpecError("%sandbox secret set NAME --host HOST: name the host(s) the secret is for")
    value = ctx.ask_secret(f"value of {options.name} (not shown, not saved in the notebook): ")
    if not value:
        raise SandboxError("no value was given (the front end must allow input); nothing was changed")
    # The value goes to the store that keeps it (this machine's, or the sandbox service's) and nowhere else.
    secret = ctx.access.set_secret(sandbox, {"name": options.name, "value": value, "hosts": options.host})
    del value
    ctx.write(
        "stdout",
        f"kept {secret['name']} on the host for {', '.join(secret['hosts'])}; in the sandbox "
        f"${secret['name']} is a placeholder the gateway swaps for the value (from the sandbox's next start: "
        "%sandbox restart)\n",
    )
    return MagicResult()


def _require(ctx: MagicContext) -> Any:
    if ctx.sandbox is None:
        raise SandboxError("there is no sandbox yet; run a cell to create it")
    return ctx.sandbox
