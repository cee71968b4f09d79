"""Real daemons (`toxbridge --listen` / `--peer`) in subprocesses on the private Tox
network, with apps on their bridge ports."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time

import pytest
import trio

from toxbridge.tox import load_profile, save_profile

from .conftest import iterate_until, new_tox
from toxbridge.testing import App, DaemonProc, random_frames, stream_frames



pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("daemons")]


@pytest.fixture(scope="module")
def pair(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    with DaemonProc(["--listen"], d / "listen.tox", tox_network) as listener:
        with DaemonProc(["--peer", listener.tox_id], d / "peer.tox", tox_network) as peer:
            yield listener, peer


async def connect_when_free(port: int) -> App:
    """The previous test's app may still be closing on the daemon's side (one app at a
    time): a newcomer then gets `busy`, and tries again."""
    with trio.fail_after(10):
        while True:
            app = await App.connect(port)
            first = await app.next_event()
            if first.get("code") != "busy":
                return app  # `first` is in app.events
            await app.aclose()
            await trio.sleep(0.1)


async def open_apps(pair) -> tuple[App, App]:
    listener, peer = pair
    a, b = await connect_when_free(listener.port), await connect_when_free(peer.port)
    with trio.fail_after(90):
        ready = a.events[0]
        assert ready["event"] == "ready" and ready["mode"] == "listen"
        assert ready["tox_id"] == listener.tox_id
        await a.wait_event(code=301)
        await b.wait_event(code=301)
    return a, b


async def test_20MB_of_random_frames_both_ways_exact_in_order_boundaries_kept(pair):
    a, b = await open_apps(pair)
    # The first apps also learn how the friendship came about (codes of the seed's 100s).
    assert [e["code"] for e in a.events if e["event"] == "friend"] == [101]  # accepted
    assert [e["code"] for e in b.events if e["event"] == "friend"] == [104, 101]  # sent, accepted
    ab, ba = random_frames(1, 20_000_000), random_frames(2, 20_000_000)
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_frames, a, b, ab)
            nursery.start_soon(stream_frames, b, a, ba)
    await a.aclose()
    await b.aclose()


async def test_second_app_is_refused_and_first_unaffected(pair):
    a, b = await open_apps(pair)
    intruder = await App.connect(pair[0].port)
    with trio.fail_after(10):
        event = await intruder.wait_event(event="error")
        assert event["code"] == "busy"
        assert await intruder.next_frame() is None  # closed
    await intruder.aclose()
    with trio.fail_after(30):
        await a.send(b"still here")
        assert await b.next_data() == b"still here"
    await a.aclose()
    await b.aclose()


async def test_an_app_that_vanishes_while_the_daemon_writes_to_it_stops_only_itself(pair):
    """kill -9 of an app that is being written to: its socket resets under the daemon's
    writer and reader at once. Whichever sees it first, only that connection ends (it once
    ended the daemon: trio's nursery wrapped the writer's BrokenResourceError in a group).
    Four rounds, as which task wakes first is trio's (random) choice."""
    listener, peer = pair
    a, b = await open_apps(pair)
    stop = False

    async def produce() -> None:  # bounded in count and time; stops between two frames
        deadline = trio.current_time() + 120
        for _ in range(200_000):
            if stop or trio.current_time() > deadline:
                break
            await a.send(bytes(1000))
        await a.send(b"marker")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        for round in range(4):
            if round:
                b = await connect_when_free(peer.port)
                with trio.fail_after(60):
                    await b.wait_event(code=301)
            await trio.sleep(1.5)  # b reads nothing: the daemon's writer blocks on it
            b.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            await b.aclose()  # an RST, as after kill -9 with unread data
            await trio.sleep(0.3)
            assert peer.process.poll() is None, \
                "the daemon died:\n" + "\n".join(peer.log[-30:])
        b = await connect_when_free(peer.port)
        stop = True
        with trio.fail_after(60):
            await b.wait_event(code=301)
            assert len(await b.next_data()) == 1000  # the channel still flows,
            while await b.next_data() != b"marker":  # and is left empty for the next test
                pass
    await a.aclose()
    await b.aclose()


@pytest.mark.parametrize(
    "garbage, code",
    [
        (b"\x07\x00\x01x", "bad_frame"),  # unknown kind
        (b"\x02\x00\x02{}", "bad_frame"),  # EVENT is daemon -> app only
        (b"\x01\x04\x01" + bytes(1025), "bad_frame"),  # over 1024 bytes
        (b"\x01\x00\x10abc", "truncated"),  # the app vanishes mid-frame
    ],
)
async def test_malformed_frames_close_only_that_connection(pair, garbage, code):
    a, b = await open_apps(pair)
    await a.send(b"before")
    await a.stream.send_all(garbage)
    if code == "truncated":
        await a.stream.send_eof()
    with trio.fail_after(30):
        assert await b.next_data() == b"before"
        event = await a.wait_event(event="error")
        assert event["code"] == code
        assert await a.next_frame() is None
    await a.aclose()
    a2 = await App.connect(pair[0].port)  # a new app gets ready + the peer state
    with trio.fail_after(30):
        assert (await a2.next_event())["event"] == "ready"
        assert (await a2.next_event())["code"] == 301
        await b.send(b"after")
        assert await a2.next_data() == b"after"
    await a2.aclose()
    await b.aclose()


def test_restart_keeps_the_tox_id_and_peer_start_deletes_stale_friends(tox_network, tmp_path):
    profile = tmp_path / "l.tox"
    with DaemonProc(["--listen"], profile, tox_network) as first:
        assert first.stop() == 0
    with DaemonProc(["--listen"], profile, tox_network) as again:
        assert again.tox_id == first.tox_id
        # A --peer profile with stale friends keeps only its identity and the listener.
        peer_profile = tmp_path / "p.tox"
        with new_tox(tox_network) as t:
            for _ in range(3):
                t.friend_add_norequest(random.randbytes(31) + b"\x01")  # valid: top bit of the last byte clear
            save_profile(peer_profile, t.savedata())
            old_address = t.address
        with DaemonProc(["--peer", again.tox_id], peer_profile, tox_network) as peer:
            assert peer.tox_id == old_address.hex().upper()
            assert peer.stop() == 0
        assert again.stop() == 0
    with new_tox(tox_network, savedata=load_profile(peer_profile)) as t:
        assert [t.friend_public_key(f) for f in t.friend_list()] == [bytes.fromhex(again.tox_id)[:32]]


def test_strangers_and_wrong_secrets_are_not_accepted(tox_network, tmp_path):
    with DaemonProc(["--listen"], tmp_path / "l.tox", tox_network, secret="right") as listener, \
            contextlib.ExitStack() as stack:
        strangers = [stack.enter_context(new_tox(tox_network)) for _ in range(3)]
        no_secret, wrong, right = strangers
        messages = [b"hello", b"toxbridge/1 wrong", b"toxbridge/1 right"]
        friends = [s.friend_add(listener.tox_id, m) for s, m in zip(strangers, messages)]
        iterate_until(strangers, lambda: right.friend_connection_status(friends[2]) != 0,
                      90, "the right secret to be accepted")
        # The other two asked at the same moment: give them a few more seconds.
        deadline = time.monotonic() + 3
        iterate_until(strangers, lambda: time.monotonic() > deadline, 10, "3 s")
        assert no_secret.friend_connection_status(friends[0]) == 0
        assert wrong.friend_connection_status(friends[1]) == 0
        log = "\n".join(listener.log)
        assert log.count("ignored a friend request") == 2


def test_listener_without_secret_or_allow_list_refuses_to_start(tox_network, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "toxbridge", "--listen", "--profile", str(tmp_path / "x"),
                        "--bootstrap", str(tox_network)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "needs --secret" in r.stderr
