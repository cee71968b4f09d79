"""A token bucket at the pacing rate: spreads a window's packets over the round trip
instead of sending them in one burst that a bottleneck's queue would have to absorb."""

from __future__ import annotations

MAX_TURN_S = 0.010  # the longest turn whose worth may go at once (beyond: an idle pause)


class Pacer:
    """``burst_s`` of the rate (but at least ``min_burst`` bytes) may go at once: the shell
    runs in loop turns (~1 ms in the tox thread), so a bucket smaller than one turn's worth
    could not reach the rate."""

    __slots__ = ("rate", "burst", "burst_s", "min_burst", "_tokens", "_last")

    def __init__(self, rate: float, *, burst_s: float = 0.002, min_burst: int = 2 * 1373) -> None:
        if rate <= 0 or burst_s < 0 or min_burst <= 0:
            raise ValueError("the rate and min_burst must be positive, burst_s >= 0")
        self.burst_s, self.min_burst = burst_s, min_burst
        self.rate = rate
        self.burst = max(rate * burst_s, min_burst)
        self._tokens = self.burst
        self._last: float | None = None

    def set_rate(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("the pacing rate must be positive")
        self.rate = rate
        self.burst = max(rate * self.burst_s, self.min_burst)
        if self._tokens > self.burst:
            self._tokens = self.burst

    def _refill(self, now: float) -> None:
        last = self._last
        if last is not None and now > last:
            elapsed = now - last
            tokens = self._tokens + elapsed * self.rate
            # A shell whose turns are longer than burst_s (a loaded CPU) may send a turn's
            # worth: capped at burst_s, it would reach only burst_s / turn of the rate, the
            # model would measure that as the path's rate, and pace lower still (seen: 4 ms
            # turns, 50 ms, 6.25 MB/s: 0.9 MB/s).
            cap = self.burst if elapsed <= self.burst_s else \
                max(self.burst, min(elapsed, MAX_TURN_S) * self.rate)
            self._tokens = tokens if tokens < cap else cap
        if last is None or now > last:
            self._last = now

    def can_send(self, now: float) -> bool:
        """May a packet go now? (It may, once the bucket is not in debt.)"""
        self._refill(now)
        return self._tokens > 0

    def on_sent(self, size: int, now: float) -> None:
        """A packet of ``size`` bytes went: the bucket may go into debt by one packet."""
        self._refill(now)
        self._tokens -= size

    def allowance(self, now: float) -> float:
        """Bytes that may go now, before the bucket is in debt (0 while it is)."""
        self._refill(now)
        return self._tokens if self._tokens > 0 else 0.0

    def ready_at(self) -> float:
        """When the bucket is out of debt, given no more sends (``-inf``: already)."""
        if self._tokens > 0 or self._last is None:
            return float("-inf")
        return self._last + (-self._tokens) / self.rate + 1e-9

    def next_send_time(self, now: float) -> float:
        """The earliest time at or after ``now`` when the next packet may go."""
        self._refill(now)
        if self._tokens > 0:
            return now
        return now + (-self._tokens + 1e-9 * self.rate) / self.rate
