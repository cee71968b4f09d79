"""The peers' stream tables as the local faces name them (no Tox: tables and LocalStreams)."""

from __future__ import annotations

import pytest

from toxbridge.localstreams import LocalStream
from toxbridge.peertables import PeerTables, UnknownPeer
from toxbridge.streams import ResetCode

A, B = bytes([1]) * 32, bytes([2]) * 32


def test_selectors_name_keys_names_and_the_first_peer():
    tables = PeerTables({B: "phone"})
    with pytest.raises(UnknownPeer, match="no peer yet"):
        tables.resolve("peer")
    ta, tb = tables.add(A), tables.add(B)
    assert tables.resolve("peer") is ta and tables.first() is ta
    assert tables.resolve(B.hex()) is tb and tables.resolve(B.hex().upper() + "00" * 6) is tb
    assert tables.resolve("phone") is tb and tables.name_of(B) == "phone"
    with pytest.raises(UnknownPeer, match="neither a public key"):
        tables.resolve("laptop")
    with pytest.raises(UnknownPeer, match="not a peer"):
        tables.resolve("03" * 32)
    tables.remove(A)
    assert tables.resolve("peer") is tb and len(tables) == 1


def test_a_closed_table_refuses_waiting_and_later_requests():
    tables = PeerTables()
    table = tables.add(A)
    waiting, late = LocalStream(lambda: None), LocalStream(lambda: None)
    table.request_open(waiting)
    table.close("peer_removed", "the peer was removed")
    assert waiting.failure == ("peer_removed", "the peer was removed")
    table.request_open(late)
    assert late.failure[0] == "peer_removed" and late.table is table


def test_an_accept_from_any_peer_is_shared():
    tables = PeerTables()
    ls = LocalStream(lambda: None)
    ls.kind = 30
    assert tables.shared.request_accept(ls)
    assert tables.shared.take_acceptor(31) is None
    assert tables.shared.take_acceptor(30) is ls and tables.shared.take_acceptor(30) is None
    assert ResetCode.PEER_REMOVED == 10
