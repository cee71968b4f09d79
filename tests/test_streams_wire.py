"""The stream frames: exact bytes both ways, and every kind of bad input (docs/wire.md §3)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toxbridge.errors import RemoteProtocolError, StreamProtocolError
from toxbridge.streams.wire import (
    HEADER_SIZE,
    HELLO_SIZE,
    MAX_FRAME,
    MAX_PAYLOAD,
    Credit,
    Data,
    Fin,
    Hello,
    Open,
    Priority,
    Reset,
    ResetCode,
    decode_frame,
    encode_credit,
    encode_data,
    encode_fin,
    encode_hello,
    encode_open,
    encode_reset,
)

EPOCH_A = bytes.fromhex("a1a2a3a4a5a6a7a8")
EPOCH_B = bytes.fromhex("b1b2b3b4b5b6b7b8")

# (frame, encoded, exact bytes): the documented layouts.
TABLE = [
    (
        Hello(1, True, EPOCH_A, bytes(8), 0x40000, 0x400000),
        encode_hello(EPOCH_A, None, initiator=True, stream_window=0x40000,
                     connection_window=0x400000),
        "01 00000000 001b  0001 01 a1a2a3a4a5a6a7a8 0000000000000000 00040000 00400000",
    ),
    (
        Hello(1, False, EPOCH_B, EPOCH_A, 1017, 1017),
        encode_hello(EPOCH_B, EPOCH_A, initiator=False, stream_window=1017,
                     connection_window=1017),
        "01 00000000 001b  0001 00 b1b2b3b4b5b6b7b8 a1a2a3a4a5a6a7a8 000003f9 000003f9",
    ),
    (
        Open(1, 7, Priority.INTERACTIVE, 0x40000, b"hi"),
        encode_open(1, 7, Priority.INTERACTIVE, 0x40000, b"hi"),
        "02 00000001 0008  07 01 00040000 6869",
    ),
    (
        Open(0xFFFFFFFE, 255, Priority.BULK, 0x100000, b""),
        encode_open(0xFFFFFFFE, 255, Priority.BULK, 0x100000, b""),
        "02 fffffffe 0006  ff 02 00100000",
    ),
    (Data(3, b"abc"), encode_data(3, b"abc"), "03 00000003 0003  616263"),
    (Credit(0, 0x10000), encode_credit(0, 0x10000), "04 00000000 0004  00010000"),
    (Credit(2, 0xFFFFFFFF), encode_credit(2, 0xFFFFFFFF), "04 00000002 0004  ffffffff"),
    (Fin(5), encode_fin(5), "05 00000005 0000"),
    (Reset(4, ResetCode.TOO_MANY_STREAMS), encode_reset(4, ResetCode.TOO_MANY_STREAMS),
     "06 00000004 0002  0002"),
    (Reset(9, 0xBEEF), encode_reset(9, 0xBEEF), "06 00000009 0002  beef"),
]


@pytest.mark.parametrize("frame, encoded, hexbytes", TABLE)
def test_frames_encode_and_decode_to_the_documented_bytes(frame, encoded, hexbytes):
    wire = bytes.fromhex(hexbytes.replace(" ", ""))
    assert encoded == wire
    assert decode_frame(wire) == (frame, len(wire))
    # Any prefix is incomplete, not an error; a frame after others is found at its offset.
    for cut in range(len(wire)):
        assert decode_frame(wire[:cut]) is None
    assert decode_frame(b"\x05\x00\x00\x00\x01\x00\x00" + wire, 7) == (frame, 7 + len(wire))


def test_the_largest_frames_fit_one_link_frame():
    assert HEADER_SIZE == 7 and MAX_PAYLOAD == 1017 and HELLO_SIZE == 34
    assert len(encode_data(1, bytes(MAX_PAYLOAD))) == MAX_FRAME == 1024
    assert len(encode_open(1, 0, 0, 1017, bytes(256))) == 269


def _frame(ftype: int, sid: int, body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return bytes([ftype]) + sid.to_bytes(4, "big") + n.to_bytes(2, "big") + body


_HELLO_BODY = bytes.fromhex("0001 01 a1a2a3a4a5a6a7a8 0000000000000000 00040000 00400000"
                            .replace(" ", ""))

BAD = [
    ("unknown type", _frame(0x07, 1, b""), "unknown stream frame type 0x07"),
    ("type zero", _frame(0x00, 0, b""), "unknown stream frame type 0x00"),
    ("unknown type, body not yet here", _frame(0x99, 1, b"", length=10),
     "unknown stream frame type 0x99"),
    ("payload over 1017", _frame(0x03, 1, b"", length=1018), "payload of 1018 bytes"),
    ("empty DATA", _frame(0x03, 1, b""), "carries no bytes"),
    ("DATA on stream 0", _frame(0x03, 0, b"x"), "DATA frame on stream 0"),
    ("CREDIT too short", _frame(0x04, 1, b"\x00\x01"), "CREDIT frame of 2 bytes (must be 4)"),
    ("CREDIT too long", _frame(0x04, 1, bytes(5)), "CREDIT frame of 5 bytes (must be 4)"),
    ("CREDIT of zero", _frame(0x04, 1, bytes(4)), "CREDIT of 0 bytes"),
    ("FIN with a payload", _frame(0x05, 1, b"x"), "FIN frame of 1 bytes (must be 0)"),
    ("FIN on stream 0", _frame(0x05, 0, b""), "FIN frame on stream 0"),
    ("RESET too short", _frame(0x06, 1, b"\x00"), "RESET frame of 1 bytes (must be 2)"),
    ("RESET on stream 0", _frame(0x06, 0, b"\x00\x00"), "RESET frame on stream 0"),
    ("OPEN too short", _frame(0x02, 1, b"\x01\x01\x00\x04\x00"), "OPEN frame of 5 bytes"),
    ("OPEN on stream 0", _frame(0x02, 0, bytes.fromhex("0101 00040000")), "OPEN frame on stream 0"),
    ("OPEN unknown priority", _frame(0x02, 1, bytes.fromhex("0103 00040000")), "unknown priority 3"),
    ("OPEN window too small", _frame(0x02, 1, bytes.fromhex("0101 000003f8")),
     "OPEN window of 1016 bytes"),
    ("HELLO on a stream", _frame(0x01, 1, _HELLO_BODY), "HELLO on stream 1"),
    ("HELLO too short", _frame(0x01, 0, b"\x00"), "HELLO frame of 1 bytes is too short"),
    ("HELLO other version", _frame(0x01, 0, b"\x00\x02"), "version 2, we speak 1"),
    ("HELLO other version, longer", _frame(0x01, 0, b"\x00\x00" + bytes(40)), "version 0"),
    ("HELLO wrong length", _frame(0x01, 0, _HELLO_BODY + b"\x00"), "HELLO frame of 28 bytes"),
    ("HELLO unknown flag", _frame(0x01, 0, _HELLO_BODY[:2] + b"\x03" + _HELLO_BODY[3:]),
     "unknown flags 0x03"),
    ("HELLO without epoch", _frame(0x01, 0, _HELLO_BODY[:3] + bytes(8) + _HELLO_BODY[11:]),
     "without an epoch"),
    ("HELLO small stream window", _frame(0x01, 0, _HELLO_BODY[:19] + bytes(4) + _HELLO_BODY[23:]),
     "HELLO stream window of 0 bytes"),
    ("HELLO small connection window", _frame(0x01, 0, _HELLO_BODY[:23] + b"\x00\x00\x00\x10"),
     "HELLO connection window of 16 bytes"),
]


@pytest.mark.parametrize("what, data, message", BAD, ids=[b[0] for b in BAD])
def test_bad_frames_raise_stream_protocol_error(what, data, message):
    with pytest.raises(StreamProtocolError, match=re.escape(message)) as info:
        decode_frame(data)
    assert isinstance(info.value, RemoteProtocolError)  # the peer's fault, in the small tree


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=1100))
def test_any_bytes_decode_to_frames_or_raise_stream_protocol_error(data):
    pos = 0
    try:
        while (parsed := decode_frame(data, pos)) is not None:
            frame, end = parsed
            assert pos + HEADER_SIZE <= end <= len(data)
            pos = end
    except StreamProtocolError:
        pass
