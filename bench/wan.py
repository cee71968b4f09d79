"""The WAN benchmark: raw toxcore, the channel and a file, on emulated long and lossy paths.

Each row is one path (round trip, random loss, a bottleneck or none, direct UDP or a TCP
relay), built fresh in its own network namespace with only ``lo`` and the WAN emulator
(``toxbridge.testing.wan``) on its Tox traffic. In it, on the same volume: raw toxcore
(``raw_tox.measure_raw``), the channel through two ``--raw`` daemons with an app on each
(``channel.measure_channel``), and a file bridge to bridge through two whole nodes
(``files.measure_files``). Each leg has a time limit: a crawl is a result, and the row
says what it moved (``--trace``: and what held the channel back). Then the bottleneck's
path alone, plain UDP and TCP with no Tox (``line_check``: is the emulator the limit?).
Then, on the 50 ms path: a 5 s SIGSTOP of the receiving daemon and a
35 s cut of the path under a steady sequence-numbered stream, the time until the rate is
back, and the frames lost or duplicated. Then, on the 50 ms path with the 50 mbit
bottleneck: two channels through it (``share_ratio``: the larger's rate over the smaller's)
and a channel beside a bulk TCP flow (``tcp_share``: TCP's share of the bottleneck)
(``bench.wanshare``). Prints one JSON object (progress on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from toxbridge.framing import DATA, EVENT, FrameDecoder, decode_event, encode_data
from toxbridge.network import BootstrapDaemon
from toxbridge.testing import App, DaemonProc
from toxbridge.testing.wan import BOOTSTRAP_TCP_PORT, LineControl, PathSpec, WanNamespace, unavailable
from toxbridge.testing.wanblast import BLAST_TCP_PORT

from .channel import measure_channel
from . import wanshare, wantrace
from .files import measure_files
from .raw_tox import MB, measure_raw

ROOT = Path(__file__).resolve().parent.parent
RTTS_MS = (20, 50, 150)
LEGS = ("raw", "channel", "file")
LOSSES = (0.0, 0.001, 0.01)
BOTTLENECK_MBPS = 6.25  # 50 mbit/s
QUEUE_S = 0.05  # the bottleneck's buffer: 50 ms of its rate (tbf's "latency 50ms")
RECOVERY_RTT_MS = 50
FREEZE_S, CUT_S = 5.0, 35.0
FRAME = 1024
BIN_S = 0.1  # the recovery leg's rate bins
BATCH = 16  # frames per write in the recovery leg
MAX_FRAMES = 1_000_000  # the recovery leg's stream, at most (1 GB)


def plan(quick: bool, *, rtts: tuple[int, ...] | None = None, losses: tuple[float, ...] = LOSSES,
         necks: str = "both", relay: bool = True) -> list[dict]:
    """The rows: every round trip x loss x bottleneck, plus a TCP relay (no UDP) per round
    trip. ``rtts``/``losses``/``necks`` ("both", "only", "none")/``relay``: a subset."""
    rtts = rtts or ((RECOVERY_RTT_MS,) if quick else RTTS_MS)
    chosen = {"both": (None, BOTTLENECK_MBPS), "only": (BOTTLENECK_MBPS,), "none": (None,)}[necks]
    rows = [{"rtt_ms": rtt, "loss": loss, "bottleneck_MBps": neck, "relay": False}
            for rtt in rtts for loss in losses for neck in chosen]
    if relay and necks != "only":
        rows += [{"rtt_ms": rtt, "loss": 0.0, "bottleneck_MBps": None, "relay": True} for rtt in rtts]
    return rows


def path_for(row: dict) -> PathSpec:
    """The line's path for a row. Over a relay a round trip crosses the line four times
    (peer → relay → peer and back), directly twice: the delay is split accordingly."""
    crossings = 4 if row["relay"] else 2
    rate = row["bottleneck_MBps"] * MB if row["bottleneck_MBps"] else None
    queue = max(64_000, int(rate * QUEUE_S)) if rate else 64_000
    return PathSpec(delay_s=row["rtt_ms"] / 1000 / crossings, loss=row["loss"], rate_Bps=rate,
                    queue_bytes=queue, seed=1)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# -- inside the namespace ---------------------------------------------------------------


def _leg(name: str, fn, *args, **kwargs) -> dict:
    print(f"bench wan:   {name} ...", file=sys.stderr, flush=True)
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # a leg that broke is a result too: the row says how
        return {"error": f"{type(exc).__name__}: {exc}"}


def _inside_row(cfg: dict) -> dict:
    relay, mb, limit = cfg["relay"], cfg["mb"], cfg["limit_s"]
    legs = cfg.get("legs", LEGS)
    trace = Path(cfg["trace_dir"]) if cfg.get("trace_dir") else None
    line = LineControl(cfg["control"])
    skipped = {"error": "skipped (--legs)"}
    boot = BootstrapDaemon(tcp_port=BOOTSTRAP_TCP_PORT).start()
    try:
        # Direct rows get no relay: its TCP would be a path around the line.
        network = boot.info if relay else dataclasses.replace(boot.info, tcp_port=None)
        args = ("--no-udp",) if relay else ()
        raw = _leg("raw toxcore", measure_raw, network, mb, pings=20, use_relay=relay, udp=not relay,
                   time_limit=limit) if "raw" in legs else skipped
        before = line.stats()
        chan = _leg("channel", measure_channel, network, mb, pings=0, time_limit=limit, daemon_args=args,
                    trace_dir=trace) if "channel" in legs else skipped
        after = line.stats()
        if "stream_t" in chan:  # the line during the channel's stream: did it keep up?
            span = chan["stream_t"][1] - chan["stream_t"][0]
            chan["line"] = {"cpu": round((after["cpu_s"] - before["cpu_s"]) / max(span, 1e-3), 3),
                            **{k: after[k] - before[k] for k in ("offered", "lost", "queue_full")},
                            "kernel_dropped": after["kernel_dropped"]}
        if trace is not None and "stream_t" in chan:
            lines = wantrace.read(trace / "sender.jsonl")
            chan["trace"] = wantrace.summarize(lines, *chan["stream_t"])
        files = _leg("file", measure_files, network, mb, time_limit=limit, daemon_args=args) \
            if "file" in legs else skipped
    finally:
        boot.stop()
    return {"raw": raw, "channel": chan, "files": files}


def _frame(seq: int) -> bytes:
    return seq.to_bytes(8, "big") + bytes([seq & 0xFF]) * (FRAME - 8)


class _Tally:
    """What the receiving app got: each sequence number once, and the bytes per bin."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.seen = bytearray(MAX_FRAMES)
        self.unique = self.duplicated = self.wrong = 0
        self.bins: list[int] = []

    def frame(self, payload: bytes, now: float) -> None:
        seq = int.from_bytes(payload[:8], "big")
        if seq >= MAX_FRAMES or payload != _frame(seq):
            self.wrong += 1
            return
        if self.seen[seq]:
            self.duplicated += 1
            return
        self.seen[seq] = 1
        self.unique += 1
        i = int((now - self.start) / BIN_S)
        while len(self.bins) <= i:
            self.bins.append(0)
        self.bins[i] += len(payload)

    def rate(self, t_from: float, t_to: float) -> float:
        """Bytes per second received between two times."""
        a, b = int((t_from - self.start) / BIN_S), int((t_to - self.start) / BIN_S)
        return sum(self.bins[max(0, a):b]) / max(BIN_S, t_to - t_from)

    def recovered_after(self, since: float, baseline: float) -> float | None:
        """Seconds after ``since`` from which a whole second moved >= 0.8 x ``baseline``."""
        first = int((since - self.start) / BIN_S) + 1  # the first bin wholly after
        window = round(1 / BIN_S)
        need = 0.8 * baseline * window * BIN_S
        for k in range(first, len(self.bins) - window + 1):
            if sum(self.bins[k:k + window]) >= need:
                return round((k - first) * BIN_S, 1)
        return None


async def _recovery(listener: DaemonProc, peer: DaemonProc, line: LineControl, warm_s: float,
                    observe_s: float) -> dict:
    a, b = await App.connect(listener.port), await App.connect(peer.port)
    with trio.fail_after(120):
        await a.wait_event(code=301)
        await b.wait_event(code=301)
    tally = _Tally(trio.current_time())
    sent = 0
    stopping = trio.Event()

    async def sender() -> None:  # whole batches only: a cancelled write would cut a frame
        nonlocal sent
        while not stopping.is_set() and sent + BATCH <= MAX_FRAMES:
            await a.stream.send_all(b"".join(encode_data(_frame(s)) for s in range(sent, sent + BATCH)))
            sent += BATCH

    async def receiver() -> None:
        decoder = FrameDecoder(allowed_kinds=(DATA, EVENT))
        while True:
            data = await b.stream.receive_some(256 * 1024)
            if not data:
                raise RuntimeError("the bridge closed the app connection")
            decoder.receive_data(data)
            now = trio.current_time()
            for frame in decoder:
                if frame.kind == DATA:
                    tally.frame(frame.payload, now)
                else:
                    b.events.append(decode_event(frame.payload))

    async def until_recovered(since: float, baseline: float) -> float | None:
        deadline = since + observe_s
        while trio.current_time() < deadline:
            got = tally.recovered_after(since, baseline)
            if got is not None:
                return got
            await trio.sleep(BIN_S)
        return None

    result: dict = {}
    marks: dict = {}  # frames sent / received at each step: shows a sender that stalled

    def mark(name: str) -> None:
        marks[name] = [sent, tally.unique]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
        await trio.sleep(warm_s)
        now = trio.current_time()
        baseline = tally.rate(now - 3, now)
        result["baseline_MBps"] = round(baseline / MB, 2)
        mark("freeze")

        peer.signal(signal.SIGSTOP)
        await trio.sleep(FREEZE_S)
        peer.signal(signal.SIGCONT)
        mark("thaw")
        result["freeze_recovery_s"] = await until_recovered(trio.current_time(), baseline)
        mark("cut")

        await trio.to_thread.run_sync(line.cut, True)
        await trio.sleep(CUT_S)
        await trio.to_thread.run_sync(line.cut, False)
        mark("mend")
        result["cut_recovery_s"] = await until_recovered(trio.current_time(), baseline)
        mark("stop")

        stopping.set()
        with trio.move_on_after(60):  # what was sent still arrives
            while tally.unique < sent or not sent:
                await trio.sleep(BIN_S)
        nursery.cancel_scope.cancel()
    result["marks"] = marks
    result["frames_sent"] = sent
    result["frames_lost"] = sent - tally.unique
    result["frames_duplicated"] = tally.duplicated
    result["frames_wrong"] = tally.wrong
    result["peer_offline_events"] = sum(1 for e in a.events if e.get("code") == 302)
    await a.aclose()
    await b.aclose()
    return result


def _inside_recovery(cfg: dict) -> dict:
    line = LineControl(cfg["control"])
    boot = BootstrapDaemon(tcp_port=BOOTSTRAP_TCP_PORT).start()
    network = dataclasses.replace(boot.info, tcp_port=None)
    try:
        with tempfile.TemporaryDirectory(prefix="toxbridge-bench-wan-") as tmp, \
                DaemonProc(["--listen"], Path(tmp) / "l.tox", network, verbose=False) as listener, \
                DaemonProc(["--peer", listener.tox_id], Path(tmp) / "p.tox", network, verbose=False) as peer:
            return trio.run(_recovery, listener, peer, line, cfg["warm_s"], cfg["observe_s"])
    finally:
        boot.stop()


# -- outside: one namespace per row -------------------------------------------------------


def _in_namespace(spec: PathSpec, relay: bool, cfg: dict, budget_s: float,
                  tcp_ports: tuple[int, ...] = ()) -> tuple[dict, dict]:
    """Run ``python -m bench wan --inside CFG`` in a fresh WAN namespace: (its JSON, the
    line's counters). ``tcp_ports``: more TCP ports on the line (a relay's is added)."""
    tcp_ports = ((BOOTSTRAP_TCP_PORT,) if relay else ()) + tuple(tcp_ports)
    with WanNamespace(spec, tcp_ports=tcp_ports) as wan:
        cfg = {**cfg, "control": wan.control_path}
        proc = wan.spawn([sys.executable, "-m", "bench", "wan", "--inside", json.dumps(cfg)],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            out, _ = proc.communicate(timeout=budget_s)
            inner = json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 else \
                {"error": f"exit status {proc.returncode}"}
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            inner = {"error": f"not done in {budget_s} s"}
        except (ValueError, IndexError):
            inner = {"error": "no JSON from the run inside the namespace"}
        line = wan.line.stats()
    return inner, line


def _row(row: dict, mb: float, limit: float, legs: tuple[str, ...] = LEGS,
         trace_dir: Path | None = None) -> dict:
    cfg = {"leg": "row", "relay": row["relay"], "mb": mb, "limit_s": limit, "legs": list(legs),
           "trace_dir": str(trace_dir) if trace_dir else None}
    inner, line = _in_namespace(path_for(row), row["relay"], cfg, budget_s=3 * (limit + 240))
    raw, chan, files = (inner.get(k) or {"error": inner.get("error")} for k in ("raw", "channel", "files"))
    raw_avg, chan_avg = raw.get("lossless_MBps"), chan.get("MBps")
    raw_peak, chan_peak = raw.get("lossless_peak_MBps"), chan.get("peak_MBps")
    file_avg = files.get("file_MBps")
    out = {
        **row,
        "raw_MBps": raw_avg, "raw_peak_MBps": raw_peak,
        "channel_MBps": chan_avg, "channel_peak_MBps": chan_peak,
        "file_MBps": file_avg,
        "ratio": _ratio(chan_avg, raw_avg), "peak_ratio": _ratio(chan_peak, raw_peak),
        "file_ratio": _ratio(file_avg, chan_avg),
        "path_ratio": _ratio(chan_avg, row["bottleneck_MBps"]),
        "raw_done": raw.get("lossless_done"), "raw_MB": raw.get("lossless_MB"),
        "raw_rtt_p50_ms": raw.get("rtt_p50_ms"),
        "channel_done": chan.get("done"), "channel_MB": chan.get("MB"),
        "file_done": files.get("file_done"), "file_MB": files.get("file_MB"),
        # the chat line between the two nodes' users, idle and while the file moves
        "chat_idle_p50_ms": files.get("chat_rtt_idle_p50_ms"),
        "chat_busy_p50_ms": files.get("chat_rtt_p50_ms"),
        "chat_busy_p99_ms": files.get("chat_rtt_p99_ms"),
        "chat_busy_over_idle": files.get("chat_rtt_ratio"),
        "line": {k: line.get(k) for k in ("offered", "lost", "queue_full", "kernel_dropped", "max_held")},
    }
    for key in ("daemon_cpu", "line", "trace"):  # the channel's stream: what held it back
        if key in chan:
            out[f"channel_{key}"] = chan[key]
    errors = {k: v["error"] for k, v in (("raw", raw), ("channel", chan), ("file", files)) if v.get("error")}
    if errors:
        out["errors"] = errors
    return out


def _line_check() -> dict:
    """The bottleneck's path alone (no Tox, no daemons): paced UDP at 0.96 of the
    bottleneck and one bulk TCP connection through it (toxbridge.testing.wanblast). A row
    that falls short of what these carry is limited by the emulator, not the Link."""
    neck = {"rtt_ms": RECOVERY_RTT_MS, "loss": 0.0, "bottleneck_MBps": BOTTLENECK_MBPS, "relay": False}
    with WanNamespace(path_for(neck), tcp_ports=(BLAST_TCP_PORT,)) as wan:
        udp = wan.blast("udp", rate=0.96 * BOTTLENECK_MBPS * MB, seconds=4)
        tcp = wan.blast("tcp", seconds=5)
    return {"udp": udp, "tcp": tcp, "udp_ratio": _ratio(udp["received_MBps"], 0.96 * BOTTLENECK_MBPS),
            "tcp_ratio": _ratio(tcp["received_MBps"], BOTTLENECK_MBPS)}


def _good_citizen() -> dict:
    """The two-channel and the channel-beside-TCP legs, each in its own namespace."""
    neck = {"rtt_ms": RECOVERY_RTT_MS, "loss": 0.0, "bottleneck_MBps": BOTTLENECK_MBPS, "relay": False}
    out: dict = {}
    for leg in ("share", "tcp"):
        print(f"bench wan: {leg} leg", file=sys.stderr, flush=True)
        cfg = {"leg": leg, "warm_s": 8.0, "measure_s": 12.0}
        inner, line = _in_namespace(path_for(neck), False, cfg, budget_s=400,
                                    tcp_ports=wanshare.TCP_PORTS if leg == "tcp" else ())
        out[leg] = {**inner, "line": {k: line.get(k) for k in ("offered", "lost", "queue_full")}}
    out["share_ratio"] = out["share"].get("share_ratio")
    tcp = out["tcp"].get("tcp_MBps")
    out["tcp_share"] = round(tcp / BOTTLENECK_MBPS, 3) if tcp is not None else None
    return out


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def _legs(text: str) -> tuple[str, ...]:
    legs = tuple(text.split(","))
    if not set(legs) <= set(LEGS):
        raise argparse.ArgumentTypeError(f"legs are {','.join(LEGS)}")
    return legs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench wan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 50 ms rows only")
    parser.add_argument("--mb", type=float, default=50, help="megabytes per leg (default 50)")
    parser.add_argument("--limit", type=float, default=300,
                        help="seconds each leg may stream before it reports what it moved (default 300)")
    parser.add_argument("--no-recovery", action="store_true", help="skip the freeze and cut leg")
    parser.add_argument("--no-line-check", action="store_true",
                        help="skip the check of the emulator alone (plain UDP and TCP through the bottleneck)")
    parser.add_argument("--no-share", action="store_true",
                        help="skip the two-channel and channel-beside-TCP legs")
    parser.add_argument("--share-only", action="store_true",
                        help="only the two-channel and channel-beside-TCP legs")
    parser.add_argument("--rtt", type=_ints, help="round trips in ms, e.g. 20,150 (default: all, or 50 with --quick)")
    parser.add_argument("--loss", type=_floats, default=LOSSES, help="losses, e.g. 0,0.01 (default 0,0.001,0.01)")
    parser.add_argument("--bottleneck", choices=("both", "only", "none"), default="both",
                        help="rows with the 50 mbit bottleneck, without, or both (default)")
    parser.add_argument("--no-relay-rows", action="store_true", help="skip the TCP-relay rows")
    parser.add_argument("--legs", type=_legs, default=LEGS, help="legs per row (default raw,channel,file)")
    parser.add_argument("--trace", type=Path, metavar="DIR",
                        help="the channel's daemons write path traces (--trace-path) into DIR/row-N; "
                             "each row gets channel_trace, the sender's summary (bench/wantrace.py)")
    parser.add_argument("--inside", help=argparse.SUPPRESS)  # one run inside a namespace (internal)
    args = parser.parse_args(argv)
    if args.inside:
        cfg = json.loads(args.inside)
        if cfg["leg"] in ("share", "tcp"):
            result = wanshare.inside(cfg)
        else:
            result = _inside_row(cfg) if cfg["leg"] == "row" else _inside_recovery(cfg)
        print(json.dumps(result), flush=True)
        return 0
    why_not = unavailable()
    if why_not is not None:
        print(f"bench wan: the WAN emulator cannot run here: {why_not}", file=sys.stderr)
        return 2

    t0 = time.monotonic()
    rows = []
    chosen = plan(args.quick, rtts=args.rtt, losses=args.loss, necks=args.bottleneck,
                  relay=not args.no_relay_rows)
    for i, row in enumerate([] if args.share_only else chosen):
        print(f"bench wan: row {row}", file=sys.stderr, flush=True)
        trace_dir = None
        if args.trace is not None:
            trace_dir = args.trace.absolute() / f"row-{i}"
            trace_dir.mkdir(parents=True, exist_ok=True)
        rows.append(_row(row, args.mb, args.limit, args.legs, trace_dir))
    result: dict = {"bench": "wan", "quick": args.quick, "mb": args.mb, "limit_s": args.limit, "rows": rows}
    if not args.no_line_check:
        print("bench wan: the line alone", file=sys.stderr, flush=True)
        result["line_check"] = _line_check()
    if not (args.no_recovery or args.share_only):
        print("bench wan: freeze and cut", file=sys.stderr, flush=True)
        cfg = {"leg": "recovery", "warm_s": 10.0, "observe_s": 60.0}
        rec, line = _in_namespace(path_for({"rtt_ms": RECOVERY_RTT_MS, "loss": 0.0, "bottleneck_MBps": None,
                                            "relay": False}), False, cfg, budget_s=600)
        for key in ("freeze_recovery_s", "cut_recovery_s", "frames_lost", "frames_duplicated"):
            result[key] = rec.get(key)
        result["recovery"] = {**rec, "line_cut_dropped": line.get("cut")}
    if not args.no_share:
        result.update(_good_citizen())
    result["total_s"] = round(time.monotonic() - t0, 1)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
