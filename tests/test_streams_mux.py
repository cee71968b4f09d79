"""The stream mux: two Muxes joined in memory by a link with a bounded budget per turn.

Pure and fast: no toxcore (the Link below is tested in test_link.py; here the bytes go
straight from one Mux's data_to_send() to the other's receive_data()).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from toxbridge.errors import LocalProtocolError, StreamProtocolError
from toxbridge.streams import (
    CreditAvailable,
    Limits,
    Mux,
    PeerRestarted,
    Priority,
    ProtocolViolation,
    ResetCode,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from toxbridge.streams.wire import (
    MAX_FRAME,
    Data,
    Reset,
    decode_frame,
    encode_credit,
    encode_data,
    encode_fin,
    encode_hello,
    encode_open,
    encode_reset,
)

EA, EB, EC = b"AAAAAAAA", b"BBBBBBBB", b"CCCCCCCC"
SMALL = Limits(max_streams=4, stream_window=2048, bulk_window=4096, connection_window=8192,
               stream_send_buffer=3000, send_buffer=8000, receive_buffer=4096)


def frames_of(chunk: bytes) -> list:
    """Decode a data_to_send() chunk: whole frames only, each <= 1024 bytes."""
    frames, pos = [], 0
    while pos < len(chunk):
        parsed = decode_frame(chunk, pos)
        assert parsed is not None, "a chunk ended inside a frame"
        frame, end = parsed
        assert end - pos <= MAX_FRAME
        frames.append(frame)
        pos = end
    return frames


class Pair:
    """Two Muxes and the link between them. Events are kept per side; StreamData is
    consumed at once unless the stream is stalled."""

    def __init__(self, limits: Limits | None = None, limits_b: Limits | None = None) -> None:
        self.a = Mux(EA, initiator=True, limits=limits)
        self.b = Mux(EB, initiator=False, limits=limits_b or limits)
        self.events: dict[Mux, list] = {self.a: [], self.b: []}
        self.received: dict[tuple[Mux, int], bytearray] = defaultdict(bytearray)
        self.stalled: set[tuple[Mux, int]] = set()
        self.link_bytes = 0

    def other(self, mux: Mux) -> Mux:
        return self.b if mux is self.a else self.a

    def drain(self, mux: Mux) -> None:
        while (event := mux.next_event()) is not None:
            self.events[mux].append(event)
            if isinstance(event, StreamData):
                self.received[mux, event.stream_id] += event.data
                if (mux, event.stream_id) not in self.stalled:
                    mux.consume(event.stream_id, len(event.data))

    def send_chunks(self, src: Mux, chunks: int) -> int:
        """Move up to ``chunks`` Link frames from src to the other side; bytes moved."""
        dst, moved = self.other(src), 0
        for _ in range(chunks):
            chunk = src.data_to_send(MAX_FRAME)
            if not chunk:
                break
            assert len(chunk) <= MAX_FRAME
            frames_of(chunk)
            dst.receive_data(chunk)
            self.drain(dst)
            moved += len(chunk)
        self.drain(src)
        self.link_bytes += moved
        return moved

    def turn(self, chunks: int = 8) -> int:
        return self.send_chunks(self.a, chunks) + self.send_chunks(self.b, chunks)

    def settle(self, turns: int = 1000) -> None:
        for _ in range(turns):
            if not self.turn(64):
                return
        raise AssertionError("the pair never went quiet")

    def of(self, mux: Mux, kind: type) -> list:
        return [e for e in self.events[mux] if isinstance(e, kind)]


def synced_pair(limits: Limits | None = None) -> Pair:
    pair = Pair(limits)
    pair.settle()
    assert pair.a.synced and pair.b.synced
    return pair


# -- the handshake, ids, a stream's life -------------------------------------------------


def test_the_handshake_is_two_hellos_each_and_stream_frames_wait_for_it():
    pair = Pair()
    sid = pair.a.open_stream(1, Priority.INTERACTIVE, b"chat")
    assert pair.a.send(sid, b"hello") == 5
    first = frames_of(pair.a.data_to_send())
    assert [type(f).__name__ for f in first] == ["Hello"]  # nothing before the peer's HELLO
    assert first[0].echo == bytes(8) and first[0].initiator
    pair.b.receive_data(encode_data(99, b"stale"))  # before any HELLO: a predecessor's
    assert pair.b.next_event() is None
    pair.b.receive_data(b"".join(encode_hello(EA, None, initiator=True, stream_window=4096,
                                              connection_window=8192) for _ in range(1)))
    assert pair.b.next_event() is None
    pair.settle()
    assert pair.a.synced and pair.b.synced
    assert pair.a.statistics().frames_sent >= 2 and pair.b.statistics().frames_ignored == 1
    assert pair.of(pair.b, StreamOpened) == [StreamOpened(sid, 1, Priority.INTERACTIVE, b"chat")]
    assert pair.received[pair.b, sid] == b"hello"


def test_the_example_of_docs_wire_md_is_what_the_muxes_send():
    a = Mux(bytes.fromhex("a1a2a3a4a5a6a7a8"), initiator=True)
    b = Mux(bytes.fromhex("b1b2b3b4b5b6b7b8"), initiator=False)
    sid = a.open_stream(1, Priority.INTERACTIVE, b"chat")
    a.send(sid, b"hi")
    a.end(sid)
    sent = []
    for src, dst in ((a, b), (b, a), (a, b)):
        sent.append(src.data_to_send().hex())
        dst.receive_data(bytes.fromhex(sent[-1]))
        while dst.next_event() is not None:
            pass
    assert b.data_to_send() == b"" and a.data_to_send() == b""
    assert sent == [
        "01000000" "00001b" "000101" "a1a2a3a4a5a6a7a8" "0000000000000000" "00400000" "00800000",
        "01000000" "00001b" "000100" "b1b2b3b4b5b6b7b8" "a1a2a3a4a5a6a7a8" "00400000" "00800000",
        "01000000" "00001b" "000101" "a1a2a3a4a5a6a7a8" "b1b2b3b4b5b6b7b8" "00400000" "00800000"
        "0200000001000a" "0101" "00400000" "63686174"
        "03000000010002" "6869"
        "05000000010000",
    ]
    assert len(bytes.fromhex(sent[2])) == 67


def test_initiator_opens_odd_ids_and_acceptor_even_ones_without_collision():
    pair = synced_pair()
    ids_a = [pair.a.open_stream(1) for _ in range(3)]
    ids_b = [pair.b.open_stream(1) for _ in range(3)]
    assert ids_a == [1, 3, 5] and ids_b == [2, 4, 6]
    pair.settle()
    assert sorted(pair.b.stream_ids()) == sorted(pair.a.stream_ids()) == [1, 2, 3, 4, 5, 6]


def test_both_initiators_is_a_protocol_error():
    a, b = Mux(EA, initiator=True), Mux(EB, initiator=True)
    b.receive_data(a.data_to_send())
    with pytest.raises(StreamProtocolError, match="both sides are the initiator"):
        b.next_event()
    assert b.error and b.data_to_send() == b""
    with pytest.raises(StreamProtocolError):
        b.open_stream(1)


def test_a_stream_both_ways_with_half_close_then_its_state_is_reaped():
    pair = synced_pair()
    sid = pair.a.open_stream(3, Priority.BULK, b"file")
    payload = bytes(range(256)) * 100
    assert pair.a.send(sid, payload) == len(payload)
    pair.a.end(sid)
    pair.settle()
    assert pair.received[pair.b, sid] == payload
    assert pair.of(pair.b, StreamEnded) == [StreamEnded(sid)]
    with pytest.raises(LocalProtocolError, match="ended"):
        pair.a.send(sid, b"x")
    assert pair.b.send(sid, b"reply") == 5
    pair.b.end(sid)
    pair.settle()
    assert pair.received[pair.a, sid] == b"reply"
    assert pair.a.stream_ids() == pair.b.stream_ids() == []
    with pytest.raises(LocalProtocolError, match="closed"):
        pair.a.send(sid, b"x")
    with pytest.raises(LocalProtocolError, match="never opened"):
        pair.a.send(77, b"x")
    pair.a.consume(sid, 0)  # a closed stream: no-op
    pair.a.reset(sid)


def test_a_stream_waits_for_its_reader_to_consume_before_it_is_reaped():
    pair = synced_pair()
    sid = pair.a.open_stream(1)
    pair.stalled.add((pair.b, sid))
    pair.a.send(sid, b"x" * 100)
    pair.a.end(sid)
    pair.settle()
    pair.b.end(sid)
    pair.settle()
    assert pair.b.stream_ids() == [sid] and pair.b.unconsumed(sid) == 100
    pair.b.consume(sid, 100)
    assert pair.b.stream_ids() == []


def test_ten_thousand_streams_opened_and_closed_leave_no_state():
    pair = synced_pair()
    for i in range(10_000):
        mux = pair.a if i % 2 else pair.b
        peer = pair.other(mux)
        sid = mux.open_stream(1, Priority.INTERACTIVE)
        mux.send(sid, b"x")
        if i % 3 == 0:
            mux.reset(sid)  # before its OPEN went out: nothing is sent at all
        elif i % 3 == 1:
            pair.turn()
            mux.reset(sid)
        else:
            mux.end(sid)
        pair.turn()
        if sid in peer.stream_ids():
            peer.end(sid)
            pair.turn()
    pair.settle()
    assert pair.a.stream_ids() == pair.b.stream_ids() == []
    for mux in (pair.a, pair.b):
        assert not mux._tx._resets and not mux._tx._credits and not mux._tx._blocked
        assert mux.statistics().streams == 0 and mux.buffered_bytes == 0
        assert not pair.of(mux, ProtocolViolation)


# -- flow control ------------------------------------------------------------------------


def test_credit_goes_back_in_batches_not_per_byte():
    pair = synced_pair(Limits(stream_window=256 * 1024))
    sid = pair.a.open_stream(1, Priority.INTERACTIVE)  # window 256 KiB
    pair.stalled.add((pair.b, sid))
    data = b"y" * (512 * 1024)
    offered = 0
    for _ in range(2000):
        offered += pair.a.send(sid, data[offered:])
        pair.turn()
        for _ in range(pair.b.unconsumed(sid) // 1000):
            pair.b.consume(sid, 1000)  # many small consumes
        if offered == len(data) and pair.a.buffered_bytes == 0:
            break
    pair.settle()
    assert pair.received[pair.b, sid] == data[: len(pair.received[pair.b, sid])]
    # 512 KiB through a 256 KiB window credited each quarter: about 8 stream credits (+1-2
    # for the connection), never one per consume (~500).
    credits = pair.b.statistics().credit_frames_sent
    assert 4 <= credits <= 12, credits


def test_a_stalled_reader_stops_only_its_stream():
    pair = synced_pair()
    slow = pair.a.open_stream(2, Priority.BULK)
    fast = pair.a.open_stream(2, Priority.BULK)
    pair.stalled.add((pair.b, slow))
    blob = bytes(64 * 1024)
    for _ in range(800):  # fill the slow stream's window (4 MiB) first
        pair.a.send(slow, blob)
        pair.a.send(fast, blob)
        pair.turn(16)
    assert len(pair.received[pair.b, slow]) == Limits().bulk_window  # at its window, no more
    before_fast, before_link = len(pair.received[pair.b, fast]), pair.link_bytes
    for _ in range(300):
        pair.a.send(slow, blob)
        pair.a.send(fast, blob)
        pair.turn(16)
    assert len(pair.received[pair.b, slow]) == Limits().bulk_window
    share = (len(pair.received[pair.b, fast]) - before_fast) / (pair.link_bytes - before_link)
    assert share >= 0.9, share
    assert pair.a.buffered_bytes <= Limits().send_buffer


def test_stalled_readers_together_can_fill_the_connection_window_until_one_is_reset():
    pair = synced_pair()  # the trade-off docs/wire.md §3 states: 2 x 4 MiB = 8 MiB
    stalled = [pair.a.open_stream(2, Priority.BULK) for _ in range(4)]
    other = pair.a.open_stream(2, Priority.BULK)
    pair.stalled.update((pair.b, sid) for sid in stalled)
    blob = bytes(64 * 1024)
    for _ in range(400):
        for sid in stalled:
            pair.a.send(sid, blob)
        pair.turn(64)
    assert pair.b.statistics().unconsumed_bytes == Limits().connection_window
    pair.a.send(other, blob)
    for _ in range(20):
        pair.turn(64)
    assert len(pair.received[pair.b, other]) == 0  # the connection has no credit left
    pair.b.reset(stalled[0])  # its reader is gone: its bytes give their credit back
    for _ in range(20):
        pair.turn(64)
    assert len(pair.received[pair.b, other]) == len(blob)


def test_send_takes_only_what_fits_and_credit_available_says_when_to_go_on():
    pair = synced_pair()
    limit = Limits().stream_send_buffer
    sid = pair.a.open_stream(1, Priority.INTERACTIVE)
    assert pair.a.send(sid, bytes(limit + 10_000)) == limit
    assert pair.a.send(sid, b"more") == 0 and pair.a.send_room(sid) == 0
    pair.turn(4)
    assert pair.of(pair.a, CreditAvailable) == []  # less than a quarter free yet
    pair.settle()
    assert pair.of(pair.a, CreditAvailable) == [CreditAvailable(sid)]  # once
    assert pair.a.send_room(sid) == limit


def test_the_per_peer_send_buffer_bounds_all_streams_together():
    pair = synced_pair(SMALL)
    ids = [pair.a.open_stream(1) for _ in range(4)]
    taken = [pair.a.send(sid, bytes(5000)) for sid in ids]
    assert taken == [3000, 3000, 2000, 0] and pair.a.buffered_bytes == SMALL.send_buffer


# -- scheduling ----------------------------------------------------------------------------


def test_interactive_data_goes_out_before_queued_bulk_data():
    pair = synced_pair()
    bulk = pair.a.open_stream(2, Priority.BULK)
    pair.a.send(bulk, bytes(200_000))
    pair.turn(4)
    chat = pair.a.open_stream(1, Priority.INTERACTIVE)
    pair.a.send(chat, b"hi there")
    frames = frames_of(pair.a.data_to_send())
    assert [(type(f).__name__, f.stream_id) for f in frames[:2]] == [("Open", chat), ("Data", chat)]
    assert frames[1].data == b"hi there"
    control = pair.a.open_stream(0, Priority.CONTROL)
    pair.a.send(chat, b"x" * 3000)
    pair.a.send(control, b"ctl")
    frames = frames_of(pair.a.data_to_send())
    assert [f.stream_id for f in frames[:2]] == [control, control]


def test_a_batch_with_interactive_frames_carries_no_bulk_behind_them():
    # The peer's Link hands a batch up only once all of it arrived: bulk frames after the
    # chat line in one batch would hold it back by their bytes.
    pair = synced_pair()
    bulk = pair.a.open_stream(2, Priority.BULK)
    pair.a.send(bulk, bytes(200_000))
    pair.turn(4)
    chat = pair.a.open_stream(1, Priority.INTERACTIVE)
    pair.a.send(chat, b"hi there")
    frames = frames_of(pair.a.data_to_send(4096))
    assert [(type(f).__name__, f.stream_id) for f in frames] == [("Open", chat), ("Data", chat)]
    frames = frames_of(pair.a.data_to_send(4096))  # the next batch is bulk, and full
    assert {f.stream_id for f in frames} == {bulk} and sum(len(f.data) for f in frames) > 4000
    control = pair.a.open_stream(0, Priority.CONTROL)
    pair.a.send(control, b"ctl")
    pair.a.send(chat, b"x" * 1500)
    frames = frames_of(pair.a.data_to_send(4096))  # control and interactive share a batch
    assert [f.stream_id for f in frames if isinstance(f, Data)] == [control, chat, chat]


def test_two_bulk_streams_share_the_link_within_ten_percent():
    pair = synced_pair()
    one = pair.a.open_stream(2, Priority.BULK)
    two = pair.a.open_stream(2, Priority.BULK)
    for _ in range(200):
        while pair.a.send(one, bytes(1024)) == 1024:  # small writes...
            pass
        while pair.a.send(two, bytes(16 * 1024)) == 16 * 1024:  # ...against large ones
            pass
        pair.turn(8)
    got_one, got_two = len(pair.received[pair.b, one]), len(pair.received[pair.b, two])
    assert got_one > 100_000
    assert abs(got_one - got_two) <= 0.1 * max(got_one, got_two), (got_one, got_two)


def test_round_robin_serves_many_streams_in_turn():
    pair = synced_pair()
    ids = [pair.a.open_stream(2, Priority.BULK) for _ in range(8)]
    for sid in ids:
        pair.a.send(sid, bytes(50_000))
    order = []
    for _ in range(17):
        order += [f.stream_id for f in frames_of(pair.a.data_to_send()) if isinstance(f, Data)]
    assert order[1:17] == ids[1:] + ids + ids[:1]  # the first chunk also held the OPENs


# -- bad peer input ------------------------------------------------------------------------


class Fake:
    """A hand-written peer: raw frames into a real Mux (the acceptor, even ids)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.mux = Mux(EB, initiator=False, limits=limits)
        hello = frames_of(self.mux.data_to_send())[0]
        assert hello.echo == bytes(8)
        self.feed(encode_hello(EA, EB, initiator=True, stream_window=65536,
                               connection_window=1 << 20))
        assert frames_of(self.mux.data_to_send())[0].echo == EA

    def feed(self, data: bytes) -> list:
        self.mux.receive_data(data)
        events = []
        while (event := self.mux.next_event()) is not None:
            events.append(event)
        return events

    def out(self) -> list:
        frames = []
        while chunk := self.mux.data_to_send():
            frames += frames_of(chunk)
        return frames


def test_data_beyond_the_stream_credit_resets_that_stream_only():
    fake = Fake()
    window = Limits().stream_window
    fake.feed(encode_open(1, 1, Priority.INTERACTIVE, 4096, b"") +
              encode_open(3, 1, Priority.INTERACTIVE, 4096, b""))
    chunk = encode_data(1, bytes(1000))
    for _ in range(window // 1000):
        fake.feed(chunk)
    events = fake.feed(encode_data(1, bytes(1000)))  # 1000 past the window of stream 1
    assert [type(e) for e in events] == [ProtocolViolation, StreamReset]
    assert events[1] == StreamReset(1, ResetCode.FLOW_CONTROL, False)
    assert fake.mux.unconsumed(1) == 0 and 1 not in fake.mux.stream_ids()
    assert fake.feed(encode_data(1, b"late")) == []  # in flight before our RESET: dropped
    assert fake.feed(encode_data(3, b"ok")) == [StreamData(3, b"ok")]
    resets = [f for f in fake.out() if isinstance(f, Reset)]
    assert resets == [Reset(1, ResetCode.FLOW_CONTROL)]
    assert fake.mux.statistics().discarded_bytes == 1004


def test_frames_for_never_opened_streams_are_violations_and_change_nothing():
    fake = Fake()
    fake.feed(encode_open(1, 1, Priority.BULK, 4096, b""))
    for frame in (encode_data(5, b"x"), encode_credit(7, 10), encode_fin(9),
                  encode_reset(11, 0), encode_data(2, b"ours?"), encode_fin(4)):
        events = fake.feed(frame)
        assert len(events) == 1 and isinstance(events[0], ProtocolViolation), events
        assert "never opened" in events[0].reason
    assert fake.mux.stream_ids() == [1]
    assert fake.feed(encode_data(1, b"fine")) == [StreamData(1, b"fine")]
    assert fake.mux.statistics().violations == 6
    assert not [f for f in fake.out() if isinstance(f, Reset)]  # no RESET for made-up ids


def test_an_oversize_open_header_is_refused_and_the_others_go_on():
    fake = Fake()
    events = fake.feed(encode_open(1, 1, Priority.BULK, 4096, bytes(257)))
    assert [type(e) for e in events] == [ProtocolViolation] and "257" in events[0].reason
    assert fake.feed(encode_open(3, 1, Priority.BULK, 4096, bytes(256)))[0] == StreamOpened(
        3, 1, Priority.BULK, bytes(256))
    assert fake.feed(encode_data(1, b"x")) == []  # the refused stream's data: dropped
    assert Reset(1, ResetCode.PROTOCOL_ERROR) in fake.out()


def test_more_streams_than_the_limit_are_reset_with_too_many_streams():
    pair = Pair(limits=Limits(), limits_b=SMALL)
    pair.settle()
    ids = [pair.a.open_stream(1, Priority.INTERACTIVE) for _ in range(6)]
    pair.settle()
    assert sorted(pair.b.stream_ids()) == ids[:4]
    assert pair.of(pair.a, StreamReset) == [StreamReset(sid, ResetCode.TOO_MANY_STREAMS, True)
                                            for sid in ids[4:]]
    assert pair.b.statistics().streams_refused == 2
    with pytest.raises(LocalProtocolError, match="the limit"):
        for _ in range(5):
            pair.b.open_stream(1)


def test_stream_rule_breaks_reset_the_stream():
    fake = Fake()
    fake.feed(encode_open(1, 1, Priority.BULK, 4096, b"") + encode_fin(1))
    events = fake.feed(encode_data(1, b"after fin"))
    assert events[-1] == StreamReset(1, ResetCode.PROTOCOL_ERROR, False)
    fake.feed(encode_open(3, 1, Priority.BULK, 4096, b"") + encode_fin(3))
    assert fake.feed(encode_fin(3))[-1] == StreamReset(3, ResetCode.PROTOCOL_ERROR, False)


def test_a_peer_reset_reaches_the_app_with_its_code_known_or_not():
    fake = Fake()
    fake.feed(encode_open(1, 1, Priority.BULK, 4096, b"") + encode_open(3, 1, 0, 4096, b""))
    fake.feed(encode_data(1, bytes(500)))
    assert fake.mux.statistics().unconsumed_bytes == 500
    events = fake.feed(encode_reset(1, ResetCode.REFUSED) + encode_reset(3, 0xBEEF))
    assert events == [StreamReset(1, ResetCode.REFUSED, True), StreamReset(3, 0xBEEF, True)]
    assert type(events[1].code) is int and events[0].code.name == "REFUSED"
    # The reset stream's unconsumed bytes count no more against the connection window.
    assert fake.mux.statistics().unconsumed_bytes == 0 and fake.mux.stream_ids() == []


@pytest.mark.parametrize("frames, message", [
    ([encode_open(2, 1, 1, 4096, b"")], "not a new id of its own"),  # our parity
    ([encode_open(3, 1, 1, 4096, b""), encode_open(1, 1, 1, 4096, b"")], "not a new id"),
    ([encode_open(1, 1, 2, 4096, b""), encode_open(3, 1, 2, 4096, b"")]
     + [encode_data(1, bytes(1000)), encode_data(3, bytes(1000))] * 600,
     "beyond the connection's credit"),  # each stream within its window, both beyond
    ([bytes([0x42, 0, 0, 0, 1, 0, 0])], "unknown stream frame type 0x42"),
])
def test_whole_mux_violations_put_it_in_the_error_state(frames, message):
    fake = Fake(Limits(stream_window=1 << 18, bulk_window=1 << 20, connection_window=1 << 20))
    with pytest.raises(StreamProtocolError, match=message):
        for frame in frames:
            fake.feed(frame)
    assert fake.mux.error
    with pytest.raises(StreamProtocolError):
        fake.mux.next_event()
    with pytest.raises(StreamProtocolError):
        fake.mux.receive_data(b"")


def test_input_is_bounded_and_a_frame_may_arrive_byte_by_byte():
    fake = Fake(SMALL)
    with pytest.raises(LocalProtocolError, match="receive buffer full"):
        fake.mux.receive_data(bytes(SMALL.receive_buffer + 1))
    wire = encode_open(1, 9, Priority.CONTROL, 4096, b"h") + encode_data(1, b"abc")
    events = []
    for i in range(len(wire)):
        events += fake.feed(wire[i : i + 1])
    assert events == [StreamOpened(1, 9, Priority.CONTROL, b"h"), StreamData(1, b"abc")]


def test_local_misuse_raises_local_protocol_error():
    mux = Mux(EA, initiator=True)
    for call in (lambda: mux.open_stream(256), lambda: mux.open_stream(1, 1, bytes(257)),
                 lambda: mux.open_stream(1, 7), lambda: mux.data_to_send(100),
                 lambda: mux.consume(9, 1), lambda: mux.reset(9), lambda: mux.end(3),
                 lambda: Mux(bytes(8), initiator=True), lambda: Limits(stream_window=10),
                 lambda: Limits(bulk_window=1 << 30)):
        with pytest.raises(LocalProtocolError):
            call()
    sid = mux.open_stream(1)
    with pytest.raises(LocalProtocolError, match="unconsumed"):
        mux.consume(sid, 1)
    with pytest.raises(LocalProtocolError, match="u16"):
        mux.reset(sid, 70000)


_frames = st.one_of(
    st.builds(lambda sid, prio, n: encode_open(sid, 1, prio, 1017, bytes(n)),
              st.integers(1, 40), st.integers(0, 2), st.sampled_from([0, 10, 256, 257, 600])),
    st.builds(lambda sid, n: encode_data(sid, bytes(n)), st.integers(1, 40),
              st.sampled_from([1, 500, 1017])),
    st.builds(encode_credit, st.integers(0, 40), st.integers(1, 2**32 - 1)),
    st.builds(encode_fin, st.integers(1, 40)),
    st.builds(encode_reset, st.integers(1, 40), st.integers(0, 0xFFFF)),
    st.builds(lambda a, b, c: encode_hello(a, b, initiator=True, stream_window=1017,
                                           connection_window=4096),
              st.sampled_from([EA, EC]), st.sampled_from([EB, EC, None]), st.none()),
    st.binary(min_size=1, max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_frames, st.booleans()), max_size=60))
def test_a_hostile_peer_gets_errors_or_resets_and_never_grows_our_memory(script):
    fake = Fake(SMALL)
    mine = fake.mux.open_stream(1, Priority.INTERACTIVE)
    fake.mux.send(mine, bytes(2000))
    try:
        for frame, drain in script:
            for event in fake.feed(frame):
                if isinstance(event, StreamData) and event.stream_id % 3:
                    fake.mux.consume(event.stream_id, len(event.data))
            if drain:
                fake.out()
            assert fake.mux.unparsed_bytes < SMALL.receive_buffer
            assert fake.mux.buffered_bytes <= SMALL.send_buffer
            assert fake.mux.statistics().unconsumed_bytes <= SMALL.connection_window
            assert len(fake.mux.stream_ids()) <= 2 * SMALL.max_streams
            assert len(fake.mux._tx._resets) <= 4 * SMALL.max_streams
    except StreamProtocolError:
        assert fake.mux.error


# -- a peer restart ------------------------------------------------------------------------


def test_a_restarted_peer_resets_every_stream_and_new_ones_work():
    pair = synced_pair()
    s1 = pair.a.open_stream(1, Priority.INTERACTIVE)
    s2 = pair.b.open_stream(2, Priority.BULK)
    pair.a.send(s1, b"before")
    pair.settle()
    pair.a.send(s1, b"lost with the old peer")  # in flight when B dies
    in_flight = pair.a.data_to_send()
    pair.b = Mux(EC, initiator=False)  # the peer daemon restarted
    pair.events[pair.b] = []
    pair.b.receive_data(in_flight)  # the Link resends what the old peer never acknowledged
    pair.drain(pair.b)
    pair.settle()
    assert pair.b.statistics().frames_ignored >= 1 and pair.of(pair.b, StreamData) == []
    restarted = pair.of(pair.a, PeerRestarted)
    assert restarted == [PeerRestarted(EB, EC)]
    assert {e.stream_id: e.code for e in pair.of(pair.a, StreamReset)} == {
        s1: ResetCode.PEER_RESTARTED, s2: ResetCode.PEER_RESTARTED}
    assert pair.a.stream_ids() == [] and pair.a.buffered_bytes == 0
    s3 = pair.a.open_stream(1, Priority.INTERACTIVE)
    assert s3 > s1  # ids never go back: a late event for s1 cannot be mistaken for s3
    pair.a.send(s3, b"after")
    s4 = pair.b.open_stream(1)
    assert s4 == s2 == 2  # the new peer starts its ids over...
    pair.b.send(s4, b"new b")
    pair.settle()
    assert pair.received[pair.b, s3] == b"after"
    (opened,) = pair.of(pair.a, StreamOpened)[-1:]
    assert opened.stream_id == 4  # ...but a's ids for them do not: s2 stays a closed stream
    assert pair.received[pair.a, 4] == b"new b"
    pair.a.consume(s2, 10)  # a late consume for the old stream: a no-op, not the new one's
    assert pair.a.unconsumed(4) == 0
    pair.a.send(4, b"to the new b")
    pair.a.end(4)
    pair.settle()
    assert pair.received[pair.b, s4] == b"to the new b"
    assert pair.of(pair.b, StreamEnded) == [StreamEnded(s4)]


def test_frames_meant_for_a_predecessor_are_ignored_after_a_quick_restart():
    a, b = Mux(EA, initiator=True), Mux(EB, initiator=False)
    sid = a.open_stream(1, Priority.INTERACTIVE)
    a.send(sid, b"for the old b")
    b.receive_data(a.data_to_send())  # HELLO(A, none)
    assert b.next_event() is None
    a.receive_data(b.data_to_send())  # HELLO(B, A): a is synced with b
    assert a.next_event() is None
    in_flight = a.data_to_send()  # HELLO(A, B), OPEN, DATA: b dies before reading them
    assert [type(f).__name__ for f in frames_of(in_flight)] == ["Hello", "Open", "Data"]
    b2 = Mux(EC, initiator=False)
    b2.receive_data(in_flight)  # resent by the Link to b's successor
    assert b2.next_event() is None  # the HELLO echoes EB, not EC: the rest is not for b2
    assert b2.stream_ids() == [] and b2.statistics().frames_ignored == 2
    pair = Pair()
    pair.a, pair.b = a, b2
    pair.events = {a: [], b2: []}
    pair.settle()
    assert pair.of(a, PeerRestarted) == [PeerRestarted(EB, EC)]
    assert pair.of(a, StreamReset) == [StreamReset(sid, ResetCode.PEER_RESTARTED, True)]
    assert a.synced and b2.synced


# -- any interleaving ------------------------------------------------------------------------


class MuxMachine(RuleBasedStateMachine):
    """Random opens, sends, ends, resets, consumes and link turns on both sides: each
    stream's bytes arrive exactly, in order, once (a prefix after a reset), and no buffer
    ever exceeds its limit."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair(SMALL)
        self.pair.stalled = _AllStalled()  # the rules consume, the pair never does
        self.sent: dict[tuple[Mux, int], bytearray] = defaultdict(bytearray)
        self.resets: set[int] = set()
        self.counter = 0

    def _side(self, a: bool) -> Mux:
        return self.pair.a if a else self.pair.b

    def _live(self, mux: Mux) -> list[int]:
        return sorted(mux.stream_ids())

    @rule(a=st.booleans(), priority=st.sampled_from(list(Priority)))
    def open(self, a, priority):
        mux = self._side(a)
        try:
            mux.open_stream(1, priority, b"h")
        except LocalProtocolError as exc:
            assert "the limit" in str(exc)

    @rule(a=st.booleans(), pick=st.integers(0, 7), size=st.sampled_from([1, 100, 1017, 5000]))
    def send(self, a, pick, size):
        mux = self._side(a)
        ids = [sid for sid in self._live(mux) if not mux._streams[sid].ended]
        if ids:
            sid = ids[pick % len(ids)]
            self.counter += 1
            data = bytes([self.counter % 251]) * size
            n = mux.send(sid, data)
            self.sent[mux, sid] += data[:n]

    @rule(a=st.booleans(), pick=st.integers(0, 7))
    def end(self, a, pick):
        mux = self._side(a)
        if ids := self._live(mux):
            mux.end(ids[pick % len(ids)])

    @rule(a=st.booleans(), pick=st.integers(0, 7))
    def reset(self, a, pick):
        mux = self._side(a)
        if ids := self._live(mux):
            sid = ids[pick % len(ids)]
            self.resets.add(sid)
            mux.reset(sid)

    @rule(a=st.booleans(), pick=st.integers(0, 7), part=st.sampled_from([1, 2]))
    def consume(self, a, pick, part):
        mux = self._side(a)
        if ids := self._live(mux):
            sid = ids[pick % len(ids)]
            mux.consume(sid, mux.unconsumed(sid) // part)

    @rule(chunks=st.integers(1, 6), a_first=st.booleans())
    def link(self, chunks, a_first):
        first = self.pair.a if a_first else self.pair.b
        self.pair.send_chunks(first, chunks)
        self.pair.send_chunks(self.pair.other(first), chunks)

    @invariant()
    def delivered_is_a_prefix_of_sent(self):
        for (mux, sid), got in self.pair.received.items():
            sent = self.sent[self.pair.other(mux), sid]
            assert got == sent[: len(got)], (sid, len(got), len(sent))

    @invariant()
    def buffers_are_bounded(self):
        for mux in (self.pair.a, self.pair.b):
            assert mux.buffered_bytes <= SMALL.send_buffer
            assert mux.unparsed_bytes < SMALL.receive_buffer
            assert mux.statistics().unconsumed_bytes <= SMALL.connection_window
            for sid in mux.stream_ids():
                stream = mux._streams[sid]
                assert len(stream.buf) <= SMALL.stream_send_buffer
                assert mux.unconsumed(sid) <= stream.recv.window
            assert len(mux.stream_ids()) <= 2 * SMALL.max_streams

    def teardown(self):
        """Consume everything and let the link run dry: every stream not reset got all."""
        pair = self.pair
        pair.stalled = set()
        for mux in (pair.a, pair.b):
            for sid in mux.stream_ids():
                mux.consume(sid, mux.unconsumed(sid))
        for _ in range(200):
            for mux in (pair.a, pair.b):
                for sid in mux.stream_ids():
                    mux.consume(sid, mux.unconsumed(sid))
            if not pair.turn(64) and not any(m.buffered_bytes for m in (pair.a, pair.b)):
                break
        for (mux, sid), sent in self.sent.items():
            if sid in self.resets or any(isinstance(e, StreamReset) and e.stream_id == sid
                                         for e in pair.events[pair.a] + pair.events[pair.b]):
                continue
            assert pair.received[pair.other(mux), sid] == sent, sid
        for mux in (pair.a, pair.b):
            ended = [e.stream_id for e in pair.of(mux, StreamEnded)]
            assert len(ended) == len(set(ended))  # each FIN once
            assert not pair.of(mux, ProtocolViolation)


class _AllStalled(set):
    def __contains__(self, item) -> bool:
        return True


MuxMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_any_interleaving_delivers_each_stream_exactly_in_order_once = MuxMachine.TestCase
