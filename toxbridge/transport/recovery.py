"""Which sent packets are outstanding, which are acked, which are lost (RFC 9002 §6), and when
to probe; the bytes in flight. Sans-IO: every time is an argument.

Packet numbers count up from 0 and are never reused: a resend of lost data goes out in a new
packet, so an ack always says which transmission arrived (no retransmission ambiguity in the
round-trip samples). A packet is lost when a packet sent 3 or more later is acked (packet
threshold), or when a later one is acked and it was sent 9/8 of a round trip before now
(time threshold). Lost packets hand their stream range back for resending.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import LocalProtocolError, RemoteProtocolError
from .rtt import RttEstimator

# At most this many packets are tracked (outstanding packets span at most this many packet
# numbers): a ring of slots, one per number, with no allocation per packet beyond a tuple.
# 8192 full packets are 11.2 MB in flight: twice the bandwidth-delay product of 25 MB/s
# (the most one core of toxcore moves) at 150 ms is 7.5 MB, which leaves room for a round
# trip's worth of packets that are lost and not yet declared so.
MAX_TRACKED = 8192
PACKET_THRESHOLD = 3
# Probes: the first after RFC 9002's timeout (a tail loss), the second one round trip later
# (time for the first one's ack). After that nothing has come back for over two round trips:
# a blackout (a Wi-Fi handover, a frozen peer, a cut). Then an empty DATA packet (78 bytes
# on the wire) goes every third of a round trip (at least BLACKOUT_PROBE_MIN apart), never
# backed off: data flows again within 2 round trips of the path's return (a third to the
# next probe, a round trip for its ack, half of one for the resent data), for ~5 kB/s of
# probes at 50 ms. ``max_probe_interval`` replaces this with plain doubling up to a cap.
MIN_PROBE_INTERVAL = 0.025
BLACKOUT_PROBE_MIN = 0.010
DATA_PROBES = 2  # probes that resend data; later ones are empty


class Controller(Protocol):
    """What recovery tells the congestion controller (see ``congestion.BbrController``)."""

    def on_sent(self, now: float, size: int, bytes_in_flight: int) -> Any: ...
    def on_ack(self, now: float, acked_bytes: int, sent_time: float, state: Any,
               bytes_in_flight: int) -> None: ...
    def on_lost(self, now: float, lost_bytes: int, bytes_in_flight: int) -> None: ...
    def on_pto(self, now: float, count: int) -> None: ...


class Recovery:
    """Slots hold ``(sent_time, size, offset, length, cc_state)`` for packet ``pn`` at
    ``pn % max_tracked``; ``None`` once acked or lost. Every number below ``low`` is done."""

    def __init__(self, rtt: RttEstimator, cc: Controller, *, max_ack_delay: float,
                 max_tracked: int = MAX_TRACKED, max_probe_interval: float | None = None) -> None:
        if max_tracked < 16:
            raise ValueError("track at least 16 packets")
        self.rtt, self.cc = rtt, cc
        self.max_ack_delay = max_ack_delay
        self.max_tracked = max_tracked
        self.max_probe_interval = max_probe_interval  # None: one smoothed round trip
        self._slots: list[tuple | None] = [None] * max_tracked
        self.next_pn = 0
        self.low = 0
        self.largest_acked = -1
        self.bytes_in_flight = 0
        self.outstanding = 0  # packets
        self.pto_count = 0
        self._last_sent = 0.0
        self._loss_time: float | None = None
        self.packets_lost = 0
        self.bytes_lost = 0

    def can_send(self) -> bool:
        return self.next_pn - self.low < self.max_tracked

    def on_sent(self, now: float, size: int, offset: int, length: int) -> int:
        """Track a packet of ``size`` bytes carrying stream bytes ``[offset, offset+length)``;
        returns its packet number."""
        pn = self.next_pn
        if pn - self.low >= self.max_tracked:
            raise LocalProtocolError(f"{self.max_tracked} packets are already tracked")
        state = self.cc.on_sent(now, size, self.bytes_in_flight)
        self._slots[pn % self.max_tracked] = (now, size, offset, length, state)
        self.next_pn = pn + 1
        self.bytes_in_flight += size
        self.outstanding += 1
        self._last_sent = now
        return pn

    def on_ack(self, ranges: list[tuple[int, int]], ack_delay: float, now: float
               ) -> list[tuple[int, int]]:
        """An ACK's ranges (inclusive, highest first). Returns the stream ranges of the
        packets now found lost, as ``(offset, length)``."""
        largest = ranges[0][1]
        if largest >= self.next_pn:
            raise RemoteProtocolError(f"ACK of packet {largest}, never sent")
        slots, n, low_bound = self._slots, self.max_tracked, self.low
        newest = None
        newest_pn = -1
        acked_bytes = acked = 0
        for low, high in ranges:
            if high < low_bound:
                break
            for pn in range(max(low, low_bound), high + 1):
                entry = slots[pn % n]
                if entry is not None:
                    slots[pn % n] = None
                    acked_bytes += entry[1]
                    acked += 1
                    if pn > newest_pn:
                        newest, newest_pn = entry, pn
        if newest is None:
            return []
        self.outstanding -= acked
        self.bytes_in_flight -= acked_bytes
        if largest > self.largest_acked:
            self.largest_acked = largest
        if newest_pn == largest:
            self.rtt.update(now - newest[0], ack_delay, self.max_ack_delay)
        self.pto_count = 0
        self.cc.on_ack(now, acked_bytes, newest[0], newest[4], self.bytes_in_flight)
        return self._detect_lost(now)

    def _detect_lost(self, now: float) -> list[tuple[int, int]]:
        # The lost packets are a prefix of the outstanding ones: both thresholds grow with
        # the packet number, so the scan stops at the first packet that is not lost yet.
        slots, n = self._slots, self.max_tracked
        loss_delay = self.rtt.loss_delay()
        largest = self.largest_acked
        self._loss_time = None
        lost: list[tuple[int, int]] = []
        lost_bytes = count = 0
        pn = self.low
        while pn <= largest:
            entry = slots[pn % n]
            if entry is not None:
                due = entry[0] + loss_delay  # the same sum as the timer's: no rounding gap
                if largest - pn < PACKET_THRESHOLD and due > now:
                    self._loss_time = due
                    break
                slots[pn % n] = None
                lost_bytes += entry[1]
                count += 1
                if entry[3]:
                    lost.append((entry[2], entry[3]))
            pn += 1
        self._advance_low()
        if count:
            self.outstanding -= count
            self.bytes_in_flight -= lost_bytes
            self.packets_lost += count
            self.bytes_lost += lost_bytes
            self.cc.on_lost(now, lost_bytes, self.bytes_in_flight)
        return lost

    def _advance_low(self) -> None:
        slots, n, low, top = self._slots, self.max_tracked, self.low, self.next_pn
        while low < top and slots[low % n] is None:
            low += 1
        self.low = low

    def probe_interval(self) -> float:
        """The current probe timeout (see DATA_PROBES and BLACKOUT_PROBE_MIN above)."""
        base = self.rtt.pto(self.max_ack_delay)
        count = self.pto_count
        if not count:
            return base
        cap = self.max_probe_interval
        if cap is not None:
            return min(base * (1 << min(count, 16)), cap)
        if count == 1:
            return min(2 * base, max(self.rtt.smoothed, MIN_PROBE_INTERVAL))
        return max(self.rtt.smoothed / 3, BLACKOUT_PROBE_MIN)

    @property
    def in_blackout(self) -> bool:
        """Two probes went unanswered: later probes carry no data."""
        return self.pto_count > DATA_PROBES

    def probe_due_at(self) -> float:
        """When a probe would be due if packets were outstanding (or a ping, blocked)."""
        return self._last_sent + self.probe_interval()

    def timeout(self) -> float | None:
        """When ``on_timeout`` must run: the loss timer, else the probe timer, else None."""
        if self._loss_time is not None:
            return self._loss_time
        if not self.outstanding:
            return None
        return self._last_sent + self.probe_interval()

    def on_timeout(self, now: float) -> tuple[list[tuple[int, int]], bool]:
        """(stream ranges found lost, whether a probe must go out now)."""
        if self._loss_time is not None:
            if now < self._loss_time:
                return [], False
            return self._detect_lost(now), False
        if not self.outstanding or now < self._last_sent + self.probe_interval():
            return [], False
        self.pto_count += 1
        self._last_sent = now  # the next probe is timed from this one, even if none can go
        self.cc.on_pto(now, self.pto_count)
        return [], True

    def forget_oldest(self) -> tuple[int, int] | None:
        """Give up on the oldest outstanding packet, to make room in a full ring for a
        probe (a long blackout fills it with unanswered probes): it counts as lost, but
        not as congestion. Returns its stream range to resend, if it carried data."""
        pn = self.low
        if pn >= self.next_pn:
            return None
        entry = self._slots[pn % self.max_tracked]
        self._slots[pn % self.max_tracked] = None
        self.outstanding -= 1
        self.bytes_in_flight -= entry[1]
        self.packets_lost += 1
        self.bytes_lost += entry[1]
        self._advance_low()
        return (entry[2], entry[3]) if entry[3] else None

    def oldest_outstanding(self) -> tuple[int, int] | None:
        """The stream range of the oldest outstanding packet that carries data (a probe
        resends it: after a blackout it is the receiver's first missing byte)."""
        slots, n = self._slots, self.max_tracked
        for pn in range(self.low, self.next_pn):
            entry = slots[pn % n]
            if entry is not None and entry[3]:
                return entry[2], entry[3]
        return None
