"""The mesh benchmark (issue 14): a hub and its spokes, many streams, in one run.

On one private network: raw toxcore on ``--mb`` (the anchor), then a hub (``--listen``)
and three spokes that each peer only with it, all whole nodes (daemon + bridge_local).
In turn: chat round trips between users on two spokes, idle and while a file of ``--mb``
moves between them through the hub (spoke -> hub -> spoke, ``bench.files.three_hops``);
bulk streams (``streams.sock``) from one spoke, then from three at once, to the hub; two
streams from one spoke, one of them never read at the hub, against the other alone;
messages per second spoke user to spoke user through the hub; each node's RSS and, after
a quiet settle, idle CPU. Last, more spokes (whole nodes; ``--light``: daemons only) until
the hub has ``--hub-peers`` peers online: its RSS and idle CPU then. Prints one JSON object
(progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import trio

from toxbridge.control.server import control_path, node_data_dir, request as control_request
from toxbridge.network import NodeInfo
from toxbridge.testing import DaemonProc, start_bootstrap
from toxbridge.testing.streamsock import accept_stream, drain, open_stream, push, streams_path

from .channel import peak_rss_mb
from .files import random_file, three_hops
from .idle import cpu_percent
from .meshidle import measure_idle_only
from .meshhops import analyse as analyse_hops, traced_env
from .messages import flood
from .raw_tox import MB, measure_raw

SPOKES = 3  # whole nodes: two for chat and the file, all three for the bulk sum
KIND_BULK, KIND_OTHER, KIND_STALLED = 40, 41, 42  # the bench's stream kinds (bridge_local: 48, 49)
ONLINE_S = 180.0  # for a spoke's channel to come up (16 start at once on 2 cores)
STALL_S = 1.0  # a stalled stream: nothing more taken for this long
STALL_MAX_S = 20.0
PHASE_S = 900.0  # any one phase's bound, beyond its own limits


def _say(text: str) -> None:
    print(f"bench mesh: {text}", file=sys.stderr, flush=True)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _online_peers(node: DaemonProc) -> int:
    """How many of the node's peers have their channel open (its control socket says)."""
    status = control_request(control_path(node_data_dir(node.profile)), "status")
    return sum(1 for p in status.get("peers", []) if p.get("online"))


def wait_online(hub: DaemonProc, count: int, timeout: float = ONLINE_S) -> float:
    """Until ``count`` of the hub's peers are online; seconds it took."""
    start = time.monotonic()
    while (n := _online_peers(hub)) < count:
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"only {n} of {count} peers online at the hub after {timeout:g} s")
        time.sleep(0.5)
    return time.monotonic() - start


async def _bulk(hub: DaemonProc, spokes: list[DaemonProc], each: int) -> dict:
    """``each`` bytes from every spoke in ``spokes`` at once, each on its own bulk stream to
    the hub; the sum's rate (all bytes / until the last arrived) and each one's."""
    rates: list[float] = []
    total = [0]
    async with trio.open_nursery() as nursery:
        async def receive() -> None:
            stream, _ = await accept_stream(streams_path(hub.profile), KIND_BULK)
            async with stream:
                got, seconds = await drain(stream, each)
            total[0] += got
            rates.append(got / seconds / MB)

        for _ in spokes:  # the accepts wait first: an OPEN nobody accepts is refused
            nursery.start_soon(receive)
        await trio.sleep(0.3)
        start = time.monotonic()
        for spoke in spokes:
            nursery.start_soon(_send, streams_path(spoke.profile), KIND_BULK, each)
    elapsed = time.monotonic() - start
    if total[0] != each * len(spokes):
        raise RuntimeError(f"bulk: {total[0]} of {each * len(spokes)} bytes arrived")
    return {"MBps": round(total[0] / elapsed / MB, 2), "each_MBps": sorted(round(r, 2) for r in rates)}


async def _send(spoke_sock: Path, kind: int, n: int) -> None:
    stream = await open_stream(spoke_sock, kind)
    async with stream:
        await push(stream, n)
        try:  # the hub's side closes once it has read it all: EOF here
            await stream.receive_some(1)
        except trio.BrokenResourceError:
            pass


async def _one_stream(hub: DaemonProc, spoke: DaemonProc, n: int) -> float:
    """``n`` bytes spoke -> hub on a fresh bulk stream of KIND_OTHER; MB/s."""
    async with trio.open_nursery() as nursery:
        accepted: list = []

        async def accept() -> None:
            accepted.append(await accept_stream(streams_path(hub.profile), KIND_OTHER))
        nursery.start_soon(accept)
        await trio.sleep(0.3)
        start = time.monotonic()
        nursery.start_soon(_send, streams_path(spoke.profile), KIND_OTHER, n)
        while not accepted:
            await trio.sleep(0.01)
        stream = accepted[0][0]
        async with stream:
            got, _ = await drain(stream, n)
        elapsed = time.monotonic() - start  # the open to the last byte, not the EOF after it
    if got != n:
        raise RuntimeError(f"the other stream: {got} of {n} bytes")
    return n / elapsed / MB


async def _stalled(hub: DaemonProc, spoke: DaemonProc, n: int) -> dict:
    """The other stream alone, beside a stream whose reader (at the hub) stopped, alone
    again; ``other_stream_ratio``: beside / the better of the two alone."""
    result: dict = {}
    alone = [await _one_stream(hub, spoke, n)]
    pushed = [0]
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            accepted: list = []

            async def accept() -> None:
                accepted.append(await accept_stream(streams_path(hub.profile), KIND_STALLED))
            nursery.start_soon(accept)
            await trio.sleep(0.3)
            writer = await open_stream(streams_path(spoke.profile), KIND_STALLED)
            while not accepted:
                await trio.sleep(0.01)
        sink = accepted[0][0]  # never read

        async def fill() -> None:
            block = bytes(64 * 1024)
            while True:
                await writer.send_all(block)
                pushed[0] += len(block)
        nursery.start_soon(fill)
        start, last, seen = time.monotonic(), time.monotonic(), -1
        while time.monotonic() - last < STALL_S and time.monotonic() - start < STALL_MAX_S:
            if pushed[0] != seen:
                seen, last = pushed[0], time.monotonic()
            await trio.sleep(0.05)
        result["stalled_took_MB"] = round(pushed[0] / MB, 2)
        result["stalled_stuck"] = time.monotonic() - last >= STALL_S
        beside = await _one_stream(hub, spoke, n)
        result["stalled_took_after_MB"] = round(pushed[0] / MB, 2)  # the same, if it stayed stuck
        nursery.cancel_scope.cancel()
    sink.socket.close()  # unread data: the stream resets
    await writer.aclose()
    alone.append(await _one_stream(hub, spoke, n))
    result["other_alone_MBps"] = [round(a, 2) for a in alone]
    result["other_beside_stalled_MBps"] = round(beside, 2)
    result["other_stream_ratio"] = _ratio(beside, max(alone))
    return result


async def _traffic(hub: DaemonProc, spokes: list[DaemonProc], root: Path, cfg: dict) -> dict:
    result: dict = {}
    s1, s2 = spokes[0], spokes[1]
    _say(f"chat idle, then during a {cfg['mb']} MB file spoke -> hub -> spoke")
    src = root / "file.bin"
    md5 = await trio.to_thread.run_sync(random_file, src, int(cfg["mb"] * MB))
    marks: dict = {"idle": [], "busy": []}
    hops = await three_hops(s1, s2, src, md5, root / "got", cfg["file_limit"],
                            idle_pings=cfg["idle_pings"], marks=marks)
    src.unlink()
    if cfg["hops"]:
        roles = {s1.process.pid: "s1", s2.process.pid: "s2", hub.process.pid: "hub"}
        trace = Path(cfg["hops"])
        result["hops_idle"] = analyse_hops(trace, roles, marks["idle"])
        result["hops_busy"] = analyse_hops(trace, roles, marks["busy"])
    result.update({
        "file_path": "spoke-hub-spoke", "file_done": hops["file_done"],
        "file_MB": hops["file_MB"], "file_MBps": hops["file_MBps"],
        "md5_equal": hops.get("md5_equal", False),
        "chat_idle_p50_ms": hops["chat_rtt_idle_p50_ms"],
        "chat_idle_p99_ms": hops["chat_rtt_idle_p99_ms"],
        "chat_busy_p50_ms": hops["chat_rtt_p50_ms"], "chat_busy_p99_ms": hops["chat_rtt_p99_ms"],
        "chat_busy_round_trips": hops["chat_round_trips"],
        "chat_busy_over_idle": hops["chat_rtt_ratio"]})
    if cfg["chat_only"]:
        return result
    with trio.fail_after(PHASE_S):
        _say(f"bulk: {cfg['mb']} MB from one spoke, then {cfg['mb'] / SPOKES:.1f} MB from each of {SPOKES}")
        one = await _bulk(hub, spokes[:1], int(cfg["mb"] * MB))
        many = await _bulk(hub, spokes, int(cfg["mb"] * MB / SPOKES))
    result["bulk1_MBps"] = one["MBps"]
    result["bulk3_MBps"] = many["MBps"]
    result["bulk3_each_MBps"] = many["each_MBps"]
    with trio.fail_after(PHASE_S):
        _say(f"a stalled stream beside another ({cfg['stall_mb']} MB)")
        result.update(await _stalled(hub, s1, int(cfg["stall_mb"] * MB)))
    with trio.fail_after(PHASE_S):
        _say(f"{cfg['messages']} messages spoke user -> spoke user through the hub")
        average, peak = await flood(s1.app_port, s2.app_port, cfg["messages"], "hub")
    result["hub_msgs_per_s"] = round(average)
    result["hub_msgs_peak_per_s"] = round(peak)
    return result


def _idle_cpu(pids: list[int], settle: float, seconds: float) -> list[float]:
    time.sleep(settle)
    return cpu_percent(pids, seconds)


def measure_mesh(network: NodeInfo, cfg: dict) -> dict:
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="toxbridge-bench-mesh-") as tmp, ExitStack() as procs:
        root = Path(tmp)

        def node(args: list[str], name: str, whole: bool) -> DaemonProc:
            return procs.enter_context(DaemonProc(args, root / f"{name}.tox", network,
                                                  verbose=False, raw=not whole))

        _say(f"a hub and {SPOKES} spokes (whole nodes)")
        with traced_env(Path(cfg["hops"])) if cfg["hops"] else ExitStack():
            hub = node(["--listen"], "hub", True)
            spokes = [node(["--peer", hub.tox_id], f"s{i}", True) for i in range(1, SPOKES + 1)]
        result["online_s"] = round(wait_online(hub, SPOKES), 2)
        result.update(trio.run(_traffic, hub, spokes, root, cfg))
        if cfg["chat_only"]:
            return result
        result["hub_rss_MB"] = round(peak_rss_mb(hub.process.pid), 1)
        result["spoke_rss_MB"] = [round(peak_rss_mb(s.process.pid), 1) for s in spokes]
        _say(f"idle CPU: settle {cfg['settle']} s, measure {cfg['seconds']} s")
        cpu = _idle_cpu([hub.process.pid] + [s.process.pid for s in spokes],
                        cfg["settle"], cfg["seconds"])
        result["hub3_idle_cpu_pct"] = cpu[0]
        result["spoke_idle_cpu_pct"] = cpu[1:]  # whole nodes with one idle peer each
        result["node1_idle_cpu_pct"] = round(sum(cpu[1:]) / len(cpu[1:]), 2)
        result["peers"] = SPOKES
        many = cfg["hub_peers"]
        if many > SPOKES:
            kind = "daemons only" if cfg["light"] else "whole nodes"
            _say(f"{many - SPOKES} more spokes ({kind}) until the hub has {many} peers")
            extra = [node(["--peer", hub.tox_id], f"x{i}", not cfg["light"])
                     for i in range(many - SPOKES)]
            result["extra_spokes"] = "daemon" if cfg["light"] else "whole"
            result["hub_many_online_s"] = round(wait_online(hub, many), 2)
            result["peers"] = many
            cpu = _idle_cpu([hub.process.pid, extra[0].process.pid], cfg["settle"], cfg["seconds"])
            result["hub_many_idle_cpu_pct"] = cpu[0]
            result["extra_spoke_idle_cpu_pct"] = cpu[1]  # one idle peer: the hub
            result["hub_many_rss_MB"] = round(peak_rss_mb(hub.process.pid, "VmRSS"), 1)
            result["hub_many_peak_rss_MB"] = round(peak_rss_mb(hub.process.pid), 1)  # the file's too
            result["extra_spoke_rss_MB"] = round(peak_rss_mb(extra[0].process.pid), 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench mesh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, help="the file, the raw anchor and each bulk leg's "
                        "total, in MB (200; --quick: 5)")
    parser.add_argument("--quick", action="store_true",
                        help="small volumes, short idle windows, no extra spokes: a smoke test")
    parser.add_argument("--hub-peers", type=int,
                        help=f"peers of the hub in the last part (16; --quick: 0); {SPOKES} or less "
                        "skips it")
    parser.add_argument("--no-16", dest="hub_peers", action="store_const", const=0,
                        help="skip the many-peer part (as --hub-peers 0)")
    parser.add_argument("--light", action="store_true",
                        help="the extra spokes run only the daemon (--raw): lighter, but the "
                        "hub's bridge_local then retries its opens to them every 5 s")
    parser.add_argument("--idle-only", action="store_true",
                        help="only the hub with --hub-peers idle peers (16), against a raw "
                        "toxcore hub with as many raw friends (bench/meshidle.py)")
    parser.add_argument("--profile", metavar="FILE",
                        help="with --idle-only: py-spy records the hub (all threads, --idle) "
                        "for one more window into FILE (raw format)")
    parser.add_argument("--chat-only", action="store_true",
                        help="only part 1: the chat round trip idle and during the file")
    parser.add_argument("--hops", metavar="DIR",
                        help="trace each chat line hop by hop into DIR (bench/meshhops.py; "
                        "the nodes get bench/hopsite on their PYTHONPATH): hops_idle, hops_busy")
    parser.add_argument("--stall-mb", type=float, help="the other stream's volume (50; --quick: 2)")
    parser.add_argument("--messages", type=int, help="messages through the hub (20000; --quick: 500)")
    parser.add_argument("--seconds", type=float, help="idle CPU window (30; --quick: 4)")
    parser.add_argument("--settle", type=float, help="quiet before each CPU window (10; --quick: 2)")
    parser.add_argument("--limit", type=float, default=600,
                        help="s the file may take between the bridges, and the raw anchor's "
                        "stream (600)")
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value, full, small):
        return value if value is not None else (small if quick else full)
    cfg = {"mb": pick(args.mb, 200, 5), "hub_peers": pick(args.hub_peers, 16, 0),
           "stall_mb": pick(args.stall_mb, 50, 2), "messages": pick(args.messages, 20_000, 500),
           "seconds": pick(args.seconds, 30, 4), "settle": pick(args.settle, 10, 2),
           "idle_pings": pick(None, 200, 50), "file_limit": args.limit, "light": args.light,
           "profile": args.profile, "chat_only": args.chat_only, "hops": args.hops}
    for name in ("mb", "stall_mb", "messages", "seconds", "file_limit"):
        if cfg[name] <= 0:
            parser.error(f"--{name.replace('file_', '').replace('_', '-')} must be positive")
    if cfg["settle"] < 0:
        parser.error("--settle must not be negative")
    if args.hops:
        Path(args.hops).mkdir(parents=True, exist_ok=True)
    if args.profile and not args.idle_only:
        parser.error("--profile goes with --idle-only")
    if args.idle_only:
        if args.quick or cfg["hub_peers"] < 2:
            parser.error("--idle-only needs --hub-peers of 2 or more (and no --quick)")
        return _idle_only(cfg)
    t0 = time.monotonic()
    boot = start_bootstrap()
    try:
        _say(f"raw toxcore, {cfg['mb']} MB")
        # Bounded too: beside other tests raw toxcore's stream once sat for minutes.
        raw = measure_raw(boot.info, cfg["mb"], pings=100, use_relay=True,
                          time_limit=cfg["file_limit"])
        mesh = measure_mesh(boot.info, cfg)
    finally:
        boot.stop()
    result = {"bench": "mesh", "mb": cfg["mb"], "quick": quick, "raw_MBps": raw["lossless_MBps"],
              "raw_peak_MBps": raw["lossless_peak_MBps"], "raw_done": raw["lossless_done"], **mesh}
    if not cfg["chat_only"]:
        result["bulk1_over_raw"] = _ratio(mesh["bulk1_MBps"], raw["lossless_MBps"])
        result["bulk3_over_raw"] = _ratio(mesh["bulk3_MBps"], raw["lossless_MBps"])
    result["file_over_raw"] = _ratio(mesh["file_MBps"], raw["lossless_MBps"])
    result["total_s"] = round(time.monotonic() - t0, 1)
    json.dump(result, sys.stdout)
    print()
    return 0


def _idle_only(cfg: dict) -> int:
    t0 = time.monotonic()
    boot = start_bootstrap()
    try:
        _say(f"idle only: a raw hub, then a hub node, each with {cfg['hub_peers']} peers")
        result = {"bench": "mesh", "idle_only": True,
                  **measure_idle_only(boot.info, cfg, wait_online)}
    finally:
        boot.stop()
    result["total_s"] = round(time.monotonic() - t0, 1)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
