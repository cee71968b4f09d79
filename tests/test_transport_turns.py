"""The transport driven as the tox thread drives it, in loop turns, when a loaded CPU makes
the turns longer than the pacer's burst (2 ms): it must still fill the path."""

from __future__ import annotations

import random

import pytest

from toxbridge.testing.simpath import PathSpec
from toxbridge.testing.wanpath import DelayLine
from toxbridge.transport import BbrController, Endpoint
from toxbridge.transport.pacer import MAX_TURN_S, Pacer


def test_the_pacer_lets_a_long_turn_send_its_worth_but_not_an_idle_pause():
    p = Pacer(1e6)  # 1 MB/s: a burst of min_burst (2.7 kB), more than 2 ms of it
    p.on_sent(p.burst, 0.0)
    assert not p.can_send(0.0)
    p.can_send(0.004)  # a 4 ms turn: 4 kB of tokens, not the 2.7 kB burst
    p.on_sent(3900, 0.004)
    assert p.can_send(0.004)
    p.on_sent(10_000, 0.004)
    p.can_send(10.0)  # an idle pause: at most MAX_TURN_S of the rate
    p.on_sent(MAX_TURN_S * 1e6 - 1, 10.0)
    assert p.can_send(10.0)
    p.on_sent(2, 10.0)
    assert not p.can_send(10.0)


def goodput_in_turns(turn: float, seconds: float = 5.0, rate: float = 6.25e6) -> float:
    """Stream bytes delivered per second after the first 2 s, on 50 ms with a 64 kB queue."""
    line = DelayLine(PathSpec(delay_s=0.025, rate_Bps=rate, queue_bytes=64_000, seed=1),
                     random.Random(1))
    a, b = Endpoint(controller=BbrController(rng=random.Random(1))), Endpoint()
    filler, now, steady, n = bytes(1 << 20), 0.0, 0, 0
    while now < seconds and n < 100_000:  # bounded: simulated time and turns
        for to_b, packet in line.due(now):
            (b if to_b else a).receive_datagram(packet, now)
        for ep in (a, b):
            t = ep.timeout()
            if t is not None and t <= now:
                ep.handle_timer(now)
        while a.send_room:
            a.send(filler[: a.send_room])
        got = len(b.receive())
        steady += got if now >= 2.0 else 0
        for packet in a.datagrams_to_send(now):
            line.offer(now, (True, packet), len(packet) + 57, "fwd")
        for packet in b.datagrams_to_send(now):
            line.offer(now, (False, packet), len(packet) + 57, "rev")
        now += turn
        n += 1
    return steady / (seconds - 2.0)


@pytest.mark.parametrize("turn", [0.001, 0.004])
def test_loop_turns_longer_than_the_pacers_burst_still_fill_a_bottleneck(turn):
    # before: 4 ms turns reached 0.9 MB/s of 6.25 (the pacer let out 2 ms per turn, the
    # model took that for the path's rate); now both are at ~0.94 of the line
    assert goodput_in_turns(turn) >= 0.85 * 6.25e6
