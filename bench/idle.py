"""The idle benchmark: what a node costs while nothing moves, and how fast it answers then.

On one private network: two raw toxcore peers that iterate at toxcore's own pace (the
anchor), then two whole nodes (``toxbridge --listen`` / ``--peer``, daemon + bridge_local)
with one logged-in client each. Each pair is connected, left alone to settle, then its
CPU time is read from /proc over the same quiet period: each node is one process, so
``node_cpu_pct`` is the daemon and bridge_local together, split into the main thread
(trio: the daemon's shell and bridge_local) and the others (the tox thread; trio's worker
threads sleep), with each one's wakes (context switches) per second. Last, the first chat message
after each of several quiet spells: its round trip shows that sleeping long costs no
latency. Prints one JSON object.
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
from toxbridge.testing import DaemonProc, start_bootstrap
from toxbridge.testing.rawpeer import RawPeer

from .channel import cpu_seconds, peak_rss_mb
from .raw_tox import percentile

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_percent(pids: list[int], seconds: float) -> list[float]:
    """Each process's share of one core over the next ``seconds``."""
    before = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return [round(100 * (cpu_seconds(p) - b) / elapsed, 2) for p, b in zip(pids, before)]


def thread_times(pid: int) -> dict[int, tuple[float, int]]:
    """Each thread's CPU seconds and context switches (its sleeps and preemptions)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":\t", 1) for line in f if ":\t" in line)
        except FileNotFoundError:  # ended meanwhile
            continue
        switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
        out[int(tid)] = ((int(fields[11]) + int(fields[12])) / TICKS, switches)
    return out


def cpu_split(pids: list[int], seconds: float) -> dict:
    """``cpu_percent`` and, per process, the main thread's share (a node's trio thread:
    the daemon's shell and bridge_local), the other threads' (the tox thread; trio's
    worker threads sleep), and the wakes per second of each."""
    before = [thread_times(p) for p in pids]
    cpu0 = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    after = [thread_times(p) for p in pids]
    out: dict = {"cpu": [round(100 * (cpu_seconds(p) - c) / elapsed, 2) for p, c in zip(pids, cpu0)],
                 "main": [], "others": [], "main_wakes": [], "others_wakes": []}
    for pid, b, a in zip(pids, before, after):
        d = {tid: (c - b.get(tid, (0.0, 0))[0], w - b.get(tid, (0.0, 0))[1])
             for tid, (c, w) in a.items()}
        main, others = d.get(pid, (0.0, 0)), [v for tid, v in d.items() if tid != pid]
        out["main"].append(round(100 * main[0] / elapsed, 2))
        out["others"].append(round(100 * sum(c for c, _ in others) / elapsed, 2))
        out["main_wakes"].append(round(main[1] / elapsed, 1))
        out["others_wakes"].append(round(sum(w for _, w in others) / elapsed, 1))
    return out


def measure_raw_idle(network, settle: float, seconds: float) -> dict:
    with RawPeer(network, idle_loop=True) as a, RawPeer(network, idle_loop=True) as b:
        RawPeer.befriend(a, b)
        time.sleep(settle)
        cpu = cpu_percent([a.process.pid, b.process.pid], seconds)
    return {"raw_cpu_pct": cpu}


async def _quiet_pings(listener: DaemonProc, peer: DaemonProc, settle: float,
                       seconds: float, quiet: float, count: int) -> dict:
    async with open_client(listener.app_port, name="alice") as alice, \
            open_client(peer.app_port, name="bob") as bob:
        with trio.fail_after(120):
            await alice.wait_event(command=301, token=bob.token)
        await trio.sleep(settle)
        pids = [listener.process.pid, peer.process.pid]
        split = await trio.to_thread.run_sync(cpu_split, pids, seconds)
        cpu = split["cpu"]
        rtts: list[float] = []
        async with trio.open_nursery() as nursery:
            async def bob_side() -> None:
                while True:
                    event = await bob.next_event()
                    if event.get("command") == 2003 and event.get("msg") == "ping":
                        await bob.send(alice.token, "pong")
            nursery.start_soon(bob_side)
            with trio.fail_after(count * (quiet + 30)):
                for _ in range(count):
                    await trio.sleep(quiet)  # nothing moves; then one message
                    t = time.perf_counter()
                    await alice.send(bob.token, "ping")
                    await alice.wait_event(command=2003, msg="pong")
                    rtts.append(time.perf_counter() - t)
            nursery.cancel_scope.cancel()
    return {"node_cpu_pct": cpu, "node_trio_thread_pct": split["main"],
            "node_other_threads_pct": split["others"], "node_other_threads_wakes_per_s":
            split["others_wakes"], "node_trio_thread_wakes_per_s": split["main_wakes"],
            "quiet_rtt_ms": [round(r * 1000, 1) for r in rtts],
            "quiet_rtt_p50_ms": round(percentile(rtts, 0.5) * 1000, 1)}


def measure_idle(network, settle: float = 10, seconds: float = 30, quiet: float = 3,
                 count: int = 8) -> dict:
    result = {"seconds": seconds}
    result.update(measure_raw_idle(network, settle, seconds))
    with tempfile.TemporaryDirectory(prefix="toxbridge-bench-idle-") as tmp:
        root = Path(tmp)
        with DaemonProc(["--listen"], root / "l.tox", network, verbose=False,
                        raw=False) as listener, \
                DaemonProc(["--peer", listener.tox_id], root / "p.tox", network,
                           verbose=False, raw=False) as peer:
            result.update(trio.run(_quiet_pings, listener, peer, settle, seconds, quiet, count))
            result["node_rss_MB"] = round(max(peak_rss_mb(p.process.pid)
                                              for p in (listener, peer)), 1)
    raw = sum(result["raw_cpu_pct"]) / 2
    ours = sum(result["node_cpu_pct"]) / 2
    result["node_over_raw_cpu"] = round(ours / raw, 2) if raw else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench idle",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="CPU measured over (30)")
    parser.add_argument("--settle", type=float, default=10,
                        help="quiet time after connecting, before measuring (10)")
    parser.add_argument("--quiet", type=float, default=3,
                        help="quiet spell before each timed message (3)")
    parser.add_argument("--count", type=int, default=8, help="timed messages (8)")
    args = parser.parse_args(argv)
    node = start_bootstrap()
    try:
        result = measure_idle(node.info, args.settle, args.seconds, args.quiet, args.count)
    finally:
        node.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
