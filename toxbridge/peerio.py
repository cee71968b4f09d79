"""One peer's stream mux between its Link and the app queues; driven by the tox thread.

    outbound FrameQueue -> channel stream -\\                      /-> lossless packets
                                            Mux <-> Link frames <-
    inbound  FrameQueue <- channel stream -/

Every Link frame is one ``mux.data_to_send(n)``, a batch of mux frames (``LINK_FRAME``);
every Link frame received goes to ``mux.receive_data`` and the events are drained before
the next one (the mux's rule). The
tox thread takes Link frames at once, so the Link's acks no longer wait for the app: the
mux's credit is the backpressure, per stream. The channel of bridge port v1 is one
INTERACTIVE stream of kind CHANNEL, opened by the mux initiator (docs/wire.md §3, "The
channel"); its app frames travel whole (``toxbridge.chanstream``) and are kept until the
peer's Link acks them, to go again into a new channel stream if the peer daemon restarts. Every other stream
belongs to a connection on ``streams.sock`` (``toxbridge.localstreams``, §4).

Not thread-safe: only the tox thread calls it. It does no I/O of its own (the queues are
the trio side's), so tests drive it with two Links joined by hand.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from .chanstream import CHANNEL_KIND, ChannelDecoder, ResendBuffer, encode_frames
from .errors import ProtocolError
from .link import Link
from .localstreams import StreamTable
from .streams import (Limits, Mux, PeerRestarted, Priority, ProtocolViolation, ResetCode,
                      StreamData, StreamEnded, StreamOpened, StreamReset)

__all__ = ["LINK_FRAME", "PeerIO", "UNSENT_LOW"]

log = logging.getLogger(__name__)

MAX_MUX_FRAME = 1024  # toxbridge.streams.MAX_FRAME
# The Link frames of protocol v2 (Link(max_frame=...)): each a batch of mux frames. Any
# Link window and in_flight (at least 8 KiB) hold one.
LINK_FRAME = 4096
# Pull from the mux only while the Link holds fewer unsent bytes than this: what the Link
# has is FIFO below the mux's priorities, so an interactive frame waits behind at most
# this (plus the packets in flight), not the Link's whole 32 KiB backlog. Over our
# transport, less: only what the transport would still take (``fill``'s ``ahead``).
UNSENT_LOW = 4096
# Channel bytes handed to the mux but not framed yet: a few frames, so app frames wait in
# the bounded outbound queue (and are not dropped with the mux's buffers when the peer
# daemon restarts).
CHANNEL_FEED = 8192
CHAN_FRAME = 3 + 1024  # a channel frame in the stream, at most
FILL_ROUNDS = 64  # Link frames per fill() call at most (the loop turn stays short)


def _epoch() -> bytes:
    while True:
        epoch = os.urandom(8)
        if any(epoch):
            return epoch


class PeerIO:
    """``report(code, message)``: an error event for the app (``peer_protocol``).
    ``table``: the local streams (``streams.sock``); without it, only the channel."""

    def __init__(self, link: Link, own_key: bytes, peer_key: bytes, *,
                 report: Callable[[str, str], None], limits: Limits | None = None,
                 table: StreamTable | None = None) -> None:
        self.link = link
        self.limits = limits or Limits()
        self.initiator = own_key < peer_key  # both sides agree, however they met
        self.mux = Mux(_epoch(), initiator=self.initiator, limits=self.limits)
        self.queued = 0  # stream bytes given to the Link (offsets for the RTT meter)
        self.frames_sent = 0  # app frames into the channel stream
        self.failed = False
        self._report = report
        self.table = table
        self._channel: int | None = None
        # Whole frames of a closed channel stream stay until the app took them (as the
        # Link did across a peer restart); they owe the mux no credit.
        self._decoder = ChannelDecoder(2 * self.limits.stream_window)
        self._stale = 0
        # Our channel frames until the peer's Link acks them: resent in a new channel
        # stream if the peer daemon restarts. What is framed is within the peer's credit.
        self._resend = ResendBuffer(self.limits.stream_window + CHANNEL_FEED + 2 * CHAN_FRAME)
        self._restarts = link.peer_restarts
        self._frozen = False  # the Link saw a new peer session; the mux not yet
        # Until the new peer mux's HELLO arrives, a new stream would be numbered for its
        # dead predecessor (the new mux ignores it, the HELLO then resets it): opens wait
        # while the mux's peer epoch is the one it had when the Link saw the new session
        # (not for a PeerRestarted: a predecessor that died before its HELLO has none).
        self._stale_epoch: bytes | None = None
        self._new_peer_pending = False
        if self.initiator:
            self._open_channel()

    @property
    def channel_open(self) -> bool:
        return self._channel is not None

    def _open_channel(self) -> None:
        self._channel = self.mux.open_stream(CHANNEL_KIND, Priority.INTERACTIVE)

    # -- Link -> mux -> app --------------------------------------------------------------

    def take_link_frames(self) -> bool:
        """Every frame the Link has goes to the mux. Returns whether there were any."""
        link, mux = self.link, self.mux
        self._check_restart()
        moved = False
        while (frame := link.next_frame()) is not None:
            moved = True
            if self.failed:
                continue  # the mux is dead; the Link must not stall behind it
            try:
                mux.receive_data(frame)
            except ProtocolError as exc:
                self._fail(exc)
                continue
            self._drain()
        return moved

    def _drain(self) -> None:
        try:
            while (event := self.mux.next_event()) is not None:
                self._on_event(event)
        except ProtocolError as exc:
            self._fail(exc)

    def deliver(self, inbound, max_frames: int) -> bool:
        """Runs of whole channel frames into ``inbound`` while it has room; the bytes are
        consumed (credit to the peer) as they go. Returns whether any went."""
        decoder = self._decoder
        delivered = False
        while len(decoder) and inbound.space() > 0:
            try:
                run = decoder.take_run(max_frames)
            except ProtocolError as exc:  # the peer's channel stream is not frames
                self._channel_broken(exc)
                return delivered
            if not run:
                break
            inbound.put_nowait(run)
            delivered = True
            stale = min(self._stale, len(run))
            self._stale -= stale
            if len(run) > stale and self._channel is not None and not self.failed:
                self.mux.consume(self._channel, len(run) - stale)
        return delivered

    def _on_event(self, event) -> None:
        mux = self.mux
        sid = getattr(event, "stream_id", None)
        if isinstance(event, StreamData) and sid == self._channel:
            self._decoder.receive(event.data)
        elif isinstance(event, StreamOpened):
            if event.kind == CHANNEL_KIND:
                if (not self.initiator and self._channel is None
                        and event.priority == Priority.INTERACTIVE):
                    self._channel = sid
                else:
                    mux.reset(sid, ResetCode.REFUSED)
            elif self.table is None or not self.table.on_event(mux, event):
                mux.reset(sid, ResetCode.REFUSED)  # nobody accepts this kind now
        elif sid is not None and sid != self._channel:
            if self.table is not None:
                self.table.on_event(mux, event)
            elif isinstance(event, StreamData):  # a stream we refused, bytes in flight
                mux.consume(sid, len(event.data))
        elif isinstance(event, StreamReset):
            if event.stream_id == self._channel:
                self._channel_gone(event.code)
        elif isinstance(event, StreamEnded):
            if event.stream_id == self._channel:  # the channel is never half-closed
                log.warning("the peer ended the channel stream; resetting it")
                mux.reset(event.stream_id, ResetCode.PROTOCOL_ERROR)
                self._channel_gone(ResetCode.PROTOCOL_ERROR)
        elif isinstance(event, PeerRestarted):
            log.info("the peer's stream mux is new (its daemon restarted): streams reset")
        elif isinstance(event, ProtocolViolation):
            log.warning("peer broke a stream rule (stream %d): %s", event.stream_id, event.reason)

    def _channel_gone(self, code: int) -> None:
        """The channel stream was reset: keep its whole frames, start a new one. After a
        peer restart our unacknowledged frames go first into the new one."""
        self._check_restart()
        if code == ResetCode.PEER_RESTARTED:
            self._resend.restart()
            if len(self._resend):
                log.info("%d channel bytes go again to the restarted peer", len(self._resend))
        else:
            log.warning("the channel stream was reset (code %s)", code)
            self._resend.clear()
        self._frozen = False
        self._stale = self._decoder.drop_partial()
        self._channel = None
        if self.initiator and not self.failed:
            self._open_channel()

    def _channel_broken(self, exc: Exception) -> None:
        log.error("peer broke the channel stream: %s", exc)
        self._report("peer_protocol", str(exc))
        if self._channel is not None:  # its frames before the bad one are still delivered
            self.mux.reset(self._channel, ResetCode.PROTOCOL_ERROR)
            self._channel_gone(ResetCode.PROTOCOL_ERROR)

    def _fail(self, exc: Exception) -> None:
        log.error("peer broke the stream protocol: %s", exc)
        self._report("peer_protocol", str(exc))
        self.failed = True

    # -- app -> mux -> Link --------------------------------------------------------------

    def fill(self, outbound, ahead: int = UNSENT_LOW) -> bool:
        """App frames into the channel stream, mux frames into the Link, while the Link
        holds less than ``ahead`` unsent (UNSENT_LOW; over our transport less, when it
        would take less now: ``LinkPath.room``). Returns whether anything moved."""
        if self.failed:
            return False
        self._check_restart()
        if not self._frozen:
            self._resend.acked(self.link.acked_total)
        moved = self._fill(outbound, ahead)
        # Framing frees send buffers: the CreditAvailable events it queued let local
        # streams hand over more (nothing else would drain them until a frame arrives).
        before = self.mux.buffered_bytes
        self._drain()
        if not self.failed and self.mux.buffered_bytes > before:
            moved |= self._fill(outbound, ahead)
        return moved

    @property
    def busy(self) -> bool:
        """The mux holds bytes for the Link (maybe waiting for the peer's credit), or kept
        channel frames wait to go again to a restarted peer."""
        return (self.mux.buffered_bytes > 0 or self._resend.pending > 0) and not self.failed

    def _fill(self, outbound, ahead: int) -> bool:
        link, mux = self.link, self.mux
        moved = False
        table = self.table
        for i in range(FILL_ROUNDS):
            # One Link frame carries as many mux frames as keep the Link's unsent bytes
            # under ``ahead`` + one mux frame: the Link's per-frame cost is paid per batch.
            size = min(link.max_frame, ahead + MAX_MUX_FRAME - link.unsent_bytes)
            if size < MAX_MUX_FRAME or not link.can_send_frame(size):
                break
            # Every 4th Link frame is often enough: a feed holds 8 KiB, and refills at 4.
            if not i & 3:
                if self._channel is not None and (len(outbound) or self._resend.pending):
                    moved |= self._feed(outbound)
                if table is not None:
                    if self._new_peer_pending and mux.peer_epoch != self._stale_epoch:
                        self._new_peer_pending = False
                    table.service(mux, opens=not self._new_peer_pending)
            chunk = mux.data_to_send(size)
            if not chunk:
                break
            link.send_frame(chunk)
            self.queued += 2 + len(chunk)  # the Link frame's length prefix too
            if self._channel is not None and not self._frozen:
                self._resend.framed(link.acked_total + link.unacked_bytes,
                                    mux.framed_bytes(self._channel))
            moved = True
        return moved

    def _feed(self, outbound) -> bool:
        """App frames into the channel stream, several under one lock, and only once the
        mux has framed half of what it had (a call per Link frame was the hot spot)."""
        mux, sid = self.mux, self._channel
        if self._frozen:
            return False  # the channel stream is about to be reset; new frames wait
        resend = self._resend
        if resend.pending:  # what the restarted peer's predecessor did not ack, first
            n = mux.send(sid, resend.unfed(CHANNEL_FEED))
            resend.refed(n)
            return n > 0
        room = mux.send_room(sid)
        # What the channel already has in the mux: its send buffer minus its room (or more,
        # when the per-peer total is what limits the room).
        buffered = self.limits.stream_send_buffer - room
        if buffered > CHANNEL_FEED // 2:
            return False
        room = min(room, CHANNEL_FEED - buffered, resend.room())
        frames = outbound.take(room // CHAN_FRAME)
        if not frames:
            return False
        data = encode_frames(frames)
        taken = mux.send(sid, data)
        assert taken == len(data)  # within send_room
        resend.fed(data)
        self.frames_sent += len(frames)
        return True

    def _check_restart(self) -> None:
        """The Link saw a new peer session: what the old one acked is final (the new one
        acks the renumbered old frames, which its mux drops)."""
        link = self.link
        if link.peer_restarts != self._restarts:
            self._restarts = link.peer_restarts
            self._resend.acked(link.restart_acked)
            self._frozen = self._channel is not None
            self._new_peer_pending = True
            self._stale_epoch = self.mux.peer_epoch

    # -- state ---------------------------------------------------------------------------

    @property
    def frames_received(self) -> int:
        """Channel frames handed to the app's queue."""
        return self._decoder.frames

    def channel_trace(self) -> dict:
        """The channel stream's send side for a debug trace: the peer's credit left, what
        waits in the mux, the room in the resend buffer (it holds what the peer's Link
        has not acked)."""
        sid = self._channel
        if sid is None:
            return {}
        return {"chan_credit": self.mux.send_credit(sid),
                "chan_buffered": self.limits.stream_send_buffer - self.mux.send_room(sid),
                "chan_resend_room": self._resend.room()}

    def statistics(self) -> dict:
        s = self.mux.statistics()
        return {"mux_streams": s.streams, "mux_buffered_bytes": s.buffered_bytes,
                "mux_unconsumed_bytes": s.unconsumed_bytes,
                "channel_buffered_bytes": len(self._decoder)}
