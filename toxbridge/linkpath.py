"""The Link's way to the peer, for the tox thread: its packets go as toxcore lossless packets,
or -- on a connection where both HELLOs offered the transport (``Link.transport_agreed``) --
DATA, ACK and RESYNC go inside our transport's byte stream over lossy packets, where neither
toxcore's 56-packet queue wall nor its loss-as-congestion rate control applies (issue 16;
docs/wire.md §4.5). HELLO stays lossless: it opens the channel and names the incarnations.

Two one-way transports per connection, each named by its sender's epoch (from the Link's
HELLO): ours sends our Link packets (its DATA out, the peer's ACKs in), the peer's brings
its Link packets (its DATA in, our ACKs out). Each lossy packet is the transport's packet
with that epoch byte after the id:

    id (200 DATA / 201 ACK) | epoch | the transport packet after its id byte

A DATA packet must carry the epoch of the peer's latest HELLO, an ACK the epoch of our
latest; anything else belongs to a dead incarnation and is dropped. A new epoch means a
fresh transport: the Link itself rewinds to what the peer really received, as on any
reconnect, so nothing in flight in the old one is needed.

Inside the stream each Link packet is ``u16 length | packet``. The peer's packets reach the
Link only once its channel is open (before that it would ignore them, and they are already
acknowledged by the transport): they wait in the transport, whose window bounds them.

Not pure (it calls the ``Tox``), but it never logs: the tox thread reports what it raises.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import RemoteProtocolError
from .link import MAX_PACKET_SIZE, Link, LinkState, PacketType
from .tox import Tox
from .transport import ACK_ID, DATA_ID, MAX_PAYLOAD, Endpoint

__all__ = ["LinkPath", "LinkPathStatistics", "MAX_UNSENT", "MIN_UNSENT", "RELAY_FLIGHT", "RELAY_HOLD_S",
           "share_relay", "unsent_limit"]

_LEN = struct.Struct(">H")
_HELLO = int(PacketType.HELLO)
# Link packets waiting in our transport: what it could transmit at once (the room in its
# window and its pacer's allowance, the smaller), within [MIN_UNSENT, MAX_UNSENT]. They sit
# below the mux's priority scheduler, so a chat frame and the Link's own ACKs wait behind
# all of them: a bound in bytes alone (64 KiB) is 10 ms at 6.25 MB/s and 65 ms over a 1 MB/s
# relay (issue 14: with the pacer holding the file at 5 MB/s the chat line waited 4.9 x
# idle, 2.4 x with 16 KiB), and 2 ms of the pacer's rate on top of its allowance still
# held the line behind 4 packets while the window, not the pacer, held the flow. Nothing
# more is needed ahead: the transport transmits only in LinkPath.send, right after the
# pump has moved the Link's packets in, so each chance to send is filled from the mux
# just before it, by priority.
MIN_UNSENT = MAX_PAYLOAD
MAX_UNSENT = 64 * 1024
# Over a TCP relay our transport sends in flights of at most RELAY_FLIGHT bytes: after one,
# nothing more until all of it is acknowledged. A relay (toxcore's TCP server,
# tox-bootstrapd) reads a client's socket only while a whole packet is in it, and Linux
# frees a received buffer only once it is read to its end, while new segments are merged
# into the last buffer. So while our bytes keep arriving, each read leaves the start of a
# packet behind, and the buffer that holds it grows with everything that came since the
# relay last read up to where we had stopped. Once it fills the socket's receive memory
# (131,072 bytes until Linux autotunes it), the kernel advertises a zero window, the rest
# of that packet never comes, and the direction is dead until toxcore drops the relay
# connection (`ss -tinm` in test_nat's relay namespace, 2026-12-04: 1,388 bytes unread
# holding 171,000 of 176,336 bytes of memory, zero window for good). When nothing is in
# flight, the relay has read everything up to our last byte, so each flight starts on a
# freed buffer. In test_nat's relay (0.3 s samples of 16 sockets) a socket held at most
# 82 kB of memory with 64 KiB flights, 98 kB with 80 KiB ones (12 sockets): too close to
# the ~124 kB at which the window closes. Caps on bytes in flight alone (48 KiB beyond the
# model's product, then 80 KiB) made that wedge rarer, never impossible: 1 in 18 runs.
RELAY_FLIGHT = 64 * 1024
# On a long path a flight waits longer for its acks: it is RELAY_FLIGHT x the least round
# trip over RELAY_HOLD_S (tox-bootstrapd sleeps 30 ms a turn, so a relay on loopback has a
# round trip of about that, and its flights stay at 64 KiB). The relay's socket sees the long
# round trip too, and Linux grows a socket's receive buffer with the bytes that arrive per
# round trip (in test_nat's relay, from 131,072 bytes to 0.2-12 MB during each run; the
# wedge watched came 3 s in, before that); not measured on a long path.
RELAY_HOLD_S = 0.030
# toxcore does not say which relay carries which friend, so all relayed friends are taken
# to share one connection: those with data to move split RELAY_FLIGHT (share_relay),
# never below two packets each, and start their flights together, so that the connection
# pauses after each round of them.
MIN_RELAY_SHARE = 2 * MAX_PAYLOAD


@dataclass(frozen=True, slots=True)
class LinkPathStatistics:
    lossy_sent: dict[int, int]  # lossy packets toxcore took, by id (200 DATA, 201 ACK)
    lossy_received: dict[int, int]  # ... and received for the transport, by id
    lossy_refused: int  # toxcore said SENDQ (no path): lost, the transport resends
    stale_dropped: int  # of a dead incarnation (another epoch)
    epochs: int  # transports started, both directions
    send_in_flight: int  # bytes in flight in our transport
    send_cwnd: int
    send_srtt_s: float | None
    send_lost: int  # packets our transport declared lost


class LinkPath:
    """Carries one Link's packets for one friend. ``initial_rtt`` seeds each new transport
    (a round trip the tox thread measured, if any)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._send_ep: Endpoint | None = None
        self._send_epoch: int | None = None
        self._recv_ep: Endpoint | None = None
        self._recv_epoch: int | None = None
        self._recv_session: bytes | None = None  # the peer daemon's, with _recv_epoch
        self._rbuf = bytearray()  # the peer's stream: a partial Link packet at its end
        self.initial_rtt = 0.1
        self._sent = {DATA_ID: 0, ACK_ID: 0}
        self._received = {DATA_ID: 0, ACK_ID: 0}
        self._refused = self._stale = self._epochs = 0
        self._relayed = False
        self._share = RELAY_FLIGHT
        self.error: str | None = None  # the peer broke the transport: raised once, then deaf

    # -- state ------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """The transport carries the Link's packets on this connection."""
        return self.link.transport_agreed

    @property
    def relayed(self) -> bool:
        """toxcore carries this friend over a TCP relay: our transport sends flights of at
        most ``share`` bytes (RELAY_FLIGHT unless share_relay splits it)."""
        return self._relayed

    @relayed.setter
    def relayed(self, value: bool) -> None:
        if self._relayed and not value and self._send_ep is not None:
            self._send_ep.cc.path_changed()  # off the relay: its flights no longer hold the rate
        self._relayed = value
        self._apply_flights()

    @property
    def share(self) -> int:
        return self._share

    @share.setter
    def share(self, value: int) -> None:
        if value != self._share:
            self._share = value
            self._apply_flights()

    @property
    def in_flight(self) -> bool:
        """Our transport has bytes in flight that the peer still acknowledges (not a path
        gone silent, which only its probes test)."""
        ep = self._send_ep
        return ep is not None and ep.recovery.bytes_in_flight > 0 and not ep.recovery.in_blackout

    def open_flights(self, value: bool) -> None:
        """Whether a new flight may start (share_relay's barrier)."""
        if self._send_ep is not None:
            self._send_ep.cc.flight_open = value

    def _apply_flights(self) -> None:
        if self._send_ep is not None:
            if self._relayed:
                self._send_ep.cc.set_flight(self._share, RELAY_HOLD_S)
            else:
                self._send_ep.cc.set_flight(float("inf"))

    def _sync(self) -> None:
        """Start or drop transports to match the Link's epochs (HELLOs, reconnects)."""
        link = self.link
        if not link.transport_agreed:
            if self._send_ep is not None or self._recv_ep is not None:
                self._send_ep = self._recv_ep = None
                self._send_epoch = self._recv_epoch = None
                self._rbuf.clear()
            return
        if self._send_ep is None or self._send_epoch != link.transport_epoch:
            self._send_ep, self._send_epoch = self._new_endpoint(), link.transport_epoch
            self._apply_flights()
        # A restarted peer daemon numbers its epochs from the start again: its first
        # transport may have the epoch of its predecessor's, but it is a new one.
        if (self._recv_ep is None or self._recv_epoch != link.peer_transport_epoch
                or self._recv_session != link.peer_session_id):
            self._recv_ep, self._recv_epoch = self._new_endpoint(), link.peer_transport_epoch
            self._recv_session = link.peer_session_id
            self._rbuf.clear()  # a partial packet of the old stream is never completed

    def _new_endpoint(self) -> Endpoint:
        self._epochs += 1
        return Endpoint(initial_rtt=self.initial_rtt, max_payload=MAX_PAYLOAD - 1)

    def timeout(self) -> float | None:
        """When ``send`` must run next for the transports' timers or pacer (a time at or
        before now: at once), or None."""
        times = [t for ep in (self._send_ep, self._recv_ep) if ep is not None
                 if (t := ep.timeout()) is not None]
        return min(times) if times else None

    @property
    def unsent_bytes(self) -> int:
        """Bytes our transport holds that it has not transmitted yet."""
        ep = self._send_ep
        return ep.unsent_bytes if ep is not None else 0

    def room(self, now: float) -> int | None:
        """How many bytes the Link may hold unsent for our transport at ``now``: what
        ``send`` would still move into it (``unsent_limit``); None without the transport.
        The Link's unsent bytes are FIFO below the mux's priorities as the transport's
        are, so the two are bounded as one: a chat frame waits behind what can go at once,
        not that plus the Link's 4 KiB (4 ms at 1 MB/s)."""
        ep = self._send_ep
        if ep is None or not self.link.transport_agreed:
            return None
        return max(0, int(unsent_limit(ep, now)) - ep.unsent_bytes)

    @property
    def busy(self) -> bool:
        """Our transport has data in flight or to transmit: the loop must run for the pacer.
        Not while only the peer's limit holds data back: an idle hub with one such peer had
        spun at the 1 ms cadence for 30 s (33-37 % of a core, bench mesh --idle-only)."""
        ep = self._send_ep
        return ep is not None and (ep.recovery.bytes_in_flight > 0 or ep.can_transmit)

    # -- receiving --------------------------------------------------------------------

    def receive_lossy(self, packet: bytes, now: float) -> None:
        """One lossy packet from the peer (id first). RemoteProtocolError if the transport
        finds it malformed; after that, lossy packets are ignored (no error per packet)."""
        if self.error is not None or len(packet) < 2 or packet[0] not in self._received:
            return  # not ours: another id of the range 200..254
        self._sync()
        kind, epoch = packet[0], packet[1]
        if kind == DATA_ID:
            ep, want = self._recv_ep, self._recv_epoch
        else:
            ep, want = self._send_ep, self._send_epoch
        if ep is None or epoch != want:
            self._stale += 1
            return
        self._received[kind] += 1
        try:
            ep.receive_datagram(packet[:1] + packet[2:], now)
        except RemoteProtocolError as exc:
            self.error = str(exc)
            raise

    def deliver(self) -> None:
        """Hand the peer's Link packets that arrived in order to the Link (once its channel
        is open). Raises RemoteProtocolError (from the Link, or a bad length)."""
        ep, link = self._recv_ep, self.link
        if ep is None or not ep.readable or link.state is not LinkState.OPEN:
            return
        buf = self._rbuf
        buf += ep.receive()
        pos, size = 0, len(buf)
        try:
            while size - pos >= 2:
                n = (buf[pos] << 8) | buf[pos + 1]
                if not 2 <= n <= MAX_PACKET_SIZE:
                    raise RemoteProtocolError(f"a Link packet of {n} bytes in the transport")
                if size - pos - 2 < n:
                    break
                link.receive_packet(bytes(buf[pos + 2 : pos + 2 + n]))
                pos += 2 + n
        finally:
            del buf[:pos]

    # -- sending ----------------------------------------------------------------------

    def send(self, tox: Tox, friend: int, now: float, *, flush: bool,
             data: bool) -> tuple[int, bool]:
        """Move the Link's packets out, then what the transports have for the wire.
        Returns (lossless packets toxcore took, whether it refused one: SENDQ)."""
        self._sync()
        link, ep = self.link, self._send_ep
        accepted, refused = 0, False
        limit = unsent_limit(ep, now) if ep is not None else 0
        packet = link.next_packet(flush=flush, data=data)
        while packet is not None:
            if ep is not None and packet[1] != _HELLO:
                if ep.unsent_bytes >= limit or ep.send_room < len(packet) + 2:
                    link.requeue(packet)  # the transport paces it out; more next turn
                    break
                ep.send(_LEN.pack(len(packet)) + packet)
            elif tox.try_send_lossless_packet(friend, packet):
                accepted += 1
            else:
                link.requeue(packet)  # SENDQ: toxcore's rate budget; retry next turn
                refused = True
                break
            packet = link.next_packet(flush=flush, data=data)
        self._transmit(tox, friend, now)
        return accepted, refused

    def _transmit(self, tox: Tox, friend: int, now: float) -> None:
        send = tox.try_send_lossy_packet
        for ep, epoch in ((self._send_ep, self._send_epoch), (self._recv_ep, self._recv_epoch)):
            if ep is None:
                continue
            t = ep.timeout()
            if t is not None and t <= now:
                ep.handle_timer(now)
            tag = bytes((epoch,))
            for d in ep.datagrams_to_send(now):
                if send(friend, d[:1] + tag + d[1:]):
                    self._sent[d[0]] += 1
                else:
                    self._refused += 1

    def trace(self) -> dict | None:
        """What a debug trace samples (``toxbridge.pathtrace``): our transport's
        ``Endpoint.trace()``, the receiving end of the peer's (``rx_`` keys) and toxcore's
        lossy counters; None while the transport is not active."""
        ep, rx = self._send_ep, self._recv_ep
        if ep is None or not self.link.transport_agreed:
            return None
        out = ep.trace()
        ep.burst_max = 0
        if rx is not None:
            out.update(rx_packets_received=rx.statistics().packets_received,
                       rx_acks_sent=rx.statistics().acks_sent, rx_readable=rx.readable)
        out.update(lossy_sent_data=self._sent[DATA_ID], lossy_sent_ack=self._sent[ACK_ID],
                   lossy_refused=self._refused, stale_dropped=self._stale, epochs=self._epochs)
        return out

    def statistics(self) -> LinkPathStatistics:
        ep = self._send_ep
        s = ep.statistics() if ep is not None else None
        return LinkPathStatistics(
            lossy_sent=dict(self._sent), lossy_received=dict(self._received),
            lossy_refused=self._refused, stale_dropped=self._stale, epochs=self._epochs,
            send_in_flight=s.bytes_in_flight if s else 0, send_cwnd=s.cwnd if s else 0,
            send_srtt_s=s.srtt_s if s else None, send_lost=s.packets_lost if s else 0)


def unsent_limit(ep: Endpoint, now: float) -> float:
    """How many bytes ``ep`` may hold unsent at ``now``: what it could transmit at once,
    the room in its window and its pacer's allowance for this turn (which covers a long
    turn, up to the pacer's MAX_TURN_S), the smaller, within [MIN_UNSENT, MAX_UNSENT]."""
    room = ep.cc.window() - ep.recovery.bytes_in_flight
    ahead = min(room, ep.pacer.allowance(now))
    return min(MAX_UNSENT, max(MIN_UNSENT, ahead))


def share_relay(paths: Iterable[LinkPath]) -> None:
    """Split RELAY_FLIGHT among the relayed paths with data to move (the others get the
    same share, ready for when they have some), and start their flights together: none
    while another is out. Flights that started apart would keep the relay connection's
    stream going without a pause, and the relay's buffer growing across them."""
    relayed = [p for p in paths if p.relayed]
    if not relayed:
        return
    busy = sum(1 for p in relayed if p.busy) or 1
    share = max(RELAY_FLIGHT // busy, MIN_RELAY_SHARE)
    out = any(p.in_flight for p in relayed)
    for p in relayed:
        p.share = share
        p.open_flights(not out)
