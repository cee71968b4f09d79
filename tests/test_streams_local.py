"""The local endpoint for streams (``streams.sock``, docs/wire.md §5) between two real
daemons on the private Tox network: each local connection is one mux stream."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import pytest
import trio

from toxbridge.streams import Limits
from toxbridge.testing import App, DaemonProc, random_frames

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("streams_local")]

KIND = 20


@pytest.fixture(scope="module")
def pair(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("spair")
    with DaemonProc(["--listen"], d / "l.tox", tox_network, verbose=False) as listener:
        with DaemonProc(["--peer", listener.tox_id], d / "p.tox", tox_network,
                        verbose=False) as peer:
            listener.streams = d / "l.bridge" / "streams.sock"
            peer.streams = d / "p.bridge" / "streams.sock"
            yield listener, peer


async def request(path: Path, req: dict) -> tuple[trio.SocketStream, dict]:
    stream = await trio.open_unix_socket(os.fspath(path))
    await stream.send_all(json.dumps(req).encode() + b"\n")
    line = b""
    while not line.endswith(b"\n"):
        data = await stream.receive_some(1)
        assert data, f"closed before a reply; got {line!r}"
        line += data
    return stream, json.loads(line)


async def open_pair(pair, kind: int = KIND, priority: str = "bulk", header: bytes = b"hd"):
    """Accept on the peer node, open on the listener: (opener, acceptor) connections."""
    listener, peer = pair
    async with trio.open_nursery() as nursery:
        accepted: list = []

        async def accept() -> None:
            accepted.append(await request(peer.streams, {"op": "accept", "kind": kind}))
        nursery.start_soon(accept)
        await trio.sleep(0.3)  # the accept is registered before the OPEN can arrive
        conn, reply = await request(listener.streams, {"op": "open", "kind": kind,
                                                       "priority": priority,
                                                       "header": header.hex()})
    assert reply["ok"] is True and reply["kind"] == kind, reply
    a_conn, a_reply = accepted[0]
    assert a_reply["ok"] is True and a_reply["header"] == header.hex()
    assert a_reply["priority"] == priority
    return conn, a_conn


async def read_all(stream: trio.SocketStream, limit: int = 1 << 30) -> bytes:
    out = bytearray()
    while data := await stream.receive_some(65536):
        out += data
        assert len(out) <= limit
    return bytes(out)


async def connect_app(port: int) -> App:
    """A bridge-port app, once the previous one is gone (one app at a time)."""
    with trio.fail_after(10):
        while True:
            app = await App.connect(port)
            first = await app.next_event()
            if first.get("code") != "busy":
                assert first["event"] == "ready" and first["version"] == 1
                return app
            await app.aclose()
            await trio.sleep(0.1)


async def wait_online(pair) -> None:
    """The channel is open (the streams ride the same Link)."""
    listener, _ = pair
    with trio.fail_after(90):
        app = await connect_app(listener.port)
        await app.wait_event(code=301)
        await app.aclose()


def test_the_socket_is_0600_in_the_data_dir(pair):
    for node in pair:
        assert node.streams.exists()
        assert node.streams.stat().st_mode & 0o777 == 0o600


async def test_5MB_each_way_exact_with_half_close(pair):
    await wait_online(pair)
    rng = random.Random(14)
    up, down = rng.randbytes(5_000_000), rng.randbytes(5_000_000)
    with trio.fail_after(120):
        a, b = await open_pair(pair)
        got: dict[str, bytes] = {}
        async with trio.open_nursery() as nursery:
            async def send(stream, data):
                await stream.send_all(data)
                await stream.send_eof()  # FIN; the other direction stays open

            async def recv(stream, name):
                got[name] = await read_all(stream)
            nursery.start_soon(send, a, up)
            nursery.start_soon(send, b, down)
            nursery.start_soon(recv, b, "b")
            nursery.start_soon(recv, a, "a")
        assert got["b"] == up and got["a"] == down
        await a.aclose()
        await b.aclose()


async def test_after_one_side_ends_the_other_still_sends(pair):
    await wait_online(pair)
    with trio.fail_after(60):
        a, b = await open_pair(pair)
        await a.send_all(b"ping")
        await a.send_eof()
        assert await read_all(b) == b"ping"  # EOF after the bytes: the peer's FIN
        await b.send_all(b"pong" * 1000)
        await b.send_eof()
        assert await read_all(a) == b"pong" * 1000
        await a.aclose()
        await b.aclose()


async def test_a_stalled_reader_stops_only_its_stream(pair):
    await wait_online(pair)
    with trio.fail_after(120):
        stalled_a, stalled_b = await open_pair(pair)
        other_a, other_b = await open_pair(pair)
        pushed = [0]

        async def push_stalled() -> None:  # nobody reads stalled_b
            chunk = b"s" * 65536
            while True:
                await stalled_a.send_all(chunk)
                pushed[0] += len(chunk)

        data = random.Random(1).randbytes(3_000_000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(push_stalled)
            await trio.sleep(3)  # the stalled stream fills its window and buffers
            stuck_at = pushed[0]
            got = []

            async def recv():
                got.append(await read_all(other_b))
            nursery.start_soon(recv)
            await other_a.send_all(data)
            await other_a.send_eof()
            while not got:
                await trio.sleep(0.05)
            assert got[0] == data  # the other stream moved while one was stalled
            # ... and the stalled one took no more: bounded by its window and buffers
            assert pushed[0] - stuck_at <= 65536
            window = max(Limits().stream_window, Limits().bulk_window)
            assert pushed[0] < window + 1024 * 1024, pushed[0]  # and the sockets' buffers
            nursery.cancel_scope.cancel()
        for s in (stalled_a, stalled_b, other_a, other_b):
            await s.aclose()


def _abort(stream: trio.SocketStream) -> None:
    """Close with unread data: on a Unix socket the other end gets ECONNRESET."""
    stream.socket.close()


async def _sees_reset(stream: trio.SocketStream) -> None:
    """The daemon closed this stream's connection: reads end, and writes fail."""
    with trio.fail_after(30):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(1000):
                await stream.send_all(b"x" * 65536)
                await trio.sleep(0.01)


@pytest.mark.parametrize("who", ["opener", "acceptor"])
async def test_an_app_that_closes_with_unread_data_resets_the_stream_at_the_peer(pair, who):
    await wait_online(pair)
    with trio.fail_after(60):
        a, b = await open_pair(pair)
        gone, other = (a, b) if who == "opener" else (b, a)
        await other.send_all(b"unread" * 1000)
        await trio.sleep(1)  # it arrives in `gone`'s socket, which never reads it
        _abort(gone)
        await _sees_reset(other)
        await other.aclose()


async def test_bad_requests_get_one_error_line(pair):
    listener, _ = pair
    for req, code in [({"op": "dance"}, "bad_request"),
                      ({"op": "open", "kind": 1}, "bad_request"),  # the channel's kind
                      ({"op": "open", "kind": 300}, "bad_request"),
                      ({"op": "open", "kind": 30, "header": "zz"}, "bad_request")]:
        stream, reply = await request(listener.streams, req)
        assert reply["ok"] is False and reply["code"] == code, (req, reply)
        assert await stream.receive_some(100) == b""  # and it is closed
        await stream.aclose()


async def test_an_open_nobody_accepts_is_refused_by_the_peer(pair):
    listener, _ = pair
    await wait_online(pair)
    with trio.fail_after(30):
        stream, reply = await request(listener.streams, {"op": "open", "kind": 99})
        assert reply["ok"] is True
        await _sees_reset(stream)
        await stream.aclose()


async def test_the_v1_channel_is_exact_while_a_stream_moves_bulk(pair):
    listener, peer = pair
    await wait_online(pair)
    with trio.fail_after(120):
        a_app = await connect_app(listener.port)
        b_app = await connect_app(peer.port)
        await a_app.wait_event(code=301)
        await b_app.wait_event(code=301)
        s_a, s_b = await open_pair(pair)
        frames = random_frames(3, 1_000_000)
        bulk = os.urandom(5_000_000)
        got: dict[str, object] = {}
        async with trio.open_nursery() as nursery:
            async def bulk_send():
                await s_a.send_all(bulk)
                await s_a.send_eof()

            async def bulk_recv():
                got["bulk"] = await read_all(s_b)

            async def chan_send():
                for f in frames:
                    await a_app.send(f)

            async def chan_recv():
                got["chan"] = [await b_app.next_data() for _ in frames]
            for fn in (bulk_send, bulk_recv, chan_send, chan_recv):
                nursery.start_soon(fn)
        assert got["chan"] == frames
        assert got["bulk"] == bulk
        for s in (s_a, s_b, a_app, b_app):
            await s.aclose()
