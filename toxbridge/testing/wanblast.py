"""The WAN emulator measured alone: plain UDP or TCP through the line, no Tox (issue 16: is
the emulator the limit of a row?).

    python -m toxbridge.testing.wanblast udp --rate 6e6 --seconds 5   # inside a namespace
    WanNamespace(...).blast("udp", rate=6e6, seconds=5)                 # from outside

UDP: one socket sends datagrams of ``size`` bytes on the wire (IPv4 + UDP headers
included, as the line counts them) paced at ``rate`` bytes/s to another on 127.0.0.1;
the receiver counts what arrives. TCP: one connection to ``BLAST_TCP_PORT`` (the
namespace must put that port on the line: ``tcp_ports``) writes as fast as it can. Both
print one JSON object: what was offered and what arrived per second after the first
``warm_s`` (the line's delay and TCP's slow start are not the point), and for UDP the
sends the kernel refused (a full socket buffer). Every loop is bounded by the time given.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

__all__ = ["BLAST_TCP_PORT", "blast_udp", "blast_tcp"]

BLAST_TCP_PORT = 33610
_IP_UDP = 28  # IPv4 and UDP headers: the line counts whole IP packets


def _counting_reader(recv, stop: threading.Event, into: list) -> threading.Thread:
    """A thread that calls ``recv()`` (bytes, or b"" at the end) and notes (time, size)."""
    def run() -> None:
        while not stop.is_set():
            try:
                data = recv()
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return
            if not data:
                return
            into.append((time.monotonic(), len(data)))
    thread = threading.Thread(target=run, daemon=True, name="blast-reader")
    thread.start()
    return thread


def _rate(events: list, t_from: float, t_to: float, extra: int = 0) -> float:
    return sum(n + extra for t, n in events if t_from <= t <= t_to) / max(t_to - t_from, 1e-9)


def blast_udp(rate: float, seconds: float, size: int = 1430, warm_s: float = 1.0) -> dict:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.settimeout(0.2)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 << 20)  # as toxcore asks
        tx.setblocking(False)
        got: list = []
        stop = threading.Event()
        reader = _counting_reader(lambda: rx.recv(4096), stop, got)
        payload, dst = bytes(size - _IP_UDP), rx.getsockname()
        sent = refused = 0
        start = time.monotonic()
        end = start + seconds
        while (now := time.monotonic()) < end:
            due = int((now - start) * rate / size)
            while sent + refused < due:
                try:
                    tx.sendto(payload, dst)
                    sent += 1
                except BlockingIOError:
                    refused += 1
            time.sleep(0.0005)
        time.sleep(1.0)  # what is still on the line arrives
        stop.set()
        reader.join(2.0)
    delay = got[0][0] - start if got else 0.0  # the line's: arrivals lag the sends by it
    return {"proto": "udp", "offered_MBps": round(rate / 1e6, 3),
            "received_MBps": round(_rate(got, start + warm_s + delay, end + delay, _IP_UDP) / 1e6, 3),
            "sent": sent, "refused": refused, "received": len(got)}


def blast_tcp(seconds: float, warm_s: float = 2.0) -> dict:
    server = socket.socket()
    with server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", BLAST_TCP_PORT))
        server.listen(1)
        client = socket.create_connection(("127.0.0.1", BLAST_TCP_PORT), timeout=5)
        conn, _ = server.accept()
        with client, conn:
            conn.settimeout(0.2)
            got: list = []
            stop = threading.Event()
            reader = _counting_reader(lambda: conn.recv(1 << 16), stop, got)
            client.settimeout(0.2)
            chunk, written = bytes(1 << 16), 0
            start = time.monotonic()
            end = start + seconds
            while time.monotonic() < end:
                try:
                    written += client.send(chunk)
                except socket.timeout:
                    pass
            stop.set()
            reader.join(2.0)
    return {"proto": "tcp", "written_MB": round(written / 1e6, 2),
            "received_MBps": round(_rate(got, start + warm_s, end) / 1e6, 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m toxbridge.testing.wanblast")
    parser.add_argument("proto", choices=("udp", "tcp"))
    parser.add_argument("--rate", type=float, default=6e6, help="UDP: bytes/s on the wire")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 < args.rate <= 1e9:
        parser.error("seconds must be 0..120 and the rate 0..1e9")
    result = blast_udp(args.rate, args.seconds) if args.proto == "udp" else blast_tcp(args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
