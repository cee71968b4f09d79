"""The demo: everything on a private Tox network on 127.0.0.1, nothing leaves the machine.

At this stage it shows the foundation: a bootstrap node, two toxcore peers in two
processes that befriend each other, a verified stream of lossless packets, and
ping-pong round trips.
"""

from __future__ import annotations

import time

from .network import start_bootstrap
from .rawpeer import RawPeer

PACKET = 1373


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(mb: float = 20) -> int:
    _say("toxbridge demo — a private Tox network on 127.0.0.1 (LAN discovery and IPv6 off)")
    boot = start_bootstrap()
    try:
        _say(f"  bootstrap node  {boot.info}")
        t0 = time.monotonic()
        with RawPeer(boot.info) as a, RawPeer(boot.info) as b:
            _say(f"  peer A          {a.address.hex().upper()}")
            _say(f"  peer B          {b.address.hex().upper()}")
            _say("  A sends B a friend request; waiting for the friend connection (~10 s)...")
            connected = RawPeer.befriend(a, b)
            _say(f"  connected after {connected - t0:.1f} s")

            packets = max(1, int(mb * 1e6) // PACKET)
            b.send(("receive", packets))
            start = time.monotonic()
            a.send(("stream", packets, PACKET))
            report = b.wait("stream_done", timeout=300)[0]
            rate = report.bytes / (report.last_s - start) / 1e6
            verdict = "all in order, byte-exact" if report.errors == 0 else f"{report.errors} BAD"
            _say(f"  A -> B: {report.packets} lossless packets, {report.bytes / 1e6:.1f} MB "
                 f"at {rate:.1f} MB/s (peak {max(report.per_second) / 1e6:.1f} MB/s), {verdict}")

            rtts = sorted(a.call(("ping", 200, 64), "pings")[0])
            _say(f"  ping-pong: 200 round trips, median {rtts[100] * 1000:.2f} ms, "
                 f"worst {rtts[-1] * 1000:.2f} ms")
    finally:
        boot.stop()
    _say("  stopped the peers and the bootstrap node. Done.")
    return 0 if report.errors == 0 else 1
