"""Wire-level helpers for the Jupyter messaging protocol: signing and building messages.

A message is `[identities..., DELIM, signature, header, parent_header, metadata, content, buffers...]`
and the signature is an HMAC over exactly the four JSON frames. The relay re-signs those frames
without decoding them; only messages the proxy makes itself are built here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import datetime, timezone
from typing import Any

DELIM = b"<IDS|MSG>"
PROTOCOL_VERSION = "5.3"


class Signer:
    """HMAC signing with one key, as in the connection file."""

    def __init__(self, key: bytes | str, scheme: str = "hmac-sha256") -> None:
        self.key = key.encode() if isinstance(key, str) else key
        algorithm = scheme.split("-", 1)[1] if scheme.startswith("hmac-") else None
        if not algorithm or algorithm not in hashlib.algorithms_available:
            raise ValueError(f"unsupported signature scheme {scheme!r}")
        self._template = hmac.new(self.key, digestmod=algorithm) if self.key else None

    def sign(self, header: bytes, parent: bytes, metadata: bytes, content: bytes) -> bytes:
        if self._template is None:
            return b""
        digest = self._template.copy()
        digest.update(header)
        digest.update(parent)
        digest.update(metadata)
        digest.update(content)
        return digest.hexdigest().encode()

    def verify(self, signature: bytes, header: bytes, parent: bytes, metadata: bytes, content: bytes) -> bool:
        if self._template is None:
            return True
        return hmac.compare_digest(signature, self.sign(header, parent, metadata, content))


def split(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(identities, [signature, header, parent, metadata, content, *buffers])."""
    index = frames.index(DELIM)
    return frames[:index], frames[index + 1 :]


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def new_header(msg_type: str, session: str, username: str = "jupyter-sandbox") -> dict[str, Any]:
    return {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "username": username,
        "session": session,
        "date": datetime.now(timezone.utc).isoformat(),
        "version": PROTOCOL_VERSION,
    }


def build(
    signer: Signer,
    msg_type: str,
    content: dict[str, Any],
    parent: dict[str, Any] | None,
    session: str,
    metadata: dict[str, Any] | None = None,
) -> list[bytes]:
    """[DELIM, signature, header, parent, metadata, content] of a new message."""
    header = dumps(new_header(msg_type, session))
    parent_bytes = dumps(parent or {})
    metadata_bytes = dumps(metadata or {})
    content_bytes = dumps(content)
    signature = signer.sign(header, parent_bytes, metadata_bytes, content_bytes)
    return [DELIM, signature, header, parent_bytes, metadata_bytes, content_bytes]


def reply_type(msg_type: str) -> str | None:
    return msg_type[: -len("_request")] + "_reply" if msg_type.endswith("_request") else None
