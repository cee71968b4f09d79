"""The channel benchmark: raw toxcore, then app → daemon → Tox → daemon → app, in one run.

Both legs run on the same private network with the same volume (slow start makes the
average depend on it), so `ratio` compares like with like. The channel leg streams
1024-byte DATA frames from an app on the listener's bridge port to an app on the peer's,
checks every frame's content and order, then measures 64-byte ping-pongs app → app → app.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from toxbridge.framing import DATA, EVENT, FrameDecoder, decode_event, encode_data
from toxbridge.testing import App, DaemonProc, start_bootstrap
from toxbridge.network import NodeInfo

from .raw_tox import MB, measure_raw, percentile

FRAME = 1024
CYCLE = 64  # distinct frame contents, sent in turn: a loss, duplicate or reorder shows


def _frames() -> list[bytes]:
    return [bytes([i]) * 8 + bytes((i + j) % 256 for j in range(FRAME - 8)) for i in range(CYCLE)]


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system, all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak resident set size (VmHWM; ``field="VmRSS"``: the current one), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MB
    return 0.0


async def _stream(src: App, dst: App, frames_total: int,
                  time_limit: float | None = None) -> tuple[float, list[int], int]:
    """Send ``frames_total`` frames src → dst; return (seconds, bytes per second bins,
    frames received). With ``time_limit``, stop after that long: then fewer arrived."""
    frames = _frames()
    batch = b"".join(encode_data(f) for f in frames)  # one cycle per write
    cycles = frames_total // CYCLE
    bins: list[int] = []
    received = 0

    async def send() -> None:
        for _ in range(cycles):
            await src.stream.send_all(batch)

    async def receive() -> None:
        nonlocal received
        decoder = FrameDecoder(allowed_kinds=(DATA, EVENT))
        n = 0
        while n < cycles * CYCLE:
            data = await dst.stream.receive_some(256 * 1024)
            if not data:
                raise RuntimeError("the bridge closed the app connection")
            decoder.receive_data(data)
            got = 0
            for frame in decoder:
                if frame.kind != DATA:
                    dst.events.append(decode_event(frame.payload))
                    continue
                if frame.payload != frames[n % CYCLE]:
                    raise RuntimeError(f"frame {n} is wrong: lost, duplicated or out of order")
                n += 1
                received = n
                got += len(frame.payload)
            second = int(time.monotonic() - start)
            while len(bins) <= second:
                bins.append(0)
            bins[second] += got

    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with trio.move_on_after(time_limit if time_limit is not None else float("inf")):
            await receive()
        nursery.cancel_scope.cancel()  # the sender, when the limit cut the receiver short
    return time.monotonic() - start, bins, received


async def _pings(a: App, b: App, count: int) -> list[float]:
    async def echo() -> None:
        for _ in range(count):
            await b.send(await b.next_data())

    rtts = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        payload = bytes(64)
        for _ in range(count):
            t = time.perf_counter()
            await a.send(payload)
            if await a.next_data() != payload:
                raise RuntimeError("ping came back wrong")
            rtts.append(time.perf_counter() - t)
    return rtts


def measure_channel(network: NodeInfo, mb: float = 200, pings: int = 1000, *,
                    time_limit: float | None = None, daemon_args: tuple[str, ...] = (),
                    trace_dir: Path | None = None) -> dict:
    """Two daemons (subprocesses) with an app on each bridge port; return the figures.

    ``time_limit``: stop the stream after that long and report what it moved (``done``
    false; no pings then). ``daemon_args``: more options for both daemons (``--no-udp``).
    ``trace_dir``: the daemons write their path traces there (``sender.jsonl``: the
    listener's, whose app sends; ``receiver.jsonl``), and the result has the stream's
    ``stream_t`` (monotonic start and end) to read them with ``bench.wantrace``."""
    frames_total = max(CYCLE, int(mb * MB) // FRAME // CYCLE * CYCLE)
    result: dict = {}
    traces = [[], []] if trace_dir is None else \
        [["--trace-path", str(trace_dir / f"{who}.jsonl")] for who in ("sender", "receiver")]
    with tempfile.TemporaryDirectory(prefix="toxbridge-bench-") as tmp:
        t0 = time.monotonic()
        with DaemonProc(["--listen", *daemon_args, *traces[0]], Path(tmp) / "l.tox", network,
                        verbose=False) as listener, \
                DaemonProc(["--peer", listener.tox_id, *daemon_args, *traces[1]], Path(tmp) / "p.tox",
                           network, verbose=False) as peer:

            started = time.monotonic()

            async def run() -> None:
                a, b = await App.connect(listener.port), await App.connect(peer.port)
                with trio.fail_after(120):
                    await a.wait_event(code=301)
                    await b.wait_event(code=301)
                result["connect_s"] = round(time.monotonic() - t0, 2)
                result["connect_after_start_s"] = round(time.monotonic() - started, 2)
                cpu0 = [cpu_seconds(p.process.pid) for p in (listener, peer)]
                t_stream = time.monotonic()
                with trio.fail_after(900):
                    elapsed, bins, received = await _stream(a, b, frames_total, time_limit)
                result["stream_t"] = [round(t_stream, 4), round(t_stream + elapsed, 4)]
                # each daemon's share of a core while the stream ran (sender, receiver)
                result["daemon_cpu"] = [round((cpu_seconds(p.process.pid) - c) / elapsed, 3)
                                        for p, c in zip((listener, peer), cpu0)]
                done = received == frames_total
                total = received * FRAME
                result["done"] = done
                result["MB"] = round(total / MB, 1)
                result["s"] = round(elapsed, 2)
                result["MBps"] = round(total / elapsed / MB, 2)
                full = (bins[:-1] or bins) if done else bins
                result["peak_MBps"] = round(max(full, default=0) / MB, 2)
                if done and pings:
                    with trio.fail_after(300):
                        rtts = await _pings(a, b, pings)
                    result["rtt_p50_ms"] = round(percentile(rtts, 0.50) * 1000, 3)
                    result["rtt_p99_ms"] = round(percentile(rtts, 0.99) * 1000, 3)
                    result["rtt_mean_ms"] = round(statistics.fmean(rtts) * 1000, 3)
                links = [e["link"] for e in a.events + b.events if e.get("link")]
                result["link"] = links[-1] if links else None
                result["daemon_rss_MB"] = round(max(peak_rss_mb(p.process.pid) for p in (listener, peer)), 1)
                await a.aclose()
                await b.aclose()

            trio.run(run)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench channel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200, help="megabytes each leg streams (default 200)")
    parser.add_argument("--pings", type=int, default=1000, help="ping-pongs of 64 bytes (default 1000)")
    parser.add_argument("--no-relay", action="store_true",
                        help="do not give the peers the bootstrap node as TCP relay")
    args = parser.parse_args(argv)
    boot = start_bootstrap()
    try:
        network = dataclasses.replace(boot.info, tcp_port=None) if args.no_relay else boot.info
        raw = measure_raw(network, args.mb, args.pings, use_relay=not args.no_relay)
        chan = measure_channel(network, args.mb, args.pings)
    finally:
        boot.stop()
    result = {
        "bench": "channel", "mb": args.mb, "relay": not args.no_relay,
        "raw_MBps": raw["lossless_MBps"], "channel_MBps": chan["MBps"],
        "ratio": round(chan["MBps"] / raw["lossless_MBps"], 3),
        "raw_peak_MBps": raw["lossless_peak_MBps"], "channel_peak_MBps": chan["peak_MBps"],
        "peak_ratio": round(chan["peak_MBps"] / raw["lossless_peak_MBps"], 3),
        "raw_rtt_p50_ms": raw["rtt_p50_ms"], "raw_rtt_p99_ms": raw["rtt_p99_ms"],
        "channel_rtt_p50_ms": chan["rtt_p50_ms"], "channel_rtt_p99_ms": chan["rtt_p99_ms"],
        "raw_connect_s": raw["connect_s"], "channel_connect_s": chan["connect_s"],
        # From both processes up (interpreter start-up excluded) to connected / 301:
        "raw_connect_after_start_s": raw["connect_after_start_s"],
        "channel_connect_after_start_s": chan["connect_after_start_s"],
        "channel_link": chan["link"], "daemon_rss_MB": chan["daemon_rss_MB"],
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
