"""Who may reach what through this node: nothing unless a rule says so.

``--expose HOST:PORT`` lets every peer reach that destination; a rules file adds
destinations for every peer and per-peer lists. A peer with a list of its own reaches
only the destinations on it (and none of the ones for everyone). A destination matches
by its exact host (lower-cased, never resolved: ``localhost`` is not ``127.0.0.1``) and
port. The rules file (TOML)::

    expose = ["127.0.0.1:22"]            # every peer
    [[peer]]
    key = "<64 hex digits>"              # this peer may reach only these
    name = "laptop"                      # optional, for the log
    expose = ["127.0.0.1:8080", "db.internal:5432"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from ..errors import ConfigError
from .spec import Destination, parse_destination

__all__ = ["Refusal", "Rules", "parse_rules"]

KEY_SIZE = 32


@dataclass(frozen=True)
class Refusal:
    """Why a destination is not reachable (the text the forwarding side is told)."""

    text: str


@dataclass(frozen=True)
class Rules:
    everyone: frozenset[Destination] = frozenset()
    peers: tuple[tuple[bytes, frozenset[Destination]], ...] = ()  # (public key, its list)

    def allowed(self, peer_key: bytes, dest: Destination) -> bool | Refusal:
        """True, or the Refusal to answer with."""
        own = dict(self.peers).get(peer_key)
        allowed = own if own is not None else self.everyone
        if dest in allowed:
            return True
        if own is not None:
            return Refusal(f"{dest} is not exposed to this peer")
        return Refusal(f"{dest} is not exposed")

    @property
    def empty(self) -> bool:
        return not self.everyone and not any(d for _, d in self.peers)

    def merged(self, other: "Rules") -> "Rules":
        """Both rule sets; a peer listed in both gets both lists."""
        peers = dict(self.peers)
        for key, dests in other.peers:
            peers[key] = peers.get(key, frozenset()) | dests
        return Rules(self.everyone | other.everyone, tuple(sorted(peers.items())))


def _dests(value, fail) -> frozenset[Destination]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail("'expose' must be a list of \"HOST:PORT\" strings")
    out = set()
    for text in value:
        try:
            out.add(parse_destination(text))
        except ValueError as exc:
            raise fail(f"'expose': {exc}") from None
    return frozenset(out)


def parse_rules(text: str, source: str) -> Rules:
    """The rules file's text; ConfigError naming ``source`` and what is wrong."""
    def fail(what: str) -> ConfigError:
        return ConfigError(f"rules file {source}: {what}")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"not valid TOML: {exc}") from None
    unknown = set(data) - {"expose", "peer"}
    if unknown:
        raise fail(f"unknown key {sorted(unknown)[0]!r} (keys: expose, [[peer]])")
    everyone = _dests(data.get("expose", []), fail)
    peers: dict[bytes, frozenset[Destination]] = {}
    tables = data.get("peer", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise fail("'peer' must be [[peer]] tables")
    for n, table in enumerate(tables, 1):
        def pfail(what: str, n=n) -> ConfigError:
            return fail(f"[[peer]] {n}: {what}")

        unknown = set(table) - {"key", "name", "expose"}
        if unknown:
            raise pfail(f"unknown key {sorted(unknown)[0]!r} (keys: key, name, expose)")
        key = table.get("key")
        try:
            raw = bytes.fromhex(key) if isinstance(key, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != KEY_SIZE:
            raise pfail(f"'key' must be a public key of {2 * KEY_SIZE} hex digits")
        if "name" in table and not isinstance(table["name"], str):
            raise pfail("'name' must be a string")
        if raw in peers:
            raise pfail(f"key {key[:8]}... is listed twice")
        peers[raw] = _dests(table.get("expose", []), pfail)
    return Rules(everyone, tuple(sorted(peers.items())))
