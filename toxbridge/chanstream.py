"""The one-peer channel (bridge port v1) inside one mux stream, sans-IO.

A mux stream is a byte stream, so app frames keep their boundaries by travelling as the
bridge port's own DATA frames, ``0x01 | u16 length | payload`` (docs/wire.md §1): the
receiver checks each one and hands runs of whole frames to the app unchanged.

The channel survives a peer daemon restart, as on the v1 Link: :class:`ResendBuffer` keeps
the frames the old peer's Link did not acknowledge, and they are the first bytes of the
channel stream in the peer's new mux epoch (docs/wire.md §3, "The channel").
"""

from __future__ import annotations

import struct
from collections import deque

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = ["CHANNEL_KIND", "ChannelDecoder", "ResendBuffer", "encode_frames"]

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


class ResendBuffer:
    """The channel bytes (whole frames) given to the channel stream and not known to be
    acknowledged by the peer's Link, from the first frame not wholly acknowledged.

    ``fed(data)`` for what goes into the stream, ``framed(link_end, stream_sent)`` after each
    Link frame (the Link offset of its end, the stream's DATA bytes framed by then),
    ``acked(link_acked)`` as the Link's acks come. When the peer restarts, ``restart()``:
    everything kept is unfed, to go first into the new stream (offset 0 = its first byte).
    ``limit``: the most bytes kept (the stream's window and feed bound them; this is the
    check).
    """

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._start = 0  # stream offset of _buf[0] (a frame boundary)
        self._fed = 0  # bytes of _buf given to the current stream
        self._marks: deque[tuple[int, int]] = deque()  # (link end, stream bytes framed)
        self.resent = 0  # bytes handed out again after restarts

    def room(self) -> int:
        return self._limit - len(self._buf)

    def fed(self, data: bytes) -> None:
        """Raises LocalProtocolError beyond ``limit`` or while unfed() is not empty."""
        if self._fed != len(self._buf):
            raise LocalProtocolError("new channel bytes before the kept ones were resent")
        if len(data) > self._limit - len(self._buf):
            raise LocalProtocolError(f"channel resend buffer over {self._limit} bytes")
        self._buf += data
        self._fed = len(self._buf)

    def unfed(self, limit: int) -> bytes:
        """Up to ``limit`` kept bytes the current stream has not had yet (after a restart)."""
        return bytes(self._buf[self._fed : self._fed + limit])

    @property
    def pending(self) -> int:
        """Kept bytes the current stream has not had yet."""
        return len(self._buf) - self._fed

    def refed(self, n: int) -> None:
        """``n`` bytes of unfed() went into the stream."""
        self._fed += n
        self.resent += n

    def framed(self, link_end: int, stream_sent: int) -> None:
        marks = self._marks
        if not marks or marks[-1][1] != stream_sent:
            marks.append((link_end, stream_sent))

    def acked(self, link_acked: int) -> None:
        marks = self._marks
        done = -1
        while marks and marks[0][0] <= link_acked:
            done = marks.popleft()[1]
        if done < 0:
            return
        # Drop the frames wholly acknowledged: a frame cut by a mux DATA frame stays whole.
        buf, pos, size, stop = self._buf, 0, len(self._buf), done - self._start
        unpack = _HEAD.unpack_from
        while pos + 3 <= size:
            end = pos + 3 + unpack(buf, pos)[1]
            if end > stop:
                break
            pos = end
        if pos:
            del buf[:pos]
            self._start += pos
            self._fed -= pos

    def restart(self) -> None:
        """The channel stream is new (the peer restarted): all kept bytes are to go again."""
        self._start = self._fed = 0
        self._marks.clear()

    def clear(self) -> None:
        """The channel stream is gone for good (reset for another reason)."""
        self._buf.clear()
        self.restart()

    def __len__(self) -> int:
        return len(self._buf)
