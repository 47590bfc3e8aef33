"""The server name a TLS ClientHello asks for, read without decrypting anything.

Everything here parses bytes the sandbox sent: lengths are checked against what is there, and
anything that is not a well-formed ClientHello is None (the gateway then refuses the tunnel).
"""

from __future__ import annotations

MAX_HELLO = 64 * 1024


class NotTLS(ValueError):
    """The bytes are not the start of a TLS handshake."""


def hello_length(data: bytes) -> int | None:
    """How many bytes of `data` the ClientHello takes (its records), or None while more are needed."""
    handshake, offset = b"", 0
    while True:
        if len(data) < offset + 5:
            return None
        if data[offset] != 0x16 or data[offset + 1] != 0x03:
            raise NotTLS("not a TLS handshake record")
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if length == 0 or length > 16384 + 2048:
            raise NotTLS("a TLS record of impossible length")
        if len(data) < offset + 5 + length:
            return None
        handshake += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if len(handshake) >= 4:
            if handshake[0] != 0x01:
                raise NotTLS("the first handshake message is not a ClientHello")
            needed = 4 + int.from_bytes(handshake[1:4], "big")
            if needed > MAX_HELLO:
                raise NotTLS("a ClientHello larger than any client sends")
            if len(handshake) >= needed:
                return offset
        if offset > MAX_HELLO:
            raise NotTLS("a ClientHello larger than any client sends")


def server_name(data: bytes) -> str | None:
    """The host_name of the server_name extension of the ClientHello at the start of `data` (which
    holds all of it, see hello_length), or None when it names none. NotTLS when malformed."""
    handshake, offset = b"", 0
    while offset + 5 <= len(data):
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        handshake += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
    body = handshake[4 : 4 + int.from_bytes(handshake[1:4], "big")]
    try:
        at = 2 + 32  # version, random
        at += 1 + body[at]  # session id
        at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher suites
        at += 1 + body[at]  # compression methods
        if at == len(body):
            return None  # no extensions
        end = at + 2 + int.from_bytes(body[at : at + 2], "big")
        if end > len(body):
            raise NotTLS("extensions run past the ClientHello")
        at += 2
        while at + 4 <= end:
            kind, size = int.from_bytes(body[at : at + 2], "big"), int.from_bytes(body[at + 2 : at + 4], "big")
            at += 4
            if at + size > end:
                raise NotTLS("an extension runs past the ClientHello")
            if kind == 0:
                names = body[at : at + size]
                pos = 2
                while pos + 3 <= len(names):
                    name_type, name_len = names[pos], int.from_bytes(names[pos + 1 : pos + 3], "big")
                    pos += 3
                    if name_type == 0:
                        raw = names[pos : pos + name_len]
                        if len(raw) != name_len:
                            raise NotTLS("a server name runs past its extension")
                        try:
                            return raw.decode("ascii")
                        except UnicodeDecodeError:
                            raise NotTLS("a server name that is not ASCII") from None
                    pos += name_len
                return None
            at += size
    except IndexError:
        raise NotTLS("a truncated ClientHello") from None
    return None
