"""StreamTable's tox-thread half against two real Muxes (pure: no Tox, no threads): the
bytes the trio side left in ``to_peer`` reach the peer exact and in order when the mux
takes them a part at a time."""

from __future__ import annotations

import dataclasses

from collections import defaultdict

from toxbridge.localstreams import LocalStream, StreamTable
from toxbridge.streams import CreditAvailable, Limits, Mux, StreamData, StreamOpened


class Pair:
    """Two Muxes joined directly; b consumes what it receives at once."""

    def __init__(self, limits: Limits) -> None:
        self.a = Mux(b"AAAAAAAA", initiator=True, limits=limits)
        self.b = Mux(b"BBBBBBBB", initiator=False, limits=limits)
        self.received: dict[int, bytearray] = defaultdict(bytearray)
        self.a_events: list = []
        self.opened = 0

    def turn(self) -> int:
        moved = 0
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            while chunk := src.data_to_send(16_384):
                dst.receive_data(chunk)
                moved += len(chunk)
        while (event := self.b.next_event()) is not None:
            if isinstance(event, StreamData):
                self.received[event.stream_id] += event.data
                self.b.consume(event.stream_id, len(event.data))
            self.opened += isinstance(event, StreamOpened)
        return moved

    def settle(self) -> None:
        for _ in range(1000):
            if not self.turn():
                return
        raise AssertionError("the pair never went quiet")


def test_a_partly_taken_buffer_keeps_the_rest_in_order_and_can_grow_after() -> None:
    # A send buffer of 10,000: each _move gives the mux at most that much of to_peer.
    limits = dataclasses.replace(Limits(), stream_send_buffer=10_000, send_buffer=10_000)
    pair = Pair(limits)
    pair.settle()
    table = StreamTable()
    ls = LocalStream(lambda: None)
    ls.kind = 7
    table.request_open(ls)
    table.service(pair.a)
    pair.settle()
    sid = ls.sid
    assert sid is not None
    data = bytes(i % 251 for i in range(100_000))
    ls.to_peer += data[:60_000]
    table.touch(ls)
    table.service(pair.a)
    assert len(ls.to_peer) == 50_000  # the mux took its room; the rest stays, in order
    ls.to_peer += data[60_000:]  # the trio side appends again after a partial take
    for _ in range(200):
        pair.turn()
        while (event := pair.a.next_event()) is not None:
            assert isinstance(event, CreditAvailable)
            table.on_event(pair.a, event)  # the mux has room again: _move offers the rest
        if not ls.to_peer:
            break
    pair.settle()
    assert not ls.to_peer
    assert bytes(pair.received[sid]) == data and pair.opened == 1
