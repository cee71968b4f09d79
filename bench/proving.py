"""Proving-ground scenarios (issue 6): link flaps, and load. Used by tests/test_flaps.py,
tests/test_load.py and the reliability benchmark.

Each scenario is a trio function that starts what it needs on a private Tox network on
127.0.0.1 (its own ``tox-bootstrapd`` unless a :class:`NodeInfo` is passed in), runs, stops
everything it started, and returns a dict of figures. Scenarios measure; they do not
assert, so that the benchmark can report a failure as a figure. Every loop is bounded in
count and in time (``trio.TooSlowError`` when a bound is hit).

    figures = trio.run(partial(flaps, None, Path(tmp)))
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import time
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bridge_local.client import BridgeError, Client, open_client
from bridge_local.files import download, send_file
from bridge_local.server import BridgeConfig, serve
from toxbridge.framing import DATA, EVENT, decode_event, encode_data
from toxbridge.testing import App, DaemonProc, start_bootstrap
from toxbridge.network import NodeInfo

from .raw_tox import percentile

__all__ = ["flaps", "load", "FLAP_SECONDS", "TOX_FRIEND_TIMEOUT"]

MB = 1024 * 1024
# toxcore declares a silent friend offline after 28-32 s (TOXCORE-FACTS.md): a cut longer
# than this must be seen as 302 then 301; a shorter one may pass unnoticed.
TOX_FRIEND_TIMEOUT = 32.0
FLAP_SECONDS = (5, 36, 10, 38, 20)


@asynccontextmanager
async def _network(network: NodeInfo | None):
    if network is not None:
        yield network
        return
    node = start_bootstrap()
    try:
        yield node.info
    finally:
        node.stop()


def _random_file(path: Path, size: int) -> str:
    # Random bytes, not files.random_file's repeated pattern: a block delivered at a wrong
    # offset must change the md5.
    h = hashlib.md5()
    with open(path, "wb") as f:
        for left in range(size, 0, -MB):
            block = os.urandom(min(left, MB))
            f.write(block)
            h.update(block)
    return h.hexdigest()


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(MB):
            h.update(block)
    return h.hexdigest()


async def _status(client: Client, fileid: str) -> dict:
    try:
        return await client.request({"command": 4002, "token": client.token, "fileid": fileid})
    except BridgeError as exc:
        return exc.reply


async def _start_bridge(nursery: trio.Nursery, port: int, data_dir: Path):
    config = BridgeConfig(bridge_port=port, data_dir=data_dir, reconnect_delay=0.2)
    return await nursery.start(partial(serve, config, announce=lambda line: None))


# --------------------------------------------------------------------------- link flaps


def _frame(i: int, side: int) -> bytes:
    body = struct.pack(">IB", i, side)
    return body + bytes([i % 251]) * (i * 7919 % (1024 - len(body)))


@dataclass
class _Receiver:
    """Frames (or messages) numbered 0..n-1 as they arrive: losses, duplicates, reorders."""

    seen: set[int] = field(default_factory=set)
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    last: int = -1
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each arrival
    at: dict[int, float] = field(default_factory=dict)  # number -> first arrival time

    def got(self, n: int, ok: bool = True) -> None:
        self.arrivals.append(time.monotonic())
        if not ok:
            self.corrupted += 1
        if n in self.seen:
            self.duplicated += 1
            return
        if n != self.last + 1:
            self.reordered += 1
        self.seen.add(n)
        self.at[n] = self.arrivals[-1]
        self.last = max(self.last, n)

    def since(self, t: float) -> bool:
        return bool(self.arrivals) and self.arrivals[-1] >= t

    def lost(self) -> int:
        """Numbers missing below the highest one received (later ones came first)."""
        return self.last + 1 - len(self.seen)

    def pending(self, sent: int) -> int:
        """Sent after the highest one received: not arrived (yet) when the run ended."""
        return max(0, sent - self.last - 1)


@dataclass
class _Side:
    """What one end of the flapping link saw: peer-link events with their times."""

    links: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, 301|302)
    frames: _Receiver = field(default_factory=_Receiver)
    chat: _Receiver = field(default_factory=_Receiver)
    frames_sent: int = 0
    chat_sent: int = 0
    # Senders that have not yet stopped: the drain must not judge while one is inside a
    # send whose bytes already left (trio's send_all ends in a shielded checkpoint), or it
    # counts that batch as sent after it stopped reading (test_flaps once: 10 "pending").
    senders: int = 0
    codes: dict[int, int] = field(default_factory=dict)  # 2002 codes of this side's sends

    def codes_between(self, t0: float, t1: float) -> list[int]:
        return [c for t, c in self.links if t0 <= t < t1]


async def _raw_sender(app: App, side: _Side, n: int, stop: trio.Event, pace: float) -> None:
    """Frames 0, 1, ... in batches of 10 every ``pace`` s until ``stop`` (at most 100,000)."""
    i = 0
    side.senders += 1
    while not stop.is_set() and i < 100_000:
        batch = b"".join(encode_data(_frame(k, n)) for k in range(i, i + 10))
        await app.stream.send_all(batch)
        i += 10
        side.frames_sent = i
        await trio.sleep(pace)
    side.senders -= 1


async def _raw_receiver(app: App, side: _Side, n: int) -> None:
    while True:
        frame = await app.next_frame()
        if frame is None:
            return
        if frame.kind == EVENT:
            code = decode_event(frame.payload).get("code")
            if code in (301, 302):
                side.links.append((time.monotonic(), code))
        elif frame.kind == DATA:
            k, s = struct.unpack_from(">IB", frame.payload)
            side.frames.got(k, s == n and frame.payload == _frame(k, n))


async def _chat_sender(client: Client, goal: str, side: _Side, tag: str, stop: trio.Event,
                       pace: float) -> None:
    i = 0
    side.senders += 1
    while not stop.is_set() and i < 10_000:
        reply = await client.send(goal, f"{tag}:{i}")
        i += 1
        side.chat_sent = i
        side.codes[reply.get("code")] = side.codes.get(reply.get("code"), 0) + 1
        await trio.sleep(pace)
    side.senders -= 1


async def _chat_receiver(client: Client, side: _Side, tag: str) -> None:
    """Messages from ``tag`` and this bridge's peer-link events (``side: peer``, no name)."""
    async for event in client:
        if event.get("command") == 2003 and event.get("msg", "").startswith(tag + ":"):
            side.chat.got(int(event["msg"].split(":", 1)[1]))
        elif event.get("command") in (301, 302) and event.get("side") == "peer" \
                and "name" not in event:
            side.links.append((time.monotonic(), event["command"]))


async def _move_file(fa: Client, fb: Client, src: Path, dest: Path, md5: str,
                     result: dict, timeout: float) -> None:
    """fa sends ``src`` to fb; fb downloads it once its bridge has it; md5 compared."""
    with trio.move_on_after(timeout):
        ref, reply = await send_file(fa, fb.token, src)
        result.update(fileid=ref.fileid, code=reply.get("code"))
        while (await _status(fb, ref.fileid)).get("result") != 1:
            await trio.sleep(0.1)
        result["available_at"] = time.monotonic()
        path = await download(fb, ref.fileid, dest)
        result["md5_ok"] = await trio.to_thread.run_sync(_md5, path) == md5
    result.setdefault("md5_ok", False)  # timed out; cancelled from outside: no key


async def _until(predicate, timeout: float) -> bool:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
        return True
    return False


async def _start_file(nursery: trio.Nursery, fa: Client, fb: Client, workdir: Path, i: int,
                      file_mb: int) -> dict[str, Any]:
    """Start moving file ``i`` from fa to fb; return once it is between the bridges (or
    after a bounded wait), so that the next cut catches it in flight."""
    src = workdir / f"file{i}.bin"
    md5 = await trio.to_thread.run_sync(_random_file, src, file_mb * MB)
    result: dict[str, Any] = {"mb": file_mb}
    nursery.start_soon(_move_file, fa, fb, src, workdir / f"got{i}", md5, result, 600.0)
    await _until(lambda: "fileid" in result, 30)
    with trio.move_on_after(30):
        while "fileid" in result and "available_at" not in result and \
                (await _status(fb, result["fileid"])).get("held", 0) < MB // 2:
            await trio.sleep(0.02)
    return result


async def flaps(network: NodeInfo | None, workdir: Path, *, seconds=FLAP_SECONDS,
                file_mb: int = 8, pace: float = 0.05, settle: float = 3.0,
                drain: float = 120.0) -> dict[str, Any]:
    """Cut the Tox link ``len(seconds)`` times (SIGSTOP of the peer daemons, SIGCONT after
    each duration) while a raw stream runs both ways on one daemon pair, and chat and a
    file per cut run through two bridges on a second pair. Both peer daemons are frozen
    together, so both pairs see the same cut. A file per cut is started just before it.

    After the last cut, senders stop and everything sent gets ``drain`` s to arrive; what
    has not is counted as pending. Figures: counts of frames/messages sent, lost (gaps),
    pending, duplicated, reordered; per cut whether
    each listener-side app saw 302 then 301, the time from SIGCONT to the 301
    (``reconnect_s``), and until the frames sent before SIGCONT had all arrived, both ways
    (``caught_up_s``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    raw_a, raw_b, chat_a, chat_b = sides = _Side(), _Side(), _Side(), _Side()
    cuts: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    started = time.monotonic()
    async with _network(network) as net:
        with ExitStack() as procs:
            def daemon(args: list[str], name: str) -> DaemonProc:
                return procs.enter_context(DaemonProc(args, workdir / f"{name}.tox", net,
                                                      verbose=False))

            l1 = daemon(["--listen"], "l1")
            p1 = daemon(["--peer", l1.tox_id], "p1")
            l2 = daemon(["--listen"], "l2")
            p2 = daemon(["--peer", l2.tox_id], "p2")
            # One deadline over all (the clients' nurseries cannot nest in a shorter one).
            with trio.fail_after(180 + sum(seconds) + 200 * len(seconds) + drain):
                async with trio.open_nursery() as bridges, AsyncExitStack() as clients:
                    a, b = await App.connect(l1.port), await App.connect(p1.port)
                    clients.push_async_callback(a.aclose)
                    clients.push_async_callback(b.aclose)
                    with trio.fail_after(120):  # each phase bounded: a timeout says which
                        await a.wait_event(code=301)
                        await b.wait_event(code=301)
                    ba = await _start_bridge(bridges, l2.port, workdir / "bridge-a")
                    bb = await _start_bridge(bridges, p2.port, workdir / "bridge-b")
                    with trio.fail_after(120):
                        await ba.wait_peer()
                        await bb.wait_peer()
                    alice, bob, fa, fb = [
                        await clients.enter_async_context(open_client(port, name=name))
                        for port, name in ((ba.app_port, "alice"), (bb.app_port, "bob"),
                                           (ba.app_port, "fa"), (bb.app_port, "fb"))]
                    with trio.fail_after(120):
                        while "fb" not in {u["name"] for u in await fa.users()} or \
                                "alice" not in {u["name"] for u in await bob.users()}:
                            await trio.sleep(0.1)
                    connected = time.monotonic() - started
                    stop = trio.Event()
                    async with trio.open_nursery() as traffic:
                        traffic.start_soon(_raw_receiver, a, raw_a, 1)
                        traffic.start_soon(_raw_receiver, b, raw_b, 0)
                        traffic.start_soon(_chat_receiver, alice, chat_a, "bob")
                        traffic.start_soon(_chat_receiver, bob, chat_b, "alice")
                        traffic.start_soon(_raw_sender, a, raw_b, 0, stop, pace)
                        traffic.start_soon(_raw_sender, b, raw_a, 1, stop, pace)
                        traffic.start_soon(_chat_sender, alice, bob.token, chat_b, "alice", stop,
                                           pace * 4)
                        traffic.start_soon(_chat_sender, bob, alice.token, chat_a, "bob", stop,
                                           pace * 4)
                        for i, duration in enumerate(seconds):
                            result = await _start_file(traffic, fa, fb, workdir, i, file_mb)
                            files.append(result)
                            cuts.append(await _cut(p1, p2, duration, raw_a, raw_b, chat_a, chat_b,
                                                   result, settle))
                        stop.set()
                        # Drain: everything sent gets ``drain`` s to arrive; then stop reading.
                        await _until(lambda: all(s.senders == 0 for s in sides)
                                     and all(s.frames.last + 1 >= s.frames_sent
                                             for s in (raw_a, raw_b))
                                     and all(s.chat.last + 1 >= s.chat_sent
                                             for s in (chat_a, chat_b))
                                     and all("md5_ok" in f for f in files), drain)
                        traffic.cancel_scope.cancel()
                    drained = time.monotonic() - started
                    # Over streams (both bridges): every fragment arrives with its start.
                    over_streams = ba.links is not None and bb.links is not None
                    peer_errors = ba.core.stats["peer_errors"] + bb.core.stats["peer_errors"]
                    bad_fragments = (ba.core.stats["bad_fragments"]
                                     + bb.core.stats["bad_fragments"])
                    bridges.cancel_scope.cancel()
    for cut in cuts:
        cut["caught_up_s"] = _caught_up(cut.pop("_t1"), cut.pop("_sent"), raw_a, raw_b)
    frames = [raw_a, raw_b]
    chats = [chat_a, chat_b]
    noticed = [c for c in cuts if c["raw_302_301"] and c["bridge_302_301"]]
    return {
        "flaps": len(cuts),
        "flap_seconds": list(seconds),
        "flaps_noticed": len(noticed),
        "flaps_long": sum(c["seconds"] > TOX_FRIEND_TIMEOUT for c in cuts),
        "flaps_long_noticed": sum(c["seconds"] > TOX_FRIEND_TIMEOUT for c in noticed),
        "frames_sent": sum(s.frames_sent for s in frames),
        "frames_lost": sum(s.frames.lost() for s in frames),
        "frames_pending": sum(s.frames.pending(s.frames_sent) for s in frames),
        "frames_duplicated": sum(s.frames.duplicated for s in frames),
        "frames_reordered": sum(s.frames.reordered for s in frames),
        "frames_corrupted": sum(s.frames.corrupted for s in frames),
        "messages_sent": sum(s.chat_sent for s in chats),
        "messages_delivered_once": sum(len(s.chat.seen) for s in chats)
        - sum(s.chat.duplicated for s in chats),
        "messages_lost": sum(s.chat.lost() for s in chats),
        "messages_pending": sum(s.chat.pending(s.chat_sent) for s in chats),
        "messages_duplicated": sum(s.chat.duplicated for s in chats),
        "messages_reordered": sum(s.chat.reordered for s in chats),
        "message_codes": _sum_codes(chats),
        "bridges_over_streams": over_streams,
        "bridge_peer_errors": peer_errors,  # bad commands or fragments from a peer bridge
        "bad_fragments": bad_fragments,  # of those, fragments ("missing-start", ...)
        "files": len(files),
        "files_ok": sum(f.get("md5_ok") is True for f in files),
        "files_bad": sum(f.get("md5_ok") is False for f in files),  # wrong md5 or timed out
        "files_pending": sum("md5_ok" not in f for f in files),  # still moving at the end
        "reconnect_s": [c["reconnect_s"] for c in cuts],
        "caught_up_s": [c["caught_up_s"] for c in cuts],
        "cuts": cuts,
        "connect_s": round(connected, 1),
        "drained_s": round(drained, 1),
        "total_s": round(time.monotonic() - started, 1),
    }


def _caught_up(t1: float, sent: tuple[int, int], *sides: _Side) -> float | None:
    """Seconds from the end of a cut until both directions delivered every frame sent
    before it (the backlog); None if one never did during the run."""
    times = [side.frames.at.get(n - 1) for side, n in zip(sides, sent)]
    if None in times:
        return None
    return round(max(0.0, max(times) - t1), 2)


def _sum_codes(sides) -> dict[str, int]:
    codes: dict[str, int] = {}
    for side in sides:
        for k, v in side.codes.items():
            codes[str(k)] = codes.get(str(k), 0) + v
    return codes


async def _cut(p1: DaemonProc, p2: DaemonProc, duration: float, raw_a: _Side, raw_b: _Side,
               chat_a: _Side, chat_b: _Side, file: dict, settle: float) -> dict[str, Any]:
    """One cut: freeze both peer daemons for ``duration`` s, then wait (bounded) until the
    link is back: 301 where a 302 was seen, frames and chat flowing both ways again."""
    file_done_before = "available_at" in file
    for p in (p1, p2):
        p.signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        await trio.sleep(duration)
    finally:
        for p in (p1, p2):
            p.signal(signal.SIGCONT)
    t1 = time.monotonic()
    sent_at_resume = (raw_a.frames_sent, raw_b.frames_sent)

    def back(side: _Side) -> bool:
        codes = side.codes_between(t0, float("inf"))
        return 302 not in codes or codes[-1] == 301

    await _until(lambda: back(raw_a) and back(chat_a) and back(raw_b) and back(chat_b)
                 and raw_a.frames.since(t1) and raw_b.frames.since(t1), 120)
    await _until(lambda: chat_a.chat.since(t1) and chat_b.chat.since(t1), 60)
    await trio.sleep(settle)

    def first(side: _Side, code: int, since: float) -> float | None:
        ts = [t for t, c in side.links if t >= t0 and c == code]
        return round(ts[0] - since, 2) if ts else None

    def saw(side: _Side) -> bool:
        return side.codes_between(t0, float("inf"))[:2] == [302, 301]

    return {
        "seconds": duration,
        "raw_302_301": saw(raw_a),
        "bridge_302_301": saw(chat_a),
        "raw_codes": raw_a.codes_between(t0, float("inf")),
        "bridge_codes": chat_a.codes_between(t0, float("inf")),
        "frozen_side_raw_codes": raw_b.codes_between(t0, float("inf")),
        "frozen_side_bridge_codes": chat_b.codes_between(t0, float("inf")),
        "seen_302_after_s": first(raw_a, 302, t0),  # from SIGSTOP
        "reconnect_s": first(raw_a, 301, t1),  # from SIGCONT
        "bridge_reconnect_s": first(chat_a, 301, t1),
        # filled in at the end of the run: see _caught_up
        "_t1": t1, "_sent": sent_at_resume,
        "file_in_flight": not file_done_before,
    }


# --------------------------------------------------------------------------- load


@dataclass
class _Loader:
    """One load client: what it sent (send times by sequence) and what it received."""

    name: str
    client: Client | None = None
    sent_at: list[float] = field(default_factory=list)
    replies_ms: list[float] = field(default_factory=list)  # 1002 -> 2002 round trips
    codes: dict[int, int] = field(default_factory=dict)
    # per sender name: the sequence numbers seen, the highest one
    seen: dict[str, set[int]] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    received: int = 0
    duplicated: int = 0
    reordered: int = 0
    delivery_ms: list[float] = field(default_factory=list)  # of messages this client received
    delivered_at: list[float] = field(default_factory=list)  # when each of those arrived


async def _hold_client(port: int, me: _Loader, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Keep ``me``'s connection open (logged in as ``me.name``) until cancelled."""
    async with open_client(port, name=me.name) as client:
        me.client = client
        task_status.started()
        await trio.sleep_forever()


async def _load_send(me: _Loader, peers: list[_Loader], count: int, window: int) -> None:
    """``count`` messages, message k to ``peers[(offset + k) % len]``: up to ``window``
    requests in flight (replies come in order on one connection)."""
    assert me.client is not None
    offset = int(me.name[1:])
    lock = trio.Semaphore(window)

    async def one(k: int) -> None:
        goal = peers[(offset + k) % len(peers)].client.token
        t = time.monotonic()
        me.sent_at.append(t)
        reply = await me.client.send(goal, f"{me.name}|{k}|{t!r}")
        me.replies_ms.append((time.monotonic() - t) * 1000)
        me.codes[reply.get("code")] = me.codes.get(reply.get("code"), 0) + 1
        lock.release()

    async with trio.open_nursery() as nursery:
        for k in range(count):
            await lock.acquire()
            nursery.start_soon(one, k)


async def _load_receive(me: _Loader) -> None:
    async for event in me.client:
        if event.get("command") != 2003:
            continue
        now = time.monotonic()
        sender, k, t = event["msg"].split("|")
        k = int(k)
        seen = me.seen.setdefault(sender, set())
        if k in seen:
            me.duplicated += 1
            continue
        if k < me.last.get(sender, -1):
            me.reordered += 1  # a sender's messages to one receiver have rising k
        seen.add(k)
        me.last[sender] = max(k, me.last.get(sender, -1))
        me.received += 1
        me.delivery_ms.append((now - float(t)) * 1000)
        me.delivered_at.append(now)


async def load(network: NodeInfo | None, workdir: Path, *, clients: int = 50,
               messages: int = 1000, file_mb: int = 16, window: int = 1,
               timeout: float = 900) -> dict[str, Any]:
    """``clients`` clients on each of two bridges (each bridge runs in its daemon's
    process) send ``messages`` messages each to clients on the other side while a file of
    ``file_mb`` MB moves between the bridges. One message in flight per client by default
    (``window``), all clients in this process.

    Figures: messages sent/delivered/duplicated/reordered (order is per sender and
    receiver), per-client delivery latency p50/p99 (send to ``2003``), the slowest
    client's p99 (``load_p99_ms``), total messages/s, and the file's md5 check."""
    workdir.mkdir(parents=True, exist_ok=True)
    side_a = [_Loader(f"a{i}") for i in range(clients)]
    side_b = [_Loader(f"b{i}") for i in range(clients)]
    everyone = side_a + side_b
    file: dict[str, Any] = {"mb": file_mb}
    started = time.monotonic()
    async with _network(network) as net:
        with DaemonProc(["--listen"], workdir / "l.tox", net, verbose=False, raw=False) as l, \
                DaemonProc(["--peer", l.tox_id], workdir / "p.tox", net, verbose=False,
                           raw=False) as p:
            with trio.fail_after(180 + 2 * timeout):
                async with trio.open_nursery() as holders:
                    for group, port in ((side_a, l.app_port), (side_b, p.app_port)):
                        for me in group:
                            await holders.start(_hold_client, port, me)
                    fa, fb = _Loader("fa"), _Loader("fb")
                    await holders.start(_hold_client, l.app_port, fa)
                    await holders.start(_hold_client, p.app_port, fb)
                    while len(await side_a[0].client.users()) < 2 * clients + 2 or \
                            len(await side_b[0].client.users()) < 2 * clients + 2:
                        await trio.sleep(0.1)
                    connected = time.monotonic() - started
                    src = workdir / "load.bin"
                    md5 = await trio.to_thread.run_sync(_random_file, src, file_mb * MB)
                    total = 2 * clients * messages
                    t0 = time.monotonic()
                    async with trio.open_nursery() as nursery:
                        for me in everyone:
                            nursery.start_soon(_load_receive, me)
                        nursery.start_soon(_move_file, fa.client, fb.client, src, workdir / "got",
                                           md5, file, timeout)
                        async with trio.open_nursery() as senders:
                            for me in side_a:
                                senders.start_soon(_load_send, me, side_b, messages, window)
                            for me in side_b:
                                senders.start_soon(_load_send, me, side_a, messages, window)
                        sent_s = time.monotonic() - t0
                        await _until(lambda: sum(m.received for m in everyone) >= total, timeout)
                        delivered_s = time.monotonic() - t0
                        await _until(lambda: "md5_ok" in file, timeout)
                        nursery.cancel_scope.cancel()
                    holders.cancel_scope.cancel()
    per_client = {m.name: {"received": m.received,
                           "sent": len(m.sent_at),
                           "delivery_p50_ms": round(percentile(m.delivery_ms, 0.5), 1),
                           "delivery_p99_ms": round(percentile(m.delivery_ms, 0.99), 1),
                           "reply_p99_ms": round(percentile(m.replies_ms, 0.99), 1)}
                  for m in everyone}
    codes: dict[str, int] = {}
    for m in everyone:
        for k, v in m.codes.items():
            codes[str(k)] = codes.get(str(k), 0) + v
    received = sum(m.received for m in everyone)
    slowest = max(per_client, key=lambda n: per_client[n]["delivery_p99_ms"])
    # Where the tail is: the first 2 s (toxcore's slow start), while the file moves, after.
    done = file.get("available_at", float("inf"))
    phases: dict[str, list[float]] = {"first_2s": [], "during_file": [], "after_file": []}
    for m in everyone:
        for at, ms in zip(m.delivered_at, m.delivery_ms, strict=True):
            key = "first_2s" if at < t0 + 2 else "during_file" if at < done else "after_file"
            phases[key].append(ms)
    return {
        "load_clients": 2 * clients,
        "load_messages_per_client": messages,
        "load_messages_sent": sum(len(m.sent_at) for m in everyone),
        "load_messages_delivered_once": received,
        "load_messages_duplicated": sum(m.duplicated for m in everyone),
        "load_messages_reordered": sum(m.reordered for m in everyone),
        "load_codes": codes,
        "load_min_received": min(m.received for m in everyone),
        "load_max_received": max(m.received for m in everyone),
        "load_p50_ms": round(percentile([x for m in everyone for x in m.delivery_ms], 0.5), 1),
        "load_p99_ms": per_client[slowest]["delivery_p99_ms"],
        "load_slowest_client": slowest,
        "load_reply_p99_ms": round(max(percentile(m.replies_ms, 0.99) for m in everyone), 1),
        **{f"load_p99_{k}_ms": round(percentile(v, 0.99), 1) if v else None
           for k, v in phases.items()},
        **{f"load_messages_{k}": len(v) for k, v in phases.items()},
        "load_msgs_per_s": round(received / delivered_s, 1) if delivered_s else 0.0,
        "load_send_s": round(sent_s, 1),
        "load_file_md5_ok": bool(file.get("md5_ok")),
        "load_file_available_s": round(file["available_at"] - t0, 1)
        if "available_at" in file else None,
        "load_connect_s": round(connected, 1),
        "per_client": per_client,
    }
