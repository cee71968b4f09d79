"""The demo: everything on a private Tox network on 127.0.0.1, nothing leaves the machine.

A bootstrap node (tox-bootstrapd, also a TCP relay), then the real thing, twice:

1. the channel: ``toxbridge --listen --raw`` and ``toxbridge --peer <ID> --raw`` as two
   processes, a small app on each bridge port; the apps say hello, stream verified frames
   both ways at once, and measure the round trip through both daemons;
2. whole nodes (daemon + bridge_local): alice and bob log in on either side, see each other,
   chat, send a 300 KB message, read the history, and carol gets what was sent while she
   was offline; then alice sends bob a file — upload to her bridge, bridge to bridge over
   Tox, download from his — with progress bars, and the md5s are compared;
3. port forwarding (``demo_forward``): an HTTP server exposed on one side, a page fetched
   through ``-L`` on the other and its bytes compared; a line session through ``-W``.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time
from pathlib import Path

import trio

from ..framing import encode_data
from .demo_forward import run_forwarding
from .harness import App, DaemonProc
from .privnet import start_bootstrap

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

    moves = [e["link"] for e in a.events if e.get("event") == "link"]
    if moves:
        _say(f"  the link moved {' -> '.join([online['link'], *moves])} meanwhile (event 'link')")
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


async def _chat(listener: DaemonProc, peer: DaemonProc, t0: float, workdir: Path,
                mb: float) -> bool:
    from bridge_local.client import open_client

    async with open_client(listener.app_port) as alice, open_client(peer.app_port) as bob:
        a = await alice.login("alice")
        b = await bob.login("bob")
        _say(f"  alice logged in on the listener's app port {listener.app_port}, "
             f"bob on the peer's {peer.app_port}")
        with trio.fail_after(120):
            await alice.wait_event(command=301, token=b["token"])
        _say(f"  alice sees bob online after {time.monotonic() - t0:.1f} s (event 301): "
             + ", ".join(f"{u['name']} ({u['side']})" for u in await alice.users()))
        t = time.perf_counter()
        reply = await alice.send(b["token"], "你好 bob, over Tox")
        got = await bob.wait_event(command=2003)
        _say(f"  alice -> bob: code {reply['code']}, bob got {got['msg']!r} from {got['name']} "
             f"in {(time.perf_counter() - t) * 1000:.1f} ms")
        big = secrets.token_hex(150_000)
        await bob.send(a["token"], big)
        got = await alice.wait_event(command=2003)
        _say(f"  bob -> alice: a {len(big) // 1000} KB message arrives whole: {got['msg'] == big}")
        carol_token = None
        async with open_client(listener.app_port) as carol:
            carol_token = (await carol.login("carol"))["token"]
        await trio.sleep(0.5)
        reply = await bob.send(carol_token, "for when you are back")
        _say(f"  bob -> carol (offline): code {reply['code']} (stored)")
        async with open_client(listener.app_port) as carol:
            await carol.login("carol")
            with trio.fail_after(10):
                got = await carol.wait_event(command=2003)
            _say(f"  carol logs in again and gets {got['msg']!r}")
        history = await bob.history(a["token"])
        _say(f"  bob's history with alice: {len(history)} messages, both directions")
        return len(history) >= 2 and await _file(alice, bob, b["token"], workdir, mb)


async def _file(alice, bob, bob_token: str, workdir: Path, mb: float) -> bool:
    """alice → bob: a random file over the three hops, with progress bars; md5 compared."""
    from bridge_local.files import ProgressBar, download, file_ref, send_file

    src = workdir / "demo-file.bin"
    size = max(1, int(mb * 1e6))
    with open(src, "wb") as f:
        for _ in range(0, size, 1 << 20):
            f.write(secrets.token_bytes(min(1 << 20, size - f.tell())))
    _say(f"  alice sends bob {src.name} ({size / 1e6:.1f} MB of random bytes)")
    t = time.monotonic()
    with ProgressBar("  alice uploads to her bridge") as bar:
        ref, reply = await send_file(alice, bob_token, src, on_event=bar)
    _say(f"  file message to bob: code {reply['code']}, fileid {ref.fileid[:16]}…, "
         f"md5 {ref.md5}")
    with trio.fail_after(600):
        message = await bob.wait_event(command=2003, fileid=ref.fileid)
        _say(f"  bob got the file message ({message['filename']}, {message['filesize']} bytes);"
             " the file moves bridge to bridge over Tox...")
        available = await bob.wait_event(command=5003, fileid=ref.fileid)
    _say(f"  bob is told it is complete on his bridge (event 5003) "
         f"{time.monotonic() - t:.1f} s after alice began")
    with ProgressBar("  bob downloads from his bridge") as bar:
        got = await download(bob, ref.fileid, workdir / "bob-downloads", on_event=bar)
    same = (await trio.to_thread.run_sync(file_ref, got)).md5 == ref.md5 == available["md5"]
    _say(f"  bob saved {got.name}: md5 {'equal' if same else 'DIFFERENT'} "
         f"({size / 1e6 / (time.monotonic() - t):.1f} MB/s over the three hops)")
    return same


def run_demo(mb: float = 20) -> int:
    _say("toxbridge demo — a private Tox network on 127.0.0.1 (LAN discovery and IPv6 off)")
    boot = start_bootstrap()
    ok = False
    try:
        _say(f"  bootstrap node  {boot.info} (TCP relay on port {boot.info.tcp_port})")
        with tempfile.TemporaryDirectory(prefix="toxbridge-demo-") as tmp:
            t0 = time.monotonic()
            _say("1. the channel (--raw: the apps speak frames on the bridge ports)")
            with DaemonProc(["--listen"], Path(tmp) / "listen.tox", boot.info, verbose=False) as listener:
                _say(f"  toxbridge --listen      Tox ID {listener.tox_id}")
                with DaemonProc(["--peer", listener.tox_id], Path(tmp) / "peer.tox", boot.info,
                                verbose=False) as peer:
                    _say(f"  toxbridge --peer <ID>   Tox ID {peer.tox_id}")
                    ok = trio.run(_apps, listener, peer, mb, t0)
            _say("2. whole nodes: the daemon and bridge_local's JSON app server in one process")
            t0 = time.monotonic()
            with DaemonProc(["--listen"], Path(tmp) / "listen.tox", boot.info, verbose=False,
                            raw=False) as listener, \
                    DaemonProc(["--peer", listener.tox_id], Path(tmp) / "peer.tox", boot.info,
                               verbose=False, raw=False) as peer:
                _say("  the same profiles, so the same Tox IDs; the peer deletes its stale friend "
                     "and asks again")
                ok &= trio.run(_chat, listener, peer, t0, Path(tmp), mb)
            _say("3. port forwarding: --expose on the listener, -L and -W on the peer")
            ok &= run_forwarding(boot.info, Path(tmp), max(1, int(mb * 50)), _say)
    finally:
        boot.stop()
    _say("  stopped both daemons and the bootstrap node.")
    if not ok:
        _say("FAILED: see above")
        return 1
    _say(SHOWN.format(mb=mb))
    return 0


SHOWN = """What it showed, all over real Tox packets on 127.0.0.1 with no server in between:
  - two bridges found each other by Tox ID through a private bootstrap node;
  - the channel: {mb:.0f} MB each way at once in 1024-byte frames, in order, md5 equal;
  - bridge_local: login, who is online on both sides, messages both ways (201),
    a 300 KB message whole, offline delivery (204, then 2003 at login), history;
  - a {mb:.0f} MB file: upload, bridge to bridge, download, progress shown, md5 equal;
  - port forwarding: a web page through -L, bytes equal; a line session through -W."""
