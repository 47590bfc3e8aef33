"""A JupyterHub authenticator with one fixed password per user, for the example deployment only.

The passwords live in a JSON file, `{"<user name>": "<password>"}`, readable by the hub alone (scripts/hub.py
writes it with fresh random passwords, mode 0600, in the hub's private state folder). A real hub uses PAM,
LDAP or an OAuth provider instead (PAMAuthenticator, the oauthenticator package): this class exists so that
the example runs on a machine with no identity provider, and so that each of its two users has a password
of their own (with a shared one, either user could log in as the other, and the example is about keeping
users apart).
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Unicode


class FixedPasswordAuthenticator(Authenticator):
    """Logs in the users listed in `passwords_file`, each with their own password."""

    passwords_file = Unicode(
        config=True,
        help="JSON file {user name: password}; only the users in it can log in. Keep it readable by the hub only.",
    )

    def _passwords(self) -> dict[str, str]:
        # Read at each login: a password changed in the file takes effect without a restart.
        with open(self.passwords_file, encoding="utf-8") as handle:
            passwords = json.load(handle)
        if not isinstance(passwords, dict):
            raise ValueError(f"{self.passwords_file}: expected a JSON object of user name to password")
        return {str(name): str(secret) for name, secret in passwords.items()}

    def check_allowed(self, username: str, authentication: Any = None) -> bool:
        return username in self._passwords()

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        name = self.normalize_username(data.get("username", ""))
        given = data.get("password", "")
        expected = self._passwords().get(name)
        # Compared in constant time; an unknown name costs the same comparison as a wrong password.
        if not hmac.compare_digest(
            given.encode(), (expected if expected is not None else os.urandom(16).hex()).encode()
        ):
            self.log.warning("Failed login for %r", name)
            return None
        if expected is None:
            return None
        return name
