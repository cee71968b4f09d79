"""Noticing toxcore's congestion control stuck at its floor, sans-IO.

toxcore 0.2.18 keeps a connection at 4 packets/s while resend requests keep arriving: every
resend that meets an empty budget counts as a congestion event, and each one cuts the rate
by 10 % from a rate that is already the floor. We keep toxcore's queue short
(`toxbridge.link.DEFAULT_IN_FLIGHT`), which avoids the usual way in; but after a stall in
which the connection moved from direct UDP to the TCP relay and back, we measured it stuck
at 4 packets/s for minutes with data both ways (bench/proving.py, flaps). The only way out
we have is a fresh connection: toxcore drops its queue and its rate state with it, and the
Link resumes from what the peer really received.

`CrawlWatch` decides when: toxcore refused packets (SENDQ) in most seconds of the last
``seconds`` and accepted fewer than ``rate`` per second on average over them. A slow
receiving app does not look like this (the Link stops handing packets over when its
window is full: no SENDQ), nor does toxcore's slow start (it doubles within a second or
two from ~10 packets/s).
"""

from __future__ import annotations

from collections import deque

__all__ = ["CrawlWatch"]


class CrawlWatch:
    """Feed it every send attempt's outcome with the time; ask :meth:`stuck`."""

    def __init__(self, seconds: float = 12.0, rate: float = 8.0) -> None:
        self.seconds = seconds
        self.rate = rate
        # Per whole second: [second, packets accepted, refusals].
        self._bins: deque[list[int]] = deque()

    def reset(self) -> None:
        """Forget the past (a new connection, or a disconnect)."""
        self._bins.clear()

    def _bin(self, now: float) -> list[int]:
        second = int(now)
        bins = self._bins
        if not bins or bins[-1][0] != second:
            bins.append([second, 0, 0])
            while bins and bins[0][0] <= second - self.seconds:
                bins.popleft()
        return bins[-1]

    def accepted(self, now: float, n: int = 1) -> None:
        self._bin(now)[1] += n

    def refused(self, now: float) -> None:
        self._bin(now)[2] += 1

    def stuck(self, now: float) -> bool:
        """True if toxcore has crawled for ``seconds``: refusing in most of them while
        accepting fewer than ``rate`` packets per second."""
        self._bin(now)
        bins = self._bins
        span = int(self.seconds)
        if len(bins) < span or bins[0][0] > int(now) - span + 1:
            return False  # not watched for long enough (or idle seconds in between)
        refusing = sum(1 for b in bins if b[2])
        accepted = sum(b[1] for b in bins)
        return refusing * 4 >= span * 3 and accepted < self.rate * span
