"""Real toxcore peers on this session's private loopback network: friend requests,
connections, lossless packets and messages. No mocks anywhere."""

from __future__ import annotations

import os
import signal
import time

import pytest

from toxbridge.testing.rawpeer import STREAM_WINDOW, RawPeer
from toxbridge.tox import Connection, MessageType

from .conftest import iterate_until

pytestmark = pytest.mark.tox


def test_two_processes_exchange_10000_lossless_packets_both_ways_in_order(tox_network):
    n = 10_000
    with RawPeer(tox_network) as a, RawPeer(tox_network) as b:
        RawPeer.befriend(a, b)
        # Windowed (at most STREAM_WINDOW packets unacknowledged): unbounded, a receiver
        # starved of CPU for ~0.6 s left toxcore crawling at 4 packets/s (rawpeer.py).
        a.receive(n, ack=True)  # both ready before either stream starts
        b.receive(n, ack=True)
        a.send(("stream", n, 1373, STREAM_WINDOW))  # both directions at once
        b.send(("stream", n, 1373, STREAM_WINDOW))
        for peer in (a, b):
            report = peer.wait("stream_done", 120)[0]
            assert report.packets == n
            assert report.errors == 0  # every packet in order and byte-exact
            assert report.bytes == n * 1373


def test_windowed_stream_recovers_at_once_after_its_receiver_stalls(tox_network):
    # What a starved CPU does to a receiver, made certain: it stops for 1.5 s mid-stream.
    # Unwindowed, the sender then kept toxcore's queue full of packets lost at the stopped
    # receiver, and toxcore crawled at 4 packets/s for minutes (the first test's flake).
    n = 10_000
    with RawPeer(tox_network) as a, RawPeer(tox_network) as b:
        RawPeer.befriend(a, b)
        b.receive(n, ack=True)
        a.send(("stream", n, 1373, STREAM_WINDOW))
        time.sleep(3)  # into the slow start: ~1,000 packets/s
        os.kill(b.process.pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            os.kill(b.process.pid, signal.SIGCONT)
        resumed = time.monotonic()
        report = b.wait("stream_done", 60)[0]  # ~8 s; a crawl would take minutes
        assert report.last_s > resumed, "the stall must fall inside the stream"
        assert (report.packets, report.errors) == (n, 0)


def test_friend_connection_is_reported_both_ways(friends):
    a, b, fa, fb = friends
    assert a.friend_connection_status(fa) in (Connection.UDP, Connection.TCP)
    assert b.friend_public_key(fb) == a.public_key
    assert a.friend_last_online(fa) is not None


def test_messages_round_trip(friends):
    a, b, fa, fb = friends
    got_b, got_a = [], []
    b.on_friend_message = lambda f, t, m: got_b.append((f, t, m))
    a.on_friend_message = lambda f, t, m: got_a.append((f, t, m))
    try:
        a.send_message(fa, "héllo ✓")
        a.send_message(fa, b"x" * 1372, MessageType.ACTION)
        iterate_until([a, b], lambda: len(got_b) == 2, 30, "b to receive 2 messages")
        assert got_b == [(fb, MessageType.NORMAL, "héllo ✓".encode()),
                         (fb, MessageType.ACTION, b"x" * 1372)]
        b.send_message(fb, b"back")
        iterate_until([a, b], lambda: got_a, 30, "a to receive the reply")
        assert got_a == [(fa, MessageType.NORMAL, b"back")]
    finally:
        a.on_friend_message = b.on_friend_message = None


def test_lossless_packets_in_process_all_ids(friends):
    a, b, fa, fb = friends
    got = []
    b.on_friend_lossless_packet = lambda f, data: got.append(data)
    try:
        sent = [bytes([pid]) + pid.to_bytes(2, "big") * 100 for pid in range(160, 192)]
        sent.append(bytes([160]) + bytes(range(256)) * 5 + bytes(1372 - 1280))  # full size
        for packet in sent:
            a.send_lossless_packet(fa, packet)
        iterate_until([a, b], lambda: len(got) == len(sent), 30, "all packets")
        assert got == sent
    finally:
        b.on_friend_lossless_packet = None


def test_exception_in_callback_surfaces_from_iterate(friends):
    a, b, fa, fb = friends

    class Boom(Exception):
        pass

    def handler(friend, data):
        raise Boom(data)

    b.on_friend_lossless_packet = handler
    try:
        a.send_lossless_packet(fa, b"\xa0first")
        a.send_lossless_packet(fa, b"\xa0second")
        with pytest.raises(Boom) as exc:
            iterate_until([a, b], lambda: False, 30, "the callback to raise")
        assert exc.value.args == (b"\xa0first",)  # the first one wins; toxcore kept going
    finally:
        b.on_friend_lossless_packet = None
    b.iterate()  # and the instance stays usable
