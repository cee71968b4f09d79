"""The framed channel on the bridge port (daemon <-> local app, over TCP), sans-IO.

A frame is ``kind (1 byte) | payload length (2 bytes, big-endian) | payload``:

* ``DATA`` (0x01), both directions: at most ``MAX_PAYLOAD`` (1024) bytes of opaque payload.
  What one side writes as one data frame, the peer's app reads as one data frame.
* ``EVENT`` (0x02), daemon -> app only: a small UTF-8 JSON object, also <= 1024 bytes.

`FrameDecoder` turns received bytes into `Frame` objects. It never reads a socket: the
shell feeds it with `receive_data` and drains it with `next_frame` (or by iterating).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DATA",
    "EVENT",
    "HEADER_SIZE",
    "KIND_NAMES",
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD",
    "Frame",
    "FrameDecoder",
    "decode_event",
    "encode_data",
    "encode_event",
    "encode_frame",
]

DATA = 0x01
EVENT = 0x02
KIND_NAMES = {DATA: "DATA", EVENT: "EVENT"}

HEADER_SIZE = 3
MAX_PAYLOAD = 1024
MAX_FRAME_SIZE = HEADER_SIZE + MAX_PAYLOAD

_HEADER = struct.Struct(">BH")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of the local channel: its kind and its payload (at most 1024 bytes)."""

    kind: int
    payload: bytes


def encode_frame(kind: int, payload: bytes) -> bytes:
    """Return the bytes of one frame.

    Raises LocalProtocolError if ``kind`` is not DATA or EVENT, or the payload is longer
    than MAX_PAYLOAD.
    """
    if kind not in KIND_NAMES:
        raise LocalProtocolError(f"unknown frame kind 0x{kind:02x}")
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(
            f"frame payload of {len(payload)} bytes is over the limit of {MAX_PAYLOAD}"
        )
    return _HEADER.pack(kind, len(payload)) + payload


def encode_data(payload: bytes) -> bytes:
    """Return the bytes of one DATA frame (LocalProtocolError if over 1024 bytes)."""
    return encode_frame(DATA, payload)


def encode_event(obj: Mapping[str, Any]) -> bytes:
    """Return the bytes of one EVENT frame carrying ``obj`` as compact UTF-8 JSON.

    Raises LocalProtocolError if ``obj`` is not a mapping, is not JSON-serializable,
    or encodes to more than 1024 bytes.
    """
    if not isinstance(obj, Mapping):
        raise LocalProtocolError(f"an event must be a JSON object, not {type(obj).__name__}")
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"event is not JSON-serializable: {exc}") from None
    return encode_frame(EVENT, text.encode("utf-8"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_event(payload: bytes) -> dict[str, Any]:
    """Parse an EVENT payload. Raises RemoteProtocolError unless it is a UTF-8 JSON object."""
    try:
        obj = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RemoteProtocolError(f"event frame is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"event frame holds a JSON {type(obj).__name__}, not an object")
    return obj


class FrameDecoder:
    """Sans-IO parser of a stream of frames.

    ``allowed_kinds`` is what the other side may send: the daemon decodes the app's
    stream with ``{DATA}``, an app decodes the daemon's with ``{DATA, EVENT}`` (the default).

    Usage: call ``receive_data(chunk)``, then ``next_frame()`` until it returns None, then
    read more. ``receive_data(b"")`` reports end of file. Buffering stays bounded because
    ``receive_data`` refuses new bytes while a complete frame is still waiting to be taken:
    the decoder holds at most the last chunk plus one incomplete frame (1026 bytes).

    A frame of a kind not allowed, or with a length over 1024, raises RemoteProtocolError;
    the decoder then stays failed and every later call raises the same error.
    """

    def __init__(self, allowed_kinds: Iterable[int] = (DATA, EVENT)) -> None:
        kinds = frozenset(allowed_kinds)
        unknown = kinds - KIND_NAMES.keys()
        if unknown or not kinds:
            raise LocalProtocolError(f"bad allowed_kinds {sorted(kinds)}")
        self._allowed = kinds
        self._buf = bytearray()
        self._pos = 0  # start of the first unparsed byte in _buf
        self._base = 0  # stream offset of _buf[0], for error messages
        self._eof = False
        self._error: str | None = None

    # -- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the connection was closed (end of file).

        Raises LocalProtocolError if data comes after end of file, or while a complete frame
        is still buffered (call next_frame() until None first; this keeps memory bounded).
        """
        self._check_error()
        if self._eof:
            raise LocalProtocolError("receive_data() after end of file")
        if not data:
            self._eof = True
            return
        if self._has_complete_frame():
            raise LocalProtocolError("drain next_frame() before receive_data() (buffer limit)")
        # What is left is less than one frame: compact it to the front, then append.
        if self._pos:
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0
        self._buf += data

    # -- output ------------------------------------------------------------------------

    def next_frame(self) -> Frame | None:
        """Return the next complete frame, or None if more data is needed.

        Raises RemoteProtocolError for a frame kind that is not allowed, a length over
        MAX_PAYLOAD, or (after end of file) a frame cut short by the closed connection.
        """
        self._check_error()
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail >= HEADER_SIZE:
            kind, length = _HEADER.unpack_from(buf, pos)
            if kind not in self._allowed:
                name = KIND_NAMES.get(kind)
                what = f"{name} frames are not allowed" if name else "unknown frame kind"
                self._fail(f"{what} (kind byte 0x{kind:02x} at stream offset {self._base + pos})")
            if length > MAX_PAYLOAD:
                self._fail(f"frame length {length} is over the limit of {MAX_PAYLOAD}")
            end = pos + HEADER_SIZE + length
            if end <= len(buf):
                self._pos = end
                return Frame(kind, bytes(buf[pos + HEADER_SIZE : end]))
        if self._eof and avail:
            self._fail(f"connection closed in the middle of a frame ({avail} bytes of it received)")
        return None

    def __iter__(self) -> Iterator[Frame]:
        """Yield the complete frames buffered now."""
        while (frame := self.next_frame()) is not None:
            yield frame

    # -- state -------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    @property
    def eof(self) -> bool:
        return self._eof

    def at_eof_incomplete(self) -> bool:
        """Call at end of file: True if the bytes received stop in the middle of a frame.

        Complete frames not yet taken do not count; a frame header that next_frame() would
        reject does. Works whether or not ``receive_data(b"")`` was called.
        """
        buf, pos, end = self._buf, self._pos, len(self._buf)
        while end - pos >= HEADER_SIZE:
            kind, length = _HEADER.unpack_from(buf, pos)
            if kind not in self._allowed or length > MAX_PAYLOAD:
                return True
            pos += HEADER_SIZE + length
        return pos != end

    # -- internals ---------------------------------------------------------------------

    def _has_complete_frame(self) -> bool:
        avail = len(self._buf) - self._pos
        if avail < HEADER_SIZE:
            return False
        length: int = _HEADER.unpack_from(self._buf, self._pos)[1]
        # An over-long header counts as "complete": next_frame() must see it and fail.
        return length > MAX_PAYLOAD or avail >= HEADER_SIZE + length

    def _check_error(self) -> None:
        if self._error is not None:
            raise RemoteProtocolError(self._error)

    def _fail(self, message: str) -> None:
        self._error = message
        raise RemoteProtocolError(message)
