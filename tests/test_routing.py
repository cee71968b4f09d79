"""Routes to the users behind the peer bridges (``bridge_local.routing``), sans-IO: sessions
with hand-made user tables, a table of who reaches whom and what each peer is told."""

from __future__ import annotations

import pytest

from bridge_local.core import Limits
from bridge_local.protocol import User
from bridge_local.routing import announced, best_users, nearest, reachable, relayed_for
from bridge_local.sessions import MAX_HOPS, Session
from bridge_local.store import Store

T0 = 1_700_000_000.0


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


def session(store: Store, n: int, users: dict[str, int], up: bool = True) -> Session:
    """The session with bridge ``n`` (its key bytes([n]) * 32), announcing ``users``
    (token -> hops; a user with hops 0 is on that bridge)."""
    s = Session(bytes([n]) * 32, store, Limits(), T0, split=True)
    s.peer_up = up
    s.bridge = s.name
    s.users = {t: User(t, t.lower(), "127.0.0.1", 1, "peer", s.bridge if h == 0 else f"far{t}", h)
               for t, h in users.items()}
    return s


def test_the_best_route_is_the_fewest_hops_over_up_sessions(store):
    a = session(store, 1, {"X": 2, "Y": 0})
    b = session(store, 2, {"X": 1})
    down = session(store, 3, {"X": 0, "Z": 0}, up=False)
    sessions = [a, b, down]
    assert {t: u.hops for t, u in best_users(sessions).items()} == {"X": 1, "Y": 0}
    assert nearest(sessions, "X") is b
    assert nearest(sessions, "X", exclude=b) is a
    assert nearest(sessions, "Z") is None  # only behind a session that is down
    assert reachable(sessions, "X", exclude=b).hops == 2
    assert reachable(sessions, "Z") is None


def test_a_peer_hears_of_others_users_one_hop_further_never_its_own_ours_or_too_far(store):
    a = session(store, 1, {"A": 0, "FAR": MAX_HOPS, "MINE": 0})
    b = session(store, 2, {"B": 0, "A2": 1})
    b.users["A2"] = User("A2", "a2", "127.0.0.1", 1, "peer", a.bridge, 1)  # on a's bridge
    sessions = [a, b]
    local = {"MINE"}  # a user of this bridge, told back by a: never relayed
    to_b = {u.token: u.hops for u in relayed_for(sessions, b, local)}
    assert to_b == {"A": 1}  # not FAR (MAX_HOPS + 1), not MINE, not b's own
    to_a = {u.token: u.hops for u in relayed_for(sessions, a, local)}
    assert to_a == {"B": 1}  # not A2: it is on a's own bridge
    assert announced(sessions, b, "A", local).hops == 1
    assert announced(sessions, a, "A2", local) is None
    assert announced(sessions, b, "FAR", local) is None
    assert announced(sessions, b, "MINE", local) is None
    assert announced(sessions, b, "B", local) is None  # only b itself reaches it
