"""bench/meshhops.py: a chat line's hop table from the tagged traces of three nodes."""

from __future__ import annotations

from bench.meshhops import analyse, chain

PIDS = {"s1": 101, "hub": 102, "s2": 103}


def _write(tmp_path, events: dict[str, list[tuple[int, str]]]) -> None:
    for node, rows in events.items():
        lines = ["# python -m toxbridge"] + [f"{t}\t{point}\t0\t1" for t, point in rows]
        (tmp_path / f"{PIDS[node]}.tsv").write_text("\n".join(lines) + "\n")


def _round_trip(start: int, step: int, skip: str | None = None) -> dict[str, list]:
    """Every point of the chain ``step`` ns after the one before (``skip``: one left out)."""
    events: dict[str, list] = {"s1": [], "hub": [], "s2": []}
    t = start
    for node, point, _ in chain():
        t += step
        if node != "alice" and f"{node} {point}" != skip:
            events[node].append((t, point))
    return events


def test_each_hop_is_the_time_from_the_point_before(tmp_path):
    n = len(chain())
    events = _round_trip(0, 1_000_000)
    _write(tmp_path, events)
    out = analyse(tmp_path, {v: k for k, v in PIDS.items()}, [(0, n * 1_000_000)])
    assert out["matched"] == 1
    assert [h["mean_ms"] for h in out["hops"]] == [1.0] * n
    assert out["rtt_mean_ms"] == n * 1.0
    assert out["hops"][5]["at"] == "hub lossy_in_200_ping"


def test_a_round_trip_missing_a_point_is_left_out_not_matched_to_the_next(tmp_path):
    n = len(chain())
    first = _round_trip(0, 1_000_000, skip="hub lossy_in_200_ping")
    second = _round_trip(10 * n * 1_000_000, 2_000_000)
    _write(tmp_path, {k: first[k] + second[k] for k in first})
    marks = [(0, n * 1_000_000), (10 * n * 1_000_000, 12 * n * 1_000_000)]
    out = analyse(tmp_path, {v: k for k, v in PIDS.items()}, marks)
    assert out["round_trips"] == 2 and out["matched"] == 1
    assert {h["mean_ms"] for h in out["hops"]} == {2.0}
