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
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_raw(network: NodeInfo, mb: float = 200, pings: int = 1000, use_relay: bool = False,
                warmup_pings: int = 0) -> dict:
    """Measure raw toxcore between two fresh peers; return the figures as a dict."""
    packets = max(1, int(mb * MB) // PACKET)
    t0 = time.monotonic()
    with RawPeer(network, use_relay=use_relay) as a, RawPeer(network, use_relay=use_relay) as b:
        started = time.monotonic()
        connected = RawPeer.befriend(a, b)
        result = {"connect_s": round(connected - t0, 2),
                  "connect_after_start_s": round(connected - started, 2)}

        b.send(("receive", packets))
        start = time.monotonic()
        a.send(("stream", packets, PACKET))
        report = b.wait("stream_done", timeout=600)[0]
        if report.errors or report.packets != packets:
            raise RuntimeError(f"raw stream corrupted: {report.errors} bad of {report.packets}")
        elapsed = report.last_s - start
        result["lossless_MB"] = round(report.bytes / MB, 1)
        result["lossless_s"] = round(elapsed, 2)
        result["lossless_MBps"] = round(report.bytes / elapsed / MB, 2)
        full = report.per_second[:-1] or report.per_second  # the last bin is partial
        result["lossless_peak_MBps"] = round(max(full) / MB, 2)

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
