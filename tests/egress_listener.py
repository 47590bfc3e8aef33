"""A TCP listener for the egress tests, run by the test inside a network namespace it made.

Every TCP connection is recorded in the log file as JSON lines: {"conn": n, "event": "open"|"data"|"close",
"bytes": total so far, "first": the first bytes as text, "time": monotonic seconds}. It stops by
itself after `lifetime` seconds.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time


def main() -> None:
    address, port, log_path, lifetime = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, port))
    server.listen(64)
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's whole life

    def record(**entry: object) -> None:
        with lock:
            log.write(json.dumps({**entry, "time": time.monotonic()}) + "\n")

    def serve(conn: socket.socket, number: int) -> None:
        total, first = 0, b""
        record(conn=number, event="open", bytes=0, first="")
        conn.settimeout(lifetime)
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                total += len(chunk)
                first = (first + chunk)[:200]
                record(conn=number, event="data", bytes=total, first=first.decode("utf-8", "replace"))
        except OSError:
            pass
        record(conn=number, event="close", bytes=total, first=first.decode("utf-8", "replace"))
        conn.close()

    # DNS on UDP, same port: every query gets an empty NXDOMAIN answer, and is recorded.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((address, port))

    def answer() -> None:
        while True:
            try:
                query, peer = udp.recvfrom(4096)
            except OSError:
                return
            record(conn=0, event="dns", bytes=len(query), first="")
            if len(query) >= 12:
                udp.sendto(query[:2] + bytes([0x81, 0x83]) + query[4:6] + b"\0\0\0\0\0\0" + query[12:], peer)

    threading.Thread(target=answer, daemon=True).start()
    threading.Timer(lifetime, lambda: (server.close(), udp.close())).start()
    number = 0
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        number += 1
        threading.Thread(target=serve, args=(conn, number), daemon=True).start()


if __name__ == "__main__":
    main()
