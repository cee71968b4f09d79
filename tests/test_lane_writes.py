"""What bridge_local's lane writers take per write (sans-IO cores, real stores, no
sockets): the interactive lane's byte budget per turn, and acks that may wait for a frame
to ride with (bridge_local.peerlinks; issue 18)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bridge_local.core import BULK, CHAT, BridgeCore
from bridge_local.peerlinks import CHAT_WRITE_BYTES, FRAMES_PER_WRITE, PeerLinks
from bridge_local.store import Store

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
T0 = 1_700_000_000.0


class Bridge:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.store = Store(":memory:")
        self.core = BridgeCore(self.store, key, T0)

    def up(self, other: bytes) -> None:
        self.core.peer_online(other, True, T0)
        for lane in (CHAT, BULK):
            self.core.lane_accepted(other, lane, T0)
            self.core.lane_opened(other, lane, T0)

    def login(self, name: str) -> tuple[int, str]:
        cid = self.core.client_connected("127.0.0.1", 1)
        self.core.client_line(cid, json.dumps({"command": 1000, "name": name}).encode(), T0)
        return cid, self.core.take_client_output(cid)[0]["token"]

    def send(self, cid: int, token: str, goal: str, text: str) -> None:
        line = {"command": 1002, "token": token, "goaltoken": goal, "type": 1, "msg": text}
        self.core.client_line(cid, json.dumps(line).encode(), T0)


def move(x: Bridge, y: Bridge, lane: int = CHAT) -> list[bytes]:
    frames = x.core.take_lane_frames(y.key, lane, 10_000)
    for f in frames:
        y.core.lane_data(x.key, lane, f, T0)
    return frames


@pytest.fixture
def pair():
    a, b = Bridge(KEY_A), Bridge(KEY_B)
    a.up(KEY_B)
    b.up(KEY_A)
    for _ in range(20):  # hellos and the users' announcements, until quiet
        if not (move(a, b) + move(b, a)):
            break
    yield a, b
    for x in (a, b):
        try:
            x.store.close()
        except sqlite3.ProgrammingError:
            pass


def test_only_acks_waiting_is_said_and_an_answer_takes_the_ack_with_it(pair) -> None:
    a, b = pair
    ca, ta = a.login("alice")
    cb, tb = b.login("bob")
    for _ in range(5):
        move(a, b)
        move(b, a)
    assert not b.core.lane_acks_only(KEY_A, CHAT)
    a.send(ca, ta, tb, "ping")
    assert not a.core.lane_acks_only(KEY_B, CHAT)  # the message itself waits
    assert move(a, b)
    b.core.take_client_output(cb)
    assert b.core.lane_acks_only(KEY_A, CHAT)  # stored, and its ack alone waits
    assert not b.core.lane_acks_only(KEY_A, BULK)
    b.send(cb, tb, ta, "pong")
    assert not b.core.lane_acks_only(KEY_A, CHAT)
    frames = move(b, a)
    assert len(frames) == 2  # the ack and the answer in one take
    assert a.store.statistics()["peer_outbox"] == 0  # the ack arrived: the row is gone
    assert [o["msg"] for o in a.core.take_client_output(ca) if o["command"] == 2003] == ["pong"]


def test_the_interactive_lane_takes_up_to_its_byte_budget_per_write_in_order(pair) -> None:
    a, b = pair
    ca, ta = a.login("alice")
    cb, tb = b.login("bob")
    for _ in range(5):
        move(a, b)
        move(b, a)
    for i in range(2000):
        a.send(ca, ta, tb, f"m{i}")
    links = PeerLinks("/nonexistent/streams.sock", a.core, lambda: None)
    first = links._take(KEY_B, CHAT)
    size = sum(map(len, first))
    assert len(first) > FRAMES_PER_WRITE
    assert CHAT_WRITE_BYTES <= size < CHAT_WRITE_BYTES + FRAMES_PER_WRITE * 1100
    rest = []
    while more := links._take(KEY_B, CHAT):
        rest += more
    for f in first + rest:  # every message once, in order
        b.core.lane_data(KEY_A, CHAT, f, T0)
    texts = [o["msg"] for o in b.core.take_client_output(cb) if o["command"] == 2003]
    assert texts == [f"m{i}" for i in range(2000)]
