"""The transport over real lossy custom packets: two toxcore instances on the session's
private loopback network, one thread driving both Tox objects and both endpoints the way
the tox thread would (iterate, hand packets over, send what the endpoints have, sleep at
most 1 ms)."""

from __future__ import annotations

import random
import time

import pytest

from toxbridge.testing.simpath import pattern
from toxbridge.transport import BbrController, Endpoint

pytestmark = pytest.mark.tox


def test_a_stream_crosses_real_lossy_packets_exactly(friends):
    a, b, fa, fb = friends
    sender = Endpoint(controller=BbrController(rng=random.Random(1)), initial_rtt=0.01)
    receiver = Endpoint(initial_rtt=0.01)
    total, written, got = 8_000_000, 0, bytearray()
    a.on_friend_lossy_packet = lambda f, data: sender.receive_datagram(data, time.monotonic())
    b.on_friend_lossy_packet = lambda f, data: receiver.receive_datagram(data, time.monotonic())
    refused = 0
    start = time.monotonic()
    try:
        while len(got) < total and time.monotonic() - start < 60:
            a.iterate()
            b.iterate()
            now = time.monotonic()
            for ep in (sender, receiver):
                t = ep.timeout()
                if t is not None and t <= now:
                    ep.handle_timer(now)
            if written < total and sender.send_room:
                written += sender.send(pattern(written, min(sender.send_room, total - written)))
            got += receiver.receive()
            for ep, tox, friend in ((sender, a, fa), (receiver, b, fb)):
                for packet in ep.datagrams_to_send(now):
                    refused += not tox.try_send_lossy_packet(friend, packet)
            wake = min((t for t in (sender.timeout(), receiver.timeout()) if t is not None),
                       default=now + 0.001)
            time.sleep(min(max(wake - time.monotonic(), 0.0), 0.001))
    finally:
        a.on_friend_lossy_packet = b.on_friend_lossy_packet = None
    elapsed = time.monotonic() - start
    assert len(got) == total and bytes(got) == pattern(0, total)
    stats = sender.statistics()
    print(f"\n{total / elapsed / 1e6:.1f} MB/s, {stats.packets_sent} packets, "
          f"{stats.packets_lost} lost, {refused} refused, srtt {stats.srtt_s * 1e3:.1f} ms")
    assert refused == 0
