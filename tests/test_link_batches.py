"""The Link's larger frames (``max_frame``, what the stream mux's batches need) and its
acknowledgement totals across a peer restart (what the channel's resend buffer reads).
Sans-IO: two Links joined by hand."""

from __future__ import annotations

import pytest

from toxbridge.chanstream import ResendBuffer, encode_frames
from toxbridge.errors import LocalProtocolError, RemoteProtocolError
from toxbridge.link import MAX_BIG_FRAME, Link


def move(src: Link, dst: Link, *, lose: bool = False) -> None:
    while (p := src.next_packet(flush=True)) is not None:
        if not lose:
            dst.receive_packet(p)


def joined(a: Link, b: Link) -> None:
    a.connection_made()
    b.connection_made()
    for _ in range(4):
        move(a, b)
        move(b, a)


def take_all(link: Link) -> list[bytes]:
    out = []
    while (f := link.next_frame()) is not None:
        out.append(f)
    return out


def test_frames_up_to_max_frame_cross_whole_and_larger_ones_are_refused() -> None:
    a, b = Link(b"A" * 16, max_frame=4096), Link(b"B" * 16, max_frame=4096)
    joined(a, b)
    frames = [bytes([i]) * n for i, n in enumerate([0, 1, 1024, 1025, 4095, 4096])]
    for f in frames:
        assert a.can_send_frame(len(f))
        a.send_frame(f)
    assert not a.can_send_frame(4097)
    with pytest.raises(LocalProtocolError):
        a.send_frame(bytes(4097))
    move(a, b)
    assert take_all(b) == frames


def test_a_frame_over_the_receivers_max_frame_is_a_protocol_error() -> None:
    a, b = Link(b"A" * 16, max_frame=4096), Link(b"B" * 16)  # b: the default, 1024
    joined(a, b)
    a.send_frame(bytes(1025))
    with pytest.raises(RemoteProtocolError, match="over the limit of 1024"):
        move(a, b)


def test_max_frame_must_fit_the_window_in_flight_and_backlog() -> None:
    for kwargs in ({"max_frame": 1023}, {"max_frame": MAX_BIG_FRAME + 1},
                   {"max_frame": 16 * 1024, "in_flight": 8192},
                   {"max_frame": 16 * 1024, "backlog": 8192}):
        with pytest.raises(LocalProtocolError):
            Link(b"A" * 16, **kwargs)
    Link(b"A" * 16, max_frame=MAX_BIG_FRAME)


def test_acked_total_counts_across_a_peer_restart_and_restart_acked_freezes_the_old_one() -> None:
    a, b = Link(b"A" * 16), Link(b"B" * 16)
    joined(a, b)
    for _ in range(3):
        a.send_frame(bytes(100))  # 102 stream bytes each
    move(a, b)
    take_all(b)
    move(b, a)
    assert a.acked_total == 306 and a.restart_acked == 0 and a.peer_restarts == 0
    a.send_frame(bytes(100))
    move(a, b, lose=True)  # b dies with it in flight
    b2 = Link(b"C" * 16)
    a.connection_lost()
    joined(a, b2)
    assert a.peer_restarts == 1 and a.restart_acked == 306
    assert take_all(b2) == [bytes(100)]  # renumbered and resent
    move(b2, a)
    assert a.acked_total == 408 and a.restart_acked == 306 and a.unacked_bytes == 0


def test_resend_buffer_keeps_frames_until_wholly_acked_and_gives_them_again() -> None:
    buf = ResendBuffer(8192)
    frames = [b"a" * 10, b"b" * 1020, b"c" * 5]  # 13, 1023, 8 bytes in the stream
    buf.fed(encode_frames(frames))
    buf.framed(link_end=500, stream_sent=20)  # the first frame and 7 bytes of the second
    buf.framed(link_end=1500, stream_sent=1044)
    buf.acked(499)
    assert len(buf) == 1044
    buf.acked(500)
    assert len(buf) == 1031  # only the first frame is wholly acknowledged
    buf.restart()  # the peer restarted: the rest goes again, from a frame boundary
    assert buf.pending == 1031 and buf.unfed(4096) == encode_frames(frames[1:])
    with pytest.raises(LocalProtocolError):
        buf.fed(encode_frames([b"new"]))  # not before the kept ones
    buf.refed(1031)
    buf.fed(encode_frames([b"new"]))
    buf.framed(link_end=9000, stream_sent=1037)
    buf.acked(9000)
    assert len(buf) == 0 and buf.resent == 1031
    with pytest.raises(LocalProtocolError):
        buf.fed(bytes(8193))
