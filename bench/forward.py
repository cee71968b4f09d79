"""The forwarding benchmark: TCP through ``-L`` / ``-W`` against the channel and raw toxcore.

One run, one private network on 127.0.0.1, the same volume for every leg: raw toxcore
(``raw_tox.measure_raw``), the channel (``channel.measure_channel``), then two daemons,
one exposing small servers (``toxbridge.testing.servers``) and one forwarding a local port
to each (``-L``): one download of ``--mb`` MB through the forward, 8 at once (``--mb`` / 8
each), connect-to-first-byte of new connections on the live link (a server that speaks
first, and an echo the client speaks to first), both daemons' peak RSS; then a ``-W`` node
against a fresh exposing daemon: one-byte keystrokes to an echo server, each one's round
trip. Every download is verified (md5 of the known pattern).

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
from toxbridge.testing import DaemonProc, start_bootstrap, stdio_command
from toxbridge.testing.servers import ThreadServer, banner, echo, pattern, source
from toxbridge.testing.wan import BOOTSTRAP_TCP_PORT, PathSpec, WanNamespace, unavailable

from .channel import measure_channel, peak_rss_mb
from .raw_tox import MB, measure_raw, percentile

ROOT = Path(__file__).resolve().parent.parent
PARALLEL = 8
BIN_S = 0.5  # a download's rate bins (stall detection)
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


def measure_forward(network: NodeInfo, mb: float, first_bytes: int, *, downloads: int = 0,
                    download_mb: float = 20, limit: float = 600) -> dict:
    """The ``-L`` legs: one download, 8 at once, first bytes, RSS; with ``downloads``
    instead, that many downloads of ``download_mb`` one after another (the WAN leg)."""
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
                if downloads:
                    _say(f"{downloads} downloads of {download_mb} MB")
                    size = max(1, int(download_mb * MB))
                    runs = []
                    for i in range(downloads):
                        runs.append(await _download(ports["source"], size, limit))
                        _say(f"  {i + 1}: {runs[-1]['bytes'] / MB / runs[-1]['s']:.2f} MB/s")
                    rates = [r["bytes"] / r["s"] for r in runs]
                    median = statistics.median(rates)
                    result["downloads"] = downloads
                    result["download_MB"] = download_mb
                    result["download_median_MBps"] = round(median / MB, 2)
                    result["download_min_MBps"] = round(min(rates) / MB, 2)
                    result["download_max_MBps"] = round(max(rates) / MB, 2)
                    result["downloads_stalled"] = sum(_stalled(r, median) for r in runs)
                    result["downloads_exact"] = sum(r["exact"] for r in runs)
                    return
                _say(f"one connection, {mb} MB")
                one = await _download(ports["source"], n, limit)
                result["forward_exact"] = one["exact"]
                result["forward_MBps"] = round(one["bytes"] / one["s"] / MB, 2)
                result["forward_peak_MBps"] = round(max(one["bins"][:-1] or one["bins"]) / BIN_S / MB, 2)
                _say(f"{PARALLEL} connections at once, {mb / PARALLEL:.1f} MB each")
                part, runs = n // PARALLEL, []
                start = time.monotonic()
                async with trio.open_nursery() as nursery:
                    async def one_of(i: int) -> None:
                        runs.append(await _download(ports["source"], part, limit))
                    for i in range(PARALLEL):
                        nursery.start_soon(one_of, i)
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


def _combine(raw: dict, chan: dict | None, fwd: dict, keys: dict) -> dict:
    out = {"raw_MBps": raw.get("lossless_MBps"), "raw_rtt_p50_ms": raw.get("rtt_p50_ms"),
           "raw_rtt_p99_ms": raw.get("rtt_p99_ms")}
    if chan is not None:
        out["channel_MBps"] = chan.get("MBps")
        out["channel_done"] = chan.get("done")
        out["channel_rtt_p50_ms"] = chan.get("rtt_p50_ms")
    out.update(fwd)
    if fwd.get("forward_MBps"):
        done = chan is not None and chan.get("done")  # a stalled channel is no yardstick
        out["forward_ratio"] = round(fwd["forward_MBps"] / chan["MBps"], 3) if done else None
        out["parallel_ratio"] = round(fwd["parallel_MBps"] / chan["MBps"], 3) if done else None
        out["forward_raw_ratio"] = round(fwd["forward_MBps"] / raw["lossless_MBps"], 3)
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
    return _combine(raw, None, fwd, keys)


def _wan(args) -> dict:
    spec = PathSpec(delay_s=WAN_RTT_S / 2, seed=1)
    cfg = {"count": args.count, "download_mb": args.download_mb, "limit_s": args.limit,
           "keystrokes": args.keystrokes, "keys_only": args.keys_only}
    budget = 300 + (0 if args.keys_only else args.count * args.limit) + args.keystrokes * 2
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
    args.connections = args.connections if args.connections is not None else (20 if quick else 50)
    for name in ("mb", "count", "keystrokes", "connections", "download_mb", "limit"):
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
            raw = measure_raw(boot.info, args.mb, pings=1000, use_relay=True)
            _say(f"the channel, {args.mb} MB")
            # Bounded: a channel that stalls is a result (done false), not a hang.
            chan = measure_channel(boot.info, args.mb, pings=1000, time_limit=args.limit)
            fwd = measure_forward(boot.info, args.mb, args.connections)
            keys = measure_keystrokes(boot.info, args.keystrokes)
        finally:
            boot.stop()
        result = {**head, "mb": args.mb, **_combine(raw, chan, fwd, keys)}
    result["total_s"] = round(time.monotonic() - t0, 1)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
