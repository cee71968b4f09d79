"""Many streams over one Link, sans-IO (h11 style): bytes and calls in, events and bytes out.

The shell loop (the tox thread, per peer): every frame the Link delivers goes to
``receive_data``, then ``next_event()`` until None; the app's calls become ``open_stream`` /
``send`` / ``end`` / ``reset`` / ``consume``; while the Link can take a frame,
``data_to_send(1024)`` and ``link.send_frame(chunk)`` until it returns b""; then
``next_event()`` again (sending frees buffers: CreditAvailable). Link reconnects are
invisible here: the Link resends what was lost.

* Each side sends a HELLO first: its epoch (random per mux, i.e. per daemon process), the
  peer's epoch as last seen, its role, and the credit the peer's streams start with. Stream
  frames go out only after our HELLO echoing the peer's epoch; frames that arrive before
  the peer's HELLO echoing ours are dropped (they were meant for a predecessor of ours,
  resent by the Link after our restart). A HELLO with a new epoch means the peer restarted:
  every stream is reset with PEER_RESTARTED. The Link below loses nothing while both live,
  so the handshake needs no timer.
* Flow control as in QUIC: each stream has a receive window, the connection one for all
  streams; the receiver grants credit back as its app consumes, in batches. DATA beyond a
  stream's credit resets that stream (FLOW_CONTROL); beyond the connection's it is a
  protocol error of the whole mux. Neither can grow our memory: received bytes are handed
  out as events at once, and unconsumed ones are bounded by the windows.
* Stream ids only grow, so a frame for an id below the next one that is not in the table
  is for a closed stream (in flight when it closed) and dropped; closed streams keep no state.
  A restarted peer numbers its streams from the start again; the ids the app sees do not.
"""

from __future__ import annotations

import struct
from collections import deque

from ..errors import LocalProtocolError, StreamProtocolError
from .events import (
    MuxEvent, MuxStatistics, PeerRestarted, ProtocolViolation, StreamData, StreamEnded,
    StreamOpened, StreamReset,
)
from .flow import ReceiveWindow, Stream
from .limits import Limits
from .sender import Sender
from .wire import (
    EPOCH_SIZE, HEADER_SIZE, MAX_FRAME, MAX_HEADER, MAX_PAYLOAD, MAX_STREAM_ID, Credit, Data,
    Fin, Frame, FrameType, Hello, Open, Priority, ResetCode, decode_frame, encode_hello,
)

__all__ = ["Mux"]

_CODES = frozenset(ResetCode)
_DATA_TYPE = FrameType.DATA.value
_MERGE_FRAMES = 64  # more DATA frames joined into one StreamData at most (64 KiB)
_HEADER = struct.Struct(">BIH")  # wire._HEADER: type, stream id, payload length

_PRIORITIES = frozenset(Priority)


class Mux:
    """One peer's streams. ``epoch``: 8 random bytes, new for each daemon process.
    ``initiator``: this side opens odd stream ids, the other even ones (the shell gives the
    role to the side with the lower Tox public key, so both sides agree however they met)."""

    def __init__(self, epoch: bytes, *, initiator: bool, limits: Limits | None = None) -> None:
        if len(epoch) != EPOCH_SIZE or not any(epoch):
            raise LocalProtocolError(f"epoch must be {EPOCH_SIZE} random bytes, not all zero")
        self._limits = lim = limits or Limits()
        self._epoch = bytes(epoch)
        self._initiator = initiator
        self._error: str | None = None
        self._peer_epoch: bytes | None = None
        self._synced = False  # the peer's HELLO echoing our epoch arrived
        self._hello_due = True
        self._echo_sent: bytes | None = None  # the peer epoch our last framed HELLO echoed
        self._streams: dict[int, Stream] = {}
        self._next_id = 1 if initiator else 2
        self._peer_last = 0  # the highest (local) id a peer of ours opened
        # The peer's ids start over when it restarts; ours for them do not: local id = wire
        # id + _peer_base, so a late consume() for an old stream never hits a new one.
        self._peer_base = 0
        self._n_own = self._n_peer = 0
        self._conn = ReceiveWindow(lim.connection_window, lim.credit_divisor)
        self._events: deque[MuxEvent] = deque()
        self._tx = Sender(lim, self._events)
        self._rbuf = bytearray()
        self._n_recv = self._b_recv = self._b_discarded = self._n_hello = 0
        self._n_ignored = self._n_refused = self._n_bad = self._n_restarts = 0

    # -- the app's side ------------------------------------------------------------------

    def open_stream(self, kind: int, priority: Priority = Priority.BULK, header: bytes = b"") -> int:
        """Open a stream (its OPEN goes out next, before any stream data); return its id.

        Raises LocalProtocolError for a kind outside 0..255, a header over 256 bytes, when
        we already have ``max_streams`` open, or in the ERROR state.
        """
        self._check()
        if not 0 <= kind <= 255:
            raise LocalProtocolError(f"stream kind {kind} is not a u8")
        if priority not in _PRIORITIES:
            raise LocalProtocolError(f"unknown priority {priority}")
        priority = Priority(priority)
        if len(header) > MAX_HEADER:
            raise LocalProtocolError(f"stream header of {len(header)} bytes (at most {MAX_HEADER})")
        if self._n_own >= self._limits.max_streams:
            raise LocalProtocolError(f"{self._n_own} streams open: the limit")
        sid = self._next_id
        if sid > MAX_STREAM_ID:
            raise LocalProtocolError("stream ids are used up: make a new Mux")
        self._next_id += 2
        window = self._window_for(priority)
        recv = ReceiveWindow(window, self._limits.credit_divisor)
        stream = Stream(sid, kind, priority, bytes(header), local=True, recv=recv, send_limit=0)
        self._streams[sid] = stream
        self._n_own += 1
        self._tx.queue_open(stream)
        return sid

    def send(self, stream_id: int, data: bytes) -> int:
        """Queue bytes for a stream; return how many were taken (maybe fewer than given:
        the buffers are bounded; a CreditAvailable event says when to offer the rest).

        Raises LocalProtocolError for a stream that is not open or already ended.
        """
        stream = self._live(stream_id)
        if stream.ended:
            raise LocalProtocolError(f"stream {stream_id} is ended: no more send()")
        return self._tx.take(stream, data)

    def end(self, stream_id: int) -> None:
        """Half-close: a FIN follows the bytes already sent. Idempotent."""
        stream = self._live(stream_id)
        if not stream.ended:
            stream.ended = stream.fin_pending = True
            self._tx.wake(stream)

    def reset(self, stream_id: int, code: int = ResetCode.CANCELLED) -> None:
        """Abort a stream both ways (unsent bytes are dropped). No-op for a closed stream."""
        self._check()
        if not 0 <= code <= 0xFFFF:
            raise LocalProtocolError(f"reset code {code} is not a u16")
        stream = self._streams.get(stream_id)
        if stream is None:
            if not self._was_opened(stream_id):
                raise LocalProtocolError(f"stream {stream_id} was never opened")
            return
        if not stream.open_pending:  # else the peer never heard of it
            self._tx.queue_reset(stream.wire_id, code)
        self._release(stream)

    def consume(self, stream_id: int, n: int) -> None:
        """The app has used ``n`` more bytes of the stream: credit goes back (in batches).
        No-op for a closed stream; LocalProtocolError for more than was received."""
        self._check()
        stream = self._streams.get(stream_id)
        if stream is None:
            if not self._was_opened(stream_id):
                raise LocalProtocolError(f"stream {stream_id} was never opened")
            return
        recv = stream.recv
        if not 0 <= n <= recv.unconsumed:
            raise LocalProtocolError(f"consume({n}) on stream {stream_id} with "
                                     f"{recv.unconsumed} unconsumed bytes")  # fmt: skip
        recv.consumed += n
        self._conn.consumed += n
        self._tx.conn_credit_out += self._conn.credit_due()
        if not stream.fin_received:
            self._tx.queue_credit(stream, recv.credit_due())
        elif stream.done:
            self._remove(stream)

    # -- bytes in ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the Link (any cut: frames may span calls). Drain next_event() before
        the next call; LocalProtocolError if more than ``receive_buffer`` would wait."""
        self._check()
        if len(self._rbuf) + len(data) > self._limits.receive_buffer:
            raise LocalProtocolError("receive buffer full: drain next_event() first")
        self._rbuf += data

    def next_event(self) -> MuxEvent | None:
        """The next event, or None when all input is used up.

        Raises StreamProtocolError if the peer broke the protocol of the whole mux; the mux
        then stays in the ERROR state: events from before the bad frame are still handed
        out, then every call raises (make a new Mux with a new Link).
        """
        events = self._events
        rbuf = self._rbuf
        pos = 0
        try:
            while not events:
                self._check()
                try:
                    parsed = decode_frame(rbuf, pos)
                    if parsed is None:
                        return None
                    frame, pos = parsed
                    self._n_recv += 1
                    self._handle(frame)
                except StreamProtocolError as exc:
                    self._error = str(exc)
                    raise
            first = events[0]
            if len(events) == 1 and type(first) is StreamData:
                stream = self._streams.get(first.stream_id)
                if stream is not None and not stream.fin_received:
                    parts = [first.data]
                    pos = self._data_run(rbuf, pos, stream, parts)
                    if len(parts) > 1:
                        events[0] = StreamData(first.stream_id, b"".join(parts))
        finally:
            if pos:
                del rbuf[:pos]
        return events.popleft()

    def _data_run(self, rbuf: bytearray, pos: int, stream: Stream, parts: list[bytes]) -> int:
        """More DATA frames of ``stream`` right at ``pos`` join one StreamData (per-frame
        events were the receive side's hot spot), with _on_data's accounting. Anything else
        (another frame, an incomplete one, one beyond a credit) ends the run and is left to
        decode_frame and _handle. Returns the offset after the frames taken."""
        conn, recv, wire = self._conn, stream.recv, stream.wire_id
        size = len(rbuf)
        unpack = _HEADER.unpack_from
        taken = 0
        for _ in range(_MERGE_FRAMES):
            if pos + HEADER_SIZE > size:
                break
            ftype, sid, n = unpack(rbuf, pos)
            start = pos + HEADER_SIZE
            if (ftype != _DATA_TYPE or sid != wire or not 0 < n <= MAX_PAYLOAD
                    or start + n > size or conn.received + n > conn.limit
                    or recv.received + n > recv.limit):
                break
            conn.received += n
            recv.received += n
            taken += n
            parts.append(bytes(rbuf[start : start + n]))
            self._n_recv += 1
            pos = start + n
        self._b_recv += taken
        return pos

    # -- bytes out -----------------------------------------------------------------------

    def data_to_send(self, max_bytes: int = MAX_FRAME) -> bytes:
        """Whole frames, at most ``max_bytes`` together (at least 1024: one Link frame's
        worth): HELLO, then CREDIT and RESET, then stream frames by priority class and round
        robin, never beyond the peer's credit. b"" when nothing is due (or in ERROR)."""
        if max_bytes < MAX_FRAME:
            raise LocalProtocolError(f"data_to_send() needs room for a frame ({MAX_FRAME} bytes)")
        if self._error is not None:
            return b""
        out = bytearray()
        if self._hello_due:
            lim = self._limits
            out += encode_hello(self._epoch, self._peer_epoch, initiator=self._initiator,
                                stream_window=lim.stream_window,
                                connection_window=lim.connection_window)
            self._hello_due = False
            self._echo_sent = self._peer_epoch
            self._n_hello += 1
        if self._peer_epoch is None or self._echo_sent != self._peer_epoch:
            return bytes(out)
        for stream in self._tx.fill(out, max_bytes):
            if stream.done and self._streams.get(stream.id) is stream:
                self._remove(stream)
        return bytes(out)

    # -- state ---------------------------------------------------------------------------

    @property
    def error(self) -> str | None:
        """Why the mux is in the ERROR state, or None."""
        return self._error

    @property
    def synced(self) -> bool:
        """Both HELLOs seen: stream frames flow both ways."""
        return self._synced and self._peer_epoch is not None and self._echo_sent == self._peer_epoch

    @property
    def epoch(self) -> bytes:
        return self._epoch

    @property
    def peer_epoch(self) -> bytes | None:
        """The epoch of the peer's last HELLO (None before the first)."""
        return self._peer_epoch

    @property
    def buffered_bytes(self) -> int:
        """Bytes taken by send() and not yet framed (at most ``send_buffer``)."""
        return self._tx.buffered

    @property
    def unparsed_bytes(self) -> int:
        return len(self._rbuf)

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def send_room(self, stream_id: int) -> int:
        """What send() would take now."""
        return self._tx.room(self._live(stream_id))

    def send_credit(self, stream_id: int) -> int:
        """DATA bytes of the stream the peer's credit lets us frame now (the stream's and
        the connection's; 0 for a stream that is gone)."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else max(0, min(stream.send_limit - stream.sent, self._tx.conn_credit))

    def framed_bytes(self, stream_id: int) -> int:
        """DATA bytes of the stream framed so far (0 once it is closed)."""
        stream = self._streams.get(stream_id)
        return stream.sent if stream else 0

    def unconsumed(self, stream_id: int) -> int:
        """Bytes of the stream handed out as StreamData and not consumed (<= its window)."""
        stream = self._streams.get(stream_id)
        return stream.recv.unconsumed if stream else 0

    def statistics(self) -> MuxStatistics:
        tx = self._tx
        return MuxStatistics(
            streams=len(self._streams), buffered_bytes=tx.buffered,
            unconsumed_bytes=self._conn.unconsumed, frames_sent=tx.frames + self._n_hello,
            frames_received=self._n_recv, data_bytes_sent=tx.data_bytes,
            data_bytes_received=self._b_recv, discarded_bytes=self._b_discarded,
            frames_ignored=self._n_ignored, credit_frames_sent=tx.credit_frames,
            streams_refused=self._n_refused, violations=self._n_bad,
            peer_restarts=self._n_restarts,
        )  # fmt: skip

    # -- receiving frames ----------------------------------------------------------------

    def _handle(self, frame: Frame) -> None:
        if isinstance(frame, Hello):
            self._on_hello(frame)
        elif not self._synced:
            self._n_ignored += 1  # meant for a predecessor of ours
        elif isinstance(frame, Data):
            self._on_data(frame)
        elif isinstance(frame, Credit):
            self._on_credit(frame)
        elif isinstance(frame, Open):
            self._on_open(frame)
        elif isinstance(frame, Fin):
            stream = self._target(self._local(frame.stream_id), "FIN")
            if stream is None:
                return
            if stream.fin_received:
                self._violate(stream, "a second FIN")
                return
            stream.fin_received = True
            self._events.append(StreamEnded(stream.id))
            if stream.done:
                self._remove(stream)
        else:  # Reset
            stream = self._target(self._local(frame.stream_id), "RESET")
            if stream is not None:
                code = ResetCode(frame.code) if frame.code in _CODES else frame.code
                self._release(stream)
                self._events.append(StreamReset(stream.id, code, True))

    def _on_hello(self, hello: Hello) -> None:
        if hello.initiator == self._initiator:
            role = "initiator" if hello.initiator else "acceptor"
            self._fail(f"both sides are the {role} (same stream id parity)")
        if hello.epoch != self._peer_epoch:
            if self._peer_epoch is not None:
                self._peer_restarted(hello.epoch)
            self._peer_epoch = hello.epoch
            self._tx.new_peer(hello.stream_window, hello.connection_window)
            self._synced = False
            self._hello_due = True  # so the peer learns we know it
        if hello.echo == self._epoch:
            self._synced = True

    def _peer_restarted(self, new_epoch: bytes) -> None:
        assert self._peer_epoch is not None
        self._n_restarts += 1
        self._events.append(PeerRestarted(self._peer_epoch, new_epoch))
        for sid in self._streams:
            self._events.append(StreamReset(sid, ResetCode.PEER_RESTARTED, True))
        self._tx.clear()
        self._streams.clear()
        self._n_own = self._n_peer = 0
        self._peer_base = self._peer_last + (self._peer_last & 1)  # even: keeps parity
        self._conn = ReceiveWindow(self._limits.connection_window, self._limits.credit_divisor)

    def _on_open(self, frame: Open) -> None:
        wire = frame.stream_id
        sid = self._local(wire)
        if (wire & 1) == self._initiator or sid <= self._peer_last:
            self._fail(f"peer opened stream {wire}, not a new id of its own")
        self._peer_last = sid
        if len(frame.header) > MAX_HEADER:
            self._n_bad += 1
            self._events.append(ProtocolViolation(sid, f"OPEN header of {len(frame.header)} "
                                                         f"bytes (at most {MAX_HEADER})"))
            self._tx.queue_reset(wire, ResetCode.PROTOCOL_ERROR)
            return
        if self._n_peer >= self._limits.max_streams:
            self._n_refused += 1
            self._tx.queue_reset(wire, ResetCode.TOO_MANY_STREAMS)
            return
        lim = self._limits
        recv = ReceiveWindow(self._window_for(frame.priority), lim.credit_divisor,
                             initial=lim.stream_window)  # what our HELLO promised
        stream = Stream(sid, frame.kind, frame.priority, frame.header, local=False, recv=recv,
                        send_limit=frame.window, wire_id=wire)
        self._streams[sid] = stream
        self._n_peer += 1
        self._tx.queue_credit(stream, recv.credit_due())  # a bulk window beyond the HELLO's
        self._events.append(StreamOpened(sid, frame.kind, frame.priority, frame.header))

    def _on_data(self, frame: Data) -> None:
        n = len(frame.data)
        conn = self._conn
        if not conn.fits(n):
            self._fail(f"peer sent {conn.received + n - conn.limit} bytes beyond the "
                       "connection's credit")  # fmt: skip
        conn.received += n
        stream = self._target(self._local(frame.stream_id), "DATA")
        if stream is not None and stream.fin_received:
            self._violate(stream, "DATA after FIN")
            stream = None
        elif stream is not None and not stream.recv.fits(n):
            self._violate(stream, f"DATA beyond the stream's credit of {stream.recv.limit} bytes",
                          ResetCode.FLOW_CONTROL)
            stream = None
        if stream is None:  # dropped: its connection credit goes back at once
            self._b_discarded += n
            conn.consumed += n
            self._tx.conn_credit_out += conn.credit_due()
            return
        stream.recv.received += n
        self._b_recv += n
        self._events.append(StreamData(stream.id, frame.data))

    def _on_credit(self, frame: Credit) -> None:
        if frame.stream_id == 0:
            self._tx.grant_connection(frame.increment, self._streams)
            return
        stream = self._target(self._local(frame.stream_id), "CREDIT")
        if stream is not None:
            stream.send_limit += frame.increment
            self._tx.wake(stream)

    def _target(self, sid: int, what: str) -> Stream | None:
        """The live stream a frame is for; None (dropped) if it is closed or unknown."""
        stream = self._streams.get(sid)
        if stream is not None and not stream.open_pending:
            return stream
        if stream is None and self._was_opened(sid):
            return None  # closed while the frame was in flight
        self._n_bad += 1
        self._events.append(ProtocolViolation(sid, f"{what} for stream {sid}, never opened"))
        return None

    def _violate(self, stream: Stream, reason: str,
                 code: ResetCode = ResetCode.PROTOCOL_ERROR) -> None:
        """The peer broke this stream's rules: reset it both ways, tell the app."""
        self._n_bad += 1
        self._events.append(ProtocolViolation(stream.id, reason))
        self._tx.queue_reset(stream.wire_id, code)
        self._release(stream)
        self._events.append(StreamReset(stream.id, code, False))

    # -- internals -----------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is not None:
            raise StreamProtocolError(f"stream mux failed: {self._error}")

    def _fail(self, message: str) -> None:
        self._error = message
        raise StreamProtocolError(message)

    def _window_for(self, priority: Priority) -> int:
        lim = self._limits
        return lim.bulk_window if priority == Priority.BULK else lim.stream_window

    def _local(self, wire: int) -> int:
        """The local id of a stream id in a frame from the peer."""
        if wire and (wire & 1) != self._initiator:  # the peer's parity
            return wire + self._peer_base
        return wire

    def _was_opened(self, sid: int) -> bool:
        """Some stream once had this (local) id."""
        if sid <= 0:
            return False
        if (sid & 1) == self._initiator:  # our parity
            return sid < self._next_id
        return sid <= self._peer_last

    def _live(self, sid: int) -> Stream:
        self._check()
        stream = self._streams.get(sid)
        if stream is None:
            state = "closed" if self._was_opened(sid) else "never opened"
            raise LocalProtocolError(f"stream {sid} is {state}")
        return stream

    def _release(self, stream: Stream) -> None:
        """The stream is gone (reset): free its bytes, return its connection credit."""
        unconsumed = stream.recv.unconsumed
        if unconsumed:
            self._conn.consumed += unconsumed
            self._tx.conn_credit_out += self._conn.credit_due()
        self._remove(stream)

    def _remove(self, stream: Stream) -> None:
        del self._streams[stream.id]
        if stream.local:
            self._n_own -= 1
        else:
            self._n_peer -= 1
        self._tx.forget(stream)
