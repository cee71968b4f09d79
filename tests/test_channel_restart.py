"""The v1 channel across a kill -9 of the peer daemon, over real toxcore (docs/wire.md §3,
"The channel"): frames the local app wrote while the peer daemon was frozen, then killed,
reach the restarted daemon's app once each, in order, as on the v1 Link."""

from __future__ import annotations

import signal

import pytest
import trio

from toxbridge.framing import encode_data
from toxbridge.testing import App, DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("bridges")]


def test_frames_written_before_the_peer_daemon_is_killed_reach_its_successor_once(
        tox_network, tmp_path):
    listener = DaemonProc(["--listen"], tmp_path / "l.tox", tox_network, verbose=False)
    peer = DaemonProc(["--peer", listener.tox_id], tmp_path / "p.tox", tox_network,
                      verbose=False)
    peer_port = peer.port
    # 120 frames of ~1 KiB: more than the mux buffers and the Link's packets in flight
    burst = [b"%04d" % i + bytes([i % 251]) * (996 + i % 24) for i in range(120)]

    async def scenario() -> None:
        nonlocal peer
        with trio.fail_after(150):
            a = await App.connect(listener.port)
            b = await App.connect(peer_port)
            await a.wait_event(code=301)
            await b.wait_event(code=301)
            await a.send(b"before")
            assert await b.next_data() == b"before"
            await trio.sleep(0.5)  # the peer's ack for it goes out (no frame to repeat)
            peer.signal(signal.SIGSTOP)  # nothing of the burst can be delivered now
            await a.stream.send_all(b"".join(encode_data(f) for f in burst))
            await trio.sleep(1)  # in the listener's queues, mux and Link, some sent
            peer.signal(signal.SIGKILL)
            peer.process.wait(10)
            assert await b.next_data() is None  # the old daemon's socket: closed
            await b.aclose()
            peer = DaemonProc(["--peer", listener.tox_id, "--bridge-port", str(peer_port)],
                              tmp_path / "p.tox", tox_network, verbose=False)
            b = await App.connect(peer_port)
            await a.send(b"after")
            got = []
            while not got or got[-1] != b"after":
                frame = await b.next_data()
                assert frame is not None
                got.append(frame)
            assert got == burst + [b"after"]  # a repeat or a loss shows here
            await a.aclose()
            await b.aclose()

    try:
        trio.run(scenario)
    finally:
        peer.os_resume()
        peer.stop()
        listener.stop()
