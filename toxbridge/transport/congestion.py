"""A BBR-style congestion controller (after BBR v1): a model of the path, not a reaction to
loss. It keeps the largest delivery rate seen over the last 10 round trips and the smallest
round trip of the last 10 s; it paces at gain x that rate and keeps at most 1.5 x their
product (the bandwidth-delay product, BDP) in flight. Random loss does not move either
estimate, so 1 % loss costs ~1 % of the rate, where a loss-based controller (Reno, CUBIC,
toxcore's own) would halve its window again and again (docs/wire.md §4 says why we chose it).

States: STARTUP (gain 2/ln 2, until the rate stops growing by 25 % for 3 rounds), DRAIN (the
queue built in startup drains), PROBE_BW (gains 1.25, 0.75, then 1 for six round trips, over
and over: probe for more, drain what that queued, cruise), PROBE_RTT (every 10 s without a
new minimum, 4 packets in flight for 200 ms and a round trip, so that flows sharing a
bottleneck see its empty-queue round trip and converge to fair shares). Beside the model, a
loss ceiling (see LOSS_THRESH) answers rounds that lose far more than random loss would.
"""

from __future__ import annotations

import random
from collections import deque

from .wire import MAX_DATAGRAM

HIGH_GAIN = 2.885  # 2 / ln 2: doubles the rate each round trip in startup
DRAIN_GAIN = 1 / HIGH_GAIN
CYCLE_GAINS = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
# BBR v1 has 2. 1.5 still covers the 1.25 probe and stretched acks, and flows sharing a
# queue then pace instead of filling it: a late flow's share converges (docs/wire.md §4.3)
CWND_GAIN = 1.5
BW_ROUNDS = 10  # the bandwidth filter's window, in round trips
MIN_RTT_WINDOW = 10.0  # s
# A flight (path_flight) goes out within this time at least, whatever the model's rate: the
# wait for its acks already spaces the flights, and a flight paced at the rate it measures
# itself by never finds a faster path (bench wan's 50 ms relay row: 0.30 MB/s, the model at
# 0.5-0.6 MB/s, each flight 130 ms on its way and one round trip waiting)
FLIGHT_SEND_S = 0.030
PROBE_RTT_TIME = 0.2  # s
FULL_BW_GROWTH = 1.25
FULL_BW_ROUNDS = 3
MIN_CWND_PACKETS = 4
# A round that loses more than LOSS_THRESH of its packets (and at least LOSS_MIN_PACKETS)
# is a full queue, not random loss: the window's ceiling drops to BETA x what was in flight
# and then climbs back, by 1 packet the first round, 2 the next, 4, ... (BBR v2's probing
# up) until the next such round. The decrease takes more from a larger flow, the increase
# gives each the same: flows sharing a drop-tail queue converge to fair shares (the model
# alone is neutral there: any split of a full queue is a fixed point). Random loss now and
# then puts 4 of a short round's packets over 2 %: the ceiling then comes down to the BDP
# at most, which still fills the path -- if the model knows the path. A ceiling set in
# startup, before the model did, held the flow at its own rate (the model measures what
# the ceiling lets through, and the floor is the model's BDP): climbing 1 packet a round,
# it took ~1 min at 150 ms (issue 16, 1 % loss: 0.55 of the bottleneck); doubling, ~1 s.
LOSS_THRESH = 0.02
LOSS_MIN_PACKETS = 8
BETA = 0.7
AI_PACKETS = 1  # the ceiling's first step up after a cut; each round without one doubles it

# Acks come in bursts when the shell works in loop turns (~1 ms: the receiver acks what one
# turn brought, the sender sees it a turn later), so a window of gain x rate x min RTT
# would stall between bursts when the turn is as long as the round trip (loopback, a LAN).
# The window gets the largest excess of acked bytes over the model's rate in an ack epoch
# of the last 10 rounds (Linux BBR's extra_acked), at most one window more.
ACK_EPOCH_RESET = 1.0  # s: an epoch never runs longer

STARTUP, DRAIN, PROBE_BW, PROBE_RTT = "startup", "drain", "probe_bw", "probe_rtt"
_INF = float("inf")


class BbrController:
    """``cwnd`` (bytes) and ``pacing_rate`` (bytes/s) are what the sender obeys. ``rng``
    picks the first probe-bandwidth phase, so that flows started together do not probe in
    lockstep."""

    def __init__(self, *, mss: int = MAX_DATAGRAM, initial_rtt: float = 0.1,
                 initial_cwnd_packets: int = 32, rng: random.Random | None = None) -> None:
        self.mss = mss
        self.min_cwnd = MIN_CWND_PACKETS * mss
        self.cwnd = initial_cwnd_packets * mss
        self._initial_cwnd = self.cwnd
        self.pacing_rate = HIGH_GAIN * self.cwnd / initial_rtt
        self._rng = rng if rng is not None else random.Random(0)
        self.state = STARTUP
        self.pacing_gain = self.cwnd_gain = HIGH_GAIN
        # delivery-rate sampling (draft-cheng-iccrg-delivery-rate-estimation)
        self.delivered = 0
        self._delivered_time = 0.0
        self._first_sent_time = 0.0
        self._app_limited_until = 0  # a delivered count; 0: not app-limited
        # the model
        self.max_bw = 0.0
        self._bw_rounds: deque[float] = deque(maxlen=BW_ROUNDS - 1)
        self._bw_this_round = 0.0
        self.min_rtt = float("inf")
        # None until the first sample: a real clock (time.monotonic()) is hours past 0, and
        # "0" made the first ack find the minimum expired, so every new transport went to
        # PROBE_RTT at once (issue 16: see _update_state)
        self._min_rtt_stamp: float | None = None
        self.round_count = 0
        self._next_round_delivered = 0
        self._full_bw = 0.0
        self._full_bw_count = 0
        self.filled_pipe = False
        self._cycle_index = 0
        self._cycle_stamp = 0.0
        self._probe_rtt_done: float | None = None
        self._probe_rtt_round = 0
        self._blackout = False  # persistent loss: only probes until an ack comes back
        self.bytes_lost = 0
        self.inflight_hi = float("inf")  # the loss-driven ceiling (inf: none yet)
        # flights (set_flight): the most one may send on a short path, and its round trip
        self.path_flight = _INF
        self.path_hold = 0.0
        self._flight_sent = 0  # bytes sent since nothing was in flight
        self._flight_limit = _INF  # path_flight, x a long path's round trip over path_hold
        # False: no new flight may start (the shell's barrier: another flight over the same
        # relay is still out, toxbridge.linkpath.share_relay)
        self.flight_open = True
        self._hi_step = AI_PACKETS  # packets the ceiling climbs at the end of this round
        self._queue_was_full = False  # the round that just ended lost as a full queue does
        self.ceiling_cuts = 0  # rounds taken for a full queue (a trace reads it)
        self._round_lost = 0
        self._round_delivered = 0
        self._max_inflight_round = 0
        self._loss_quiet_until = 0  # a round count: losses before it are a blackout's
        self._epoch_start: float | None = None
        self._epoch_acked = 0
        self._extra_rounds: deque[float] = deque(maxlen=BW_ROUNDS - 1)
        self._extra_this_round = 0.0
        self.extra_acked = 0.0

    # -- what recovery reports ------------------------------------------------------------

    def on_sent(self, now: float, size: int, bytes_in_flight: int) -> tuple:
        if bytes_in_flight == 0:  # a new flight: its rate is timed from here
            self._first_sent_time = self._delivered_time = now
            self._flight_sent = 0
        self._flight_sent += size
        return (self.delivered, self._delivered_time, self._first_sent_time,
                self._app_limited_until != 0)

    def on_app_limited(self, bytes_in_flight: int) -> None:
        """The sender had nothing to send with room in its window: the samples of this
        flight measure the app, not the path (they may raise the estimate, never lower it)."""
        self._app_limited_until = (self.delivered + bytes_in_flight) or 1

    def on_ack(self, now: float, acked_bytes: int, sent_time: float, state: tuple,
               bytes_in_flight: int) -> None:
        """``sent_time``/``state``: of the most recently sent packet this ack acknowledged."""
        self.delivered += acked_bytes
        self._delivered_time = now
        if bytes_in_flight == 0:
            self._flight_sent = 0  # the flight is over
        if self._blackout:  # what the blackout lost is declared now: not a full queue
            self._blackout = False
            self._loss_quiet_until = self.round_count + 2
        p_delivered, p_delivered_time, p_first_sent, p_app_limited = state
        if self._app_limited_until and self.delivered > self._app_limited_until:
            self._app_limited_until = 0
        self._round_delivered += acked_bytes
        if bytes_in_flight + acked_bytes > self._max_inflight_round:
            self._max_inflight_round = bytes_in_flight + acked_bytes
        round_start = p_delivered >= self._next_round_delivered
        if round_start:
            self._end_loss_round()
            self._next_round_delivered = self.delivered
            self.round_count += 1
            self._bw_rounds.append(self._bw_this_round)
            self._bw_this_round = 0.0
            self.max_bw = max(self._bw_rounds)
            self._extra_rounds.append(self._extra_this_round)
            self._extra_this_round = 0.0
            self.extra_acked = max(self._extra_rounds)
        rtt = now - sent_time
        interval = max(sent_time - p_first_sent, now - p_delivered_time)
        self._first_sent_time = sent_time
        if interval > 0 and interval >= min(rtt, self.min_rtt):
            rate = (self.delivered - p_delivered) / interval
            if rate >= self.max_bw or not p_app_limited:
                if rate > self._bw_this_round:
                    self._bw_this_round = rate
                if rate > self.max_bw:
                    self.max_bw = rate
        stamp = self._min_rtt_stamp
        expired = stamp is not None and now - stamp > MIN_RTT_WINDOW
        if rtt <= self.min_rtt or expired:
            if rtt < self.min_rtt or self.state != PROBE_RTT:
                self.min_rtt = rtt
                self._min_rtt_stamp = now
        self._update_ack_aggregation(now, acked_bytes)
        self._update_state(now, round_start, bytes_in_flight, expired)
        self._update_outputs(acked_bytes)

    def _update_ack_aggregation(self, now: float, acked_bytes: int) -> None:
        if not self.max_bw:
            return
        start = self._epoch_start
        expected = 0.0 if start is None else self.max_bw * (now - start)
        if start is None or self._epoch_acked <= expected or now - start > ACK_EPOCH_RESET:
            self._epoch_start, self._epoch_acked, expected = now, 0, 0.0
        self._epoch_acked += acked_bytes
        extra = min(self._epoch_acked - expected, self.cwnd)
        if extra > self._extra_this_round:
            self._extra_this_round = extra
            if extra > self.extra_acked:
                self.extra_acked = extra

    def set_flight(self, flight: float, hold: float = 0.0) -> None:
        """Send in flights: after ``flight`` bytes, x the least round trip over ``hold`` (s)
        where that is more than 1 (a long path), nothing more until nothing is in flight.
        ``flight`` inf: no flights (the default). The shell sets them for a TCP relay
        (toxbridge.linkpath.RELAY_FLIGHT, RELAY_HOLD_S). Not the model's rate x the round
        trip: flights that wait for their acks hold the rate it measures to their own."""
        self.path_flight, self.path_hold = flight, hold
        self._update_flight_limit()

    def _update_flight_limit(self) -> None:
        limit, hold = self.path_flight, self.path_hold
        if limit != _INF and hold > 0 and self.min_rtt != _INF and self.min_rtt > hold:
            limit *= self.min_rtt / hold
        self._flight_limit = limit

    def path_changed(self) -> None:
        """The flow moved to another path (toxcore: from a TCP relay to direct UDP): what
        the model learned says little there, so it probes again from its last rate.
        Startup's growth checks start over; the estimates stay until new samples age them
        out. Under the relay's flights the rate had stopped growing at their pace, and
        probe_bw's 1.25 x per cycle took seconds to find a direct path's rate."""
        if self.state != PROBE_RTT:
            self.state, self.pacing_gain, self.cwnd_gain = STARTUP, HIGH_GAIN, HIGH_GAIN
        self.filled_pipe = False
        self._full_bw, self._full_bw_count = 0.0, 0

    def on_lost(self, now: float, lost_bytes: int, bytes_in_flight: int) -> None:
        self.bytes_lost += lost_bytes  # random loss moves no estimate: that is the point
        if bytes_in_flight == 0:
            self._flight_sent = 0
        if self.round_count >= self._loss_quiet_until:
            self._round_lost += lost_bytes

    def _end_loss_round(self) -> None:
        lost, total = self._round_lost, self._round_lost + self._round_delivered
        self._queue_was_full = lost >= LOSS_MIN_PACKETS * self.mss and lost > LOSS_THRESH * total
        if self._queue_was_full:
            # never below the model's BDP and the room for acks that come in bursts: below
            # it the ceiling would cut the delivery rate, the model would follow, and random
            # loss would spiral it down (seen: 1 % loss, 50 ms: 2.3 MB/s of 6.25 with no
            # floor; with the BDP alone and the tox thread's turns, 0.79 of the line)
            floor = self.bdp() + self.extra_acked
            self.inflight_hi = max(BETA * self._max_inflight_round, floor, self.min_cwnd)
            self.ceiling_cuts += 1
            self._hi_step = AI_PACKETS
        elif self.inflight_hi != float("inf"):
            self.inflight_hi += self._hi_step * self.mss
            self._hi_step *= 2
            if self.inflight_hi > 4 * self.bdp(CWND_GAIN):
                self.inflight_hi = float("inf")  # far above the model: no ceiling
        self._round_lost = self._round_delivered = self._max_inflight_round = 0

    def on_pto(self, now: float, count: int) -> None:
        if count >= 2:  # two probe timeouts in a row: only probes until an ack returns
            self._blackout = True

    # -- the state machine -------------------------------------------------------------------

    def bdp(self, gain: float = 1.0) -> float:
        if not self.max_bw or self.min_rtt == float("inf"):
            return self._initial_cwnd
        return gain * self.max_bw * self.min_rtt

    def _update_state(self, now: float, round_start: bool, inflight: int, expired: bool) -> None:
        if round_start and not self.filled_pipe:
            if not self._app_limited_until:
                if self.max_bw >= self._full_bw * FULL_BW_GROWTH:
                    self._full_bw, self._full_bw_count = self.max_bw, 0
                else:
                    self._full_bw_count += 1
            elif self._queue_was_full:
                # An app-limited round cannot show that the rate stopped growing, but a
                # full queue shows that the pipe is full. The tox thread feeds the transport
                # a loop turn at a time, and at startup's 2.9 x the rate a longer turn's
                # worth runs out: nearly every round was app-limited, startup never ended,
                # and paced at 2.9 x into the queue again and again (issue 16, 150 ms: 7,151
                # packets dropped at the bottleneck in one row).
                self._full_bw_count += 1
            self.filled_pipe = self._full_bw_count >= FULL_BW_ROUNDS
        state = self.state
        if state == STARTUP and self.filled_pipe:
            self.state, self.pacing_gain, self.cwnd_gain = DRAIN, DRAIN_GAIN, HIGH_GAIN
            state = DRAIN
        if state == DRAIN and inflight <= self.bdp():
            self._enter_probe_bw(now)
        elif self.state == PROBE_BW:
            gain = self.pacing_gain
            due = now - self._cycle_stamp > self.min_rtt
            if (gain == 1.0 and due) or (gain > 1.0 and due and inflight >= self.bdp(gain)) \
                    or (gain < 1.0 and (due or inflight <= self.bdp())):
                self._cycle_index = (self._cycle_index + 1) % len(CYCLE_GAINS)
                self._cycle_stamp = now
                self.pacing_gain = CYCLE_GAINS[self._cycle_index]
        if self.state != PROBE_RTT and expired and self.min_rtt != float("inf"):
            self.state, self.pacing_gain, self.cwnd_gain = PROBE_RTT, 1.0, 1.0
            self._probe_rtt_done = None
        if self.state == PROBE_RTT:
            # What 4 packets in flight deliver measures PROBE_RTT, not the path: its samples
            # are app-limited (Linux BBR does the same). Before, startup's full-pipe check
            # counted its rounds ("no growth for 3 rounds") and left startup at the rate of
            # 4 packets a round trip: 0.1 MB/s at 50 ms, then ~6 s to reach 6 MB/s.
            self.on_app_limited(inflight)
            if self._probe_rtt_done is None:
                if inflight <= self.min_cwnd:
                    self._probe_rtt_done = now + PROBE_RTT_TIME
                    self._probe_rtt_round = self.round_count
            elif now >= self._probe_rtt_done and self.round_count > self._probe_rtt_round:
                self._min_rtt_stamp = now
                if self.filled_pipe:
                    self._enter_probe_bw(now)
                else:
                    self.state, self.pacing_gain, self.cwnd_gain = STARTUP, HIGH_GAIN, HIGH_GAIN

    def _enter_probe_bw(self, now: float) -> None:
        self.state, self.cwnd_gain = PROBE_BW, CWND_GAIN
        # any phase but the draining one, at random (BBR's way to desynchronize flows)
        index = self._rng.randrange(len(CYCLE_GAINS) - 1)
        self._cycle_index = index + 1 if index >= 1 else index
        self.pacing_gain = CYCLE_GAINS[self._cycle_index]
        self._cycle_stamp = now

    def _update_outputs(self, acked_bytes: int) -> None:
        if self.max_bw:
            rate = self.pacing_gain * self.max_bw
            if self.filled_pipe or rate > self.pacing_rate:
                self.pacing_rate = rate
        if self.path_flight != _INF:
            if self.pacing_rate * FLIGHT_SEND_S < self.path_flight:
                self.pacing_rate = self.path_flight / FLIGHT_SEND_S
            self._update_flight_limit()
        # room for acks that come in bursts, and for delayed, stretched ones
        target = self.bdp(self.cwnd_gain) + self.extra_acked + 3 * self.mss
        cwnd = self.cwnd
        if self.filled_pipe:
            cwnd = min(cwnd + acked_bytes, target)
        elif cwnd < target or self.delivered < self._initial_cwnd:
            cwnd += acked_bytes
        self.cwnd = max(int(cwnd), self.min_cwnd)

    def window(self) -> int:
        """The bytes that may be in flight now."""
        if self._blackout:
            w = self.min_cwnd
        elif self.state == PROBE_RTT:
            w = min(self.cwnd, self.min_cwnd)
        else:
            hi = self.inflight_hi
            w = self.cwnd if hi > self.cwnd else max(int(hi), self.min_cwnd)
        if self._flight_sent >= self._flight_limit:
            return 1  # the flight is whole: the next one starts once nothing is in flight
        if self._flight_sent == 0 and not self.flight_open and self._flight_limit != _INF:
            return 0  # nothing in flight, and no new flight yet
        return w

    def statistics(self) -> dict:
        return {"state": self.state, "max_bw_Bps": self.max_bw,
                "min_rtt_s": None if self.min_rtt == float("inf") else self.min_rtt,
                "cwnd": self.cwnd, "pacing_rate_Bps": self.pacing_rate,
                "round_count": self.round_count, "bytes_lost": self.bytes_lost,
                "pacing_gain": self.pacing_gain, "cwnd_gain": self.cwnd_gain,
                "inflight_hi": None if self.inflight_hi == float("inf") else int(self.inflight_hi),
                "ceiling_cuts": self.ceiling_cuts, "extra_acked": int(self.extra_acked),
                "app_limited": self._app_limited_until != 0, "filled_pipe": self.filled_pipe,
                "delivered": self.delivered}
