"""The relay's sockets: the front end's side (bound, as a kernel's are) and the inner kernel's side
(connected to the connection info a lifecycle hands over), with framing, signing and verifying.

Trust boundary: the front end is trusted (it holds the connection file's key); the inner kernel is
not. Frames from the inner kernel are verified with the inner key and re-signed with the front key
only here, after the relay has decided what passes. No JSON is parsed or re-encoded to pass a frame on.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import zmq

from .messages import DELIM, Signer, build, split

log = logging.getLogger(__name__)

Body = list[bytes]  # [signature, header, parent, metadata, content, *buffers]
Connection = dict[str, Any]  # a connection file's fields: ip, transport, key, signature_scheme, *_port

FRONT_SOCKETS = (
    ("shell", zmq.ROUTER),
    ("control", zmq.ROUTER),
    ("stdin", zmq.ROUTER),
    # XPUB, as in ipykernel 7: each new subscription is greeted with iopub_welcome.
    ("iopub", zmq.XPUB),
    ("hb", zmq.REP),
)
INNER_SOCKETS = (("shell", zmq.DEALER), ("control", zmq.DEALER), ("stdin", zmq.DEALER), ("iopub", zmq.SUB))


def loads(data: bytes) -> dict[str, Any]:
    """A JSON object from a frame, or {} (hostile or malformed frames must not stop the relay)."""
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def content(body: Body) -> dict[str, Any]:
    return loads(body[4])


def url(connection: Connection, channel: str) -> str:
    transport = connection.get("transport", "tcp")
    port = connection[f"{channel}_port"]
    # ipc endpoints are paths: jupyter_client names them <ip>-<port>.
    return f"ipc://{connection['ip']}-{port}" if transport == "ipc" else f"{transport}://{connection['ip']}:{port}"


class FrontSockets:
    """The sockets Jupyter connects to, bound from this kernel's connection file."""

    def __init__(self, context: zmq.Context, connection: Connection, session: str) -> None:
        self.signer = Signer(connection.get("key", ""), connection.get("signature_scheme", "hmac-sha256"))
        self.session = session
        self.sockets: dict[str, zmq.Socket] = {}
        for name, kind in FRONT_SOCKETS:
            sock = context.socket(kind)
            sock.setsockopt(zmq.LINGER, 1000)
            if kind == zmq.ROUTER:
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            sock.bind(url(connection, name))
            self.sockets[name] = sock

    def __getitem__(self, channel: str) -> zmq.Socket:
        return self.sockets[channel]

    def parse(self, channel: str, frames: list[bytes]) -> tuple[list[bytes], Body, dict[str, Any]] | None:
        """(identities, body, header) of a front end's request, or None (logged) for one to drop."""
        try:
            idents, body = split(frames)
            signature, header_bytes, parent, metadata, content_bytes = body[:5]
        except ValueError:
            log.warning("dropping a malformed message on %s", channel)
            return None
        if not self.signer.verify(signature, header_bytes, parent, metadata, content_bytes):
            log.warning("dropping a message with a bad signature on %s", channel)
            return None
        try:
            header = json.loads(header_bytes)
            if not isinstance(header, dict) or not isinstance(header.get("msg_id", ""), str):
                raise ValueError
        except ValueError:
            log.warning("dropping a message with a malformed header on %s", channel)
            return None
        return idents, body, header

    def send(self, channel: str, idents: list[bytes], body: Body) -> None:
        """Pass a message on, signed with the front key (its frames are sent as they are); on iopub
        `idents` is the topic."""
        signature = self.signer.sign(*body[1:5])
        self.sockets[channel].send_multipart([*idents, DELIM, signature, *body[1:]], copy=False)

    def send_new(
        self,
        channel: str,
        idents: list[bytes],
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any] | None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """A message the proxy makes itself."""
        frames = build(self.signer, msg_type, content, parent, self.session, metadata=metadata)
        self.sockets[channel].send_multipart([*idents, *frames])

    def publish(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None) -> None:
        self.send_new("iopub", [f"kernel.sandbox.{msg_type}".encode()], msg_type, content, parent)

    def welcome(self, frames: list[bytes]) -> None:
        """Subscription events on the XPUB: greet each new subscriber, as ipykernel 7 does."""
        for frame in frames:
            if not frame or frame[0] != 1:
                continue
            try:
                topic = frame[1:].decode()
            except UnicodeDecodeError:
                continue
            self.send_new("iopub", [topic.encode()] if topic else [], "iopub_welcome", {"subscription": topic}, None)

    def echo_heartbeat(self) -> None:
        hb = self.sockets["hb"]
        hb.send_multipart(hb.recv_multipart())

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=1000)


class InnerSockets:
    """DEALER and SUB sockets connected to the inner kernel named by a connection (hostile side)."""

    def __init__(self, context: zmq.Context, connection: Connection, session: str) -> None:
        self.signer = Signer(connection["key"], connection.get("signature_scheme", "hmac-sha256"))
        self.session = session
        # The kernel sends input_request to the identity that sent the execute request, so shell
        # and stdin must share one.
        identity = uuid.uuid4().hex.encode()
        self.sockets: dict[str, zmq.Socket] = {}
        for name, kind in INNER_SOCKETS:
            sock = context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            if kind == zmq.DEALER:
                sock.setsockopt(zmq.IDENTITY, identity)
            else:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(url(connection, name))
            self.sockets[name] = sock

    def get(self, channel: str) -> zmq.Socket | None:
        return self.sockets.get(channel)

    def verified(self, frames: list[bytes]) -> tuple[list[bytes], Body] | None:
        """(prefix, body) of a message from the inner kernel with a good signature, else None."""
        try:
            prefix, body = split(frames)
            if len(body) < 5:
                raise ValueError
        except ValueError:
            log.warning("dropping a malformed message from the sandbox")
            return None
        if not self.signer.verify(*body[:5]):
            log.warning("dropping a message from the sandbox with a bad signature")
            return None
        return prefix, body

    def forward(self, channel: str, body: Body) -> None:
        """A front end's request, re-signed with the inner key."""
        signature = self.signer.sign(*body[1:5])
        self.sockets[channel].send_multipart([DELIM, signature, *body[1:]], copy=False)

    def send_new(self, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        """A shell request of the proxy's own; returns its header."""
        frames = build(self.signer, msg_type, content, None, self.session)
        self.sockets["shell"].send_multipart(frames)
        return loads(frames[2])

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.sockets = {}
