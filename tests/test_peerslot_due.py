"""PeerSlot.due: what lets an idle tox loop skip its first pump (toxbridge.toxloop) and
what still makes it pump by the clock. No Tox: a slot is built with no friend connection."""

from pathlib import Path

from toxbridge.config import Config
from toxbridge.peertables import PeerTables


def _slot():
    from toxbridge.peerslot import PeerSlot
    key = bytes(range(32))
    tables = PeerTables()
    config = Config(mode="listen", profile=Path("/nonexistent/unused.tox"))
    return PeerSlot(config, bytes(32), key, 0, tables.add(key), lambda s, e: None,
                    dialed=False)


def test_a_fresh_slot_with_nothing_held_is_not_due():
    assert not _slot().due(1e9)


def test_the_hold_on_data_makes_a_slot_due_at_its_end_and_not_before():
    slot = _slot()
    slot.hold_data_until = 100.0
    assert not slot.due(99.9)
    assert slot.due(100.0)


def test_a_transport_timer_makes_a_slot_due_when_it_falls(monkeypatch):
    from toxbridge.tox import Connection
    slot = _slot()
    slot.on_connection(Connection.UDP)
    monkeypatch.setattr(slot.path, "timeout", lambda: 50.0)
    assert not slot.due(49.0)
    assert slot.due(50.0) and slot.timer() == 50.0


def test_an_offline_slots_transport_timer_is_not_a_reason_to_turn(monkeypatch):
    """Nothing goes out while the friend is offline, so a due timer stays due: counting it
    spun the loop at 5,000-10,000 wakes a second after a reset (test_nat, symmetric)."""
    from toxbridge.tox import Connection
    slot = _slot()
    monkeypatch.setattr(slot.path, "timeout", lambda: 50.0)
    slot.on_connection(Connection.UDP)
    slot.on_connection(Connection.NONE)
    assert slot.timer() is None and not slot.due(1e9)


def test_news_the_trio_side_left_without_a_wake_makes_a_slot_due():
    """After a write to the app, the trio side wakes the tox thread only once CREDIT_WAKE is
    owed; what it left in the table must still be taken by the next idle turn's pump."""
    from toxbridge.localstreams import LocalStream
    slot = _slot()
    assert not slot.due(1e9)
    slot.table.touch(LocalStream(lambda: None))
    assert slot.due(0.0)
    slot.table.service(None)
    assert not slot.due(1e9)
