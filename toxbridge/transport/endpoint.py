"""One end of the transport: a reliable, ordered byte stream each way over unreliable
datagrams (toxcore lossy custom packets of at most 1373 bytes), sans-IO.

The shell loop: ``receive_datagram(packet, now)`` for every packet from the peer;
``handle_timer(now)`` once ``now >= timeout()``; ``send(data)`` while it takes bytes;
``receive()`` for what arrived in order; then ``datagrams_to_send(now)``, each to
``tox_friend_send_lossy_packet``. A lossy packet that toxcore refuses is simply lost (the
transport resends it). Sending: new stream bytes are cut into DATA packets of up to 1356
bytes; each packet gets the next packet number; lost ranges are resent first, each in a
new packet. Receiving: the receiver acks every ``ack_every`` DATA packets, at once on a gap
or a duplicate, else within ``max_ack_delay``; an ACK carries the packet ranges received
(newest first), the stream offset below which every byte arrived, and the flow-control
limit (what the app has read plus ``window``).
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from dataclasses import dataclass

from ..errors import RemoteProtocolError
from .congestion import BbrController
from .pacer import Pacer
from .recovery import MAX_TRACKED, Recovery
from .rtt import RttEstimator
from .wire import (ACK_ID, DATA_HEADER, DATA_ID, MAX_ACK_RANGES, MAX_DATAGRAM, MAX_PAYLOAD,
                   encode_ack, parse_ack)

DEFAULT_WINDOW = 16 * 1024 * 1024  # receive window: > 2 BDP at 25 MB/s and 150 ms (7.5 MB)
DEFAULT_SEND_BUFFER = 16 * 1024 * 1024  # unacked plus not yet sent stream bytes
DEFAULT_MAX_ACK_DELAY = 0.010  # s: short, as the probe timeout and RTT samples include it
BLOCKED_PING_MAX = 1.0  # s: the longest wait for a lost window update
# Endpoint.stops: the window was full, the pacer said wait, the app had given nothing more,
# the peer's flow-control limit, the ring of tracked packets was full
STOPS = ("cwnd", "pacer", "app", "flow", "ring")
_CWND, _PACER, _APP, _FLOW, _RING = range(len(STOPS))
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    packets_sent: int  # DATA packets, resends and probes included
    packets_received: int  # DATA packets, duplicates included
    acks_sent: int
    acks_received: int
    bytes_sent: int  # stream bytes in DATA packets, resends included
    bytes_resent: int
    bytes_delivered: int  # stream bytes received in order (the app may not have read them)
    duplicate_packets: int
    packets_lost: int  # declared lost by the sender
    probes_sent: int
    bytes_in_flight: int
    cwnd: int
    pacing_rate_Bps: float
    srtt_s: float
    min_rtt_s: float | None
    state: str


class Endpoint:
    """``window``: the most stream bytes this end buffers for its app (advertised to the
    peer); ``peer_window``: the peer's, as agreed out of band (the Link's HELLO), the
    limit until its first ACK raises it. ``send_buffer`` bounds what ``send`` takes.
    ``max_payload``: stream bytes per DATA packet (less than MAX_PAYLOAD leaves the shell
    room for bytes of its own in each packet)."""

    def __init__(self, *, window: int = DEFAULT_WINDOW, peer_window: int = DEFAULT_WINDOW,
                 send_buffer: int = DEFAULT_SEND_BUFFER, ack_every: int = 2,
                 max_ack_delay: float = DEFAULT_MAX_ACK_DELAY, initial_rtt: float = 0.1,
                 max_tracked: int = MAX_TRACKED, max_probe_interval: float | None = None,
                 controller: BbrController | None = None, max_payload: int = MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be 1..{MAX_PAYLOAD}")
        self._max_payload = max_payload
        if window < 4 * MAX_PAYLOAD or peer_window < 4 * MAX_PAYLOAD or send_buffer < MAX_PAYLOAD:
            raise ValueError("windows of at least 4 packets and a send buffer of one")
        if ack_every < 1 or max_ack_delay <= 0:
            raise ValueError("ack_every must be >= 1 and max_ack_delay > 0")
        self.rtt = RttEstimator(initial_rtt)
        self.cc = controller if controller is not None else BbrController(initial_rtt=initial_rtt)
        self.recovery = Recovery(self.rtt, self.cc, max_ack_delay=max_ack_delay,
                                 max_tracked=max_tracked, max_probe_interval=max_probe_interval)
        self.pacer = Pacer(self.cc.pacing_rate)
        # sending
        self._buf = bytearray()  # stream bytes from _base (all before it are acked)
        self._base = 0
        self._next = 0  # the first stream byte never sent
        self._send_buffer = send_buffer
        self._peer_limit = peer_window
        self._resend: deque[tuple[int, int]] = deque()
        self._probes = 0
        self._blocked_pings = 0
        # receiving
        self.window = window
        self._ready = bytearray()  # in order, not read yet: [_read, _received)
        self._read = 0
        self._received = 0
        self._ooo: list[tuple[int, bytes]] = []  # a heap of out-of-order segments
        self._ooo_starts: set[int] = set()
        self._ranges: list[list[int]] = []  # packet numbers received, [low, high] ascending
        self._floor = 0  # the peer's oldest outstanding packet: nothing below it matters
        self._largest_time = 0.0
        self._ack_every = ack_every
        self.max_ack_delay = max_ack_delay
        self._unacked = 0  # DATA packets received since our last ACK
        self._ack_deadline = _INF
        self._ack_now = False
        self._advertised = window
        # counters
        self._packets_sent = self._packets_received = self._acks_sent = 0
        self._acks_received = self._bytes_sent = self._bytes_resent = 0
        self._duplicates = self._probes_sent = 0
        # why each call of datagrams_to_send stopped sending (see STOPS): is the sender
        # held by its window, its pacer, its app or the peer's limit? (a trace reads them)
        self.stops = [0] * len(STOPS)
        self.burst_max = 0  # the most DATA packets one call sent (the trace resets it)

    # -- the app's side ---------------------------------------------------------------

    def send(self, data: bytes) -> int:
        """Queue stream bytes; returns how many were taken (the send buffer is bounded)."""
        room = self._send_buffer - len(self._buf)
        if room <= 0:
            return 0
        taken = data if len(data) <= room else data[:room]
        self._buf += taken
        return len(taken)

    @property
    def send_room(self) -> int:
        return max(0, self._send_buffer - len(self._buf))

    @property
    def unsent_bytes(self) -> int:
        """Stream bytes taken by ``send`` and never transmitted yet."""
        return self._base + len(self._buf) - self._next

    @property
    def can_transmit(self) -> bool:
        """A probe or data (new or to resend) may go now, the peer's limit permitting.
        Data held back by the peer's limit alone does not count: the peer's window update
        arrives as a packet, and the blocked ping is a timer (``timeout``)."""
        return bool(self._probes) or self._has_data()

    @property
    def readable(self) -> int:
        return len(self._ready)

    def receive(self, max_bytes: int | None = None) -> bytes:
        """Stream bytes that arrived in order (at most ``max_bytes``); b"" if none."""
        ready = self._ready
        n = len(ready) if max_bytes is None else min(max_bytes, len(ready))
        if not n:
            return b""
        out = bytes(ready[:n])
        del ready[:n]
        self._read += n
        if self._ranges and self._read + self.window - self._advertised >= self.window // 4:
            self._ack_now = True  # a window update: the peer may be waiting for it
        return out

    # -- the shell's side -------------------------------------------------------------

    def receive_datagram(self, packet: bytes, now: float) -> None:
        """One lossy packet from the peer (its id byte first). RemoteProtocolError if it is
        malformed or breaks the protocol."""
        if not packet:
            raise RemoteProtocolError("empty packet")
        kind = packet[0]
        if kind == DATA_ID:
            self._on_data(packet, now)
        elif kind == ACK_ID:
            self._on_ack(packet, now)
        else:
            raise RemoteProtocolError(f"unknown transport packet id {kind}")

    def timeout(self) -> float | None:
        """When ``handle_timer`` (then ``datagrams_to_send``) must run next; None: only on
        a packet or new data. A time at or before now (``-inf``: an ACK is due) means at
        once."""
        t = self._ack_deadline if self._unacked else _INF
        if self._ack_now:
            return -_INF
        r = self.recovery.timeout()
        if r is not None and r < t:
            t = r
        if self._probes or self._has_data():
            if self.recovery.bytes_in_flight < self.cc.window() and self.recovery.can_send():
                p = self.pacer.ready_at()
                if p < t:
                    t = p
        elif self._blocked():
            t = min(t, self._blocked_ping_at())
        return None if t == _INF else t

    def _blocked(self) -> bool:
        """Data waits, nothing is in flight, and the peer's limit stops it: the peer's
        window update may have been lost, so ping now and then (the ACK repeats it)."""
        return (not self.recovery.outstanding and self._next >= self._peer_limit
                and self._next < self._base + len(self._buf))

    def _blocked_ping_at(self) -> float:
        # doubling from one probe timeout to at most BLOCKED_PING_MAX: the update comes
        # unasked when the peer's app reads, so this is only the lost-update case
        interval = self.recovery.probe_interval() * (1 << min(self._blocked_pings, 10))
        return self.recovery.probe_due_at() - self.recovery.probe_interval() + \
            min(interval, BLOCKED_PING_MAX)

    def handle_timer(self, now: float) -> None:
        lost, probe = self.recovery.on_timeout(now)
        if lost:
            self._resend.extend(lost)
        if probe:
            self._probes = 1
        elif self._blocked() and now >= self._blocked_ping_at():
            self._probes = 1  # a ping while blocked by the peer's limit
            self._blocked_pings += 1

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        if self._ack_now or (self._unacked and now >= self._ack_deadline):
            out.append(self._make_ack(now))
        recovery, cc, pacer = self.recovery, self.cc, self.pacer
        while self._probes:  # probes ignore the window and the pacer
            self._probes -= 1
            self._probes_sent += 1
            if not recovery.can_send():  # a ring full of unanswered packets: drop the oldest
                forgotten = recovery.forget_oldest()
                if forgotten:
                    self._resend.append(forgotten)
            rng = None if recovery.in_blackout else recovery.oldest_outstanding()
            out.append(self._data_packet(now, *rng) if rng else self._ping(now))
        resend, buf = self._resend, self._buf
        header_pack = DATA_HEADER.pack
        sent = 0
        stop = _RING
        while recovery.can_send():
            if recovery.bytes_in_flight >= cc.window():
                stop = _CWND
                break
            if not pacer.can_send(now):
                stop = _PACER
                break
            base = self._base
            if resend:
                offset, length = resend.popleft()
                if offset + length <= base:
                    continue  # acked meanwhile
                if offset < base:
                    length -= base - offset
                    offset = base
                self._bytes_resent += length
            else:
                offset = self._next
                length = min(self._max_payload, base + len(buf) - offset,
                             self._peer_limit - offset)
                if length <= 0:
                    stop = _FLOW
                    if offset >= base + len(buf):
                        stop = _APP
                        if recovery.bytes_in_flight < cc.window():
                            cc.on_app_limited(recovery.bytes_in_flight)
                    break
                self._next = offset + length
            start = offset - base
            pn = recovery.next_pn
            packet = header_pack(DATA_ID, pn, offset, pn - recovery.low) + buf[start:start + length]
            recovery.on_sent(now, len(packet), offset, length)
            pacer.on_sent(len(packet), now)
            self._bytes_sent += length
            self._packets_sent += 1
            sent += 1
            out.append(packet)
        self.stops[stop] += 1
        if sent > self.burst_max:
            self.burst_max = sent
        return out

    def _data_packet(self, now: float, offset: int, length: int) -> bytes:
        start = offset - self._base
        if start < 0:  # acked below it meanwhile
            length += start
            offset, start = self._base, 0
        if length <= 0:
            return self._ping(now)
        pn = self.recovery.next_pn
        packet = DATA_HEADER.pack(DATA_ID, pn, offset, pn - self.recovery.low) + \
            self._buf[start:start + length]
        self.recovery.on_sent(now, len(packet), offset, length)
        self.pacer.on_sent(len(packet), now)
        self._bytes_sent += length
        self._bytes_resent += length
        self._packets_sent += 1
        return packet

    def _ping(self, now: float) -> bytes:
        pn = self.recovery.next_pn
        packet = DATA_HEADER.pack(DATA_ID, pn, self._next, pn - self.recovery.low)
        self.recovery.on_sent(now, len(packet), self._next, 0)
        self._packets_sent += 1
        return packet

    def _has_data(self) -> bool:
        return bool(self._resend) or self._next < min(self._base + len(self._buf), self._peer_limit)

    # -- receiving DATA ---------------------------------------------------------------

    def _on_data(self, packet: bytes, now: float) -> None:
        if len(packet) > MAX_DATAGRAM or len(packet) < DATA_HEADER.size:
            raise RemoteProtocolError(f"bad DATA packet ({len(packet)} bytes)")
        _, pn, offset, span = DATA_HEADER.unpack_from(packet)
        self._packets_received += 1
        if span > pn:
            raise RemoteProtocolError(f"bad DATA packet: floor below packet 0 ({pn} - {span})")
        floor = pn - span
        if floor > self._floor:
            self._raise_floor(floor)
        if not self._record(pn):
            self._duplicates += 1
            self._ack_now = True  # the sender may be probing: tell it what we have
            return
        if pn == self._ranges[-1][1]:
            self._largest_time = now
        self._unacked += 1
        if self._unacked >= self._ack_every:
            self._ack_now = True
        elif self._unacked == 1:
            self._ack_deadline = now + self.max_ack_delay
        length = len(packet) - DATA_HEADER.size
        end = offset + length
        if end > self._read + self.window:
            raise RemoteProtocolError(f"DATA beyond the window ({end} > {self._read + self.window})")
        if not length:
            self._ack_now = True  # a ping
            return
        received = self._received
        if end <= received:
            return
        if offset <= received:
            self._ready += packet[DATA_HEADER.size + received - offset:]
            self._received = end
            if self._ooo:
                self._drain_ooo()
        elif offset not in self._ooo_starts:
            self._ooo_starts.add(offset)
            heapq.heappush(self._ooo, (offset, packet[DATA_HEADER.size:]))

    def _drain_ooo(self) -> None:
        ooo, starts = self._ooo, self._ooo_starts
        while ooo and ooo[0][0] <= self._received:
            offset, payload = heapq.heappop(ooo)
            starts.discard(offset)
            end = offset + len(payload)
            if end > self._received:
                self._ready += payload[self._received - offset:]
                self._received = end

    def _raise_floor(self, floor: int) -> None:
        # the sender is done with every packet below ``floor``: forget those ranges
        self._floor = floor
        ranges = self._ranges
        drop = 0
        while drop < len(ranges) - 1 and ranges[drop][1] < floor:
            drop += 1
        if drop:
            del ranges[:drop]

    def _record(self, pn: int) -> bool:
        """Note packet ``pn`` as received; False if it was already. Tells an out-of-order
        arrival (a gap before it, or it fills one) to ack at once."""
        ranges = self._ranges
        if ranges:
            last = ranges[-1]
            if pn == last[1] + 1:
                last[1] = pn
                return True
            if last[0] <= pn <= last[1] or pn < self._floor:
                return False
        self._ack_now = True
        i = bisect.bisect_right(ranges, [pn, _INF])  # ranges[i-1] starts at or below pn
        if i and ranges[i - 1][1] >= pn:
            return False
        if i < len(ranges) and ranges[i][0] == pn + 1:
            ranges[i][0] = pn
            if i and ranges[i - 1][1] == pn - 1:
                ranges[i - 1][1] = ranges[i][1]
                del ranges[i]
        elif i and ranges[i - 1][1] == pn - 1:
            ranges[i - 1][1] = pn
        else:
            ranges.insert(i, [pn, pn])
        if len(ranges) > 2 * (MAX_ACK_RANGES + 1):
            del ranges[: len(ranges) - (MAX_ACK_RANGES + 1)]  # the oldest: acked long ago
        return True

    def _make_ack(self, now: float) -> bytes:
        ranges = [(low, high) for low, high in reversed(self._ranges[-(MAX_ACK_RANGES + 1):])]
        limit = self._read + self.window
        delay_us = int((now - self._largest_time) * 1e6)
        self._unacked = 0
        self._ack_now = False
        self._ack_deadline = _INF
        self._advertised = limit
        self._acks_sent += 1
        return encode_ack(self._received, limit, ranges, max(delay_us, 0))

    # -- receiving ACKs ---------------------------------------------------------------

    def _on_ack(self, packet: bytes, now: float) -> None:
        stream_ack, limit, delay_us, ranges = parse_ack(packet)
        if stream_ack > self._next:
            raise RemoteProtocolError(f"ACK of stream offset {stream_ack}, never sent")
        self._acks_received += 1
        if stream_ack > self._base:
            del self._buf[: stream_ack - self._base]
            self._base = stream_ack
        if limit > self._peer_limit:
            self._peer_limit = limit
            self._blocked_pings = 0
        lost = self.recovery.on_ack(ranges, delay_us / 1e6, now)
        if lost:
            self._resend.extend(lost)
        self.pacer.set_rate(self.cc.pacing_rate)

    def trace(self) -> dict:
        """What a debug trace samples now (a flat dict; see docs/wire.md §4.6): the
        controller's model, the window and the bytes in flight, the send side's queue, the
        cumulative counters, and why sending stopped (``stop_*``, cumulative)."""
        cc, rec = self.cc, self.recovery
        out = cc.statistics()
        out.update(window=cc.window(), in_flight=rec.bytes_in_flight, unsent=self.unsent_bytes,
                   resend_queued=len(self._resend), peer_room=self._peer_limit - self._next,
                   srtt_s=self.rtt.smoothed, latest_rtt_s=self.rtt.latest,
                   packets_sent=self._packets_sent, packets_lost=rec.packets_lost,
                   bytes_sent=self._bytes_sent, bytes_resent=self._bytes_resent,
                   acks_received=self._acks_received, acks_sent=self._acks_sent,
                   packets_received=self._packets_received, probes_sent=self._probes_sent,
                   burst_max=self.burst_max)
        out.update({f"stop_{name}": n for name, n in zip(STOPS, self.stops)})
        return out

    def statistics(self) -> TransportStatistics:
        cc = self.cc
        return TransportStatistics(
            packets_sent=self._packets_sent, packets_received=self._packets_received,
            acks_sent=self._acks_sent, acks_received=self._acks_received,
            bytes_sent=self._bytes_sent, bytes_resent=self._bytes_resent,
            bytes_delivered=self._received, duplicate_packets=self._duplicates,
            packets_lost=self.recovery.packets_lost, probes_sent=self._probes_sent,
            bytes_in_flight=self.recovery.bytes_in_flight, cwnd=cc.cwnd,
            pacing_rate_Bps=cc.pacing_rate, srtt_s=self.rtt.smoothed,
            min_rtt_s=None if cc.min_rtt == _INF else cc.min_rtt, state=cc.state)
