"""toxbridge.cadence: how long the tox thread waits between turns. Pure: every time is an
argument, so each test plays turns on a simulated clock (no sleeping, no Tox)."""

from pathlib import Path

import pytest

from toxbridge.cadence import BUSY_AFTER_RELAY, BURST_PACKETS, Cadence, Survey

INTERVAL = 0.05  # toxcore's tox_iteration_interval when idle
BUSY, IDLE = 0.001, 0.02
INF = float("inf")


def _cadence(watched: bool = True) -> Cadence:
    return Cadence(socket_watched=watched, busy_period=BUSY, idle_period=IDLE)


def _survey(*, relay=False, sending=False, backlogged=False, acks_only=False, timer=INF):
    return Survey(relay, sending, backlogged, acks_only, timer)


def test_quiet_and_watched_it_waits_toxcores_interval_for_any_but_upkeep_datagrams():
    w = _cadence().decide(10.0, _survey(), 0, INTERVAL)
    assert (w.period, w.busy, w.watched, w.skip) == (INTERVAL, False, True, True)


def test_a_hub_with_one_relayed_peer_stays_idle_through_its_other_peers_lone_exchanges():
    """The spin of bench mesh --idle-only: one of 16 peers on a TCP relay, the others'
    pings and acks every ~0.3 s. Counting their traffic in the relay's 1 s tail had kept
    the loop at 1 ms for good (~600 turns a second)."""
    c, s = _cadence(), _survey(relay=True)
    now, turns, busy = 100.0, 0, 0
    while now < 130.0:  # 30 s: an exchange of 3 packets with some UDP peer every 0.3 s
        received = 3 if round(now * 1000) % 300 == 0 else 0
        c.traffic(now, received, relayed=False)
        w = c.decide(now, s, received, INTERVAL)
        busy += w.busy
        turns += 1
        now = round(now + w.period, 6)
    assert busy == 0
    assert turns <= 30 / IDLE + 1  # relayed packets arrive unwatched: polled at idle_period
    assert w.period == IDLE and w.skip


def test_traffic_with_the_relayed_peer_keeps_the_1ms_cadence_for_its_tail_then_idles():
    c, s = _cadence(), _survey(relay=True)
    c.traffic(5.0, 1, relayed=True)
    assert c.decide(5.0, s, 1, INTERVAL).period == BUSY
    w = c.decide(5.0 + BUSY_AFTER_RELAY - 0.01, s, 0, INTERVAL)
    assert w.busy and w.period == BUSY and not w.watched  # polls: the relay is unwatched
    w = c.decide(5.0 + BUSY_AFTER_RELAY + 0.01, s, 0, INTERVAL)
    assert not w.busy and w.period == IDLE


def test_with_the_socket_unwatched_any_traffic_counts_as_relayed():
    c = _cadence(watched=False)
    c.traffic(5.0, 0, relayed=False, sent=True)
    assert c.decide(5.5, _survey(), 0, INTERVAL).period == BUSY
    assert c.decide(6.5, _survey(), 0, INTERVAL).period == IDLE


def test_a_burst_over_udp_keeps_a_short_tail_a_lone_exchange_none():
    c, s = _cadence(), _survey()
    c.traffic(1.0, 3, relayed=False)
    assert not c.decide(1.0, s, 3, INTERVAL).busy
    c.traffic(2.0, BURST_PACKETS, relayed=False)
    assert c.decide(2.05, s, 0, INTERVAL).busy
    assert not c.decide(2.2, s, 0, INTERVAL).busy


@pytest.mark.parametrize("relay", [False, True])
def test_data_unacknowledged_keeps_the_1ms_cadence_as_long_as_it_lasts(relay):
    """Loss detection and retransmits run by the clock while data is unacknowledged
    (``PeerSlot.sending``): the loop must keep turning, relay or not, however long."""
    c, s = _cadence(), _survey(relay=relay, sending=True, backlogged=True)
    for i in range(1000):
        w = c.decide(50.0 + i * BUSY, s, 2, INTERVAL)
        assert w.busy and w.period == BUSY and not w.skip


def test_an_early_wake_only_while_awaiting_acks_and_at_most_twice_the_cadence():
    c, s = _cadence(), _survey(sending=True, acks_only=True)
    w = c.decide(1.0, s, 1, INTERVAL)
    assert w.early and w.watched and w.period == INTERVAL  # only acks awaited: an arrival
    c.woke_early()
    c.woke_early()
    assert not c.decide(1.0, s, 1, INTERVAL).early  # the bucket is empty
    assert not c.decide(2.0, _survey(sending=True, backlogged=True), 1, INTERVAL).early


def test_a_transport_timer_ends_any_wait_at_its_time():
    c = _cadence()
    assert c.decide(1.0, _survey(timer=1.004), 0, INTERVAL).period == pytest.approx(0.004)
    assert c.decide(1.0, _survey(timer=0.5), 0, INTERVAL).period == 0.0


def _slot():
    from toxbridge.config import Config
    from toxbridge.peerslot import PeerSlot
    from toxbridge.peertables import PeerTables
    key = bytes(range(32))
    config = Config(mode="listen", profile=Path("/nonexistent/unused.tox"))
    slot = PeerSlot(config, bytes(32), key, 0, PeerTables().add(key), lambda s, e: None,
                    dialed=False)
    slot.state.link = "UDP"
    return slot


def _blocked_endpoint():
    """A transport whose peer's app reads nothing: every byte it may send is acked, the
    rest held back by the peer's limit (tests/test_transport_parts.py)."""
    from toxbridge.transport import MAX_PAYLOAD, Endpoint
    window = 8 * MAX_PAYLOAD
    a, b = Endpoint(peer_window=window), Endpoint(window=window)
    a.send(bytes(2 * window))
    now = 0.0
    for _ in range(200):
        now += 0.005
        if (t := a.timeout()) is not None and t <= now:
            a.handle_timer(now)
        for p in a.datagrams_to_send(now):
            b.receive_datagram(p, now)
        for p in b.datagrams_to_send(now):
            a.receive_datagram(p, now)
    assert b.readable == window and a.statistics().bytes_in_flight == 0
    return a, now


def test_a_peer_whose_data_only_the_peers_limit_holds_lets_the_loop_idle_to_its_ping():
    """The blocked transport is not 'sending': the wait is idle, ended at the latest by
    the blocked ping's timer, which the survey carries."""
    slot = _slot()
    ep, now = _blocked_endpoint()
    slot.path._send_ep = ep
    assert not slot.sending(0) and slot.sending_why(0) == "-"
    timer = slot.path.timeout()
    assert timer is not None and timer <= now + 1.0  # BLOCKED_PING_MAX: never silent
    w = _cadence().decide(now, _survey(sending=slot.sending(0), timer=timer), 0, INTERVAL)
    assert not w.busy and w.skip
    assert w.period == pytest.approx(max(0.0, min(INTERVAL, timer - now)))


def test_a_peer_with_data_in_flight_is_sending():
    from toxbridge.transport import Endpoint
    slot = _slot()
    ep = Endpoint()
    ep.send(b"x" * 3000)
    ep.datagrams_to_send(0.0)  # in flight, not acked
    slot.path._send_ep = ep
    assert slot.sending(0) and "p" in slot.sending_why(0)
    assert _cadence().decide(0.0, _survey(sending=True), 0, INTERVAL).period == BUSY
