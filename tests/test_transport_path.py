"""What the transport does on long, lossy, narrow paths: the figures issue 16 asks for, as
properties of the simulated path (toxbridge.testing.simpath: simulated time, seeded loss).
The goodput is stream bytes delivered to the receiving app; the line's rate counts
toxcore's and UDP/IP's 57 bytes per packet, so a full packet carries at most 94.5 % of it.
"""

from __future__ import annotations

import dataclasses
import random
import statistics

import pytest

from toxbridge.streams import Limits, Mux, Priority, StreamData
from toxbridge.testing.simpath import PathSpec, Simulation
from toxbridge.transport import BbrController, Endpoint

MBIT50 = 50e6 / 8


def _endpoint(seed: int) -> Endpoint:
    return Endpoint(controller=BbrController(rng=random.Random(seed)))


def _one_flow(rtt: float, loss: float, seconds: float, *, queue_rtts: float = 1.0,
              rate: float = MBIT50, seed: int = 1):
    spec = PathSpec(delay_s=rtt / 2, loss=loss, rate_Bps=rate,
                    queue_bytes=int(rate * rtt * queue_rtts), seed=seed)
    sim = Simulation(spec, seed=seed)
    flow = sim.add_flow(_endpoint(seed), Endpoint())
    sim.run(seconds)
    return sim, flow


@pytest.mark.parametrize("rtt, loss, share", [
    (0.050, 0.0, 0.80),
    (0.050, 0.01, 0.60),
    (0.150, 0.01, 0.50),
])
def test_one_flow_fills_a_50_mbit_bottleneck_despite_random_loss(rtt, loss, share):
    seconds = 6.0 if rtt < 0.1 else 8.0
    sim, flow = _one_flow(rtt, loss, seconds)
    whole = flow.delivered / seconds
    assert whole >= share * MBIT50, f"{whole / 1e6:.2f} MB/s over {seconds} s"
    assert sim.goodput(flow, 2.0, seconds) >= 0.85 * MBIT50  # steady: ~93 % in each case
    if loss:  # the loss was real, and the controller did not take it for congestion
        assert flow.sender.statistics().packets_lost > 0.5 * loss * flow.sender.statistics().packets_sent


@pytest.mark.parametrize("rtt", [0.050, 0.150])
def test_a_late_clock_changes_nothing_on_a_bench_wan_bottleneck(rtt):
    """bench wan's bottleneck (50 mbit, a buffer of 50 ms of it) with the clock the tox
    thread uses (time.monotonic(), here 9 h past 0). It once sent every new transport to
    PROBE_RTT at its first ack, and startup ended there at 4 packets a round trip: over 8 s
    0.82 of the line instead of 0.93 at 50 ms (0.82 / 0.86 at 150 ms) in this simulator,
    and on the real path the climb back took ~6 s (bench wan's path_ratio 0.3)."""
    figures = []
    for start in (0.0, 33_000.0):
        spec = PathSpec(delay_s=rtt / 2, rate_Bps=MBIT50, queue_bytes=int(MBIT50 * 0.05), seed=1)
        sim = Simulation(spec, seed=1, start=start)
        flow = sim.add_flow(_endpoint(1), Endpoint())
        sim.run(start + 8.0)
        figures.append(flow.delivered / 8.0)
    assert figures[1] >= 0.99 * figures[0] and figures[1] >= 0.8 * MBIT50, figures


def test_a_loss_ceiling_set_in_startup_does_not_hold_the_flow_down():
    """150 ms, bench wan's bottleneck: 4 % loss for the first 0.9 s (startup), then 1 %.
    The early losses set the loss ceiling before the model knew the path, and the model
    then measured what the ceiling let through; the ceiling's floor is the model's BDP, so
    only its climb could get the flow out. Climbing a packet a round, the last 4 of 12 s
    moved 0.15 of the line (seeds 1-4: 0.15-0.32; on the real line 0.55 at 1 % loss);
    doubling its step each round, 0.83 (seeds 1-4: 0.83-0.94)."""
    start = 33_000.0
    spec = PathSpec(delay_s=0.075, loss=0.04, rate_Bps=MBIT50, queue_bytes=int(MBIT50 * 0.05), seed=1)
    sim = Simulation(spec, seed=1, start=start)
    flow = sim.add_flow(_endpoint(1), Endpoint())
    sim.run(start + 0.9)
    assert flow.sender.cc.ceiling_cuts >= 1 and not flow.sender.cc.filled_pipe
    later = dataclasses.replace(spec, loss=0.01)
    sim.fwd.reconfigure(later)
    sim.rev.reconfigure(later)
    sim.run(start + 12.0)
    assert sim.goodput(flow, start + 8.0, start + 12.0) >= 0.75 * MBIT50


class _MuxApp:
    """A stream mux on one end of the simulated path, its frames the transport's byte
    stream (in the daemon they ride in Link frames, one more layer of the same stream). The
    sending app keeps its stream's buffer full; the receiving app consumes at once, and the
    credit goes back in the flow the other way."""

    def __init__(self, mux: Mux, sid: int | None = None) -> None:
        self.mux, self.sid, self.received = mux, sid, 0

    def source(self, room: int) -> bytes:
        mux, out = self.mux, bytearray()
        if self.sid is not None:
            while n := mux.send_room(self.sid):
                mux.send(self.sid, bytes(n))
        while room - len(out) >= 1024:
            chunk = mux.data_to_send(min(room - len(out), 16384))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def sink(self, data: bytes) -> None:
        mux = self.mux
        for i in range(0, len(data), 32768):  # within the mux's receive buffer
            mux.receive_data(data[i:i + 32768])
            while (event := mux.next_event()) is not None:
                if isinstance(event, StreamData):
                    self.received += len(event.data)
                    mux.consume(event.stream_id, len(event.data))


def _stream_over_the_path(rtt: float, limits: Limits, seconds: float, loss: float = 0.0) -> float:
    """One INTERACTIVE stream (the channel's kind) through bench wan's bottleneck: the
    share of the line its app receives."""
    spec = PathSpec(delay_s=rtt / 2, loss=loss, rate_Bps=MBIT50, queue_bytes=int(MBIT50 * 0.05),
                    seed=1)
    sim = Simulation(spec, seed=1, start=33_000.0)
    a = _MuxApp(Mux(b"A" * 8, initiator=True, limits=limits))
    a.sid = a.mux.open_stream(1, Priority.INTERACTIVE)
    b = _MuxApp(Mux(b"B" * 8, initiator=False, limits=limits))
    ea, eb = _endpoint(1), Endpoint()
    sim.add_flow(ea, eb, source=a.source, sink=b.sink)
    sim.add_flow(eb, ea, source=b.source, sink=a.sink)
    sim.run(sim.now + seconds)
    return b.received / seconds / MBIT50


@pytest.mark.parametrize("rtt, loss, share", [(0.050, 0.0, 0.85), (0.150, 0.0, 0.8),
                                              (0.150, 0.01, 0.78)])
def test_a_stream_of_the_mux_fills_the_bottleneck(rtt, loss, share):
    """The channel is a mux stream: it moves at most its window of credit per credit loop
    (a round trip, and under loss the wait behind a lost packet). Over 10 s, startup in:
    with 256 KiB 0.62 of the line at 50 ms, 0.20 at 150 ms (on the real line of bench wan
    the channel was out of credit 61 % of the time at 3.0-3.5 MB/s); with 2 MiB 0.92 / 0.86,
    but 0.74 at 150 ms and 1 % loss; with 4 MiB 0.92 / 0.87 / 0.835."""
    assert _stream_over_the_path(rtt, Limits(), 10.0, loss) >= share


def test_the_old_stream_window_reproduces_the_cap():
    """The same path with the old window: this test measures credit, not the transport."""
    assert _stream_over_the_path(0.150, Limits(stream_window=256 * 1024), 8.0) < 0.3  # 0.20


def test_a_deep_buffer_is_not_filled():
    """An 8-round-trip drop-tail buffer: a loss-based controller would fill it (bufferbloat);
    the model keeps the standing queue far below one round trip."""
    rtt = 0.050
    sim, flow = _one_flow(rtt, 0.0, 6.0, queue_rtts=8.0)
    queue = [q for t, q in sim.queue_delays if t >= 2.0]
    assert statistics.median(queue) < 0.25 * rtt
    assert sorted(queue)[int(0.9 * len(queue))] < 1.0 * rtt
    assert sim.goodput(flow, 2.0, 6.0) >= 0.85 * MBIT50
    assert flow.sender.statistics().packets_lost < 0.02 * flow.sender.statistics().packets_sent


def _two_flows(start2: float, seconds: float, rate: float, seed: int):
    rtt = 0.050
    sim = Simulation(PathSpec(delay_s=rtt / 2, rate_Bps=rate, queue_bytes=int(rate * rtt),
                              seed=seed), seed=seed)
    first = sim.add_flow(_endpoint(10 * seed + 1), Endpoint())
    second = sim.add_flow(_endpoint(10 * seed + 2), Endpoint(), start_at=start2)
    sim.run(seconds)
    return sim, first, second


def test_two_flows_started_together_share_a_bottleneck_fairly():
    sim, a, b = _two_flows(0.0, 8.0, MBIT50, seed=1)
    ga, gb = sim.goodput(a, 2.0, 8.0), sim.goodput(b, 2.0, 8.0)
    assert max(ga, gb) / min(ga, gb) < 1.5
    assert ga + gb >= 0.85 * MBIT50


def test_a_late_flow_gets_a_fair_share_within_a_factor_1_5():
    """The second flow starts 2 s later, into the queue the first keeps full. Over the 15 s
    after its first 5 s the split is within 1.5 (seeds 1-6: 1.16-1.34; docs/wire.md §4.3)."""
    rate = 20e6 / 8
    sim, a, b = _two_flows(2.0, 22.0, rate, seed=3)
    ga, gb = sim.goodput(a, 7.0, 22.0), sim.goodput(b, 7.0, 22.0)
    assert max(ga, gb) / min(ga, gb) < 1.5
    assert ga + gb >= 0.85 * rate
    queue = [q for t, q in sim.queue_delays if t >= 7.0]
    assert statistics.median(queue) < 0.050  # below the round trip, even with two flows


def test_after_a_5_s_blackout_data_flows_again_within_two_round_trips():
    rtt = 0.050
    spec = PathSpec(delay_s=rtt / 2, rate_Bps=MBIT50, queue_bytes=int(MBIT50 * rtt), seed=4)
    sim = Simulation(spec, sample_every=0.005)
    flow = sim.add_flow(_endpoint(4), Endpoint())
    sim.blackout(2.0, 7.0)
    sim.run(8.0)
    before = sim.goodput(flow, 1.0, 2.0)
    at_return = max(d for t, d in flow.samples if t <= 7.0)
    first = min(t for t, d in flow.samples if d > at_return)
    assert first - 7.0 < 2 * rtt
    assert sim.goodput(flow, 7.0 + 2 * rtt, 8.0) >= 0.9 * before  # and at full rate
    probes = flow.sender.statistics().probes_sent
    assert 5.0 / rtt < probes < 5.0 / (0.2 * rtt)  # ~3 per round trip, no backoff to minutes
