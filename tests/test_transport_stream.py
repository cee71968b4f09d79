"""Every byte arrives exactly once and in order, whatever the path does: loss, reordering,
duplication, a narrow queue, a blackout (the simulated path of toxbridge.testing.simpath)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from toxbridge.testing.simpath import PathSpec, Simulation, pattern
from toxbridge.transport import BbrController, Endpoint
from toxbridge.transport.wire import MAX_PAYLOAD


def _pair(seed: int, window: int) -> tuple[Endpoint, Endpoint]:
    return (Endpoint(peer_window=window, send_buffer=window,
                     controller=BbrController(rng=random.Random(seed))),
            Endpoint(window=window))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(total=st.one_of(st.integers(0, 3_000), st.integers(100_000, 400_000)), loss=st.sampled_from([0.0, 0.01, 0.1, 0.3]),
       delay=st.sampled_from([0.001, 0.01, 0.05]), jitter=st.sampled_from([0.0, 0.005, 0.02]),
       duplicate=st.sampled_from([0.0, 0.05]), queue=st.sampled_from([3_000, 30_000, 300_000]),
       window=st.sampled_from([8 * MAX_PAYLOAD, 64 * 1024, 1 << 20]), seed=st.integers(0, 99))
def test_the_stream_arrives_exactly_once_in_order(total, loss, delay, jitter, duplicate, queue,
                                                   window, seed):
    spec = PathSpec(delay_s=delay, jitter_s=jitter, reorder=jitter > 0, loss=loss,
                    rate_Bps=2e6, queue_bytes=queue, seed=seed)
    sim = Simulation(spec, duplicate=duplicate, verify=True, seed=seed)
    flow = sim.add_flow(*_pair(seed, window), total=total)
    sim.run(120.0)
    assert flow.mismatch is None
    assert flow.delivered == total and (total == 0 or flow.done_at is not None)
    assert flow.receiver.receive() == b""
    assert sim.spins == 0


def test_both_directions_at_once_under_loss_and_reordering():
    spec = PathSpec(delay_s=0.02, jitter_s=0.01, reorder=True, loss=0.05, rate_Bps=2e6, seed=3)
    sim = Simulation(spec, verify=True, duplicate=0.02)
    a, b = _pair(1, 1 << 20)
    b2, a2 = b, a
    there = sim.add_flow(a, b, total=300_000)
    back = sim.add_flow(b2, a2, total=200_000)  # the same two endpoints, the other way
    sim.run(60.0)
    assert there.mismatch is None and back.mismatch is None
    assert there.delivered == 300_000 and back.delivered == 200_000


def test_a_blackout_loses_nothing():
    spec = PathSpec(delay_s=0.025, rate_Bps=6.25e6, queue_bytes=312_500, seed=5)
    sim = Simulation(spec, verify=True)
    flow = sim.add_flow(*_pair(2, 1 << 22), total=12_000_000)
    sim.blackout(0.5, 3.5)
    sim.run(30.0)
    assert flow.mismatch is None and flow.delivered == 12_000_000
    assert 3.5 < flow.done_at < 6.0
    assert pattern(5, 3) == pattern(5 + (1 << 20), 3)  # the stream's pattern repeats per MiB


def test_a_blackout_longer_than_the_ring_of_tracked_packets_still_recovers():
    """With 64 packets tracked, a 10 s blackout fills the ring with unanswered probes; the
    oldest are given up (resent later), so a probe can still go and find the path."""
    spec = PathSpec(delay_s=0.025, rate_Bps=2e6, queue_bytes=100_000, seed=6)
    sim = Simulation(spec, verify=True)
    sender = Endpoint(max_tracked=64, controller=BbrController(rng=random.Random(6)))
    flow = sim.add_flow(sender, Endpoint(), total=3_000_000)
    sim.blackout(0.5, 10.5)
    sim.run(30.0)
    assert sender.statistics().probes_sent > 64
    assert flow.mismatch is None and flow.delivered == 3_000_000 and flow.done_at < 13.0
