"""The soak benchmark: mixed traffic for a long time, with RSS and open fds sampled.

On one private network on 127.0.0.1 (its own bootstrap node): a raw daemon pair carries a
paced stream of numbered frames both ways over the channel; a second pair of whole nodes
(daemon + bridge_local in one process) carries chat both ways between alice and bob and a
stream of files (upload -> bridge to bridge -> download, md5 checked; older files are
deleted from both stores so disk use stays bounded). Every ``--flap-every`` s both peer
daemons are frozen (SIGSTOP) for the next of ``--flap-seconds``, then resumed. Every
``--sample-every`` s each node process's RSS (VmRSS) and open fds (/proc/PID/fd) are
sampled; the files of the bridges' stores, open only while a transfer runs, are counted
apart (``store_fds``). At the end the traffic stops, everything sent must arrive (bounded
wait), then no store file may be open any more (``store_fds_end``), and one JSON object is
printed. Growth: see ``growth`` and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bridge_local.client import BridgeError, Client, open_client
from bridge_local.files import download, send_file
from toxbridge.framing import DATA, EVENT, decode_event, encode_data
from toxbridge.testing import App, DaemonProc, start_bootstrap
from toxbridge.network import NodeInfo

MB = 1024 * 1024
MAX_ERRORS = 50  # kept in the report; more are only counted
MAX_AHEAD = 2000  # frames (messages) a sender may be ahead of its receiver: bounded buffers


@dataclass
class Seq:
    """Numbered items one way: sent, and what arrived (exactly once, in order, intact)."""

    sent: int = 0
    expected: int = 0  # the next number due
    verified: int = 0  # arrived in order, intact, once
    bad: int = 0  # lost, duplicated, reordered or corrupted (each is an error)

    def got(self, n: int, ok: bool, report: Report, what: str) -> None:
        if n == self.expected and ok:
            self.verified += 1
        else:
            self.bad += 1
            report.error(f"{what}: expected #{self.expected}, got #{n}{'' if ok else ' (corrupted)'}")
        self.expected = max(self.expected, n + 1)


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    links: list[tuple[float, str, int]] = field(default_factory=list)  # (t, who, 301|302)
    flaps: list[dict[str, Any]] = field(default_factory=list)
    files_sent: int = 0
    files_verified: int = 0
    files_failed: int = 0
    files_mb: float = 0.0

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)


def frame(i: int, side: int) -> bytes:
    body = struct.pack(">IB", i, side)
    return body + bytes([(i + side) % 251]) * (i * 7919 % (1024 - len(body)))


# --------------------------------------------------------------------------- sampling


# A file of a bridge's file store (``bridge-<key>.files/``): open exactly while a transfer of
# it runs (or waits out a flap), so it is counted apart from the process's steady fds.
_STORE_FILE = re.compile(r"\.files/(files|partial|tmp)/")


def proc_sample(pid: int) -> tuple[float, int, int]:
    """(VmRSS in MB, open fds other than store files, open store files) of a live process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fds = store = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if _STORE_FILE.search(target):
            store += 1
        else:
            fds += 1
    return round(rss, 1), fds, store


def growth(samples: list[dict[str, Any]], names: list[str], warmup: float = 0.2,
           window: float = 0.2) -> dict[str, Any]:
    """RSS growth % and fd growth, per process and the worst: the median of the last
    ``window`` of the run against the median of the first ``window`` after ``warmup``
    (fractions of the run's duration). Medians, so one sample taken mid-transfer does not
    decide; after warm-up, so caches and pools filling up at start are not a leak."""
    if not samples:
        return {"soak_rss_growth_pct": None, "soak_fd_growth": None}
    end = samples[-1]["t"]
    early = [s for s in samples if warmup * end <= s["t"] <= (warmup + window) * end] or samples[:1]
    late = [s for s in samples if s["t"] >= (1 - window) * end] or samples[-1:]
    per: dict[str, dict[str, float]] = {}
    for name in names:
        rss0 = statistics.median(s[name]["rss_MB"] for s in early)
        rss1 = statistics.median(s[name]["rss_MB"] for s in late)
        fd0 = statistics.median(s[name]["fds"] for s in early)
        fd1 = statistics.median(s[name]["fds"] for s in late)
        per[name] = {"rss_early_MB": rss0, "rss_late_MB": rss1,
                     "rss_growth_pct": round((rss1 - rss0) / rss0 * 100, 2) if rss0 else 0.0,
                     "fds_early": fd0, "fds_late": fd1, "fd_growth": fd1 - fd0}
    return {"soak_rss_growth_pct": max(p["rss_growth_pct"] for p in per.values()),
            "soak_fd_growth": max(p["fd_growth"] for p in per.values()),
            "growth_windows": {"early_s": [round(early[0]["t"], 1), round(early[-1]["t"], 1)],
                               "late_s": [round(late[0]["t"], 1), round(late[-1]["t"], 1)]},
            "per_process": per}


def disk_use(root: Path) -> int:
    """Bytes in the files under ``root`` (profiles, stores, history, the files in flight)."""
    total = 0
    for path in root.rglob("*"):
        try:
            total += path.lstat().st_size if path.is_file() else 0
        except OSError:  # removed while we looked
            pass
    return total


async def sampler(procs: dict[str, DaemonProc], samples: list[dict[str, Any]], t0: float,
                  every: float, report: Report, sides: dict[str, Seq], work: Path) -> None:
    while True:  # progress too: a stall after a flap shows in the samples
        s: dict[str, Any] = {"t": round(time.monotonic() - t0, 1),
                             "verified": {k: q.verified for k, q in sides.items()},
                             "files_verified": report.files_verified,
                             "disk_MB": round(disk_use(work) / MB, 1)}
        for name, p in procs.items():
            try:
                rss, fds, store = proc_sample(p.process.pid)
            except OSError as exc:
                report.error(f"sampling {name}: {exc} (process gone? rc={p.process.poll()})")
                return
            s[name] = {"rss_MB": rss, "fds": fds, "store_fds": store}
        samples.append(s)
        await trio.sleep(every)


# --------------------------------------------------------------------------- traffic


async def stream_send(app: App, seq: Seq, side: int, stop: trio.Event, pace: float) -> None:
    while not stop.is_set():
        if seq.sent - seq.expected < MAX_AHEAD:
            # Counted before the write: the drain must wait for a batch still being written
            # when the traffic stops (counted after it, such a batch was never checked).
            first = seq.sent
            seq.sent += 10
            await app.stream.send_all(b"".join(encode_data(frame(k, side))
                                               for k in range(first, first + 10)))
        await trio.sleep(pace)


async def stream_receive(app: App, seq: Seq, side: int, who: str, report: Report) -> None:
    while True:
        f = await app.next_frame()
        if f is None:
            report.error(f"{who}: the daemon closed the app connection")
            return
        if f.kind == EVENT:
            code = decode_event(f.payload).get("code")
            if code in (301, 302):
                report.links.append((time.monotonic(), who, code))
        elif f.kind == DATA:
            n = struct.unpack_from(">I", f.payload)[0] if len(f.payload) >= 5 else -1
            seq.got(n, n >= 0 and f.payload == frame(n, side), report, f"frame to {who}")


async def chat_send(client: Client, goal: str, seq: Seq, tag: str, stop: trio.Event,
                    pace: float, report: Report) -> None:
    while not stop.is_set():
        if seq.sent - seq.expected < MAX_AHEAD:
            n = seq.sent
            seq.sent += 1  # before the request, as for frames: the drain waits for it
            reply = await client.send(goal, f"{tag}:{n}")
            if reply.get("code") not in (201, 204):  # delivered, or stored until the link is back
                report.error(f"{tag}: message {n} answered {reply}")
        await trio.sleep(pace)


async def chat_receive(client: Client, seq: Seq, tag: str, who: str, report: Report) -> None:
    async for event in client:
        if event.get("command") == 2003 and str(event.get("msg", "")).startswith(tag + ":"):
            seq.got(int(event["msg"].split(":", 1)[1]), True, report, f"message to {who}")
        elif event.get("command") in (301, 302) and event.get("side") == "peer" \
                and "name" not in event:
            report.links.append((time.monotonic(), who, event["command"]))
    report.error(f"{who}: the bridge closed the client connection")


def write_file(path: Path, size: int, seed: int) -> str:
    h = hashlib.md5()
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * (MB // 32)
    with path.open("wb") as f:
        for start in range(0, size, MB):
            chunk = (seed.to_bytes(8, "big") + start.to_bytes(8, "big") + block)[:min(MB, size - start)]
            f.write(chunk)
            h.update(chunk)
    return h.hexdigest()


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(MB):
            h.update(chunk)
    return h.hexdigest()


def forget_stored(stores: list[Path], fileid: str) -> None:
    """Delete a finished file from the bridges' stores (no app command deletes one): the
    soak's rotation, so that disk use stays bounded however long it runs."""
    key = hashlib.sha256(fileid.encode()).hexdigest()
    for root in stores:
        for path in root.glob(f"**/files/{key}.*"):
            path.unlink(missing_ok=True)


async def files_loop(fa: Client, fb: Client, work: Path, stores: list[Path], size: int,
                     stop: trio.Event, gap: float, timeout: float, report: Report) -> None:
    done: list[str] = []  # fileids, oldest first; the newest two stay in the stores
    n = 0
    while not stop.is_set():
        src, dest = work / f"src-{n}.bin", work / f"got-{n}"
        md5 = await trio.to_thread.run_sync(write_file, src, size, n)
        report.files_sent += 1
        with trio.move_on_after(timeout) as scope:
            ref, reply = await send_file(fa, fb.token, src)
            if reply.get("code") not in (201, 204):
                report.error(f"file {n}: the file message was answered {reply}")
            while True:  # wait until fb's bridge holds it whole
                try:
                    state = await fb.request({"command": 4002, "token": fb.token,
                                              "fileid": ref.fileid})
                except BridgeError as exc:
                    state = exc.reply
                if state.get("result") == 1:
                    break
                await trio.sleep(0.2)
            dest.mkdir(exist_ok=True)
            path = await download(fb, ref.fileid, dest)
            if await trio.to_thread.run_sync(md5_of, path) == md5:
                report.files_verified += 1
                report.files_mb += size / MB
            else:
                report.files_failed += 1
                report.error(f"file {n}: md5 differs after download")
            done.append(ref.fileid)
        if scope.cancelled_caught:
            report.files_failed += 1
            report.error(f"file {n}: not through after {timeout} s")
        for p in [src, *dest.glob("*")] if dest.exists() else [src]:
            p.unlink(missing_ok=True)
        if dest.exists():
            dest.rmdir()
        while len(done) > 2:
            forget_stored(stores, done.pop(0))
        n += 1
        await trio.sleep(gap)


async def flapper(frozen: list[DaemonProc], stop: trio.Event, every: float,
                  durations: list[float], report: Report) -> None:
    i = 0
    while True:
        with trio.move_on_after(every):
            await stop.wait()
        if stop.is_set():
            return
        d = durations[i % len(durations)]
        t0 = time.monotonic()
        for p in frozen:
            p.signal(signal.SIGSTOP)
        try:
            with trio.move_on_after(d):
                await stop.wait()
        finally:
            for p in frozen:
                p.signal(signal.SIGCONT)
        report.flaps.append({"seconds": round(time.monotonic() - t0, 1), "t0": t0})
        i += 1


def _store_fds(procs: dict[str, DaemonProc]) -> dict[str, int]:
    """Open store files per live process (one that died meanwhile is reported elsewhere)."""
    counts = {}
    for name, p in procs.items():
        try:
            counts[name] = proc_sample(p.process.pid)[2]
        except OSError:
            pass
    return counts


async def settle(pred, timeout: float) -> bool:
    with trio.move_on_after(timeout):
        while not pred():
            await trio.sleep(0.1)
        return True
    return False


async def soak(net: NodeInfo, work: Path, seconds: float, *, flap_every: float,
               flap_seconds: list[float], sample_every: float, file_kb: int,
               pace: float = 0.05, drain: float = 240) -> dict[str, Any]:
    report = Report()
    samples: list[dict[str, Any]] = []
    sides = {k: Seq() for k in ("to_b", "to_a", "to_bob", "to_alice")}
    started = time.monotonic()
    with DaemonProc(["--listen"], work / "s1.tox", net, verbose=False) as s1, \
            DaemonProc(["--peer", s1.tox_id], work / "s2.tox", net, verbose=False) as s2, \
            DaemonProc(["--listen"], work / "n1.tox", net, verbose=False, raw=False) as n1, \
            DaemonProc(["--peer", n1.tox_id], work / "n2.tox", net, verbose=False, raw=False) as n2:
        procs = {"stream_listener": s1, "stream_peer": s2, "node_listener": n1, "node_peer": n2}
        with trio.fail_after(seconds + 900 + drain):  # everything bounded
            a, b = await App.connect(s1.port), await App.connect(s2.port)
            async with open_client(n1.app_port, name="alice") as alice, \
                    open_client(n2.app_port, name="bob") as bob, \
                    open_client(n1.app_port, name="fa") as fa, \
                    open_client(n2.app_port, name="fb") as fb:
                with trio.fail_after(180):
                    await a.wait_event(code=301)
                    await b.wait_event(code=301)
                    while "fb" not in {u["name"] for u in await fa.users()} or \
                            "alice" not in {u["name"] for u in await bob.users()}:
                        await trio.sleep(0.2)
                connect_s = time.monotonic() - started
                stop = trio.Event()
                t0 = time.monotonic()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sampler, procs, samples, t0, sample_every, report, sides,
                                       work)
                    nursery.start_soon(stream_receive, b, sides["to_b"], 0, "stream_peer", report)
                    nursery.start_soon(stream_receive, a, sides["to_a"], 1, "stream_listener", report)
                    nursery.start_soon(chat_receive, bob, sides["to_bob"], "alice", "bob", report)
                    nursery.start_soon(chat_receive, alice, sides["to_alice"], "bob", "alice", report)
                    nursery.start_soon(stream_send, a, sides["to_b"], 0, stop, pace)
                    nursery.start_soon(stream_send, b, sides["to_a"], 1, stop, pace)
                    nursery.start_soon(chat_send, alice, bob.token, sides["to_bob"], "alice",
                                       stop, pace * 4, report)
                    nursery.start_soon(chat_send, bob, alice.token, sides["to_alice"], "bob",
                                       stop, pace * 4, report)
                    nursery.start_soon(files_loop, fa, fb, work, [work], file_kb * 1024, stop,
                                       1.0, 300, report)
                    nursery.start_soon(flapper, [s2, n2], stop, flap_every, flap_seconds, report)
                    await trio.sleep(seconds)
                    stop.set()
                    traffic_s = time.monotonic() - t0
                    drained = await settle(lambda: all(q.expected >= q.sent
                                                       for q in sides.values())
                                           and report.files_sent == report.files_verified
                                           + report.files_failed, drain)
                    drain_s = time.monotonic() - t0 - traffic_s
                    if not drained:
                        report.error(
                            "not everything sent arrived within the drain time: "
                            + ", ".join(f"{k} {q.expected}/{q.sent}" for k, q in sides.items())
                            + f", files {report.files_verified}+{report.files_failed}"
                            f"/{report.files_sent}")
                    for name, p in procs.items():
                        if p.process.poll() is not None:
                            report.error(f"{name} exited with {p.process.returncode}")
                    # Every transfer has ended: no store file may still be open.
                    await settle(lambda: not any(_store_fds(procs).values()), 30)
                    store_fds_end = _store_fds(procs)
                    if any(store_fds_end.values()):
                        report.error(f"store files still open after every transfer ended: "
                                     f"{store_fds_end}")
                    nursery.cancel_scope.cancel()
            await a.aclose()
            await b.aclose()
    # What the stream listener's app saw from each cut to 60 s after it (or the next cut).
    starts = [f["t0"] for f in report.flaps] + [float("inf")]
    for i, f in enumerate(report.flaps):
        start = f.pop("t0")
        f["at_s"] = round(start - t0, 1)
        f["link_events"] = [c for t, who, c in report.links if who == "stream_listener"
                            and start <= t < min(start + f["seconds"] + 60, starts[i + 1])]
    not_exact = sum(s.sent - s.verified for s in sides.values())
    return {
        "seconds": round(seconds, 1),
        "connect_s": round(connect_s, 1),
        "drain_s": round(drain_s, 1),
        "frames_sent": sides["to_a"].sent + sides["to_b"].sent,
        "frames_verified": sides["to_a"].verified + sides["to_b"].verified,
        "messages_sent": sides["to_alice"].sent + sides["to_bob"].sent,
        "messages_verified": sides["to_alice"].verified + sides["to_bob"].verified,
        "files_sent": report.files_sent,
        "files_verified": report.files_verified,
        "files_MB": round(report.files_mb, 1),
        "flaps": report.flaps,
        "frames_or_messages_not_exact": not_exact,
        **growth(samples, list(procs)),
        "store_fds_end": store_fds_end,
        "error_count": report.error_count,
        "errors": report.errors,
        "samples": samples,
    }


def run(seconds: float, **kw: Any) -> dict[str, Any]:
    boot = start_bootstrap()
    try:
        with tempfile.TemporaryDirectory(prefix="toxbridge-soak-") as tmp:
            return trio.run(lambda: soak(boot.info, Path(tmp), seconds, **kw))
    finally:
        boot.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long the traffic runs (default 30)")
    length.add_argument("--seconds", type=float, help="the same, in seconds")
    parser.add_argument("--flap-every", type=float, default=None,
                        help="seconds between link flaps (default: a tenth of the run, 10..180)")
    parser.add_argument("--flap-seconds", default="5,35,15",
                        help="how long each flap freezes the peer daemons, in turn (default 5,35,15)")
    parser.add_argument("--sample-every", type=float, default=None,
                        help="seconds between RSS/fd samples (default: run/100, 1..15)")
    parser.add_argument("--file-kb", type=int, default=1024, help="size of each file (default 1024)")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (args.minutes or 30) * 60
    flap_every = args.flap_every or min(180.0, max(10.0, seconds / 10))
    sample_every = args.sample_every or min(15.0, max(1.0, seconds / 100))
    result = run(seconds, flap_every=flap_every,
                 flap_seconds=[float(x) for x in args.flap_seconds.split(",")],
                 sample_every=sample_every, file_kb=args.file_kb)
    json.dump({"bench": "soak", "flap_every_s": flap_every, "sample_every_s": sample_every,
               **result}, sys.stdout)
    print()
    return 0 if result["error_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
