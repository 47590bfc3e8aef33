"""A kernel that does nothing but answer: the floor under any "kernel start to first result" figure.

It imports only zmq and the standard library, answers kernel_info, prints "42" for any cell and
exits on shutdown. Whatever a real kernel measures above this is its own cost; this much is the
Python interpreter, zmq and jupyter_client's start-up handshake.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import signal
import sys
import uuid

import zmq


def main(connection_file: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(connection_file) as file:
        config = json.load(file)
    key = config["key"].encode()
    context = zmq.Context()

    def bind(kind: int, port: int) -> zmq.Socket:
        sock = context.socket(kind)
        sock.bind(f"tcp://{config['ip']}:{port}")
        return sock

    shell, control = bind(zmq.ROUTER, config["shell_port"]), bind(zmq.ROUTER, config["control_port"])
    iopub, heartbeat = bind(zmq.PUB, config["iopub_port"]), bind(zmq.REP, config["hb_port"])
    bind(zmq.ROUTER, config["stdin_port"])

    def send(sock: zmq.Socket, idents: list[bytes], msg_type: str, content: dict, parent: dict) -> None:
        header = {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": "null",
            "username": "null",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "version": "5.3",
        }
        parts = [json.dumps(header).encode(), json.dumps(parent).encode(), b"{}", json.dumps(content).encode()]
        signature = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest().encode()
        sock.send_multipart([*idents, b"<IDS|MSG>", signature, *parts])

    poller = zmq.Poller()
    for sock in (shell, control, heartbeat):
        poller.register(sock, zmq.POLLIN)
    count = 0
    while True:
        for sock, _ in poller.poll():
            if sock is heartbeat:
                heartbeat.send(heartbeat.recv())
                continue
            frames = sock.recv_multipart()
            split = frames.index(b"<IDS|MSG>")
            idents, header = frames[:split], json.loads(frames[split + 2])
            msg_type = header["msg_type"]
            send(iopub, [b"status"], "status", {"execution_state": "busy"}, header)
            if msg_type == "kernel_info_request":
                send(
                    sock,
                    idents,
                    "kernel_info_reply",
                    {
                        "status": "ok",
                        "protocol_version": "5.3",
                        "implementation": "null",
                        "implementation_version": "0",
                        "language_info": {"name": "python"},
                        "banner": "",
                    },
                    header,
                )
            elif msg_type == "execute_request":
                count += 1
                send(iopub, [b"stream"], "stream", {"name": "stdout", "text": "42\n"}, header)
                send(
                    sock,
                    idents,
                    "execute_reply",
                    {"status": "ok", "execution_count": count, "user_expressions": {}, "payload": []},
                    header,
                )
            elif msg_type == "shutdown_request":
                send(sock, idents, "shutdown_reply", {"status": "ok", "restart": False}, header)
                send(iopub, [b"status"], "status", {"execution_state": "idle"}, header)
                return
            send(iopub, [b"status"], "status", {"execution_state": "idle"}, header)


if __name__ == "__main__":
    main(sys.argv[1])
