"""Noticing a connection that carries nothing while toxcore calls it up, sans-IO.

toxcore keeps a friend connection up as long as its own keep-alives pass. We saw one where
they passed and nothing of ours did: two daemons with UDP off, on the TCP relay, both with
their windows full (545 and 329 KB in flight), nothing acknowledged either way for 30 s
and more, the friend still "TCP" (tests/test_nat.py, no_udp, on a machine running two
suites at once). Nothing but a fresh connection gets such a link going again, as with a
crawl (crawl.py): toxcore drops its queues and its relay state with the old one, and the
Link resumes from what the peer really received.

`StallWatch` decides when: the Link had bytes in flight, and the peer acknowledged none of
them, for ``seconds`` on end. The Link's receiver always drains into the mux (each stream
has its own credit) and acknowledges what arrives, so a slow app does not look like this;
a frozen or dead peer does, for the ~30 s toxcore takes to time it out. Time the loop did
not watch (a frozen or starved process: turns more than ``gap`` apart) is not counted:
the peer's acks may be waiting to be read.
"""

from __future__ import annotations

__all__ = ["StallWatch"]


class StallWatch:
    """Call :meth:`observe` often (the tox loop: every 0.25 s); ask :meth:`stuck`."""

    def __init__(self, seconds: float = 20.0, gap: float = 2.0) -> None:
        self.seconds = seconds
        self.gap = gap
        self._since: float | None = None  # in flight, with no ack since then
        self._acked = -1
        self._last = 0.0  # the previous observation

    def reset(self) -> None:
        """Forget the past (a new connection, or a disconnect)."""
        self._since = None

    def observe(self, now: float, in_flight: bool, acked_total: int) -> None:
        """``in_flight``: Link bytes sent and not acknowledged; ``acked_total``: the Link's
        count of acknowledged bytes (any increase is progress)."""
        if not in_flight:
            self._since = None
        elif self._since is None or acked_total != self._acked or now - self._last > self.gap:
            self._since = now
        self._acked = acked_total
        self._last = now

    def stuck(self, now: float) -> bool:
        """True once bytes have been in flight, none acknowledged, for ``seconds``."""
        return (self._since is not None and now - self._last <= self.gap
                and now - self._since >= self.seconds)

    @property
    def waited(self) -> float:
        """Seconds the current wait had lasted at the last observation (0 if none)."""
        return 0.0 if self._since is None else self._last - self._since
