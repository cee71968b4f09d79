"""What ``toxbridge status`` reports, measured sans-IO: the tox thread feeds these with
its own counters and the time, and publishes an immutable snapshot; the trio side only
reads the latest one (it never touches the Tox or the Link).

* :class:`RttMeter`: the round trip from the Link's acks. The shell tells it the stream
  offset up to which bytes were transmitted for the first time (``sent``) and up to which
  the peer acknowledged them (``acked``); a sample is the time from the first transmission
  of an offset to its ack (Karn: resent bytes are never sampled, and a lost connection
  forgets what was pending). Acks wait for the end of the peer's loop turn (a millisecond
  while busy, up to 20 ms when idle), so this is an upper estimate of the path.
* :class:`RateMeter`: bytes per second each way over the last few seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PeerSnapshot", "NodeSnapshot", "RateMeter", "RttMeter"]


class RttMeter:
    def __init__(self, max_pending: int = 64) -> None:
        self._pending: deque[tuple[int, float]] = deque()  # (offset, first sent at)
        self._max = max_pending
        self._high = 0
        self.srtt: float | None = None  # smoothed (RFC 6298's 1/8 gain)
        self.last: float | None = None
        self.min: float | None = None
        self.samples = 0

    def sent(self, offset: int, now: float) -> None:
        """Bytes before ``offset`` have been transmitted (offsets only ever grow)."""
        if offset > self._high:
            self._high = offset
            if len(self._pending) < self._max:  # full: fewer samples, never wrong ones
                self._pending.append((offset, now))

    def acked(self, offset: int, now: float) -> None:
        """The peer acknowledged the bytes before ``offset``."""
        pending, sample = self._pending, None
        while pending and pending[0][0] <= offset:
            sample = now - pending.popleft()[1]
        if sample is None:
            return
        self.samples += 1
        self.last = sample
        self.min = sample if self.min is None else min(self.min, sample)
        self.srtt = sample if self.srtt is None else self.srtt + (sample - self.srtt) / 8

    def lost(self) -> None:
        """The connection went down: what was in flight will be resent (not sampled)."""
        self._pending.clear()


class RateMeter:
    """Rates of two growing counters over the last ``span`` seconds."""

    def __init__(self, span: float = 5.0, max_samples: int = 64) -> None:
        self.span = span
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=max_samples)

    def sample(self, now: float, sent: int, received: int) -> tuple[float, float]:
        """Record the counters; returns (sent, received) bytes per second."""
        s = self._samples
        if s and (sent < s[-1][1] or received < s[-1][2]):
            s.clear()  # counters started again (a new link)
        s.append((now, sent, received))
        while len(s) > 2 and s[1][0] <= now - self.span:
            s.popleft()
        t0, sent0, received0 = s[0]
        dt = now - t0
        if dt <= 0:
            return 0.0, 0.0
        return (sent - sent0) / dt, (received - received0) / dt


@dataclass(frozen=True)
class PeerSnapshot:
    public_key: str
    online: bool  # the channel is open
    link: str  # "UDP", "TCP" or "none" (toxcore's friend connection)
    state: str  # the Link's state
    rtt_ms: float | None
    rtt_min_ms: float | None
    bytes_sent: int  # stream bytes transmitted, resends included
    bytes_received: int  # new stream bytes accepted
    bytes_resent: int
    rate_sent: float  # bytes per second, over the last few seconds
    rate_received: float
    frames_sent: int
    frames_received: int
    reconnects: int  # friend connections after the first
    peer_restarts: int
    queues: dict[str, int]
    # the Link's path (toxbridge.linkpath): "active" (our transport over lossy packets
    # carries it on this connection), lossy packets by id, the transport's window and RTT
    transport: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # the peer's configured short name
    streams: int = 0  # local streams (streams.sock, forwards) open with it


@dataclass(frozen=True)
class NodeSnapshot:
    seq: int  # grows with every snapshot
    time: float  # wall clock
    uptime_s: float
    tox_id: str
    mode: str
    dht: str  # toxcore's own connection to the network: "UDP", "TCP" or "NONE"
    peers: tuple[PeerSnapshot, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["peers"] = [asdict(p) for p in self.peers]
        return d
