"""JupyterHub for jupyter-sandbox: two users, their servers in hub mode, the sandbox service as a hub service.

What runs where (all on this machine, all on loopback):

- the hub and its proxy (configurable-http-proxy, from npm) run as root: the proxy answers on
  127.0.0.1:$JUPYTER_SANDBOX_HUB_PORT, the hub's API on the next ports;
- the sandbox service (`jupyter sandbox service`) is a service the hub starts and watches. It alone holds
  the Docker engine; it asks the hub who owns each token it is given and scopes every sandbox to that user;
- each user's Jupyter server (`jupyterhub-singleuser`, started by LocalProcessSpawner) runs as that user's
  own unprivileged system account, which is not in the docker group and is handed no engine address or
  credential. Its sandbox kernel, REST API, previews and terminals go to the service's URL, with the API
  token the hub gave that server (the service turns it into the user's name).

`make hub` (scripts/hub.py) sets the environment below and starts `jupyterhub -f` on this file; the tests
do the same with their own ports and state folder. Every knob is an environment variable so that one file
serves both.
"""

# ruff: noqa: F821 - `c` and `get_config` are provided by JupyterHub when it loads this file
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))

from fixed_passwords import FixedPasswordAuthenticator  # noqa: E402 - found through the line above

c = get_config()  # type: ignore[name-defined]

# The hub's private folder: cookie secret, database, passwords, the proxy's pid file. Mode 0700, root's:
# no user's server can read anything in it.
state = Path(os.environ.get("JUPYTER_SANDBOX_HUB_STATE", here / ".state")).resolve()
# The venv holding jupyterhub, jupyter-sandbox and JupyterLab; users' servers run from it too, so it must
# be readable (not writable) by them.
venv_bin = Path(os.environ.get("JUPYTER_SANDBOX_HUB_VENV_BIN", Path(sys.executable).parent))
# What users' servers run from: the same packages, through an interpreter other accounts may run
# (scripts/hub.py: users_python).
users_bin = Path(os.environ.get("JUPYTER_SANDBOX_HUB_USERS_BIN", venv_bin))
port = int(os.environ.get("JUPYTER_SANDBOX_HUB_PORT", "8000"))
hub_port = int(os.environ.get("JUPYTER_SANDBOX_HUB_API_PORT", str(port + 1)))
proxy_api_port = int(os.environ.get("JUPYTER_SANDBOX_HUB_PROXY_API_PORT", str(port + 2)))
service_port = int(os.environ.get("JUPYTER_SANDBOX_HUB_SERVICE_PORT", "8765"))
service_url = f"http://127.0.0.1:{service_port}"
SERVICE_NAME = "sandbox"

# --- the hub and its proxy: loopback only --------------------------------------------------------------
c.JupyterHub.bind_url = f"http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [os.environ.get("JUPYTER_SANDBOX_HUB_PROXY", "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
# Users' servers are stopped with the hub: a server left running after the hub went would keep its token.
c.JupyterHub.cleanup_servers = True

# --- logins: one fixed password per user (the example's stand-in for PAM or OAuth) ---------------------
passwords_file = state / "passwords.json"
c.JupyterHub.authenticator_class = FixedPasswordAuthenticator
c.FixedPasswordAuthenticator.passwords_file = str(passwords_file)
c.Authenticator.allowed_users = set(json.loads(passwords_file.read_text()))

# --- users' servers: each as its own system account, in hub mode ---------------------------------------
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = [str(users_bin / "python"), "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 90
# Only these of the hub's variables reach a user's server (the hub runs as root, with whatever engine
# address its operator set): never DOCKER_HOST, DOCKER_CERT_PATH, DOCKER_CONFIG or the hub's secrets.
# PYTHONPATH is passed so that a checkout's code under test runs; it names code, not a credential.
c.Spawner.env_keep = ["LANG", "LC_ALL", "PYTHONPATH"]
c.Spawner.environment = {
    # Hub mode: sandboxes, kernels' channels, previews and terminals come from the service, as this user
    # (the token is JUPYTERHUB_API_TOKEN, which the hub gives each server).
    "JUPYTER_SANDBOX_SERVICE_URL": service_url,
    "PATH": f"{users_bin}:/usr/local/bin:/usr/bin:/bin",
}

# The token a user's server gets may also call the sandbox service (as that user, never more than the
# user may): the service checks `access:services!service=sandbox` as hub services do.
service_access = f"access:services!service={SERVICE_NAME}"
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", service_access]
c.JupyterHub.load_roles = [
    {"name": "user", "description": "A user, who may use the sandbox service", "scopes": ["self", service_access]},
]

# --- the sandbox service: started and watched by the hub, the only process with the engine -------------
# It runs as the hub's account (root here, or an account in the docker group): the engine's address and
# credentials are passed to it, and to nothing else.
engine_env = {
    name: os.environ[name]
    for name in ("DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "DOCKER_CONFIG", "DOCKER_CONTEXT")
    if name in os.environ
}
# JUPYTER_SANDBOX_HUB_SERVICE_COMMAND (a JSON list) replaces the command, e.g. to run the service under an
# account of its own that is in the docker group; JUPYTER_SANDBOX_HUB_SERVICE_ARGS adds options to it.
service_command = json.loads(os.environ.get("JUPYTER_SANDBOX_HUB_SERVICE_COMMAND", "null")) or [
    str(venv_bin / "jupyter"),
    "sandbox",
    "service",
    "--ip=127.0.0.1",
    f"--port={service_port}",
    *json.loads(os.environ.get("JUPYTER_SANDBOX_HUB_SERVICE_ARGS", "[]")),
]
c.JupyterHub.services = [
    {
        "name": SERVICE_NAME,
        "url": service_url,
        "command": service_command,
        "environment": {
            **engine_env,
            # The operator's PATH: the service needs the system's tools (losetup, mkfs.ext4 for disk limits).
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')}",
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}),
        },
        "display": False,
    }
]
