"""Reading a daemon's path trace (``toxbridge --trace-path``, ``toxbridge.pathtrace``): what
held the sender back on a long path. ``summarize(lines, t_from, t_to)`` gives, over the
lines between two times: the model's estimates (median and spread), the window against
what was in flight, why sending stopped (shares of the stop counters), losses and
loss-ceiling cuts, toxcore's refusals, the tox thread's CPU share and longest turns, and
how often nothing waited to be sent (the app, not the path, was the limit)."""

from __future__ import annotations

import json
from pathlib import Path

STOPS = ("cwnd", "pacer", "app", "flow", "ring")


def read(path: Path) -> list[dict]:
    """The trace's lines (a last line cut short by a kill is skipped)."""
    out = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _spread(values: list[float], scale: float = 1.0, digits: int = 3) -> list | None:
    """[p10, p50, p90] of ``values`` x ``scale``."""
    if not values:
        return None
    return [round(_q(values, q) * scale, digits) for q in (0.1, 0.5, 0.9)]


def summarize(lines: list[dict], t_from: float | None = None, t_to: float | None = None) -> dict:
    """What the sender's trace says between ``t_from`` and ``t_to`` (monotonic seconds of
    the daemon; None: the whole trace)."""
    rows = [r for r in lines if (t_from is None or r["t"] >= t_from) and (t_to is None or r["t"] <= t_to)]
    if len(rows) < 2:
        return {"samples": len(rows)}
    first, last = rows[0], rows[-1]
    span = last["t"] - first["t"]

    def delta(key: str) -> float:
        return last.get(key, 0) - first.get(key, 0)

    stops = {k: delta(f"stop_{k}") for k in STOPS}
    total_stops = sum(stops.values()) or 1
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    mb = 1e6
    return {
        "samples": len(rows), "span_s": round(span, 2),
        "sent_MBps": round(delta("bytes_sent") / span / mb, 3),
        "resent_share": round(delta("bytes_resent") / max(1, delta("bytes_sent")), 4),
        "max_bw_MBps": _spread([r["max_bw_Bps"] for r in rows], 1 / mb),
        "pacing_MBps": _spread([r["pacing_rate_Bps"] for r in rows], 1 / mb),
        "min_rtt_ms": _spread([r["min_rtt_s"] for r in rows if r["min_rtt_s"]], 1e3, 1),
        "srtt_ms": _spread([r["srtt_s"] for r in rows], 1e3, 1),
        "window_kB": _spread([r["window"] for r in rows], 1e-3, 1),
        "in_flight_kB": _spread([r["in_flight"] for r in rows], 1e-3, 1),
        "in_flight_over_window": _spread([r["in_flight"] / r["window"] for r in rows if r["window"]]),
        "inflight_hi_kB": _spread([r["inflight_hi"] for r in rows if r["inflight_hi"] is not None], 1e-3, 1),
        "states": {k: round(v / len(rows), 3) for k, v in sorted(states.items())},
        "stops": {k: round(v / total_stops, 3) for k, v in stops.items()},
        "sends_per_s": round(total_stops / span),
        "packets_lost": delta("packets_lost"), "packets_sent": delta("packets_sent"),
        "ceiling_cuts": delta("ceiling_cuts"), "lossy_refused": delta("lossy_refused"),
        "burst_max": max(r.get("burst_max", 0) for r in rows),
        "nothing_waiting": round(sum(1 for r in rows if not (r["unsent"] or r["link_unsent"] or r["outbound"]))
                                 / len(rows), 3),
        # the channel stream held by the peer's credit (under a packet's worth left) or by
        # its resend buffer (what the peer's Link has not acked) while app frames waited
        "credit_bound": round(sum(1 for r in rows if r.get("chan_credit", 1 << 30) < 1400 and r["outbound"])
                              / len(rows), 3),
        "resend_bound": round(sum(1 for r in rows if r.get("chan_resend_room", 1 << 30) < 1400 and r["outbound"])
                              / len(rows), 3),
        "chan_credit_kB": _spread([r["chan_credit"] for r in rows if "chan_credit" in r], 1e-3, 1),
        "tox_thread_cpu": round(delta("thread_cpu_s") / span, 3),
        "process_cpu": round(delta("process_cpu_s") / span, 3),
        "turns_per_s": round(sum(r["turns"] for r in rows[1:]) / span),
        "turn_max_ms": _spread([r["turn_max_ms"] for r in rows[1:]], 1, 2),
    }
