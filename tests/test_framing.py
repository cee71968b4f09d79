"""The local framed channel: exact bytes, round trips split anywhere, and every error."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toxbridge.errors import LocalProtocolError, RemoteProtocolError
from toxbridge.framing import (
    DATA,
    EVENT,
    MAX_FRAME_SIZE,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    decode_event,
    encode_data,
    encode_event,
    encode_frame,
)

# -- encoding: exact bytes -------------------------------------------------------------

ENCODED = [
    (DATA, b"", bytes.fromhex("010000")),
    (DATA, b"abc", bytes.fromhex("010003") + b"abc"),
    (EVENT, b"{}", bytes.fromhex("020002") + b"{}"),
    (DATA, b"\x00" * 256, bytes.fromhex("010100") + b"\x00" * 256),
    (DATA, b"x" * MAX_PAYLOAD, bytes.fromhex("010400") + b"x" * MAX_PAYLOAD),
]


@pytest.mark.parametrize(("kind", "payload", "wire"), ENCODED)
def test_encode_frame_gives_exact_bytes(kind: int, payload: bytes, wire: bytes) -> None:
    assert encode_frame(kind, payload) == wire


@pytest.mark.parametrize(("kind", "payload", "wire"), ENCODED)
def test_decoder_reads_exact_bytes(kind: int, payload: bytes, wire: bytes) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(wire)
    assert decoder.next_frame() == Frame(kind, payload)
    assert decoder.next_frame() is None
    assert decoder.buffered == 0


def test_encode_data_and_event_helpers() -> None:
    assert encode_data(b"hi") == b"\x01\x00\x02hi"
    assert encode_event({"type": "ready"}) == b'\x02\x00\x10{"type":"ready"}'
    # Compact, UTF-8 (not \u escapes), keys in the order given.
    assert encode_event({"a": 1, "b": "é"}) == b'\x02\x00\x10{"a":1,"b":"\xc3\xa9"}'


@pytest.mark.parametrize("kind", [0x00, 0x03, 0x7F, 0xFF])
def test_encode_frame_rejects_unknown_kind(kind: int) -> None:
    with pytest.raises(LocalProtocolError, match="unknown frame kind"):
        encode_frame(kind, b"")


def test_encode_frame_rejects_payload_over_1024_bytes() -> None:
    with pytest.raises(LocalProtocolError, match="1025 bytes is over the limit of 1024"):
        encode_data(b"x" * (MAX_PAYLOAD + 1))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"text": "x" * 1100}, "over the limit"),
        ([1, 2], "must be a JSON object"),
        ("ready", "must be a JSON object"),
        ({"x": float("nan")}, "not JSON-serializable"),
        ({"x": b"bytes"}, "not JSON-serializable"),
    ],
)
def test_encode_event_rejects_what_is_not_a_small_json_object(obj: object, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        encode_event(obj)  # type: ignore[arg-type]


# -- events ----------------------------------------------------------------------------


def test_decode_event_round_trips() -> None:
    obj = {"type": "peer", "code": 301, "name": "Zoë", "list": [1, None, True]}
    frame = encode_event(obj)
    assert decode_event(frame[3:]) == obj


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"{", "not valid UTF-8 JSON"),
        (b"", "not valid UTF-8 JSON"),
        (b'{"x": NaN}', "not valid UTF-8 JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'"ready"', "JSON str, not an object"),
        (b"301", "JSON int, not an object"),
    ],
)
def test_decode_event_rejects_what_is_not_a_json_object(payload: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_event(payload)


# -- decoding: the stream ------------------------------------------------------------


def test_decoder_yields_frames_split_byte_by_byte() -> None:
    wire = encode_data(b"one") + encode_event({"a": 1}) + encode_data(b"")
    decoder = FrameDecoder()
    frames = []
    for i in range(len(wire)):
        decoder.receive_data(wire[i : i + 1])
        frames.extend(decoder)
    assert frames == [Frame(DATA, b"one"), Frame(EVENT, b'{"a":1}'), Frame(DATA, b"")]


def test_daemon_side_decoder_rejects_event_frames_from_the_app() -> None:
    decoder = FrameDecoder(allowed_kinds={DATA})
    decoder.receive_data(encode_data(b"ok") + encode_data(b"o")[:2])
    assert decoder.next_frame() == Frame(DATA, b"ok")
    assert decoder.next_frame() is None
    decoder.receive_data(b"\x01o" + encode_event({"a": 1}))
    assert decoder.next_frame() == Frame(DATA, b"o")
    message = r"EVENT frames are not allowed \(kind byte 0x02 at stream offset 9\)"
    with pytest.raises(RemoteProtocolError, match=message):
        decoder.next_frame()


@pytest.mark.parametrize("kind", [0x00, 0x03, 0xFF])
def test_decoder_rejects_unknown_kind(kind: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(bytes([kind, 0, 1, 0x41]))
    with pytest.raises(RemoteProtocolError, match=f"unknown frame kind \\(kind byte 0x{kind:02x}"):
        decoder.next_frame()


def test_decoder_rejects_length_over_1024_as_soon_as_the_header_arrives() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x01\x04\x01")  # length 1025, no payload yet
    with pytest.raises(RemoteProtocolError, match="frame length 1025 is over the limit of 1024"):
        decoder.next_frame()


def test_decoder_stays_failed_after_an_error() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x09\x00\x00")
    with pytest.raises(RemoteProtocolError):
        decoder.next_frame()
    with pytest.raises(RemoteProtocolError, match="unknown frame kind"):
        decoder.next_frame()
    with pytest.raises(RemoteProtocolError, match="unknown frame kind"):
        decoder.receive_data(encode_data(b"fine"))


def test_decoder_refuses_more_data_while_a_complete_frame_waits() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_data(b"a") + b"\x01")
    with pytest.raises(LocalProtocolError, match="drain next_frame"):
        decoder.receive_data(b"\x00\x00")
    assert decoder.next_frame() == Frame(DATA, b"a")
    decoder.receive_data(b"\x00\x01b")  # the incomplete frame is kept and completed
    assert decoder.next_frame() == Frame(DATA, b"b")


def test_decoder_holds_at_most_one_incomplete_frame_after_draining() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_data(b"x" * 1024) * 100 + encode_data(b"y" * 1024)[:-1])
    assert len(list(decoder)) == 100
    assert decoder.buffered == MAX_FRAME_SIZE - 1


def test_clean_end_of_file() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_data(b"last"))
    decoder.receive_data(b"")
    assert decoder.eof
    assert not decoder.at_eof_incomplete()
    assert decoder.next_frame() == Frame(DATA, b"last")
    assert decoder.next_frame() is None
    with pytest.raises(LocalProtocolError, match="after end of file"):
        decoder.receive_data(b"more")


def test_at_eof_incomplete_needs_no_end_of_file_call() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_data(b"a") + encode_data(b"b"))
    assert not decoder.at_eof_incomplete()  # two complete frames, not taken yet
    decoder = FrameDecoder()
    decoder.receive_data(encode_data(b"a") + encode_data(b"bc")[:-1])
    assert decoder.at_eof_incomplete()  # the shell may ask before draining
    assert decoder.next_frame() == Frame(DATA, b"a")
    assert decoder.next_frame() is None
    assert decoder.at_eof_incomplete()


@pytest.mark.parametrize("cut", [1, 2, 3, 5])
def test_end_of_file_in_the_middle_of_a_frame_is_reported(cut: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_data(b"full") + encode_data(b"trunc")[:cut])
    decoder.receive_data(b"")
    assert decoder.next_frame() == Frame(DATA, b"full")
    assert decoder.at_eof_incomplete()
    message = f"closed in the middle of a frame \\({cut} bytes"
    with pytest.raises(RemoteProtocolError, match=message):
        decoder.next_frame()


def test_decoder_rejects_bad_allowed_kinds() -> None:
    with pytest.raises(LocalProtocolError):
        FrameDecoder(allowed_kinds={DATA, 7})
    with pytest.raises(LocalProtocolError):
        FrameDecoder(allowed_kinds=())


# -- property: any frames, cut anywhere --------------------------------------------------

frames_st = st.lists(
    st.builds(
        Frame,
        st.sampled_from([DATA, EVENT]),
        st.one_of(st.binary(max_size=16), st.binary(min_size=1000, max_size=MAX_PAYLOAD)),
    ),
    max_size=30,
)


@given(frames=frames_st, cuts=st.lists(st.integers(min_value=0, max_value=40_000), max_size=20))
def test_round_trip_of_any_frames_split_at_any_points(frames: list[Frame], cuts: list[int]) -> None:
    wire = b"".join(encode_frame(f.kind, f.payload) for f in frames)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    decoder = FrameDecoder()
    out: list[Frame] = []
    for start, stop in pairwise(points):
        if start == stop:
            continue
        decoder.receive_data(wire[start:stop])
        # Bounded: what was just given plus at most one incomplete frame.
        assert decoder.buffered <= (stop - start) + MAX_FRAME_SIZE - 1
        out.extend(decoder)
        assert decoder.buffered < MAX_FRAME_SIZE
    decoder.receive_data(b"")
    assert decoder.next_frame() is None
    assert not decoder.at_eof_incomplete()
    assert out == frames


@given(frames=frames_st, drop=st.integers(min_value=1, max_value=MAX_FRAME_SIZE))
def test_any_truncated_stream_is_detected_at_end_of_file(frames: list[Frame], drop: int) -> None:
    wire = b"".join(encode_frame(f.kind, f.payload) for f in frames) + encode_data(b"z" * 1024)
    decoder = FrameDecoder()
    if wire[:-drop]:  # b"" would already be the end of file
        decoder.receive_data(wire[:-drop])
    decoder.receive_data(b"")
    out: list[Frame] = []
    if drop == MAX_FRAME_SIZE:  # exactly the last frame cut off: a clean end
        out.extend(decoder)
        assert not decoder.at_eof_incomplete()
    else:
        with pytest.raises(RemoteProtocolError, match="closed in the middle of a frame"):
            out.extend(decoder)
        assert decoder.at_eof_incomplete()
    assert out == frames
