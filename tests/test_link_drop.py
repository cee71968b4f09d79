"""The daemon-to-daemon link survives a real Tox link drop: one daemon is frozen with
SIGSTOP for longer than toxcore's friend timeout (28-32 s) while frames flow both ways;
the apps see 302 then 301, and every frame arrives exactly once, in order. And a short
stall, which toxcore does not notice, does not leave the link crawling."""

from __future__ import annotations

import signal
import struct
import time

import pytest
import trio

from toxbridge.framing import encode_data

from toxbridge.testing import App, DaemonProc

# Its own daemons and its own xdist group: it freezes a daemon for 35 s, so it runs
# beside the other daemon tests instead of after them.
pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("link_drop")]

FRAMES = 6000  # ~3.5 MB each way: more than toxcore can have queued when the link drops
STOP_SECONDS = 35


def frame(i: int, side: int) -> bytes:
    body = struct.pack(">IB", i, side)
    return body + bytes([i % 251]) * (i * 7919 % (1024 - len(body)))


async def send_all(app: App, side: int, go_slow: trio.Event) -> None:
    for start in range(0, FRAMES, 50):
        if start >= FRAMES // 4:
            await go_slow.wait()  # the rest is sent while the link is down and after
        await app.stream.send_all(b"".join(encode_data(frame(i, side)) for i in range(start, start + 50)))


async def receive_all(app: App, side: int, progress: list[int]) -> None:
    for i in range(FRAMES):
        got = await app.next_data()
        assert got is not None, "the bridge closed the app connection"
        n, s = struct.unpack_from(">IB", got)
        assert (n, s) == (i, side), f"expected frame {i}, got {n} (a loss, duplicate or reorder)"
        assert got == frame(i, side)
        progress[0] = i + 1


async def freeze_peer_mid_stream(network, tmp_path, stop_seconds: float) -> tuple[App, App]:
    """Stream FRAMES each way, freeze the peer daemon for ``stop_seconds`` once an eighth
    has arrived, send the rest, and check every frame arrives exactly once, in order."""
    with DaemonProc(["--listen"], tmp_path / "l.tox", network) as listener, \
            DaemonProc(["--peer", listener.tox_id], tmp_path / "p.tox", network) as peer:
        a, b = await App.connect(listener.port), await App.connect(peer.port)
        with trio.fail_after(90):  # the drop to test is that of a settled, direct link
            await a.wait_direct()
            await b.wait_direct()
        a.events.clear()
        b.events.clear()
        released = trio.Event()
        got_ab, got_ba = [0], [0]
        # Generous: the whole exchange takes ~10 s plus the freeze and a reconnect. The
        # bound catches a link that crawls after the freeze (toxcore at 4 packets/s).
        with trio.fail_after(stop_seconds + 120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all, a, 0, released)
                nursery.start_soon(send_all, b, 1, released)
                nursery.start_soon(receive_all, b, 0, got_ab)
                nursery.start_soon(receive_all, a, 1, got_ba)
                while min(got_ab[0], got_ba[0]) < FRAMES // 8:
                    await trio.sleep(0.01)
                peer.signal(signal.SIGSTOP)
                stopped_at = time.monotonic()
                released.set()  # more frames go in while the peer daemon is frozen
                try:
                    await trio.sleep(stop_seconds)
                finally:
                    peer.signal(signal.SIGCONT)
                if stop_seconds > 32:  # toxcore's friend timeout is 28-32 s
                    assert any(e.get("code") == 302 for e in a.events), (
                        f"no 302 after {time.monotonic() - stopped_at:.0f} s; events: {a.events}")
                assert got_ab[0] < FRAMES and got_ba[0] < FRAMES
        await a.aclose()
        await b.aclose()
        # What the daemons said about the friend connection, for a failing assertion.
        keys = ("friend connection", "link is now", "stuck", "acknowledged nothing", "restarted",
                "channel open")
        a.notes = [f"listener: {x}" for x in listener.log if any(k in x for k in keys)]
        b.notes = [f"peer: {x}" for x in peer.log if any(k in x for k in keys)]
        return a, b


async def test_frames_survive_a_link_drop_longer_than_the_friend_timeout(tox_network, tmp_path):
    a, b = await freeze_peer_mid_stream(tox_network, tmp_path, STOP_SECONDS)
    codes_a = [e["code"] for e in a.events if e.get("code") in (301, 302)]
    codes_b = [e["code"] for e in b.events if e.get("code") in (301, 302)]
    # The listener sees the drop and the return. The frozen side's toxcore may time the
    # friend out when it wakes, after the listener already saw it back (docs/benchmarks.md,
    # flaps): then the listener sees a second drop and return. Never a drop left open.
    notes = "\n".join(a.notes + b.notes)
    assert codes_a[:2] == [302, 301] and codes_a == [302, 301] * (len(codes_a) // 2), \
        f"{a.events}\n{notes}"
    assert len(codes_a) <= 4, f"{a.events}\n{notes}"
    assert codes_b in ([302, 301], []), f"{b.events}\n{notes}"


async def test_the_stream_catches_up_after_a_stall_shorter_than_the_friend_timeout(
        tox_network, tmp_path):
    # toxcore does not notice a 5 s stall; its send rate then fell to its floor (4
    # packets/s) for minutes while the daemon kept its queue full. The link keeps toxcore's
    # queue short (toxbridge/link.py, DEFAULT_IN_FLIGHT): the rest of the stream (~3 MB
    # each way) follows within seconds, not the ~10 minutes of the floor.
    a, b = await freeze_peer_mid_stream(tox_network, tmp_path, 5)
    for app in (a, b):
        assert [e["code"] for e in app.events if e.get("code") in (301, 302)] == [], \
            "\n".join([str(app.events), *a.notes, *b.notes])


async def test_a_stall_toxcore_does_not_notice_gets_a_fresh_connection(tox_network, tmp_path):
    # Frozen for 24 s: past toxbridge/stall.py's 20 s without an ack, before toxcore's own
    # friend timeout (28-32 s). The listener starts a fresh connection (as it would for a
    # path that passes toxcore's keep-alives and nothing of ours) and the stream goes on.
    a, b = await freeze_peer_mid_stream(tox_network, tmp_path, 24)
    notes = "\n".join([str(a.events), *a.notes, *b.notes])
    assert any(e.get("event") == "reset" and e.get("reason") == "no_progress"
               for e in a.events), notes
    assert [e["code"] for e in a.events if e.get("code") in (301, 302)][:2] == [302, 301], notes
