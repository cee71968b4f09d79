"""The forwarding benchmark: TCP through ``-L`` / ``-W`` against the channel and raw toxcore.

One run, one private network on 127.0.0.1: raw toxcore (``raw_tox.measure_raw``), then
two daemons, one exposing small servers (``toxbridge.testing.servers``) and one forwarding
a local port to each (``-L``), with an app on each bridge port. On those live daemons,
``--pairs`` pairs of legs of ``--mb`` MB each, the channel (app to app) and one download
through the forward, the order alternating; ``forward_ratio`` is the median of the pairs'
ratios (a single leg on a shared machine varies by 1.5x). Then the channel's round trip, 8
downloads at once (``--mb`` / 8 each), connect-to-first-byte of new connections on the live
link (a server that speaks first, and an echo the client speaks to first), both daemons'
peak RSS; then a ``-W`` node against a fresh exposing daemon: one-byte keystrokes to an
echo server, each one's round trip. Every download is verified (md5 of the known pattern),
every channel frame by its content and order.

``--wan``: the same forward, keystrokes and raw round trip in a network namespace with only
``lo`` and the WAN emulator's 50 ms round trip path (``toxbridge.testing.wan``): ``--count``
downloads of ``--download-mb`` MB one after the other, their median rate, and how many
stalled (under 10 % of the median for 5 s, or not done within the time limit);
``--keys-only``: only the raw round trip and the keystrokes (a minute, not five).
Prints one JSON object (progress on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from toxbridge.network import BootstrapDaemon, NodeInfo
from toxbridge.testing import App, DaemonProc, start_bootstrap, stdio_command
from toxbridge.testing.servers import ThreadServer, banner, echo, pattern, source
from toxbridge.testing.wan import BOOTSTRAP_TCP_PORT, PathSpec, WanNamespace, unavailable

from .channel import CYCLE, FRAME, app_pings, peak_rss_mb, stream_frames
from .raw_tox import MB, measure_raw, percentile

ROOT = Path(__file__).resolve().parent.parent
PARALLEL = 8
BIN_S = 0.5  # a download's rate bins (stall detection)
CHANNEL_EVERY = 4  # --wan: a channel leg of the same size before every 4th download
STALL_S, STALL_SHARE = 5.0, 0.1  # a stall: under 10 % of the median rate for 5 s
WAN_RTT_S = 0.050
ONLINE_S = 120.0  # s for the forward's link to come up
READ = 256 * 1024


def _say(text: str) -> None:
    print(f"bench forward: {text}", file=sys.stderr, flush=True)


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 3) if values else None


_digests: dict[int, bytes] = {}


def _digest(n: int) -> bytes:
    if n not in _digests:
        _digests[n] = hashlib.md5(pattern(n)).digest()
    return _digests[n]


async def _download(port: int, n: int, limit: float) -> dict:
    """``n`` bytes from the source server through the forward on ``port``: seconds,
    whether they were exact, bytes per ``BIN_S`` bin. Not done within ``limit``: done False."""
    md5 = hashlib.md5()
    got, bins = 0, []
    start = time.monotonic()
    with trio.move_on_after(limit):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"%d\n" % n)
            while data := await stream.receive_some(READ):
                md5.update(data)
                got += len(data)
                i = int((time.monotonic() - start) / BIN_S)
                while len(bins) <= i:
                    bins.append(0)
                bins[i] += len(data)
    elapsed = time.monotonic() - start
    return {"s": elapsed, "bytes": got, "done": got == n,
            "exact": got == n and md5.digest() == _digest(n), "bins": bins}


def _stalled(d: dict, median_Bps: float) -> bool:
    """Under ``STALL_SHARE`` of the median rate for ``STALL_S`` (or never done)."""
    if not d["done"]:
        return True
    window = round(STALL_S / BIN_S)
    bins = d["bins"][:-1]  # the last bin is partial
    floor = STALL_SHARE * median_Bps * STALL_S
    return any(sum(bins[k:k + window]) < floor for k in range(0, len(bins) - window + 1))


async def _online(port: int) -> float:
    """Until a banner comes through the forward on ``port``; seconds it took."""
    start = time.monotonic()
    with trio.fail_after(ONLINE_S):
        while True:
            try:
                with trio.move_on_after(5):
                    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                        if await stream.receive_some(100):
                            return time.monotonic() - start
            except (trio.BrokenResourceError, OSError):
                pass
            await trio.sleep(0.5)


async def _first_bytes(port: int, count: int, speak_first: bool) -> list[float]:
    """New connections one after another: connect → the first byte back (after one byte
    sent, if ``speak_first``)."""
    out = []
    for _ in range(count):
        with trio.fail_after(30):
            start = time.perf_counter()
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                if speak_first:
                    await stream.send_all(b"x")
                if not await stream.receive_some(100):
                    raise RuntimeError("the forwarded connection closed before its first byte")
                out.append(time.perf_counter() - start)
    return out


def _forward_ports(fwd: DaemonProc, targets: dict[str, str]) -> dict[str, int]:
    by_target = {t: name for name, t in targets.items()}
    ports = {}
    for _ in targets:
        _, local, _, target = fwd.expect("forward ").split()  # forward 127.0.0.1:P -> H:P
        ports[by_target[target]] = int(local.rsplit(":", 1)[1])
    return ports


def summarise_pairs(pairs: list[dict]) -> dict:
    """The interleaved legs' figures: each leg's median, and ``forward_ratio`` as the median
    of the per-pair ratios (a pair whose channel leg did not finish has none). Two legs a
    few seconds apart share the machine's load; legs a minute apart do not."""
    ratios = [p["ratio"] for p in pairs if p["ratio"] is not None]
    chan = [p["channel_MBps"] for p in pairs]
    fwd = [p["forward_MBps"] for p in pairs]
    return {"channel_MBps": round(statistics.median(chan), 2) if chan else None,
            "forward_MBps": round(statistics.median(fwd), 2) if fwd else None,
            "forward_ratio": round(statistics.median(ratios), 3) if ratios else None,
            "forward_ratio_min": round(min(ratios), 3) if ratios else None,
            "forward_ratio_max": round(max(ratios), 3) if ratios else None}


async def _channel_leg(a: App, b: App, n: int, limit: float) -> dict:
    """``n`` bytes of 1024-byte frames from the exposing daemon's app to the forwarding
    daemon's, checked frame by frame (``channel.stream_frames``)."""
    frames = max(CYCLE, n // FRAME // CYCLE * CYCLE)
    elapsed, bins, received = await stream_frames(a, b, frames, limit)
    return {"MBps": received * FRAME / elapsed / MB, "done": received == frames,
            "peak_MBps": max(bins[:-1] or bins, default=0) / MB}


async def _pairs(apps: tuple[App, App], port: int, n: int, count: int, limit: float) -> list[dict]:
    """``count`` pairs of legs on the same live daemons, the channel and one forwarded
    download of ``n`` bytes, the order alternating (what one leg leaves warm, the other
    gets as often). A channel leg cut by ``limit`` ends the pairs: its frames still in
    flight would run into the next leg."""
    pairs = []
    for i in range(count):
        leg: dict = {}
        for which in (("channel", "forward") if i % 2 == 0 else ("forward", "channel")):
            if which == "channel":
                leg["channel"] = await _channel_leg(*apps, n, limit)
            else:
                leg["forward"] = await _download(port, n, limit)
        c, d = leg["channel"], leg["forward"]
        f = d["bytes"] / d["s"] / MB
        pair = {"channel_MBps": round(c["MBps"], 2), "forward_MBps": round(f, 2),
                "ratio": round(f / c["MBps"], 3) if c["done"] and c["MBps"] else None,
                "channel_first": i % 2 == 0, "channel_done": c["done"], "forward_exact": d["exact"],
                "forward_peak_MBps": round(max(d["bins"][:-1] or d["bins"]) / BIN_S / MB, 2),
                "channel_peak_MBps": round(c["peak_MBps"], 2)}
        pairs.append(pair)
        _say(f"  pair {i + 1}: channel {pair['channel_MBps']} MB/s, forward {pair['forward_MBps']} "
             f"MB/s, ratio {pair['ratio']}{'' if c['done'] else ' (channel cut)'}")
        if not c["done"]:
            break
    return pairs


def measure_forward(network: NodeInfo, mb: float, first_bytes: int, *, pairs: int = 0,
                    pings: int = 0, downloads: int = 0, download_mb: float = 20,
                    limit: float = 600) -> dict:
    """The ``-L`` legs on one pair of daemons: ``pairs`` pairs of the channel (apps on
    both bridge ports) and one download, each ``mb`` MB; the channel's round trip
    (``pings``); 8 downloads at once; first bytes; RSS. With ``downloads`` instead, that
    many downloads of ``download_mb`` one after another (the WAN leg)."""
    n = max(1, int(mb * MB))
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="toxbridge-bench-fwd-") as tmp, \
            ThreadServer(source) as src, ThreadServer(banner) as ban, ThreadServer(echo) as ech:
        targets = {name: f"127.0.0.1:{s.port}" for name, s in
                   (("source", src), ("banner", ban), ("echo", ech))}
        expose = [a for t in targets.values() for a in ("--expose", t)]
        forward = [a for t in targets.values() for a in ("-L", f"0:{t}")]
        with DaemonProc(["--listen", *expose], Path(tmp) / "x.tox", network, verbose=False) as exposer, \
                DaemonProc(["--peer", exposer.tox_id, *forward], Path(tmp) / "f.tox", network,
                           verbose=False) as fwd:
            ports = _forward_ports(fwd, targets)

            async def run() -> None:
                result["online_s"] = round(await _online(ports["banner"]), 2)
                a, b = await App.connect(exposer.port), await App.connect(fwd.port)
                with trio.fail_after(60):
                    await a.wait_event(code=301)
                    await b.wait_event(code=301)
                if downloads:
                    result.update(await _downloads(ports["source"], downloads, download_mb,
                                                   limit, (a, b)))
                    await a.aclose()
                    await b.aclose()
                    return
                _say(f"{pairs} pairs: the channel and one forwarded connection, {mb} MB each")
                legs = await _pairs((a, b), ports["source"], n, pairs, limit)
                result["pairs"] = legs
                result.update(summarise_pairs(legs))
                result["channel_done"] = all(p["channel_done"] for p in legs)
                result["forward_exact"] = all(p["forward_exact"] for p in legs)
                result["channel_peak_MBps"] = max(p["channel_peak_MBps"] for p in legs)
                result["forward_peak_MBps"] = max(p["forward_peak_MBps"] for p in legs)
                if pings and result["channel_done"]:
                    with trio.fail_after(300):
                        rtts = await app_pings(a, b, pings)
                    result["channel_rtt_p50_ms"] = _ms(rtts, .5)
                await a.aclose()
                await b.aclose()
                _say(f"{PARALLEL} connections at once, {mb / PARALLEL:.1f} MB each")
                part, runs = n // PARALLEL, []
                start = time.monotonic()
                async with trio.open_nursery() as nursery:
                    async def one_of() -> None:
                        runs.append(await _download(ports["source"], part, limit))
                    for _ in range(PARALLEL):
                        nursery.start_soon(one_of)
                elapsed = time.monotonic() - start
                result["parallel_exact"] = all(r["exact"] for r in runs)
                result["parallel_MBps"] = round(sum(r["bytes"] for r in runs) / elapsed / MB, 2)
                rates = [r["bytes"] / r["s"] / MB for r in runs]
                result["parallel_min_MBps"] = round(min(rates), 2)
                result["parallel_max_MBps"] = round(max(rates), 2)
                _say(f"{first_bytes} new connections, twice")
                await trio.sleep(1)
                first = await _first_bytes(ports["banner"], first_bytes, speak_first=False)
                spoken = await _first_bytes(ports["echo"], first_bytes, speak_first=True)
                result["first_byte_p50_ms"], result["first_byte_p99_ms"] = _ms(first, .5), _ms(first, .99)
                result["first_echo_p50_ms"], result["first_echo_p99_ms"] = _ms(spoken, .5), _ms(spoken, .99)

            trio.run(run)
            result["exposer_rss_MB"] = round(peak_rss_mb(exposer.process.pid), 1)
            result["forwarder_rss_MB"] = round(peak_rss_mb(fwd.process.pid), 1)
    return result


async def _downloads(port: int, count: int, download_mb: float, limit: float,
                     apps: tuple[App, App]) -> dict:
    """``count`` downloads one after another: their median rate, and how many stalled;
    and, before every CHANNEL_EVERY-th, a channel leg of the same size on the same daemons
    (the Link's own rate on this path, minutes apart from nothing: what the downloads'
    rate is held to)."""
    _say(f"{count} downloads of {download_mb} MB, a channel leg before every {CHANNEL_EVERY}th")
    size = max(1, int(download_mb * MB))
    runs, chans = [], []
    for i in range(count):
        if i % CHANNEL_EVERY == 0:
            chans.append(await _channel_leg(*apps, size, limit))
            _say(f"  channel: {chans[-1]['MBps']:.2f} MB/s")
            if not chans[-1]["done"]:
                break  # its frames still in flight would run into the downloads
        runs.append(await _download(port, size, limit))
        _say(f"  {i + 1}: {runs[-1]['bytes'] / MB / runs[-1]['s']:.2f} MB/s")
    rates = [r["bytes"] / r["s"] for r in runs]
    median = statistics.median(rates) if rates else 0.0
    done = [c["MBps"] for c in chans if c["done"]]
    channel = statistics.median(done) if done else None
    return {"downloads": len(runs), "download_MB": download_mb,
            "download_median_MBps": round(median / MB, 2),
            "download_min_MBps": round(min(rates) / MB, 2) if rates else None,
            "download_max_MBps": round(max(rates) / MB, 2) if rates else None,
            "downloads_stalled": sum(_stalled(r, median) for r in runs),
            "downloads_exact": sum(r["exact"] for r in runs),
            "wan_channel_legs": len(chans), "wan_channel_done": len(done) == len(chans),
            "wan_channel_median_MBps": round(channel, 2) if channel else None,
            "download_over_channel": round(median / MB / channel, 3) if channel else None}


def measure_keystrokes(network: NodeInfo, count: int) -> dict:
    """A ``-W`` node to an echo server behind a fresh exposing daemon; one byte per
    keystroke, the next once its echo is back."""
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="toxbridge-bench-fwdw-") as tmp, ThreadServer(echo) as ech:
        dest = f"127.0.0.1:{ech.port}"
        with DaemonProc(["--listen", "--expose", dest], Path(tmp) / "x.tox", network,
                        verbose=False) as exposer:
            _say(f"-W: {count} keystrokes")
            cmd = stdio_command(exposer.tox_id, dest, Path(tmp) / "w.tox", network)
            trio.run(_keystrokes, cmd, count, result)
    return result


async def _keystrokes(cmd: list[str], count: int, result: dict) -> None:
    proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL)
    try:
        async def key(timeout: float) -> None:
            with trio.fail_after(timeout):
                await proc.stdin.send_all(b"k")
                if await proc.stdout.receive_some(1) != b"k":
                    raise RuntimeError("-W: a keystroke's echo did not come back")

        start = time.monotonic()
        await key(ONLINE_S)  # the node connects to the peer first
        result["stdio_first_echo_s"] = round(time.monotonic() - start, 2)
        rtts = []
        for _ in range(count):
            t = time.perf_counter()
            await key(10)
            rtts.append(time.perf_counter() - t)
        result["keystrokes"] = len(rtts)
        result["keystroke_p50_ms"], result["keystroke_p99_ms"] = _ms(rtts, .5), _ms(rtts, .99)
        await proc.stdin.aclose()  # EOF: the echo's EOF ends the node
        with trio.fail_after(30):
            assert await proc.stdout.receive_some(1) == b""
            result["stdio_exit"] = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdin.aclose()
        await proc.stdout.aclose()


def _combine(raw: dict, fwd: dict, keys: dict) -> dict:
    out = {"raw_MBps": raw.get("lossless_MBps"), "raw_rtt_p50_ms": raw.get("rtt_p50_ms"),
           "raw_rtt_p99_ms": raw.get("rtt_p99_ms")}
    if raw.get("lossless_done") is False:  # cut by --limit: what it moved, and no pings
        out["raw_done"] = False
    out.update(fwd)
    if fwd.get("forward_MBps"):
        chan = fwd.get("channel_MBps")
        done = fwd.get("channel_done") and chan  # a stalled channel is no yardstick
        out["parallel_ratio"] = round(fwd["parallel_MBps"] / chan, 3) if done else None
        out["forward_raw_ratio"] = round(fwd["forward_MBps"] / raw["lossless_MBps"], 3) \
            if raw.get("lossless_MBps") else None
    out.update(keys)
    if keys.get("keystroke_p50_ms") is not None and raw.get("rtt_p50_ms") is not None:
        out["keystroke_over_raw_p50_ms"] = round(keys["keystroke_p50_ms"] - raw["rtt_p50_ms"], 3)
    return out


def _inside(cfg: dict) -> dict:
    """The WAN leg, run inside the namespace."""
    boot = BootstrapDaemon(tcp_port=BOOTSTRAP_TCP_PORT).start()
    network = dataclasses.replace(boot.info, tcp_port=None)  # direct: no path around the line
    try:
        _say("raw toxcore round trip on the path")
        raw = measure_raw(network, 1, pings=100, warmup_pings=20)
        fwd = {} if cfg.get("keys_only") else measure_forward(
            network, 0, 0, downloads=cfg["count"], download_mb=cfg["download_mb"],
            limit=cfg["limit_s"])
        keys = measure_keystrokes(network, cfg["keystrokes"])
    finally:
        boot.stop()
    return _combine(raw, fwd, keys)


def _wan(args) -> dict:
    spec = PathSpec(delay_s=WAN_RTT_S / 2, seed=1)
    cfg = {"count": args.count, "download_mb": args.download_mb, "limit_s": args.limit,
           "keystrokes": args.keystrokes, "keys_only": args.keys_only}
    legs = args.count + -(-args.count // CHANNEL_EVERY)  # downloads and channel legs
    budget = 300 + (0 if args.keys_only else legs * args.limit) + args.keystrokes * 2
    with WanNamespace(spec) as wan:
        proc = wan.spawn([sys.executable, "-m", "bench", "forward", "--inside", json.dumps(cfg)],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            out, _ = proc.communicate(timeout=budget)
            inner = json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 else \
                {"error": f"exit status {proc.returncode}"}
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            inner = {"error": f"not done in {budget} s"}
        except (ValueError, IndexError):
            inner = {"error": "no JSON from the run inside the namespace"}
        line = wan.line.stats()
    inner["path_rtt_ms"] = WAN_RTT_S * 1000
    inner["line"] = {k: line.get(k) for k in ("offered", "lost", "queue_full", "kernel_dropped", "max_held")}
    return inner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench forward", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, help="megabytes each loopback leg moves (default 100; --quick 20)")
    parser.add_argument("--quick", action="store_true", help="smaller volumes and counts")
    parser.add_argument("--wan", action="store_true", help="on the WAN emulator's 50 ms path instead")
    parser.add_argument("--count", type=int, help="--wan: downloads (default 20; --quick 5)")
    parser.add_argument("--download-mb", type=float, default=20, help="--wan: MB per download (default 20)")
    parser.add_argument("--limit", type=float, default=120, help="seconds a download (and the channel leg) may take (default 120)")
    parser.add_argument("--keystrokes", type=int, help="keystrokes through -W (default 300; --quick 100)")
    parser.add_argument("--keys-only", action="store_true",
                        help="--wan: only the raw round trip and the keystrokes, no downloads")
    parser.add_argument("--pairs", type=int,
                        help="pairs of loopback legs, the channel and one forward, interleaved (default 5; --quick 3)")
    parser.add_argument("--connections", type=int, help="new connections timed (default 50; --quick 20)")
    parser.add_argument("--inside", help=argparse.SUPPRESS)  # the WAN leg inside its namespace
    args = parser.parse_args(argv)
    if args.inside:
        print(json.dumps(_inside(json.loads(args.inside))), flush=True)
        return 0
    quick = args.quick
    args.mb = args.mb if args.mb is not None else (20 if quick else 100)
    args.count = args.count if args.count is not None else (5 if quick else 20)
    args.keystrokes = args.keystrokes if args.keystrokes is not None else (100 if quick else 300)
    args.pairs = args.pairs if args.pairs is not None else (3 if quick else 5)
    args.connections = args.connections if args.connections is not None else (20 if quick else 50)
    for name in ("mb", "count", "keystrokes", "connections", "pairs", "download_mb", "limit"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.keys_only and not args.wan:
        parser.error("--keys-only is for --wan")
    t0 = time.monotonic()
    head = {"bench": "forward", "quick": quick, "wan": args.wan}
    if args.wan:
        why_not = unavailable()
        if why_not is not None:
            print(f"bench forward: the WAN emulator cannot run here: {why_not}", file=sys.stderr)
            return 2
        result = {**head, **({"keys_only": True} if args.keys_only else {"count": args.count}),
                  **_wan(args)}
    else:
        boot = start_bootstrap()
        try:
            _say(f"raw toxcore, {args.mb} MB")
            # Bounded too: a raw stream stalled past 6 minutes once (2026-12-02).
            raw = measure_raw(boot.info, args.mb, pings=1000, use_relay=True, time_limit=args.limit)
            # Bounded: a channel leg that stalls is a result (done false), not a hang.
            fwd = measure_forward(boot.info, args.mb, args.connections, pairs=args.pairs,
                                  pings=1000, limit=args.limit)
            keys = measure_keystrokes(boot.info, args.keystrokes)
        finally:
            boot.stop()
        result = {**head, "mb": args.mb, **_combine(raw, fwd, keys)}
    result["total_s"] = round(time.monotonic() - t0, 1)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
