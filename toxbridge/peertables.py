"""The node's peers as the local faces name them: one ``StreamTable`` per peer, found by
its public key (hex), its configured name, or ``"peer"`` (the first peer: the first
``--peer``, else the first accepted; docs/operations.md "Peers").

The tox thread adds and removes tables as peers come and go, and says when each goes
online or offline; the trio side (streams.sock, port forwarding, the control socket) looks
them up and may watch those changes (:meth:`PeerTables.watch`). Every method takes the lock.
"""

from __future__ import annotations

import threading
from typing import Callable

from .localstreams import Shared, StreamTable

__all__ = ["FIRST", "MAX_WATCHERS", "PeerTables", "UnknownPeer"]

FIRST = "peer"  # the selector for the first peer
MAX_WATCHERS = 64  # connections watching the peers at once


class UnknownPeer(LookupError):
    """A selector that names no peer of this node (the message says which)."""


class PeerTables:
    """``names``: configured short names, public key -> name."""

    def __init__(self, names: dict[bytes, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._tables: dict[bytes, StreamTable] = {}  # in the peers' order: the first is first
        self._names = dict(names or {})
        self._online: dict[bytes, bool] = {}
        self._watchers: list[Callable[[dict], None]] = []
        self.shared = Shared()

    # -- the tox thread --------------------------------------------------------------------

    def add(self, key: bytes, first: bool = False) -> StreamTable:
        """A new peer's table (a dialed peer may go ``first``)."""
        table = StreamTable(self.shared, key)
        with self._lock:
            self._tables[key] = table
            self._online[key] = False
            if first:
                self._tables = {key: table, **{k: t for k, t in self._tables.items() if k != key}}
        self._fire(key, "added")
        return table

    def remove(self, key: bytes) -> StreamTable | None:
        with self._lock:
            table = self._tables.pop(key, None)
            self._online.pop(key, None)
        if table is not None:
            self._fire(key, "removed")
        return table

    def set_online(self, key: bytes, online: bool) -> None:
        """The peer's channel opened (True) or its friend connection went down (False)."""
        with self._lock:
            if key not in self._tables or self._online[key] == online:
                return
            self._online[key] = online
        self._fire(key, "online" if online else "offline")

    def _fire(self, key: bytes, status: str) -> None:
        event = self._event(key, status)
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher(event)

    def _event(self, key: bytes, status: str) -> dict:
        event = {"event": "peer", "code": 301 if status == "online" else 302,
                 "status": status, "peer": key.hex().upper()}
        name = self._names.get(key)
        if name is not None:
            event["name"] = name
        return event

    def set_name(self, key: bytes, name: str) -> None:
        with self._lock:
            self._names[key] = name

    # -- any thread ------------------------------------------------------------------------

    def watch(self, watcher: Callable[[dict], None]) -> tuple[list[dict], Callable[[], None]]:
        """Every peer now (``{"peer", "name"?, "online"}``) and, from then on, each change
        as an event to ``watcher`` (called on the tox thread: it must be thread-safe and
        must not block); returns (peers, unwatch). Raises OverflowError when
        MAX_WATCHERS watch already."""
        with self._lock:
            if len(self._watchers) >= MAX_WATCHERS:
                raise OverflowError(f"{MAX_WATCHERS} connections watch the peers already")
            self._watchers.append(watcher)
            peers = []
            for key in self._tables:
                entry = {"peer": key.hex().upper(), "online": self._online[key]}
                if key in self._names:
                    entry["name"] = self._names[key]
                peers.append(entry)

        def unwatch() -> None:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)
        return peers, unwatch

    def name_of(self, key: bytes) -> str | None:
        with self._lock:
            return self._names.get(key)

    def first(self) -> StreamTable | None:
        with self._lock:
            return next(iter(self._tables.values()), None)

    def key_of(self, selector: str) -> bytes:
        """The public key a selector names (a known peer or not). Raises UnknownPeer."""
        with self._lock:
            if selector == FIRST:
                if not self._tables:
                    raise UnknownPeer("no peer yet")
                return next(iter(self._tables))
            for key, name in self._names.items():
                if name == selector:
                    return key
        try:
            key = bytes.fromhex(selector)
        except ValueError:
            key = b""
        if len(key) not in (32, 38):
            raise UnknownPeer(f"{selector!r} is neither a public key (64 hex digits) nor a "
                              f"peer's name")
        return key[:32]

    def resolve(self, selector: str) -> StreamTable:
        """The table of the peer ``selector`` names. Raises UnknownPeer."""
        key = self.key_of(selector)
        with self._lock:
            table = self._tables.get(key)
        if table is None:
            raise UnknownPeer(f"{selector} is not a peer of this node")
        return table

    def __len__(self) -> int:
        with self._lock:
            return len(self._tables)
