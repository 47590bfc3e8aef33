"""`%sandbox ssh [--expires 1h]` and `%sandbox ssh --revoke`: SSH access to this notebook's sandbox.

Runs in the proxy kernel on the host. The token is issued here (tokens.py keeps only its hash, in
the host state directory the server's gateway reads); the gateway itself runs in the Jupyter
server, which tells the kernels it starts where it listens.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..sandbox.docker_backend import SandboxError
from ..sandbox.spec import SpecError
from ..sandbox.ssh import gateway, tokens

if TYPE_CHECKING:
    from .magics import MagicContext, MagicResult


def ssh(args: list[str], ctx: MagicContext) -> MagicResult:
    from .magics import MagicResult, _Parser

    parser = _Parser(
        ctx.write,
        prog="%sandbox ssh",
        description="A token to log into this sandbox with any SSH client (the token is the user name). "
        "Shell, commands, scp/sftp and -L forwarding to ports inside the sandbox.",
    )
    parser.add_argument("--expires", default=None, help="how long the token works, e.g. 30m, 1h (default) or 7d")
    parser.add_argument("--revoke", action="store_true", help="revoke every SSH token of this sandbox")
    options = parser.parse_args(args)
    if ctx.sandbox is None:
        raise SandboxError("there is no sandbox yet; run a cell to create it")
    sandbox_id = ctx.sandbox.id
    if options.revoke:
        if options.expires is not None:
            raise SpecError("--revoke takes no --expires")
        count = tokens.revoke(sandbox_id)
        ctx.write("stdout", f"revoked {count} SSH token{'s' if count != 1 else ''} of sandbox {sandbox_id}\n")
        return MagicResult()
    where = gateway.endpoint()
    if where is None:
        raise SandboxError(
            "the SSH gateway is off; start Jupyter with --SSHGateway.port=2222 (make lab does) to turn it on"
        )
    try:
        access = gateway.grant(
            sandbox_id,
            options.expires,
            float(where.get("default", 3600)),
            float(where.get("max", tokens.MAX_LIFETIME)),
            where["host"],
            where["port"],
        )
    except tokens.TokenError as exc:
        raise SpecError(str(exc).replace("expires_in", "--expires")) from None
    until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(time.time() + access["expires_in"]))
    ctx.write(
        "stdout",
        f"SSH into sandbox {sandbox_id}, valid until {until}:\n"
        f"  {access['command']}\n"
        f"  host key fingerprint: {access['host_key_fingerprint']}\n"
        f"  files:   scp -P {where['port']} FILE {access['token']}@{where['host']}:\n"
        f"  revoke:  %sandbox ssh --revoke\n",
    )
    return MagicResult()
