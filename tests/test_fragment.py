"""The pure fragmentation layer: exact header bytes, round trips, fairness, every limit."""

from __future__ import annotations

import contextlib
import random
import struct
import uuid

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toxbridge.errors import LocalProtocolError, RemoteProtocolError
from toxbridge.fragment import (
    FRAME_SIZE,
    HEADER_SIZE,
    Fragmenter,
    FragmentError,
    Message,
    MessageTooLarge,
    Reason,
    Reassembler,
    SendQueueFull,
    pack_message,
    unpack_message,
)

SLICE = FRAME_SIZE - HEADER_SIZE  # 1000
U1 = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
U2 = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")
U3 = uuid.UUID(int=3)


def frag(u: uuid.UUID, index: int, total: int, payload: bytes = b"") -> bytes:
    return u.bytes + struct.pack(">II", index, total) + payload


def drain(f: Fragmenter) -> list[bytes]:
    frames = []
    while (frame := f.next_frame()) is not None:
        frames.append(frame)
    return frames


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------- header layout


def test_header_is_uuid_then_big_endian_u32_index_and_total() -> None:
    assert HEADER_SIZE == 24
    f = Fragmenter()
    f.send(b"hi", message_id=U1)
    assert drain(f) == [
        bytes.fromhex("00112233445566778899aabbccddeeff" "00000000" "00000001") + b"hi"
    ]


def test_empty_message_is_one_header_only_fragment() -> None:
    f = Fragmenter()
    f.send(b"", message_id=U1)
    assert drain(f) == [frag(U1, 0, 1)]
    assert Reassembler().receive_frame(frag(U1, 0, 1), 0.0) == Message(U1, b"")


@pytest.mark.parametrize(
    ("size", "slices"),
    [
        (1, [1]),
        (SLICE, [SLICE]),
        (SLICE + 1, [SLICE, 1]),
        (2 * SLICE, [SLICE, SLICE]),
        (2 * SLICE + 7, [SLICE, SLICE, 7]),
    ],
)
def test_every_fragment_but_the_last_is_full(size: int, slices: list[int]) -> None:
    data = blob(size)
    f = Fragmenter()
    f.send(data, message_id=U1)
    frames = drain(f)
    assert [len(fr) - HEADER_SIZE for fr in frames] == slices
    assert all(len(fr) <= FRAME_SIZE for fr in frames)
    assert frames == [
        frag(U1, i, len(slices), data[i * SLICE : (i + 1) * SLICE]) for i in range(len(slices))
    ]


def test_smaller_frame_size_gives_smaller_slices() -> None:
    f = Fragmenter(frame_size=30, max_message_size=100, max_bytes=100)
    f.send(b"abcdefghijklm", message_id=U1)
    assert drain(f) == [frag(U1, 0, 3, b"abcdef"), frag(U1, 1, 3, b"ghijkl"), frag(U1, 2, 3, b"m")]


def test_frame_size_must_leave_room_for_a_slice() -> None:
    with pytest.raises(ValueError):
        Fragmenter(frame_size=HEADER_SIZE)
    with pytest.raises(ValueError):
        Reassembler(frame_size=70000)


# --------------------------------------------------------------------------- round trips


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[str, int]]:
    """A list of operations: ("send", size) or ("pump", number of frames)."""
    sizes = st.one_of(
        st.integers(0, 3 * SLICE),  # around the fragment boundaries
        st.integers(0, 300_000),
        st.sampled_from([0, 1, SLICE - 1, SLICE, SLICE + 1]),
    )
    ops = draw(
        st.lists(
            st.one_of(st.tuples(st.just("send"), sizes), st.tuples(st.just("pump"), st.integers(0, 400))),
            max_size=12,
        )
    )
    return ops


@settings(max_examples=60, deadline=None)
@given(schedules(), st.integers(0, 2**32))
def test_any_messages_in_any_interleaving_arrive_whole(ops: list[tuple[str, int]], seed: int) -> None:
    f = Fragmenter()
    r = Reassembler()
    sent: dict[uuid.UUID, bytes] = {}
    got: dict[uuid.UUID, bytes] = {}

    def pump(n: int) -> None:
        for _ in range(n):
            frame = f.next_frame()
            if frame is None:
                return
            assert len(frame) <= FRAME_SIZE
            message = r.receive_frame(frame, 0.0)
            if message is not None:
                assert message.id not in got
                got[message.id] = message.data

    for i, (op, arg) in enumerate(ops):
        if op == "send":
            data = blob(arg, seed + i)
            sent[f.send(data)] = data
        else:
            pump(arg)
    pump(10**9)
    assert got == sent
    assert r.partial_count == 0 and r.buffered_bytes == 0
    assert f.pending_messages == 0 and f.pending_bytes == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8))
def test_messages_sent_from_memoryview_and_bytearray_round_trip(payloads: list[bytes]) -> None:
    f = Fragmenter()
    r = Reassembler()
    ids = []
    for i, p in enumerate(payloads):
        ids.append(f.send(memoryview(p) if i % 2 else bytearray(p)))
    out = [m for fr in drain(f) if (m := r.receive_frame(memoryview(fr), 1.0)) is not None]
    assert {m.id: m.data for m in out} == dict(zip(ids, payloads, strict=True))


def test_a_200_kb_msgpack_command_round_trips_with_bytes_kept_as_bytes() -> None:
    command = {"command": 2003, "msg": "x" * 200_000, "data": blob(5000), "n": [1, -2, 3.5, None, True]}
    f = Fragmenter()
    f.send(pack_message(command))
    r = Reassembler()
    out = [m for fr in drain(f) if (m := r.receive_frame(fr, 0.0)) is not None]
    assert len(out) == 1
    assert unpack_message(out[0].data) == command


# --------------------------------------------------------------------------- fairness


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(SLICE + 1, 60_000), min_size=1, max_size=10),
    st.integers(0, 200),
    st.integers(0, SLICE),
)
def test_a_small_message_completes_within_one_frame_per_active_message(
    big_sizes: list[int], advance: int, small_size: int
) -> None:
    f = Fragmenter()
    r = Reassembler()
    for i, size in enumerate(big_sizes):
        f.send(blob(size, i))
    for _ in range(advance):
        if not f:
            break
        r.receive_frame(f.next_frame() or b"", 0.0)
    small = f.send(b"s" * small_size)
    active = f.pending_messages
    done = []
    for _ in range(active):
        m = r.receive_frame(f.next_frame() or b"", 0.0)
        if m is not None:
            done.append(m.id)
    assert small in done, f"small message not out within {active} frames"


def test_round_robin_order_is_exact() -> None:
    f = Fragmenter()
    f.send(b"a" * (3 * SLICE), message_id=U1)
    f.send(b"b" * (2 * SLICE), message_id=U2)
    assert [fr[:HEADER_SIZE] for fr in drain(f)] == [
        frag(U1, 0, 3), frag(U2, 0, 2), frag(U1, 1, 3), frag(U2, 1, 2), frag(U1, 2, 3)
    ]


def test_a_message_queued_mid_stream_joins_the_back_of_the_rotation() -> None:
    f = Fragmenter()
    f.send(b"a" * (3 * SLICE), message_id=U1)
    f.send(b"b" * (3 * SLICE), message_id=U2)
    assert f.next_frame()[:HEADER_SIZE] == frag(U1, 0, 3)
    f.send(b"c", message_id=U3)
    assert [fr[:HEADER_SIZE] for fr in drain(f)][:3] == [frag(U2, 0, 3), frag(U1, 1, 3), frag(U3, 0, 1)]


# --------------------------------------------------------------------------- sender limits


def test_sender_refuses_a_message_over_the_size_limit() -> None:
    f = Fragmenter(max_message_size=10, max_bytes=100)
    assert f.can_send(10) and not f.can_send(11)
    f.send(b"x" * 10)
    with pytest.raises(MessageTooLarge):
        f.send(b"x" * 11)
    assert isinstance(MessageTooLarge("x"), LocalProtocolError)


def test_sender_queue_is_bounded_by_message_count_and_bytes() -> None:
    f = Fragmenter(max_messages=2, max_message_size=10, max_bytes=15)
    f.send(b"x" * 10)
    assert not f.can_send(6) and f.can_send(5)
    with pytest.raises(SendQueueFull):
        f.send(b"x" * 6)
    f.send(b"x" * 5)
    assert (f.pending_messages, f.pending_bytes) == (2, 15)
    assert not f.can_send(0)
    with pytest.raises(SendQueueFull):
        f.send(b"")
    f.next_frame()
    assert f.can_send(10) and (f.pending_messages, f.pending_bytes) == (1, 5)


def test_sender_refuses_a_message_id_already_queued() -> None:
    f = Fragmenter()
    f.send(b"x", message_id=U1)
    with pytest.raises(LocalProtocolError):
        f.send(b"y", message_id=U1)
    drain(f)
    f.send(b"z", message_id=U1)  # sent out: the id may be used again


def test_sender_limits_must_be_coherent() -> None:
    with pytest.raises(ValueError):
        Fragmenter(max_message_size=100, max_bytes=99)
    with pytest.raises(ValueError):
        Fragmenter(max_messages=0)


def test_next_frame_on_empty_fragmenter_is_none() -> None:
    f = Fragmenter()
    assert f.next_frame() is None and not f


# --------------------------------------------------------------------------- bad fragments


FULL = b"\xaa" * SLICE

BAD_FRAGMENTS = [
    # (frame, reason, uuid reported)
    (b"", Reason.SHORT, None),
    (U1.bytes + b"\x00\x00\x00\x00\x00\x00\x00", Reason.SHORT, None),
    (frag(U1, 0, 1, b"x" * (SLICE + 1)), Reason.OVERSIZED, U1),
    (frag(U1, 0, 0), Reason.ZERO_TOTAL, U1),
    (frag(U1, 0, 0, b"abc"), Reason.ZERO_TOTAL, U1),
    (frag(U1, 1, 1, b"abc"), Reason.BAD_INDEX, U1),
    (frag(U1, 0xFFFFFFFF, 2, FULL), Reason.BAD_INDEX, U1),
    (frag(U1, 0, 2, b"short"), Reason.BAD_LENGTH, U1),
    (frag(U1, 0, 2), Reason.BAD_LENGTH, U1),
    (frag(U1, 1, 3, FULL[:-1]), Reason.BAD_LENGTH, U1),
    (frag(U1, 1, 2), Reason.BAD_LENGTH, U1),  # an empty last fragment of several
    (frag(U1, 1, 2, b"x"), Reason.MISSING_START, U1),
    (frag(U1, 0, 0xFFFFFFFF, FULL), Reason.TOO_LARGE, U1),
    (frag(U1, 0, 67_109 + 1, FULL), Reason.TOO_LARGE, U1),  # > 64 MiB at the least
]


@pytest.mark.parametrize(("frame", "reason", "uid"), BAD_FRAGMENTS)
def test_bad_fragment_is_reported_with_reason_and_uuid(
    frame: bytes, reason: Reason, uid: uuid.UUID | None
) -> None:
    r = Reassembler()
    with pytest.raises(FragmentError) as info:
        r.receive_frame(frame, 0.0)
    assert (info.value.reason, info.value.message_id) == (reason, uid)
    assert isinstance(info.value, RemoteProtocolError)
    assert r.partial_count == 0 and r.buffered_bytes == 0


def test_the_largest_allowed_message_is_accepted_at_the_first_fragment() -> None:
    # 64 MiB = 67_108 full slices and 864 bytes: 67_109 fragments.
    r = Reassembler()
    assert r.receive_frame(frag(U1, 0, 67_109, FULL), 0.0) is None
    assert r.partial_count == 1


IN_PROGRESS_ERRORS = [
    # frames after frag(U1, 0, 3, FULL) has started a message
    ([frag(U1, 1, 4, FULL)], Reason.TOTAL_MISMATCH),
    ([frag(U1, 0, 3, FULL)], Reason.DUPLICATE),
    ([frag(U1, 1, 3, FULL), frag(U1, 1, 3, FULL)], Reason.DUPLICATE),
    ([frag(U1, 2, 3, b"end")], Reason.OUT_OF_ORDER),
    ([frag(U1, 0, 1, b"again")], Reason.TOTAL_MISMATCH),
]


@pytest.mark.parametrize(("frames", "reason"), IN_PROGRESS_ERRORS)
def test_bad_fragment_of_a_message_in_progress_drops_only_that_message(
    frames: list[bytes], reason: Reason
) -> None:
    r = Reassembler()
    assert r.receive_frame(frag(U1, 0, 3, FULL), 0.0) is None
    assert r.receive_frame(frag(U2, 0, 2, FULL), 0.0) is None
    *ok, bad = frames
    for fr in ok:
        assert r.receive_frame(fr, 0.0) is None
    with pytest.raises(FragmentError) as info:
        r.receive_frame(bad, 0.0)
    assert (info.value.reason, info.value.message_id) == (reason, U1)
    assert (r.partial_count, r.buffered_bytes) == (1, SLICE)
    assert r.receive_frame(frag(U2, 1, 2, b"tail"), 0.0) == Message(U2, FULL + b"tail")


def test_remaining_fragments_of_a_broken_message_are_discarded_quietly() -> None:
    r = Reassembler()
    r.receive_frame(frag(U1, 0, 4, FULL), 0.0)
    with pytest.raises(FragmentError):
        r.receive_frame(frag(U1, 2, 4, FULL), 0.0)  # out of order
    assert r.receive_frame(frag(U1, 3, 4, b"end"), 0.0) is None  # discarded, last one
    assert r.statistics()["discarded_fragments"] == 1
    # The id is forgotten after its last fragment: a new message may use it.
    assert r.receive_frame(frag(U1, 0, 1, b"new"), 0.0) == Message(U1, b"new")
    assert r.statistics()["errors"] == 1


def test_a_total_mismatch_is_reported_once_for_the_whole_message() -> None:
    r = Reassembler()
    r.receive_frame(frag(U1, 0, 3, FULL), 0.0)
    with pytest.raises(FragmentError):
        r.receive_frame(frag(U1, 1, 2, b"x"), 0.0)  # claims to be the last of 2
    assert r.receive_frame(frag(U1, 2, 3, b"end"), 0.0) is None  # the real last: quiet
    assert r.statistics()["errors"] == 1


def test_last_fragment_over_the_size_limit_is_too_large() -> None:
    r = Reassembler(max_message_size=SLICE + 10, max_buffered=10 * SLICE)
    r.receive_frame(frag(U1, 0, 2, FULL), 0.0)
    with pytest.raises(FragmentError) as info:
        r.receive_frame(frag(U1, 1, 2, b"x" * 11), 0.0)
    assert info.value.reason is Reason.TOO_LARGE
    r.receive_frame(frag(U2, 0, 2, FULL), 0.0)
    assert r.receive_frame(frag(U2, 1, 2, b"x" * 10), 0.0) == Message(U2, FULL + b"x" * 10)


def test_single_fragment_over_a_small_size_limit_is_too_large() -> None:
    r = Reassembler(max_message_size=3)
    assert r.receive_frame(frag(U1, 0, 1, b"abc"), 0.0) == Message(U1, b"abc")
    with pytest.raises(FragmentError) as info:
        r.receive_frame(frag(U2, 0, 1, b"abcd"), 0.0)
    assert info.value.reason is Reason.TOO_LARGE


def test_too_many_partial_messages() -> None:
    r = Reassembler(max_partial=2)
    r.receive_frame(frag(U1, 0, 2, FULL), 0.0)
    r.receive_frame(frag(U2, 0, 2, FULL), 0.0)
    assert r.receive_frame(frag(U3, 0, 1, b"one-fragment messages still pass"), 0.0) is not None
    with pytest.raises(FragmentError) as info:
        r.receive_frame(frag(U3, 0, 2, FULL), 0.0)
    assert (info.value.reason, info.value.message_id) == (Reason.TOO_MANY_PARTIALS, U3)
    assert r.receive_frame(frag(U3, 1, 2, b"x"), 0.0) is None  # discarded
    assert r.receive_frame(frag(U1, 1, 2, b"1"), 0.0) == Message(U1, FULL + b"1")


def test_buffered_bytes_are_bounded() -> None:
    r = Reassembler(max_buffered=2 * SLICE)
    r.receive_frame(frag(U1, 0, 3, FULL), 0.0)
    r.receive_frame(frag(U2, 0, 2, FULL), 0.0)
    with pytest.raises(FragmentError) as info:
        r.receive_frame(frag(U1, 1, 3, FULL), 0.0)
    assert (info.value.reason, info.value.message_id) == (Reason.BUFFER_FULL, U1)
    assert r.buffered_bytes == SLICE  # U1 was dropped, U2 kept
    assert r.receive_frame(frag(U2, 1, 2, b"z"), 0.0) == Message(U2, FULL + b"z")


def test_discarded_ids_are_bounded() -> None:
    r = Reassembler(max_discarded=2)
    for u in (U1, U2, U3):
        with pytest.raises(FragmentError):
            r.receive_frame(frag(u, 1, 3, FULL), 0.0)  # missing start
    # U1 fell out of the discard set: its next fragment is reported again.
    with pytest.raises(FragmentError):
        r.receive_frame(frag(U1, 2, 3, b"x"), 0.0)
    assert r.receive_frame(frag(U3, 2, 3, b"x"), 0.0) is None


def test_out_of_range_limit_checks_use_the_configured_frame_size() -> None:
    r = Reassembler(frame_size=30)  # slices of 6 bytes
    assert r.receive_frame(frag(U1, 0, 2, b"abcdef"), 0.0) is None
    assert r.receive_frame(frag(U1, 1, 2, b"g"), 0.0) == Message(U1, b"abcdefg")
    with pytest.raises(FragmentError) as info:
        r.receive_frame(frag(U2, 0, 1, b"abcdefg"), 0.0)
    assert info.value.reason is Reason.OVERSIZED


# --------------------------------------------------------------------------- timeouts


def test_idle_partial_messages_expire_after_timeout() -> None:
    r = Reassembler(timeout=10.0)
    r.receive_frame(frag(U1, 0, 3, FULL), 100.0)
    r.receive_frame(frag(U2, 0, 3, FULL), 100.0)
    r.receive_frame(frag(U2, 1, 3, FULL), 105.0)  # activity keeps U2 alive
    assert r.expire(109.9) == []
    assert r.expire(110.0) == [U1]
    assert (r.partial_count, r.buffered_bytes) == (1, 2 * SLICE)
    assert r.receive_frame(frag(U1, 1, 3, FULL), 111.0) is None  # late: discarded quietly
    assert r.receive_frame(frag(U2, 2, 3, b"!"), 111.0) == Message(U2, FULL + FULL + b"!")
    assert r.statistics()["expired"] == 1
    # The discard entry itself expires, after which U1's fragments are errors again.
    assert r.expire(121.0) == []
    with pytest.raises(FragmentError) as info:
        r.receive_frame(frag(U1, 2, 3, b"x"), 122.0)
    assert info.value.reason is Reason.MISSING_START


# --------------------------------------------------------------------------- robustness


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=1100),
    st.builds(
        lambda u, i, t, p: frag(uuid.UUID(int=u), i, t, p),
        st.integers(0, 3), st.integers(0, 4), st.integers(0, 4), st.binary(max_size=40),
    ),
), max_size=40))
def test_arbitrary_frames_only_ever_raise_fragment_errors(frames: list[bytes]) -> None:
    r = Reassembler(frame_size=64, max_message_size=200, max_partial=2, max_buffered=100)
    for i, fr in enumerate(frames):
        with contextlib.suppress(FragmentError):
            r.receive_frame(fr, float(i))
        assert r.buffered_bytes == sum(p.size for p in r._partials.values()) <= 100
        assert r.partial_count <= 2
        r.expire(float(i))


# --------------------------------------------------------------------------- msgpack


def test_pack_message_keeps_bytes_and_str_apart() -> None:
    assert pack_message({"a": b"\x01", "b": "\x01"}) == b"\x82\xa1a\xc4\x01\x01\xa1b\xa1\x01"
    assert unpack_message(b"\x82\xa1a\xc4\x01\x01\xa1b\xa1\x01") == {"a": b"\x01", "b": "\x01"}


@pytest.mark.parametrize("bad", [{"a": object()}, {"a": "\ud800"}, {"a": 2**70}, [1, 2]])
def test_pack_message_refuses_what_msgpack_cannot_carry(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        pack_message(bad)  # type: ignore[arg-type]


UNPACK_ERRORS = [
    b"",  # nothing
    b"\x01",  # not a map
    b"\x91\x01",  # an array
    b"\x81\xa1a",  # truncated
    b"\x80\x80",  # extra data
    b"\xc1",  # never-used byte
    b"\x81\x01\x01",  # integer key
    b"\x81\xc4\x01k\x01",  # bytes key
    b"\x81\xa1a\xa1\xff",  # invalid UTF-8 string
    b"\x81\xa1a\xd4\x05\x00",  # extension type
    b"\x81\xa1a\xc7\x00\x05",  # empty extension type
    b"\x81\xa1a\xd6\xff\x00\x00\x00\x01",  # timestamp extension
    b"\x81\xa1a\xc6\xff\xff\xff\xff",  # bin claiming 4 GiB
    b"\x81\xa1a\xdd\xff\xff\xff\xff",  # array claiming 4 G items
    b"\x81\xa1a" + b"\x91" * 5000,  # nesting too deep
]


@pytest.mark.parametrize("data", UNPACK_ERRORS)
def test_unpack_message_rejects_garbage_as_remote_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        unpack_message(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_unpack_message_of_arbitrary_bytes_returns_a_dict_or_remote_error(data: bytes) -> None:
    try:
        out = unpack_message(data)
    except RemoteProtocolError:
        return
    assert isinstance(out, dict) and all(isinstance(k, str) for k in out)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)))
def test_pack_unpack_round_trip(message: dict) -> None:
    assert unpack_message(pack_message(message)) == message


def test_unpack_limits_are_those_of_msgpack_defaults_or_tighter() -> None:
    # A well-formed map of one 1 MB bin passes: the limits follow the input's length.
    data = msgpack.packb({"data": b"\0" * 1_000_000}, use_bin_type=True)
    assert unpack_message(data) == {"data": b"\0" * 1_000_000}
