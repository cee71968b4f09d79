"""The bridge core, sans-IO: two cores joined by a fake daemon channel, clients as ids.

No sockets, no Tox, no clock: every step passes ``now``. What these prove is the routing,
the codes, offline delivery, the session between bridges (hello, acks, resend, dedupe),
ordering and fairness, and that bad input of every class gets its error reply."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge_local import wire
from bridge_local.core import BridgeCore, Limits
from bridge_local.protocol import LineTooLong, make_token
from bridge_local.store import Store

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
HEX_A, HEX_B = KEY_A.hex().upper(), KEY_B.hex().upper()  # 301/302 name the bridge
T0 = 1_700_000_000.0


_LIVE: list["Node"] = []  # every Node of the running test; their stores are closed after it


@pytest.fixture(autouse=True)
def _close_stores():
    yield
    while _LIVE:  # Python 3.13 warns of an unclosed sqlite3 connection
        try:
            _LIVE.pop().store.close()
        except sqlite3.ProgrammingError:  # the test closed it itself
            pass


class Node:
    """One bridge: a core on a store, with clients whose output is collected."""

    def __init__(self, key: bytes, path: Path | str = ":memory:", limits: Limits = Limits()):
        self.key, self.path, self.limits = key, path, limits
        self.store = Store(path)
        _LIVE.append(self)
        self.core = BridgeCore(self.store, key, T0, limits)
        self.inbox: dict[int, list[dict]] = {}
        self.clock = lambda: T0

    def restart(self) -> None:
        """A new core (a new process) on the same database file."""
        self.store.close()
        self.store = Store(self.path)
        self.core = BridgeCore(self.store, self.key, T0, self.limits)
        self.inbox = {}

    def connect(self, port: int = 40000) -> int:
        cid = self.core.client_connected("127.0.0.1", port)
        self.inbox[cid] = []
        return cid

    def collect(self) -> None:
        for cid in self.core.take_dirty():
            self.inbox[cid].extend(self.core.take_client_output(cid))

    def line(self, cid: int, obj) -> dict:
        """Send one request; return its reply (the last non-event output)."""
        raw = obj if isinstance(obj, (bytes, LineTooLong)) else json.dumps(obj).encode()
        self.core.client_line(cid, raw, self.clock())
        self.collect()
        replies = [o for o in self.inbox[cid] if o["command"] not in (2003, 301, 302)]
        return replies[-1]

    def login(self, name: str, port: int = 40000) -> tuple[int, str]:
        cid = self.connect(port)
        reply = self.line(cid, {"command": 1000, "name": name})
        assert reply["command"] == 2000
        return cid, reply["token"]

    def send(self, cid: int, token: str, goal: str, msg: str, **extra) -> dict:
        return self.line(cid, {"command": 1002, "token": token, "goaltoken": goal, "type": 1,
                               "msg": msg, **extra})

    def events(self, cid: int, command: int | None = None) -> list[dict]:
        out = [o for o in self.inbox[cid] if o["command"] in (2003, 301, 302)]
        return [o for o in out if command is None or o["command"] == command]

    def texts(self, cid: int) -> list[str]:
        return [o["msg"] for o in self.events(cid, 2003)]


class Net:
    """Two bridges and the daemons' channel between them (a reliable ordered pipe)."""

    def __init__(self, a: Node, b: Node) -> None:
        self.a, self.b, self.now = a, b, T0
        a.clock = b.clock = lambda: self.now
        self.drop_ab = self.drop_ba = False

    def up(self) -> None:
        for n in (self.a, self.b):
            n.core.daemon_connected(self.now)
            n.core.daemon_event({"event": "ready", "tox_id": n.key.hex()}, self.now)
            n.core.daemon_event({"event": "peer", "code": 301}, self.now)
        self.run()

    def link(self, code: int) -> None:
        for n in (self.a, self.b):
            n.core.daemon_event({"event": "peer", "code": code}, self.now)
        self.run()

    def run(self, limit: int = 100_000) -> int:
        """Move frames both ways until quiet; returns the number moved."""
        moved = 0
        while moved < limit:
            fa = self.a.core.take_frames(64)
            fb = self.b.core.take_frames(64)
            if not fa and not fb:
                break
            for f in fa:
                if not self.drop_ab:
                    self.b.core.daemon_data(f, self.now)
            for f in fb:
                if not self.drop_ba:
                    self.a.core.daemon_data(f, self.now)
            moved += len(fa) + len(fb)
        self.a.collect()
        self.b.collect()
        return moved


@pytest.fixture
def net() -> Net:
    n = Net(Node(KEY_A), Node(KEY_B))
    n.up()
    return n


# --------------------------------------------------------------------------- login, users


def test_login_reply_has_the_derived_token_and_the_client_address(net: Net) -> None:
    cid = net.a.connect(port=41234)
    reply = net.a.line(cid, {"command": 1000, "name": "alice"})
    assert reply == {"command": 2000, "token": make_token(KEY_A, "alice"), "name": "alice",
                     "ip": "127.0.0.1", "port": 41234, "side": "local"}


def test_users_lists_both_bridges_and_logins_are_announced_on_both(net: Net) -> None:
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    assert net.a.events(a1) == [{"command": 301, "side": "peer", "token": tb, "name": "bob",
                                 "bridge": HEX_B}]
    users = net.a.line(a1, {"command": 1001, "token": ta})["users"]
    assert [(u["name"], u["side"]) for u in users] == [("alice", "local"), ("bob", "peer")]
    users = net.b.line(b1, {"command": 1001, "token": tb})["users"]
    assert [(u["name"], u["side"]) for u in users] == [("bob", "local"), ("alice", "peer")]
    a2, _ = net.a.login("carol")
    net.run()
    assert net.a.events(a1)[-1] == {"command": 301, "side": "local", "bridge": HEX_A,
                                    "token": make_token(KEY_A, "carol"), "name": "carol"}
    assert net.b.events(b1)[-1]["name"] == "carol" and net.b.events(b1)[-1]["side"] == "peer"
    assert net.a.events(a2) == []  # one's own login is not announced to oneself
    net.a.core.client_disconnected(a2, net.now)
    net.run()
    assert net.a.events(a1)[-1]["command"] == 302 and net.a.events(a1)[-1]["name"] == "carol"
    assert net.b.events(b1)[-1]["command"] == 302 and net.b.events(b1)[-1]["side"] == "peer"


def test_peer_bridge_online_offline_events_name_the_bridge_then_its_users(net: Net) -> None:
    a1, _ = net.a.login("alice")
    net.b.login("bob")
    net.run()
    net.a.inbox[a1].clear()
    net.link(302)
    assert net.a.events(a1) == [{"command": 302, "side": "peer", "bridge": HEX_B},
                                {"command": 302, "side": "peer", "bridge": HEX_B,
                                 "token": make_token(KEY_B, "bob"), "name": "bob"}]
    net.a.inbox[a1].clear()
    net.link(301)
    assert net.a.events(a1) == [{"command": 301, "side": "peer", "bridge": HEX_B},
                                {"command": 301, "side": "peer", "bridge": HEX_B,
                                 "token": make_token(KEY_B, "bob"), "name": "bob"}]


# --------------------------------------------------------------------------- messages


def test_message_to_a_local_user_is_201_and_2003_has_every_field(net: Net) -> None:
    a1, ta = net.a.login("alice", port=1111)
    a2, tc = net.a.login("carol")
    assert net.a.send(a1, ta, tc, "hi", ) == {"command": 2002, "result": True, "code": 201}
    [event] = net.a.events(a2, 2003)
    assert set(event) == {"command", "srctoken", "goaltoken", "name", "time", "ip", "port",
                          "type", "msg"}
    assert (event["srctoken"], event["goaltoken"], event["name"], event["ip"], event["port"],
            event["type"], event["msg"]) == (ta, tc, "alice", "127.0.0.1", 1111, 1, "hi")


def test_message_across_bridges_is_201_and_history_is_identical_on_both(net: Net) -> None:
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    md5 = "9e107d9d372bb6826bd81d3542a419d6"
    assert net.a.send(a1, ta, tb, "hello bob")["code"] == 201
    net.now += 1
    assert net.b.send(b1, tb, ta, "hi alice")["code"] == 201
    net.now += 1
    assert net.a.send(a1, ta, tb, "report", type=2, filename="r.pdf", filesize=10, md5=md5,
                      fileid="f1")["code"] == 201
    net.run()
    assert net.b.texts(b1) == ["hello bob", "report"]
    assert net.a.texts(a1) == ["hi alice"]
    file_event = net.b.events(b1, 2003)[1]
    assert (file_event["filename"], file_event["filesize"], file_event["md5"],
            file_event["fileid"], file_event["type"]) == ("r.pdf", 10, md5, "f1", 2)
    ha = net.a.line(a1, {"command": 1003, "token": ta, "goaltoken": tb})
    hb = net.b.line(b1, {"command": 1003, "token": tb, "goaltoken": ta})
    assert ha == hb
    assert [m["msg"] for m in ha["messages"]] == ["hello bob", "hi alice", "report"]


def test_unknown_target_is_202(net: Net) -> None:
    a1, ta = net.a.login("alice")
    assert net.a.send(a1, ta, "f" * 32, "x") == {"command": 2002, "result": False, "code": 202}


def test_offline_local_user_gets_204_then_everything_in_order_at_login(net: Net) -> None:
    a1, ta = net.a.login("alice")
    a2, tc = net.a.login("carol")
    net.a.core.client_disconnected(a2, net.now)
    for i in range(5):
        assert net.a.send(a1, ta, tc, f"m{i}") == {"command": 2002, "result": True, "code": 204}
    a3, _ = net.a.login("carol")
    assert net.a.texts(a3) == [f"m{i}" for i in range(5)]
    net.a.core.client_disconnected(a3, net.now)
    a4, _ = net.a.login("carol")
    assert net.a.texts(a4) == []  # delivered once


def test_offline_peer_user_gets_204_and_delivery_at_next_login(net: Net) -> None:
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    net.b.core.client_disconnected(b1, net.now)
    net.run()
    for i in range(3):
        assert net.a.send(a1, ta, tb, f"m{i}")["code"] == 204
    net.run()
    b2, _ = net.b.login("bob")
    assert net.b.texts(b2) == ["m0", "m1", "m2"]


def test_queue_survives_a_restart_of_the_bridge_holding_it(tmp_path: Path) -> None:
    net = Net(Node(KEY_A, tmp_path / "a.db"), Node(KEY_B, tmp_path / "b.db"))
    net.up()
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    net.b.core.client_disconnected(b1, net.now)
    net.run()
    for i in range(3):
        assert net.a.send(a1, ta, tb, f"m{i}")["code"] == 204
    net.run()  # now in b's local outbox
    net.b.restart()
    net.up()
    b2, _ = net.b.login("bob")
    assert net.b.texts(b2) == ["m0", "m1", "m2"]


def test_peer_outbox_survives_sender_restart_while_the_peer_is_down(tmp_path: Path) -> None:
    net = Net(Node(KEY_A, tmp_path / "a.db"), Node(KEY_B, tmp_path / "b.db"))
    net.up()
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    net.link(302)
    for i in range(4):
        assert net.a.send(a1, ta, tb, f"m{i}")["code"] == 204
    net.a.restart()  # the queue is in a's peer outbox, on disk
    net.up()
    assert net.b.texts(b1) == ["m0", "m1", "m2", "m3"]
    assert net.a.store.statistics()["peer_outbox"] == 0  # acknowledged


def test_lost_acks_mean_a_resend_and_the_receiver_drops_the_duplicates(net: Net) -> None:
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    net.drop_ba = True  # b's acks are lost
    for i in range(3):
        net.a.send(a1, ta, tb, f"m{i}")
    net.run()
    assert net.a.store.statistics()["peer_outbox"] == 3
    net.drop_ba = False
    net.link(302)
    net.link(301)  # a new session: a resends all three
    assert net.b.texts(b1) == ["m0", "m1", "m2"]
    assert net.b.core.stats["duplicates"] == 3
    assert net.a.store.statistics()["peer_outbox"] == 0


def test_a_big_message_does_not_hold_up_another_pairs_chat_but_keeps_its_own_order(
        net: Net) -> None:
    a1, ta = net.a.login("alice")
    a2, tc = net.a.login("carol")
    b1, tb = net.b.login("bob")
    net.run()
    order: list[str] = []
    net.a.send(a1, ta, tb, "B" * 300_000)  # 300 fragments
    net.a.send(a1, ta, tb, "after-big")  # same pair: must wait for the big one
    net.a.send(a2, tc, tb, "carol-small")  # another pair: overtakes
    frames = 0
    while frames < 2000:
        out = net.a.core.take_frames(1)
        if not out:
            break
        frames += 1
        net.b.core.daemon_data(out[0], net.now)
        net.b.collect()
        for m in net.b.texts(b1):
            if m[:5] not in [o[:5] for o in order]:
                order.append(m)
                if m == "carol-small":
                    assert frames <= 3
    assert [m[:5] for m in order] == ["carol", "BBBBB", "after"]


def test_history_limit_and_before_page_back_oldest_first(net: Net) -> None:
    a1, ta = net.a.login("alice")
    a2, tc = net.a.login("carol")
    for i in range(10):
        net.now += 1
        net.a.send(a1, ta, tc, f"m{i}") if i % 2 == 0 else net.a.send(a2, tc, ta, f"m{i}")
    page = net.a.line(a1, {"command": 1003, "token": ta, "goaltoken": tc, "limit": 4})["messages"]
    assert [m["msg"] for m in page] == ["m6", "m7", "m8", "m9"]
    older = net.a.line(a1, {"command": 1003, "token": ta, "goaltoken": tc, "limit": 4,
                            "before": page[0]["time"]})["messages"]
    assert [m["msg"] for m in older] == ["m2", "m3", "m4", "m5"]
    full = net.a.line(a1, {"command": 1003, "token": ta, "goaltoken": tc})["messages"]
    assert len(full) == 10 and all(x["time"] < y["time"] for x, y in zip(full, full[1:]))


# --------------------------------------------------------------------------- bad input

BAD_INPUT = [
    # (line, logged in, code)
    (b"{not json", True, 9001),
    (b"\xff\xfe", True, 9001),
    (b'{"command": NaN}', True, 9001),
    (LineTooLong(1024 * 1024), True, 9002),
    (b"[1, 2]", True, 9003),
    (b'"text"', True, 9003),
    (b'{"command": 1234}', True, 9004),
    (b'{"command": 2003}', True, 9004),
    (b'{"name": "x"}', True, 9005),
    (b'{"command": 1001}', True, 9005),
    (b'{"command": 1002, "token": "T", "goaltoken": "g", "type": 1}', True, 9005),
    (b'{"command": "1000", "name": "x"}', True, 9006),
    (b'{"command": 1002, "token": "T", "goaltoken": "g", "type": "1", "msg": ""}', True, 9006),
    (b'{"command": 1002, "token": "T", "goaltoken": "g", "type": 1.0, "msg": ""}', True, 9006),
    (b'{"command": 1000, "name": ""}', False, 9007),
    (b'{"command": 1000, "name": "a\\u0000b"}', False, 9007),
    (b'{"command": 1003, "token": "T", "goaltoken": "g", "limit": 0}', True, 9007),
    (b'{"command": 1001, "token": "T"}', False, 9008),
    (b'{"command": 1001, "token": "someone-else"}', True, 9009),
    (b'{"command": 1002, "token": "someone-else", "goaltoken": "g", "type": 1, "msg": "x"}',
     True, 9009),
    (b'{"command": 1000, "name": "again"}', True, 9010),
    (b'{"command": 4001, "fileid": "f", "taskid": 1, "type": 1, "token": "T"}', True, 9011),
]


@pytest.mark.parametrize(("line", "logged_in", "code"), BAD_INPUT)
def test_every_bad_input_class_gets_its_error_and_the_connection_stays_usable(
        net: Net, line, logged_in: bool, code: int) -> None:
    other, to = net.a.login("other")
    cid = net.a.connect()
    token = None
    if logged_in:
        token = net.a.line(cid, {"command": 1000, "name": "me"})["token"]
        if isinstance(line, bytes):
            line = line.replace(b'"T"', json.dumps(token).encode())
    before = len(net.a.inbox[other])
    reply = net.a.line(cid, line)
    assert reply["command"] == 9000 and reply["code"] == code and reply["message"]
    # Still usable, and the other client saw nothing of it.
    if token is None:
        token = net.a.line(cid, {"command": 1000, "name": "me"})["token"]
    assert net.a.send(cid, token, to, "still here")["code"] == 201
    assert [o["msg"] for o in net.a.inbox[other][before:] if o["command"] == 2003] == ["still here"]


def test_a_client_that_does_not_read_is_closed_and_others_are_not(net: Net) -> None:
    small = Node(KEY_A, limits=Limits(client_queue=20))
    small.core.daemon_connected(T0)
    lazy, tl = small.login("lazy")
    busy, tb = small.login("busy")
    small.core.take_dirty()  # lazy's output is never taken
    for i in range(25):
        small.core.client_line(busy, json.dumps({"command": 1002, "token": tb, "goaltoken": tl,
                                                 "type": 1, "msg": str(i)}).encode(), T0)
        small.inbox[busy].extend(small.core.take_client_output(busy))
    assert small.core.take_closing() == {lazy}
    small.core.client_disconnected(lazy, T0)
    lazy2, _ = small.login("lazy")  # nothing lost: not taken means still queued
    assert small.texts(lazy2)[:3] == ["0", "1", "2"] and len(small.texts(lazy2)) == 25


# --------------------------------------------------------------------------- peer protocol


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=1100), max_size=20))
def test_garbage_from_the_peer_is_a_notice_never_a_crash(frames: list[bytes]) -> None:
    node = Node(KEY_A)
    node.core.daemon_connected(T0)
    node.core.daemon_event({"event": "peer", "code": 301}, T0)
    for f in frames:
        node.core.daemon_data(f, T0)
    node.core.take_frames()


def test_peer_bridge_that_goes_silent_is_declared_offline(net: Net) -> None:
    a1, _ = net.a.login("alice")
    net.b.login("bob")
    net.run()
    for step in range(1, 4):  # pings keep it alive
        net.now += 5
        net.a.core.tick(net.now)
        net.b.core.tick(net.now)
        net.run()
    assert net.a.core.peer_up
    net.drop_ba = True
    net.now += net.a.core.limits.peer_timeout + 1
    net.a.core.tick(net.now)
    net.a.collect()
    assert not net.a.core.peer_up
    assert net.a.events(a1)[-2:][0] == {"command": 302, "side": "peer", "bridge": HEX_B}


def test_bye_takes_the_peer_bridge_offline_at_once(net: Net) -> None:
    a1, _ = net.a.login("alice")
    net.b.core.shutdown()
    net.run()
    assert not net.a.core.peer_up
    assert net.a.events(a1)[-1] == {"command": 302, "side": "peer", "bridge": HEX_B}


def test_a_restarted_peer_bridge_is_seen_offline_then_online(tmp_path: Path) -> None:
    net = Net(Node(KEY_A), Node(KEY_B, tmp_path / "b.db"))
    net.up()
    a1, _ = net.a.login("alice")
    net.run()
    net.a.inbox[a1].clear()
    net.b.restart()  # crashed: no bye; its new hello carries a new session
    net.up()
    assert net.a.events(a1)[:2] == [{"command": 302, "side": "peer", "bridge": HEX_B},
                                    {"command": 301, "side": "peer", "bridge": HEX_B}]


def test_wire_commands_round_trip() -> None:
    from bridge_local.protocol import ChatMessage, User
    u = User("t" * 32, "bob", "127.0.0.1", 5, "peer")
    m = ChatMessage("a", "b", "n", 1.5, "127.0.0.1", 2, 1, "x")
    assert wire.decode(wire.encode_user_on(u)) == wire.UserOn(u)
    assert wire.decode(wire.encode_user_off("t")) == wire.UserOff("t")
    assert wire.decode(wire.encode_msg(b"i" * 16, m)) == wire.Msg(b"i" * 16, m)
    assert wire.decode(wire.encode_ack([b"i" * 16])) == wire.Ack((b"i" * 16,))
    assert wire.decode(wire.encode_hello(True, b"s" * 16, KEY_A, [u], [("t", "bob")])) == \
        wire.Hello(True, b"s" * 16, KEY_A, (u,), (("t", "bob"),))
    assert wire.decode(wire.encode_ping()) == wire.Ping()
    assert wire.decode(wire.encode_bye()) == wire.Bye()


# --------------------------------------------------------------------------- property


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["send", "send", "send", "drop", "flap", "restart_a",
                                           "restart_b", "logout", "login"]),
                          st.integers(0, 3), st.integers(0, 3)), max_size=40),
       st.integers(0, 2**32))
@example(ops=[("drop", 0, 0), ("send", 2, 0), ("drop", 0, 0), ("send", 2, 0)], seed=9)
def test_every_message_arrives_exactly_once_in_order_per_pair(tmp_path_factory, ops, seed):
    """Whatever the drops, link flaps, restarts and logouts: each accepted message reaches
    its target exactly once, and the messages of one pair in the order they were sent."""
    rng = random.Random(seed)
    d = tmp_path_factory.mktemp("prop")
    net = Net(Node(KEY_A, d / "a.db"), Node(KEY_B, d / "b.db"))
    net.up()
    names = ["a0", "a1", "b0", "b1"]  # a* on bridge a, b* on bridge b
    node = {n: (net.a if n[0] == "a" else net.b) for n in names}
    token = {n: make_token(KEY_A if n[0] == "a" else KEY_B, n) for n in names}
    cid = {n: node[n].login(n)[0] for n in names}
    got: dict[str, list[str]] = {n: [] for n in names}
    online = set(names)
    net.run()
    sent: dict[tuple[str, str], list[str]] = {}

    def harvest(n: str) -> None:
        if n in online:
            got[n] += [m for m in node[n].texts(cid[n])]
            node[n].inbox[cid[n]].clear()

    for k, (op, i, j) in enumerate(ops):
        src, dst = names[i], names[j]
        if op == "send" and src in online:
            text = f"{src}>{dst}#{k}"
            reply = node[src].send(cid[src], token[src], token[dst], text)
            assert reply["code"] in (201, 204)
            sent.setdefault((src, dst), []).append(text)
        elif op == "drop":
            # The daemons' channel is ordered and reliable while it is up: what it loses
            # is everything from some frame on, until the link event that starts a new
            # session. So a drop starts here and ends only at a flap or a restart (an
            # earlier model also ended it silently mid-session, which no ordered channel
            # does: a message lost before one delivered came back after it, seed 9 below).
            net.drop_ab = net.drop_ab or rng.random() < 0.5
            net.drop_ba = net.drop_ba or rng.random() < 0.5
        elif op == "flap":
            net.drop_ab = net.drop_ba = False
            net.link(302)
            net.link(301)
        elif op in ("restart_a", "restart_b"):
            n = net.a if op == "restart_a" else net.b
            for u in names:
                if node[u] is n and u in online:
                    harvest(u)
                    online.discard(u)
            n.restart()
            net.drop_ab = net.drop_ba = False
            net.up()
        elif op == "logout" and src in online:
            harvest(src)
            node[src].core.client_disconnected(cid[src], net.now)
            online.discard(src)
        elif op == "login" and src not in online:
            cid[src] = node[src].login(src)[0]
            online.add(src)
        net.run()
        for n in names:
            harvest(n)
    # Heal everything and let it settle.
    net.drop_ab = net.drop_ba = False
    net.link(302)
    net.link(301)
    for n in names:
        if n not in online:
            cid[n] = node[n].login(n)[0]
            online.add(n)
    net.run()
    for n in names:
        harvest(n)
    for dst in names:
        received = got[dst]
        assert len(received) == len(set(received)), f"{dst} got duplicates"
        expected = [t for (s, d), ts in sent.items() if d == dst for t in ts]
        assert sorted(received) == sorted(expected)
        for src in names:
            mine = [t for t in received if t.startswith(f"{src}>")]
            assert mine == sent.get((src, dst), [])


def test_a_login_before_the_session_is_up_is_still_announced(net: Net) -> None:
    a1, _ = net.a.login("alice")
    net.run()
    net.b.restart()  # b's hello goes out at once; bob logs in before a's answer comes back
    net.b.core.daemon_connected(net.now)
    net.b.core.daemon_event({"event": "peer", "code": 301}, net.now)
    assert not net.b.core.peer_up
    b1, tb = net.b.login("bob")
    net.run()
    assert net.b.core.peer_up
    assert {"command": 301, "side": "peer", "token": tb, "name": "bob",
            "bridge": HEX_B} in net.a.events(a1)
    assert [u["name"] for u in net.a.line(a1, {"command": 1001, "token": net.a.core.users()[0].token})["users"]] == ["alice", "bob"]


def _feed(node: Node, packed: bytes) -> None:
    """Hand one bridge command to ``node`` as the peer bridge would send it."""
    from toxbridge.fragment import Fragmenter
    frag = Fragmenter()
    frag.send(packed)
    while (frame := frag.next_frame()) is not None:
        node.core.daemon_data(frame, T0)


def _hello(users: list[dict]) -> bytes:
    from toxbridge.fragment import pack_message
    return pack_message({"t": "hello", "v": wire.VERSION, "reply": False, "session": b"s" * 16,
                         "key": KEY_B, "users": users, "known": []})


def test_a_hello_listing_more_users_than_the_cap_is_refused_with_a_notice() -> None:
    node = Node(KEY_A)
    node.core.daemon_connected(T0)
    node.core.daemon_event({"event": "peer", "code": 301}, T0)
    users = [{"token": f"t{i}", "name": f"u{i}", "ip": "127.0.0.1", "port": 1}
             for i in range(wire.MAX_USERS + 1)]
    _feed(node, _hello(users))
    notices = node.core.take_notices()
    assert any(f"at most {wire.MAX_USERS}" in n for n in notices), notices
    assert not node.core.peer_up and node.core.peer_users == {}
    assert node.core.stats["peer_errors"] == 1
    _feed(node, _hello(users[:wire.MAX_USERS]))  # at the cap: accepted
    assert node.core.peer_up and len(node.core.peer_users) == wire.MAX_USERS


def test_our_hello_never_lists_more_than_the_cap() -> None:
    from bridge_local.protocol import User
    users = [User(f"t{i}", f"u{i}", "127.0.0.1", 1) for i in range(wire.MAX_USERS + 5)]
    hello = wire.decode(wire.encode_hello(False, b"s" * 16, KEY_A, users, []))
    assert isinstance(hello, wire.Hello) and len(hello.users) == wire.MAX_USERS


def test_user_on_beyond_the_cap_is_ignored_with_a_notice(net: Net, monkeypatch) -> None:
    monkeypatch.setattr(wire, "MAX_USERS", 2)
    a1, _ = net.a.login("alice")
    for name in ("b1", "b2", "b3"):
        net.b.login(name)
    net.run()
    assert sorted(u.name for u in net.a.core.peer_users.values()) == ["b1", "b2"]
    assert any("more than 2 online users" in n for n in net.a.core.take_notices())
    assert [e["name"] for e in net.a.events(a1, 301) if "name" in e] == ["b1", "b2"]


def test_a_message_cut_by_a_new_session_is_resent_whole_with_no_orphan_fragments(net: Net) -> None:
    """A link drop in the middle of a 300-fragment message: the new session's hello resets
    the peer's reassembly, so the fragments after it must not be the old message's tail
    (they were 'missing-start' notices at the peer); the message is resent whole, once."""
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    net.a.send(a1, ta, tb, "B" * 300_000)
    for _ in range(100):  # a third of it crosses
        [frame] = net.a.core.take_frames(1)
        net.b.core.daemon_data(frame, net.now)
    for code in (302, 301):  # the channel is full meanwhile: nothing moves until it is back
        for n in (net.a, net.b):
            n.core.daemon_event({"event": "peer", "code": code}, net.now)
    net.run()
    assert net.b.texts(b1) == ["B" * 300_000]
    assert net.b.core.take_notices() == [] and net.b.core.stats["peer_errors"] == 0
    assert net.a.store.statistics()["peer_outbox"] == 0


def test_resent_copies_within_one_read_are_delivered_once_and_all_acked(net: Net) -> None:
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    from bridge_local.protocol import ChatMessage
    msg = ChatMessage(ta, tb, "alice", T0, "127.0.0.1", 1, 1, "once")
    packed = wire.encode_msg(b"\x07" * 16, msg)
    for _ in range(3):  # one daemon read: the copies are handled together
        _feed(net.b, packed)
    net.b.collect()
    assert net.b.texts(b1) == ["once"]
    assert net.b.core.stats["duplicates"] == 2
    acks = [wire.decode(f) for f in _reassemble(net.b.core.take_frames(64))]
    assert [i for a in acks if isinstance(a, wire.Ack) for i in a.ids] == [b"\x07" * 16] * 3
    _feed(net.b, packed)  # a later resend: found in the table
    net.b.collect()
    assert net.b.texts(b1) == ["once"] and net.b.core.stats["duplicates"] == 3


def test_messages_before_a_bye_reach_the_client_before_the_peer_goes_offline(net: Net) -> None:
    a1, ta = net.a.login("alice")
    b1, tb = net.b.login("bob")
    net.run()
    net.b.inbox[b1].clear()
    from bridge_local.protocol import ChatMessage
    for i in range(3):
        msg = ChatMessage(ta, tb, "alice", T0 + i, "127.0.0.1", 1, 1, f"m{i}")
        _feed(net.b, wire.encode_msg(bytes([i + 1]) * 16, msg))
    _feed(net.b, wire.encode_bye())
    net.b.collect()
    kinds = [(o["command"], o.get("msg", o.get("token"))) for o in net.b.inbox[b1]]
    assert kinds[:3] == [(2003, "m0"), (2003, "m1"), (2003, "m2")]
    assert (302, None) in kinds[3:] and (302, ta) in kinds[3:]


def _reassemble(frames: list[bytes]) -> list[bytes]:
    from toxbridge.fragment import Reassembler
    r = Reassembler()
    return [m.data for f in frames if (m := r.receive_frame(f, T0)) is not None]


def test_a_fragment_without_its_start_is_counted_as_a_bad_fragment() -> None:
    """What tests/test_flaps.py counts over streams (bad_fragments, asserted 0)."""
    from toxbridge.fragment import Fragmenter
    node = Node(KEY_A)
    node.core.daemon_connected(T0)
    frag = Fragmenter()
    frag.send(wire.encode_ping() * 2000)  # several fragments
    frag.next_frame()  # its start never arrives
    node.core.daemon_data(frag.next_frame(), T0)
    assert (node.core.stats["bad_fragments"], node.core.stats["peer_errors"]) == (1, 1)
    assert any("missing-start" in n for n in node.core.take_notices())


def _pings(frames: list[bytes]) -> int:
    return sum(1 for m in _reassemble(frames) if isinstance(wire.decode(m), wire.Ping))


def test_a_ping_is_answered_by_ours_when_ours_is_half_due_and_the_answer_is_not_answered(
        net: Net) -> None:
    """The session's two pings travel together (a hub's idle wakes halve), while each side
    still sends at least every ping_interval and a ping never bounces back and forth."""
    interval = net.a.core.limits.ping_interval
    net.now += interval
    net.a.core.tick(net.now)  # a's is due: a pings
    ping = net.a.core.take_frames(64)
    assert _pings(ping) == 1
    net.now += 0.01
    for f in ping:
        net.b.core.daemon_data(f, net.now)
    answer = net.b.core.take_frames(64)
    assert _pings(answer) == 1  # b's own was half due (and more): it goes now
    for f in answer:
        net.a.core.daemon_data(f, net.now)
    assert _pings(net.a.core.take_frames(64)) == 0  # a pinged just now: no answer to it
    net.now += interval / 4
    net.b.core.tick(net.now)
    assert _pings(net.b.core.take_frames(64)) == 0  # b's timer starts from its answer
    net.now += interval
    net.b.core.tick(net.now)
    assert _pings(net.b.core.take_frames(64)) == 1  # ... and still fires by itself


def test_a_ping_soon_after_ours_waits_for_our_timer(net: Net) -> None:
    interval = net.a.core.limits.ping_interval
    net.now += interval
    net.a.core.tick(net.now)
    net.b.core.tick(net.now)  # both due at once: both ping on their own
    fa, fb = net.a.core.take_frames(64), net.b.core.take_frames(64)
    assert _pings(fa) == _pings(fb) == 1
    net.now += interval / 4  # each side's ping reaches the other well before half due
    for f in fa:
        net.b.core.daemon_data(f, net.now)
    for f in fb:
        net.a.core.daemon_data(f, net.now)
    assert _pings(net.a.core.take_frames(64)) == _pings(net.b.core.take_frames(64)) == 0
