"""The tox thread: it alone owns the ``Tox``, the ``Link`` and the peer's stream mux
(``toxbridge.peerio``), and meets the trio side through two bounded queues.

    app --> trio --> outbound FrameQueue --> tox thread --> channel stream --> Mux --> Link
    app <-- trio <-- inbound  FrameQueue <-- tox thread <-- channel stream <-- Mux <-- Link

The inbound queue carries runs of frames already encoded for the app (up to BLOB_FRAMES
each), so the trio thread only writes them: it then seldom holds the GIL when a packet
callback inside tox_iterate needs it.

Backpressure: the tox thread moves app frames into the channel stream only while the mux
has room and the Link little unsent (so a slow peer fills the outbound queue and trio
stops reading the app's socket), and consumes the channel's bytes only as it moves them
into the inbound queue (so a slow app stops the channel's credit, which stops the peer's
sender). Memory is bounded by the two queues and the mux's windows, whatever the volume.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Callable

from .bootstrap import RetrySchedule, add_nodes, describe_refusals
from .config import Config, request_allowed, request_message
from .crawl import CrawlWatch
from .link import ChannelOpen, Link, LinkState, PeerHello, VersionMismatch
from .linkpath import LinkPath
from .network import loopback_options
from .localstreams import StreamTable
from .peerio import LINK_FRAME, PeerIO
from .errors import ConfigError, ProtocolError
from .control.snapshot import NodeSnapshot, PeerSnapshot, RateMeter, RttMeter
from .tox import (Connection, FriendAddError, Tox, ToxError, ToxOptions, load_profile,
                  save_profile, udp_socket_fd)
from .wakeup import Wakeup

__all__ = ["FrameQueue", "ToxLoop", "PeerState"]

log = logging.getLogger(__name__)

BLOB_FRAMES = 64  # frames per item of the inbound queue
BUSY_AFTER_TRAFFIC = 1.0  # seconds of fast looping after the last packet either way
# ... when toxcore's UDP socket is watched: arrivals wake the loop by themselves, so only
# a short tail (a burst's gaps) and our own unfinished sending keep it fast.
BUSY_AFTER_TRAFFIC_WATCHED = 0.1
PUMP_ROUNDS = 64  # fill-then-send rounds per _pump at most (a loop turn stays short)
SNAPSHOT_PERIOD = 0.5  # seconds between status snapshots (see toxbridge.control.snapshot)


class FrameQueue:
    """A bounded FIFO of frames shared by two threads (never blocks; callers wait)."""

    def __init__(self, max_frames: int) -> None:
        self._items: deque[bytes] = deque()
        self._max = max_frames
        self._lock = threading.Lock()
        # Frames ever taken: a consumer that compares lengths before and after its take
        # misses the room it made when the producer filled the queue in between.
        self.taken = 0

    def put_nowait(self, frame: bytes) -> bool:
        with self._lock:
            if len(self._items) >= self._max:
                return False
            self._items.append(frame)
            return True

    def take(self, limit: int) -> list[bytes]:
        with self._lock:
            n = min(limit, len(self._items))
            self.taken += n
            return [self._items.popleft() for _ in range(n)]

    def peek(self) -> bytes | None:
        with self._lock:
            return self._items[0] if self._items else None

    def pop(self) -> None:
        with self._lock:
            self._items.popleft()
            self.taken += 1

    def space(self) -> int:
        return self._max - len(self._items)

    def __len__(self) -> int:
        return len(self._items)


class PeerState:
    """What the app is told about the peer (read by trio, written by the tox thread)."""

    def __init__(self) -> None:
        self.online = False
        self.link = "none"  # "UDP", "TCP" or "none"
        self.public_key: bytes | None = None
        self.connections = 0  # friend connections that came up


class ToxLoop(threading.Thread):
    """The tox thread. ``notify(event_dict | None)`` is called from this thread whenever
    there is something for the trio side (an event, or frames in ``inbound``/room in
    ``outbound``); it must be cheap and thread-safe (``trio_token.run_sync_soon``)."""

    def __init__(self, config: Config, notify: Callable[[dict | None], None]) -> None:
        super().__init__(name="tox", daemon=True)
        self.config = config
        self.notify = notify
        self.outbound = FrameQueue(config.queue_frames)  # app -> peer
        self.inbound = FrameQueue(max(4, config.queue_frames // BLOB_FRAMES))  # peer -> app
        self.peer = PeerState()
        self.streams = StreamTable()  # the local streams of streams.sock (toxbridge.localstreams)
        self.wake = Wakeup()  # set by trio when it queued outbound frames
        self.started_ok = threading.Event()
        self.failure: BaseException | None = None
        self._stopping = threading.Event()
        self.link = self._new_link()
        self.friend: int | None = None
        self._retry = RetrySchedule(time.monotonic(), config.bootstrap_retry, config.bootstrap_retry_max)
        self.tox = self._open_tox()
        self.address = self.tox.address
        # Sleep in poll() on toxcore's UDP socket: an arriving packet ends the wait at once,
        # so the idle loop can wait as long as toxcore asks (50 ms) at no cost in latency.
        self._udp_fd = self._find_udp_fd()
        if self._udp_fd is not None:
            self.wake.watch(self._udp_fd)
        log.debug("toxcore's UDP socket: %s", "not found: a timer paces the idle loop"
                  if self._udp_fd is None else f"fd {self._udp_fd}, watched")
        self._strangers: deque[bytes] = deque(maxlen=config.max_pending_requests)
        self._last_traffic = 0.0
        self._received = False  # a packet arrived during this loop turn
        self._hold_data_until = 0.0  # see _on_friend_connection
        self._accepted = False  # --peer: has our friend request been accepted (101 sent)?
        self._crawl = CrawlWatch()  # toxcore's rate stuck at its floor? (see crawl.py)
        # Packets toxcore accepted / refused (SENDQ) and packets received: totals, for the
        # per-second debug line (-vv) that shows how a link recovers after a cut.
        self._n_accepted = self._n_refused = self._n_received = 0
        # Status (toxbridge.control.snapshot): published by this thread, read by trio as a whole.
        self.snapshot: NodeSnapshot | None = None
        self._snapshot_wanted = threading.Event()
        self._snapshot_seq = 0
        self._started_at = time.monotonic()
        self._rates = RateMeter()

    # -- set-up -----------------------------------------------------------------------

    def _new_link(self) -> Link:
        c = self.config
        self._queued = 0  # stream bytes given to this Link: offsets for the RttMeter
        self._rtt = RttMeter()
        self.io: PeerIO | None = None  # made once the peer's key is known (its mux role)
        link = Link(os.urandom(16), window=c.window, in_flight=c.in_flight, backlog=c.backlog,
                    max_frame=LINK_FRAME, transport=c.transport)
        self.path = LinkPath(link)  # lossless, or our transport over lossy packets
        return link

    def _find_udp_fd(self) -> int | None:
        try:
            return udp_socket_fd(self.tox.udp_port)
        except ToxError:  # UDP off: no port
            return None

    def _open_tox(self) -> Tox:
        c = self.config
        savedata = load_profile(c.profile, c.passphrase)
        if c.ipv6 or c.lan_discovery:
            options = ToxOptions(udp=c.udp, ipv6=c.ipv6, local_discovery=c.lan_discovery,
                                 savedata=savedata)
        else:
            options = loopback_options(udp=c.udp, savedata=savedata, start_port=0, end_port=0)
        tox = Tox(options)
        usable, refused = add_nodes(tox, c.bootstrap, c.tcp_relays)
        for r in refused:
            log.warning("skipping the %s: toxcore refused it (%s: a host name that does not "
                        "resolve, or an address family that is off)", r, r.error)
        if refused and not usable:
            tox.close()
            raise ConfigError(f"no usable bootstrap node: toxcore refused each one: "
                              f"{describe_refusals(refused)}; check the hosts in --bootstrap/"
                              f"--nodes/--tcp-relay, and this machine's DNS")
        tox.on_friend_request = self._on_friend_request
        tox.on_friend_connection_status = self._on_friend_connection
        tox.on_friend_lossless_packet = self._on_packet
        tox.on_friend_lossy_packet = self._on_lossy
        tox.on_self_connection_status = self._on_self_connection
        if c.mode == "peer":
            # As the notes say: keep only our identity, then ask the listener afresh.
            for friend in tox.friend_list():
                tox.friend_delete(friend)
            try:
                self.friend = tox.friend_add(c.peer_id, request_message(c.secret))
            except FriendAddError:
                tox.close()
                raise
            self.peer.public_key = c.peer_id[:32]
        else:
            friends = tox.friend_list()
            for friend in friends:  # keep the peer we accepted before, if still allowed
                key = tox.friend_public_key(friend)
                if self.friend is None and (c.accept_anyone or not c.allow or key in c.allow):
                    self.friend = friend
                    self.peer.public_key = key
                else:
                    tox.friend_delete(friend)
        save_profile(c.profile, tox.savedata(), c.passphrase)
        return tox

    # -- callbacks (inside iterate) ---------------------------------------------------

    def _on_self_connection(self, status: Connection) -> None:
        now = time.monotonic()
        took = self._retry.connection(status != Connection.NONE, now)
        if took is not None:
            log.info("connected to the Tox network (DHT, %s) after %.1f s", status.name, took)
        elif status == Connection.NONE:
            log.warning("lost the connection to the Tox network; retrying bootstrap")
        else:
            log.info("Tox network connection is now %s", status.name)

    def _on_friend_request(self, key: bytes, message: bytes) -> None:
        if self.config.mode != "listen" or not request_allowed(self.config, key, message):
            if key not in self._strangers:
                self._strangers.append(key)
                log.warning("ignored a friend request from %s (not allowed)", key.hex().upper())
            return
        if self.friend is not None:
            old = self.tox.friend_public_key(self.friend)
            if old == key:
                self.notify({"event": "friend", "code": 103, "peer": key.hex().upper()})
                return
            log.warning("an allowed peer %s replaces %s", key.hex().upper(), old.hex().upper())
            self.tox.friend_delete(self.friend)
            self._link_lost()
            self.link = self._new_link()
        try:
            self.friend = self.tox.friend_add_norequest(key)
        except FriendAddError as exc:
            self.friend = None
            log.error("could not add the peer %s: %s", key.hex().upper(), exc.error)
            self.notify({"event": "friend", "code": 102, "peer": key.hex().upper(),
                         "message": exc.error})
            return
        self.peer.public_key = key
        save_profile(self.config.profile, self.tox.savedata(), self.config.passphrase)
        log.info("accepted the peer %s", key.hex().upper())
        self.notify({"event": "friend", "code": 101, "peer": key.hex().upper()})

    def _on_friend_connection(self, friend: int, status: Connection) -> None:
        if friend != self.friend:
            return
        if status == Connection.NONE:
            self._link_lost()
        else:
            was = self.peer.link
            self.peer.link = status.name
            if status == Connection.UDP:
                self._hold_data_until = 0.0
            if was == "none":
                log.info("friend connection up (%s); handshaking", status.name)
                self.peer.connections += 1
                if self.config.mode == "peer" and not self._accepted:
                    self._accepted = True  # our request was accepted
                    self.notify({"event": "friend", "code": 101, "peer": self.peer.public_key.hex().upper()})
                self.link.connection_made()
                if status == Connection.TCP and self.config.udp:
                    # toxcore 0.2.18: if lossless data flows both ways over the relay and
                    # the link then switches to direct UDP (typically 0.5-1 s after it came
                    # up), congestion control collapses to ~4 packets/s for good. So the
                    # handshake goes at once, but data waits briefly for the UDP path.
                    self._hold_data_until = time.monotonic() + self.config.udp_grace
            elif self.peer.online and was != status.name:
                log.info("link is now %s", status.name)
                self.notify({"event": "link", "link": status.name})

    def _reset_connection(self) -> None:
        """A fresh friend connection: toxcore's queue and rate state go with the old one;
        the Link resumes from what the peer received (the apps see 302, then 301)."""
        key = self.tox.friend_public_key(self.friend)
        log.warning("toxcore's send rate is stuck at its floor (%.0f s under %.0f packets/s "
                    "while it refused more); starting a fresh connection to the peer",
                    self._crawl.seconds, self._crawl.rate)
        self.notify({"event": "reset", "reason": "toxcore_rate_floor",
                     "message": "toxcore's send rate stuck at 4 packets/s: reconnecting"})
        self.tox.friend_delete(self.friend)
        self._link_lost()
        self._crawl.reset()
        try:
            self.friend = self.tox.friend_add_norequest(key)
        except FriendAddError as exc:  # not expected right after the delete
            self.friend = None
            log.error("could not add the peer %s again: %s", key.hex().upper(), exc.error)
            return
        save_profile(self.config.profile, self.tox.savedata(), self.config.passphrase)

    def _link_lost(self) -> None:
        self._crawl.reset()
        if self.peer.link == "none":
            return
        log.info("friend connection down")
        self.link.connection_lost()
        self._rtt.lost()
        self.peer.link = "none"
        if self.peer.online:
            self.peer.online = False
            self.notify(self._peer_event())

    def _on_packet(self, friend: int, data: bytes) -> None:
        if friend != self.friend or self.link.state == LinkState.ERROR:
            return
        self._last_traffic = time.monotonic()
        self._received = True
        self._n_received += 1
        try:
            events = self.link.receive_packet(data)
        except ProtocolError as exc:
            log.error("peer broke the link protocol: %s", exc)
            self.notify({"event": "error", "code": "peer_protocol", "message": str(exc)})
            return
        for event in events:
            if isinstance(event, ChannelOpen):
                self.peer.online = True
                log.info("channel open (%s)", self.peer.link)
                self.notify(self._peer_event())
            elif isinstance(event, PeerHello) and event.restarted:
                log.info("the peer daemon restarted")
            elif isinstance(event, VersionMismatch):
                msg = (f"the peer speaks channel protocol version {event.peer_version}, "
                       f"we speak {event.our_version}")
                log.error(msg)
                self.notify({"event": "error", "code": "version_mismatch", "message": msg})

    def _on_lossy(self, friend: int, data: bytes) -> None:
        if friend != self.friend or self.link.state == LinkState.ERROR:
            return
        self._last_traffic = time.monotonic()
        self._received = True
        self._n_received += 1
        try:
            self.path.receive_lossy(data, self._last_traffic)
        except ProtocolError as exc:
            self._peer_broke(exc)

    def _peer_broke(self, exc: ProtocolError) -> None:
        log.error("peer broke the link protocol: %s", exc)
        self.notify({"event": "error", "code": "peer_protocol", "message": str(exc)})

    def _peer_event(self) -> dict:
        key = self.peer.public_key.hex().upper() if self.peer.public_key else None
        if self.peer.online:
            return {"event": "peer", "code": 301, "status": "online", "peer": key,
                    "link": self.peer.link}
        return {"event": "peer", "code": 302, "status": "offline", "peer": key}

    def peer_event(self) -> dict:
        return self._peer_event()

    # -- the loop ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    def run(self) -> None:
        try:
            self.started_ok.set()
            if self.config.mode == "peer" and self.friend is not None:
                self.notify({"event": "friend", "code": 104, "peer": self.peer.public_key.hex().upper()})
            self._run()
        except BaseException as exc:  # reported to trio, which shuts down
            log.exception("the tox thread failed")
            self.failure = exc
            self.notify({"event": "error", "code": "internal", "message": str(exc)})
        finally:
            try:
                save_profile(self.config.profile, self.tox.savedata(), self.config.passphrase)
            finally:
                self.tox.close()
                self.notify(None)

    def _run(self) -> None:
        tox, link, outbound, inbound = self.tox, self.link, self.outbound, self.inbound
        next_report = next_snapshot = next_tick = 0.0
        tick = (0, 0, 0, 0, 0)
        while not self._stopping.is_set():
            if log.isEnabledFor(logging.DEBUG) and time.monotonic() > next_report:
                next_report = time.monotonic() + 5
                log.debug("state %s link=%s out=%d in=%d %s", self.link.state.name, self.peer.link,
                          len(outbound), len(inbound), self.statistics())
            if log.isEnabledFor(logging.DEBUG) and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + 1
                tick = self._log_tick(tick)
            link = self.link
            self._received = False
            self._bootstrap_again()
            moved = self._pump(link, outbound, inbound)
            tox.iterate()
            self._deliver()
            if self._received:
                self._rtt.acked(self._queued - link.unacked_bytes, time.monotonic())
            moved |= self._pump(link, outbound, inbound)
            now = time.monotonic()
            if now >= next_snapshot or self._snapshot_wanted.is_set():
                self._snapshot_wanted.clear()
                self._publish(now)
                next_snapshot = now + SNAPSHOT_PERIOD
            if self.friend is not None and self.peer.online and not self.path.active \
                    and self._crawl.stuck(now):
                self._reset_connection()
            if moved:
                self._last_traffic = now
            watched = self._udp_fd is not None and self.peer.link != "TCP"
            sending = self.peer.link != "none" and (len(outbound) or link.unacked_bytes
                                                    or link.owes_ack or self.path.busy
                                                    or (self.io is not None and self.io.busy))
            busy = sending or now - self._last_traffic < (BUSY_AFTER_TRAFFIC_WATCHED if watched
                                                          else BUSY_AFTER_TRAFFIC)
            if busy:
                # A steady 1 ms cadence, as measured best with toxcore's congestion control
                # (waking on every arriving packet changes how often it runs).
                period = self.config.busy_period
                due = self.path.timeout()  # the transport's pacer or timers, if sooner
                if due is not None and due - now < period:
                    period = max(due - now, 0.0)
            elif watched:
                period = tox.iteration_interval()
            else:  # packets from a TCP relay arrive on sockets we do not watch
                period = min(tox.iteration_interval(), self.config.idle_period)
            if self.wake.wait(period, watched=not busy):
                self.wake.clear()

    def _deliver(self) -> None:
        """The peer's Link packets that came over the transport, to the Link."""
        if self.link.state == LinkState.ERROR:
            return
        try:
            self.path.deliver()
        except ProtocolError as exc:
            self._peer_broke(exc)

    def _log_tick(self, last: tuple[int, ...]) -> tuple[int, ...]:
        """One debug line a second while a friend connection exists: what toxcore accepted
        and refused, what arrived, and the Link's bytes in flight. Returns the totals."""
        link = self.link
        s = link.statistics()
        now = (self._n_accepted, self._n_refused, self._n_received, s.bytes_received,
               s.bytes_resent)
        if self.peer.link != "none" or now != last:
            d = [a - b for a, b in zip(now, last)]
            log.debug("tick t=%.3f link=%s state=%s accepted=%d refused=%d received=%d "
                      "rx_bytes=%d resent_bytes=%d in_flight=%d backlog=%d out=%d in=%d hold=%d",
                      time.monotonic(), self.peer.link, link.state.name, *d,
                      link.unacked_bytes - link.unsent_bytes, link.unsent_bytes,
                      len(self.outbound), len(self.inbound),
                      time.monotonic() < self._hold_data_until)
        return now

    def _bootstrap_again(self) -> None:
        """While there is no DHT connection, hand toxcore the nodes again now and then:
        toxcore forgets a bootstrap node or relay that did not answer (one that was down
        at our start, or a network that came up late)."""
        now = time.monotonic()
        if self._retry.overdue(now):
            log.warning("no connection to the Tox network after %.0f s; still retrying the "
                        "bootstrap nodes (check the network, or --bootstrap/--nodes)",
                        self._retry.warn_after)
        if not self._retry.due(now):
            return
        self._retry.tried(now)
        usable, _ = add_nodes(self.tox, self.config.bootstrap, self.config.tcp_relays)
        log.debug("bootstrap retry %d: %d nodes handed to toxcore; next in %.0f s",
                  self._retry.attempts, usable, self._retry.next_retry() - now)

    def _peer_io(self, link: Link) -> PeerIO | None:
        io = self.io
        if (io is None or io.link is not link) and self.peer.public_key is not None:
            if io is not None:
                self.streams.peer_gone()
            self.streams.peer_key = self.peer.public_key
            io = self.io = PeerIO(link, self.address[:32], self.peer.public_key,
                                  report=self._report, table=self.streams)
        return io

    def _report(self, code: str, message: str) -> None:
        self.notify({"event": "error", "code": code, "message": message})

    def _pump(self, link: Link, outbound: FrameQueue, inbound: FrameQueue) -> bool:
        """Move frames app->mux->link and link->mux->app, and packets link->toxcore.
        Returns whether anything moved."""
        moved = delivered = False
        before = outbound.taken
        io = self._peer_io(link)
        if io is not None:
            # Link -> mux at once (the mux's credit holds the peer back, per stream), and
            # the channel's whole frames -> app while the inbound queue has room.
            moved = io.take_link_frames()
            delivered = io.deliver(inbound, BLOB_FRAMES)
            moved |= delivered
        else:
            self.streams.service(None)  # opens fail: no peer yet
        online = self.friend is not None and self.peer.link != "none"
        # Acks wait until a loop turn brings no data (or ACK_EVERY bytes are due): every
        # packet, acks too, spends toxcore's rate budget.
        flush = not (delivered or self._received)
        # The mux fills the Link only a little ahead of toxcore (peerio.UNSENT_LOW), so
        # filling and sending take turns until either stops.
        for _ in range(PUMP_ROUNDS):
            filled = io is not None and io.fill(outbound)
            moved |= filled
            sent = self._send_packets(link, flush) if online else 0
            moved |= sent > 0
            if not (filled and sent):
                break
        if io is not None:
            self._queued = io.queued
        if delivered or outbound.taken != before:  # room for the app's reader
            self.notify(None)
        return moved

    def _send_packets(self, link: Link, flush: bool) -> int:
        """Link -> toxcore (lossless until SENDQ, or into the transport: self.path), until
        nothing is due. Returns the packets accepted (or bytes the transport took: > 0)."""
        data = not self._hold_data_until or time.monotonic() >= self._hold_data_until
        unsent = link.unsent_bytes
        accepted, refused = self.path.send(self.tox, self.friend, time.monotonic(),
                                           flush=flush, data=data)
        now = time.monotonic()
        if refused:
            self._crawl.refused(now)
            self._n_refused += 1
        if accepted:
            self._n_accepted += accepted
            self._crawl.accepted(now, accepted)
        took = link.unsent_bytes < unsent
        if accepted or took:
            if self.io is not None:
                self._queued = self.io.queued
            self._rtt.sent(self._queued - link.unsent_bytes, now)
        return accepted or int(took)

    # -- status (toxbridge.control.snapshot) -----------------------------------------------------

    def request_snapshot(self) -> None:
        """Any thread: publish a fresh snapshot on the next loop turn."""
        self._snapshot_wanted.set()
        self.wake.set()

    def _publish(self, now: float) -> None:
        peers = []
        if self.peer.public_key is not None:
            link, s = self.link, self.link.statistics()
            rate_sent, rate_received = self._rates.sample(now, s.bytes_sent, s.bytes_received)
            rtt = self._rtt
            queues = {
                "outbound_frames": len(self.outbound), "outbound_max": self.outbound.space() + len(self.outbound),
                "inbound_runs": len(self.inbound), "inbound_max": self.inbound.space() + len(self.inbound),
                "link_in_flight_bytes": link.unacked_bytes - link.unsent_bytes,
                "link_backlog_bytes": link.unsent_bytes,
                "link_received_bytes": link.buffered_bytes,
            }
            io = self.io if self.io is not None and self.io.link is link else None
            frames_sent, frames_received = s.frames_sent, s.frames_received
            if io is not None:  # the Link's frames are the mux's: count the app's
                frames_sent, frames_received = io.frames_sent, io.frames_received
                queues.update(io.statistics())
                queues["link_received_bytes"] += queues["channel_buffered_bytes"]
            peers.append(PeerSnapshot(
                public_key=self.peer.public_key.hex().upper(), online=self.peer.online,
                link=self.peer.link, state=link.state.value,
                rtt_ms=None if rtt.srtt is None else round(rtt.srtt * 1000, 2),
                rtt_min_ms=None if rtt.min is None else round(rtt.min * 1000, 2),
                bytes_sent=s.bytes_sent, bytes_received=s.bytes_received,
                bytes_resent=s.bytes_resent, rate_sent=round(rate_sent, 1),
                rate_received=round(rate_received, 1), frames_sent=frames_sent,
                frames_received=frames_received,
                reconnects=max(0, self.peer.connections - 1), peer_restarts=s.peer_restarts,
                queues=queues, transport=self._path_status()))
        self._snapshot_seq += 1
        self.snapshot = NodeSnapshot(
            seq=self._snapshot_seq, time=time.time(), uptime_s=round(now - self._started_at, 1),
            tox_id=self.address.hex().upper(), mode=self.config.mode,
            dht=self.tox.connection_status.name, peers=tuple(peers))

    def _path_status(self) -> dict:
        p = self.path.statistics()
        return {"active": self.path.active, "lossy_sent_data": p.lossy_sent[200],
                "lossy_sent_ack": p.lossy_sent[201], "lossy_received_data": p.lossy_received[200],
                "lossy_received_ack": p.lossy_received[201], "lossy_refused": p.lossy_refused,
                "stale_dropped": p.stale_dropped, "epochs": p.epochs,
                "in_flight_bytes": p.send_in_flight, "cwnd_bytes": p.send_cwnd,
                "srtt_ms": None if p.send_srtt_s is None else round(p.send_srtt_s * 1000, 2),
                "packets_lost": p.send_lost}

    def statistics(self) -> dict:
        s = self.link.statistics()
        return {f: getattr(s, f) for f in s.__dataclass_fields__}
