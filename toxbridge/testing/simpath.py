"""A simulated path in simulated time, driving transport endpoints: pure and deterministic.

Each flow is a pair of ``toxbridge.transport.Endpoint``; flow i's sender streams bytes to its
receiver. All flows share one path: the forward direction (data) and the reverse direction
(acks) are ``wanpath.DelayLine``s of the same ``PathSpec`` (one-way delay, jitter, random
loss from a seeded generator, a bottleneck rate with a drop-tail queue), so flows compete
for one bottleneck queue. A datagram takes ``overhead`` bytes more on the path than its
length (toxcore's encryption and UDP/IP headers, ~57 bytes). Blackouts cut the path both
ways for a while (what is in flight is lost). The loop is discrete-event: it jumps from one
packet arrival or endpoint timer to the next, so 10 s of a 50 Mbit/s path take a few CPU
seconds, whatever the delay.

What it measures: bytes delivered per flow over time (``samples``), the forward queue's
delay (``queue_delays``), the CPU time spent inside the endpoints (``endpoint_cpu_s``),
and whether every flow's bytes arrived exactly, in order (``verify=True``).
"""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from ..transport import Endpoint
from .wanpath import DelayLine, Fate, PathSpec

__all__ = ["Flow", "Simulation", "PathSpec", "TOX_OVERHEAD", "pattern"]

TOX_OVERHEAD = 57  # net_crypto's data packet (~29 bytes) + UDP/IPv4 headers (28)
_FWD, _REV = "fwd", "rev"
_PATTERN = random.Random(7).randbytes(1 << 20)


def pattern(offset: int, n: int) -> bytes:
    """The bytes ``[offset, offset + n)`` of the stream every simulated sender writes."""
    start = offset % len(_PATTERN)
    out = _PATTERN[start:start + n]
    while len(out) < n:
        out += _PATTERN[: n - len(out)]
    return out


@dataclass
class Flow:
    sender: Endpoint
    receiver: Endpoint
    total: int | None = None  # bytes to stream; None: forever
    start_at: float = 0.0
    written: int = 0
    delivered: int = 0
    done_at: float | None = None  # when the receiver had all ``total`` bytes
    mismatch: int | None = None  # the first offset where verification failed
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, delivered)
    # What the sender's app writes, given the room (None: the pattern, as much as fits),
    # and what the receiver's app does with what arrived: e.g. a stream mux on each end,
    # whose credit then travels back in a flow the other way (tests/test_transport_path.py)
    source: Callable[[int], bytes] | None = None
    sink: Callable[[bytes], None] | None = None


class Simulation:
    def __init__(self, spec: PathSpec, *, overhead: int = TOX_OVERHEAD, duplicate: float = 0.0,
                 verify: bool = False, sample_every: float = 0.05, seed: int = 1,
                 max_events: int = 20_000_000, start: float = 0.0) -> None:
        """``start``: the clock's reading when the simulation begins (flows' ``start_at``,
        ``run(until)`` and ``goodput`` are readings of the same clock). A real shell passes
        ``time.monotonic()``, hours past 0: a controller that took 0 for "long ago" would
        only show it with a late start."""
        self.spec = spec
        self.fwd = DelayLine(spec, random.Random(seed))
        self.rev = DelayLine(spec, random.Random(seed + 1))
        self.overhead = overhead
        self.duplicate = duplicate
        self._rng = random.Random(seed + 2)
        self.verify = verify
        self.sample_every = sample_every
        self.max_events = max_events
        self.flows: list[Flow] = []
        self.now = start
        self._timers: list[tuple[float, int, Endpoint]] = []  # (at, order, endpoint)
        self._peers: dict[int, tuple[Endpoint, Endpoint, str]] = {}  # id -> (it, peer, line)
        self._writers: dict[int, list[Flow]] = {}
        self._readers: dict[int, list[Flow]] = {}
        self._armed: dict[int, float] = {}  # id(endpoint) -> its one live timer
        self.spins = 0  # an endpoint asked to be woken at once again: a bug if it grows
        self._order = 0
        self._cuts: list[tuple[float, bool]] = []
        self.queue_delays: list[tuple[float, float]] = []  # (time, forward queue delay, s)
        self.endpoint_cpu_s = 0.0
        self.events = 0

    def add_flow(self, sender: Endpoint, receiver: Endpoint, *, total: int | None = None,
                 start_at: float | None = None, source: Callable[[int], bytes] | None = None,
                 sink: Callable[[bytes], None] | None = None) -> Flow:
        """A stream from ``sender`` to ``receiver``. The first flow of a pair sets which way
        is forward (the data's direction: its bottleneck queue is the one measured); a flow
        from ``receiver`` back to ``sender`` makes the pair's traffic two-way."""
        start_at = self.now if start_at is None else start_at
        flow = Flow(sender, receiver, total, start_at, source=source, sink=sink)
        self.flows.append(flow)
        for endpoint, peer, line in ((sender, receiver, _FWD), (receiver, sender, _REV)):
            self._peers.setdefault(id(endpoint), (endpoint, peer, line))
        self._writers.setdefault(id(sender), []).append(flow)
        self._readers.setdefault(id(receiver), []).append(flow)
        self._armed[id(sender)] = start_at
        heapq.heappush(self._timers, (start_at, self._order, sender))
        self._order += 1
        return flow

    def blackout(self, start: float, end: float) -> None:
        """Cut the path both ways from ``start`` to ``end`` (in-flight packets are lost)."""
        self._cuts += [(start, True), (end, False)]
        self._cuts.sort()

    # -- the loop -----------------------------------------------------------------------

    def run(self, until: float) -> None:
        """Simulate up to time ``until`` (or until every finite flow is done)."""
        next_sample = self.now
        while self.events < self.max_events:
            f, r = self.fwd.next_due(), self.rev.next_due()
            t = min(until if f is None else f, until if r is None else r,
                    self._timers[0][0] if self._timers else until,
                    self._cuts[0][0] if self._cuts else until, next_sample, until)
            t = max(t, self.now)
            self.now = t
            if t >= next_sample:
                self._sample(t)
                next_sample = t + self.sample_every
                if self.flows and all(f.done_at is not None for f in self.flows):
                    return
            if t >= until:
                return
            self.events += 1
            while self._cuts and self._cuts[0][0] <= t:
                _, on = self._cuts.pop(0)
                self.fwd.cut(t, on)
                self.rev.cut(t, on)
            for endpoint, packet in self.fwd.due(t):
                self._deliver(endpoint, packet, t)
            for endpoint, packet in self.rev.due(t):
                self._deliver(endpoint, packet, t)
            while self._timers and self._timers[0][0] <= t:
                at, _, endpoint = heapq.heappop(self._timers)
                if self._armed.get(id(endpoint)) == at:  # else stale: re-armed since
                    del self._armed[id(endpoint)]
                    self._service(endpoint, t, True)

    def _deliver(self, endpoint: Endpoint, packet: bytes, t: float) -> None:
        c0 = time.perf_counter()
        endpoint.receive_datagram(packet, t)
        self.endpoint_cpu_s += time.perf_counter() - c0
        self._service(endpoint, t, False)

    def _service(self, endpoint: Endpoint, t: float, timer: bool) -> None:
        """Run the endpoint's timers (``timer``: its wake-up time came), its apps, and send
        what it has; re-arm its timer."""
        key = id(endpoint)
        c0 = time.perf_counter()
        if timer:
            endpoint.handle_timer(t)
        for flow in self._writers.get(key, ()):
            if t >= flow.start_at:
                self._write(flow)
        for flow in self._readers.get(key, ()):
            self._read(flow, t)
        for flow in self._writers.get(key, ()):  # what reading made (a mux's credit) goes now
            if flow.source is not None and t >= flow.start_at:
                self._write(flow)
        packets = endpoint.datagrams_to_send(t)
        wake = endpoint.timeout()
        if wake is not None and wake <= t:  # a timer due at this very time: run it now
            endpoint.handle_timer(t)
            packets += endpoint.datagrams_to_send(t)
            wake = endpoint.timeout()
        self.endpoint_cpu_s += time.perf_counter() - c0
        _, peer, direction = self._peers[key]
        line = self.fwd if direction == _FWD else self.rev
        for packet in packets:
            handle = (peer, packet)
            fate = line.offer(t, handle, len(packet) + self.overhead, direction)
            if fate is Fate.HELD and self.duplicate and self._rng.random() < self.duplicate:
                line.offer(t, handle, len(packet) + self.overhead, direction)
        self._arm(endpoint, wake)

    def _read(self, flow: Flow, t: float) -> None:
        data = flow.receiver.receive()
        if data:
            if self.verify and flow.mismatch is None and data != pattern(flow.delivered, len(data)):
                flow.mismatch = flow.delivered
            flow.delivered += len(data)
            if flow.sink is not None:
                flow.sink(data)
            if flow.total is not None and flow.delivered >= flow.total and flow.done_at is None:
                flow.done_at = t

    def _write(self, flow: Flow) -> None:
        room = flow.sender.send_room
        if flow.total is not None:
            room = min(room, flow.total - flow.written)
        if room > 0:
            if flow.source is not None:
                chunk = flow.source(room)
            else:
                chunk = pattern(flow.written, room) if self.verify else bytes(room)
            if chunk:
                flow.written += flow.sender.send(chunk)

    def _arm(self, endpoint: Endpoint, at: float | None) -> None:
        if at is None:
            self._armed.pop(id(endpoint), None)
            return
        if at <= self.now:
            self.spins += 1
            at = self.now + 1e-6
        if self._armed.get(id(endpoint)) == at:
            return
        self._armed[id(endpoint)] = at
        heapq.heappush(self._timers, (at, self._order, endpoint))
        self._order += 1

    def _sample(self, t: float) -> None:
        for flow in self.flows:
            flow.samples.append((t, flow.delivered))
        rate = self.spec.rate_Bps
        if rate:
            self.queue_delays.append((t, self.fwd.backlog_bytes(t, _FWD) / rate))

    # -- results ------------------------------------------------------------------------

    def goodput(self, flow: Flow, start: float, end: float) -> float:
        """Bytes/s delivered to ``flow``'s receiver between the samples nearest ``start``
        and ``end``."""
        points = [(t, d) for t, d in flow.samples if start - 1e-9 <= t <= end + 1e-9]
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return 0.0
        (t0, d0), (t1, d1) = points[0], points[-1]
        return (d1 - d0) / (t1 - t0)
