"""``python -m bench catchup [--cuts 10,20,10] [--frozen peer|both]`` — how long the raw
stream takes to catch up after each cut, with both daemons' per-second tox-thread figures.

The flaps scenario (bench/proving.py) in small: one pair of daemons (``--raw -vv``) on a
private network, ~200 frames/s each way, and cuts (SIGSTOP of the peer daemon, or of both
with ``--frozen both``) of the given lengths, each followed by a wait until every frame
sent before SIGCONT has arrived both ways (at most ``--wait`` s) and ``--settle`` s more.
Prints one JSON object: per cut ``caught_up_s``, the 301/302 the listener's app saw, and
``ticks``: each daemon's ``tick`` lines (toxbridge/toxloop.py, one a second: packets
toxcore accepted and refused, packets received, the Link's bytes in flight, UDP/TCP) from
the cut's start to its catch-up, as rows of [seconds since SIGCONT, link, accepted,
refused, received, in_flight, backlog, out, in, hold]; ``apps``: per second
[seconds since SIGCONT, frames the listener's app and the peer's app had sent].
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import trio

from toxbridge.network import NodeInfo
from toxbridge.testing import App, DaemonProc

from .proving import _caught_up, _network, _raw_receiver, _raw_sender, _Side, _until

_TICK = re.compile(r"tick t=(?P<t>[\d.]+) link=(?P<link>\S+) state=\S+ accepted=(?P<acc>\d+) "
                   r"refused=(?P<ref>\d+) received=(?P<rcv>\d+) rx_bytes=\d+ resent_bytes=\d+ "
                   r"in_flight=(?P<fl>\d+) backlog=(?P<bl>\d+) out=(?P<out>\d+) in=(?P<in>\d+) "
                   r"hold=(?P<hold>\d)")


def _ticks(log: list[str], t0: float, t1: float, until: float) -> list[list[Any]]:
    rows = []
    for line in list(log):
        m = _TICK.search(line)
        if m and t0 - 1 <= float(m["t"]) <= until + 1:
            rows.append([round(float(m["t"]) - t1, 1), m["link"], int(m["acc"]), int(m["ref"]),
                         int(m["rcv"]), int(m["fl"]), int(m["bl"]), int(m["out"]), int(m["in"]),
                         int(m["hold"])])
    return rows


async def catchup(network: NodeInfo | None, workdir: Path, *, cuts=(10, 20, 10),
                  frozen: str = "peer", pace: float = 0.05, wait: float = 150.0,
                  settle: float = 5.0, logs: Path | None = None) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    raw_a, raw_b = _Side(), _Side()
    results: list[dict[str, Any]] = []
    async with _network(network) as net:
        with ExitStack() as procs:
            l1 = procs.enter_context(DaemonProc(["--listen"], workdir / "l.tox", net))
            p1 = procs.enter_context(DaemonProc(["--peer", l1.tox_id], workdir / "p.tox", net))
            victims = [p1] if frozen == "peer" else [p1, l1]
            with trio.fail_after(120 + sum(cuts) + (wait + settle + 5) * len(cuts)):
                a, b = await App.connect(l1.port), await App.connect(p1.port)
                with trio.fail_after(120):
                    await a.wait_event(code=301)
                    await b.wait_event(code=301)
                stop = trio.Event()
                async with trio.open_nursery() as traffic:
                    traffic.start_soon(_raw_receiver, a, raw_a, 1)
                    traffic.start_soon(_raw_receiver, b, raw_b, 0)
                    traffic.start_soon(_raw_sender, a, raw_b, 0, stop, pace)
                    traffic.start_soon(_raw_sender, b, raw_a, 1, stop, pace)
                    apps: list[tuple[float, int, int]] = []

                    async def sample() -> None:
                        while True:
                            apps.append((time.monotonic(), raw_b.frames_sent, raw_a.frames_sent))
                            await trio.sleep(1)
                    traffic.start_soon(sample)
                    await trio.sleep(settle)
                    for duration in cuts:
                        for p in victims:
                            p.signal(signal.SIGSTOP)
                        t0 = time.monotonic()
                        try:
                            await trio.sleep(duration)
                        finally:
                            for p in victims:
                                p.signal(signal.SIGCONT)
                        t1 = time.monotonic()
                        sent = (raw_a.frames_sent, raw_b.frames_sent)
                        await _until(lambda: all(s.frames.last + 1 >= n
                                                 for s, n in zip((raw_a, raw_b), sent)), wait)
                        caught = _caught_up(t1, sent, raw_a, raw_b)
                        await trio.sleep(settle)
                        until = t1 + (caught if caught is not None else wait)
                        results.append({
                            "seconds": duration, "caught_up_s": caught,
                            "codes": raw_a.codes_between(t0, float("inf")),
                            "frozen_side_codes": raw_b.codes_between(t0, float("inf")),
                            "ticks_listener": _ticks(l1.log, t0, t1, until),
                            "ticks_peer": _ticks(p1.log, t0, t1, until),
                            "apps": [[round(t - t1, 1), x, y] for t, x, y in apps
                                     if t0 - 1 <= t <= until + 1],
                        })
                    stop.set()
                    traffic.cancel_scope.cancel()
                await a.aclose()
                await b.aclose()
            if logs is not None:
                for name, p in (("listener", l1), ("peer", p1)):
                    (logs / f"{name}.log").write_text("\n".join(p.log) + "\n")
            resets = [line for p in (l1, p1) for line in p.log if "stuck at its floor" in line
                      or "catch-up" in line]
    return {"bench": "catchup", "frozen": frozen, "cuts": list(cuts),
            "caught_up_s": [r["caught_up_s"] for r in results],
            "frames_lost": raw_a.frames.lost() + raw_b.frames.lost(),
            "frames_duplicated": raw_a.frames.duplicated + raw_b.frames.duplicated,
            "resets": resets, "detail": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench catchup",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", default="10,20,10", help="cut lengths in s, comma-separated")
    parser.add_argument("--frozen", choices=("peer", "both"), default="peer")
    parser.add_argument("--wait", type=float, default=150.0, help="catch-up bound per cut (s)")
    parser.add_argument("--logs", type=Path, help="write both daemons' logs to this directory")
    args = parser.parse_args(argv)
    cuts = tuple(float(c) for c in args.cuts.split(","))
    with tempfile.TemporaryDirectory(prefix="toxbridge-catchup-") as tmp:
        out = trio.run(partial(catchup, None, Path(tmp), cuts=cuts, frozen=args.frozen,
                               wait=args.wait, logs=args.logs))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
