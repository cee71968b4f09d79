"""``bench mesh --hops DIR``: the chat round trip through the hub, hop by hop, idle and while
the file moves. The nodes run with the tracer of ``bench/hoptrace.py`` in its tagged mode
(``bench/hopsite`` on their PYTHONPATH, ``TOXBRIDGE_HOPS_TAG=ping,pong``): each process
records when the bytes of a chat line pass a socket, enter our transport (``ep_in``: behind
its unsent bytes), leave as a lossy packet or arrive as one. Each round trip (its start and
end, from the bench) is matched point by point, each the first of its kind after the one
before; a round trip with a point missing (a line split across two packets, a resend) is
left out. Nothing of this is in the product."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .hops import first_after, load
from .raw_tox import percentile

TAGS = "ping,pong"

# (node, point, what the hop up to it is); {t}: the line's text, {i}/{o}: the spoke it
# enters at / leaves at.
_CROSS = [
    ("{i}", "in_inet_{t}", "client -> spoke's bridge_local (app socket)"),
    ("{i}", "out_unix_bl_{t}", "spoke's bridge_local: handled, written to its lane"),
    ("{i}", "in_unix_d_{t}", "lane socket -> spoke daemon's trio read"),
    ("{i}", "ep_in_{t}", "spoke: tox thread wake, mux, Link -> into our transport"),
    ("{i}", "lossy_out_200_{t}", "spoke: in our transport (its unsent bytes, cwnd, pacer)"),
    ("hub", "lossy_in_200_{t}", "spoke -> hub: in flight (UDP, the hub's tox_iterate)"),
    ("hub", "out_unix_d_{t}", "hub: transport, Link, mux, local stream -> trio write"),
    ("hub", "in_unix_bl_{t}", "hub: lane socket -> its bridge_local"),
    ("hub", "out_unix_bl_{t}", "hub bridge_local: relayed, written to the next lane"),
    ("hub", "in_unix_d_{t}", "hub: lane socket -> daemon's trio read"),
    ("hub", "ep_in_{t}", "hub: tox thread wake, mux, Link -> into our transport"),
    ("hub", "lossy_out_200_{t}", "hub: in our transport (its unsent bytes, cwnd, pacer)"),
    ("{o}", "lossy_in_200_{t}", "hub -> spoke: in flight (UDP, the spoke's tox_iterate)"),
    ("{o}", "out_unix_d_{t}", "spoke: transport, Link, mux, local stream -> trio write"),
    ("{o}", "in_unix_bl_{t}", "spoke: lane socket -> its bridge_local"),
    ("{o}", "out_inet_{t}", "spoke's bridge_local: handled, written to the client"),
]


def chain() -> list[tuple[str, str, str]]:
    out = [(n.format(i="s1", o="s2"), p.format(t="ping"), w) for n, p, w in _CROSS]
    # bob's client reads the ping and answers: its in_inet_pong closes that hop
    out += [(n.format(i="s2", o="s1"), p.format(t="pong"), w) for n, p, w in _CROSS]
    out.append(("alice", "got", "spoke's bridge_local -> alice's client (app socket)"))
    return out


@contextmanager
def traced_env(directory: Path):
    """The environment under which nodes started record their chat lines' hops."""
    root = Path(__file__).resolve().parent.parent
    saved = dict(os.environ)
    os.environ["TOXBRIDGE_HOPS"] = str(directory)
    os.environ["TOXBRIDGE_HOPS_TAG"] = TAGS
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(root / "bench" / "hopsite"), str(root), saved.get("PYTHONPATH", "")])
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def analyse(directory: Path, roles: dict[int, str], marks: list[tuple[int, int]]) -> dict:
    """``marks``: (start, end) of each round trip, monotonic ns (the bench's clock)."""
    events = load(directory, roles)
    steps = chain()
    hops: list[list[float]] = [[] for _ in steps]
    totals = []
    for start, end in marks:
        t, row = start, []
        for node, point, _ in steps:
            nxt = end if node == "alice" else first_after(events.get(node, {}).get(point, []), t)
            if nxt is None or nxt > end:
                row = None
                break
            row.append((nxt - t) / 1e6)
            t = nxt
        if row is None:
            continue
        for i, d in enumerate(row):
            hops[i].append(d)
        totals.append((end - start) / 1e6)
    table = [{"at": f"{node} {point}", "hop": what,
              "p50_ms": round(percentile(h, 0.5), 3) if h else None,
              "p90_ms": round(percentile(h, 0.9), 3) if h else None,
              "mean_ms": round(sum(h) / len(h), 3) if h else None}
             for (node, point, what), h in zip(steps, hops)]
    return {"round_trips": len(marks), "matched": len(totals),
            "rtt_p50_ms": round(percentile(totals, 0.5), 3) if totals else None,
            "rtt_mean_ms": round(sum(totals) / len(totals), 3) if totals else None,
            "sum_of_hop_p50s_ms": round(sum(r["p50_ms"] or 0 for r in table), 3),
            "hops": table}
