"""The anchor benchmark: two raw toxcore peers in two processes on a private network.

Prints one JSON object: connect time, lossless throughput (average over --mb
megabytes of 1373-byte packets, in order and verified, and the best one-second
rate) and the round trip of 64-byte ping-pongs. Every later benchmark measures
this in the same run, on the same volume, and reports ratios against it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from toxbridge.network import NodeInfo
from toxbridge.testing import start_bootstrap
from toxbridge.testing.rawpeer import RawPeer

PACKET = 1373
MB = 1_000_000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_raw(network: NodeInfo, mb: float = 200, pings: int = 1000, use_relay: bool = False,
                warmup_pings: int = 0, *, time_limit: float | None = None, udp: bool = True,
                wrap: list[str] | None = None) -> dict:
    """Measure raw toxcore between two fresh peers; return the figures as a dict.

    ``time_limit``: stop the stream after that many seconds and report what it moved
    (``lossless_done`` false, the average over the limit; no pings then) and count packets
    out of order or wrong (``lossless_errors``: toxcore drops what it queued when a friend
    connection goes down) instead of failing. Without one it must finish within 600 s and
    a corrupted stream raises RuntimeError. ``udp``: False for TCP relays only (give
    ``use_relay``). ``wrap``: the peers' command prefix (a namespace)."""
    packets = max(1, int(mb * MB) // PACKET)
    t0 = time.monotonic()
    options = {} if udp else {"udp": False}
    with RawPeer(network, use_relay=use_relay, wrap=wrap, **options) as a, \
            RawPeer(network, use_relay=use_relay, wrap=wrap, **options) as b:
        started = time.monotonic()
        connected = RawPeer.befriend(a, b)
        result = {"connect_s": round(connected - t0, 2),
                  "connect_after_start_s": round(connected - started, 2)}

        b.receive(packets)
        start = time.monotonic()
        a.send(("stream", packets, PACKET))
        try:
            report = b.wait("stream_done", timeout=time_limit or 600)[0]
            done = True
        except TimeoutError:
            if time_limit is None:
                raise
            report, drops = b.call(("progress",), "progress")
            result["friend_drops"] = drops
            done = False
        if time_limit is not None:
            result["lossless_errors"] = report.errors
        elif report.errors or report.packets != packets:
            raise RuntimeError(f"raw stream corrupted: {report.errors} bad of {report.packets}")
        elapsed = (report.last_s - start) if done else time_limit
        result["lossless_done"] = done
        result["lossless_MB"] = round(report.bytes / MB, 1)
        result["lossless_s"] = round(elapsed, 2)
        result["lossless_MBps"] = round(report.bytes / elapsed / MB, 2)
        full = (report.per_second[:-1] or report.per_second) if done else report.per_second
        result["lossless_peak_MBps"] = round(max(full, default=0) / MB, 2)
        if not done or not pings:
            return result

        if warmup_pings:  # toxcore's send rate follows demand: its first pings wait longer
            warm = a.call(("ping", warmup_pings, 64), "pings", timeout=120)[0]
            result["rtt_warmup_p50_ms"] = round(percentile(warm, 0.50) * 1000, 3)
        rtts = a.call(("ping", pings, 64), "pings", timeout=120)[0]
        result["rtt_p50_ms"] = round(percentile(rtts, 0.50) * 1000, 3)
        result["rtt_p99_ms"] = round(percentile(rtts, 0.99) * 1000, 3)
        result["rtt_mean_ms"] = round(statistics.fmean(rtts) * 1000, 3)
        result["pings"] = len(rtts)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench raw_tox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200, help="megabytes to stream (default 200)")
    parser.add_argument("--pings", type=int, default=1000, help="ping-pongs of 64 bytes (default 1000)")
    args = parser.parse_args(argv)
    boot = start_bootstrap()
    try:
        result = {"bench": "raw_tox", "mb": args.mb, **measure_raw(boot.info, args.mb, args.pings)}
    finally:
        boot.stop()
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
