"""bench wan's good-citizen legs: two channels through one bottleneck, and a channel beside
a bulk TCP flow through it (issue 16: share within 2:1; TCP keeps >= 1/3).

The WAN line gives each sending port its own bottleneck (a host with its own uplink);
here the senders' ports are put in one (``LineControl.share_uplink``): the two listening
daemons' (read with ``ss``: a daemon picks a free one), or one daemon's and the TCP
client's (bound to a fixed port). Data goes
listener -> peer; each receiving app counts the bytes it got. Everything runs inside the
namespace; every loop is bounded by a deadline.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import tempfile
from pathlib import Path

import trio

from toxbridge.framing import encode_data
from toxbridge.network import BootstrapDaemon
from toxbridge.testing import App, DaemonProc
from toxbridge.testing.wan import BOOTSTRAP_TCP_PORT, LineControl

from .raw_tox import MB

TCP_SERVER_PORT, TCP_CLIENT_PORT = 33600, 33601
TCP_PORTS = (TCP_SERVER_PORT,)  # what the namespace must put on the line
_BATCH = b"".join(encode_data(bytes([i]) * 1024) for i in range(16))
_CHUNK = bytes(64 * 1024)


def udp_port(pid: int) -> int:
    """The UDP port a process has bound (a daemon has one: toxcore's)."""
    out = subprocess.run(["ss", "-Huanp"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if f"pid={pid}," in line:
            m = re.search(r":(\d+)\s", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no UDP socket of process {pid}")


class _Count:
    """Bytes received, and the count at each mark."""

    def __init__(self) -> None:
        self.bytes = 0
        self.marks: dict[str, tuple[float, int]] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = (trio.current_time(), self.bytes)

    def rate(self, a: str, b: str) -> float:
        (t0, n0), (t1, n1) = self.marks[a], self.marks[b]
        return (n1 - n0) / max(t1 - t0, 1e-9)


async def _pump_channel(a: App, stop: trio.Event) -> None:
    while not stop.is_set():
        await a.stream.send_all(_BATCH)


async def _drain(stream, count: _Count) -> None:
    while True:
        data = await stream.receive_some(256 * 1024)
        if not data:
            return
        count.bytes += len(data)


async def _open(pairs: list[tuple[DaemonProc, DaemonProc]]) -> list[tuple[App, App]]:
    apps = []
    for lis, peer in pairs:
        a, b = await App.connect(lis.port), await App.connect(peer.port)
        with trio.fail_after(120):
            await a.wait_event(code=301)
            await b.wait_event(code=301)
        apps.append((a, b))
    return apps


async def _share(pairs, warm_s: float, measure_s: float) -> dict:
    apps = await _open(pairs)
    counts = [_Count() for _ in apps]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        for (a, b), count in zip(apps, counts):
            nursery.start_soon(_pump_channel, a, stop)
            nursery.start_soon(_drain, b.stream, count)
        await trio.sleep(warm_s)
        for c in counts:
            c.mark("start")
        await trio.sleep(measure_s)
        for c in counts:
            c.mark("end")
        stop.set()
        nursery.cancel_scope.cancel()
    rates = [c.rate("start", "end") for c in counts]
    return {"channels_MBps": [round(r / MB, 2) for r in rates],
            "share_ratio": round(max(rates) / min(rates), 2) if min(rates) > 0 else None,
            "total_MBps": round(sum(rates) / MB, 2)}


async def _tcp(pair, warm_s: float, measure_s: float) -> dict:
    ((a, b),) = await _open([pair])
    chan, tcp = _Count(), _Count()
    stop = trio.Event()
    listener = (await trio.open_tcp_listeners(TCP_SERVER_PORT, host="127.0.0.1"))[0]

    async def serve(task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        conn = await listener.accept()
        await _drain(conn, tcp)

    async def bulk() -> None:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind(("127.0.0.1", TCP_CLIENT_PORT))
        await sock.connect(("127.0.0.1", TCP_SERVER_PORT))
        stream = trio.SocketStream(sock)
        while not stop.is_set():
            await stream.send_all(_CHUNK)

    async with trio.open_nursery() as nursery:
        # TCP alone first (what the line and this machine let it reach), then the channel
        await nursery.start(serve)
        nursery.start_soon(bulk)
        await trio.sleep(warm_s / 2)
        tcp.mark("alone0")
        await trio.sleep(measure_s / 2)
        tcp.mark("alone1")
        nursery.start_soon(_pump_channel, a, stop)
        nursery.start_soon(_drain, b.stream, chan)
        await trio.sleep(warm_s)
        chan.mark("start")
        tcp.mark("start")
        await trio.sleep(measure_s)
        chan.mark("end")
        tcp.mark("end")
        stop.set()
        nursery.cancel_scope.cancel()
    await listener.aclose()
    return {"tcp_alone_MBps": round(tcp.rate("alone0", "alone1") / MB, 2),
            "channel_MBps": round(chan.rate("start", "end") / MB, 2),
            "tcp_MBps": round(tcp.rate("start", "end") / MB, 2)}


def inside(cfg: dict) -> dict:
    """One leg (``cfg["leg"]``: "share" or "tcp") inside its namespace."""
    line = LineControl(cfg["control"])
    boot = BootstrapDaemon(tcp_port=BOOTSTRAP_TCP_PORT).start()
    network = dataclasses.replace(boot.info, tcp_port=None)
    n = 2 if cfg["leg"] == "share" else 1
    try:
        with tempfile.TemporaryDirectory(prefix="toxbridge-bench-wanshare-") as tmp:
            tmp = Path(tmp)
            procs = []
            try:
                for i in range(n):
                    lis = DaemonProc(["--listen"], tmp / f"l{i}.tox", network, verbose=False)
                    procs.append(lis)
                    procs.append(DaemonProc(["--peer", lis.tox_id], tmp / f"p{i}.tox", network,
                                            verbose=False))
                pairs = [(procs[2 * i], procs[2 * i + 1]) for i in range(n)]
                ports = [udp_port(lis.process.pid) for lis, _ in pairs]
                if n == 2:
                    line.share_uplink(ports)
                    return trio.run(_share, pairs, cfg["warm_s"], cfg["measure_s"])
                line.share_uplink([ports[0], TCP_CLIENT_PORT])
                return trio.run(_tcp, pairs[0], cfg["warm_s"], cfg["measure_s"])
            finally:
                for p in reversed(procs):
                    p.stop()
    finally:
        boot.stop()
