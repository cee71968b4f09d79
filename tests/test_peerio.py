"""The channel as a mux stream over two real Links joined by hand (no Tox: this tests the
shell's wiring of Link, Mux and channel; the daemon tests cross real toxcore)."""

from __future__ import annotations

import random

import pytest

from toxbridge.chanstream import ChannelDecoder, encode_frames
from toxbridge.errors import RemoteProtocolError
from toxbridge.link import Link
from toxbridge.peerio import LINK_FRAME, UNSENT_LOW, PeerIO
from toxbridge.toxloop import FrameQueue

KEY_A, KEY_B = bytes(31) + b"\x01", bytes(31) + b"\x02"  # A is the mux initiator


class Side:
    def __init__(self, own: bytes, peer: bytes, session: bytes) -> None:
        self.errors: list[tuple[str, str]] = []
        self.link = Link(session, window=1 << 20, max_frame=LINK_FRAME)
        self.io = PeerIO(self.link, own, peer, report=lambda c, m: self.errors.append((c, m)))
        self.outbound = FrameQueue(64)
        self.inbound = FrameQueue(4)
        self.got: list[bytes] = []


def run(a: Side, b: Side, turns: int = 2000, *, read: bool = True) -> None:
    """Move packets both ways until nothing moves (bounded)."""
    for _ in range(turns):
        moved = False
        for me, peer in ((a, b), (b, a)):
            me.io.take_link_frames()
            me.io.deliver(me.inbound, 64)
            if read:
                for run_ in me.inbound.take(64):
                    dec = ChannelDecoder(1 << 20)
                    dec.receive(run_)
                    while (r := dec.take_run(1)):
                        me.got.append(r[3:])
            me.io.fill(me.outbound)
            while (p := me.link.next_packet(flush=True)) is not None:
                peer.link.receive_packet(p)
                moved = True
        if not moved and not len(a.outbound) and not len(b.outbound):
            return


def pair() -> tuple[Side, Side]:
    a, b = Side(KEY_A, KEY_B, b"A" * 16), Side(KEY_B, KEY_A, b"B" * 16)
    a.link.connection_made()
    b.link.connection_made()
    return a, b


def test_frames_of_every_size_keep_boundaries_and_order_both_ways() -> None:
    rng = random.Random(7)
    a, b = pair()
    frames = [rng.randbytes(rng.choice([0, 1, 1016, 1017, 1018, 1024, rng.randrange(1025)]))
              for _ in range(3000)]
    sent = {a: 0, b: 0}
    for _ in range(20000):
        for side in (a, b):
            while sent[side] < len(frames) and side.outbound.put_nowait(frames[sent[side]]):
                sent[side] += 1
        run(a, b, 1)
        if len(a.got) == len(b.got) == len(frames):
            break
    assert a.got == frames and b.got == frames
    assert a.io.channel_open and b.io.channel_open
    assert a.errors == b.errors == []


def test_a_slow_app_holds_only_the_channel_window_and_loses_nothing() -> None:
    a, b = pair()
    frames = [bytes([i % 256]) * 1000 for i in range(6000)]  # more than the window (4 MiB)
    i = 0
    for _ in range(8000):  # b's app reads nothing
        while i < len(frames) and a.outbound.put_nowait(frames[i]):
            i += 1
        run(a, b, 1, read=False)
    # bounded: b holds its inbound runs plus at most the stream's window
    assert len(b.io._decoder) <= b.io.limits.stream_window
    assert b.io.mux.statistics().unconsumed_bytes <= b.io.limits.stream_window
    assert a.link.unsent_bytes <= UNSENT_LOW + 1024 + 2
    assert i < len(frames)  # a's app was stopped
    for _ in range(20000):
        while i < len(frames) and a.outbound.put_nowait(frames[i]):
            i += 1
        run(a, b, 1)
        if len(b.got) == len(frames):
            break
    assert b.got == frames


@pytest.mark.parametrize("restarted", ["acceptor", "initiator"])
def test_a_peer_restart_opens_a_fresh_channel_and_it_carries_frames(restarted: str) -> None:
    a, b = pair()
    a.outbound.put_nowait(b"before")
    run(a, b)
    assert b.got == [b"before"]
    # one side's daemon restarts: a new Link and mux on the same keys
    if restarted == "acceptor":
        b = Side(KEY_B, KEY_A, b"C" * 16)
    else:
        a = Side(KEY_A, KEY_B, b"C" * 16)
    a.link.connection_made()
    b.link.connection_made()
    run(a, b)
    for i in range(50):
        a.outbound.put_nowait(b"a%d" % i)
        b.outbound.put_nowait(b"b%d" % i)
    run(a, b)
    assert b.got[-50:] == [b"a%d" % i for i in range(50)]
    assert a.got[-50:] == [b"b%d" % i for i in range(50)]
    assert a.errors == b.errors == []


def test_bytes_that_are_not_channel_frames_are_reported_and_the_channel_restarts() -> None:
    a, b = pair()
    run(a, b)
    a.io.mux.send(a.io._channel, b"\x02\x00\x01x")  # kind 2: not a DATA frame
    run(a, b)
    assert [c for c, _ in b.errors] == ["peer_protocol"]
    a.outbound.put_nowait(b"after")
    run(a, b)
    assert b.got == [b"after"]


def test_channel_decoder_keeps_whole_frames_of_a_closed_stream() -> None:
    dec = ChannelDecoder(4096)
    dec.receive(encode_frames([b"one", b"two"]) + b"\x01\x00\x09par")
    assert dec.drop_partial() == 12
    assert dec.take_run(64) == encode_frames([b"one", b"two"])
    dec.receive(b"\x01\x04\x01")
    with pytest.raises(RemoteProtocolError):
        dec.take_run(64)


def test_local_streams_open_accept_data_fin_and_reset_through_the_tables() -> None:
    from toxbridge.localstreams import LocalStream, StreamTable
    from toxbridge.streams import ResetCode

    a, b = pair()
    for side in (a, b):
        side.io.table = StreamTable()
    pokes = {"a": 0, "b": 0}

    def poker(name):
        def poke():
            pokes[name] += 1
        return poke
    acc, opener = LocalStream(poker("b")), LocalStream(poker("a"))
    acc.kind = opener.kind = 40
    opener.header = b"hdr"
    assert b.io.table.request_accept(acc)
    a.io.table.request_open(opener)
    run(a, b)
    assert opener.sid is not None and acc.sid is not None and acc.header == b"hdr"
    opener.to_peer += b"x" * 100_000
    opener.end_out = True
    a.io.table.touch(opener)
    for _ in range(200):  # the acceptor's app takes what arrives
        run(a, b, 1)
        with acc.lock:
            n = len(acc.to_app)
            acc.taken += n
            acc.written += n
            del acc.to_app[:]
        b.io.table.touch(acc)
        if acc.end_in:
            break
    assert acc.written == 100_000 and acc.end_in and opener.fin_sent
    assert pokes["b"] > 0 and pokes["a"] > 0
    # another stream, reset by its acceptor: the opener learns the code
    acc2, op2 = LocalStream(lambda: None), LocalStream(lambda: None)
    acc2.kind = op2.kind = 41
    b.io.table.request_accept(acc2)
    a.io.table.request_open(op2)
    run(a, b)
    acc2.reset_out = ResetCode.CANCELLED
    b.io.table.touch(acc2)
    run(a, b)
    assert op2.reset_in == ResetCode.CANCELLED
    # an OPEN nobody accepts is refused
    op3 = LocalStream(lambda: None)
    op3.kind = 42
    a.io.table.request_open(op3)
    run(a, b)
    assert op3.reset_in == ResetCode.REFUSED


def _sends_into_the_void(src: Side, dst: Side, frames: list[bytes], turns: int) -> int:
    """``src``'s app writes ``frames`` and ``dst`` takes all it gets (and acks it), but
    every packet of the last turns is lost: ``dst`` crashes with frames in flight and in
    ``src``'s mux. Returns how many frames the app wrote."""
    i = 0
    for turn in range(turns):
        while i < len(frames) and src.outbound.put_nowait(frames[i]):
            i += 1
        src.io.fill(src.outbound)
        lost = turn >= turns - 2
        while (p := src.link.next_packet(flush=True)) is not None:
            if not lost:
                dst.link.receive_packet(p)
        dst.io.take_link_frames()
        dst.io.deliver(dst.inbound, 64)
        for run_ in dst.inbound.take(64):
            dec = ChannelDecoder(1 << 20)
            dec.receive(run_)
            while (r := dec.take_run(1)):
                dst.got.append(r[3:])
        dst.io.fill(dst.outbound)
        while (p := dst.link.next_packet(flush=True)) is not None:
            src.link.receive_packet(p)  # its acks arrive: nothing it got is sent again
    return i


@pytest.mark.parametrize("restarted", ["acceptor", "initiator"])
def test_frames_in_flight_when_the_peer_daemon_dies_reach_its_successor_once_in_order(
        restarted: str) -> None:
    a, b = pair()
    keys = (KEY_A, KEY_B)
    if restarted == "initiator":
        a, b = b, a  # b is the side that dies, a survives and sends
        keys = (KEY_B, KEY_A)
    run(a, b)
    rng = random.Random(3)
    frames = [b"%05d" % i + rng.randbytes(rng.choice([0, 500, 1019])) for i in range(600)]
    i = _sends_into_the_void(a, b, frames[:300], 8)
    got_before = list(b.got)
    assert 0 < len(got_before) < i  # some arrived, some were lost with the dead daemon
    # b's daemon restarts: a new Link and mux on the same key; a's app keeps writing
    b2 = Side(keys[1], keys[0], b"C" * 16)
    a.link.connection_lost()
    a.link.connection_made()
    b2.link.connection_made()
    for _ in range(20000):
        while i < len(frames) and a.outbound.put_nowait(frames[i]):
            i += 1
        run(a, b2, 1)
        if len(got_before) + len(b2.got) >= len(frames):
            break
    assert got_before + b2.got == frames  # once each, in order
    assert a.io._resend.resent > 0
    assert a.errors == b2.errors == []


def _until_the_link_sees(a: Side, b: Side, restarts: int) -> None:
    """Only Link packets from ``b`` to ``a`` (no frame taken) until ``a``'s Link has seen
    ``restarts`` new peer sessions, or (``restarts`` 0) ``b``'s session at all."""
    def seen() -> bool:
        return (a.link.peer_restarts >= restarts if restarts
                else a.link.peer_session_id is not None)
    for _ in range(50):
        while not seen() and (p := b.link.next_packet(flush=True)) is not None:
            a.link.receive_packet(p)
        if seen():
            return
        while (p := a.link.next_packet(flush=True)) is not None:
            b.link.receive_packet(p)
    raise AssertionError("the Link never saw the session")


@pytest.mark.parametrize("first", ["lived", "died_before_its_hello"])
def test_a_stream_opened_after_the_link_saw_a_restart_waits_for_the_new_mux(first) -> None:
    """The Link learns of a restarted peer (its HELLO) before the new mux's HELLO arrives in
    a frame: an open in between goes to the new peer, not to its dead predecessor (where
    the new mux ignored it and the HELLO after reset it, and the acceptor waited forever).
    The predecessor may have died before its mux's HELLO reached us: no PeerRestarted then."""
    from toxbridge.localstreams import LocalStream, StreamTable

    a, b = pair()
    a.io.table = StreamTable()
    if first == "lived":
        run(a, b)
    else:
        _until_the_link_sees(a, b, 0)
    b2 = Side(KEY_B, KEY_A, b"C" * 16)
    b2.io.table = StreamTable()
    acc = LocalStream(lambda: None)
    acc.kind = 40
    assert b2.io.table.request_accept(acc)
    a.link.connection_lost()
    a.link.connection_made()
    b2.link.connection_made()
    _until_the_link_sees(a, b2, 1)
    assert a.io.mux.statistics().peer_restarts == 0
    opener = LocalStream(lambda: None)
    opener.kind = 40
    a.io.take_link_frames()
    a.io.table.request_open(opener)
    a.io.fill(a.outbound)
    run(a, b2)
    assert opener.reset_in is None and opener.failure is None
    assert acc.sid is not None  # the new peer accepted it


def _open_local(a: Side, b: Side, kind: int = 41):
    """An opener on ``a`` and its acceptor on ``b``, each counting its pokes."""
    from toxbridge.localstreams import LocalStream, StreamTable

    for side in (a, b):
        side.io.table = StreamTable()
    pokes = {"opener": 0, "acceptor": 0}

    def poker(name):
        def poke():
            pokes[name] += 1
        return poke
    opener, acc = LocalStream(poker("opener")), LocalStream(poker("acceptor"))
    opener.kind = acc.kind = kind
    assert b.io.table.request_accept(acc)
    a.io.table.request_open(opener)
    run(a, b)
    assert opener.sid is not None and acc.sid is not None
    pokes["opener"] = pokes["acceptor"] = 0
    return opener, acc, pokes


def test_a_reader_that_waits_for_room_is_woken_once_per_half_buffer_and_moves_everything() -> None:
    # The trio reader waits only with to_peer full and wakes only on a poke: a poke per
    # take cost the tox thread a socket write and a GIL wait each (issue 14).
    from toxbridge.localstreams import READER_WAKE, TO_PEER_BUFFER

    a, b = pair()
    opener, acc, pokes = _open_local(a, b)
    total, moved, waiting = 2_000_000, 0, False
    for _ in range(20_000):
        if not waiting and moved < total:  # the reader fills the buffer, then waits
            with opener.lock:
                n = min(opener.send_room, total - moved)
                opener.to_peer += b"x" * n
                moved += n
                waiting = opener.send_room <= 0
            a.io.table.touch(opener)
        before = pokes["opener"]
        run(a, b, 1)
        if pokes["opener"] > before:
            waiting = False
            assert opener.send_room >= READER_WAKE
        with acc.lock:  # the acceptor's app takes what arrives
            n = len(acc.to_app)
            acc.taken += n
            acc.written += n
            del acc.to_app[:]
        b.io.table.touch(acc)
        if acc.written == total:
            break
    assert acc.written == total
    assert 0 < pokes["opener"] <= total // (TO_PEER_BUFFER - READER_WAKE) + 1


def test_a_writer_is_woken_when_bytes_reach_an_empty_buffer_not_for_each_delivery() -> None:
    from toxbridge.localstreams import WRITER_WAKE

    a, b = pair()
    opener, acc, pokes = _open_local(a, b)
    for _ in range(3):  # the writer has emptied to_app and waits
        with opener.lock:
            opener.to_peer += b"y" * 60_000
        a.io.table.touch(opener)
        run(a, b, 200)
        with acc.lock:
            assert len(acc.to_app) == 60_000
        assert 1 <= pokes["acceptor"] <= 1 + WRITER_WAKE // 1000  # the first few frames only
        pokes["acceptor"] = 0
        with acc.lock:
            acc.taken += 60_000
            acc.written += 60_000
            del acc.to_app[:]
        b.io.table.touch(acc)
    with opener.lock:  # a short piece (a forward's answer) into an empty buffer: a poke
        opener.to_peer += b"z" * 100
    a.io.table.touch(opener)
    run(a, b, 50)
    assert pokes["acceptor"] == 1
