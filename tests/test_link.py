"""The daemon-to-daemon link: exact packets, and two Links over a fake lossy toxcore.

Run as a script for the throughput measurement: ``python3 -m tests.test_link [MB]``.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import time
from collections import deque

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from toxbridge.errors import LocalProtocolError, RemoteProtocolError
from toxbridge.link import (
    ACK_EVERY,
    DATA_HEADER_SIZE,
    DEFAULT_BACKLOG,
    DEFAULT_IN_FLIGHT,
    HELLO_TRANSPORT,
    MAX_CHUNK,
    MAX_PACKET_SIZE,
    MIN_WINDOW,
    PACKET_ID,
    ChannelOpen,
    Link,
    LinkState,
    PacketType,
    PeerHello,
    VersionMismatch,
)

SID_A = bytes(range(1, 17))
SID_B = bytes(range(101, 117))
Z8 = bytes(8)


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def hello(session: bytes, echo: bytes = bytes(16), *, reply: bool = False, window: int = 65536,
          received: int = 0, delivered: int = 0, version: int = 2, transport: bool = False,
          epoch: int = 1) -> bytes:  # fmt: skip
    flags = int(reply) | (HELLO_TRANSPORT if transport else 0)
    return (
        bytes([PACKET_ID, 1]) + version.to_bytes(2, "big") + bytes([flags]) + session + echo
        + window.to_bytes(4, "big") + u64(received) + u64(delivered) + bytes([epoch])
    )  # fmt: skip


def ptype(packet: bytes) -> PacketType:
    return PacketType(packet[1])


# -- the fake toxcore ---------------------------------------------------------------------


class FakeTox:
    """Two Links joined by an in-memory friend connection.

    While up, packets arrive in order, exactly once. A disconnect delivers some prefix of
    what is in flight and drops the rest. Dropped packets are kept in ``lost``, each with the
    numbering it was sent in, so a test can deliver them late, as toxcore does after a stall.
    """

    def __init__(self, a: Link, b: Link) -> None:
        self.links = [a, b]
        # inflight[i]: (packet, numbering) sent by links[i], in order.
        self.inflight: list[deque[tuple[bytes, bytes | None]]] = [deque(), deque()]
        self.lost: list[list[tuple[bytes, bytes | None]]] = [[], []]
        self.up = False
        self.events: list[list[object]] = [[], []]
        self.hello_due = [False, False]

    def packets(self, i: int) -> list[bytes]:
        """Take the packets in flight from link i off the wire."""
        packets = [packet for packet, _ in self.inflight[i]]
        self.inflight[i].clear()
        return packets

    def connect(self) -> None:
        self.up = True
        for i in (0, 1):
            self.made(i)

    def made(self, i: int) -> None:
        self.links[i].connection_made()
        self.hello_due[i] = True

    def drop_inflight(self, *sides: int) -> None:
        for i in sides or (0, 1):
            self.lost[i].extend(self.inflight[i])
            self.inflight[i].clear()

    def disconnect(self, keep: tuple[int, int] = (0, 0)) -> None:
        for i in (0, 1):
            self.deliver(i, keep[i])
        self.drop_inflight()
        self.up = False
        for link in self.links:
            link.connection_lost()

    def pump(self, i: int, budget: int | None = None, *, flush: bool = False) -> int:
        """Hand link i's packets to "toxcore"; after ``budget`` packets it says SENDQ."""
        link, n = self.links[i], 0
        while (packet := link.next_packet(flush=flush)) is not None:
            check_packet_shape(link, packet)
            if self.hello_due[i]:
                assert ptype(packet) == PacketType.HELLO, "the first packet of a connection"
            if budget is not None and n >= budget:
                link.requeue(packet)
                return n
            self.hello_due[i] = False
            if self.up:
                # Offsets in DATA, ACK and RESYNC are numbered for the peer session the
                # sender knows: remember it, for late delivery.
                self.inflight[i].append((packet, link.peer_session_id))
            n += 1
        return n

    def deliver(self, i: int, count: int | None = None) -> int:
        """Deliver up to ``count`` packets sent by link i to the other link."""
        queue, dst = self.inflight[i], self.links[1 - i]
        n = len(queue) if count is None else min(count, len(queue))
        for _ in range(n):
            self.events[1 - i].extend(dst.receive_packet(queue.popleft()[0]))
        return n

    def deliver_late(self, i: int, start: int, count: int, *, now: bool) -> None:
        """Some packets link i wrote off arrive after all: now, or after what is in flight.

        Toxcore never delivers a packet of a dead connection after one of a newer connection
        (each has its own keys); this fake is harsher and delivers them at any time, except
        across a renumbering, which toxcore's rule excludes: DATA, ACK and RESYNC numbered for
        a predecessor of the receiving daemon are not delivered (HELLOs name their sessions).
        """
        lost, dst = self.lost[i], self.links[1 - i]
        start %= max(len(lost), 1)
        late, lost[start : start + count] = lost[start : start + count], []
        for packet, numbering in late:
            if ptype(packet) != PacketType.HELLO and numbering != dst.session_id:
                continue
            if now:
                self.events[1 - i].extend(dst.receive_packet(packet))
            else:
                self.inflight[i].append((packet, numbering))

    def settle(self, take: list[list[bytes]] | None = None, rounds: int = 100_000) -> None:
        """Run both loops, flushing acks, until nothing moves; frames go to ``take``."""
        for _ in range(rounds):
            moved = self.pump(0, flush=True) + self.pump(1, flush=True)
            moved += self.deliver(0) + self.deliver(1)
            if take is not None:
                for i in (0, 1):
                    while (frame := self.links[i].next_frame()) is not None:
                        take[i].append(frame)
                        moved += 1
            if not moved:
                return
        raise AssertionError("the links did not settle: livelock or deadlock")


def check_packet_shape(link: Link, packet: bytes) -> None:
    assert packet[0] == PACKET_ID and len(packet) <= MAX_PACKET_SIZE
    if ptype(packet) == PacketType.DATA and len(packet) < MAX_PACKET_SIZE:
        # A short DATA packet carries the tail of the queue, never less than was available.
        assert link.unsent_bytes == 0, "DATA packet not full while data was queued"


def open_pair(wa: int = 65536, wb: int = 65536) -> FakeTox:
    # The backlog limit is left out (as large as the window): it has its own test.
    net = FakeTox(Link(SID_A, window=wa, backlog=wa), Link(SID_B, window=wb, backlog=wb))
    net.connect()
    net.settle()
    assert net.links[0].state is LinkState.OPEN and net.links[1].state is LinkState.OPEN
    return net


def transfer(net: FakeTox, frames: list[bytes], i: int = 0) -> list[bytes]:
    """Send frames from link i through the net, as a shell would; return what arrived."""
    src, got, todo = net.links[i], [[], []], deque(frames)
    for _ in range(1_000_000):
        while todo and src.can_send_frame(len(todo[0])):
            src.send_frame(todo.popleft())
        net.settle(got)
        if not todo:
            return got[1 - i]
    raise AssertionError("transfer did not finish")


# -- exact bytes of each packet type ------------------------------------------------------


def test_hello_packet_exact_bytes() -> None:
    link = Link(SID_A, window=65536)
    assert link.next_packet() is None  # nothing before the connection exists
    link.connection_made()
    assert link.state is LinkState.CONNECTING
    packet = link.next_packet()
    assert packet == (
        bytes.fromhex("a0 01 0002 00") + SID_A + bytes(16) + bytes.fromhex("00010000") + Z8 + Z8
        + b"\x01"  # the transport epoch: 1 on the first connection
    )
    assert len(packet) == 58
    assert packet == hello(SID_A)


def test_data_ack_resync_and_reply_hello_exact_bytes() -> None:
    a = Link(SID_A, window=65536)
    a.connection_made()
    assert a.next_packet() == hello(SID_A)
    # The peer's first HELLO does not know us yet: the channel opens only on a HELLO that
    # echoes our session, so it is answered with a request (no reply flag) echoing the peer's.
    assert a.receive_packet(hello(SID_B)) == []
    assert a.next_packet() == hello(SID_A, SID_B)
    assert a.state is LinkState.CONNECTING
    events = a.receive_packet(hello(SID_B, SID_A, reply=True))
    assert events == [PeerHello(SID_B, 2, False), ChannelOpen(SID_B)]
    assert a.next_packet() is None  # a reply is never answered
    a.receive_packet(hello(SID_B, SID_A))  # a request (the peer reconnected) gets a reply
    # ... and a new transport epoch: what was in flight went with the peer's old connection
    assert a.next_packet() == hello(SID_A, SID_B, reply=True, epoch=2)
    a.send_frame(b"abc")
    a.send_frame(b"")
    assert a.next_packet() == bytes.fromhex("a0 02") + Z8 + Z8 + bytes.fromhex("0003 616263 0000")
    assert a.next_packet() is None
    # Receive side: the peer's frames, then an ACK on flush, then a RESYNC after a gap.
    a.receive_packet(bytes.fromhex("a0 02") + Z8 + Z8 + bytes.fromhex("0002 6869"))
    assert a.next_packet(flush=True) is None  # received, but not taken: no ack yet
    assert a.next_frame() == b"hi"
    assert a.next_packet(flush=True) == bytes.fromhex("a0 03") + u64(4)
    a.receive_packet(bytes.fromhex("a0 02") + u64(10) + Z8 + b"\x00\x01x")
    assert a.next_packet() == bytes.fromhex("a0 04") + u64(4)
    # The next DATA packet piggybacks the current ack.
    a.send_frame(b"z")
    assert a.next_packet() == bytes.fromhex("a0 02") + u64(7) + u64(4) + b"\x00\x01z"


def test_packet_type_values() -> None:
    assert [int(t) for t in PacketType] == [1, 2, 3, 4]
    assert DATA_HEADER_SIZE == 18 and MAX_CHUNK == 1355 and MAX_PACKET_SIZE == 1373


# -- handshake ------------------------------------------------------------------------------


def test_no_data_is_sent_before_the_peers_hello() -> None:
    a = Link(SID_A, window=65536)
    a.send_frame(b"queued before the connection")
    a.connection_made()
    assert ptype(a.next_packet()) == PacketType.HELLO
    assert a.next_packet() is None
    a.receive_packet(hello(SID_B))
    assert ptype(a.next_packet()) == PacketType.HELLO  # the reply
    assert a.next_packet() is None  # the peer does not know our session yet
    a.receive_packet(hello(SID_B, SID_A, reply=True))
    assert ptype(a.next_packet()) == PacketType.DATA


def test_a_hello_meant_for_our_predecessor_does_not_open_the_channel() -> None:
    b = Link(SID_B, window=65536)
    b.connection_made()
    b.next_packet()
    old_self = bytes(range(201, 217))
    assert b.receive_packet(hello(SID_A, old_self, reply=True, received=500)) == []
    assert b.receive_packet(bytes.fromhex("a0 02") + Z8 + Z8 + b"\x00\x01x") == []
    assert b.state is LinkState.CONNECTING and b.next_frame() is None


def test_packets_before_the_peers_hello_on_this_connection_are_ignored() -> None:
    b = Link(SID_B, window=65536)
    b.connection_made()
    data = bytes.fromhex("a0 02") + Z8 + Z8 + b"\x00\x01x"
    assert b.receive_packet(data) == []
    assert b.receive_packet(bytes.fromhex("a0 03") + u64(99)) == []
    assert b.next_frame() is None
    assert b.statistics().packets_ignored == 2


def test_packets_while_disconnected_are_ignored() -> None:
    b = Link(SID_B, window=65536)
    assert b.receive_packet(hello(SID_A)) == []
    assert b.state is LinkState.DISCONNECTED and b.peer_session_id is None


def test_both_sides_open_and_exchange_a_frame() -> None:
    net = open_pair()
    assert net.events[0] == [PeerHello(SID_B, 2, False), ChannelOpen(SID_B)]
    assert net.events[1] == [PeerHello(SID_A, 2, False), ChannelOpen(SID_A)]
    assert transfer(net, [b"hello", b"world"]) == [b"hello", b"world"]
    assert transfer(net, [b"back"], i=1) == [b"back"]
    # First contact, both HELLOs crossing: the initial request, a request that knows the
    # peer, a reply. A reconnect of peers that know each other needs a request and a reply.
    assert [link.statistics().hello_packets_sent for link in net.links] == [3, 3]
    net.disconnect()
    net.connect()
    net.settle()
    assert [link.statistics().hello_packets_sent for link in net.links] == [5, 5]


def test_data_can_be_held_back_while_control_packets_still_go() -> None:
    net = open_pair()
    a, b = net.links
    for _ in range(3):
        a.send_frame(b"x" * 1000)
    assert a.next_packet(data=False) is None
    b.send_frame(b"y")
    packet = b.next_packet()  # b's data carries b's ack; a holds its data
    assert ptype(packet) == PacketType.DATA
    a.receive_packet(packet)
    assert b"".join(iter(a.next_frame, None)) == b"y"
    ack = a.next_packet(flush=True, data=False)
    assert ptype(ack) == PacketType.ACK
    assert a.next_packet(data=False) is None
    assert ptype(a.next_packet()) == PacketType.DATA  # released: the data goes


def test_version_mismatch_is_an_event_and_an_error_state() -> None:
    a = Link(SID_A, window=65536)
    a.connection_made()
    a.next_packet()
    events = a.receive_packet(bytes([PACKET_ID, 1, 0, 1]))  # a v1 HELLO: any layout after
    assert events == [VersionMismatch(our_version=2, peer_version=1)]
    assert a.state is LinkState.ERROR and "version 1" in (a.error or "")
    assert a.next_packet() is None
    with pytest.raises(RemoteProtocolError, match="version 1"):
        a.receive_packet(hello(SID_B))
    with pytest.raises(LocalProtocolError):
        a.send_frame(b"x")


def test_a_reconnect_resumes_where_the_peer_is_and_loses_nothing() -> None:
    net = open_pair()
    frames = [bytes([i]) * 1000 for i in range(40)]
    a, got = net.links[0], [[], []]
    for f in frames:
        a.send_frame(f)
    net.pump(0)
    net.disconnect(keep=(10, 0))  # 10 packets arrive, the rest is lost with the connection
    assert a.state is LinkState.DISCONNECTED
    assert a.next_packet() is None
    net.connect()
    net.settle(got)
    assert got[1] == frames
    stats = a.statistics()
    assert stats.bytes_resent == stats.bytes_sent - 40 * 1002
    assert net.links[1].statistics().duplicate_bytes == 0  # resumed at the peer's offset


def test_packets_written_off_after_a_stall_still_count_and_are_not_resent() -> None:
    net = open_pair()
    a, b = net.links
    frames = [bytes([i]) * 1000 for i in range(30)]
    for f in frames:
        a.send_frame(f)
    net.pump(0)
    # B stalls; A's toxcore times out, writes everything off and reconnects. B noticed
    # nothing and still gets the written-off packets, then A's new HELLO.
    a.connection_lost()
    net.made(0)
    got: list[list[bytes]] = [[], []]
    net.settle(got)
    assert got[1] == frames
    assert a.statistics().bytes_resent == 0  # B's answer said it had everything
    assert b.statistics().duplicate_bytes == 0


def test_a_peer_restart_renumbers_unacked_frames_and_resends_them() -> None:
    net = open_pair()
    a = net.links[0]
    frames = [b"frame %d" % i for i in range(10)]
    for f in frames:
        a.send_frame(f)
    net.pump(0)
    net.deliver(0)
    old_b = net.links[1]
    taken = [old_b.next_frame() for _ in range(4)]  # the old B's app took four ...
    net.pump(1, flush=True)
    net.deliver(1)  # ... and A saw them acknowledged
    assert a.unacked_bytes == sum(2 + len(f) for f in frames[4:])
    old_b.send_frame(b"from the old B")
    net.pump(1)
    net.deliver(1)  # A holds this frame, not taken yet
    net.disconnect()
    net.links[1] = Link(SID_B[::-1], window=65536)  # the B daemon restarts
    net.events = [[], []]
    net.connect()
    got: list[list[bytes]] = [[], []]
    net.settle(got)
    assert taken + got[1] == frames  # frames 4..9 renumbered from 0 and resent
    assert got[0] == [b"from the old B"]  # the old B's complete frame is still delivered
    assert PeerHello(SID_B[::-1], 2, True) in net.events[0]
    assert a.statistics().peer_restarts == 1
    assert transfer(net, [b"after"], i=1) == [b"after"]
    assert transfer(net, [b"after"]) == [b"after"]


def test_frames_of_older_peer_sessions_are_dropped_to_bound_memory() -> None:
    net = open_pair()
    a = net.links[0]
    for n in (1, 2, 3):  # three B daemons in turn, each sends one frame A's app does not read
        net.links[1].send_frame(b"from B%d" % n)
        net.settle()
        if n < 3:
            net.disconnect()
            net.links[1] = Link(bytes([n]) * 16, window=65536)
            net.connect()
            net.settle()
    # B1's frame is dropped, B2's (the previous session) and B3's are kept: two windows.
    assert [a.next_frame(), a.next_frame(), a.next_frame()] == [b"from B2", b"from B3", None]
    assert a.statistics().frames_dropped == 1


def test_a_restart_of_ours_is_detected_by_the_peer_without_a_disconnect() -> None:
    # Toxcore may replace a crashed peer's connection without reporting it offline.
    net = open_pair()
    assert transfer(net, [b"one"], i=1) == [b"one"]
    net.drop_inflight()
    net.links[0] = Link(SID_A[::-1], window=65536)
    net.made(0)
    got: list[list[bytes]] = [[], []]
    net.links[0].send_frame(b"new A")
    net.settle(got)
    assert got == [[], [b"new A"]]
    assert transfer(net, [b"to the new A"], i=1) == [b"to the new A"]


# -- sending: window, fullness, requeue --------------------------------------------------


def test_send_window_limits_unacked_bytes() -> None:
    a = Link(SID_A, window=MIN_WINDOW)
    n = 0
    while a.can_send_frame(1000):
        a.send_frame(b"x" * 1000)
        n += 1
    assert n == MIN_WINDOW // 1002 and a.unacked_bytes <= MIN_WINDOW
    with pytest.raises(LocalProtocolError, match="send window is full"):
        a.send_frame(b"x" * 1000)
    with pytest.raises(LocalProtocolError, match="1025 bytes is over the limit"):
        a.send_frame(b"x" * 1025)
    assert not a.can_send_frame(1025)


def test_data_packets_are_full_whatever_the_frame_sizes() -> None:
    for size in (1, 100, 1024):
        net = open_pair()
        a = net.links[0]
        for _ in range(20_000 // (size + 2)):
            a.send_frame(b"y" * size)
        queued = a.unsent_bytes
        lengths = []
        while (p := a.next_packet()) is not None:
            lengths.append(len(p))
        assert lengths[:-1] == [MAX_PACKET_SIZE] * (len(lengths) - 1)
        assert sum(lengths) - DATA_HEADER_SIZE * len(lengths) == queued


def test_the_window_edge_does_not_produce_short_packets() -> None:
    net = open_pair(wa=MIN_WINDOW, wb=MIN_WINDOW)
    a = net.links[0]
    while a.can_send_frame(1024):
        a.send_frame(b"w" * 1024)
    net.links[0]._peer_window = MIN_WINDOW - 3000
    lengths = []
    while (p := a.next_packet()) is not None:
        lengths.append(len(p))
    assert set(lengths) == {MAX_PACKET_SIZE}  # the short remainder waits for an ack


def test_requeue_takes_back_the_packet_and_rebuilds_it_fuller() -> None:
    net = open_pair()
    a = net.links[0]
    a.send_frame(b"small")
    first = a.next_packet()
    assert first is not None and len(first) == DATA_HEADER_SIZE + 7
    before = a.statistics()
    a.requeue(first)  # toxcore said SENDQ
    assert a.statistics().packets_sent == before.packets_sent - 1
    assert a.statistics().bytes_sent == before.bytes_sent - 7
    for _ in range(2):
        a.send_frame(b"m" * 1000)
    again = a.next_packet()
    assert again is not None and again[:10] == first[:10] and len(again) == MAX_PACKET_SIZE
    with pytest.raises(LocalProtocolError, match="just returned"):
        a.requeue(first)


def test_requeue_of_hello_ack_and_resync_puts_them_back() -> None:
    a = Link(SID_A, window=65536)
    a.connection_made()
    h = a.next_packet()
    assert h is not None
    a.requeue(h)
    assert a.next_packet() == h
    a.receive_packet(hello(SID_B, SID_A))
    a.next_packet()  # reply
    a.receive_packet(bytes.fromhex("a0 02") + Z8 + Z8 + b"\x00\x01x")
    assert a.next_frame() == b"x"
    ack = a.next_packet(flush=True)
    assert ack == bytes.fromhex("a0 03") + u64(3)
    a.requeue(ack)
    assert a.next_packet(flush=True) == ack
    a.receive_packet(bytes.fromhex("a0 02") + u64(50) + Z8 + b"\x00\x01y")
    resync = a.next_packet()
    assert resync is not None and ptype(resync) == PacketType.RESYNC
    a.requeue(resync)
    assert a.next_packet() == resync
    assert a.next_packet(flush=True) is None


def test_requeue_must_follow_next_packet_directly() -> None:
    net = open_pair()
    a = net.links[0]
    a.send_frame(b"x")
    p = a.next_packet()
    assert p is not None
    a.receive_packet(bytes.fromhex("a0 03") + u64(0))
    with pytest.raises(LocalProtocolError):
        a.requeue(p)


# -- receiving: acks, gaps, duplicates ---------------------------------------------------


def test_acks_are_coalesced_and_sent_every_ack_every_bytes_or_on_flush() -> None:
    net = open_pair(wa=65536, wb=65536)
    a, b = net.links
    for _ in range(40):
        a.send_frame(b"q" * 1022)  # 1024 bytes in the stream each
    net.pump(0)
    net.deliver(0)
    assert ACK_EVERY == 10_840 < 65536 // 4
    for _ in range(10):
        b.next_frame()
    assert b.next_packet() is None  # 10 KiB delivered: under ACK_EVERY
    b.next_frame()
    assert b.next_packet() == bytes.fromhex("a0 03") + u64(11 * 1024)  # 11 KiB: due
    assert b.next_packet(flush=True) is None  # nothing new
    b.next_frame()
    ack = b.next_packet(flush=True)
    assert ack == bytes.fromhex("a0 03") + u64(12 * 1024)
    a.receive_packet(ack)  # cumulative: the earlier ack is not needed
    assert a.unacked_bytes == 28 * 1024


def test_a_small_window_is_acked_every_quarter_window() -> None:
    net = open_pair(wa=MIN_WINDOW, wb=MIN_WINDOW)
    a, b = net.links
    for _ in range(7):
        a.send_frame(b"q" * 1022)
    net.pump(0)
    net.deliver(0)
    b.next_frame()
    assert b.next_packet() is None  # 1 KiB: under a quarter of 8 KiB
    b.next_frame()
    assert b.next_packet() == bytes.fromhex("a0 03") + u64(2 * 1024)


def pair(a: Link, b: Link) -> FakeTox:
    net = FakeTox(a, b)
    net.connect()
    net.settle()
    return net


def test_in_flight_bytes_are_capped_whatever_the_window() -> None:
    # toxcore throttles a connection to 4 packets/s for minutes when its queue holds more
    # than 64 packets at a stall: the link never hands it more than `in_flight` bytes.
    net = pair(Link(SID_A, in_flight=10 * MAX_CHUNK), Link(SID_B))
    a, b = net.links
    while a.can_send_frame(1024):
        a.send_frame(b"f" * 1024)
    queued = a.unsent_bytes
    assert queued == DEFAULT_BACKLOG - DEFAULT_BACKLOG % 1026  # the backlog binds first
    assert net.pump(0) == 10 and a.unsent_bytes == queued - 10 * MAX_CHUNK
    net.deliver(0)
    for _ in range(11):  # 11 frames taken: 11,286 bytes, over ACK_EVERY
        b.next_frame()
    net.pump(1)
    net.deliver(1)  # the ack
    # 8 more full packets fit (the ack freed 11,286 bytes); a 9th would be cut short.
    assert net.pump(0) == 11_286 // MAX_CHUNK
    assert {len(p) for p, _ in net.inflight[0]} == {MAX_PACKET_SIZE}


def test_the_backlog_limits_bytes_not_yet_transmitted() -> None:
    net = pair(Link(SID_A, window=1 << 20), Link(SID_B, window=1 << 20))
    a = net.links[0]
    n = 0
    while a.can_send_frame(1000):
        a.send_frame(b"x" * 1000)
        n += 1
    assert n == DEFAULT_BACKLOG // 1002 and a.unsent_bytes <= DEFAULT_BACKLOG
    with pytest.raises(LocalProtocolError, match="send window is full"):
        a.send_frame(b"x" * 1000)
    assert net.pump(0, budget=1) == 1  # one packet goes out: room for one more frame
    assert a.can_send_frame(1000)


def test_a_slow_reader_stops_the_acks_and_so_the_sender() -> None:
    net = open_pair(wa=MIN_WINDOW * 4, wb=MIN_WINDOW)
    a, b = net.links
    sent = 0
    for _ in range(20):
        while a.can_send_frame(500):
            a.send_frame(b"s" * 500)
            sent += 1
        net.settle()  # nobody reads on B's side
    assert not a.can_send_frame(500) and a.unsent_bytes > 0  # A is blocked
    assert a.unacked_bytes <= MIN_WINDOW * 4
    assert b.buffered_bytes <= MIN_WINDOW  # B's advertised window binds A
    got: list[bytes] = []
    net.settle([[], got])  # the reader wakes up: acks flow, A sends the rest
    assert len(got) == sent and a.unacked_bytes == 0


def test_a_gap_asks_once_for_a_resync_and_the_sender_rewinds() -> None:
    net = open_pair()
    a, b = net.links
    frames = [bytes([i]) * 1024 for i in range(6)]
    for f in frames:
        a.send_frame(f)
    net.pump(0)
    p1, _p2, p3, p4, _p5 = net.packets(0)
    b.receive_packet(p1)
    b.receive_packet(p3)  # p2 went missing
    b.receive_packet(p4)
    resync = b.next_packet()
    assert resync == bytes.fromhex("a0 04") + u64(MAX_CHUNK)
    assert b.next_packet() is None  # one request per position
    assert b.statistics().gap_packets == 2
    a.receive_packet(resync)
    net.pump(0)
    assert struct.unpack_from(">Q", net.inflight[0][0][0], 2)[0] == MAX_CHUNK
    got = [[], []]
    net.settle(got)
    assert got[1] == frames


def test_duplicates_are_trimmed() -> None:
    net = open_pair()
    a, b = net.links
    a.send_frame(b"d" * 1000)
    a.send_frame(b"e" * 1000)
    net.pump(0)
    p1, p2 = net.packets(0)
    b.receive_packet(p1)
    b.receive_packet(p1)
    # A packet overlapping what was received: only its new bytes count.
    stream = p1[DATA_HEADER_SIZE:] + p2[DATA_HEADER_SIZE:]
    overlap = p1[:2] + u64(1000) + p1[10:18] + stream[1000:]
    b.receive_packet(overlap)
    b.receive_packet(p2)
    assert [b.next_frame(), b.next_frame(), b.next_frame()] == [b"d" * 1000, b"e" * 1000, None]
    stats = b.statistics()
    assert stats.duplicate_bytes == MAX_CHUNK + (MAX_CHUNK - 1000) + len(p2) - DATA_HEADER_SIZE
    assert stats.bytes_received == 2004


# -- malformed packets -----------------------------------------------------------------


def opened(window: int = 65536) -> Link:
    a = Link(SID_A, window=window)
    a.connection_made()
    a.next_packet()
    a.receive_packet(hello(SID_B, SID_A))
    a.next_packet()
    assert a.state is LinkState.OPEN
    return a


MALFORMED = [
    (b"", "packet of 0 bytes with nothing"),
    (b"\xa0", "packet of 1 bytes"),
    (b"\xa1\x02" + Z8 + Z8 + b"\x00\x00", "with id 161 is not a toxbridge packet"),
    (b"\xa0\x09", "unknown packet type 0x09"),
    (b"\xa0\x00" + Z8, "unknown packet type 0x00"),
    (b"\xa0\x02" + Z8 + Z8, "DATA packet of 18 bytes carries no stream bytes"),
    (b"\xa0\x02" + Z8, "DATA packet of 10 bytes"),
    (b"\xa0\x03" + Z8[:7], "ACK packet of 9 bytes"),
    (b"\xa0\x03" + Z8 + b"\x00", "ACK packet of 11 bytes"),
    (b"\xa0\x04", "RESYNC packet of 2 bytes"),
    (b"\xa0\x01\x00", "HELLO packet of 3 bytes is too short"),
    (hello(SID_B)[:-1], "HELLO packet of 57 bytes"),
    (hello(SID_B) + b"\x00", "HELLO packet of 59 bytes"),
    (hello(SID_B)[:4] + b"\x04" + hello(SID_B)[5:], "unknown flags 0x04"),
    (hello(bytes(16)), "without a session id"),
    (hello(SID_B, window=1000), "window of 1000 bytes is under the minimum"),
    (hello(SID_B, received=5, delivered=6), "6 bytes delivered but only 5 received"),
    (hello(SID_B, SID_A, received=1), "1 bytes received; we sent only 0"),
    (b"\xa0\x03" + u64(1), "acknowledged byte 1 of our stream; we sent only 0"),
    (b"\xa0\x04" + u64(7), "resume at byte 7; we sent 0"),
    (b"\xa0\x02" + Z8 + u64(3) + b"\x00\x00", "acknowledged byte 3"),
    (b"\xa0\x02" + Z8 + Z8 + b"\x04\x01" + b"x" * 1025, "frame length 1025 at stream byte 0"),
    (b"\xa0\x02" + Z8 + Z8 + b"\x00\x01x\x04\x01", "frame length 1025 at stream byte 3"),
    (b"\xa0\x02" + Z8 + Z8 + b"\x00" * (MAX_CHUNK + 1), "packet of 1374 bytes is too long"),
]


@pytest.mark.parametrize(("packet", "message"), MALFORMED)
def test_malformed_packets_raise_remote_protocol_error(packet: bytes, message: str) -> None:
    a = opened()
    with pytest.raises(RemoteProtocolError, match=message.replace("(", r"\(")):
        a.receive_packet(packet)
    assert a.state is LinkState.ERROR
    with pytest.raises(RemoteProtocolError):
        a.receive_packet(hello(SID_B))
    assert a.next_packet() is None


def test_data_beyond_the_receive_window_is_an_error() -> None:
    a = opened(window=MIN_WINDOW)
    chunk = b"\x00\x00" * (MAX_CHUNK // 2)
    seq = 0
    with pytest.raises(RemoteProtocolError, match="beyond our window"):
        while True:
            a.receive_packet(b"\xa0\x02" + u64(seq) + Z8 + chunk)
            seq += len(chunk)
    assert seq <= MIN_WINDOW


def test_an_ack_that_is_not_on_a_frame_boundary_is_an_error() -> None:
    net = open_pair()
    a = net.links[0]
    a.send_frame(b"abc")
    a.send_frame(b"def")
    net.pump(0)
    with pytest.raises(RemoteProtocolError, match="byte 4, which is not the end of a frame"):
        a.receive_packet(bytes.fromhex("a0 03") + u64(4))


@settings(max_examples=300)
@given(st.binary(max_size=80).map(lambda b: bytes([PACKET_ID]) + b))
def test_random_packets_never_raise_anything_but_remote_protocol_error(packet: bytes) -> None:
    a = opened()
    a.send_frame(b"abc")
    a.next_packet()
    try:
        a.receive_packet(packet)
    except RemoteProtocolError:
        assert a.state is LinkState.ERROR


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(LocalProtocolError):
        Link(b"short")
    with pytest.raises(LocalProtocolError):
        Link(bytes(16))
    with pytest.raises(LocalProtocolError):
        Link(SID_A, window=MIN_WINDOW - 1)
    with pytest.raises(LocalProtocolError, match="in_flight"):
        Link(SID_A, in_flight=MIN_WINDOW - 1)
    with pytest.raises(LocalProtocolError, match="backlog"):
        Link(SID_A, backlog=1025)


# -- the state machine: any schedule, every frame exactly once --------------------------

TAG = struct.Struct(">BIQ")  # sender side, sender incarnation, index
SIDES = st.integers(min_value=0, max_value=1)


class LinkSchedules(RuleBasedStateMachine):
    """Sends, losses, reconnects, stalls, slow readers, SENDQ and restarts, in any order."""

    @initialize(
        wa=st.sampled_from([MIN_WINDOW, 3 * MIN_WINDOW, 64 * 1024]),
        wb=st.sampled_from([MIN_WINDOW, 3 * MIN_WINDOW, 64 * 1024]),
        in_flight=st.sampled_from([MIN_WINDOW, 3 * MIN_WINDOW, DEFAULT_IN_FLIGHT]),
    )
    def start(self, wa: int, wb: int, in_flight: int = DEFAULT_IN_FLIGHT) -> None:
        self.windows = [wa, wb]
        self.in_flight = in_flight
        self.all_links: list[Link] = []
        self.inc = [0, 0]
        self.net = FakeTox(self.new_link(0), self.new_link(1))
        self.payloads: dict[tuple[int, int, int], bytes] = {}
        self.count = {(0, 0): 0, (1, 0): 0}
        self.got: list[list[list[tuple[int, int, int]]]] = [[[]], [[]]]
        self.net.connect()

    def new_link(self, side: int) -> Link:
        sid = TAG.pack(side + 1, self.inc[side], 0)[:5] + bytes(11)
        link = Link(sid, window=self.windows[side], in_flight=self.in_flight)
        self.all_links.append(link)
        return link

    def restart(self, side: int) -> None:
        self.inc[side] += 1
        self.count[(side, self.inc[side])] = 0
        self.got[side].append([])
        self.net.links[side] = self.new_link(side)
        self.net.lost = [[], []]  # the dead process's packets cannot arrive any more

    def take(self, side: int, limit: int | None = None) -> None:
        link, n = self.net.links[side], 0
        while (limit is None or n < limit) and (frame := link.next_frame()) is not None:
            tag = TAG.unpack_from(frame)
            assert self.payloads[tag] == frame
            self.got[side][-1].append(tag)
            n += 1

    @rule(side=SIDES, sizes=st.lists(st.integers(min_value=13, max_value=1024), max_size=30),
          repeat=st.integers(min_value=1, max_value=8))  # fmt: skip
    def app_writes(self, side: int, sizes: list[int], repeat: int) -> None:
        link = self.net.links[side]
        for size in sizes * repeat:
            if not link.can_send_frame(size):
                break
            key = (side, self.inc[side])
            tag = TAG.pack(side, self.inc[side], self.count[key])
            payload = (tag * (size // len(tag) + 1))[:size]
            self.payloads[TAG.unpack(tag)] = payload
            self.count[key] += 1
            link.send_frame(payload)

    @rule(side=SIDES, budget=st.none() | st.integers(min_value=0, max_value=12),
          flush=st.booleans())  # fmt: skip
    def loop_turn_sends(self, side: int, budget: int | None, flush: bool) -> None:
        self.net.pump(side, budget, flush=flush)

    @rule(side=SIDES, count=st.integers(min_value=1, max_value=40))
    def packets_arrive(self, side: int, count: int) -> None:
        self.net.deliver(side, count)

    @rule(rounds=st.integers(min_value=1, max_value=5), read=st.booleans())
    def busy_loop_turns(self, rounds: int, read: bool) -> None:
        for _ in range(rounds):
            for side in (0, 1):
                self.net.pump(side, flush=True)
                self.net.deliver(side)
                if read:
                    self.take(side)

    @rule(side=SIDES, count=st.integers(min_value=0, max_value=40))
    def app_reads(self, side: int, count: int) -> None:
        self.take(side, count)

    @precondition(lambda self: self.net.up)
    @rule(keep_ab=st.integers(min_value=0, max_value=20),
          keep_ba=st.integers(min_value=0, max_value=20))  # fmt: skip
    def connection_drops(self, keep_ab: int, keep_ba: int) -> None:
        self.net.disconnect((keep_ab, keep_ba))

    @precondition(lambda self: not self.net.up)
    @rule()
    def connection_returns(self) -> None:
        self.net.connect()

    @precondition(lambda self: self.net.up)
    @rule(side=SIDES)
    def one_side_reconnects_unnoticed(self, side: int) -> None:
        self.net.drop_inflight()
        self.net.links[side].connection_lost()
        self.net.made(side)

    @precondition(lambda self: self.net.up and (self.net.lost[0] or self.net.lost[1]))
    @rule(side=SIDES, start=st.integers(min_value=0, max_value=50),
          count=st.integers(min_value=1, max_value=20), now=st.booleans())  # fmt: skip
    def written_off_packets_arrive_after_a_stall(
        self, side: int, start: int, count: int, now: bool
    ) -> None:
        self.net.deliver_late(side, start, count, now=now)

    @precondition(lambda self: self.net.up)
    @rule(side=SIDES, keep=st.integers(min_value=0, max_value=20))
    def sender_gives_up_on_a_stalled_peer(self, side: int, keep: int) -> None:
        """Side's toxcore timed out and reconnects; the stalled peer noticed nothing and still
        gets the first ``keep`` packets side had written off, before the new HELLO."""
        written_off = self.net.inflight[side]
        self.net.lost[side].extend(list(written_off)[keep:])
        self.net.inflight[side] = deque(list(written_off)[:keep])
        self.net.drop_inflight(1 - side)  # the peer's packets to the old connection
        self.net.links[side].connection_lost()
        self.net.made(side)

    @rule(side=SIDES, noticed=st.booleans())
    def daemon_restarts(self, side: int, noticed: bool) -> None:
        if noticed or not self.net.up:
            if self.net.up:
                self.net.disconnect()
            self.restart(side)
        else:  # toxcore replaced the connection: the peer saw no disconnect
            self.net.inflight = [deque(), deque()]
            self.restart(side)
            self.net.made(side)

    @invariant()
    def memory_is_bounded(self) -> None:
        for link in self.net.links:
            assert link.unacked_bytes <= link.window
            # One window, plus one of frames from the peer's previous session.
            restarts = link.statistics().peer_restarts
            assert link.buffered_bytes <= link.window * (2 if restarts else 1)

    def teardown(self) -> None:
        if not hasattr(self, "net"):
            return
        if not self.net.up:
            self.net.connect()
        for _ in range(10_000):
            self.net.settle()
            self.take(0)
            self.take(1)
            if not any(link.pending_frames or link.unsent_bytes for link in self.net.links):
                self.net.settle()
                break
        for side in (0, 1):
            self.check_direction(sender=side, receiver=1 - side)
        # What the schedule exercised (shown by --hypothesis-show-statistics).
        if currently_in_test_context():
            for name in COVERAGE:
                if any(getattr(link.statistics(), name) for link in self.all_links):
                    event(name)

    def check_direction(self, sender: int, receiver: int) -> None:
        """Order kept, no gaps; duplicates only across a restart of the receiver; the live
        sender's frames all arrived."""
        seen_max: dict[int, int] = {}
        for incarnation_got in self.got[receiver]:
            last: dict[int, int] = {}
            current = -1
            for side, inc, idx in incarnation_got:
                if side != sender:
                    continue
                assert inc >= current, "frames of a dead sender after its successor's"
                current = inc
                if inc in last:
                    assert idx == last[inc] + 1, f"lost or repeated frame: {last[inc]} -> {idx}"
                else:
                    assert idx <= seen_max.get(inc, -1) + 1, "frames lost across a restart"
                last[inc] = idx
                seen_max[inc] = max(seen_max.get(inc, -1), idx)
        live = self.inc[sender]
        assert seen_max.get(live, -1) == self.count[(sender, live)] - 1, "frames not delivered"


TestLinkSchedules = LinkSchedules.TestCase
TestLinkSchedules.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip


SIZES = st.lists(st.integers(min_value=13, max_value=1024), min_size=1, max_size=30)
COUNTS = st.integers(min_value=0, max_value=40)
TRAFFIC = [
    st.tuples(st.just("app_writes"), SIDES, SIZES, st.integers(min_value=1, max_value=8)),
    st.tuples(st.just("loop_turn_sends"), SIDES, st.none() | COUNTS, st.booleans()),
    st.tuples(st.just("packets_arrive"), SIDES, COUNTS),
    st.tuples(st.just("app_reads"), SIDES, COUNTS),
    st.tuples(st.just("busy_loop_turns"), st.integers(min_value=1, max_value=3), st.booleans()),
]
TROUBLE = [
    st.tuples(st.just("connection_drops"), COUNTS, COUNTS),
    st.tuples(st.just("connection_returns")),
    st.tuples(st.just("one_side_reconnects_unnoticed"), SIDES),
    st.tuples(st.just("sender_gives_up_on_a_stalled_peer"), SIDES, COUNTS),
    st.tuples(
        st.just("written_off_packets_arrive_after_a_stall"), SIDES, COUNTS, COUNTS, st.booleans()
    ),
]
RESTART = st.tuples(st.just("daemon_restarts"), SIDES, st.booleans())
# Mostly traffic, so that the channel is open and busy when trouble strikes.
OPERATIONS = st.sampled_from([0] * 6 + [1] * 3 + [2]).flatmap(
    lambda k: (st.one_of(*TRAFFIC), st.one_of(*TROUBLE), RESTART)[k]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    windows=st.tuples(*[st.sampled_from([MIN_WINDOW, 3 * MIN_WINDOW, 64 * 1024])] * 2),
    schedule=st.lists(OPERATIONS, min_size=30, max_size=150),
)
def test_long_schedules_deliver_every_frame_exactly_once_in_order(
    windows: tuple[int, int], schedule: list[tuple]
) -> None:
    replay(windows, schedule)


def random_schedule(seed: int, steps: int) -> tuple[tuple[int, int], list[tuple]]:
    """Windows and a long random schedule, with the odds tuned for trouble."""
    rng = random.Random(seed)
    windows = [MIN_WINDOW, 3 * MIN_WINDOW, 64 * 1024]
    side = lambda: rng.randint(0, 1)
    ops: list[tuple] = []
    for _ in range(steps):
        r = rng.random()
        if r < 0.15:
            sizes = [rng.choice([13, 100, 1000, 1024, rng.randint(13, 1024)]) for _ in range(10)]
            ops.append(("app_writes", side(), sizes, rng.randint(1, 4)))
        elif r < 0.35:
            budget = rng.choice([None, rng.randint(0, 10)])
            ops.append(("loop_turn_sends", side(), budget, rng.random() < 0.5))
        elif r < 0.55:
            ops.append(("packets_arrive", side(), rng.randint(1, 30)))
        elif r < 0.65:
            ops.append(("app_reads", side(), rng.randint(0, 30)))
        elif r < 0.75:
            ops.append(("busy_loop_turns", rng.randint(1, 3), rng.random() < 0.7))
        elif r < 0.82:
            ops.append(("connection_drops", rng.randint(0, 10), rng.randint(0, 10)))
            ops.append(("connection_returns",))
        elif r < 0.84:
            ops.append(("one_side_reconnects_unnoticed", side()))
        elif r < 0.87:
            ops.append(("sender_gives_up_on_a_stalled_peer", side(), rng.randint(0, 30)))
        elif r < 0.98:
            ops.append(("written_off_packets_arrive_after_a_stall", side(), rng.randint(0, 50),
                        rng.randint(1, 10), rng.random() < 0.5))  # fmt: skip
        else:
            ops.append(("daemon_restarts", side(), rng.random() < 0.5))
    return (rng.choice(windows), rng.choice(windows)), ops


def replay(windows: tuple[int, int], schedule: list[tuple]) -> LinkSchedules:
    """Run a schedule (skipping steps whose precondition fails), then check everything."""
    machine = LinkSchedules()
    machine.start(*windows)
    for name, *args in schedule:
        up, lost = machine.net.up, machine.net.lost[0] or machine.net.lost[1]
        if name == "connection_returns" and up:
            continue
        if name in ("connection_drops", "one_side_reconnects_unnoticed",
                    "sender_gives_up_on_a_stalled_peer") and not up:  # fmt: skip
            continue
        if name == "written_off_packets_arrive_after_a_stall" and not (up and lost):
            continue
        getattr(machine, name)(*args)
        machine.memory_is_bounded()
    machine.teardown()
    return machine


def test_random_long_runs_deliver_every_frame_and_cover_every_recovery_path() -> None:
    covered: set[str] = set()
    for seed in range(100):
        try:
            machine = replay(*random_schedule(seed, steps=400))
        except Exception as exc:
            raise AssertionError(f"replay(*random_schedule({seed}, 400)) failed") from exc
        for link in machine.all_links:
            stats = link.statistics()
            covered |= {name for name in COVERAGE if getattr(stats, name)}
    assert covered == set(COVERAGE)


COVERAGE = ("resync_packets_sent", "gap_packets", "duplicate_bytes", "bytes_resent",
            "peer_restarts", "packets_ignored", "ack_packets_sent")  # fmt: skip


# -- throughput (not a test): python3 -m tests.test_link [MB] ------------------------------


def measure(megabytes: int = 200, size: int = 1024) -> float:
    """Push ``megabytes`` through two in-memory Links; return MB per CPU second."""
    a, b = Link(os.urandom(16)), Link(os.urandom(16))
    a.connection_made()
    b.connection_made()
    payload = os.urandom(size)
    frames = megabytes * 1_000_000 // size
    sent = got = 0
    start = time.process_time()
    while got < frames:
        while sent < frames and a.can_send_frame(size):
            a.send_frame(payload)
            sent += 1
        for src, dst in ((a, b), (b, a)):
            while (packet := src.next_packet(flush=True)) is not None:
                dst.receive_packet(packet)
        while b.next_frame() is not None:
            got += 1
    seconds = time.process_time() - start
    rate = frames * size / seconds / 1e6
    packets = a.statistics().data_packets_sent
    print(f"{frames * size / 1e6:.0f} MB of {size}-byte frames in {seconds:.2f} s CPU: "
          f"{rate:.0f} MB/s ({packets / seconds:.0f} DATA packets/s)")  # fmt: skip
    return rate


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 200)


# -- the transport offer (HELLO_TRANSPORT) and its epochs ----------------------------------


def test_the_transport_is_agreed_only_when_both_offer_it_and_lifts_the_in_flight_cap() -> None:
    for ours, theirs in ((True, True), (True, False), (False, True)):
        a = Link(SID_A, window=1024 * 1024, transport=ours)
        a.connection_made()
        assert a.next_packet()[4] == (HELLO_TRANSPORT if ours else 0)
        a.receive_packet(hello(SID_B, SID_A, transport=theirs, epoch=7, window=1024 * 1024))
        assert a.state is LinkState.OPEN
        assert a.transport_agreed == (ours and theirs) and a.peer_transport_epoch == 7
        sent = 0
        for _ in range(10_000):  # no acks come: what goes is what the limit lets out
            while a.can_send_frame(1000):
                a.send_frame(bytes(1000))
            p = a.next_packet()
            if p is None:
                break
            sent += len(p) - DATA_HEADER_SIZE if ptype(p) == PacketType.DATA else 0
        # without the transport: DEFAULT_IN_FLIGHT past the ack; with it: the window
        if ours and theirs:
            assert 1024 * 1024 - MAX_CHUNK < sent <= 1024 * 1024
        else:
            assert sent == DEFAULT_IN_FLIGHT
        a.connection_lost()
        assert not a.transport_agreed and a.peer_transport_epoch is None


def test_a_new_connection_or_an_unseen_peer_reconnect_starts_a_new_transport_epoch() -> None:
    a = Link(SID_A, window=65536, transport=True)
    a.connection_made()
    assert a.transport_epoch == 1 and a.next_packet()[-1] == 1
    a.receive_packet(hello(SID_B, SID_A, transport=True))  # a request: opens, answered
    assert a.transport_epoch == 1  # nothing went over the transport before the channel opened
    assert a.next_packet() == hello(SID_A, SID_B, reply=True, transport=True, epoch=1)
    a.receive_packet(hello(SID_B, SID_A, reply=True, transport=True))
    assert a.transport_epoch == 1  # a reply changes nothing
    a.receive_packet(hello(SID_B, SID_A, transport=True, epoch=9))  # we missed a disconnect
    assert a.transport_epoch == 2 and a.peer_transport_epoch == 9
    a.connection_lost()
    a.connection_made()
    assert a.transport_epoch == 3
