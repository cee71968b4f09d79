"""The bridge store's write batching (issue 18): rows wait for the commit, one commit serves
a whole batch, and nothing is acknowledged before the rows it speaks of are committed.

"Another process" is a second sqlite3 connection on the same file: in WAL mode it sees
exactly what was committed, which is what a restart after kill -9 would find."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bridge_local.core import BridgeCore
from bridge_local.protocol import ChatMessage
from bridge_local.store import Store, StoreError

KEY = bytes(range(32))
T0 = 1_700_000_000.0


def committed(path: Path, sql: str) -> int:
    """What a fresh process reading the file would count."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


def message(i: int = 0) -> ChatMessage:
    return ChatMessage("a" * 32, "b" * 32, "alice", T0 + i, "127.0.0.1", 1, 1, f"m{i}")


def login(core: BridgeCore, name: str) -> tuple[int, str]:
    cid = core.client_connected("127.0.0.1", 40000)
    core.client_line(cid, json.dumps({"command": 1000, "name": name}).encode(), T0)
    return cid, core.take_client_output(cid)[0]["token"]


def send(core: BridgeCore, cid: int, token: str, goal: str, text: str) -> None:
    line = {"command": 1002, "token": token, "goaltoken": goal, "type": 1, "msg": text}
    core.client_line(cid, json.dumps(line).encode(), T0)


def test_new_rows_are_seen_by_reads_at_once_but_by_other_processes_only_after_commit(tmp_path):
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        store.add_new_message(b"\x01" * 16, message())
        seq = store.add_local(b"\x01" * 16, "b" * 32)
        assert [m.msg for _, m in store.local_pending("b" * 32, 0, 10)] == ["m0"]
        assert committed(path, "SELECT count(*) FROM messages") == 0
        store.commit()
        assert committed(path, "SELECT count(*) FROM messages") == 1
        assert committed(path, f"SELECT count(*) FROM local_outbox WHERE seq = {seq}") == 1


def test_a_local_row_taken_before_the_commit_is_never_written(tmp_path):
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        store.add_new_message(b"\x01" * 16, message())
        seq = store.add_local(b"\x01" * 16, "b" * 32)
        store.delete_local([seq])
        store.commit()
        assert committed(path, "SELECT count(*) FROM messages") == 1
        assert committed(path, "SELECT count(*) FROM local_outbox") == 0


def test_seqs_keep_growing_across_a_reopen_even_after_the_rows_are_gone(tmp_path):
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        store.add_new_message(b"\x01" * 16, message())
        seqs = [store.add_local(b"\x01" * 16, "b" * 32) for _ in range(3)]
        peer = store.add_peer(b"\x01" * 16, "a b", b"payload")
        store.commit()
        store.delete_local(seqs)
        store.delete_peer([b"\x01" * 16])
    with Store(path) as store:
        assert store.statistics()["local_outbox"] == 0
        assert store.add_local(b"\x02" * 16, "b" * 32) > max(seqs)
        assert store.add_peer(b"\x02" * 16, "a b", b"payload") > peer


def test_a_failed_write_breaks_the_store_and_keeps_the_last_good_commit(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    store.add_new_message(b"\x01" * 16, message())
    store.commit()
    store.add_new_message(b"\x02" * 16, message(2))
    store.add_peer(b"\x02" * 16, "a b", b"x")
    store.add_peer(b"\x02" * 16, "a b", b"x")  # the outbox's ids are unique
    with pytest.raises(StoreError):
        store.commit()
    with pytest.raises(StoreError, match="earlier write failed"):
        store.commit()  # nothing may be promised after a lost write
    store.close()
    assert committed(path, "SELECT count(*) FROM messages") == 1
    assert committed(path, "SELECT count(*) FROM peer_outbox") == 0


def test_a_2002_leaves_only_after_its_message_is_committed_and_one_commit_serves_a_batch(
        tmp_path):
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    core = BridgeCore(store, KEY, T0)
    alice, a = login(core, "alice")
    bob, b = login(core, "bob")
    carol, c = login(core, "carol")
    core.client_disconnected(carol, T0)  # known, offline: her messages wait in the outbox
    core.take_client_outputs([alice, bob])
    commits = []
    real_commit = store.commit
    store.commit = lambda: (commits.append(1), real_commit())[1]  # type: ignore[method-assign]
    for i in range(100):
        send(core, alice, a, b, f"to bob {i}")
        send(core, alice, a, c, f"to carol {i}")
    assert committed(path, "SELECT count(*) FROM messages") == 0  # nothing promised yet
    out = core.take_client_outputs([alice, bob])
    assert len(commits) == 1
    assert [r["code"] for r in out[alice]] == [201, 204] * 100
    assert len(out[bob]) == 100
    # What the replies promise is on disk: all 200 in the history, carol's 100 queued;
    # bob's were handed over before that commit, so they never entered the outbox.
    assert committed(path, "SELECT count(*) FROM messages") == 200
    assert committed(path, "SELECT count(*) FROM local_outbox") == 100
    assert core.take_client_output(alice) == [] and core.take_frames() == []
    assert len(commits) == 1  # nothing new to cover
    carol = core.client_connected("127.0.0.1", 40001)
    core.client_line(carol, json.dumps({"command": 1000, "name": "carol"}).encode(), T0)
    assert [e.get("msg") for e in core.take_client_output(carol)] == [None] + [
        f"to carol {i}" for i in range(100)]
    store.close()


def test_existing_ids_sees_committed_and_waiting_rows_past_one_query_of_ids(tmp_path):
    with Store(tmp_path / "s.sqlite3") as store:
        old = [i.to_bytes(16, "big") for i in range(1, 700)]
        for i in old:
            store.add_new_message(i, message())
        store.commit()
        waiting = b"\xff" * 16
        store.add_new_message(waiting, message())  # not flushed yet: still counts
        asked = set(old[::2]) | {waiting, b"\xee" * 16}
        assert store.existing_ids(asked) == set(old[::2]) | {waiting}
        assert store.existing_ids(set()) == set()
