"""The debug trace of the path (--trace-path, toxbridge.pathtrace) and its reader
(bench/wantrace.py): one JSON line per active peer and period, bounded; no Tox here."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from bench import wantrace
from toxbridge.pathtrace import PathTrace
from toxbridge.transport import Endpoint


def _slot(name: str, active: bool = True):
    """A peer slot as the trace reads it: a real Endpoint's trace stands in for the path's."""
    ep = Endpoint()
    ep.send(bytes(10_000))
    ep.datagrams_to_send(0.0)
    trace = {**ep.trace(), "lossy_refused": 0} if active else None
    return SimpleNamespace(hex=name * 8, path=SimpleNamespace(trace=lambda: trace),
                           link=SimpleNamespace(unsent_bytes=5, unacked_bytes=7),
                           io=SimpleNamespace(channel_trace=lambda: {"chan_credit": 99}))


def test_a_line_per_active_peer_and_period_then_nothing_beyond_the_bound(tmp_path):
    path = tmp_path / "t.jsonl"
    trace = PathTrace(path, period=0.1, max_lines=3)
    slots = [_slot("A"), _slot("B", active=False)]
    now = time.monotonic()
    for i in range(10):  # 10 periods, but 3 lines at most
        trace.turn(0.002)
        if trace.due(now + i * 0.1):
            trace.sample(now + i * 0.1, slots, outbound_len=4)
    assert not trace.due(now + 5.0)  # closed at its bound
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3 and {line["peer"] for line in lines} == {"AAAAAAAA"}
    first = lines[0]
    assert first["outbound"] == 4 and first["link_unsent"] == 5 and first["chan_credit"] == 99
    assert first["turns"] == 1 and first["turn_max_ms"] == 2.0
    assert first["state"] == "startup" and first["in_flight"] > 0
    assert sum(first[f"stop_{k}"] for k in wantrace.STOPS) == 1  # one call, one reason
    with pytest.raises(ValueError):
        PathTrace(tmp_path / "u.jsonl", period=0)


def test_the_summary_says_what_held_the_sender():
    base = {"state": "probe_bw", "max_bw_Bps": 6e6, "pacing_rate_Bps": 6e6, "min_rtt_s": 0.05,
            "srtt_s": 0.06, "window": 400_000, "in_flight": 300_000, "inflight_hi": None,
            "unsent": 0, "link_unsent": 0, "outbound": 64, "chan_credit": 0, "turns": 50,
            "turn_max_ms": 3.0, "thread_cpu_s": 0.0, "process_cpu_s": 0.0, "bytes_sent": 0,
            "bytes_resent": 0, "packets_lost": 0, "packets_sent": 0, "ceiling_cuts": 0,
            "lossy_refused": 0, "burst_max": 10, "stop_cwnd": 0, "stop_pacer": 0, "stop_app": 0,
            "stop_flow": 0, "stop_ring": 0}
    lines = [{**base, "t": 10.0 + i, "bytes_sent": i * 3_000_000, "stop_app": 9 * i, "stop_pacer": i,
              "thread_cpu_s": 0.4 * i} for i in range(5)]
    s = wantrace.summarize(lines, 10.0, 14.0)
    assert s["samples"] == 5 and s["sent_MBps"] == 3.0
    assert s["stops"]["app"] == 0.9 and s["stops"]["pacer"] == 0.1
    assert s["credit_bound"] == 1.0 and s["tox_thread_cpu"] == 0.4
    assert wantrace.summarize(lines, 20.0, 30.0) == {"samples": 0}
