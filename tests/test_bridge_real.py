"""Two bridges over two real daemons on the private Tox network, several clients each side.

One pair of daemons per module (a friend connection takes ~10 s); each test runs its own
two bridge_local servers in its trio loop, on fresh databases, and uses names of its own
(frames of an earlier test's bridges may still be queued in a daemon)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from bridge_local.client import BridgeError, open_client
from bridge_local.server import BridgeConfig, BridgeServer, serve
from toxbridge.testing import DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("bridges")]


@pytest.fixture(scope="module")
def pair(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("bridge-daemons")
    with DaemonProc(["--listen"], d / "listen.tox", tox_network, verbose=False) as listener:
        with DaemonProc(["--peer", listener.tox_id], d / "peer.tox", tox_network,
                        verbose=False) as peer:
            yield listener, peer


async def start_bridge(nursery: trio.Nursery, port: int, data_dir: Path) -> BridgeServer:
    config = BridgeConfig(bridge_port=port, data_dir=data_dir, reconnect_delay=0.2)
    return await nursery.start(partial(serve, config, announce=lambda line: None))


@pytest.fixture
async def bridges(pair, tmp_path, nursery):
    with trio.fail_after(60):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
        await a.wait_peer()
        await b.wait_peer()
    yield a, b
    with trio.fail_after(10):
        await a.stop()
        await b.stop()


@pytest.fixture
def names(request):
    """Per-test user names: alice -> alice-1a2b3c."""
    tag = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    return lambda name: f"{name}-{tag}"


MESSAGE_FIELDS = {"command", "srctoken", "goaltoken", "name", "time", "ip", "port", "type", "msg"}


async def test_login_and_users_on_both_sides_with_several_clients(bridges, names):
    a, b = bridges
    with trio.fail_after(30):
        async with open_client(a.app_port, name=names("alice")) as alice, \
                open_client(a.app_port, name=names("carol")) as carol, \
                open_client(b.app_port, name=names("bob")) as bob, \
                open_client(b.app_port, name=names("dave")) as dave:
            await alice.wait_event(command=301, name=names("dave"), side="peer")
            everyone = {names(n) for n in ("alice", "carol", "bob", "dave")}
            for client, local in ((alice, "alice carol"), (carol, "alice carol"),
                                  (bob, "bob dave"), (dave, "bob dave")):
                users = await client.users()
                assert {u["name"] for u in users} == everyone
                assert {u["name"] for u in users if u["side"] == "local"} == \
                    {names(n) for n in local.split()}
            tokens = {u["token"] for u in await alice.users()}
            assert len(tokens) == 4 and {alice.token, bob.token} <= tokens


async def test_messages_both_ways_201_with_every_field_and_identical_history(bridges, names):
    a, b = bridges
    md5 = "9e107d9d372bb6826bd81d3542a419d6"
    with trio.fail_after(30):
        async with open_client(a.app_port, name=names("alice")) as alice, \
                open_client(b.app_port, name=names("bob")) as bob:
            await alice.wait_event(command=301, name=names("bob"))
            for i in range(5):
                assert await alice.send(bob.token, f"a{i}") == \
                    {"command": 2002, "result": True, "code": 201}
                assert (await bob.send(alice.token, f"b{i}"))["code"] == 201
            assert (await alice.send(bob.token, "the file", type=2, filename="r.pdf",
                                     filesize=48213, md5=md5, fileid="f-17"))["code"] == 201
            got_b = [await bob.wait_event(command=2003) for _ in range(6)]
            got_a = [await alice.wait_event(command=2003) for _ in range(5)]
            assert [m["msg"] for m in got_b] == [f"a{i}" for i in range(5)] + ["the file"]
            assert [m["msg"] for m in got_a] == [f"b{i}" for i in range(5)]
            first = got_b[0]
            assert set(first) == MESSAGE_FIELDS
            assert (first["srctoken"], first["goaltoken"], first["name"], first["ip"],
                    first["type"]) == (alice.token, bob.token, names("alice"), "127.0.0.1", 1)
            assert isinstance(first["port"], int) and isinstance(first["time"], float)
            assert set(got_b[5]) == MESSAGE_FIELDS | {"filename", "filesize", "md5", "fileid"}
            assert (got_b[5]["filename"], got_b[5]["filesize"], got_b[5]["md5"],
                    got_b[5]["fileid"]) == ("r.pdf", 48213, md5, "f-17")
            ha = await alice.history(bob.token)
            hb = await bob.history(alice.token)
            assert ha == hb and len(ha) == 11
            assert [m["time"] for m in ha] == sorted(m["time"] for m in ha)
            assert [m["msg"] for m in await alice.history(bob.token, limit=3)] == \
                [m["msg"] for m in ha[-3:]]


async def test_a_200_kb_message_arrives_whole_and_chat_is_not_stuck_behind_it(bridges, names):
    a, b = bridges
    big = "".join(chr(0x41 + i % 26) for i in range(200_000)) + "é" * 1000
    with trio.fail_after(60):
        async with open_client(a.app_port, name=names("alice")) as alice, \
                open_client(a.app_port, name=names("carol")) as carol, \
                open_client(b.app_port, name=names("bob")) as bob:
            await alice.wait_event(command=301, name=names("bob"))
            assert (await alice.send(bob.token, big))["code"] == 201
            assert (await carol.send(bob.token, "small"))["code"] == 201
            got = [await bob.wait_event(command=2003) for _ in range(2)]
            by_sender = {m["name"]: m["msg"] for m in got}
            assert by_sender[names("alice")] == big
            assert by_sender[names("carol")] == "small"


async def test_offline_user_gets_204_then_everything_in_order_at_login(bridges, names):
    a, b = bridges
    with trio.fail_after(30):
        async with open_client(a.app_port, name=names("alice")) as alice:
            async with open_client(b.app_port, name=names("bob")) as bob:
                await alice.wait_event(command=301, name=names("bob"))
            bob_token = bob.token
            await alice.wait_event(command=302, name=names("bob"))
            for i in range(10):
                assert await alice.send(bob_token, f"m{i}") == \
                    {"command": 2002, "result": True, "code": 204}
            async with open_client(b.app_port, name=names("bob")) as bob:
                got = [await bob.wait_event(command=2003) for _ in range(10)]
                assert [m["msg"] for m in got] == [f"m{i}" for i in range(10)]


async def test_queued_messages_survive_restarting_the_bridge_holding_them(pair, tmp_path, names):
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
            b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
            await a.wait_peer()
            async with open_client(a.app_port, name=names("alice")) as alice:
                async with open_client(b.app_port, name=names("bob")) as bob:
                    await alice.wait_event(command=301, name=names("bob"))
                bob_token = bob.token
                await alice.wait_event(command=302, name=names("bob"))
                # 1. The queue is on b (bob's bridge): restart b.
                for i in range(3):
                    assert (await alice.send(bob_token, f"m{i}"))["code"] == 204
                await b.stop()
                await alice.wait_event(command=302, side="peer")
                # 2. b is down: the queue is on a (the peer outbox). Restart a too.
                for i in range(3, 6):
                    assert (await alice.send(bob_token, f"m{i}"))["code"] == 204
            await a.stop()
            a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
            b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
            await a.wait_peer()
            async with open_client(b.app_port, name=names("bob")) as bob:
                got = [await bob.wait_event(command=2003) for _ in range(6)]
                assert [m["msg"] for m in got] == [f"m{i}" for i in range(6)]
                assert bob.token == bob_token  # tokens are stable across restarts
            await a.stop()
            await b.stop()


async def test_status_events_on_login_logout_and_peer_bridge_stop_and_restart(
        pair, tmp_path, names):
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
            b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
            await a.wait_peer()
            async with open_client(a.app_port, name=names("alice")) as alice, \
                    open_client(a.app_port, name=names("carol")) as carol:
                async with open_client(b.app_port, name=names("bob")) as bob:
                    ev = await alice.wait_event(command=301, name=names("bob"))
                    kb = pair[1].tox_id[:64]  # every 301/302 names its bridge
                    assert ev == {"command": 301, "side": "peer", "token": bob.token,
                                  "name": names("bob"), "bridge": kb}
                    async with open_client(a.app_port, name=names("erin")) as erin:
                        ev = await bob.wait_event(command=301, name=names("erin"))
                        assert ev["side"] == "peer" and ev["token"] == erin.token
                        ev = await carol.wait_event(command=301, name=names("erin"))
                        assert ev["side"] == "local"
                    ev = await bob.wait_event(command=302, name=names("erin"))
                    assert ev["side"] == "peer"
                    await alice.wait_event(command=302, name=names("erin"))
                    assert (await carol.wait_event(command=302, name=names("erin")))["side"] \
                        == "local"
                    # The peer bridge stops: the bridge goes offline, then its users.
                    await b.stop()
                    assert await alice.next_event() == {"command": 302, "side": "peer",
                                                        "bridge": kb}
                    ev = await alice.next_event()
                    assert ev == {"command": 302, "side": "peer", "token": bob.token,
                                  "name": names("bob"), "bridge": kb}
                b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
                assert await alice.wait_event(command=301) == {"command": 301, "side": "peer",
                                                               "bridge": kb}
                async with open_client(b.app_port, name=names("bob")) as bob:
                    await alice.wait_event(command=301, name=names("bob"))
                    assert (await carol.wait_event(command=301, side="peer", name=names("bob")))
            await a.stop()
            await b.stop()


BAD_LINES = [
    (b"{not json\n", 9001),
    (b"\xff\xfe\xfd\n", 9001),
    (b"x" * (1024 * 1024 + 10) + b"\n", 9002),
    (b"[1,2,3]\n", 9003),
    (b'{"command":1234}\n', 9004),
    (b'{"command":1002,"token":"TOKEN","goaltoken":"g","type":1}\n', 9005),
    (b'{"command":1002,"token":"TOKEN","goaltoken":"g","type":"text","msg":"x"}\n', 9006),
    (b'{"command":1003,"token":"TOKEN","goaltoken":"g","limit":100000}\n', 9007),
    (b'{"command":1001,"token":"0123456789abcdef0123456789abcdef"}\n', 9009),
    (b'{"command":1000,"name":"again"}\n', 9010),
]


async def test_every_bad_input_class_gets_its_error_while_another_client_keeps_chatting(
        bridges, names):
    a, b = bridges
    with trio.fail_after(60):
        async with open_client(a.app_port, name=names("alice")) as alice, \
                open_client(b.app_port, name=names("bob")) as bob, \
                open_client(a.app_port) as mallory:
            await alice.wait_event(command=301, name=names("bob"))
            await mallory.send_line(b'{"command":1001,"token":"x"}\n')
            assert (await mallory.next_reply())["code"] == 9008  # before login
            me = await mallory.login(names("mallory"))
            for i, (line, code) in enumerate(BAD_LINES):
                await mallory.send_line(line.replace(b"TOKEN", me["token"].encode()))
                reply = await mallory.next_reply()
                assert reply["command"] == 9000 and reply["code"] == code, (line[:60], reply)
                assert isinstance(reply["message"], str) and reply["message"]
                # Meanwhile alice and bob chat as if nothing happened.
                assert (await alice.send(bob.token, f"chat {i}"))["code"] == 201
                assert (await bob.wait_event(command=2003))["msg"] == f"chat {i}"
            # mallory's connection is still usable, and acting as alice is refused.
            assert (await mallory.send(bob.token, "hello"))["code"] == 201
            with pytest.raises(BridgeError) as err:
                await mallory.request({"command": 1002, "token": alice.token,
                                       "goaltoken": bob.token, "type": 1, "msg": "forged"})
            assert err.value.code == 9009
            assert (await bob.wait_event(command=2003))["msg"] == "hello"


async def test_one_clients_flood_does_not_hold_back_another_clients_replies(bridges, names):
    """Fairness between clients (issue 18): while flood pipelines 30,000 messages to sink,
    carol's 20 request/reply round trips (to dave, on the same bridge and across Tox) are
    answered at once, long before the flood ends; replies held until the flood had been
    read (one batch for all) would come after it."""
    a, b = bridges
    count = 30_000
    with trio.fail_after(120):
        async with open_client(a.app_port, name=names("sink")) as sink, \
                open_client(a.app_port, name=names("flood")) as flood, \
                open_client(a.app_port, name=names("carol")) as carol, \
                open_client(a.app_port, name=names("dave")) as dave, \
                open_client(b.app_port, name=names("erin")) as erin:
            await carol.wait_event(command=301, name=names("erin"))
            line = json.dumps({"command": 1002, "token": flood.token, "goaltoken": sink.token,
                               "type": 1, "msg": "x" * 40}).encode() + b"\n"
            received = 0
            rtts: list[float] = []

            async def pour() -> None:  # ahead of sink by at most 5,000 (its queue: 10,000)
                for sent in range(0, count, 500):
                    while sent - received > 5_000:
                        await trio.sleep(0.001)
                    await flood.send_line(line * 500)

            async def drain() -> None:  # flood's 2002s, so its own output stays bounded
                for _ in range(count):
                    assert (await flood.next_reply())["code"] == 201

            async def sink_all() -> None:
                nonlocal received
                for _ in range(count):
                    await sink.wait_event(command=2003)
                    received += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pour)
                nursery.start_soon(drain)
                nursery.start_soon(sink_all)
                while received < 100:  # the flood is under way
                    await trio.sleep(0.005)
                for i in range(20):
                    target = dave if i % 2 else erin
                    start = trio.current_time()
                    assert (await carol.send(target.token, f"chat {i}"))["code"] == 201
                    assert (await target.wait_event(command=2003))["msg"] == f"chat {i}"
                    rtts.append(trio.current_time() - start)
                at_end = received
            assert at_end < count * 0.8, (at_end, rtts)  # served while the flood went on
            assert max(rtts) < 1.0, rtts


def test_bridge_local_runs_as_its_own_process(pair, tmp_path):
    """``python -m bridge_local`` against a running daemon: announces its app port, serves
    a client, stops cleanly on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge_local", "--bridge", f"127.0.0.1:{pair[0].port}",
         "--app-port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("app 127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.rsplit(":", 1)[1])

        async def use() -> None:
            with trio.fail_after(30):
                async with open_client(port, name="solo") as c:
                    assert [u["name"] for u in await c.users() if u["side"] == "local"] == ["solo"]

        trio.run(use)
        assert list(tmp_path.glob("bridge-*.sqlite3"))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()


async def test_terminal_chat_client_sends_and_shows_messages_and_status(bridges, names):
    a, b = bridges
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    chat = await trio.lowlevel.open_process(
        [sys.executable, "-m", "bridge_local.chat", "--name", names("alice"),
         "--app-port", str(a.app_port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = b""

    async def until(text: str) -> None:
        nonlocal out
        while text.encode() not in out:
            chunk = await chat.stdout.receive_some(65536)
            assert chunk, out.decode()
            out += chunk

    try:
        with trio.fail_after(60):
            await until("logged in")
            async with open_client(b.app_port, name=names("bob")) as bob:
                await until(f"* {names('bob')} (peer) is online")
                await chat.stdin.send_all(
                    f"/to {names('bob')}\nhello from the terminal\n".encode())
                event = await bob.wait_event(command=2003)
                assert event["msg"] == "hello from the terminal"
                await bob.send(event["srctoken"], "hi terminal")
                await until(f"{names('bob')}: hi terminal")
                await chat.stdin.send_all(b"/users\n")
                await until(f"{names('bob')} (peer)")
                await chat.stdin.send_all(f"/history {names('bob')}\n".encode())
                await until("(2 messages)")
            await until(f"* {names('bob')} (peer) is offline")
            await chat.stdin.send_all(b"/quit\n")
            assert await chat.wait() == 0, out.decode()
    finally:
        if chat.returncode is None:
            chat.kill()
        with trio.CancelScope(shield=True):
            await chat.wait()
            await chat.stdin.aclose()
            await chat.stdout.aclose()
