"""The node's peers as the local faces name them: one ``StreamTable`` per peer, found by
its public key (hex), its configured name, or ``"peer"`` (the first peer: the first
``--peer``, else the first accepted; docs/operations.md "Peers").

The tox thread adds and removes tables as peers come and go; the trio side (streams.sock,
port forwarding, the control socket) looks them up. Every method takes the lock.
"""

from __future__ import annotations

import threading

from .localstreams import Shared, StreamTable

__all__ = ["FIRST", "PeerTables", "UnknownPeer"]

FIRST = "peer"  # the selector for the first peer


class UnknownPeer(LookupError):
    """A selector that names no peer of this node (the message says which)."""


class PeerTables:
    """``names``: configured short names, public key -> name."""

    def __init__(self, names: dict[bytes, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._tables: dict[bytes, StreamTable] = {}  # in the peers' order: the first is first
        self._names = dict(names or {})
        self.shared = Shared()

    # -- the tox thread --------------------------------------------------------------------

    def add(self, key: bytes, first: bool = False) -> StreamTable:
        """A new peer's table (a dialed peer may go ``first``)."""
        table = StreamTable(self.shared, key)
        with self._lock:
            self._tables[key] = table
            if first:
                self._tables = {key: table, **{k: t for k, t in self._tables.items() if k != key}}
        return table

    def remove(self, key: bytes) -> StreamTable | None:
        with self._lock:
            return self._tables.pop(key, None)

    def set_name(self, key: bytes, name: str) -> None:
        with self._lock:
            self._names[key] = name

    # -- any thread ------------------------------------------------------------------------

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
