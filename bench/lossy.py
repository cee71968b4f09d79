"""``python -m bench lossy [--seconds 3] [--rates 5000,10000,20000,40000,0]`` — how many
lossy custom packets of 1373 bytes pass between two toxcore instances on the private
loopback network, and what toxcore's send call says under a burst.

Two Tox instances in one process, each iterated by its own thread (cffi releases the GIL
in toxcore's calls); both bootstrap to a private tox-bootstrapd on 127.0.0.1 and become
friends. For each target rate (packets/s; 0: as fast as the sending thread can call
``tox_friend_send_lossy_packet``), the sender sends rate/1000 packets every ~1 ms turn for
``--seconds``; the receiver counts what arrives (its loop: iterate, sleep 1 ms). Prints
one JSON object: per rate the packets sent, refused (SENDQ), received, the received rate,
MB/s and the share lost.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from toxbridge.network import loopback_options
from toxbridge.testing import start_bootstrap
from toxbridge.tox import Connection, Tox

PACKET = bytes([200]) + bytes(1372)


def _connect(node) -> tuple[Tox, Tox, int]:
    a, b = Tox(loopback_options()), Tox(loopback_options())
    for t in (a, b):
        t.bootstrap(node.host, node.port, node.public_key)
    b.on_friend_request = lambda key, msg: b.friend_add_norequest(key)
    fa = a.friend_add(b.address, b"lossy bench")
    deadline = time.monotonic() + 120
    while a.friend_connection_status(fa) == Connection.NONE or not b.friend_list() \
            or b.friend_connection_status(b.friend_list()[0]) == Connection.NONE:
        if time.monotonic() > deadline:
            raise SystemExit("no friend connection within 120 s")
        a.iterate()
        b.iterate()
        time.sleep(0.005)
    return a, b, fa


def _measure(a: Tox, b: Tox, fa: int, rate: int, seconds: float) -> dict:
    received = [0]
    b.on_friend_lossy_packet = lambda friend, data: received.__setitem__(0, received[0] + 1)
    stop = threading.Event()

    def receiver() -> None:
        while not stop.is_set():
            b.iterate()
            time.sleep(0.001)

    thread = threading.Thread(target=receiver)
    thread.start()
    sent = refused = 0
    start = time.monotonic()
    try:
        while (now := time.monotonic()) - start < seconds:
            due = int((now - start) * rate) if rate else sent + refused + 200
            while sent + refused < due:
                if a.try_send_lossy_packet(fa, PACKET):
                    sent += 1
                else:
                    refused += 1
            a.iterate()
            time.sleep(0.001 if rate else 0)
        time.sleep(0.3)  # what is in flight
    finally:
        stop.set()
        thread.join()
        b.on_friend_lossy_packet = None
    elapsed = seconds
    return {"rate_pps": rate or None, "sent": sent, "refused_sendq": refused,
            "received": received[0], "received_pps": round(received[0] / elapsed),
            "received_MBps": round(received[0] * len(PACKET) / elapsed / 1e6, 2),
            "lost_share": round(1 - received[0] / sent, 4) if sent else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench lossy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rates", default="5000,10000,20000,40000,0")
    args = parser.parse_args(argv)
    node = start_bootstrap()
    try:
        a, b, fa = _connect(node.info)
        try:
            rows = [_measure(a, b, fa, int(r), args.seconds) for r in args.rates.split(",")]
        finally:
            a.close()
            b.close()
    finally:
        node.stop()
    print(json.dumps({"rows": rows}))
    return 0
