"""The send side of a Mux: bounded send buffers, the peer's credit, the queued control
frames (CREDIT, RESET, OPEN), and the framing of what the scheduler picks."""

from __future__ import annotations

from collections import deque

from ..errors import StreamProtocolError
from .events import CreditAvailable, MuxEvent
from .flow import Stream
from .limits import Limits
from .scheduler import Scheduler
from .wire import (
    CREDIT_SIZE, FIN_SIZE, HEADER_SIZE, MAX_PAYLOAD, OPEN_SIZE, RESET_SIZE, data_header,
    encode_credit, encode_fin, encode_open, encode_reset,
)

_MIN_DATA = 128  # a budget that leaves less for a DATA frame waits for the next call


class Sender:
    """``events``: the Mux's event queue (CreditAvailable goes there)."""

    def __init__(self, limits: Limits, events: deque[MuxEvent]) -> None:
        self._limits = limits
        self._events = events
        self._sched = Scheduler()
        self._low_water = max(1, limits.stream_send_buffer // 4)
        self._credits: dict[int, Stream] = {}  # streams with credit to send, in order
        self._resets: dict[int, int] = {}  # stream id on the wire -> code
        self._opens: dict[int, Stream] = {}  # our streams whose OPEN waits, in id order
        self._blocked: dict[int, Stream] = {}  # owed a CreditAvailable when the total has room
        self._done: list[Stream] = []  # FIN framed in the last fill()
        self._out = bytearray()  # what fill() is filling (for _emit)
        self.peer_stream_window = 0  # credit of each stream we open (the peer's HELLO)
        self.conn_credit = 0  # DATA bytes we may still frame, all streams
        self.conn_credit_out = 0  # connection credit to send
        self.buffered = 0
        self.frames = self.data_bytes = self.credit_frames = 0

    def clear(self) -> None:
        """The peer restarted: every stream is gone, and all that was queued for them."""
        self._sched.clear()
        self._credits.clear()
        self._resets.clear()
        self._opens.clear()
        self._blocked.clear()
        self.conn_credit_out = 0
        self.buffered = 0

    def new_peer(self, stream_window: int, connection_window: int) -> None:
        """The credits a peer mux's HELLO gives (we have sent it nothing yet)."""
        self.peer_stream_window = stream_window
        self.conn_credit = connection_window

    # -- what the Mux queues -------------------------------------------------------------

    def queue_open(self, stream: Stream) -> None:
        self._opens[stream.id] = stream  # in id order, whatever the priorities

    def queue_reset(self, wire_id: int, code: int) -> None:
        # One per id, and ids only grow; a peer that keeps us resetting faster than we send
        # is flooding us.
        if len(self._resets) >= 4 * self._limits.max_streams:
            raise StreamProtocolError("peer makes us reset streams faster than we can tell it")
        self._resets[wire_id] = code

    def queue_credit(self, stream: Stream, due: int) -> None:
        if due:
            stream.credit_out += due
            self._credits[stream.id] = stream

    def room(self, stream: Stream) -> int:
        lim = self._limits
        return max(0, min(lim.stream_send_buffer - len(stream.buf), lim.send_buffer - self.buffered))

    def take(self, stream: Stream, data: bytes) -> int:
        """send(): take what fits; mark the stream owed a CreditAvailable if not all did."""
        n = min(len(data), self.room(stream))
        if n < len(data):
            stream.blocked = True  # announced by its own emits, or by the total's room
            if len(stream.buf) + n < self._limits.stream_send_buffer:
                self._blocked[stream.id] = stream  # the per-peer total is what is full
        if n:
            stream.buf += data[:n] if n < len(data) else data
            self.buffered += n
            self.wake(stream)
        return n

    def wake(self, stream: Stream) -> None:
        if stream.sendable(self.conn_credit):
            self._sched.activate(stream)

    def grant_connection(self, increment: int, streams: dict[int, Stream]) -> None:
        self.conn_credit += increment
        # Rare (a quarter of the connection window each): a scan beats bookkeeping.
        for stream in streams.values():
            if not stream.active:
                self.wake(stream)

    def forget(self, stream: Stream) -> None:
        """The stream is gone: drop its unsent bytes and anything queued for it (but a
        RESET already queued)."""
        self.buffered -= len(stream.buf)
        stream.buf.clear()
        self._sched.remove(stream)
        self._credits.pop(stream.id, None)
        self._opens.pop(stream.id, None)
        self._blocked.pop(stream.id, None)

    # -- framing -------------------------------------------------------------------------

    def fill(self, out: bytearray, max_bytes: int) -> list[Stream]:
        """Append frames to ``out`` up to ``max_bytes``: control frames, then the streams
        by class and round robin. Returns the streams whose FIN went out."""
        self._control_frames(out, max_bytes)
        self._out = out
        self._sched.fill(max_bytes - len(out), self._emit)
        self._out = bytearray()
        if self._blocked and self._limits.send_buffer - self.buffered >= self._low_water:
            for stream in list(self._blocked.values()):
                self._room_for(stream)
        done, self._done = self._done, []
        return done

    def _control_frames(self, out: bytearray, max_bytes: int) -> None:
        if self.conn_credit_out and len(out) + CREDIT_SIZE <= max_bytes:
            out += encode_credit(0, self.conn_credit_out)
            self.conn_credit_out = 0
            self.frames += 1
            self.credit_frames += 1
        credits = self._credits
        while credits and len(out) + CREDIT_SIZE <= max_bytes:
            stream = credits.pop(next(iter(credits)))
            out += encode_credit(stream.wire_id, stream.credit_out)
            stream.credit_out = 0
            self.frames += 1
            self.credit_frames += 1
        resets = self._resets
        while resets and len(out) + RESET_SIZE <= max_bytes:
            sid = next(iter(resets))
            out += encode_reset(sid, resets.pop(sid))
            self.frames += 1
        # The peer takes ids in increasing order only, so OPENs are not scheduled by class;
        # they are small and rare.
        opens = self._opens
        while opens:
            stream = opens[next(iter(opens))]
            if len(out) + OPEN_SIZE + len(stream.header) > max_bytes:
                break
            del opens[stream.id]
            out += encode_open(stream.id, stream.kind, stream.priority, stream.recv.window,
                               stream.header)
            stream.open_pending = False
            stream.send_limit = self.peer_stream_window
            self.frames += 1
            self.wake(stream)

    def _emit(self, stream: Stream, limit: int) -> tuple[int, bool]:
        """Frame up to ``limit`` bytes of one stream (its turn in the scheduler)."""
        written, more = self._frame(stream, limit)
        if stream.blocked and written:
            self._room_for(stream)
        return written, more

    def _frame(self, stream: Stream, limit: int) -> tuple[int, bool]:
        out = self._out
        buf = stream.buf
        credit = min(stream.send_limit - stream.sent, self.conn_credit)
        wire = stream.wire_id
        written = total = frames = 0
        more = None  # why framing stopped with bytes left: None = it did not
        while buf:
            if credit <= 0:
                more = False  # back in the ring when credit comes
                break
            want = min(len(buf), credit, MAX_PAYLOAD)
            n = min(want, limit - written - HEADER_SIZE)
            if n < want and n < _MIN_DATA:
                more = True  # no tiny frames: wait for the next turn or call
                break
            out += data_header(wire, n)
            out += buf[:n]
            del buf[:n]
            credit -= n
            total += n
            frames += 1
            written += HEADER_SIZE + n
        if total:
            stream.sent += total
            self.conn_credit -= total
            self.buffered -= total
            self.data_bytes += total
            self.frames += frames
        if more is not None:
            return written, more
        if stream.fin_pending:
            if limit - written < FIN_SIZE:
                return written, True
            out += encode_fin(stream.wire_id)
            stream.fin_pending = False
            stream.fin_sent = True
            written += FIN_SIZE
            self.frames += 1
            self._done.append(stream)
        return written, False

    def _room_for(self, stream: Stream) -> None:
        """A CreditAvailable once send() would take low_water bytes again (not per frame)."""
        lim = self._limits
        if lim.stream_send_buffer - len(stream.buf) >= self._low_water:
            if lim.send_buffer - self.buffered >= self._low_water:
                stream.blocked = False
                self._blocked.pop(stream.id, None)
                self._events.append(CreditAvailable(stream.id))
            else:
                self._blocked[stream.id] = stream  # now the total is what is full
