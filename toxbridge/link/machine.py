"""The daemon-to-daemon wire over toxcore lossless custom packets, sans-IO.

toxcore delivers lossless packets in order and exactly once *within one friend connection*,
but drops whatever was queued when the connection ends, and after a stall may still deliver
packets the sender had written off. `Link` turns that into a channel that is reliable across
reconnects: no frame lost, none delivered twice, order and frame boundaries kept.

How (the byte layouts are in docs/wire.md):

* Outgoing frames (<= 1024 bytes each) are serialized into one byte *stream*, each frame as
  ``u16 length | payload``. Sequence numbers are byte offsets in that stream. DATA packets
  carry a contiguous slice of it, cut to fill the packet (1373 bytes), so packets are full
  whenever enough data is queued, whatever the frame sizes.
* The receiver keeps the stream contiguous: bytes before its ``received`` offset are
  duplicates and are trimmed; a packet starting after it (a gap) is dropped and answered by a
  RESYNC telling the sender where to resume. Frames parsed from the stream wait until the
  shell takes them (`next_frame`); only taken frames are acknowledged, so acks fall on frame
  boundaries and a slow local app stops the peer's sender.
* The sender keeps every unacknowledged byte (for resending) and accepts frames only while
  they fit in ``window`` bytes and at most ``backlog`` bytes wait to be transmitted; it
  transmits at most ``in_flight`` bytes (and the peer's advertised window) past the peer's
  ack, which keeps toxcore's own queue short (see DEFAULT_IN_FLIGHT). Acks are cumulative,
  piggybacked on DATA, or sent as ACK packets when ACK_EVERY bytes (or a quarter of a small
  window) are waiting or the shell flushes at the end of a loop turn.
* On each connection both sides send a HELLO request (version, session id, the peer session
  they knew, receive window, received and delivered offsets). Every request is answered with
  a HELLO (a reply, or a request while the peer does not know our session yet), so neither
  side can wait forever for the other. A HELLO rewinds the sender to what
  the peer really received. A new peer session id means the peer daemon restarted: the
  receive side starts again at 0 and the unacknowledged frames are renumbered from 0 and
  resent. The channel opens on a HELLO, on this connection, that echoes our own session id;
  before that, DATA, ACK and RESYNC packets are ignored (they may be numbered for a previous
  session of ours, or come from a dead connection).

The shell loop: ``receive_packet`` for every packet from the peer; ``next_frame`` while the
local side has room; ``send_frame`` while ``can_send_frame``; then ``next_packet`` until None,
handing each packet to ``tox_friend_send_lossless_packet``; on SENDQ, ``requeue(packet)``
and retry after ``tox_iterate`` (requeue undoes next_packet, so the retry is rebuilt with the
latest data and ack). Pass ``flush=True`` to next_packet when a loop turn brought no new data.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..errors import LocalProtocolError, RemoteProtocolError
from .wire import (
    ACK_EVERY,
    DATA_HEADER_SIZE,
    DEFAULT_BACKLOG,
    DEFAULT_IN_FLIGHT,
    DEFAULT_WINDOW,
    FRAME_HEADER_SIZE,
    HELLO_REPLY,
    HELLO_SIZE,
    HELLO_TRANSPORT,
    MAX_CHUNK,
    MAX_BIG_FRAME,
    MAX_FRAME_PAYLOAD,
    MAX_PACKET_SIZE,
    MIN_WINDOW,
    PACKET_ID,
    PROTOCOL_VERSION,
    SESSION_ID_SIZE,
    _ACK,
    _DATA,
    _DATA_PACK,
    _HELLO,
    _HELLO_PACK,
    _MAX_WINDOW,
    _NO_SESSION,
    _OFFSET_PACK,
    _RESYNC,
    _VERSION_PACK,
    ChannelOpen,
    LinkEvent,
    LinkState,
    LinkStatistics,
    PacketType,
    PeerHello,
    VersionMismatch,
)

__all__ = ["Link"]


class Link:
    """One end of the reliable framed channel between two daemons.

    ``session_id``: 16 random bytes, new for each daemon process. ``window``: the most stream
    bytes kept unacknowledged for resending, and the receive window advertised to the peer.
    ``max_frame``: the largest frame payload either way (both ends must agree: 1024 for the
    channel's frames; the stream mux of protocol v2 batches its frames into larger ones).
    ``transport``: offer the transport over lossy packets (HELLO_TRANSPORT); when the peer
    offers it too on a connection, ``transport_agreed`` is true there, DATA, ACK and RESYNC
    go through it (the shell's business) and ``in_flight`` no longer applies (the window
    does: the transport has its own congestion control).
    """

    def __init__(self, session_id: bytes, *, window: int = DEFAULT_WINDOW,
                 in_flight: int = DEFAULT_IN_FLIGHT, backlog: int = DEFAULT_BACKLOG,
                 max_frame: int = MAX_FRAME_PAYLOAD, transport: bool = False) -> None:
        if len(session_id) != SESSION_ID_SIZE or session_id == _NO_SESSION:
            raise LocalProtocolError(f"session_id must be {SESSION_ID_SIZE} random bytes")
        if not MIN_WINDOW <= window <= _MAX_WINDOW:
            raise LocalProtocolError(f"window must be {MIN_WINDOW}..{_MAX_WINDOW} bytes")
        if in_flight < MIN_WINDOW:  # as for the window: progress past a partial frame
            raise LocalProtocolError(f"in_flight must be at least {MIN_WINDOW} bytes")
        if not MAX_FRAME_PAYLOAD <= max_frame <= MAX_BIG_FRAME:
            raise LocalProtocolError(f"max_frame must be {MAX_FRAME_PAYLOAD}..{MAX_BIG_FRAME} bytes")
        # A frame is acked only once whole: the window and in_flight must hold one.
        if min(backlog, window, in_flight) < FRAME_HEADER_SIZE + max_frame:
            raise LocalProtocolError("backlog, window and in_flight must hold at least one frame")
        self.max_frame = max_frame
        self._session_id = bytes(session_id)
        self._window = window
        self._in_flight = in_flight
        self._backlog = backlog
        self._transport = transport
        self._peer_transport = False  # the peer's HELLO on this connection offered it
        # Which incarnation of the transport a lossy packet belongs to (docs/wire.md §4.5):
        # ours is new on each connection and when the peer starts one we did not see.
        self._epoch = 0
        self._peer_epoch: int | None = None
        self._ack_threshold = min(window // 4, ACK_EVERY)
        self._connected = False
        self._open = False
        self._error: str | None = None
        self._peer_session: bytes | None = None
        self._hello_pending: int | None = None  # HELLO flags to send next
        self._undo: tuple[Any, ...] | None = None  # to take back the last next_packet()
        # Send side. _sbuf holds stream bytes [_acked, _end); _bounds the frame ends in it.
        self._sbuf = bytearray()
        self._bounds: deque[int] = deque()
        self._acked = 0  # the peer delivered everything before this offset
        self._sent = 0  # next offset to transmit (rewound by HELLO and RESYNC)
        self._high = 0  # highest offset ever transmitted (in this numbering)
        self._end = 0  # end of the queued stream
        self._acked_base = 0  # bytes acked under earlier numberings (peer sessions)
        self._peer_window = MIN_WINDOW
        # Receive side. _rbuf: bytes of the incomplete frame at the end of the stream.
        self._rbuf = bytearray()
        self._rframes: deque[tuple[bytes, int]] = deque()  # (payload, stream end or -1)
        self._received = 0
        self._delivered = 0  # end of the last frame the shell took
        self._ack_sent = 0
        self._resync_pending = False
        self._resync_for: int | None = None  # `received` a RESYNC was sent for
        # Counters.
        self._n_sent = self._n_recv = self._n_ignored = 0
        self._n_data = self._n_ack = self._n_hello = self._n_resync = 0
        self._b_sent = self._b_resent = self._b_recv = self._b_dup = 0
        self._n_gap = self._f_sent = self._f_recv = self._n_restarts = self._f_dropped = 0

    # -- connection --------------------------------------------------------------------

    def connection_made(self) -> None:
        """The friend connection came up (again): the next packet is our HELLO."""
        self._undo = None
        self._connected = True
        self._open = False
        self._hello_pending = 0
        self._epoch = (self._epoch + 1) & 0xFF
        self._peer_transport = False
        self._peer_epoch = None
        self._resync_pending = False
        self._resync_for = None

    def connection_lost(self) -> None:
        """The friend connection went down: toxcore dropped whatever was in flight.

        Nothing is sent until the next HELLO exchange, which resumes from what the peer has.
        """
        self._undo = None
        self._connected = False
        self._open = False
        self._hello_pending = None
        self._resync_pending = False
        self._peer_transport = False
        self._peer_epoch = None

    # -- sending -----------------------------------------------------------------------

    def can_send_frame(self, size: int) -> bool:
        """True if a frame of ``size`` payload bytes fits in the send window and the
        backlog of bytes not yet transmitted now."""
        more = FRAME_HEADER_SIZE + size
        return (
            0 <= size <= self.max_frame
            and self._end - self._acked + more <= self._window
            and self._end - self._sent + more <= self._backlog
        )

    def send_frame(self, payload: bytes) -> None:
        """Queue one frame for the peer (sent, and resent, until acknowledged).

        Raises LocalProtocolError if the payload is over 1024 bytes, the send window is
        full (check can_send_frame), or the link is in the ERROR state.
        """
        n = len(payload)
        if n > self.max_frame:
            raise LocalProtocolError(f"frame of {n} bytes is over the limit of {self.max_frame}")
        if self._error is not None:
            raise LocalProtocolError(f"link failed: {self._error}")
        end = self._end + FRAME_HEADER_SIZE + n
        if end - self._acked > self._window or end - self._sent > self._backlog:
            raise LocalProtocolError("send window is full (wait for can_send_frame)")
        self._sbuf += n.to_bytes(2, "big")
        self._sbuf += payload
        self._bounds.append(end)
        self._end = end
        self._f_sent += 1

    def next_packet(self, *, flush: bool = False, data: bool = True) -> bytes | None:
        """The next packet to hand to toxcore, or None if nothing is due.

        Order: HELLO, RESYNC, DATA (full packets while enough is queued, at most
        ``in_flight`` bytes past the peer's ack), then an ACK if ACK_EVERY delivered bytes
        (or a quarter of a small window) are unacknowledged, or any at all with ``flush``.
        ``data=False`` holds DATA back (control packets still go).
        """
        if self._error is not None or not self._connected:
            return None
        delivered = self._delivered
        if self._hello_pending is not None:
            flags = self._hello_pending
            packet = _HELLO_PACK.pack(
                PACKET_ID, _HELLO, PROTOCOL_VERSION,
                flags | (HELLO_TRANSPORT if self._transport else 0), self._session_id,
                self._peer_session or _NO_SESSION, self._window, self._received, delivered,
                self._epoch,
            )  # fmt: skip
            self._undo = (packet, _HELLO, flags, self._ack_sent)
            self._hello_pending = None
            self._ack_sent = delivered
            self._n_hello += 1
            self._n_sent += 1
            return packet
        if not self._open:
            return None
        if self._resync_pending:
            packet = _OFFSET_PACK.pack(PACKET_ID, _RESYNC, self._received)
            self._undo = (packet, _RESYNC)
            self._resync_pending = False
            self._n_resync += 1
            self._n_sent += 1
            return packet
        sent, end = self._sent, self._end
        in_flight = self._window if self._peer_transport and self._transport else self._in_flight
        stop = min(end, self._acked + min(self._peer_window, in_flight))
        n = stop - sent
        if n >= MAX_CHUNK:
            n = MAX_CHUNK
        elif stop < end:
            n = 0  # the window would cut this packet short: wait for an ack, send it full
        if n > 0 and data:
            i = sent - self._acked
            packet = _DATA_PACK.pack(PACKET_ID, _DATA, sent, delivered) + self._sbuf[i : i + n]
            high = self._high
            resent = min(high - sent, n) if high > sent else 0
            self._undo = (packet, _DATA, sent, high, self._ack_sent, resent)
            self._sent = sent + n
            if sent + n > high:
                self._high = sent + n
            self._ack_sent = delivered
            self._n_data += 1
            self._n_sent += 1
            self._b_sent += n
            self._b_resent += resent
            return packet
        waiting = delivered - self._ack_sent
        if waiting > 0 and (flush or waiting >= self._ack_threshold):
            packet = _OFFSET_PACK.pack(PACKET_ID, _ACK, delivered)
            self._undo = (packet, _ACK, self._ack_sent)
            self._ack_sent = delivered
            self._n_ack += 1
            self._n_sent += 1
            return packet
        return None

    def requeue(self, packet: bytes) -> None:
        """Take back the packet next_packet() just returned (toxcore refused it: SENDQ).

        Must come right after that next_packet() call; the packet is rebuilt, with the
        latest data and ack, by a later next_packet(). Raises LocalProtocolError otherwise.
        """
        undo = self._undo
        if undo is None or (undo[0] is not packet and undo[0] != packet):
            raise LocalProtocolError("requeue() takes only the packet next_packet() just returned")
        self._undo = None
        self._n_sent -= 1
        ptype = undo[1]
        if ptype == _DATA:
            _, _, sent, high, ack_sent, resent = undo
            self._b_sent -= self._sent - sent
            self._b_resent -= resent
            self._sent, self._high, self._ack_sent = sent, high, ack_sent
            self._n_data -= 1
        elif ptype == _HELLO:
            self._hello_pending, self._ack_sent = undo[2], undo[3]
            self._n_hello -= 1
        elif ptype == _ACK:
            self._ack_sent = undo[2]
            self._n_ack -= 1
        else:
            self._resync_pending = True
            self._n_resync -= 1

    # -- receiving ---------------------------------------------------------------------

    def receive_packet(self, packet: bytes) -> list[LinkEvent]:
        """Process one lossless packet from the peer; return the events it caused.

        Raises RemoteProtocolError for a malformed or impossible packet; the link then stays
        in the ERROR state and every later call raises too.
        """
        if self._error is not None:
            raise RemoteProtocolError(f"link failed: {self._error}")
        self._undo = None
        size = len(packet)
        if size < 2 or packet[0] != PACKET_ID:
            what = f"id {packet[0]}" if size else "nothing"
            self._fail(f"packet of {size} bytes with {what} is not a toxbridge packet")
        if size > MAX_PACKET_SIZE:
            self._fail(f"packet of {size} bytes is too long (at most {MAX_PACKET_SIZE})")
        self._n_recv += 1
        ptype = packet[1]
        if ptype == _DATA:
            if size <= DATA_HEADER_SIZE:
                self._fail(f"DATA packet of {size} bytes carries no stream bytes")
            _, _, seq, ack = _DATA_PACK.unpack_from(packet)
            if not self._open:
                self._n_ignored += 1
            else:
                if ack > self._acked:
                    self._take_ack(ack)
                self._take_data(packet, seq)
            return []
        if ptype == _ACK or ptype == _RESYNC:
            if size != _OFFSET_PACK.size:
                self._fail(f"{PacketType(ptype).name} packet of {size} bytes (must be 10)")
            _, _, offset = _OFFSET_PACK.unpack(packet)
            if not self._open:
                self._n_ignored += 1
            elif ptype == _ACK:
                if offset > self._acked:
                    self._take_ack(offset)
            else:
                if offset > self._high:
                    self._fail(f"peer asks to resume at byte {offset}; we sent {self._high}")
                self._sent = max(offset, self._acked)
            return []
        if ptype == _HELLO:
            return self._take_hello(packet)
        self._fail(f"unknown packet type 0x{ptype:02x}")
        raise AssertionError  # unreachable; _fail raised

    def next_frame(self) -> bytes | None:
        """Take the next frame from the peer (acknowledged from now on), or None."""
        if not self._rframes:
            return None
        payload, end = self._rframes.popleft()
        if end >= 0:  # -1: a frame of the peer's previous session, already off the books
            self._delivered = end
        return payload

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        if self._error is not None:
            return LinkState.ERROR
        if self._open:
            return LinkState.OPEN
        return LinkState.CONNECTING if self._connected else LinkState.DISCONNECTED

    @property
    def error(self) -> str | None:
        """Why the link is in the ERROR state, or None."""
        return self._error

    @property
    def session_id(self) -> bytes:
        return self._session_id

    @property
    def peer_session_id(self) -> bytes | None:
        return self._peer_session

    @property
    def window(self) -> int:
        return self._window

    @property
    def transport_agreed(self) -> bool:
        """Both sides offered the transport on this connection: DATA, ACK and RESYNC go
        through it (HELLO stays on lossless packets)."""
        return self._connected and self._transport and self._peer_transport

    @property
    def transport_epoch(self) -> int:
        """The incarnation of our sending transport, as in our HELLOs (0..255)."""
        return self._epoch

    @property
    def peer_transport_epoch(self) -> int | None:
        """The incarnation of the peer's sending transport from its latest HELLO on this
        connection, or None before one."""
        return self._peer_epoch

    @property
    def unacked_bytes(self) -> int:
        """Stream bytes queued or in flight, not yet acknowledged (at most ``window``)."""
        return self._end - self._acked

    @property
    def acked_total(self) -> int:
        """Stream bytes the peer acknowledged, all peer sessions together: with the frame
        sizes given to send_frame, it says which frames were acked (any peer session)."""
        return self._acked_base + self._acked

    @property
    def restart_acked(self) -> int:
        """``acked_total`` when the peer daemon last restarted (what the previous session
        had acked; the rest was renumbered and resent to the new one)."""
        return self._acked_base

    @property
    def peer_restarts(self) -> int:
        return self._n_restarts

    @property
    def owes_ack(self) -> bool:
        """Delivered stream bytes the peer has not been told of yet."""
        return self._delivered > self._ack_sent

    @property
    def unsent_bytes(self) -> int:
        """Queued stream bytes not transmitted yet (on this connection)."""
        return self._end - self._sent

    @property
    def buffered_bytes(self) -> int:
        """Stream bytes received and not yet taken with next_frame() (at most ``window``,
        plus up to one more for frames of the peer's previous session)."""
        stale = sum(2 + len(p) for p, end in self._rframes if end < 0) if self._n_restarts else 0
        return self._received - self._delivered + stale

    @property
    def pending_frames(self) -> int:
        """Complete frames waiting for next_frame()."""
        return len(self._rframes)

    def statistics(self) -> LinkStatistics:
        return LinkStatistics(
            packets_sent=self._n_sent,
            packets_received=self._n_recv,
            packets_ignored=self._n_ignored,
            data_packets_sent=self._n_data,
            ack_packets_sent=self._n_ack,
            hello_packets_sent=self._n_hello,
            resync_packets_sent=self._n_resync,
            bytes_sent=self._b_sent,
            bytes_resent=self._b_resent,
            bytes_received=self._b_recv,
            duplicate_bytes=self._b_dup,
            gap_packets=self._n_gap,
            frames_sent=self._f_sent,
            frames_received=self._f_recv,
            peer_restarts=self._n_restarts,
            frames_dropped=self._f_dropped,
            unacked_bytes=self.unacked_bytes,
            buffered_bytes=self.buffered_bytes,
        )

    # -- internals ---------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        self._error = message
        raise RemoteProtocolError(message)

    def _take_ack(self, ack: int) -> None:
        """The peer delivered our stream up to ``ack`` (> _acked): free it."""
        if ack > self._high:
            self._fail(f"peer acknowledged byte {ack} of our stream; we sent only {self._high}")
        bounds = self._bounds
        while bounds[0] < ack:
            bounds.popleft()
        if bounds[0] != ack:
            self._fail(f"peer acknowledged byte {ack}, which is not the end of a frame")
        bounds.popleft()
        del self._sbuf[: ack - self._acked]
        self._acked = ack
        # Stale bytes may have arrived after a rewind: never resend what is acknowledged.
        self._sent = max(self._sent, ack)

    def _take_data(self, packet: bytes, seq: int) -> None:
        received = self._received
        end = seq + len(packet) - DATA_HEADER_SIZE
        if seq > received:
            # A gap: never buffered. Ask once per position; later gap packets are in flight.
            self._n_gap += 1
            if self._resync_for != received:
                self._resync_for = received
                self._resync_pending = True
            return
        if end <= received:
            self._b_dup += end - seq
            return
        if end > self._ack_sent + self._window:
            self._fail(f"peer sent stream byte {end}, beyond our window ending at "
                       f"{self._ack_sent + self._window}")  # fmt: skip
        skip = received - seq
        self._b_dup += skip
        self._b_recv += end - received
        self._received = end
        rbuf = self._rbuf
        rbuf += memoryview(packet)[DATA_HEADER_SIZE + skip :]
        # Parse the complete frames; the incomplete one stays at the front of _rbuf.
        size = len(rbuf)
        base = end - size  # stream offset of rbuf[0]
        frames = self._rframes
        max_frame = self.max_frame
        pos = 0
        while size - pos >= FRAME_HEADER_SIZE:
            length = (rbuf[pos] << 8) | rbuf[pos + 1]
            if length > max_frame:
                self._fail(f"frame length {length} at stream byte {base + pos} is over "
                           f"the limit of {max_frame}")  # fmt: skip
            stop = pos + FRAME_HEADER_SIZE + length
            if stop > size:
                break
            frames.append((bytes(rbuf[pos + FRAME_HEADER_SIZE : stop]), base + stop))
            self._f_recv += 1
            pos = stop
        if pos:
            del rbuf[:pos]

    def _take_hello(self, packet: bytes) -> list[LinkEvent]:
        size = len(packet)
        if size < _VERSION_PACK.size:
            self._fail(f"HELLO packet of {size} bytes is too short")
        version = _VERSION_PACK.unpack_from(packet)[2]
        if version != PROTOCOL_VERSION:
            self._error = f"peer speaks protocol version {version}, we speak {PROTOCOL_VERSION}"
            return [VersionMismatch(PROTOCOL_VERSION, version)]
        if size != HELLO_SIZE:
            self._fail(f"HELLO packet of {size} bytes (must be {HELLO_SIZE})")
        (_, _, _, flags, session, echo, window, received, delivered,
         epoch) = _HELLO_PACK.unpack(packet)
        if flags & ~(HELLO_REPLY | HELLO_TRANSPORT):
            self._fail(f"HELLO with unknown flags 0x{flags:02x}")
        if session == _NO_SESSION:
            self._fail("HELLO without a session id")
        if window < MIN_WINDOW:
            self._fail(f"peer window of {window} bytes is under the minimum of {MIN_WINDOW}")
        if window < FRAME_HEADER_SIZE + self.max_frame:  # our frames could never be acked
            self._fail(f"peer window of {window} bytes cannot hold a frame of {self.max_frame}")
        if delivered > received:
            self._fail(f"HELLO says {delivered} bytes delivered but only {received} received")
        if not self._connected:
            self._n_ignored += 1
            return []
        self._peer_transport = bool(flags & HELLO_TRANSPORT)
        self._peer_epoch = epoch
        restarted = self._peer_session is not None and session != self._peer_session
        if restarted:
            self._start_peer_session()
        self._peer_session = session
        self._peer_window = min(window, self._window)
        knows_us = echo == self._session_id
        if knows_us:  # the offsets are about our current stream
            if received > self._high:
                self._fail(f"HELLO says {received} bytes received; we sent only {self._high}")
            if delivered > self._acked:
                self._take_ack(delivered)
            resume = max(received, self._acked)
        else:  # the peer never saw this session of ours: it has none of our stream
            resume = self._acked
        reply = bool(flags & HELLO_REPLY)
        # A reply on an open connection answers our HELLO; anything else starts a
        # connection on the peer's side, which lost what was in flight: resume from its
        # offsets.
        if not self._open or not reply:
            self._sent = resume
            if self._open:
                # The peer started a connection we did not see: what our transport has in
                # flight is lost with its old one, so a new incarnation (our reply says so).
                self._epoch = (self._epoch + 1) & 0xFF
        # Every request (a HELLO without the reply flag) is answered. While the channel is
        # not open, a HELLO that does not know us is answered with a request, since only an
        # answer from the peer can show it learned our session (it may never have seen our
        # HELLO: it went to a predecessor of the peer).
        if not knows_us and not self._open:
            self._hello_pending = 0
        elif not reply and self._hello_pending is None:
            self._hello_pending = HELLO_REPLY
        # Open only once the peer shows it knows this session of ours: what it sends after
        # that is numbered for us (packets meant for a predecessor of ours are ignored).
        opens = knows_us and not self._open
        events: list[LinkEvent] = []
        if opens or restarted:
            events.append(PeerHello(session, version, restarted))
        if opens:
            self._open = True
            events.append(ChannelOpen(session))
        return events

    def _start_peer_session(self) -> None:
        """The peer daemon restarted: start its stream again, renumber ours from 0."""
        self._n_restarts += 1
        # Complete frames of the old session are still delivered, outside the books; those
        # of any session before it are dropped, so that at most two windows are buffered.
        frames = self._rframes
        self._rframes = deque((payload, -1) for payload, end in frames if end >= 0)
        self._f_dropped += len(frames) - len(self._rframes)
        self._rbuf.clear()  # an old partial frame can never be completed
        self._received = self._delivered = self._ack_sent = 0
        self._resync_pending = False
        self._resync_for = None
        # What the old peer acknowledged is gone; the rest is resent from offset 0.
        shift = self._acked
        self._acked_base += shift
        self._bounds = deque(b - shift for b in self._bounds)
        self._end -= shift
        self._acked = self._sent = self._high = 0
