"""Lossy custom packets through our binding between two real toxcore instances on the
session's private loopback network: they arrive with their id byte, and bad ones are refused
by name."""

from __future__ import annotations

import time

import pytest

from toxbridge.tox import CustomPacketError

pytestmark = pytest.mark.tox


def test_lossy_packets_arrive_with_their_id_byte(friends):
    a, b, fa, fb = friends
    got = []
    b.on_friend_lossy_packet = lambda friend, data: got.append((friend, data))
    try:
        packets = [bytes([200 + i % 55]) + bytes([i]) * (1372 if i % 2 else 1) for i in range(50)]
        deadline = time.monotonic() + 10
        sent = 0
        while time.monotonic() < deadline and len(got) < 40:
            if sent < len(packets):
                assert a.try_send_lossy_packet(fa, packets[sent])
                sent += 1
            a.iterate()
            b.iterate()
            time.sleep(0.001)
        assert len(got) >= 40  # loopback loses nothing in practice; lossy allows it
        assert all(friend == fb for friend, _ in got)
        assert {data for _, data in got} <= set(packets)
        assert any(len(data) == 1373 for _, data in got)
    finally:
        b.on_friend_lossy_packet = None


@pytest.mark.parametrize("packet, error", [
    (b"", "FRIEND_CUSTOM_PACKET_EMPTY"),
    (bytes([160]) + b"x", "FRIEND_CUSTOM_PACKET_INVALID"),  # a lossless id
    (bytes([255]) + b"x", "FRIEND_CUSTOM_PACKET_INVALID"),
    (bytes([200]) + bytes(1373), "FRIEND_CUSTOM_PACKET_TOO_LONG"),
])
def test_bad_lossy_packets_are_refused_by_name(friends, packet, error):
    a, _, fa, _ = friends
    with pytest.raises(CustomPacketError, match=error):
        a.try_send_lossy_packet(fa, packet)
