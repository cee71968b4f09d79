"""The round-trip estimate of RFC 9002 §5: latest, smoothed, variation and minimum, with the
peer's ack delay taken out of a sample when that leaves it above the minimum."""

from __future__ import annotations

GRANULARITY = 0.001  # s: timers finer than this are noise (RFC 9002's kGranularity)


class RttEstimator:
    __slots__ = ("initial", "latest", "smoothed", "rttvar", "min_rtt", "samples")

    def __init__(self, initial_rtt: float = 0.333) -> None:
        if initial_rtt <= 0:
            raise ValueError("initial_rtt must be positive")
        self.initial = initial_rtt
        self.latest = 0.0
        self.smoothed = initial_rtt  # until the first sample
        self.rttvar = initial_rtt / 2
        self.min_rtt = float("inf")
        self.samples = 0

    def update(self, sample: float, ack_delay: float, max_ack_delay: float) -> None:
        """One sample: now minus the send time of the largest newly acked packet.
        ``ack_delay`` (as the peer reported it) is capped at ``max_ack_delay``."""
        sample = max(sample, 0.0)
        self.latest = sample
        if sample < self.min_rtt:
            self.min_rtt = sample  # the raw sample: ack delay cannot be trusted here
        if self.samples == 0:
            self.smoothed, self.rttvar = sample, sample / 2
        else:
            adjusted = sample
            delay = min(ack_delay, max_ack_delay)
            if sample - delay >= self.min_rtt:
                adjusted = sample - delay
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed - adjusted)
            self.smoothed = 0.875 * self.smoothed + 0.125 * adjusted
        self.samples += 1

    def pto(self, max_ack_delay: float) -> float:
        """The base probe timeout (before backoff)."""
        return self.smoothed + max(4 * self.rttvar, GRANULARITY) + max_ack_delay

    def loss_delay(self) -> float:
        """How long after a later packet was acked an earlier one counts as lost: 9/8 of
        the larger of the smoothed and the latest round trip (RFC 9002 §6.1.2)."""
        base = max(self.smoothed, self.latest) if self.samples else self.initial
        return max(base * 9 / 8, GRANULARITY)
