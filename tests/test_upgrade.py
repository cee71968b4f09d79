"""An upgrade from the one-peer channel era (before many peers) to peer bridges over
streams, sans-IO: two bridges whose databases and file stores were written the old way
(no peer column in the peer outbox, peer users without a bridge, ``outgoing.json`` of bare
fileids, a partial file from ``{"peer": 1}``) come up as a core each, joined by fake lanes.

Proved here: the old peer's first hello adopts what the old era left for it (only what its
key's tokens name), and then every queued message and every file is delivered, the partial
file resumed; a row for another bridge's user stays; the adoption survives a restart."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from bridge_local import wire
from bridge_local.core import BULK, CHAT, BridgeCore
from bridge_local.fileservice import FileService
from bridge_local.filestore import FileStore
from bridge_local.protocol import ChatMessage, make_token
from bridge_local.store import Store, store_path

KEY_A, KEY_B, KEY_C = bytes(range(32)), bytes(range(100, 132)), bytes(range(200, 232))
T0 = 1_700_000_000.0
CHUNK = 64 * 1024

# The schema as the one-peer era wrote it (bridge_local/store.py before issue 14).
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS users (
    token TEXT PRIMARY KEY, name TEXT NOT NULL, side TEXT NOT NULL, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id BLOB PRIMARY KEY, src TEXT NOT NULL, goal TEXT NOT NULL, time REAL NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_pair ON messages (src, goal, time);
CREATE TABLE IF NOT EXISTS local_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL, goal TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS local_outbox_goal ON local_outbox (goal, seq);
CREATE TABLE IF NOT EXISTS peer_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL UNIQUE, pair TEXT NOT NULL,
    payload BLOB NOT NULL);
"""


def old_bridge(data_dir: Path, key: bytes, me: str, peer_users: dict[str, bytes],
               queued: list[tuple[str, str]], files: dict[str, bytes], outgoing: list[str],
               partial: tuple[str, bytes] | None = None) -> Path:
    """A bridge's database and file store as the one-peer era left them. ``peer_users``:
    name -> the key of its bridge; ``queued``: (target name, text) in the peer outbox;
    ``files``: complete files; ``partial``: a file half received from the peer."""
    path = store_path(data_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    mine = make_token(key, me)
    db.execute("INSERT INTO users VALUES (?, ?, 'local', ?)", (mine, me, T0))
    for name, bridge in peer_users.items():
        db.execute("INSERT INTO users VALUES (?, ?, 'peer', ?)", (make_token(bridge, name), name, T0))
    for i, (name, text) in enumerate(queued):
        goal = make_token(peer_users[name], name)
        m = ChatMessage(mine, goal, me, T0 + i, "127.0.0.1", 1, 1, text)
        mid = i.to_bytes(8, "big") + os.urandom(8)
        db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                   (mid, mine, goal, m.time, json.dumps(m.to_dict())))
        db.execute("INSERT INTO peer_outbox (id, pair, payload) VALUES (?, ?, ?)",
                   (mid, f"{mine} {goal}", wire.encode_msg(mid, m)))
    db.commit()
    db.close()
    fs = FileStore(path.with_suffix(".files"))
    for fileid, data in files.items():
        with fs.open_partial(fileid, len(data), _md5(data), chunk_size=CHUNK) as p:
            for i in range(0, len(data), CHUNK):
                p.write_chunk(i // CHUNK, data[i:i + CHUNK])
            p.finish()
    if partial is not None:
        fileid, data = partial
        with fs.open_partial(fileid, len(data), _md5(data), chunk_size=CHUNK,
                             meta={"peer": 1}) as p:
            p.write_chunk(0, data[:CHUNK])
    (path.with_suffix(".files") / "outgoing.json").write_text(json.dumps(outgoing))
    return path


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Bridge:
    def __init__(self, path: Path, key: bytes) -> None:
        self.path, self.key = path, key
        self.open()

    def open(self) -> None:
        self.store = Store(self.path)
        self.files = FileService(self.path.with_suffix(".files"))
        self.core = BridgeCore(self.store, self.key, T0, files=self.files)

    def close(self) -> None:
        self.store.close()

    def up(self, other: bytes, now: float) -> None:
        """The daemon says ``other`` is online; both lanes open both ways."""
        self.core.peer_online(other, True, now)
        for lane in (CHAT, BULK):
            self.core.lane_accepted(other, lane, now)
            self.core.lane_opened(other, lane, now)

    def login(self, name: str, now: float) -> list[dict]:
        cid = self.core.client_connected("127.0.0.1", 1)
        self.core.client_line(cid, json.dumps({"command": 1000, "name": name}).encode(), now)
        return self.core.take_client_output(cid)


def run(a: Bridge, b: Bridge, now: float, rounds: int = 3000) -> float:
    """Move frames both ways until nothing moves for a while (bounded)."""
    idle = 0
    for _ in range(rounds):
        moved = 0
        for x, y in ((a, b), (b, a)):
            for lane in (CHAT, BULK):
                for frame in x.core.take_lane_frames(y.key, lane):
                    y.core.lane_data(x.key, lane, frame, now)
                    moved += 1
        now += 0.01
        a.core.tick(now)
        b.core.tick(now)
        idle = 0 if moved else idle + 1
        if idle > 100:
            return now
    raise AssertionError("still moving after every round")


def test_an_old_database_and_file_store_are_delivered_after_the_upgrade(tmp_path: Path) -> None:
    f1, f2 = os.urandom(3 * CHUNK + 5), os.urandom(2 * CHUNK + 7)
    pa = old_bridge(tmp_path / "a", KEY_A, "alice", {"bob": KEY_B, "dave": KEY_C},
                    [("bob", f"a{i}") for i in range(3)] + [("dave", "d0")],
                    {"f1": f1}, ["f1"], partial=("f2", f2))
    pb = old_bridge(tmp_path / "b", KEY_B, "bob", {"alice": KEY_A},
                    [("alice", "b0")], {"f2": f2}, ["f2"])
    a, b = Bridge(pa, KEY_A), Bridge(pb, KEY_B)
    try:
        assert a.store.statistics()["peer_outbox"] == 4  # read through the new schema
        now = T0 + 10
        # Before any hello nothing is sent; over streams the '' rows wait for their peer.
        a.core.peer_online(KEY_B, True, now)
        assert a.core.take_lane_frames(KEY_B, CHAT) == []
        a.up(KEY_B, now)
        b.up(KEY_A, now)
        now = run(a, b, now)
        assert a.core.peer_up and b.core.peer_up
        # Every queued message once, each to its user; dave's (another bridge's) stays.
        assert [m["msg"] for m in b.login("bob", now) if m["command"] == 2003] == \
            ["a0", "a1", "a2"]
        assert [m["msg"] for m in a.login("alice", now) if m["command"] == 2003] == ["b0"]
        now = run(a, b, now)
        assert a.store.statistics()["peer_outbox"] == 1
        assert b.store.statistics()["peer_outbox"] == 0
        assert a.core.statistics()["duplicates"] == b.core.statistics()["duplicates"] == 0
        assert [r[0] for r in a.store.legacy_targets()] == [make_token(KEY_C, "dave")]
        # The files of that era: f1 sent on to b; f2 resumed at a from its partial.
        got1, got2 = b.files.store.get("f1"), a.files.store.get("f2")
        assert got1 is not None and got1.md5 == _md5(f1)
        assert got2 is not None and got2.md5 == _md5(f2)
        assert a.files.outgoing == [] and b.files.outgoing == []
        assert a.store.user_route(make_token(KEY_B, "bob")) == ("peer", KEY_B.hex().upper(),
                                                                KEY_B.hex().upper())
    finally:
        a.close()
        b.close()
    # A restart: the era's peer is remembered (partial files of {"peer": 1} resume from it).
    a.open()
    try:
        assert a.files.legacy_peer == KEY_B.hex().upper()
    finally:
        a.close()
