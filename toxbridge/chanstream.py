"""The one-peer channel (bridge port v1) inside one mux stream, sans-IO.

A mux stream is a byte stream, so app frames keep their boundaries by travelling as the
bridge port's own DATA frames, ``0x01 | u16 length | payload`` (docs/wire.md §1): the
receiver checks each one and hands runs of whole frames to the app unchanged.
"""

from __future__ import annotations

import struct

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = ["CHANNEL_KIND", "ChannelDecoder", "encode_frames"]

CHANNEL_KIND = 1  # the stream kind of the channel (docs/wire.md §3, "The channel")
_DATA = 0x01  # toxbridge.framing.DATA (the framing layer is not needed here)
_MAX = 1024
_HEAD = struct.Struct(">BH")


def encode_frames(payloads: list[bytes]) -> bytes:
    """App frames as channel-stream bytes."""
    head = _HEAD.pack
    parts = []
    for p in payloads:
        parts.append(head(_DATA, len(p)))
        parts.append(p)
    return b"".join(parts)


class ChannelDecoder:
    """Channel-stream bytes in, runs of whole app frames out. ``limit``: the most bytes it
    holds (the stream's receive window bounds them already; this is the check)."""

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self._limit = limit
        self.frames = 0  # whole frames taken out so far

    def receive(self, data: bytes) -> None:
        """Raises LocalProtocolError beyond ``limit``."""
        if len(self._buf) + len(data) > self._limit:
            raise LocalProtocolError(f"channel buffer over {self._limit} bytes")
        self._buf += data

    def take_run(self, max_frames: int) -> bytes:
        """Up to ``max_frames`` whole frames from the front (b"": none complete yet).

        Raises RemoteProtocolError for a kind other than DATA or a length over 1024.
        """
        buf, pos, n = self._buf, 0, 0
        size = len(buf)
        unpack = _HEAD.unpack_from
        while n < max_frames and pos + 3 <= size:
            kind, length = unpack(buf, pos)
            if kind != _DATA or length > _MAX:
                raise RemoteProtocolError(f"bad frame in the channel stream (kind {kind}, "
                                          f"length {length})")
            if pos + 3 + length > size:
                break
            pos += 3 + length
            n += 1
        if not pos:
            return b""
        self.frames += n
        run = bytes(buf[:pos])
        del buf[:pos]
        return run

    def drop_partial(self) -> int:
        """The stream is gone: keep its whole frames (still delivered), drop an incomplete
        last one. Returns the bytes kept."""
        buf, pos, size = self._buf, 0, len(self._buf)
        while pos + 3 <= size:
            kind, length = _HEAD.unpack_from(buf, pos)
            if kind != _DATA or length > _MAX or pos + 3 + length > size:
                break
            pos += 3 + length
        del buf[pos:]
        return pos

    def __len__(self) -> int:
        return len(self._buf)
