"""The bridge's durable state in SQLite (stdlib ``sqlite3``): users seen, history, outboxes.

One file per bridge (``bridge-<key>.sqlite3`` in the data directory, see :func:`store_path`).
Tables:

* ``users``: every user ever seen, on this bridge (``local``) or the peer's (``peer``), so a
  message to a user who is offline can be routed and queued (``204``) rather than refused
  (``202``).
* ``messages``: the history, both directions, keyed by the 16-byte message id (which makes
  a message received twice from the peer bridge a no-op).
* ``local_outbox``: messages for users of this bridge not yet handed to their connection,
  in arrival order (``seq``).
* ``peer_outbox``: messages for users of peer bridges not yet acknowledged by the next
  one (``peer``), in order, with the encoded bridge-to-bridge command ready to send.

The store never commits by itself: the caller groups work and calls :meth:`Store.commit`
before anything that promises durability leaves the process (a ``2002`` reply, an ack to
the peer bridge). The rows of new messages and of both outboxes are not even written at
once: they wait in lists and go in with one ``executemany`` each at the next commit (or
before the next read, so reads see them), which makes a batch of messages one transaction
of a few statements rather than a few per message. Their seqs are counted here (the store
has one owner). A local outbox row taken for writing before the commit is never written.

Durability: WAL mode with ``synchronous=NORMAL``. The commit appends the transaction to the
WAL with write(2) and syncs it only at checkpoints, so a committed transaction survives a
crash or kill -9 of the process (the data are in the kernel's page cache, and SQLite reads
the WAL back at the next open), which is what a 2002 or a peer ack promises. A power loss
or kernel crash can roll back the last transactions; ``synchronous=FULL`` (an fsync per
commit) would cover that at a few ms per commit on most disks.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

from .protocol import ChatMessage, jsonfast

__all__ = ["OutgoingEntry", "Store", "StoreError", "default_data_dir", "store_path"]

_SCHEMA = """
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
# Added with many peer bridges (issue 14): each peer outbox row's next hop (the peer
# daemon's key in hex; '' for the one-peer channel), and each user's bridge (the key of the
# bridge the user logs in on), the peer it is reached through and how many hubs lie between.
_COLUMNS = (("peer_outbox", "peer", "TEXT NOT NULL DEFAULT ''"),
            ("users", "bridge", "TEXT NOT NULL DEFAULT ''"),
            ("users", "via", "TEXT NOT NULL DEFAULT ''"),
            ("users", "hops", "INTEGER NOT NULL DEFAULT 0"))


_SIDES_MAX = 4096  # users whose side the store keeps in memory
_IN_MAX = 500  # values in one ``IN (...)``: well under SQLite's limit of bound parameters


def _marks(n: int) -> str:
    return ",".join("?" * n)


class StoreError(Exception):
    """The bridge's database failed (disk full, file damaged, locked by another process)."""


def default_data_dir() -> Path:
    """Where bridges keep their databases unless told otherwise (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("toxbridge", appauthor=False))


def store_path(data_dir: Path, public_key: bytes) -> Path:
    """The database of the bridge whose daemon has this Tox public key."""
    return data_dir / f"bridge-{public_key.hex()[:16]}.sqlite3"


class OutgoingEntry(NamedTuple):
    """A message waiting in the peer outbox (a tuple: made from a row at C speed)."""

    seq: int
    id: bytes
    pair: str  # "srctoken goaltoken": messages of one pair keep their order
    payload: bytes  # the packed bridge-to-bridge command


def _message(body: str | bytes) -> ChatMessage:
    return ChatMessage(**jsonfast.loads(body))


class Store:
    """The SQLite database of one bridge. Not thread-safe: one owner (the bridge core)."""

    def __init__(self, path: Path | str) -> None:
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level="DEFERRED")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            for table, column, decl in _COLUMNS:
                have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            self._db.execute("CREATE INDEX IF NOT EXISTS peer_outbox_peer ON peer_outbox (peer, seq)")
            self._db.commit()
            self._last_local = self._last_seq("local_outbox")
            self._last_peer = self._last_seq("peer_outbox")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        self.path = path
        # Written at the next flush, in this order (a local row refers to its message).
        self._new_messages: list[tuple[bytes, str, str, float, str]] = []
        self._new_local: dict[int, tuple[int, bytes, str]] = {}  # seq -> row
        self._new_peer: list[tuple[int, bytes, str, bytes, str]] = []
        self._broken: sqlite3.Error | None = None
        # token -> side of the users seen: the sending bridge asked the users table once
        # per message for it (a SELECT each, ~5 % of the sender's core). Only
        # remember_user writes a side; bounded by clearing.
        self._sides: dict[str, str] = {}
        # Writes so far, and how many of them the last commit covered: an output produced
        # when ``writes`` was w needs a commit only if ``committed < w``.
        self.writes = 0
        self.committed = 0

    def _last_seq(self, table: str) -> int:
        """The highest seq ever given in ``table`` (AUTOINCREMENT's record, or the rows')."""
        row = self._db.execute(
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0),"
            f" coalesce((SELECT max(seq) FROM {table}), 0))").fetchone()
        return int(row[0])

    def close(self) -> None:
        try:
            if self._broken is None:
                self.commit()
        finally:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def commit(self) -> None:
        """Make everything written so far durable: one transaction. Raises StoreError."""
        if self._broken is not None:
            raise StoreError(f"an earlier write failed: {self._broken}")
        writes = self.writes
        self._flush()
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            self._broken = exc
            raise StoreError(f"commit failed: {exc}") from exc
        self.committed = writes

    def _flush(self) -> None:
        """Write the waiting rows (into the open transaction)."""
        if not (self._new_messages or self._new_local or self._new_peer):
            return
        db = self._db
        try:
            if self._new_messages:
                db.executemany("INSERT INTO messages (id, src, goal, time, body)"
                               " VALUES (?, ?, ?, ?, ?)", self._new_messages)
            if self._new_local:
                db.executemany("INSERT INTO local_outbox (seq, id, goal) VALUES (?, ?, ?)",
                               self._new_local.values())
            if self._new_peer:
                db.executemany("INSERT INTO peer_outbox (seq, id, pair, payload, peer)"
                               " VALUES (?, ?, ?, ?, ?)", self._new_peer)
        except sqlite3.Error as exc:
            # Rows of replies and acks not yet sent are gone: nothing may be promised any
            # more, so every later commit fails too (the caller stops; a restart reads what
            # the last good commit left).
            self._broken = exc
            db.rollback()
            raise StoreError(f"database error: {exc}") from exc
        finally:
            self._new_messages, self._new_local, self._new_peer = [], {}, []

    def _run(self, sql: str, args: tuple | list = (), flush: bool = True) -> sqlite3.Cursor:
        """One statement; ``flush``: write the waiting rows first (a read must see them; a
        write needs not, nor a read of users or meta: their rows never wait)."""
        if flush:
            self._flush()
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"database error: {exc}") from exc

    # -- meta and users ------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        row = self._run("SELECT value FROM meta WHERE key = ?", (key,), flush=False).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        self.writes += 1
        self._run("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value),
                  flush=False)

    def remember_user(self, token: str, name: str, side: str, now: float, bridge: str = "",
                      via: str = "", hops: int = 0) -> None:
        """A user seen: on this bridge (``local``) or a peer's (``peer``: its ``bridge``,
        reached through the peer ``via`` with ``hops`` hubs between). A peer user's route
        changes only to one as short or shorter, or when it came through the same peer
        (a hub that learns of a direct path keeps it)."""
        self.writes += 1
        self._run(
            "INSERT INTO users (token, name, side, seen, bridge, via, hops)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (token) DO UPDATE SET name = excluded.name, side = excluded.side, "
            "seen = excluded.seen, bridge = excluded.bridge, "
            "via = CASE WHEN excluded.side = 'local' OR users.side = 'local'"
            " OR excluded.hops <= users.hops OR excluded.via = users.via"
            " THEN excluded.via ELSE users.via END, "
            "hops = CASE WHEN excluded.side = 'local' OR users.side = 'local'"
            " OR excluded.hops <= users.hops OR excluded.via = users.via"
            " THEN excluded.hops ELSE users.hops END",
            (token, name, side, now, bridge, via, hops), flush=False,
        )
        if len(self._sides) >= _SIDES_MAX:
            self._sides.clear()
        self._sides[token] = side

    def user_side(self, token: str) -> str | None:
        """``local``, ``peer`` or None (never seen)."""
        side = self._sides.get(token)
        if side is not None:
            return side
        row = self._run("SELECT side FROM users WHERE token = ?", (token,), flush=False).fetchone()
        if row is None:
            return None
        if len(self._sides) >= _SIDES_MAX:
            self._sides.clear()
        side = self._sides[token] = str(row[0])
        return side

    def user_route(self, token: str) -> tuple[str, str, str] | None:
        """(side, bridge, via) of a user seen, or None."""
        row = self._run("SELECT side, bridge, via FROM users WHERE token = ?", (token,),
                        flush=False).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def known_users(self, side: str, limit: int) -> list[tuple[str, str]]:
        """(token, name) of the users seen on ``side``, most recently seen first."""
        rows = self._run(
            "SELECT token, name FROM users WHERE side = ? ORDER BY seen DESC LIMIT ?",
            (side, limit), flush=False,
        )
        return [(str(t), str(n)) for t, n in rows]

    def known_routes(self, limit: int) -> list[tuple[str, str, str, str, int]]:
        """(token, name, bridge, via, hops) of every user seen, this bridge's (via '')
        first, then the most recently seen."""
        rows = self._run(
            "SELECT token, name, bridge, via, hops FROM users"
            " ORDER BY side = 'local' DESC, seen DESC LIMIT ?", (limit,), flush=False)
        return [(str(t), str(n), str(b), str(v), int(h)) for t, n, b, v, h in rows]

    # -- history -------------------------------------------------------------------

    def existing_ids(self, ids: set[bytes]) -> set[bytes]:
        """Which of these message ids are in the history already (one query; rows waiting
        for the flush count too). Nothing is flushed: on the receiving bridge a flush here
        wrote the local outbox rows of the last read's messages just before their hand-over
        deleted them again (~12 % of that bridge, issue 18)."""
        found = {row[0] for row in self._new_messages if row[0] in ids}
        todo = [i for i in ids if i not in found]
        for start in range(0, len(todo), _IN_MAX):
            chunk = todo[start:start + _IN_MAX]
            rows = self._run(f"SELECT id FROM messages WHERE id IN ({_marks(len(chunk))})",
                             chunk, flush=False)
            found.update(bytes(r[0]) for r in rows)
        return found

    def add_new_message(self, message_id: bytes, message: ChatMessage,
                        record: dict[str, Any] | None = None) -> dict[str, Any]:
        """Add to the history a message whose id no other has (drawn at random, or looked up
        with :meth:`existing_ids`): written at the next flush. ``record``: the message's
        ``to_dict()`` if the caller has it; returned (for the wire and the 2003: the
        record is built once per message)."""
        self.writes += 1
        if record is None:
            record = message.to_dict()
        body = jsonfast.dumps(record).decode("utf-8")
        self._new_messages.append(
            (message_id, message.srctoken, message.goaltoken, message.time, body))
        return record

    def history(
        self, a: str, b: str, limit: int, before: float | None = None
    ) -> list[ChatMessage]:
        """The most recent ``limit`` messages between ``a`` and ``b`` (both directions)
        strictly older than ``before``, oldest first; ties in time are ordered by id."""
        rows = self._run(
            "SELECT body FROM messages WHERE ((src = ? AND goal = ?) OR (src = ? AND goal = ?))"
            " AND time < ? ORDER BY time DESC, id DESC LIMIT ?",
            (a, b, b, a, float("inf") if before is None else before, limit),
        ).fetchall()
        return [_message(r[0]) for r in reversed(rows)]

    # -- the local outbox ----------------------------------------------------------

    def add_local(self, message_id: bytes, goal: str) -> int:
        """Queue a message (already in the history) for a local user; returns its seq."""
        self.writes += 1
        self._last_local += 1
        self._new_local[self._last_local] = (self._last_local, message_id, goal)
        return self._last_local

    def local_pending(self, goal: str, after: int, limit: int) -> list[tuple[int, ChatMessage]]:
        """Messages queued for ``goal`` with seq > ``after``, in order."""
        rows = self._run(
            "SELECT o.seq, m.body FROM local_outbox o JOIN messages m ON m.id = o.id"
            " WHERE o.goal = ? AND o.seq > ? ORDER BY o.seq LIMIT ?",
            (goal, after, limit),
        )
        return [(int(seq), _message(body)) for seq, body in rows]

    def delete_local(self, seqs: list[int]) -> None:
        """Rows taken for writing; those still waiting for the flush are simply not written."""
        self.writes += 1
        new = self._new_local
        gone = [(s,) for s in seqs if new.pop(s, None) is None]
        if gone:
            try:
                self._db.executemany("DELETE FROM local_outbox WHERE seq = ?", gone)
            except sqlite3.Error as exc:
                raise StoreError(f"database error: {exc}") from exc

    # -- the peer outbox -----------------------------------------------------------

    def add_peer(self, message_id: bytes, pair: str, payload: bytes, peer: str = "") -> int:
        """Queue a message (already in the history) for the peer bridge ``peer`` (its
        daemon's key in hex; '' the channel's one peer); returns its seq."""
        self.writes += 1
        self._last_peer += 1
        self._new_peer.append((self._last_peer, message_id, pair, payload, peer))
        return self._last_peer

    def peer_after(self, after: int, limit: int, peer: str = "") -> list[OutgoingEntry]:
        rows = self._run(
            "SELECT seq, id, pair, payload FROM peer_outbox WHERE peer = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (peer, after, limit),
        )
        return list(map(OutgoingEntry._make, rows))  # INTEGER, BLOB, TEXT, BLOB: as typed

    def delete_peer(self, ids: list[bytes]) -> None:
        """The peer bridge stored these: one ``DELETE ... IN`` per 500 ids (half the cost
        of a statement per id)."""
        self.writes += 1
        if ids:
            self._flush()
            for start in range(0, len(ids), _IN_MAX):
                chunk = ids[start:start + _IN_MAX]
                self._run(f"DELETE FROM peer_outbox WHERE id IN ({_marks(len(chunk))})", chunk,
                          flush=False)

    # -- the one-peer era ----------------------------------------------------------

    def legacy_targets(self) -> list[tuple[str, str]]:
        """(token, name) of what the one-peer channel era left without a peer bridge: the
        peer users seen without a bridge, and the targets of peer outbox rows without a
        peer ('': the channel's one peer). Over streams they wait for their peer."""
        rows = self._run(
            "SELECT token, name FROM users WHERE side = 'peer' AND (bridge = '' OR token IN"
            " (SELECT substr(pair, instr(pair, ' ') + 1) FROM peer_outbox WHERE peer = ''))")
        return [(str(t), str(n)) for t, n in rows]

    def adopt_legacy(self, tokens: list[str], peer: str, bridge: str) -> int:
        """The users ``tokens`` are the peer bridge ``bridge``'s, reached through the peer
        ``peer``: their rows without a peer are that peer's now. Returns the rows moved."""
        self.writes += 1
        moved = 0
        for start in range(0, len(tokens), _IN_MAX):
            chunk = tokens[start:start + _IN_MAX]
            marks = _marks(len(chunk))
            moved += self._run(
                f"UPDATE peer_outbox SET peer = ? WHERE peer = '' AND"
                f" substr(pair, instr(pair, ' ') + 1) IN ({marks})", [peer, *chunk]).rowcount
            self._run(f"UPDATE users SET bridge = ?, via = ?, hops = 0 WHERE side = 'peer'"
                      f" AND bridge = '' AND token IN ({marks})", [bridge, peer, *chunk],
                      flush=False)
        return moved

    def outbox_count(self) -> int:
        """Messages waiting in both outboxes."""
        row = self._run(
            "SELECT (SELECT COUNT(*) FROM local_outbox) + (SELECT COUNT(*) FROM peer_outbox)"
        ).fetchone()
        return int(row[0])

    def statistics(self) -> dict[str, int]:
        def count(table: str) -> int:
            return int(self._run(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

        return {t: count(t) for t in ("users", "messages", "local_outbox", "peer_outbox")}
