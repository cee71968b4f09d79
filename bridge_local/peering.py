"""The bridge-to-bridge session protocol (sans-IO): what passes between this bridge and
each peer bridge, over the lanes of :mod:`bridge_local.lanes`.

:class:`Peering` is a part of :class:`~bridge_local.core.BridgeCore` (a base class of it,
over its state). A session starts with a hello each way (our users, those we relay, the
users we know) and lives on pings; a peer bridge silent for ``peer_timeout`` is gone.
Commands from the peers: acks, user on / off, transfer messages, and chat messages, which
are queued and handled together (:meth:`Peering._settle`: one query finds the resent ones,
and their history rows go in with the batch's commit); a message for a user behind
another peer is stored and relayed (a hub), never back where it came from. Routes are
:mod:`bridge_local.routing`'s; what goes to a peer, in order, is
:class:`~bridge_local.peerout.PeerSender`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toxbridge.errors import RemoteProtocolError
from toxbridge.fragment import FragmentError

from . import wire
from .protocol import ChatMessage, ResultCode, User, make_token, status_event
from .routing import announced, best_users, nearest, reachable, relayed_for
from .sessions import CHAT, MAX_HOPS, Session
from .store import OutgoingEntry, StoreError

if TYPE_CHECKING:
    from .fileservice import FileService
    from .store import Store

__all__ = ["INCOMING_MAX", "LEGACY_PEER", "Peering"]

INCOMING_MAX = 1024  # chat messages from the peer queued before they are handled
LEGACY_PEER = "legacy_peer"  # meta: the peer that took over the one-peer era's files


class Peering:
    """Sessions with the peer bridges: hellos, their commands, relaying, timers."""

    # BridgeCore's state, as used here.
    store: Store
    files: FileService | None
    limits: Any
    public_key: bytes
    session: bytes
    stats: dict[str, int]
    daemon_up: bool
    _sessions: dict[bytes, Session]
    _by_name: dict[str, Session]
    _by_token: dict[str, list[int]]
    _notices: Any  # deque[str]
    _legacy: bool
    _outbox_count: int
    _incoming_count: int
    _frames_need: int
    _now: float

    @property
    def peer_up(self) -> bool:
        """A session with a peer bridge is up."""
        return any(s.peer_up for s in self._sessions.values())

    @property
    def peer_users(self) -> dict[str, User]:
        """Every user reachable through a peer bridge (the best route's record)."""
        return best_users(self._sessions.values())

    def peer_session(self, key: bytes) -> Session | None:
        """The session with the peer bridge whose daemon has the public key ``key``."""
        return self._sessions.get(key)

    # ------------------------------------------------------------------ every session

    def _data(self, s: Session, lane: int, payload: bytes, now: float) -> None:
        self._now = now
        s.last_rx = now
        try:
            message = s.reassembler(lane).receive_frame(payload, now)
            if message is None:
                return
            command = wire.decode(message.data)
        except RemoteProtocolError as exc:
            self.stats["peer_errors"] += 1
            if isinstance(exc, FragmentError):  # a fragment without its start, ...
                self.stats["bad_fragments"] += 1
            self._notices.append(f"from the peer bridge{_label(s)}: {exc}")
            return
        if isinstance(command, wire.Msg):
            s.incoming.append(command)
            self._incoming_count += 1
            if self._incoming_count >= INCOMING_MAX:
                self._settle()
            return
        self._settle()  # what follows a message must see it (a bye, a user going off, ...)
        self._handle_peer(s, command, now)

    def tick(self, now: float) -> None:
        """Timers: heartbeats, hello retries, peer timeout, expiry of partial messages."""
        self._settle()
        self._now = now
        if self.files is not None:
            self.files.tick(now)
            self._files_flush()
        for s in list(self._sessions.values()):
            s.expire(now)
            if not s.link_up or (not s.split and not self.daemon_up):
                continue
            if s.peer_up:
                if now - s.last_rx > self.limits.peer_timeout:
                    self._notices.append(f"the peer bridge{_label(s)} went silent")
                    self._peer_down(s)
                elif now - s.last_tx >= self.limits.ping_interval:
                    self._control_add(s, wire.encode_ping())
                    s.last_tx = now
            elif now - s.last_hello >= self.limits.hello_retry:
                self._send_hello(s, reply=False, now=now)

    def shutdown(self) -> None:
        """Tell the peer bridges we are leaving (call, then send the frames, then close)."""
        self._settle()
        for s in self._sessions.values():
            if (self.daemon_up if not s.split else s.link_up):
                self._control_add(s, wire.encode_bye())
            s.peer_up = False

    def _may_send(self, s: Session) -> bool:
        return s.link_up and (s.split or self.daemon_up)

    def _send_hello(self, s: Session, reply: bool, now: float) -> None:
        s.last_hello = now
        if not reply and not s.split:
            # The peer starts its reassembly afresh at a request: whatever is half-sent
            # would reach it as orphan fragments, and a chat message caught half-way would
            # wait for the session after. Start clean: chat is resent from the outbox,
            # unsent acks are answered by the peer's resend, transfers resync, and the
            # hello itself carries the users. (Over streams, only a new stream does.)
            s.out.new_channel()
        local = self._local_users()
        relayed = relayed_for(self._sessions.values(), s, self._by_token)
        s.told = {u.token: u.hops for u in relayed}
        known = self.store.known_users("local", wire.MAX_KNOWN)
        relay = [(t, n, b, h + 1) for t, n, b, v, h in self.store.known_routes(wire.MAX_KNOWN)
                 if v and v != s.name and b != s.bridge and h + 1 <= MAX_HOPS]
        self._control_add(s, wire.encode_hello(reply, self.session, self.public_key,
                                               local + relayed, known, relay))

    def _control_add(self, s: Session, packed: bytes) -> None:
        if s.out.control_full():
            # Fell far behind: what is queued is replaced by a complete state (a hello).
            s.out.clear_control()
            self._notices.append("control queue overflow: resynchronising with a hello")
            self._send_hello(s, reply=False, now=self._now)
        s.out.add_control(packed)
        self._frames_need = self.store.writes

    def _handle_peer(self, s: Session, command: wire.PeerCommand, now: float) -> None:
        if isinstance(command, wire.Ack):
            self.store.delete_peer(list(command.ids))
            self._outbox_count = max(0, self._outbox_count - len(command.ids))
        elif isinstance(command, wire.Ping):
            # Ours too, if it is half due: the session's two pings then travel together
            # (the transport's acks and the Link's cover both, and a hub's tox thread
            # wakes for one exchange per peer and interval instead of two).
            if s.peer_up and now - s.last_tx >= self.limits.ping_interval / 2:
                self._control_add(s, wire.encode_ping())
                s.last_tx = now
        elif isinstance(command, wire.Xfer):
            if self.files is not None and s.peer_up:
                self.files.peer_message(command.to_receiver, command.message, now, s.name)
                self._files_flush()
        elif isinstance(command, wire.Hello):
            self._receive_hello(s, command, now)
        elif isinstance(command, wire.Bye):
            if s.peer_up:
                self._peer_down(s)
        elif not s.peer_up:
            return  # user changes outside a session: the next hello has the state
        elif isinstance(command, wire.UserOn):
            user = self._as_peer_user(s, command.user)
            self.store.remember_user(user.token, user.name, "peer", now, user.bridge, s.name,
                                     user.hops)
            if user.token not in s.users and len(s.users) >= wire.MAX_USERS:
                self.stats["peer_errors"] += 1
                self._notices.append(f"from the peer bridge: more than {wire.MAX_USERS} "
                                     f"online users; {user.token} ignored")
                return
            self._route_add(s, user)
        elif isinstance(command, wire.UserOff):
            self._route_remove(s, command.token)

    def _as_peer_user(self, s: Session, user: User) -> User:
        bridge = user.bridge or s.bridge
        return User(user.token, user.name, user.ip, user.port, "peer", bridge, user.hops)

    def _settle(self) -> None:
        """Handle the queued chat messages from the peers: store the new ones (one query
        tells the resent ones apart), deliver or relay them, ack them all with the next
        frames."""
        if not self._incoming_count:
            return
        self._incoming_count = 0
        batches = [(s, s.incoming) for s in self._sessions.values() if s.incoming]
        for s, _ in batches:
            s.incoming = []
        store = self.store
        try:
            seen = store.existing_ids({m.id for _, batch in batches for m in batch})
        except StoreError as exc:  # none acked: the peer bridges send them again
            self._notices.append(f"could not store messages from the peer bridge: {exc}")
            return
        files = self.files
        for s, batch in batches:
            for command in batch:
                message = command.message
                if command.id in seen:
                    self.stats["duplicates"] += 1
                else:
                    seen.add(command.id)
                    record = store.add_new_message(command.id, message)
                    self.stats["received_peer"] += 1
                    if self._is_local(message.goaltoken):
                        self._deliver_local(command.id, message, record)
                        if message.fileid is not None and files is not None:
                            # after the 2003: its 5003 follows it (now if the file is here)
                            files.announce(message.fileid, message.goaltoken)
                            self._files_flush()
                    else:
                        self._relay(s, command.id, message, record)
                s.out.ack(command.id)
        self._frames_need = store.writes

    def _is_local(self, token: str) -> bool:
        return token in self._by_token or self.store.user_side(token) == "local"

    def _relay(self, came: Session, message_id: bytes, message: ChatMessage,
               record: dict[str, Any] | None = None) -> None:
        """A hub: a message for a user behind another peer goes on, stored in that peer's
        outbox (before the ack to the one it came from); never back where it came from."""
        nxt = self._route(message.goaltoken, exclude=came)
        if nxt is None:
            self._notices.append(f"no route to {message.goaltoken} for a message from "
                                 f"{_label(came).strip() or 'the peer bridge'}: dropped")
            return
        self.stats["relayed"] += 1
        self._queue_peer(nxt, message_id, message, record)

    def _queue_peer(self, s: Session, message_id: bytes, message: ChatMessage,
                    record: dict[str, Any] | None = None) -> None:
        pair = f"{message.srctoken} {message.goaltoken}"
        payload = wire.encode_msg(message_id, message, record)
        seq = self.store.add_peer(message_id, pair, payload, s.name)
        self._outbox_count += 1
        s.out.outbox_grew(OutgoingEntry(seq, message_id, pair, payload))
        self._frames_need = self.store.writes
        if message.fileid is not None and self.files is not None:
            self.files.file_message(message.fileid, self._now, s.name)
            self._files_flush()

    def _route(self, token: str, exclude: Session | None = None) -> Session | None:
        """The peer a message for ``token`` goes to: the up session with the fewest hubs
        to the user's bridge (a direct peer first), else the one it was last seen behind."""
        best = nearest(self._sessions.values(), token, exclude)
        if best is not None:
            return best
        route = self.store.user_route(token)
        if route is None or route[0] != "peer":
            return None
        s = self._by_name.get(route[2])
        if s is None and route[2]:
            try:
                s = self._stream_session(bytes.fromhex(route[2]))
            except ValueError:
                return None
        return None if s is exclude else s

    def _route_add(self, s: Session, user: User) -> None:
        was = reachable(self._sessions.values(), user.token)
        s.users[user.token] = user
        if was is None and user.token not in self._by_token:
            self._broadcast(status_event(ResultCode.ONLINE, "peer", user.token, user.name,
                                         user.bridge))
        self._retell(user.token, s)

    def _route_remove(self, s: Session, token: str) -> None:
        gone = s.users.pop(token, None)
        if gone is None:
            return
        if reachable(self._sessions.values(), token) is None and token not in self._by_token:
            self._broadcast(status_event(ResultCode.OFFLINE, "peer", gone.token, gone.name,
                                         gone.bridge))
        self._retell(token, s)

    def _retell(self, token: str, changed: Session) -> None:
        """Bring what the other sessions were told of ``token`` up to date (relay)."""
        for x in self._sessions.values():
            if x is changed or not x.peer_up or not self._may_send(x):
                continue
            u = announced(self._sessions.values(), x, token, self._by_token)
            if u is not None and x.told.get(token) != u.hops:
                x.told[token] = u.hops
                self._control_add(x, wire.encode_user_on(u))
            elif u is None and token in x.told:
                del x.told[token]
                self._control_add(x, wire.encode_user_off(token))

    def _receive_hello(self, s: Session, hello: wire.Hello, now: float) -> None:
        if not hello.reply:
            if not s.split:
                # A new sender (or one that reconnected to its daemon): its earlier partial
                # messages will never complete.
                s.new_reassembly(CHAT)
            self._send_hello(s, reply=True, now=now)
        s.link_up = True if not s.split else s.link_up
        bridge = hello.key.hex().upper()
        if s.peer_up and hello.session != s.peer_session:
            self._peer_down(s)  # the peer bridge restarted without saying bye
        s.bridge = bridge
        if s.split and self._legacy:
            self._adopt_legacy(s, hello.key)
        for token, name in hello.known:
            self.store.remember_user(token, name, "peer", now, bridge, s.name, 0)
        for token, name, origin, hops in hello.relay:
            if not self._is_local(token):
                self.store.remember_user(token, name, "peer", now, origin, s.name, hops)
        users = {}
        for u in hello.users:
            u = self._as_peer_user(s, u)
            if u.token in self._by_token:
                continue  # our own, told back: never a route
            users[u.token] = u
            self.store.remember_user(u.token, u.name, "peer", now, u.bridge, s.name, u.hops)
        # Resend what is not acknowledged when a session starts: at a request (the peer
        # (re)connected to its daemon) or at the first hello after we were down.
        resend = not hello.reply or not s.peer_up
        if not s.peer_up:
            s.peer_up = True
            s.peer_session = hello.session
            self._broadcast(status_event(ResultCode.ONLINE, "peer", bridge=s.bridge))
            for u in users.values():
                self._route_add(s, u)
            # The users behind it, to our other peers; and theirs to it.
            relayed = relayed_for(self._sessions.values(), s, self._by_token)
            for u in relayed:
                if s.told.get(u.token) != u.hops:
                    s.told[u.token] = u.hops
                    self._control_add(s, wire.encode_user_on(u))
        else:  # same session: bring the user list up to date
            for token in list(s.users):
                if token not in users:
                    self._route_remove(s, token)
            for token, u in users.items():
                if s.users.get(token) != u:
                    self._route_add(s, u)
        if resend:
            s.out.restart()  # duplicates are dropped by the receiver
            if self.files is not None:  # the lane is new: transfers resync
                s.out.clear_xfer()
                if s.files_up:
                    self.files.set_peer(True, now, s.name)
                self._files_flush()

    def _adopt_legacy(self, s: Session, key: bytes) -> None:
        """An upgrade from the one-peer channel: what it left for its one peer (outbox rows
        and users without a peer bridge) is the peer's whose key their tokens derive from;
        that peer's are its now, and so are the file entries of that era (the first such
        peer is the era's one peer: recorded in the store's meta)."""
        targets = self.store.legacy_targets()
        mine = [t for t, name in targets if make_token(key, name) == t]
        if mine:
            moved = self.store.adopt_legacy(mine, s.name, s.bridge)
            if self.store.get_meta(LEGACY_PEER) is None:
                self.store.set_meta(LEGACY_PEER, s.name.encode())
                if self.files is not None:
                    self.files.adopt_legacy(s.name)
            self._notices.append(f"the one-peer era's {moved} queued messages and "
                                 f"{len(mine)} users are the peer bridge{_label(s)}'s")
        self._legacy = len(mine) < len(targets)

    def _peer_down(self, s: Session) -> None:
        if self.files is not None:
            self.files.set_peer(False, self._now, s.name)
            s.out.clear_xfer()
        s.peer_up = False
        self._broadcast(status_event(ResultCode.OFFLINE, "peer", bridge=s.bridge))
        for token in list(s.users):
            self._route_remove(s, token)
        s.users = {}
        s.told = {}
        s.out.restart()


def _label(s: Session) -> str:
    return f" {s.name[:16]}" if s.name else ""
