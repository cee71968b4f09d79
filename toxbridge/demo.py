"""The demo: everything on a private Tox network on 127.0.0.1, nothing leaves the machine.

A bootstrap node (tox-bootstrapd, also a TCP relay), then the real thing: ``toxbridge
--listen`` and ``toxbridge --peer <ID>`` as two processes, and a small app on each bridge
port. The apps say hello, stream verified frames both ways at once, and measure the round
trip through both daemons.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time
from pathlib import Path

import trio

from .framing import encode_data
from .harness import App, DaemonProc
from .network import start_bootstrap

FRAME = 1024


def _say(text: str) -> None:
    print(text, flush=True)


async def _stream(src: App, dst: App, mb: float) -> tuple[float, bool]:
    """Random frames src → dst; returns (seconds, whether the md5s match)."""
    n = max(1, int(mb * 1e6) // FRAME)
    sent, got = hashlib.md5(), hashlib.md5()
    block = secrets.token_bytes(FRAME * 64)
    start = time.monotonic()

    async def send() -> None:
        for i in range(0, n, 64):
            frames = [block[j * FRAME:(j + 1) * FRAME] for j in range(min(64, n - i))]
            for f in frames:
                sent.update(f)
            await src.stream.send_all(b"".join(encode_data(f) for f in frames))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        for _ in range(n):
            got.update(await dst.next_data())
    return time.monotonic() - start, sent.digest() == got.digest()


async def _apps(listener: DaemonProc, peer: DaemonProc, mb: float, t0: float) -> bool:
    a, b = await App.connect(listener.port), await App.connect(peer.port)
    _say(f"  app A on the listener's bridge port {listener.port}, app B on the peer's {peer.port}")
    _say("  waiting for the friend request, the Tox link and both handshakes (~10 s)...")
    with trio.fail_after(120):
        online = await a.wait_event(code=301)
        await b.wait_event(code=301)
    _say(f"  channel open after {time.monotonic() - t0:.1f} s (event 301, link {online['link']})")

    await a.send("hello from A — 你好".encode())
    _say(f"  B received: {(await b.next_data()).decode()!r}")

    with trio.fail_after(600):
        results = {}
        async with trio.open_nursery() as nursery:
            async def run(name, src, dst):
                results[name] = await _stream(src, dst, mb)
            nursery.start_soon(run, "A -> B", a, b)
            nursery.start_soon(run, "B -> A", b, a)
    ok = True
    for name, (seconds, same) in sorted(results.items()):
        ok &= same
        _say(f"  {name}: {mb:.0f} MB of 1024-byte frames in {seconds:.1f} s "
             f"({mb / seconds:.1f} MB/s), md5 {'equal' if same else 'DIFFERENT'}")

    rtts = []
    for _ in range(200):
        t = time.perf_counter()
        await a.send(b"ping")
        await b.send(await b.next_data())
        await a.next_data()
        rtts.append(time.perf_counter() - t)
    rtts.sort()
    _say(f"  app-to-app ping-pong through both daemons: median {rtts[100] * 1000:.2f} ms, "
         f"worst {rtts[-1] * 1000:.2f} ms")
    await a.aclose()
    await b.aclose()
    return ok


def run_demo(mb: float = 20) -> int:
    _say("toxbridge demo — a private Tox network on 127.0.0.1 (LAN discovery and IPv6 off)")
    boot = start_bootstrap()
    ok = False
    try:
        _say(f"  bootstrap node  {boot.info} (TCP relay on port {boot.info.tcp_port})")
        with tempfile.TemporaryDirectory(prefix="toxbridge-demo-") as tmp:
            t0 = time.monotonic()
            with DaemonProc(["--listen"], Path(tmp) / "listen.tox", boot.info, verbose=False) as listener:
                _say(f"  toxbridge --listen      Tox ID {listener.tox_id}")
                with DaemonProc(["--peer", listener.tox_id], Path(tmp) / "peer.tox", boot.info,
                                verbose=False) as peer:
                    _say(f"  toxbridge --peer <ID>   Tox ID {peer.tox_id}")
                    ok = trio.run(_apps, listener, peer, mb, t0)
    finally:
        boot.stop()
    _say("  stopped both daemons and the bootstrap node. Done." if ok else "  FAILED")
    return 0 if ok else 1
