"""Where the sandbox service is and how this user's server proves who it is to it.

The Jupyter server reads `c.SandboxRemote.url` (or the environment); its kernels are separate processes
and read the same values from the environment, which the server passes on to them. The credential is
the user's own: the token given in `JUPYTER_SANDBOX_SERVICE_TOKEN`, or, on a JupyterHub, the API token
the hub gave this user's server (`JUPYTERHUB_API_TOKEN`); the service resolves it to a user name and
scopes every sandbox to that user. Never an engine socket, never another user's credential.
"""

from __future__ import annotations

import os

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

URL_ENV = "JUPYTER_SANDBOX_SERVICE_URL"
TOKEN_ENV = "JUPYTER_SANDBOX_SERVICE_TOKEN"
HUB_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"


def service_url() -> str:
    """The service's base URL from the environment ('' in single-machine mode), without a trailing '/'."""
    return os.environ.get(URL_ENV, "").strip().rstrip("/")


def service_token() -> str:
    """This user's credential for the service: its own token, else the hub's token for this server."""
    return os.environ.get(TOKEN_ENV, "").strip() or os.environ.get(HUB_TOKEN_ENV, "").strip()


class SandboxRemote(LoggingConfigurable):
    """Hub mode for one user's Jupyter server: sandboxes come from the sandbox service at `url`."""

    url = Unicode(
        config=True,
        help=(
            "Base URL of the sandbox service (`jupyter sandbox service`), e.g. 'http://10.0.0.5:8765'. "
            "Set, this server and its kernels reach no container engine: every sandbox operation, kernel "
            "channel, preview and terminal goes through the service, as this user. Empty (the default): "
            f"single-machine mode. Also read from ${URL_ENV}."
        ),
    )
    token = Unicode(
        config=True,
        help=(
            f"This user's token for the service. Empty: ${TOKEN_ENV}, else ${HUB_TOKEN_ENV} (the token a "
            "JupyterHub gives each user's server, which the service checks with the hub)."
        ),
    )

    @default("url")
    def _url_default(self) -> str:
        return service_url()

    @default("token")
    def _token_default(self) -> str:
        return service_token()

    @property
    def enabled(self) -> bool:
        return bool(self.url.strip())

    def environment(self) -> dict[str, str]:
        """What this server's kernels need in their environment to reach the same service as the same user."""
        if not self.enabled:
            return {}
        return {URL_ENV: self.url.strip().rstrip("/"), TOKEN_ENV: self.token}
