"""Who reaches whom (sans-IO): routes to the users behind the peer bridges, read off the
sessions' user tables, and what to announce to each peer.

Each up :class:`~bridge_local.sessions.Session` holds the users its peer bridge announced,
each with its hops (the hubs between us and the user's bridge; 0 for the peer's own).
The best route to a user is the up session with the fewest hops; we announce a user to a
peer one hop further than our best route, never back to the bridge it is on, and never
beyond :data:`~bridge_local.sessions.MAX_HOPS`, so an announcement that goes round a loop
dies out. Functions of the sessions only: :class:`~bridge_local.core.BridgeCore` calls them.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from .protocol import User
from .sessions import MAX_HOPS, Session

__all__ = ["announced", "best_users", "nearest", "reachable", "relayed_for"]


def best_users(sessions: Iterable[Session]) -> dict[str, User]:
    """Every user reachable through an up session (the best route's record), by token."""
    out: dict[str, User] = {}
    for s in sessions:
        if s.peer_up:
            for token, u in s.users.items():
                if token not in out or u.hops < out[token].hops:
                    out[token] = u
    return out


def nearest(sessions: Iterable[Session], token: str,
            exclude: Session | None = None) -> Session | None:
    """The up session (not ``exclude``) with the fewest hubs to the user's bridge."""
    best: Session | None = None
    for s in sessions:
        if s is exclude or not s.peer_up or token not in s.users:
            continue
        if best is None or s.users[token].hops < best.users[token].hops:
            best = s
    return best


def reachable(sessions: Iterable[Session], token: str,
              exclude: Session | None = None) -> User | None:
    """The best announcement of ``token`` by an up session other than ``exclude``."""
    best: User | None = None
    for s in sessions:
        if s is exclude or not s.peer_up:
            continue
        u = s.users.get(token)
        if u is not None and (best is None or u.hops < best.hops):
            best = u
    return best


def relayed_for(sessions: Iterable[Session], x: Session, local: Container[str]) -> list[User]:
    """What we announce to ``x`` of the users behind our other peers: never its own users,
    never what only it told us, never our own (``local`` tokens), at most MAX_HOPS hubs
    away."""
    out: dict[str, User] = {}
    for s in sessions:
        if s is x or not s.peer_up:
            continue
        for token, u in s.users.items():
            if u.bridge == x.bridge or u.hops + 1 > MAX_HOPS or token in local:
                continue
            if token not in out or u.hops + 1 < out[token].hops:
                out[token] = User(u.token, u.name, u.ip, u.port, "peer", u.bridge, u.hops + 1)
    return list(out.values())


def announced(sessions: Iterable[Session], x: Session, token: str,
              local: Container[str]) -> User | None:
    """What ``x`` should be told of ``token`` now: the best route through our other
    sessions, one hop further; None if ``x`` should not hear of it (none, x's own bridge's,
    too far, or ours)."""
    u = reachable(sessions, token, exclude=x)
    if u is None or u.bridge == x.bridge or u.hops + 1 > MAX_HOPS or token in local:
        return None
    return User(u.token, u.name, u.ip, u.port, "peer", u.bridge, u.hops + 1)
