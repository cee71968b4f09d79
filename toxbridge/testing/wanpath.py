"""The WAN emulator's core (sans-IO): what a long, lossy, narrow path does to each packet.

``DelayLine`` takes packets (an opaque handle, a size, a direction) with the time as an
argument and says when each comes out, or that it is lost. The NFQUEUE shell
(``toxbridge.testing.wan``) feeds it the packets the kernel queues and accepts what
``due(now)`` hands back; the tests feed it tables.

What a packet meets, in order:

1. a cut (``cut(now, True)``): everything is dropped, also what is already in flight;
2. the bottleneck of its direction (``rate_Bps``): a FIFO served at that rate; a packet
   that would push the queue over ``queue_bytes`` is dropped (drop-tail). The queue is
   a "busy until" time per direction: the backlog in bytes is (busy_until - now) x rate;
3. random loss (``loss``), after the bottleneck: a lost packet used its capacity;
4. the delay (``delay_s`` one way) plus jitter, uniform in ±``jitter_s`` (never below 0).
   Without ``reorder`` a packet never overtakes an earlier one of its direction (it waits
   for it), so jitter then only ever adds.

Randomness comes from one ``random.Random`` (seeded by ``seed``, or given): one draw for
loss when ``loss`` > 0 and one for jitter when ``jitter_s`` > 0, for every packet that
reaches step 3, so a run is reproducible packet by packet.
"""

from __future__ import annotations

import enum
import heapq
import random
from dataclasses import asdict, dataclass
from typing import Generic, Hashable, TypeVar

__all__ = ["PathSpec", "DelayLine", "Fate", "LineStats", "ipv4_size_and_source"]

H = TypeVar("H")


@dataclass(frozen=True)
class PathSpec:
    """One direction's path (the same for every direction)."""

    delay_s: float = 0.0  # one way
    jitter_s: float = 0.0  # ± this much, uniform
    reorder: bool = False  # may jitter reorder packets of one direction?
    loss: float = 0.0  # probability that a packet is lost
    rate_Bps: float | None = None  # the bottleneck, bytes per second; None: none
    queue_bytes: int = 64_000  # the bottleneck's buffer (drop-tail)
    max_held: int = 20_000  # packets in the line at once, at most; more are dropped
    seed: int = 1

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay and jitter cannot be negative")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss is a probability, not {self.loss}")
        if self.rate_Bps is not None and self.rate_Bps <= 0:
            raise ValueError("the bottleneck rate must be positive (None: no bottleneck)")
        if self.queue_bytes < 0 or self.max_held < 1:
            raise ValueError("queue_bytes must be >= 0 and max_held >= 1")

    @property
    def rtt_s(self) -> float:
        """The round trip the path adds: one delay each way."""
        return 2 * self.delay_s

    @classmethod
    def from_dict(cls, d: dict) -> PathSpec:
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class Fate(enum.Enum):
    HELD = "held"  # it comes out of due() later
    LOST = "lost"  # random loss
    QUEUE_FULL = "queue_full"  # the bottleneck's buffer was full
    CUT = "cut"  # the path is cut
    LINE_FULL = "line_full"  # max_held packets were already held


@dataclass
class LineStats:
    offered: int = 0
    released: int = 0
    lost: int = 0
    queue_full: int = 0
    cut: int = 0
    line_full: int = 0
    bytes_offered: int = 0
    bytes_released: int = 0
    max_held: int = 0

    @property
    def dropped(self) -> int:
        return self.lost + self.queue_full + self.cut + self.line_full

    def to_dict(self) -> dict:
        return {**asdict(self), "dropped": self.dropped}


class DelayLine(Generic[H]):
    """The packets in flight on the path, in release order. Not thread-safe."""

    def __init__(self, spec: PathSpec, rng: random.Random | None = None) -> None:
        self.spec = spec
        self._rng = rng if rng is not None else random.Random(spec.seed)
        self._heap: list[tuple[float, int, H, int]] = []  # (release_at, order, handle, size)
        self._order = 0
        self._busy_until: dict[Hashable, float] = {}  # per direction: the bottleneck's queue
        self._last_release: dict[Hashable, float] = {}  # per direction: keeps FIFO order
        self._cut = False
        self.stats = LineStats()

    @property
    def held(self) -> int:
        return len(self._heap)

    @property
    def is_cut(self) -> bool:
        return self._cut

    def reconfigure(self, spec: PathSpec) -> None:
        """A new path from now on; what is held keeps its release time (and the draws
        go on from the same generator)."""
        self.spec = spec

    def backlog_bytes(self, now: float, direction: Hashable = 0) -> float:
        """Bytes waiting in ``direction``'s bottleneck at ``now`` (0 without one)."""
        rate = self.spec.rate_Bps
        if rate is None:
            return 0.0
        return max(0.0, self._busy_until.get(direction, now) - now) * rate

    def offer(self, now: float, handle: H, size: int, direction: Hashable = 0) -> Fate:
        """A packet of ``size`` bytes enters the path at ``now``. HELD: ``due()`` returns
        ``handle`` once its time comes; anything else: it is gone (drop it)."""
        spec, stats = self.spec, self.stats
        stats.offered += 1
        stats.bytes_offered += size
        if self._cut:
            stats.cut += 1
            return Fate.CUT
        depart = now
        if spec.rate_Bps is not None:
            if self.backlog_bytes(now, direction) + size > spec.queue_bytes:
                stats.queue_full += 1
                return Fate.QUEUE_FULL
            depart = max(now, self._busy_until.get(direction, now)) + size / spec.rate_Bps
            self._busy_until[direction] = depart
        lost = spec.loss > 0 and self._rng.random() < spec.loss
        delay = spec.delay_s
        if spec.jitter_s > 0:
            delay = max(0.0, delay + (2 * self._rng.random() - 1) * spec.jitter_s)
        if lost:
            stats.lost += 1
            return Fate.LOST
        if len(self._heap) >= spec.max_held:
            stats.line_full += 1
            return Fate.LINE_FULL
        release = depart + delay
        if not spec.reorder:
            release = max(release, self._last_release.get(direction, release))
            self._last_release[direction] = release
        heapq.heappush(self._heap, (release, self._order, handle, size))
        self._order += 1
        stats.max_held = max(stats.max_held, len(self._heap))
        return Fate.HELD

    def next_due(self) -> float | None:
        """When the next held packet comes out (None: nothing held)."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[H]:
        """The packets whose time has come at ``now``, in release order: accept them."""
        out: list[H] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, handle, size = heapq.heappop(heap)
            self.stats.released += 1
            self.stats.bytes_released += size
            out.append(handle)
        return out

    def cut(self, now: float, on: bool = True) -> list[H]:
        """Cut the path (``on``) or mend it. Cutting loses what is in flight: the handles
        returned are to be dropped. The bottleneck empties too (its packets are lost)."""
        self._cut = on
        if not on:
            return []
        gone = self.drain()
        self.stats.cut += len(gone)
        self._busy_until.clear()
        self._last_release.clear()
        return gone

    def drain(self) -> list[H]:
        """Everything still held, in release order, and the line empty (for shutting down)."""
        out = [handle for _, _, handle, _ in sorted(self._heap, key=lambda e: (e[0], e[1]))]
        self._heap.clear()
        return out


def ipv4_size_and_source(head: bytes) -> tuple[int, int]:
    """(total length, source port) from the first bytes of an IPv4 UDP or TCP packet (the
    kernel may hand over only the headers). Anything else: (len(head), 0)."""
    if len(head) < 20 or head[0] >> 4 != 4:
        return len(head), 0
    ihl = (head[0] & 0x0F) * 4
    size = int.from_bytes(head[2:4], "big")
    if head[9] not in (6, 17) or len(head) < ihl + 2:
        return size, 0
    return size, int.from_bytes(head[ihl:ihl + 2], "big")
