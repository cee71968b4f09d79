"""The WAN emulator's core, with the clock as an argument: exact tables of what comes out when."""

from __future__ import annotations

import random

import pytest

from toxbridge.testing.wanpath import DelayLine, Fate, PathSpec, ipv4_size_and_source


class ScriptedRandom(random.Random):
    """random() returns the given values in turn."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def run(line: DelayLine, offers: list[tuple[float, str, int, int]]):
    """Offer (time, name, size, direction) packets, then take them out at each next_due():
    ({name: fate}, {name: release time}, in release order)."""
    fates = {name: line.offer(at, name, size, d) for at, name, size, d in offers}
    out = {}
    while (t := line.next_due()) is not None:
        for name in line.due(t):
            out[name] = round(t, 6)
    return fates, out


def test_constant_delay_releases_each_packet_after_the_one_way_delay_in_order():
    line = DelayLine(PathSpec(delay_s=0.025))
    fates, out = run(line, [(0.0, "a", 100, 0), (0.001, "b", 100, 0), (0.0105, "c", 100, 1)])
    assert set(fates.values()) == {Fate.HELD}
    assert out == {"a": 0.025, "b": 0.026, "c": 0.0355}
    assert line.held == 0 and line.next_due() is None
    assert line.stats.released == 3 and line.stats.bytes_released == 300


def test_next_due_is_the_earliest_release():
    line = DelayLine(PathSpec(delay_s=0.010))
    assert line.next_due() is None
    line.offer(1.0, "a", 1, 0)
    line.offer(1.002, "b", 1, 1)
    assert line.next_due() == pytest.approx(1.010)
    assert line.due(1.0099) == []
    assert line.due(1.0100001) == ["a"]
    assert line.next_due() == pytest.approx(1.012)


@pytest.mark.parametrize(
    "reorder, expected",
    [
        # jitter 10 ms: a gets +10 ms (u=1.0), b -10 ms (u=0.0), c +0 (u=0.5)
        (False, {"a": 0.035, "b": 0.035, "c": 0.035}),  # b and c wait for a: no overtaking
        (True, {"b": 0.016, "c": 0.027, "a": 0.035}),  # b and c overtake a
    ],
)
def test_jitter_keeps_order_unless_reordering_is_asked_for(reorder, expected):
    rng = ScriptedRandom([1.0, 0.0, 0.5])
    line = DelayLine(PathSpec(delay_s=0.025, jitter_s=0.010, reorder=reorder), rng=rng)
    _, out = run(line, [(0.0, "a", 10, 0), (0.001, "b", 10, 0), (0.002, "c", 10, 0)])
    assert out == expected
    assert list(out) == list(expected)  # the release order too


def test_jitter_never_makes_a_delay_negative():
    line = DelayLine(PathSpec(delay_s=0.002, jitter_s=0.010, reorder=True), rng=ScriptedRandom([0.0]))
    line.offer(5.0, "a", 1, 0)
    assert line.next_due() == 5.0


def test_loss_drops_exactly_the_packets_whose_draw_is_below_the_probability():
    draws = [0.5, 0.05, 0.0999, 0.1, 0.99]
    line = DelayLine(PathSpec(delay_s=0.001, loss=0.1), rng=ScriptedRandom(draws))
    fates = [line.offer(0.0, i, 100, 0) for i in range(5)]
    assert fates == [Fate.HELD, Fate.LOST, Fate.LOST, Fate.HELD, Fate.HELD]
    assert line.due(1.0) == [0, 3, 4]
    assert (line.stats.lost, line.stats.dropped, line.stats.offered) == (2, 2, 5)


def test_seeded_loss_is_reproducible_and_near_its_probability():
    def fates(seed):
        line = DelayLine(PathSpec(loss=0.1, seed=seed))
        return [line.offer(i * 1e-4, i, 1000, 0) for i in range(20_000)], line.stats

    first, stats = fates(7)
    assert first == fates(7)[0]
    assert first != fates(8)[0]
    assert 0.09 < stats.lost / stats.offered < 0.11


# A 1000 B/s bottleneck with 2500 bytes of buffer and 10 ms of delay. The backlog is the
# bytes not yet sent on: (busy until - now) x rate.
BOTTLENECK_TABLE = [
    # time, name, size, direction, fate, release
    (0.0, "p1", 1000, 0, Fate.HELD, 1.010),  # sent on 0 -> 1 s
    (0.0, "p2", 1000, 0, Fate.HELD, 2.010),  # 1 -> 2 s
    (0.0, "p3", 1000, 0, Fate.QUEUE_FULL, None),  # backlog 2000 + 1000 > 2500
    (0.0, "q1", 1000, 1, Fate.HELD, 1.010),  # the other direction has its own queue
    (0.6, "p4", 500, 0, Fate.HELD, 2.510),  # backlog 1400 + 500: 2 -> 2.5 s
    (1.5, "p5", 1000, 0, Fate.HELD, 3.510),  # backlog 1000 + 1000: 2.5 -> 3.5 s
]


def test_bottleneck_serves_each_direction_at_its_rate_and_drops_the_tail():
    line = DelayLine(PathSpec(delay_s=0.010, rate_Bps=1000, queue_bytes=2500))
    got = {name: line.offer(at, name, size, d) for at, name, size, d, _, _ in BOTTLENECK_TABLE}
    assert line.backlog_bytes(1.5, 0) == pytest.approx(2000)
    assert line.offer(1.5, "p6", 501, 0) is Fate.QUEUE_FULL  # 2000 + 501 > 2500
    assert line.offer(1.5, "p7", 500, 0) is Fate.HELD  # exactly full is allowed: 3.5 -> 4 s
    releases = {}
    while (t := line.next_due()) is not None:
        for name in line.due(t):
            releases[name] = round(t, 6)
    for _, name, _, _, fate, release in BOTTLENECK_TABLE:
        assert got[name] is fate, name
        assert releases.get(name) == release, name
    assert releases["p7"] == 4.01
    assert line.stats.queue_full == 2


def test_a_lost_packet_still_used_the_bottleneck():
    line = DelayLine(PathSpec(rate_Bps=1000, queue_bytes=10_000, loss=0.5), rng=ScriptedRandom([0.1, 0.9]))
    assert line.offer(0.0, "a", 1000, 0) is Fate.LOST
    assert line.offer(0.0, "b", 1000, 0) is Fate.HELD
    assert line.due(1.999) == [] and line.due(2.0) == ["b"]


def test_a_cut_loses_what_is_in_flight_and_everything_until_mended():
    line = DelayLine(PathSpec(delay_s=0.025, rate_Bps=10_000, queue_bytes=100_000))
    for i in range(3):
        line.offer(0.0, i, 1000, 0)
    assert line.cut(0.01, True) == [0, 1, 2]
    assert line.held == 0 and line.is_cut
    assert line.offer(0.02, "x", 1000, 0) is Fate.CUT
    assert line.cut(35.0, False) == []
    assert line.offer(35.0, "y", 1000, 0) is Fate.HELD  # the bottleneck's queue went with the cut
    assert line.due(35.125) == ["y"]
    assert line.stats.cut == 4 and line.stats.dropped == 4
    s = line.stats
    assert s.offered == s.released + s.dropped + line.held


def test_the_line_holds_at_most_max_held_packets():
    line = DelayLine(PathSpec(delay_s=1.0, max_held=2))
    assert [line.offer(0.0, i, 10, 0) for i in range(3)] == [Fate.HELD, Fate.HELD, Fate.LINE_FULL]
    assert line.stats.max_held == 2 and line.stats.line_full == 1


def test_drain_empties_the_line_in_release_order():
    line = DelayLine(PathSpec(delay_s=0.01))
    line.offer(0.002, "late", 1, 1)
    line.offer(0.0, "early", 1, 0)
    assert line.drain() == ["early", "late"]
    assert line.held == 0


@pytest.mark.parametrize("bad", [dict(loss=1.5), dict(delay_s=-1), dict(rate_Bps=0), dict(max_held=0)])
def test_a_bad_path_is_refused(bad):
    with pytest.raises(ValueError):
        PathSpec(**bad)


def test_spec_round_trips_through_a_dict():
    spec = PathSpec(delay_s=0.075, loss=0.01, rate_Bps=6.25e6, seed=3)
    assert PathSpec.from_dict(spec.to_dict()) == spec
    assert spec.rtt_s == pytest.approx(0.150)


UDP = bytes.fromhex("45000064abcd40004011" "0000" "7f000001" "7f000001") + bytes.fromhex("829a8235")
TCP = bytes.fromhex("46000200abcd40004006" "0000" "7f000001" "7f000001" "00000000") + bytes.fromhex("813e0050")


@pytest.mark.parametrize(
    "head, expected",
    [
        (UDP, (0x64, 0x829A)),  # UDP: total length 100, source port 33434
        (TCP, (0x200, 0x813E)),  # TCP with a 24-byte header (options): source port 33086
        (UDP[:20], (0x64, 0)),  # headers cut short: the length, no port
        (bytes.fromhex("45000030abcd40000101") + bytes(10), (0x30, 0)),  # ICMP
        (b"\x60" + bytes(39), (40, 0)),  # IPv6: not ours
        (b"", (0, 0)),
    ],
)
def test_ipv4_size_and_source_reads_the_headers(head, expected):
    assert ipv4_size_and_source(head) == expected


def test_reconfigure_changes_the_path_for_what_comes_next_only():
    line = DelayLine(PathSpec(delay_s=0.010))
    line.offer(0.0, "old", 1, 0)
    line.reconfigure(PathSpec(delay_s=0.050, loss=1.0))
    assert line.offer(0.0, "gone", 1, 0) is Fate.LOST
    line.reconfigure(PathSpec(delay_s=0.050))
    line.offer(0.0, "new", 1, 0)
    assert run(line, [])[1] == {"old": 0.01, "new": 0.05}
