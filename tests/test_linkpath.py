"""The Link over our transport on lossy packets (toxbridge.linkpath), between real daemons
on the session's private Tox network: the transport path is really taken (lossy packets
counted on ids 200/201 by both daemons' status), 20 MB arrive exact, and a peer of the old
protocol version gets a clear error instead of a hang."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import trio

from toxbridge.config import request_message
from toxbridge.link import PACKET_ID
from toxbridge.testing import App, DaemonProc, random_frames, stream_frames
from toxbridge.tox import Connection
from toxbridge.toxloop import FrameQueue

from .conftest import iterate_until, new_tox

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("daemons")]


def status_json(data_dir) -> dict:
    done = subprocess.run([sys.executable, "-m", "toxbridge", "status", "--json", "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_20MB_cross_exact_inside_the_transport_on_lossy_packets(tox_network, tmp_path):
    ld, pd = tmp_path / "l.data", tmp_path / "p.data"
    with DaemonProc(["--listen", "--data-dir", str(ld)], tmp_path / "l.tox", tox_network) as lis, \
            DaemonProc(["--peer", lis.tox_id, "--data-dir", str(pd)], tmp_path / "p.tox",
                       tox_network) as peer:
        a, b = await App.connect(lis.port), await App.connect(peer.port)
        with trio.fail_after(90):
            await a.wait_event(code=301)
            await b.wait_event(code=301)
        before = (await trio.to_thread.run_sync(status_json, ld))["peers"][0]
        frames = random_frames(16, 20_000_000)
        start = time.monotonic()
        with trio.fail_after(180):
            await stream_frames(a, b, frames)
        took = time.monotonic() - start
        sender = (await trio.to_thread.run_sync(status_json, ld))["peers"][0]
        receiver = (await trio.to_thread.run_sync(status_json, pd))["peers"][0]
        await a.aclose()
        await b.aclose()
    print(f"\n20 MB in {took:.1f} s ({20 / took:.1f} MB/s): {sender['transport']}")
    s, r = sender["transport"], receiver["transport"]
    assert s["active"] and r["active"]
    # 20 MB of frames is at least 14,800 full DATA packets of 1,351 stream bytes (id 200),
    # answered by ACKs (id 201: one per loop turn of the receiver, whatever arrived in it) ...
    sent = s["lossy_sent_data"] - before["transport"]["lossy_sent_data"]
    assert sent >= 20_000_000 // 1351
    assert r["lossy_received_data"] >= 0.9 * sent  # loopback: hardly anything is lost
    assert r["lossy_sent_ack"] >= sent // 100 and s["lossy_received_ack"] >= r["lossy_sent_ack"] // 2
    # ... and the Link's DATA did not go lossless: its bytes are all inside those packets
    assert (sender["bytes_sent"] - before["bytes_sent"]) <= 1.1 * 20_000_000
    # One transport each way per friend connection: a connection toxcore dropped and
    # brought back under a loaded machine's stalls starts a new pair, nothing else does.
    assert s["stale_dropped"] == 0 and s["epochs"] == 2 * (1 + sender["reconnects"])


async def test_a_peer_of_the_old_protocol_gets_a_clear_version_error_not_a_hang(tox_network,
                                                                             tmp_path):
    """A peer speaking Link version 1 (HELLO without the transport fields) is told, in a
    `version_mismatch` error event, and our v2 HELLO is one a v1 Link reports the same way
    (it reads the version, bytes 2-3, first)."""
    with DaemonProc(["--listen"], tmp_path / "l.tox", tox_network) as lis:
        app = await App.connect(lis.port)
        old = new_tox(tox_network)
        hellos: list[bytes] = []
        old.on_friend_lossless_packet = lambda f, data: hellos.append(data)
        try:
            friend = old.friend_add(bytes.fromhex(lis.tox_id), request_message(b"s3cret"))
            await trio.to_thread.run_sync(lambda: iterate_until(
                [old], lambda: old.friend_connection_status(friend) != Connection.NONE and hellos,
                90, "the listener's HELLO"))
            v1_hello = (bytes([PACKET_ID, 0x01, 0, 1, 0]) + bytes(range(1, 17)) + bytes(16)
                        + (65536).to_bytes(4, "big") + bytes(16))  # 57 bytes, version 1
            assert old.try_send_lossless_packet(friend, v1_hello)
            with trio.fail_after(30):
                while True:
                    old.iterate()
                    with trio.move_on_after(0.01):
                        event = await app.wait_event(event="error")
                        break
        finally:
            old.close()
            await app.aclose()
    assert event["code"] == "version_mismatch"
    assert "version 1, we speak 2" in event["message"]
    ours = hellos[0]
    assert ours[0] == PACKET_ID and ours[1] == 0x01 and int.from_bytes(ours[2:4], "big") == 2


async def test_20MB_arrive_while_the_receiving_daemon_is_stopped_in_bursts(tox_network, tmp_path):
    """SIGSTOP bursts of 50-300 ms on the receiving daemon (CPU starvation, worse): the app's
    reader at the sender once filled the whole outbound queue between the tox thread's
    length check and its take, no room was signalled, and the channel stopped for good
    (before the fix, 4 of 4 runs of this stalled within 4 tries)."""
    with DaemonProc(["--listen"], tmp_path / "l.tox", tox_network) as lis, \
            DaemonProc(["--peer", lis.tox_id], tmp_path / "p.tox", tox_network) as peer:
        a, b = await App.connect(lis.port), await App.connect(peer.port)
        with trio.fail_after(90):
            await a.wait_event(code=301)
            await b.wait_event(code=301)
        rng = random.Random(7)
        done = trio.Event()

        async def stopper() -> None:
            for _ in range(400):
                if done.is_set():
                    break
                await trio.sleep(rng.uniform(0.05, 0.4))
                peer.signal(signal.SIGSTOP)
                try:
                    await trio.sleep(rng.uniform(0.05, 0.3))
                finally:
                    peer.signal(signal.SIGCONT)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stopper)
            try:
                with trio.fail_after(60):  # ~4 s here normally
                    await stream_frames(a, b, random_frames(17, 20_000_000))
            finally:
                done.set()
        await a.aclose()
        await b.aclose()


def test_the_outbound_queue_counts_what_was_taken():
    q = FrameQueue(4)
    assert all(q.put_nowait(b"x") for _ in range(4)) and not q.put_nowait(b"x")
    assert len(q.take(3)) == 3 and q.taken == 3
    q.pop()
    assert q.taken == 4 and len(q) == 0
