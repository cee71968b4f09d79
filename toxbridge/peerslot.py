"""One peer of the tox thread (``toxbridge.toxloop``): its Tox friend, its Link and the
Link's path (lossless packets or our transport), its stream mux (``PeerIO``), its local
streams' table, and its meters. The loop holds one slot per peer and pumps each in turn;
a slot's troubles (its link lost, its mux broken, its removal) are its own.

Only the tox thread calls it. ``emit(slot, event)`` hands an event to the loop, which
decides who hears it (the v1 app hears only the first peer's ``peer`` and ``link``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

from .config import Config
from .control.snapshot import PeerSnapshot, RateMeter, RttMeter
from .crawl import CrawlWatch
from .errors import ProtocolError
from .link import ChannelOpen, Link, LinkState, PeerHello, VersionMismatch
from .linkpath import LinkPath
from .localstreams import StreamTable
from .peerio import LINK_FRAME, UNSENT_LOW, PeerIO
from .stall import StallWatch
from .tox import Connection, Tox

__all__ = ["PeerSlot", "PeerState", "PUMP_ROUNDS"]

log = logging.getLogger(__name__)

# Fill-then-send rounds per pump at most (each round ~5 KB at most: UNSENT_LOW and a mux
# frame; over our transport less, when it would take less: LinkPath.room).
# Acks are read only in tox_iterate, between pumps, so a pump's worth is also what the
# transport's window must cover until the next read: with 64 rounds a file's turn sent up
# to ~0.7 MB (25-60 ms of a GIL-bound process), the window's ack-burst room (extra_acked)
# grew to match, and ~300 KB (~25 ms) stood in front of every chat frame (issue 14,
# bench files: chat 4-5 x idle). 16 rounds: shorter turns, acks read more often, a smaller
# standing queue, and no lower a rate (docs/benchmarks.md, files).
PUMP_ROUNDS = 16


class PeerState:
    """What the app is told about the peer (read by trio, written by the tox thread)."""

    def __init__(self, public_key: bytes | None = None) -> None:
        self.online = False
        self.link = "none"  # "UDP", "TCP" or "none"
        self.public_key = public_key
        self.connections = 0  # friend connections that came up


class PeerSlot:
    """``dialed``: we sent the friend request (``--peer``, ``peers add``); its 101 comes
    when the friend connection first comes up."""

    def __init__(self, config: Config, own_key: bytes, key: bytes, friend: int,
                 table: StreamTable, emit: Callable[["PeerSlot", dict], None], *,
                 dialed: bool, name: str | None = None) -> None:
        self.config = config
        self.own_key = own_key
        self.key = key
        self.hex = key.hex().upper()
        self.friend = friend
        self.table = table
        self.name = name
        self.dialed = dialed
        self.accepted = not dialed  # dialed: has our friend request been accepted (101 sent)?
        self.state = PeerState(key)
        self._emit = emit
        self.crawl = CrawlWatch()  # toxcore's rate stuck at its floor? (see crawl.py)
        self.stall = StallWatch()  # nothing acknowledged while toxcore says up? (stall.py)
        self.hold_data_until = 0.0  # see on_connection
        self.rates = RateMeter()
        # Packets toxcore accepted / refused (SENDQ) and received: for the -vv tick line.
        self.n_accepted = self.n_refused = self.n_received = 0
        self.tick = (0, 0, 0, 0, 0)  # those and the Link's bytes, at the last tick line
        self.received = False  # a packet arrived during this loop turn
        self.io: PeerIO | None = None
        self.new_link()

    def emit(self, event: dict) -> None:
        self._emit(self, event)

    def new_link(self) -> None:
        c = self.config
        if self.io is not None:
            self.table.peer_gone()
        self.queued = 0  # stream bytes given to this Link: offsets for the RttMeter
        self.rtt = RttMeter()
        self.link = Link(os.urandom(16), window=c.window, in_flight=c.in_flight,
                         backlog=c.backlog, max_frame=LINK_FRAME, transport=c.transport)
        self.path = LinkPath(self.link)  # lossless, or our transport over lossy packets
        self.io = PeerIO(self.link, self.own_key, self.key, report=self._report,
                         table=self.table)
        self.table.mux = self.io.mux

    def _report(self, code: str, message: str) -> None:
        self.emit({"event": "error", "code": code, "message": message, "peer": self.hex})

    def peer_event(self) -> dict:
        if self.state.online:
            return {"event": "peer", "code": 301, "status": "online", "peer": self.hex,
                    "link": self.state.link}
        return {"event": "peer", "code": 302, "status": "offline", "peer": self.hex}

    # -- toxcore's callbacks (inside iterate) -----------------------------------------------

    def on_connection(self, status: Connection) -> None:
        state = self.state
        if status == Connection.NONE:
            self.link_lost()
            return
        was = state.link
        state.link = status.name
        self.path.relayed = status == Connection.TCP
        if status == Connection.UDP:
            self.hold_data_until = 0.0
        if was == "none":
            log.info("%s: friend connection up (%s); handshaking", self.label, status.name)
            state.connections += 1
            if not self.accepted:
                self.accepted = True  # our request was accepted
                self.emit({"event": "friend", "code": 101, "peer": self.hex})
            self.link.connection_made()
            if status == Connection.TCP and self.config.udp:
                # toxcore 0.2.18: if lossless data flows both ways over the relay and the
                # link then switches to direct UDP (typically 0.5-1 s after it came up),
                # congestion control collapses to ~4 packets/s for good. So the handshake
                # goes at once, but data waits briefly for the UDP path.
                self.hold_data_until = time.monotonic() + self.config.udp_grace
        elif state.online and was != status.name:
            log.info("%s: link is now %s", self.label, status.name)
            self.emit({"event": "link", "link": status.name, "peer": self.hex})

    def link_lost(self) -> None:
        self.crawl.reset()
        self.stall.reset()
        if self.state.link == "none":
            return
        log.info("%s: friend connection down", self.label)
        self.link.connection_lost()
        self.rtt.lost()
        self.state.link = "none"
        if self.state.online:
            self.state.online = False
            self.emit(self.peer_event())

    def on_packet(self, data: bytes, now: float) -> None:
        if self.link.state == LinkState.ERROR:
            return
        self.n_received += 1
        try:
            events = self.link.receive_packet(data)
        except ProtocolError as exc:
            self._peer_broke(exc)
            return
        for event in events:
            if isinstance(event, ChannelOpen):
                self.state.online = True
                log.info("%s: channel open (%s)", self.label, self.state.link)
                self.emit(self.peer_event())
            elif isinstance(event, PeerHello) and event.restarted:
                log.info("%s: the peer daemon restarted", self.label)
            elif isinstance(event, VersionMismatch):
                msg = (f"the peer speaks channel protocol version {event.peer_version}, "
                       f"we speak {event.our_version}")
                log.error("%s: %s", self.label, msg)
                self.emit({"event": "error", "code": "version_mismatch", "message": msg,
                           "peer": self.hex})

    def on_lossy(self, data: bytes, now: float) -> None:
        if self.link.state == LinkState.ERROR:
            return
        self.n_received += 1
        try:
            self.path.receive_lossy(data, now)
        except ProtocolError as exc:
            self._peer_broke(exc)

    def deliver(self) -> None:
        """The peer's Link packets that came over the transport, to the Link."""
        if self.link.state == LinkState.ERROR:
            return
        try:
            self.path.deliver()
        except ProtocolError as exc:
            self._peer_broke(exc)

    def _peer_broke(self, exc: ProtocolError) -> None:
        log.error("%s: peer broke the link protocol: %s", self.label, exc)
        self._report("peer_protocol", str(exc))

    @property
    def label(self) -> str:
        return f"peer {self.name or self.hex[:8]}"

    # -- the loop's work --------------------------------------------------------------------

    def pump(self, tox: Tox, outbound, inbound, received: bool, max_frames: int) -> tuple[bool, bool]:
        """Frames app->mux->link and link->mux->app, and packets link->toxcore. The v1
        channel's queues only for the first peer (others: ``inbound`` None). Returns
        (anything moved, frames went to the app)."""
        moved, delivered = self.pump_in(inbound, max_frames)
        return self.pump_out(tox, outbound, received, delivered) or moved, delivered

    def pump_in(self, inbound, max_frames: int) -> tuple[bool, bool]:
        """Link -> mux at once (the mux's credit holds the peer back, per stream), and the
        channel's whole frames -> app while the inbound queue has room. Returns (anything
        moved, frames went to the app)."""
        io = self.io
        moved = io.take_link_frames()
        delivered = inbound is not None and io.deliver(inbound, max_frames)
        return moved or delivered, delivered

    def pump_out(self, tox: Tox, outbound, received: bool, delivered: bool) -> bool:
        """App -> mux -> Link -> toxcore, PUMP_ROUNDS at most. Returns whether anything
        moved."""
        io = self.io
        moved = False
        online = self.state.link != "none"
        # Acks wait until a loop turn brings no data (or ACK_EVERY bytes are due): every
        # packet, acks too, spends toxcore's rate budget.
        flush = not (delivered or received)
        # The mux fills the Link only a little ahead of toxcore (peerio.UNSENT_LOW), so
        # filling and sending take turns until either stops.
        # Over our transport, only what it would take now (LinkPath.room), and still at most
        # UNSENT_LOW a round: its whole room a round (up to 64 KiB) made the file through a
        # hub faster and the chat line beside it 2 x slower (long turns, as with more rounds).
        path = self.path
        for _ in range(PUMP_ROUNDS):
            room = path.room(time.monotonic())
            filled = io.fill(outbound, UNSENT_LOW if room is None else min(room, UNSENT_LOW))
            moved |= filled
            sent = self._send_packets(tox, flush) if online else 0
            moved |= sent > 0
            if not (filled and sent):
                break
        self.queued = io.queued
        return moved

    def _send_packets(self, tox: Tox, flush: bool) -> int:
        """Link -> toxcore (lossless until SENDQ, or into the transport: self.path), until
        nothing is due. Returns the packets accepted (or bytes the transport took: > 0)."""
        link = self.link
        data = not self.hold_data_until or time.monotonic() >= self.hold_data_until
        if data:
            self.hold_data_until = 0.0  # over: no longer a reason to pump (due)
        unsent = link.unsent_bytes
        accepted, refused = self.path.send(tox, self.friend, time.monotonic(),
                                           flush=flush, data=data)
        now = time.monotonic()
        if refused:
            self.crawl.refused(now)
            self.n_refused += 1
        if accepted:
            self.n_accepted += accepted
            self.crawl.accepted(now, accepted)
        took = link.unsent_bytes < unsent
        if accepted or took:
            self.queued = self.io.queued
            self.rtt.sent(self.queued - link.unsent_bytes, now)
        return accepted or int(took)

    def acked(self, now: float) -> None:
        self.rtt.acked(self.queued - self.link.unacked_bytes, now)

    def due(self, now: float) -> bool:
        """Something of ours runs by the clock now (a transport's timer or pacer, the end
        of the hold on data), or the trio side left news without a wake (what apps took:
        localstreams.CREDIT_WAKE): the loop pumps even though nothing else asked it to."""
        t = self.timer()
        return ((t is not None and t <= now) or 0.0 < self.hold_data_until <= now
                or self.table.dirty)

    def timer(self) -> float | None:
        """When the transports' timers or pacer want a turn (``LinkPath.timeout``), or None.
        None while the friend is offline: nothing goes out then (``pump_out``), so a timer
        already due stayed due and the loop spun at 5,000-10,000 wakes a second after a
        reset until the friend came back (test_nat, symmetric, -vv: ``timer=8822``)."""
        return self.path.timeout() if self.state.link != "none" else None

    def sending(self, outbound_len: int) -> bool:
        link = self.link
        return self.state.link != "none" and bool(
            outbound_len or link.unacked_bytes or link.owes_ack or self.path.busy
            or self.io.busy)

    def sending_why(self, outbound_len: int) -> str:
        """Which of ``sending``'s reasons hold (the -vv tick line): o(utbound frames),
        u(nacked Link bytes), a(n ack owed), p(ath: the transport busy), m(ux busy)."""
        if self.state.link == "none":
            return "-"
        link = self.link
        flags = (outbound_len, link.unacked_bytes, link.owes_ack, self.path.busy, self.io.busy)
        return "".join(c for c, f in zip("ouapm", flags) if f) or "-"

    def backlogged(self, outbound_len: int) -> bool:
        """Bytes wait to be transmitted (not merely to be acknowledged): bulk sending."""
        return self.state.link != "none" and bool(
            outbound_len or self.link.unsent_bytes or self.path.unsent_bytes or self.io.busy)

    def stuck(self, now: float) -> str | None:
        """Why this connection needs a fresh one, or None (asked every WATCH_PERIOD): nothing of
        ours acknowledged for a while (stall.py), or toxcore's rate stuck at its floor
        (crawl.py)."""
        if not self.state.online:
            self.stall.reset()
            return None
        link = self.link
        self.stall.observe(now, link.unacked_bytes > link.unsent_bytes, link.acked_total)
        if self.stall.stuck(now):
            return "no_progress"
        if not self.path.active and self.crawl.stuck(now):
            return "toxcore_rate_floor"
        return None

    # -- status ---------------------------------------------------------------------------

    def snapshot(self, now: float, outbound, inbound) -> PeerSnapshot:
        """``outbound``/``inbound``: the v1 channel's queues when this is the first peer."""
        link, s, io, rtt = self.link, self.link.statistics(), self.io, self.rtt
        rate_sent, rate_received = self.rates.sample(now, s.bytes_sent, s.bytes_received)
        queues = {
            "link_in_flight_bytes": link.unacked_bytes - link.unsent_bytes,
            "link_backlog_bytes": link.unsent_bytes,
            "link_received_bytes": link.buffered_bytes,
        }
        if inbound is not None:
            queues.update({
                "outbound_frames": len(outbound), "outbound_max": outbound.space() + len(outbound),
                "inbound_runs": len(inbound), "inbound_max": inbound.space() + len(inbound)})
        queues.update(io.statistics())  # the Link's frames are the mux's: count the app's
        queues["link_received_bytes"] += queues["channel_buffered_bytes"]
        return PeerSnapshot(
            public_key=self.hex, online=self.state.online, link=self.state.link,
            state=link.state.value,
            rtt_ms=None if rtt.srtt is None else round(rtt.srtt * 1000, 2),
            rtt_min_ms=None if rtt.min is None else round(rtt.min * 1000, 2),
            bytes_sent=s.bytes_sent, bytes_received=s.bytes_received,
            bytes_resent=s.bytes_resent, rate_sent=round(rate_sent, 1),
            rate_received=round(rate_received, 1), frames_sent=io.frames_sent,
            frames_received=io.frames_received,
            reconnects=max(0, self.state.connections - 1), peer_restarts=s.peer_restarts,
            queues=queues, transport=self._path_status(), name=self.name,
            streams=len(self.table))

    def _path_status(self) -> dict:
        p = self.path.statistics()
        return {"active": self.path.active, "lossy_sent_data": p.lossy_sent[200],
                "lossy_sent_ack": p.lossy_sent[201], "lossy_received_data": p.lossy_received[200],
                "lossy_received_ack": p.lossy_received[201], "lossy_refused": p.lossy_refused,
                "stale_dropped": p.stale_dropped, "epochs": p.epochs,
                "in_flight_bytes": p.send_in_flight, "cwnd_bytes": p.send_cwnd,
                "srtt_ms": None if p.send_srtt_s is None else round(p.send_srtt_s * 1000, 2),
                "packets_lost": p.send_lost}
