"""The tox thread: it alone owns the ``Tox`` and its peers (``toxbridge.peerslot``: each
with its Link, stream mux and local streams), and meets the trio side through two
bounded queues (the v1 channel, with the first peer), the peers' stream tables
(``toxbridge.peertables``) and calls it runs between turns (``submit``).

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
from .cadence import Cadence, Survey
from .config import Config, request_allowed, request_message
from .control.snapshot import NodeSnapshot
from .errors import ConfigError, PeerError
from .linkpath import share_relay
from .network import loopback_options
from .pathtrace import PathTrace
from .peerslot import PeerSlot, PeerState
from .peertables import PeerTables
from .tox import (UPKEEP_PACKET_KINDS, Connection, FriendAddError, Tox, ToxError, ToxOptions,
                  load_profile, save_profile, udp_socket_fd)
from .wakeup import Wakeup

__all__ = ["FrameQueue", "ToxLoop", "PeerState", "Pending"]

log = logging.getLogger(__name__)

BLOB_FRAMES = 64  # frames per item of the inbound queue
_INF = float("inf")
SNAPSHOT_PERIOD = 0.5  # seconds between status snapshots (see toxbridge.control.snapshot)
# Seconds between the looks at each slot's stall and crawl watches: they judge over 12-20 s,
# so every loop turn (up to ~1,000 a second per slot) would be work for nothing.
WATCH_PERIOD = 0.25


class FrameQueue:
    """A bounded FIFO of frames shared by two threads (never blocks; callers wait)."""

    def __init__(self, max_frames: int) -> None:
        self._items: deque[bytes] = deque()
        self._max = max_frames
        self._lock = threading.Lock()
        self.taken = 0  # frames taken out so far: a change means room was made

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


class Pending:
    """A call the trio side handed to the tox thread (``ToxLoop.submit``)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None


class ToxLoop(threading.Thread):
    """The tox thread. ``notify(event_dict | None)`` is called from this thread whenever
    there is something for the trio side (an event, or frames in ``inbound``/room in
    ``outbound``); it must be cheap and thread-safe (``trio_token.run_sync_soon``).

    It holds one ``PeerSlot`` per peer (at most ``config.max_peers``), in order: the
    first is the v1 channel's peer (the first ``--peer``, else the first accepted)."""

    def __init__(self, config: Config, notify: Callable[[dict | None], None]) -> None:
        super().__init__(name="tox", daemon=True)
        self.config = config
        self.notify = notify
        self.outbound = FrameQueue(config.queue_frames)  # app -> the first peer
        self.inbound = FrameQueue(max(4, config.queue_frames // BLOB_FRAMES))  # ... -> app
        self.tables = PeerTables(dict(config.names))  # streams.sock's streams, per peer
        self.slots: dict[bytes, PeerSlot] = {}  # public key -> slot (tox thread only)
        self._by_friend: dict[int, PeerSlot] = {}
        self.wake = Wakeup()  # set by trio when it queued outbound frames
        self.started_ok = threading.Event()
        self.failure: BaseException | None = None
        self._stopping = threading.Event()
        self._calls: deque[Pending] = deque(maxlen=64)
        self._calls_lock = threading.Lock()
        self._retry = RetrySchedule(time.monotonic(), config.bootstrap_retry, config.bootstrap_retry_max)
        self._strangers: deque[bytes] = deque(maxlen=config.max_pending_requests)
        self.tox = self._open_tox()
        self.address = self.tox.address
        # Sleep in poll() on toxcore's UDP socket: an arriving packet ends the wait at once,
        # so the idle loop can wait as long as toxcore asks (50 ms) at no cost in latency.
        # Idle, it sleeps through toxcore's own upkeep packets (DHT, onion: ~29 a second
        # on a private network), which toxcore takes at its next turn, as raw toxcore does.
        self._udp_fd = self._find_udp_fd()
        skips = self._udp_fd is not None and self.wake.watch_datagrams(
            self._udp_fd, UPKEEP_PACKET_KINDS)
        log.debug("toxcore's UDP socket: %s", "not found: a timer paces the idle loop"
                  if self._udp_fd is None else f"fd {self._udp_fd}, watched"
                  + ("" if skips else " (every datagram wakes the loop: no SO_PEEK_OFF)"))
        self._cadence = Cadence(socket_watched=self._udp_fd is not None,
                                busy_period=config.busy_period, idle_period=config.idle_period)
        self._received_n = 0  # packets from peers during this loop turn
        self._relayed = False  # ... and whether one came from or went to a relayed peer
        self._any_relayed = False  # a peer is on a TCP relay: its paths share RELAY_FLIGHT
        self._turn = 0  # which slot goes first this turn (fairness)
        # Waits since the last -vv tick line: busy, idle ended by toxcore's interval, by a
        # transport timer, by an arriving datagram, and waits ended by the trio side's flag.
        self._waits = [0] * 5
        # Whether the next turn's first pump can have work: the last wait was busy or ended
        # by the trio side's flag. Else (an idle wake by a packet or toxcore's interval)
        # only a slot that is due (PeerSlot.due) makes it pump before iterating.
        self._pump_wanted = True
        self._stirred: set[PeerSlot] = set()  # slots whose state a callback changed this turn
        # The earliest transport timer of any slot, as the last wait saw it (nothing of the
        # tox thread runs between): before it, only a slot whose table or hold says so can
        # be due, so an idle turn asks each slot's transports only once, in _wait.
        self._next_timer = 0.0
        # Status (toxbridge.control.snapshot): published by this thread, read by trio as a whole.
        self.snapshot: NodeSnapshot | None = None
        self._snapshot_wanted = threading.Event()
        self._snapshot_seq = 0
        self._started_at = time.monotonic()

    # -- set-up -----------------------------------------------------------------------

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
        self.tox = tox
        dialed = {tox_id[:32] for tox_id in c.peers}
        kept = []
        for friend in tox.friend_list():
            key = tox.friend_public_key(friend)
            # A listener keeps the peers it accepted before, if still allowed (and up to
            # the cap); a dialed peer is asked afresh, as the notes say.
            if (c.mode == "listen" and key not in dialed and len(kept) + len(dialed) < c.max_peers
                    and (c.accept_anyone or not c.allow or key in c.allow)):
                kept.append((key, friend))
            else:
                tox.friend_delete(friend)
        for tox_id in c.peers:
            try:
                friend = tox.friend_add(tox_id, request_message(c.secret))
            except FriendAddError:
                tox.close()
                raise
            self._add_slot(tox_id[:32], friend, dialed=True)
        for key, friend in kept:
            self._add_slot(key, friend, dialed=False)
        save_profile(c.profile, tox.savedata(), c.passphrase)
        return tox

    def _add_slot(self, key: bytes, friend: int, *, dialed: bool) -> PeerSlot:
        table = self.tables.add(key)
        slot = PeerSlot(self.config, self.tox.address[:32], key, friend, table, self._emit,
                        dialed=dialed, name=self.tables.name_of(key))
        self.slots[key] = slot
        self._by_friend[friend] = slot
        return slot

    def _drop_slot(self, slot: PeerSlot, code: str, message: str) -> None:
        """The peer is gone from this node: only its Link, mux and streams go with it."""
        was_first = self.first is slot
        slot.link_lost()
        self.slots.pop(slot.key, None)
        self._by_friend.pop(slot.friend, None)
        self.tables.remove(slot.key)
        slot.table.close(code, message)
        self._any_relayed = any(s.path.relayed for s in self.slots.values())
        if was_first and self.first is not None:
            self.notify(self.first.peer_event())  # the v1 channel moves to the next peer

    @property
    def first(self) -> PeerSlot | None:
        return next(iter(self.slots.values()), None)

    def _emit(self, slot: PeerSlot, event: dict) -> None:
        """A slot's event: the v1 app hears only its own peer's ``peer`` and ``link``;
        the peers' watchers (streams.sock) hear every peer's ``peer``."""
        if event.get("event") == "peer":
            self.tables.set_online(slot.key, event.get("code") == 301)
        if event.get("event") in ("peer", "link") and slot is not self.first:
            self.notify(None)
            return
        self.notify(event)

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
        if key in self.slots:
            self.notify({"event": "friend", "code": 103, "peer": key.hex().upper()})
            return
        if len(self.slots) >= self.config.max_peers:
            log.warning("refused a friend request from the allowed peer %s: this node has "
                        "its maximum of %d peers (--max-peers)", key.hex().upper(),
                        self.config.max_peers)
            return
        try:
            friend = self.tox.friend_add_norequest(key)
        except FriendAddError as exc:
            log.error("could not add the peer %s: %s", key.hex().upper(), exc.error)
            self.notify({"event": "friend", "code": 102, "peer": key.hex().upper(),
                         "message": exc.error})
            return
        self._add_slot(key, friend, dialed=False)
        save_profile(self.config.profile, self.tox.savedata(), self.config.passphrase)
        log.info("accepted the peer %s", key.hex().upper())
        self.notify({"event": "friend", "code": 101, "peer": key.hex().upper()})

    def _on_friend_connection(self, friend: int, status: Connection) -> None:
        slot = self._by_friend.get(friend)
        if slot is not None:
            self._stirred.add(slot)  # a connection up queued a HELLO: pump after iterate
            slot.on_connection(status)
            self._any_relayed = any(s.path.relayed for s in self.slots.values())

    def _reset_connection(self, slot: PeerSlot, reason: str) -> None:
        """A fresh friend connection: toxcore's queues and rate state go with the old one;
        the Link resumes from what the peer received (the apps see 302, then 301)."""
        if reason == "no_progress":
            log.warning("%s: the peer acknowledged nothing for %.0f s with data in flight, "
                        "while toxcore kept the connection up; starting a fresh connection",
                        slot.label, slot.stall.waited)
            message = (f"nothing acknowledged for {slot.stall.seconds:.0f} s while toxcore "
                       "said the connection was up: reconnecting")
        else:
            log.warning("%s: toxcore's send rate is stuck at its floor (%.0f s under %.0f "
                        "packets/s while it refused more); starting a fresh connection",
                        slot.label, slot.crawl.seconds, slot.crawl.rate)
            message = "toxcore's send rate stuck at 4 packets/s: reconnecting"
        slot.emit({"event": "reset", "reason": reason, "peer": slot.hex, "message": message})
        self.tox.friend_delete(slot.friend)
        self._by_friend.pop(slot.friend, None)
        slot.link_lost()
        slot.crawl.reset()
        try:
            slot.friend = self.tox.friend_add_norequest(slot.key)
        except FriendAddError as exc:  # not expected right after the delete
            log.error("could not add the peer %s again: %s", slot.hex, exc.error)
            self._drop_slot(slot, "peer_removed", f"could not add the peer again: {exc.error}")
            return
        self._by_friend[slot.friend] = slot
        save_profile(self.config.profile, self.tox.savedata(), self.config.passphrase)

    def _on_packet(self, friend: int, data: bytes) -> None:
        slot = self._by_friend.get(friend)
        if slot is None:
            return
        slot.received = True
        self._received_n += 1
        self._relayed |= slot.state.link == "TCP"
        slot.on_packet(data, time.monotonic())

    def _on_lossy(self, friend: int, data: bytes) -> None:
        slot = self._by_friend.get(friend)
        if slot is None:
            return
        slot.received = True
        self._received_n += 1
        self._relayed |= slot.state.link == "TCP"
        slot.on_lossy(data, time.monotonic())

    def peer_event(self) -> dict:
        """The first peer's 301/302 (a node without peers yet: 302 without a key)."""
        first = self.first
        if first is None:
            return {"event": "peer", "code": 302, "status": "offline", "peer": None}
        return first.peer_event()

    # -- runtime changes (from the control socket, via submit) ----------------------------

    def submit(self, fn: Callable[[], object]) -> Pending:
        """Any thread: run ``fn`` on the tox thread at its next turn."""
        call = Pending(fn)
        with self._calls_lock:
            self._calls.append(call)
        self.wake.set()
        return call

    def _run_calls(self) -> None:
        with self._calls_lock:
            calls, self._calls = list(self._calls), deque(maxlen=64)
        for call in calls:
            try:
                call.result = call.fn()
            except Exception as exc:  # reported to the caller
                call.error = exc
            call.done.set()

    def add_peer(self, tox_id: bytes, name: str | None = None) -> dict:
        """Dial a peer (tox thread). Raises PeerError."""
        key = tox_id[:32]
        if key == self.address[:32]:
            raise PeerError("that is this node's own ID")
        if key in self.slots:
            raise PeerError(f"{key.hex().upper()} is already a peer")
        if len(self.slots) >= self.config.max_peers:
            raise PeerError(f"this node has its maximum of {self.config.max_peers} peers (--max-peers)")
        try:
            friend = self.tox.friend_add(tox_id, request_message(self.config.secret))
        except FriendAddError as exc:
            raise PeerError(f"toxcore refused the friend request: {exc.error}") from None
        if name:
            self.tables.set_name(key, name)
        slot = self._add_slot(key, friend, dialed=True)
        save_profile(self.config.profile, self.tox.savedata(), self.config.passphrase)
        log.info("dialing the peer %s", slot.hex)
        self.notify({"event": "friend", "code": 104, "peer": slot.hex})
        return {"peer": slot.hex, "name": slot.name}

    def remove_peer(self, key: bytes) -> dict:
        """Delete the friend; its streams reset with PEER_REMOVED (tox thread)."""
        slot = self.slots.get(key)
        if slot is None:
            raise PeerError(f"{key.hex().upper()} is not a peer of this node")
        self.tox.friend_delete(slot.friend)
        streams = len(slot.table)
        self._drop_slot(slot, "peer_removed", "the peer was removed from this node")
        save_profile(self.config.profile, self.tox.savedata(), self.config.passphrase)
        log.info("removed the peer %s (%d streams reset)", slot.hex, streams)
        return {"peer": slot.hex, "streams_reset": streams}

    # -- the loop ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    def run(self) -> None:
        try:
            self.started_ok.set()
            for slot in self.slots.values():
                if slot.dialed:
                    self.notify({"event": "friend", "code": 104, "peer": slot.hex})
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
        trace = None if self.config.trace_path is None else PathTrace(self.config.trace_path)
        try:
            self._loop(trace)
        finally:
            if trace is not None:
                trace.close()

    def _loop(self, trace: PathTrace | None) -> None:
        tox, outbound = self.tox, self.outbound
        next_snapshot = next_tick = next_watch = 0.0
        while not self._stopping.is_set():
            turn_start = time.monotonic()
            if log.isEnabledFor(logging.DEBUG) and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + 1
                self._log_tick()
            self._received_n = 0
            self._relayed = False
            self._stirred.clear()
            whole = self._pump_wanted or bool(self._calls)
            if self._calls:
                self._run_calls()
            self._bootstrap_again()
            moved, due = False, []
            if whole:
                moved = self._pump_all()
            else:  # an idle wake (a packet, a timer): only the slots that are due
                due = self._due(turn_start)
                if due:
                    moved = self._pump_all(due)
            tox.iterate()
            now = time.monotonic()
            # Only the slots that heard something: a peer's packets, or a connection change.
            heard = [s for s in list(self.slots.values()) if s.received or s in self._stirred]
            for slot in heard:
                slot.deliver()
                if slot.received:
                    slot.acked(now)
            # Again only if this turn brought or sent something: on an idle node the pumps
            # are most of our CPU, and what the trio side adds meanwhile sets the wake flag.
            # After an idle wake, only the slots that were due or heard: with many peers,
            # one peer's packet had pumped every slot, twice (each peer's exchanges cost
            # all peers' pumps: bench mesh --idle-only, docs/benchmarks.md).
            if whole and (moved or heard):
                moved |= self._pump_all()
            elif heard or moved:
                again = heard + [s for s in due if s not in heard] if moved else heard
                moved |= self._pump_all(again)
            for slot in heard:
                slot.received = False
            now = time.monotonic()
            if now >= next_snapshot or self._snapshot_wanted.is_set():
                self._snapshot_wanted.clear()
                self._publish(now)
                next_snapshot = now + SNAPSHOT_PERIOD
            if now >= next_watch:
                next_watch = now + WATCH_PERIOD
                for slot, why in [(s, w) for s in self.slots.values() if (w := s.stuck(now))]:
                    self._reset_connection(slot, why)
            self._cadence.traffic(now, self._received_n, self._relayed, moved)
            if trace is not None:
                trace.turn(now - turn_start)
                if trace.due(now):
                    trace.sample(now, list(self.slots.values()), len(outbound))
            self._wait(now, outbound)

    def _due(self, now: float) -> list[PeerSlot]:
        """The slots due now (``PeerSlot.due``). Before the earliest transport timer the
        last wait saw, only a table the trio side touched or a hold on data can make one
        due: the transports are not asked again."""
        slots = self.slots.values()
        if now < self._next_timer:
            return [s for s in slots if (s.table.dirty or s.hold_data_until) and s.due(now)]
        return [s for s in slots if s.due(now)]

    def _survey(self, outbound_len: int) -> Survey:
        """One pass over the slots for _wait (``toxbridge.cadence.Survey``)."""
        first = self.first
        sending = backlogged = relay = False
        acks_only, timer = True, _INF
        for s in self.slots.values():
            n = outbound_len if s is first else 0
            link = s.state.link
            if link == "TCP":
                relay = True
            if not sending and s.sending(n):
                sending = True
            if not backlogged and s.backlogged(n):
                backlogged = True
            if acks_only and link != "none" and not (s.path.active and not s.link.owes_ack):
                acks_only = False
            t = s.timer()
            if t is not None and t < timer:
                timer = t
        return Survey(relay, sending, backlogged, acks_only, timer)

    def _wait(self, now: float, outbound: FrameQueue) -> None:
        survey = self._survey(len(outbound))
        self._next_timer = survey.timer
        interval = self.tox.iteration_interval()
        w = self._cadence.decide(now, survey, self._received_n, interval)
        self._pump_wanted = w.busy
        if self.wake.wait(w.period, watched=w.watched, skip=w.skip):
            self.wake.clear()
            self._pump_wanted = True
            self._waits[4] += 1
        else:
            short = time.monotonic() - now < w.period
            if w.early and short:
                self._cadence.woke_early()  # an arrival ended it
            self._waits[0 if w.busy else 3 if short else 2 if w.period < interval else 1] += 1

    def _pump_all(self, only: list[PeerSlot] | None = None) -> bool:
        """Every slot (or those in ``only``) once, starting one further each turn: none
        waits behind the others for good (each slot's pump is bounded: PUMP_ROUNDS)."""
        slots = list(self.slots.values()) if only is None else only
        if not slots:
            return False
        first = self.first
        if only is None:
            self._turn = (self._turn + 1) % len(slots)
        start = self._turn % len(slots)
        moved = delivered = False
        # Whether frames were taken, not whether the queue got shorter: the trio side
        # refills it meanwhile, and a queue refilled to where it was (or emptied again from
        # empty) within one pump still made room that the app's reader may wait for.
        taken = self.outbound.taken
        order = slots[start:] + slots[:start]
        if self._any_relayed:  # before any slot sends
            share_relay(s.path for s in self.slots.values())
        # What arrived goes up to the apps for every slot before any slot sends, and the
        # slots with nothing backlogged (a chat line, acks: cheap) send before those that
        # move bulk (the turn goes on among them): a hub's chat line waited behind the
        # pumps of the peers it sends a file to (each up to PUMP_ROUNDS), on its way up
        # to the trio side that relays it and on its way out to the next peer.
        order.sort(key=lambda s: s.backlogged(len(self.outbound) if s is first else 0))
        got = []
        for slot in order:
            m, d = slot.pump_in(self.inbound if slot is first else None, BLOB_FRAMES)
            moved |= m
            delivered |= d
            got.append((m, d))
        for slot, (m_in, d) in zip(order, got):
            m = slot.pump_out(self.tox, self.outbound if slot is first else _NO_FRAMES,
                              slot.received, d)
            moved |= m
            if (m or m_in) and slot.state.link == "TCP":
                self._relayed = True  # the relay tail (toxbridge.cadence)
        if delivered or self.outbound.taken != taken:
            self.notify(None)
        return moved

    def _log_tick(self) -> None:
        """One debug line a second per peer with a friend connection (or news since the
        last): what toxcore accepted and refused, what arrived, the Link's bytes in flight
        (bench/catchup.py reads it); and the loop's waits since the last: idle, busy (and
        each slot's reason to be: ``PeerSlot.sending_why``), ended by the trio side."""
        counts, self._waits = self._waits, [0] * 5
        why = {s.hex[:8]: w for s in self.slots.values()
               if (w := s.sending_why(len(self.outbound) if s is self.first else 0)) != "-"}
        log.debug("loop waits busy=%d idle=%d timer=%d arrival=%d flagged=%d burst_ago=%.1f "
                  "sending=%s", *counts, time.monotonic() - self._cadence.last_burst,
                  " ".join(f"{k}:{v}" for k, v in why.items()) or "-")
        for slot in self.slots.values():
            link, s = slot.link, slot.link.statistics()
            now = (slot.n_accepted, slot.n_refused, slot.n_received, s.bytes_received,
                   s.bytes_resent)
            last, slot.tick = slot.tick, now
            if slot.state.link == "none" and now == last:
                continue
            d = [a - b for a, b in zip(now, last)]
            log.debug("tick t=%.3f link=%s state=%s accepted=%d refused=%d received=%d "
                      "rx_bytes=%d resent_bytes=%d in_flight=%d backlog=%d out=%d in=%d hold=%d "
                      "peer=%s", time.monotonic(), slot.state.link, link.state.name, *d,
                      link.unacked_bytes - link.unsent_bytes, link.unsent_bytes,
                      len(self.outbound), len(self.inbound),
                      time.monotonic() < slot.hold_data_until, slot.hex[:8])

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

    # -- status (toxbridge.control.snapshot) -----------------------------------------------------

    def request_snapshot(self) -> None:
        """Any thread: publish a fresh snapshot on the next loop turn."""
        self._snapshot_wanted.set()
        self.wake.set()

    def _publish(self, now: float) -> None:
        first = self.first
        peers = tuple(slot.snapshot(now, self.outbound, self.inbound if slot is first else None)
                      for slot in self.slots.values())
        self._snapshot_seq += 1
        self.snapshot = NodeSnapshot(
            seq=self._snapshot_seq, time=time.time(), uptime_s=round(now - self._started_at, 1),
            tox_id=self.address.hex().upper(), mode=self.config.mode,
            dht=self.tox.connection_status.name, peers=peers)


_NO_FRAMES = FrameQueue(0)  # the channel's queue of a peer that is not the first: empty
