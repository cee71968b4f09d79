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
* ``peer_outbox``: messages for users of the peer bridge not yet acknowledged by it, in
  order, with the encoded bridge-to-bridge command ready to send.

The store never commits by itself: the caller groups work and calls :meth:`Store.commit`
before anything that promises durability leaves the process (a ``2002`` reply, an ack to
the peer bridge). WAL mode, ``synchronous=NORMAL``: a committed transaction survives a
crash of the process (not necessarily of the machine).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .protocol import ChatMessage

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


class StoreError(Exception):
    """The bridge's database failed (disk full, file damaged, locked by another process)."""


def default_data_dir() -> Path:
    """Where bridges keep their databases unless told otherwise (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("toxbridge", appauthor=False))


def store_path(data_dir: Path, public_key: bytes) -> Path:
    """The database of the bridge whose daemon has this Tox public key."""
    return data_dir / f"bridge-{public_key.hex()[:16]}.sqlite3"


@dataclass(frozen=True, slots=True)
class OutgoingEntry:
    """A message waiting in the peer outbox."""

    seq: int
    id: bytes
    pair: str  # "srctoken goaltoken": messages of one pair keep their order
    payload: bytes  # the packed bridge-to-bridge command


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # built once: cheaper


def _message(body: str) -> ChatMessage:
    return ChatMessage(**json.loads(body))


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
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        self.path = path

    def close(self) -> None:
        self._db.commit()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def commit(self) -> None:
        """Make everything written so far durable. Raises StoreError."""
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"commit failed: {exc}") from exc

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"database error: {exc}") from exc

    # -- meta and users ------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        row = self._run("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        self._run("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def remember_user(self, token: str, name: str, side: str, now: float) -> None:
        self._run(
            "INSERT INTO users (token, name, side, seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (token) DO UPDATE SET name = excluded.name, side = excluded.side, "
            "seen = excluded.seen",
            (token, name, side, now),
        )

    def user_side(self, token: str) -> str | None:
        """``local``, ``peer`` or None (never seen)."""
        row = self._run("SELECT side FROM users WHERE token = ?", (token,)).fetchone()
        return None if row is None else str(row[0])

    def known_users(self, side: str, limit: int) -> list[tuple[str, str]]:
        """(token, name) of the users seen on ``side``, most recently seen first."""
        rows = self._run(
            "SELECT token, name FROM users WHERE side = ? ORDER BY seen DESC LIMIT ?",
            (side, limit),
        )
        return [(str(t), str(n)) for t, n in rows]

    # -- history -------------------------------------------------------------------

    def add_message(self, message_id: bytes, message: ChatMessage) -> bool:
        """Add to the history; False if a message with this id is already there."""
        body = _ENCODER.encode(message.to_dict())
        cur = self._run(
            "INSERT OR IGNORE INTO messages (id, src, goal, time, body) VALUES (?, ?, ?, ?, ?)",
            (message_id, message.srctoken, message.goaltoken, message.time, body),
        )
        return cur.rowcount == 1

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
        cur = self._run("INSERT INTO local_outbox (id, goal) VALUES (?, ?)", (message_id, goal))
        return int(cur.lastrowid or 0)

    def local_pending(self, goal: str, after: int, limit: int) -> list[tuple[int, ChatMessage]]:
        """Messages queued for ``goal`` with seq > ``after``, in order."""
        rows = self._run(
            "SELECT o.seq, m.body FROM local_outbox o JOIN messages m ON m.id = o.id"
            " WHERE o.goal = ? AND o.seq > ? ORDER BY o.seq LIMIT ?",
            (goal, after, limit),
        )
        return [(int(seq), _message(body)) for seq, body in rows]

    def delete_local(self, seqs: list[int]) -> None:
        if seqs:
            self._db.executemany("DELETE FROM local_outbox WHERE seq = ?", [(s,) for s in seqs])

    # -- the peer outbox -----------------------------------------------------------

    def add_peer(self, message_id: bytes, pair: str, payload: bytes) -> int:
        cur = self._run(
            "INSERT INTO peer_outbox (id, pair, payload) VALUES (?, ?, ?)",
            (message_id, pair, payload),
        )
        return int(cur.lastrowid or 0)

    def peer_after(self, after: int, limit: int) -> list[OutgoingEntry]:
        rows = self._run(
            "SELECT seq, id, pair, payload FROM peer_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [OutgoingEntry(int(s), bytes(i), str(p), bytes(pl)) for s, i, p, pl in rows]

    def delete_peer(self, ids: list[bytes]) -> None:
        if ids:
            try:
                self._db.executemany("DELETE FROM peer_outbox WHERE id = ?", [(i,) for i in ids])
            except sqlite3.Error as exc:
                raise StoreError(f"database error: {exc}") from exc

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
