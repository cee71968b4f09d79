"""How long the tox thread waits between turns, and on what (sans-IO: every time is an
argument). ``toxbridge.toxloop`` surveys its slots, tells this what traffic it saw, and
waits as ``Cadence.decide`` says (``toxbridge.wakeup``).

Busy (something of ours unsent, unacknowledged or owed an ack; or just after a burst) it
runs on a steady 1 ms timer, as measured best with toxcore's congestion control; idle it
waits toxcore's own interval, woken by any packet but toxcore's upkeep. Packets that come
through a TCP relay arrive on sockets nobody watches, so after traffic *with a peer on a
relay* it polls at 1 ms for a second, and idle at ``idle_period``. Only that peer's
traffic counts: counting every peer's had kept a hub with one relayed peer among 16 at
the 1 ms cadence for good, its others' pings each 5 s never letting the second run out
(33-40 % of a core, ~600 turns a second: docs/benchmarks.md, bench mesh --idle-only).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Cadence", "Survey", "Wait", "BURST_PACKETS", "BUSY_AFTER_RELAY",
           "BUSY_AFTER_BURST"]

BUSY_AFTER_RELAY = 1.0  # seconds of 1 ms turns after a packet either way with a relayed peer
# Over UDP arrivals wake the loop by themselves, so only a short tail (a burst's gaps) ...
BUSY_AFTER_BURST = 0.1
# ... and only after a burst: this many packets from peers within that tail. A lone
# exchange (bridge_local's ping every 5 s, its acks: 2-5 packets) waits watched instead,
# woken by the next arrival; its 1 ms tail had been ~40 turns of iterate and pumps,
# most of an idle node's CPU (docs/benchmarks.md, bench idle).
BURST_PACKETS = 16
# A busy turn that received at most this many packets, with nothing waiting to be
# transmitted, may end its wait at the next arrival (interactive traffic) ...
EARLY_WAKE_MAX_PACKETS = 1
EARLY_WAKES_PER_S = 1000.0  # ... this often on average (so at most twice the cadence),
EARLY_WAKE_BURST = 2.0  # ... and this many in a row (a keystroke's ack, then its data)
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class Survey:
    """One pass over the slots (``ToxLoop._survey``)."""

    relay: bool  # some slot's friend connection is over a TCP relay
    sending: bool  # some slot has data unsent or unacknowledged, or owes an ack
    backlogged: bool  # some slot has bytes waiting to be transmitted (bulk)
    acks_only: bool  # every connected slot only awaits acks over our transport
    timer: float  # the earliest transport timer (inf: none)


@dataclass(frozen=True, slots=True)
class Wait:
    """What to wait for: ``period`` s at most; ``watched``: an arriving datagram ends it;
    ``skip``: toxcore's upkeep datagrams do not; ``early``: a busy wait that an arrival may
    end (tell ``Cadence.woke_early`` if one did)."""

    period: float
    busy: bool
    watched: bool
    skip: bool
    early: bool


class Cadence:
    """``socket_watched``: toxcore's UDP socket is found and polled (else every packet is
    as unwatched as a relay's). ``busy_period`` / ``idle_period``: the 1 ms turn and the
    longest idle wait while packets may arrive unwatched."""

    def __init__(self, *, socket_watched: bool, busy_period: float, idle_period: float) -> None:
        self.socket_watched = socket_watched
        self.busy_period = busy_period
        self.idle_period = idle_period
        self.last_relay = -_INF  # the last packet either way with a relayed peer
        self.last_burst = -_INF  # the last BURST_PACKETS within a tail
        self._burst_n, self._burst_from = 0, -_INF
        self._early_tokens, self._early_at = EARLY_WAKE_BURST, 0.0

    def traffic(self, now: float, received: int, relayed: bool, sent: bool = False) -> None:
        """One turn's traffic: ``received`` packets from peers, ``sent``: something of ours
        moved; ``relayed``: a packet went to or came from a peer on a TCP relay (while the
        socket is not watched, any traffic counts as relayed)."""
        if relayed or (not self.socket_watched and (received or sent)):
            self.last_relay = now
        if received:
            if now - self._burst_from > BUSY_AFTER_BURST:
                self._burst_n, self._burst_from = 0, now
            self._burst_n += received
            if self._burst_n >= BURST_PACKETS:
                self.last_burst = now

    def decide(self, now: float, survey: Survey, received: int, interval: float) -> Wait:
        """The wait after a turn at ``now`` that received ``received`` packets;
        ``interval``: toxcore's ``tox_iteration_interval`` (s)."""
        watched = self.socket_watched and not survey.relay  # every arrival wakes the wait
        burst = now - self.last_burst < BUSY_AFTER_BURST
        busy = survey.sending or burst or now - self.last_relay < BUSY_AFTER_RELAY
        # While nothing waits to be transmitted and this turn received at most one packet
        # (a keystroke in flight, its ack), an arrival also ends the busy wait, so that the
        # answer does not first wait up to a period. Bulk (a backlog, packets every turn)
        # keeps the cadence; a bucket keeps the loop below twice its rate.
        early = False
        if busy and watched and received <= EARLY_WAKE_MAX_PACKETS and not survey.backlogged:
            self._early_tokens = min(EARLY_WAKE_BURST, self._early_tokens
                                     + (now - self._early_at) * EARLY_WAKES_PER_S)
            self._early_at = now
            early = self._early_tokens >= 1
        if busy:
            period = self.busy_period
            # Only waiting for acks over our transport (nothing to transmit, no ack owed,
            # no burst): an arrival ends the wait, and the transports' timers say when
            # else to run (a chat message's acks had cost a turn a millisecond each side).
            if early and not burst and survey.acks_only:
                period = interval
        elif watched:
            period = interval
        else:  # packets from a TCP relay arrive on sockets we do not watch
            period = min(interval, self.idle_period)
        if survey.timer - now < period:  # the transports' pacers or timers (an ACK's delay)
            period = max(survey.timer - now, 0.0)
        return Wait(period, busy, watched=not busy or early, skip=not busy, early=early)

    def woke_early(self) -> None:
        """An arrival ended an ``early`` wait before its period."""
        self._early_tokens -= 1
