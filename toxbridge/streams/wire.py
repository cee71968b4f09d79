"""The stream frames carried inside a Link's byte stream (layouts: docs/wire.md, "Streams").

Every frame is ``type u8 | stream id u32 | length u16 | payload`` and is at most 1024 bytes
long, so that one frame always fits in one Link frame: the mux never has to commit to the
rest of a half-sent frame, and an interactive frame waits behind at most one bulk frame of
its own making. Pure encode/decode; :func:`decode_frame` raises StreamProtocolError.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..errors import StreamProtocolError

PROTOCOL_VERSION = 1
MAX_FRAME = 1024  # one Link frame (toxbridge.link.MAX_FRAME_PAYLOAD)
_HEADER = struct.Struct(">BIH")  # type, stream id, payload length
HEADER_SIZE = _HEADER.size  # 7
MAX_PAYLOAD = MAX_FRAME - HEADER_SIZE  # 1017: the most DATA bytes in one frame
MAX_HEADER = 256  # bytes of an OPEN's application header
EPOCH_SIZE = 8
MIN_WINDOW = MAX_PAYLOAD  # any smaller window could not carry one full DATA frame
MAX_WINDOW = 2**32 - 1
MAX_STREAM_ID = 2**32 - 1
HELLO_INITIATOR = 0x01  # HELLO flag: the sender opens odd stream ids

_HELLO_BODY = struct.Struct(">HB8s8sII")  # version flags epoch echo stream_window conn_window
_OPEN_BODY = struct.Struct(">BBI")  # kind priority window, then the header
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_NO_EPOCH = bytes(EPOCH_SIZE)


class FrameType(enum.IntEnum):
    HELLO = 0x01
    OPEN = 0x02
    DATA = 0x03
    CREDIT = 0x04
    FIN = 0x05
    RESET = 0x06


class Priority(enum.IntEnum):
    """Scheduling classes, strict between classes (lower value first)."""

    CONTROL = 0  # the session's own control messages
    INTERACTIVE = 1  # chat, commands, keystrokes
    BULK = 2  # file chunks, forwarded bulk bytes


class ResetCode(enum.IntEnum):
    """Why a stream was reset (u16 on the wire; an unknown code is delivered as a plain int)."""

    CANCELLED = 0  # the app gave the stream up
    REFUSED = 1  # the acceptor does not serve this kind or header
    TOO_MANY_STREAMS = 2  # the acceptor already has its maximum of streams from this peer
    FLOW_CONTROL = 3  # the peer sent beyond the credit it was given
    PEER_RESTARTED = 4  # a new mux epoch: the peer daemon restarted (local events only)
    PROTOCOL_ERROR = 5  # a frame broke the stream's rules (oversize header, data after FIN, ...)
    TIMEOUT = 6  # a shell gave up waiting
    DESTINATION_REFUSED = 7  # forwarding: the exposed destination refused the connection
    DESTINATION_UNREACHABLE = 8  # forwarding: no such destination, or not allowed
    INTERNAL = 9  # the other side failed locally
    PEER_REMOVED = 10  # the peer was removed from the node (local events only)


# -- frames ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    initiator: bool
    epoch: bytes
    echo: bytes  # the receiver's epoch as the sender last saw it; zeros: none seen
    stream_window: int  # the credit each stream the receiver opens starts with
    connection_window: int  # the credit of all streams together


@dataclass(frozen=True, slots=True)
class Open:
    stream_id: int
    kind: int
    priority: Priority
    window: int  # the opener's receive window on this stream
    header: bytes  # may exceed MAX_HEADER: the mux refuses such a stream, not the decoder


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Credit:
    stream_id: int  # 0: the connection
    increment: int


@dataclass(frozen=True, slots=True)
class Fin:
    stream_id: int


@dataclass(frozen=True, slots=True)
class Reset:
    stream_id: int
    code: int


Frame = Hello | Open | Data | Credit | Fin | Reset


# -- encoding -------------------------------------------------------------------------------


def encode_hello(epoch: bytes, echo: bytes | None, *, initiator: bool, stream_window: int,
                 connection_window: int) -> bytes:
    body = _HELLO_BODY.pack(PROTOCOL_VERSION, HELLO_INITIATOR if initiator else 0, epoch,
                            echo or _NO_EPOCH, stream_window, connection_window)
    return _HEADER.pack(FrameType.HELLO, 0, len(body)) + body


def encode_open(stream_id: int, kind: int, priority: int, window: int, header: bytes) -> bytes:
    body = _OPEN_BODY.pack(kind, priority, window) + header
    return _HEADER.pack(FrameType.OPEN, stream_id, len(body)) + body


def encode_data(stream_id: int, data: bytes) -> bytes:
    return _HEADER.pack(FrameType.DATA, stream_id, len(data)) + data


def data_header(stream_id: int, size: int) -> bytes:
    """The 7 bytes in front of ``size`` DATA bytes (the mux appends the bytes itself)."""
    return _HEADER.pack(FrameType.DATA, stream_id, size)


def encode_credit(stream_id: int, increment: int) -> bytes:
    return _HEADER.pack(FrameType.CREDIT, stream_id, 4) + _U32.pack(increment)


def encode_fin(stream_id: int) -> bytes:
    return _HEADER.pack(FrameType.FIN, stream_id, 0)


def encode_reset(stream_id: int, code: int) -> bytes:
    return _HEADER.pack(FrameType.RESET, stream_id, 2) + _U16.pack(code)


OPEN_SIZE = HEADER_SIZE + _OPEN_BODY.size  # plus the header
CREDIT_SIZE = HEADER_SIZE + 4
FIN_SIZE = HEADER_SIZE
RESET_SIZE = HEADER_SIZE + 2
HELLO_SIZE = HEADER_SIZE + _HELLO_BODY.size


# -- decoding -------------------------------------------------------------------------------


def decode_frame(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[Frame, int] | None:
    """The frame starting at ``buf[pos]`` and the offset after it, or None if incomplete.

    Raises StreamProtocolError for anything that is not a valid frame: an unknown type, a
    payload over MAX_PAYLOAD, a wrong length for the type, stream id 0 where a stream is
    meant (or not 0 for HELLO), a zero credit, an unknown priority or HELLO flag, an empty
    epoch, a window under MIN_WINDOW, another protocol version.
    """
    if len(buf) - pos < HEADER_SIZE:
        return None
    ftype, sid, length = _HEADER.unpack_from(buf, pos)
    if length > MAX_PAYLOAD:
        raise StreamProtocolError(f"stream frame payload of {length} bytes (at most {MAX_PAYLOAD})")
    start = pos + HEADER_SIZE
    end = start + length
    if len(buf) < end:
        if ftype not in _TYPES:  # fail as early as the bytes allow
            raise StreamProtocolError(f"unknown stream frame type 0x{ftype:02x}")
        return None
    if ftype == FrameType.DATA:  # the hot path first
        if not length:
            raise StreamProtocolError(f"DATA frame for stream {sid} carries no bytes")
        return Data(_stream(sid, "DATA"), bytes(buf[start:end])), end
    if ftype == FrameType.CREDIT:
        _length(length, 4, "CREDIT")
        (increment,) = _U32.unpack_from(buf, start)
        if not increment:
            raise StreamProtocolError(f"CREDIT of 0 bytes for stream {sid}")
        return Credit(sid, increment), end
    if ftype == FrameType.OPEN:
        if length < _OPEN_BODY.size:
            raise StreamProtocolError(f"OPEN frame of {length} bytes (at least {_OPEN_BODY.size})")
        kind, priority, window = _OPEN_BODY.unpack_from(buf, start)
        if priority not in _PRIORITIES:
            raise StreamProtocolError(f"OPEN of stream {sid} with unknown priority {priority}")
        _window(window, "OPEN")
        header = bytes(buf[start + _OPEN_BODY.size : end])
        return Open(_stream(sid, "OPEN"), kind, Priority(priority), window, header), end
    if ftype == FrameType.FIN:
        _length(length, 0, "FIN")
        return Fin(_stream(sid, "FIN")), end
    if ftype == FrameType.RESET:
        _length(length, 2, "RESET")
        return Reset(_stream(sid, "RESET"), _U16.unpack_from(buf, start)[0]), end
    if ftype == FrameType.HELLO:
        if sid:
            raise StreamProtocolError(f"HELLO on stream {sid} (must be 0)")
        if length < 2:
            raise StreamProtocolError(f"HELLO frame of {length} bytes is too short")
        version = _U16.unpack_from(buf, start)[0]
        if version != PROTOCOL_VERSION:  # before the length: another version may differ
            raise StreamProtocolError(
                f"peer speaks stream protocol version {version}, we speak {PROTOCOL_VERSION}")
        _length(length, _HELLO_BODY.size, "HELLO")
        _, flags, epoch, echo, swin, cwin = _HELLO_BODY.unpack_from(buf, start)
        if flags & ~HELLO_INITIATOR:
            raise StreamProtocolError(f"HELLO with unknown flags 0x{flags:02x}")
        if epoch == _NO_EPOCH:
            raise StreamProtocolError("HELLO without an epoch")
        _window(swin, "HELLO stream")
        _window(cwin, "HELLO connection")
        return Hello(version, bool(flags & HELLO_INITIATOR), epoch, echo, swin, cwin), end
    raise StreamProtocolError(f"unknown stream frame type 0x{ftype:02x}")


_TYPES = frozenset(FrameType)
_PRIORITIES = frozenset(Priority)


def _stream(sid: int, what: str) -> int:
    if not sid:
        raise StreamProtocolError(f"{what} frame on stream 0 (the connection)")
    return sid


def _length(length: int, want: int, what: str) -> None:
    if length != want:
        raise StreamProtocolError(f"{what} frame of {length} bytes (must be {want})")


def _window(window: int, what: str) -> None:
    if window < MIN_WINDOW:
        raise StreamProtocolError(f"{what} window of {window} bytes (at least {MIN_WINDOW})")
