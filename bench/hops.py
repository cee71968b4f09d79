"""The hops benchmark: where one chat message's round trip goes, hop by hop.

The arrangement of ``bench messages`` (two daemons ``--raw``, a ``python -m bridge_local``
on each, alice and bob on the app ports), with a tracer (``bench/hoptrace.py``, loaded
through ``bench/hopsite`` on the nodes' PYTHONPATH: nothing of it is in the product)
recording when each process reads or writes a socket, commits, wakes its tox thread and
sends or receives a lossy packet. For each round trip after ``--warmup``, the chain of
points below is matched in time order (each the first of its kind after the one before);
prints each hop's p50 and p90 in ms, and the round trip's. The tracer's own writes (one
``os.write`` per event, ~2 us) are in the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from bridge_local.client import open_client
from toxbridge.testing import BridgeLocalProc, DaemonProc, start_bootstrap

from .raw_tox import percentile

# (process, point, what the hop up to it is); A/B the listener's side and the peer's.
ONE_WAY = [
    ("bl{s}", "in_inet", "client -> bridge_local (app socket, its read)"),
    ("bl{s}", "commit", "bridge_local: the request handled, its commit"),
    ("bl{s}", "out_unix", "bridge_local: the frame written to streams.sock"),
    ("d{s}", "in_unix", "streams.sock -> daemon's trio thread (its read)"),
    ("d{s}", "wake_flag", "trio -> tox thread (the eventfd, its wake)"),
    ("d{s}", "lossy_out_200", "tox thread: the pump, the transport's DATA out"),
    ("d{o}", "lossy_in_200", "toxcore -> toxcore (UDP, the peer's wake and tox_iterate)"),
    ("d{o}", "out_unix", "tox thread -> trio thread -> streams.sock write"),
    ("bl{o}", "in_unix", "streams.sock -> bridge_local (its read)"),
    ("bl{o}", "commit", "bridge_local: the message handled, its commit"),
    ("bl{o}", "out_inet", "bridge_local: the 2003 written to the client"),
]


def chain() -> list[tuple[str, str, str]]:
    out = [(p.format(s="A", o="B"), pt, what) for p, pt, what in ONE_WAY]
    out.append(("bob", "got", "bridge_local -> client (app socket, the client's read)"))
    out.append(("bob", "sent", "client: the answer sent"))
    out += [(p.format(s="B", o="A"), pt, what) for p, pt, what in ONE_WAY]
    out.append(("alice", "got", "bridge_local -> client (app socket, the client's read)"))
    return out


def load(directory: Path, roles: dict[int, str]) -> dict[str, dict[str, list[int]]]:
    events: dict[str, dict[str, list[int]]] = {}
    for f in directory.glob("*.tsv"):
        role = roles.get(int(f.stem))
        if role is None:
            continue
        points = events.setdefault(role, {})
        for line in f.read_text().splitlines():
            if line.startswith("#"):
                continue
            t, point, _, _ = line.split("\t")
            points.setdefault(point, []).append(int(t))
    for points in events.values():
        for times in points.values():
            times.sort()
    return events


def first_after(times: list[int], t: int) -> int | None:
    import bisect
    i = bisect.bisect_right(times, t)
    return times[i] if i < len(times) else None


async def _round_trips(port_a: int, port_b: int, count: int, warmup: int) -> list[dict]:
    marks: list[dict] = []
    async with open_client(port_a, name="alice") as alice, \
            open_client(port_b, name="bob") as bob:
        await alice.wait_event(command=301, name="bob")
        current: dict = {}

        async def echo() -> None:
            async for event in bob:
                if event["command"] == 2003:
                    current["bob_got"] = time.monotonic_ns()
                    current["bob_sent"] = time.monotonic_ns()
                    await bob.send(event["srctoken"], event["msg"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            for i in range(warmup + count):
                current = {"start": time.monotonic_ns()}
                await alice.send(bob.token, f"ping {i}")
                while True:
                    event = await alice.wait_event(command=2003)
                    if event["msg"] == f"ping {i}":
                        break
                current["alice_got"] = time.monotonic_ns()
                if i >= warmup:
                    marks.append(current)
                await trio.sleep(0.002)  # the acks of this one settle before the next
            nursery.cancel_scope.cancel()
    return marks


def analyse(events, marks) -> dict:
    steps = chain()
    hops: list[list[float]] = [[] for _ in steps]
    totals = []
    for m in marks:
        t = m["start"]
        row = []
        for role, point, _ in steps:
            if role in ("alice", "bob"):
                nxt = m.get(f"{role}_{point}")
            else:
                nxt = first_after(events.get(role, {}).get(point, []), t)
            if nxt is None or nxt < t or nxt > m["alice_got"]:
                row = None
                break
            row.append((nxt - t) / 1e6)
            t = nxt
        if row is None:
            continue
        for i, d in enumerate(row):
            hops[i].append(d)
        totals.append((m["alice_got"] - m["start"]) / 1e6)
    table = [{"side": role, "at": point, "hop": what,
              "p50_ms": round(percentile(h, 0.5), 3) if h else None,
              "p90_ms": round(percentile(h, 0.9), 3) if h else None}
             for (role, point, what), h in zip(steps, hops)]
    return {"round_trips": len(marks), "matched": len(totals),
            "rtt_p50_ms": round(percentile(totals, 0.5), 3) if totals else None,
            "sum_of_hop_p50s_ms": round(sum(r["p50_ms"] or 0 for r in table), 3),
            "hops": table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench hops",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    boot = start_bootstrap()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            trace = d / "trace"
            trace.mkdir()
            saved = dict(os.environ)
            os.environ["TOXBRIDGE_HOPS"] = str(trace)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                [str(root / "bench" / "hopsite"), str(root), saved.get("PYTHONPATH", "")])
            try:
                with DaemonProc(["--listen"], d / "l.tox", boot.info, verbose=False) as la, \
                        DaemonProc(["--peer", la.tox_id], d / "p.tox", boot.info,
                                   verbose=False) as lb, \
                        BridgeLocalProc(la.port, d / "a") as a, \
                        BridgeLocalProc(lb.port, d / "b") as b:
                    roles = {la.process.pid: "dA", lb.process.pid: "dB",
                             a.process.pid: "blA", b.process.pid: "blB"}
                    os.environ.clear()
                    os.environ.update(saved)

                    async def run() -> list[dict]:
                        with trio.fail_after(600):
                            return await _round_trips(a.app_port, b.app_port, args.pings,
                                                      args.warmup)
                    marks = trio.run(run)
                    result = analyse(load(trace, roles), marks)
            finally:
                os.environ.clear()
                os.environ.update(saved)
    finally:
        boot.stop()
    result = {"bench": "hops", "pings": args.pings, "warmup": args.warmup, **result}
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
