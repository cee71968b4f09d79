"""toxbridge.linkpath without toxcore: two Links and their paths joined by an in-memory wire
(lossless in order; lossy packets that a test may hold back and replay), to show what the
epochs do: packets of a dead incarnation are dropped, and across a reconnect every frame
arrives once, in order. (That real toxcore carries it: tests/test_linkpath.py.)"""

from __future__ import annotations

from collections import deque

import pytest

from toxbridge.errors import RemoteProtocolError
from toxbridge.link import Link, LinkState
from toxbridge.linkpath import (MIN_UNSENT, RELAY_FLIGHT, RELAY_HOLD_S, LinkPath, share_relay,
                               unsent_limit)
from toxbridge.peerio import LINK_FRAME, PeerIO
from toxbridge.toxloop import FrameQueue
from toxbridge.transport import MAX_PAYLOAD, Endpoint
from toxbridge.transport.pacer import Pacer

SID_A, SID_B = bytes(range(1, 17)), bytes(range(101, 117))


class Wire:
    """Stands in for a Tox on each side: what one side sends, the other receives."""

    def __init__(self) -> None:
        self.lossless: list[deque[bytes]] = [deque(), deque()]  # to side 0, to side 1
        self.lossy: list[deque[bytes]] = [deque(), deque()]
        self.hold: list[bytes] | None = None  # lossy packets to side 1 kept back, if set

    def side(self, i: int) -> _Side:
        return _Side(self, 1 - i)


class _Side:
    def __init__(self, wire: Wire, to: int) -> None:
        self.wire, self.to = wire, to

    def try_send_lossless_packet(self, friend: int, packet: bytes) -> bool:
        self.wire.lossless[self.to].append(packet)
        return True

    def try_send_lossy_packet(self, friend: int, packet: bytes) -> bool:
        if self.to == 1 and self.wire.hold is not None:
            self.wire.hold.append(packet)
        else:
            self.wire.lossy[self.to].append(packet)
        return True


def step(wire: Wire, paths: list[LinkPath], got: list[bytes], now: float,
         got_b: list[bytes] | None = None) -> None:
    """One loop turn of both sides; frames arriving go to ``got`` (B's to ``got_b`` if
    given, else to ``got`` too)."""
    for i, path in enumerate(paths):
        while wire.lossless[i]:
            path.link.receive_packet(wire.lossless[i].popleft())
        while wire.lossy[i]:
            path.receive_lossy(wire.lossy[i].popleft(), now)
        path.deliver()
        if i == 0 and getattr(wire, "sender", None) is path and path.statistics().send_in_flight == 0:
            wire.new_flight = True
        (got if i == 0 or got_b is None else got_b).extend(iter(path.link.next_frame, None))
        path.send(wire.side(i), 0, now, flush=True, data=True)


def test_stale_transport_packets_are_dropped_and_a_reconnect_loses_nothing() -> None:
    wire = Wire()
    a, b = Link(SID_A, transport=True), Link(SID_B, transport=True)
    paths = [LinkPath(a), LinkPath(b)]
    frames = [bytes([i % 256]) * (1 + i % 1000) for i in range(3000)]
    for link in (a, b):
        link.connection_made()
    got: list[bytes] = []
    now, queued = 0.0, 0

    def run(steps: int) -> None:
        nonlocal now, queued
        for _ in range(steps):
            while queued < len(frames) and a.can_send_frame(len(frames[queued])):
                a.send_frame(frames[queued])
                queued += 1
            now += 0.001
            step(wire, paths, got, now)

    run(50)
    assert a.state is b.state is LinkState.OPEN and paths[0].active and paths[1].active
    assert got and paths[1].statistics().lossy_received[200] > 0
    wire.hold = []  # A's lossy packets now stay "in flight" ...
    run(20)
    held, wire.hold = wire.hold, None
    assert held
    for link in (a, b):  # ... when the friend connection drops and comes back
        link.connection_lost()
    run(1)
    for link in (a, b):
        link.connection_made()
    run(20)
    assert a.state is b.state is LinkState.OPEN
    before = paths[1].statistics().stale_dropped
    for packet in held:  # the old incarnation's packets arrive late
        paths[1].receive_lossy(packet, now)
    assert paths[1].statistics().stale_dropped - before == len(held)
    for _ in range(100_000):
        if len(got) == len(frames):
            break
        run(1)
    assert got == frames  # each frame once, in order
    assert paths[0].statistics().epochs == paths[1].statistics().epochs == 4  # 2 per connection


def test_a_malformed_transport_packet_raises_once_then_lossy_packets_are_ignored() -> None:
    wire = Wire()
    a, b = Link(SID_A, transport=True), Link(SID_B, transport=True)
    paths = [LinkPath(a), LinkPath(b)]
    for link in (a, b):
        link.connection_made()
    for i in range(20):
        step(wire, paths, [], i * 0.001)
    assert paths[1].active
    bad = bytes([200, paths[1]._recv_epoch]) + bytes(5)  # a DATA packet too short
    with pytest.raises(RemoteProtocolError):
        paths[1].receive_lossy(bad, 1.0)
    paths[1].receive_lossy(bad, 1.0)  # deaf now: no error per packet
    assert paths[1].error is not None


def test_a_restarted_peer_whose_first_epoch_equals_its_predecessors_gets_a_fresh_transport() -> None:
    # A new daemon numbers its epochs from the start again, so its first transport has the
    # epoch of its predecessor's first: without the peer's session in the incarnation, A
    # kept the old transport and dropped B's packets (numbered from 0) as duplicates.
    wire = Wire()
    a, b = Link(SID_A, transport=True), Link(SID_B, transport=True)
    paths = [LinkPath(a), LinkPath(b)]
    for link in (a, b):
        link.connection_made()
    got_a: list[bytes] = []
    now = 0.0

    def run(steps: int, got_b: list[bytes]) -> None:
        nonlocal now
        for _ in range(steps):
            now += 0.001
            step(wire, paths, got_a, now, got_b)

    old: list[bytes] = []
    for i in range(50):
        b.send_frame(b"old %d" % i)
    run(50, old)
    assert got_a == [b"old %d" % i for i in range(50)]
    first_epoch = b.transport_epoch
    # B's daemon dies (kill -9: nothing more from it) and a new one starts with a new session
    for queue in (*wire.lossless, *wire.lossy):
        queue.clear()
    b = Link(bytes(range(201, 217)), transport=True)
    paths[1] = LinkPath(b)
    b.connection_made()
    assert b.transport_epoch == first_epoch  # the same number, another incarnation
    for i in range(50):
        b.send_frame(b"new %d" % i)
    fresh: list[bytes] = []
    run(200, fresh)
    assert got_a[50:] == [b"new %d" % i for i in range(50)]


class SlowWire(Wire):
    """A Wire whose lossy packets arrive ``delay`` s after they were sent and, towards side
    1, leave a bottleneck of ``rate`` bytes/s first: a path with a round trip and a queue
    (``queued``: the bytes waiting in it), so that a window can outgrow the path."""

    def __init__(self, delay: float, rate: float = 2e6) -> None:
        super().__init__()
        self.delay, self.rate, self.now = delay, rate, 0.0
        self.free_at = 0.0  # when the bottleneck has sent all it holds
        self.transit: list[deque[tuple[float, bytes]]] = [deque(), deque()]
        self.sender: LinkPath | None = None  # side 0's path, if set: its flights are counted
        self.new_flight = True  # side 0 had nothing in flight when it last got to send
        self.flight = 0  # DATA bytes towards side 1 since side 0 had nothing in flight
        self.most_flight = 0
        self.flights = 0
        self.data_sent = 0  # DATA bytes towards side 1, all told

    def side(self, i: int) -> _SlowSide:
        return _SlowSide(self, 1 - i)

    @property
    def queued(self) -> float:
        return max(0.0, self.free_at - self.now) * self.rate

    def arrive(self, now: float) -> None:
        self.now = now
        for to in (0, 1):
            q = self.transit[to]
            while q and q[0][0] <= now:
                self.lossy[to].append(q.popleft()[1])


class _SlowSide(_Side):
    def try_send_lossy_packet(self, friend: int, packet: bytes) -> bool:
        wire = self.wire
        due = wire.now + wire.delay
        if self.to == 1:
            wire.free_at = max(wire.free_at, wire.now) + len(packet) / wire.rate
            due = wire.free_at + wire.delay
            if wire.sender is not None and packet[0] == 200:  # DATA
                if wire.new_flight:
                    wire.new_flight = False
                    wire.flight = 0
                    wire.flights += 1
                wire.flight += len(packet) - 1  # less the epoch byte: the transport's size
                wire.data_sent += len(packet) - 1
                wire.most_flight = max(wire.most_flight, wire.flight)
        wire.transit[self.to].append((due, packet))
        return True


def open_pair() -> tuple[Link, list[LinkPath]]:
    """A's Link and the paths of A and B, connected (each Link offers the transport)."""
    a, b = Link(SID_A, transport=True), Link(SID_B, transport=True)
    for link in (a, b):
        link.connection_made()
    return a, [LinkPath(a), LinkPath(b)]


@pytest.mark.parametrize("links, delay", [
    (("UDP",), 0.02),
    (("TCP",), 0.02),
    (("TCP", "UDP"), 0.02),  # toxcore moves the friend to direct UDP halfway: no more flights
    (("TCP",), 0.001),
])
def test_over_a_tcp_relay_the_transport_sends_flights_of_at_most_relay_flight(links, delay) -> None:
    # toxbridge.linkpath.RELAY_FLIGHT says why: a relay's socket can wedge while our bytes
    # keep arriving. The wire: 8 MB/s and a round trip of 2 x delay (40 ms holds 320 kB;
    # 2 ms holds 16 kB). A flight is RELAY_FLIGHT x the round trip over the relay's hold
    # where that is more than 1: 4/3 at 40 ms, 1 at 2 ms.
    wire = SlowWire(delay=delay, rate=8e6)
    a, paths = open_pair()
    wire.sender = paths[0]
    frames = [bytes([i % 256]) * 1000 for i in range(4000)]  # 4 MB
    paths[0].relayed = links[0] == "TCP"  # before the first transport exists: it gets it
    got: list[bytes] = []
    now, queued = 0.0, 0
    most = {link: 0 for link in links}
    flights = {link: 0 for link in links}
    for _ in range(20_000):
        if len(got) == len(frames):
            break
        link = links[0] if len(got) < len(frames) // 2 else links[-1]
        if paths[0].relayed != (link == "TCP"):
            paths[0].relayed = link == "TCP"
            wire.most_flight = wire.flights = 0
        while queued < len(frames) and a.can_send_frame(len(frames[queued])):
            a.send_frame(frames[queued])
            queued += 1
        now += 0.001
        wire.arrive(now)
        step(wire, paths, got, now)
        most[link] = max(most[link], wire.most_flight)
        flights[link] = wire.flights
    assert got == frames
    took = now
    packet = MAX_PAYLOAD + 64
    flight = RELAY_FLIGHT * max(1.0, 2 * delay / RELAY_HOLD_S)
    if "TCP" in most:
        # the packet that makes a flight whole may go past the limit, nothing after it (the
        # least round trip is the wire's and the ack delay's)
        assert RELAY_FLIGHT * 0.9 < most["TCP"] <= flight * 1.1 + packet
        assert flights["TCP"] >= 2e6 / (flight * 1.1 + packet)  # every byte went in a flight
    if "UDP" in most:
        assert most["UDP"] > 8 * RELAY_FLIGHT  # the stream flows on: one flight, never empty
        assert flights["UDP"] <= 3
    # a relay's flight takes its bytes at the wire's rate, then a round trip and the ack delay
    relay_rate = flight / (flight / 8e6 + 2 * delay + 0.010)
    expected = sum(2e6 / (relay_rate if link == "TCP" else 8e6) for link in (links[0], links[-1]))
    assert took < expected * 1.6  # the path stays as full as the flights let it, startup included


def test_relayed_paths_with_data_to_move_split_the_relay_flight() -> None:
    # A hub's spokes may all sit behind the one relay connection it has: their flights
    # together send at most RELAY_FLIGHT (toxbridge.linkpath.share_relay)
    hub = [Link(SID_A, transport=True) for _ in range(3)]
    spokes = [Link(SID_B, transport=True) for _ in range(3)]
    pairs = [[LinkPath(h), LinkPath(s)] for h, s in zip(hub, spokes)]
    wires = [SlowWire(delay=0.02, rate=8e6) for _ in pairs]
    for link in hub + spokes:
        link.connection_made()
    for paths, w in zip(pairs, wires):
        paths[0].relayed = True
        w.sender = paths[0]
    direct = LinkPath(Link(SID_A, transport=True))  # a friend on UDP takes no share
    frames = [bytes([i % 256]) * 1000 for i in range(1500)]
    got: list[list[bytes]] = [[] for _ in pairs]
    queued = [0] * len(pairs)
    now, most = 0.0, 0
    together = since = most_together = 0  # the hub's bytes since none of its paths had any in flight
    for _ in range(20_000):
        if all(len(g) == len(frames) for g in got):
            break
        sent = sum(w.data_sent for w in wires)
        if all(p[0].statistics().send_in_flight == 0 for p in pairs):
            since, together = sent, together + 1
        most_together = max(most_together, sent - since)
        share_relay([p[0] for p in pairs] + [direct])
        for i, (paths, w) in enumerate(zip(pairs, wires)):
            while queued[i] < len(frames) and hub[i].can_send_frame(len(frames[queued[i]])):
                hub[i].send_frame(frames[queued[i]])
                queued[i] += 1
            w.arrive(now + 0.001)
            step(w, paths, got[i], now + 0.001)
        now += 0.001
        most = max(most, sum(w.queued for w in wires))
    assert got == [frames] * len(pairs)
    packet = MAX_PAYLOAD + 64
    for w in wires:
        # the first flight starts before the split (share_relay sees no data until then);
        # then each its third, x 4/3 for the 40 ms round trip
        assert w.most_flight <= RELAY_FLIGHT * 4 / 3 * 1.1 + packet
        assert w.flights > 1.5e6 / (RELAY_FLIGHT / len(pairs) * 4 / 3 * 1.1 + packet)
    assert most < RELAY_FLIGHT + len(pairs) * packet
    # the flights start together, so the relay connection they share pauses after each
    assert most_together <= RELAY_FLIGHT * 4 / 3 * 1.1 + len(pairs) * packet
    assert together > 4.5e6 / (RELAY_FLIGHT * 4 / 3 * 1.1 + len(pairs) * packet)
    assert direct.share == RELAY_FLIGHT and not direct.relayed


@pytest.mark.parametrize("rate, tokens_used, in_flight, expected", [
    (6.25e6, 0, 0, 12_500),  # a full bucket: 2 ms of the rate
    (6.25e6, 12_500, 0, MIN_UNSENT),  # this turn's allowance spent: one packet
    (1e6, 0, 0, 2 * 1373),  # a slow path: the bucket's two packets
    (50e6, 0, 0, 32 * 1373),  # a fast one: the window's room (its first 32 packets)
    (50e6, 0, 30 * 1373, 2 * 1373),  # ... and what is left of it
    (50e6, 0, 32 * 1373, MIN_UNSENT),  # a full window: one packet
])
def test_the_unsent_bound_is_what_could_go_at_once(rate, tokens_used, in_flight,
                                                   expected) -> None:
    ep = Endpoint(max_payload=MAX_PAYLOAD - 1)
    ep.pacer = Pacer(rate)  # its bucket starts full: 2 ms of the rate, at least 2 packets
    ep.pacer.allowance(1.0)
    if tokens_used:
        ep.pacer.on_sent(tokens_used, 1.0)
    ep.recovery.bytes_in_flight = in_flight
    assert unsent_limit(ep, 1.0) == pytest.approx(expected)
    # A long turn (8 ms) earns the pacer that much at once: the bound covers it.
    if rate == 6.25e6 and not tokens_used:
        assert unsent_limit(ep, 1.008) == min(0.008 * rate, ep.cc.window()) == ep.cc.window()


def test_on_a_paced_path_only_what_can_go_at_once_waits_below_the_scheduler() -> None:
    # 3 MB/s, 40 ms round trip: the pacer holds the flow at the path's rate. What waits
    # unsent in our transport after a turn (where a chat frame would wait behind it) is
    # less than a packet, where a 64 KiB bound held 22 ms and 2 ms ahead of the pacer 4
    # packets; the path stays full.
    wire = SlowWire(delay=0.02, rate=3e6)
    a, paths = open_pair()
    frames = [bytes([i % 256]) * 1000 for i in range(4500)]  # 4.5 MB
    got: list[bytes] = []
    now, queued, standing = 0.0, 0, []
    for _ in range(20_000):
        if len(got) == len(frames):
            break
        while queued < len(frames) and a.can_send_frame(len(frames[queued])):
            a.send_frame(frames[queued])
            queued += 1
        now += 0.001
        wire.arrive(now)
        step(wire, paths, got, now)
        trace = paths[0].trace()  # past startup (it paces at 2.9 x), while the app has more
        if trace and trace["state"] == "probe_bw" and queued < len(frames):
            standing.append(trace["unsent"])
    assert got == frames
    assert standing and max(standing) < MIN_UNSENT
    assert now < 4.5e6 / 3e6 * 1.3  # startup included


def test_the_link_holds_for_the_transport_only_what_the_transport_would_take() -> None:
    # The Link's unsent bytes wait below the mux's priorities as the transport's do, so a
    # chat frame waits behind both: on a paced path (1 MB/s) they are bounded together by
    # the transport's few ms (LinkPath.room), where the Link alone had held 4 KiB more.
    wire = SlowWire(delay=0.02, rate=1e6)
    links = [Link(sid, transport=True, max_frame=LINK_FRAME) for sid in (SID_A, SID_B)]
    keys = (bytes(31) + b"\x01", bytes(31) + b"\x02")
    ios = [PeerIO(link, keys[i], keys[1 - i], report=lambda c, m: None)
           for i, link in enumerate(links)]
    paths = [LinkPath(link) for link in links]
    for link in links:
        link.connection_made()
    out, inbound = FrameQueue(64), FrameQueue(64)
    frames = [bytes([i % 256]) * 1000 for i in range(1500)]  # 1.5 MB over the channel
    sent = got = 0
    now, staged = 0.0, []
    for _ in range(10_000):
        if got == len(frames):
            break
        while sent < len(frames) and out.put_nowait(frames[sent]):
            sent += 1
        now += 0.001
        wire.arrive(now)
        for i, (io, path) in enumerate(zip(ios, paths)):
            while wire.lossless[i]:
                path.link.receive_packet(wire.lossless[i].popleft())
            while wire.lossy[i]:
                path.receive_lossy(wire.lossy[i].popleft(), now)
            path.deliver()
            io.take_link_frames()
            if i == 1:
                io.deliver(inbound, 64)
                got += sum(len(r) for r in inbound.take(64)) // 1003
            for _ in range(16):  # as PeerSlot.pump_out
                room = path.room(now)
                filled = io.fill(out if i == 0 else FrameQueue(1), 4096 if room is None else min(room, 4096))
                path.send(wire.side(i), 0, now, flush=True, data=True)
                if not filled:
                    break
            ep = paths[0]._send_ep
            if i == 0 and ep is not None and paths[0].active:
                if ep.unsent_bytes >= unsent_limit(ep, now):  # the transport is full
                    staged.append(links[0].unsent_bytes)
    assert got == len(frames)
    # while the transport holds what it would take, the Link stages one mux frame at
    # most (its length prefixes included), not the 4 KiB it had staged on its own
    assert len(staged) > 500 and max(staged) <= 1024 + 2 + 2
    assert now < 1.5 * 1.3 + 0.5  # the path stays full: 1 MB/s
