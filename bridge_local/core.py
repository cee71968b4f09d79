"""The bridge core (sans-IO): users, routing, delivery, the bridge-to-bridge session.

:class:`BridgeCore` is driven by a shell (``bridge_local.server``) and by tests, with no
sockets and no clock: every input carries ``now``.

Inputs
    clients: :meth:`client_connected`, :meth:`client_line`, :meth:`client_disconnected`;
    the daemon's channel: :meth:`daemon_connected`, :meth:`daemon_event`,
    :meth:`daemon_data`, :meth:`daemon_disconnected`; time: :meth:`tick`.
Outputs
    per client, replies and events (dicts) from :meth:`take_client_output`; the ids of the
    clients that have some in :meth:`take_dirty`, of the clients to disconnect (they fell too
    far behind) in :meth:`take_closing`; data frames for the daemon from :meth:`take_frames`;
    human-readable notices (peer protocol errors, ...) from :meth:`take_notices`.

Chat messages from the peer bridge are queued by :meth:`daemon_data` and handled together
at the next other input or output (or when 1024 are queued): one query finds the resent
ones, and their history rows go in with the batch's commit.

Both ``take_client_output(s)`` and ``take_frames`` commit the store first, so a ``2002``
promising durable delivery, or an ack to the peer bridge, never leaves before the data it
speaks of is on disk. Each output remembers the store's write count when it was made, and
the commit is skipped when an earlier one already covered it: one commit per batch of
requests read, shared by every client's replies and the frames.

Delivery rules
    * Every accepted message gets a 16-byte id and goes into the history.
    * For a user of this bridge it goes through the local outbox: handed, in order, to the
      user's first connection (its *primary* connection) while the user is online, kept
      otherwise; a row leaves the outbox when the shell takes it for writing.
    * For a user of the peer bridge it goes into the peer outbox, is sent while the
      bridge-to-bridge session is up, resent at every new session, and leaves the outbox
      when the peer bridge acks it (after storing it). The receiver drops duplicates by id.
    * What goes to the peer bridge, and in which order (control, file transfers, chat one
      message per (sender, target) pair at a time), is :class:`~bridge_local.peerout.PeerSender`'s.

Many peer bridges (docs/protocol.md §9.1a): a :class:`~bridge_local.sessions.Session` per
peer. The daemon's one-peer channel is one session (the ``daemon_*`` inputs and
:meth:`take_frames`); over streams each peer has two lanes each way (``peer_online``,
``lane_opened`` / ``lane_closed`` for ours, ``lane_accepted`` / ``lane_ended`` /
``lane_data`` for the peer's, :meth:`take_lane_frames`). A message goes to the session with
the fewest hubs to its user; one for a user of another bridge is stored and relayed.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from toxbridge.errors import RemoteProtocolError
from toxbridge.fragment import FragmentError

from . import wire
from .protocol import (
    ChatMessage,
    CommandError,
    CommandId,
    ErrorCode,
    FileCommand,
    History,
    LineTooLong,
    ListUsers,
    Login,
    ResultCode,
    SendMessage,
    User,
    authorize,
    decode_command,
    error_reply,
    history_reply,
    login_reply,
    make_token,
    message_event,
    send_reply,
    status_event,
    users_reply,
)
from .fileservice import FileService
from .sessions import BULK, CHANNEL, CHAT, MAX_HOPS, Session
from .store import OutgoingEntry, Store, StoreError

__all__ = ["BULK", "BridgeCore", "CHAT", "Limits"]

_ID_TIME = struct.Struct(">Q")
_U64 = (1 << 64) - 1
_INCOMING_MAX = 1024  # chat messages from the peer queued before they are handled
_LEGACY_PEER = "legacy_peer"  # meta: the peer that took over the one-peer era's files


@dataclass(frozen=True)
class Limits:
    """Every bound of the core, and its timers (seconds)."""

    client_queue: int = 10_000  # replies and events waiting for one client; over: closed
    refill: int = 500  # offline messages handed to a connection at a time
    outbox_max: int = 200_000  # messages waiting in both outboxes; over: 203
    inflight: int = 32  # chat messages in the fragmenter at once
    waiting: int = 256  # outbox entries held back behind their pair's previous message
    control_max: int = 4096  # control commands queued for the peer; over: resync by hello
    ping_interval: float = 5.0
    peer_timeout: float = 20.0  # a peer bridge silent this long (link up) is gone
    hello_retry: float = 5.0
    partial_timeout: float = 60.0  # abandoned partial messages from the peer


@dataclass
class _Client:
    id: int
    ip: str
    port: int
    user: User | None = None
    out: deque[tuple[dict[str, Any], int]] | None = None  # (reply, local outbox seq or 0)
    upto: int = 0  # highest local outbox seq handed to this connection
    backlog: bool = False  # rows beyond ``upto`` may wait in the store
    need: int = 0  # the store's write count when ``out`` last grew: a commit must cover it


class BridgeCore:
    def __init__(
        self, store: Store, public_key: bytes, now: float, limits: Limits = Limits(),
        files: FileService | None = None,
    ) -> None:
        if len(public_key) != 32:
            raise ValueError("a Tox public key is 32 bytes")
        self.store = store
        self.files = files  # None: file commands answer 9011
        self.public_key = public_key
        self._mine = public_key.hex().upper()  # this bridge, as 2001 and 301/302 name it
        self.limits = limits
        self.session = os.urandom(16)
        self._clients: dict[int, _Client] = {}
        self._next_cid = 1
        self._by_token: dict[str, list[int]] = {}  # connections of each local user, primary first
        self._last_time = 0.0
        self._dirty: set[int] = set()
        self._closing: set[int] = set()
        self._notices: deque[str] = deque(maxlen=256)
        self._outbox_count = store.outbox_count()
        # The one-peer channel era's rows wait for their peer over streams (_adopt_legacy).
        self._legacy = bool(store.legacy_targets())
        legacy_peer = store.get_meta(_LEGACY_PEER)
        if legacy_peer is not None and files is not None:
            files.adopt_legacy(legacy_peer.decode())
        self._frames_need = 0  # the store's write count when the frames last gained a promise
        self._incoming_count = 0  # chat from the peers, handled by _settle()
        # The daemon's one-peer channel, and the peer bridges (a session each).
        self.daemon_up = False
        self._sessions: dict[bytes, Session] = {}
        self._by_name: dict[str, Session] = {}
        self._now = now
        self.stats = {"sent_local": 0, "sent_peer": 0, "received_peer": 0, "duplicates": 0,
                      "peer_errors": 0, "bad_fragments": 0, "relayed": 0}

    @property
    def peer_up(self) -> bool:
        """A session with a peer bridge is up."""
        return any(s.peer_up for s in self._sessions.values())

    @property
    def peer_users(self) -> dict[str, User]:
        """Every user reachable through a peer bridge (the best route's record)."""
        out: dict[str, User] = {}
        for s in self._sessions.values():
            if s.peer_up:
                for token, u in s.users.items():
                    if token not in out or u.hops < out[token].hops:
                        out[token] = u
        return out

    def peer_session(self, key: bytes) -> Session | None:
        """The session with the peer bridge whose daemon has the public key ``key``."""
        return self._sessions.get(key)

    # ------------------------------------------------------------------ outputs

    def take_dirty(self) -> set[int]:
        self._settle()
        dirty, self._dirty = self._dirty, set()
        return dirty

    def take_closing(self) -> set[int]:
        self._settle()
        closing, self._closing = self._closing, set()
        return closing

    def take_notices(self) -> list[str]:
        self._settle()
        notices = list(self._notices)
        self._notices.clear()
        return notices

    def has_output(self, cid: int) -> bool:
        self._settle()
        c = self._clients.get(cid)
        return bool(c and c.out)

    def output_size(self, cid: int) -> int:
        self._settle()
        c = self._clients.get(cid)
        return len(c.out) if c and c.out is not None else 0

    def take_client_output(self, cid: int) -> list[dict[str, Any]]:
        """Replies and events for this client, oldest first; commits the store first."""
        return self.take_client_outputs([cid]).get(cid, [])

    def take_client_outputs(self, cids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """The replies and events of several clients, after one commit that covers them all
        (none if an earlier commit already did).

        The local outbox rows of the messages taken leave in that commit: taken for writing
        is delivered (a row still waiting to be written is never written)."""
        self._settle()
        taken: dict[int, list[tuple[dict[str, Any], int]]] = {}
        need = 0
        for cid in cids:
            c = self._clients.get(cid)
            if c is not None and c.out:
                taken[cid] = list(c.out)
                need = max(need, c.need)
        if not taken:
            return {}
        seqs = [seq for items in taken.values() for _, seq in items if seq]
        if seqs:
            self.store.delete_local(seqs)
        if need > self.store.committed:
            self.store.commit()
        self._outbox_count -= len(seqs)
        result = {}
        for cid, items in taken.items():
            c = self._clients[cid]
            c.out.clear()  # type: ignore[union-attr]
            self._refill(c)
            result[cid] = [obj for obj, _ in items]
        return result

    def take_frames(self, limit: int = 256) -> list[bytes]:
        """Data frames for the daemon (at most ``limit``); commits the store first."""
        self._settle()
        s = self._sessions.get(CHANNEL)
        if not self.daemon_up or s is None:
            return []
        if self._frames_need > self.store.committed:
            self.store.commit()
        frames = s.out.take_frames(limit, s.peer_up)
        if frames:
            s.last_tx = self._now
        return frames

    def has_frames(self) -> bool:
        """Frames wait for the channel, or for a lane (:meth:`lanes_with_frames`)."""
        self._settle()
        s = self._sessions.get(CHANNEL)
        if self.daemon_up and s is not None and s.out.has_frames(s.peer_up):
            return True
        return bool(self.lanes_with_frames())

    # ------------------------------------------------------------------ clients

    def client_connected(self, ip: str, port: int) -> int:
        cid = self._next_cid
        self._next_cid += 1
        self._clients[cid] = _Client(cid, ip, port, out=deque())
        return cid

    def client_disconnected(self, cid: int, now: float) -> None:
        self._settle()
        self._now = now
        c = self._clients.pop(cid, None)
        self._dirty.discard(cid)
        if self.files is not None:
            self.files.client_gone(cid)
            self._files_flush()
        if c is None or c.user is None:
            return
        token = c.user.token
        conns = self._by_token[token]
        was_primary = conns[0] == cid
        conns.remove(cid)
        if conns:
            if was_primary:  # the next connection takes over the undelivered messages
                p = self._clients[conns[0]]
                p.upto, p.backlog = 0, True
                self._refill(p)
            return
        del self._by_token[token]
        self._broadcast(status_event(ResultCode.OFFLINE, "local", token, c.user.name,
                                     self._mine))
        for s in self._sessions.values():
            if self._may_send(s):  # ordered after our hello: never early
                self._control_add(s, wire.encode_user_off(token))

    def client_line(self, cid: int, line: bytes | LineTooLong, now: float) -> None:
        """One line from a client (or the decoder's over-long line event)."""
        self._settle()
        self._now = now
        c = self._clients[cid]
        try:
            if isinstance(line, LineTooLong):
                raise line.error()
            command = decode_command(line)
            authorize(command, c.user.token if c.user else None)
            if isinstance(command, Login):
                self._login(c, command, now)
            elif isinstance(command, ListUsers):
                reply = users_reply(self.users())
                for u in reply["users"]:  # local users' records stay as in 2000
                    u.setdefault("bridge", self._mine)
                self._push(c, reply)
            elif isinstance(command, SendMessage):
                self._push(c, self._send(c, command, now))
            elif isinstance(command, History):
                messages = self.store.history(
                    command.token, command.goaltoken, command.limit, command.before
                )
                self._push(c, history_reply(messages))
            else:
                assert isinstance(command, FileCommand)
                if self.files is None:
                    raise CommandError(
                        ErrorCode.NOT_IMPLEMENTED,
                        f"command {command.command.value} is reserved for file transfer, "
                        "not served by this bridge",
                        command.command.value,
                    )
                msg = {**command.raw, **command.fields} if command.command in (
                    CommandId.FILE_INIT, CommandId.FILE_STATUS) else dict(command.raw)
                self.files.client_command(cid, command.command.value, msg, now)
                self._files_flush()
        except CommandError as exc:
            self._push(c, exc.reply())
        except StoreError as exc:
            self._notices.append(str(exc))
            self._push(c, error_reply(ErrorCode.INTERNAL_ERROR, f"storage failed: {exc}"))

    def users(self) -> list[User]:
        """Online users of every bridge: this bridge's first (each user once, on the
        bridge it logs in on)."""
        self._settle()
        return self._local_users() + list(self.peer_users.values())

    def _local_users(self) -> list[User]:
        local = [self._clients[conns[0]].user for conns in self._by_token.values()]
        return [u for u in local if u is not None]

    def _login(self, c: _Client, command: Login, now: float) -> None:
        token = make_token(self.public_key, command.name)
        c.user = User(token, command.name, c.ip, c.port, "local")
        self.store.remember_user(token, command.name, "local", now)
        conns = self._by_token.setdefault(token, [])
        conns.append(c.id)
        self._push(c, login_reply(c.user))
        if len(conns) == 1:
            self._broadcast(status_event(ResultCode.ONLINE, "local", token, command.name,
                                         self._mine), c.id)
            for s in self._sessions.values():
                if self._may_send(s):
                    self._control_add(s, wire.encode_user_on(c.user))
            c.upto, c.backlog = 0, True
            self._refill(c)
        if self.files is not None:  # files that arrived while this user was away
            for event in self.files.available_for(token):
                self._push(c, event)
                self.files.notified(token, event["fileid"])

    def _time(self, now: float) -> float:
        self._last_time = max(now, self._last_time + 1e-6)
        return self._last_time

    def _send(self, c: _Client, command: SendMessage, now: float) -> dict[str, Any]:
        assert c.user is not None
        goal = command.goaltoken
        route: Session | None = None
        if goal in self._by_token:
            side: str | None = "local"
        else:
            side = self.store.user_side(goal)
            if side != "local":
                route = self._route(goal)
                side = None if route is None else "peer"
        if side is None:
            return send_reply(ResultCode.UNKNOWN_TARGET)
        if self._outbox_count >= self.limits.outbox_max:
            return send_reply(ResultCode.SEND_FAILED, "the queue of undelivered messages is full")
        message = ChatMessage(
            srctoken=c.user.token, goaltoken=goal, name=c.user.name, time=self._time(now),
            ip=c.ip, port=c.port, type=command.type, msg=command.msg,
            filename=command.filename, filesize=command.filesize, md5=command.md5,
            fileid=command.fileid,
        )
        # The time first, like a UUIDv7: SQLite's indexes on ids then grow at their end (a
        # random id dirtied a page of the index per message: commits grew with the history).
        # 8 random bytes per microsecond keep ids unique across both bridges.
        message_id = _ID_TIME.pack(int(message.time * 1e6) & _U64) + os.urandom(8)
        self.store.add_new_message(message_id, message)
        if side == "local":
            self.stats["sent_local"] += 1
            online = self._deliver_local(message_id, message)
        else:
            assert route is not None
            self.stats["sent_peer"] += 1
            self._queue_peer(route, message_id, message)
            online = route.peer_up and goal in route.users
        return send_reply(ResultCode.DELIVERED if online else ResultCode.TARGET_OFFLINE)

    def _deliver_local(self, message_id: bytes, message: ChatMessage) -> bool:
        """Queue for a local user; hand it over now if online. True if online."""
        seq = self.store.add_local(message_id, message.goaltoken)
        self._outbox_count += 1
        conns = self._by_token.get(message.goaltoken)
        if not conns:
            return False
        p = self._clients[conns[0]]
        if p.backlog:
            self._refill(p)
        else:
            self._push(p, message_event(message), seq)
            p.upto = seq
        return True

    def _refill(self, c: _Client) -> None:
        if not c.backlog or c.user is None or c.out is None:
            return
        room = self.limits.refill - len(c.out)
        if room <= 0:
            return
        rows = self.store.local_pending(c.user.token, c.upto, room)
        for seq, message in rows:
            self._push(c, message_event(message), seq)
            c.upto = seq
        if len(rows) < room:
            c.backlog = False

    def _push(self, c: _Client, obj: dict[str, Any], seq: int = 0) -> None:
        assert c.out is not None
        c.out.append((obj, seq))
        c.need = self.store.writes
        self._dirty.add(c.id)
        if len(c.out) > self.limits.client_queue:
            self._closing.add(c.id)

    def _broadcast(self, event: dict[str, Any], exclude: int | None = None) -> None:
        for c in self._clients.values():
            if c.user is not None and c.id != exclude:
                self._push(c, event)

    # ------------------------------------------------------------------ the daemon's channel

    def _channel(self) -> Session:
        s = self._sessions.get(CHANNEL)
        if s is None:
            s = self._sessions[CHANNEL] = Session(CHANNEL, self.store, self.limits, self._now,
                                                  split=False)
            self._by_name[s.name] = s
        return s

    def daemon_connected(self, now: float) -> None:
        """The one-peer channel of the bridge port (no streams): its session."""
        self._settle()
        self._now = now
        self.daemon_up = True
        s = self._channel()
        s.link_up = False
        s.new_reassembly(CHAT)
        s.out.new_channel()

    def daemon_disconnected(self, now: float) -> None:
        self._settle()
        self._now = now
        self.daemon_up = False
        s = self._sessions.get(CHANNEL)
        if s is None:
            return
        s.link_up = False
        if s.peer_up:
            self._peer_down(s)
        s.new_reassembly(CHAT)
        s.out.new_channel()

    def daemon_event(self, event: dict[str, Any], now: float) -> None:
        self._settle()
        self._now = now
        if event.get("event") != "peer":
            if event.get("event") == "error":
                self._notices.append(f"daemon error: {event}")
            return
        s = self._channel()
        if event.get("code") == ResultCode.ONLINE:
            s.link_up = True
            s.last_rx = now
            self._send_hello(s, reply=False, now=now)
        elif event.get("code") == ResultCode.OFFLINE:
            s.link_up = False
            if s.peer_up:
                self._peer_down(s)

    def daemon_data(self, payload: bytes, now: float) -> None:
        self._data(self._channel(), CHAT, payload, now)

    # ------------------------------------------------------------------ streams, per peer

    def _stream_session(self, key: bytes) -> Session:
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = Session(key, self.store, self.limits, self._now, split=True)
            self._by_name[s.name] = s
        return s

    def peer_online(self, key: bytes, online: bool, now: float) -> None:
        """The daemon says the peer daemon ``key`` is online (its channel open) or not."""
        self._settle()
        self._now = now
        s = self._stream_session(key)
        s.online = online
        self._lane_state(s, now)

    def lane_opened(self, key: bytes, lane: int, now: float) -> None:
        """Our stream of ``lane`` to ``key`` is open: we write only on it."""
        self._settle()
        self._now = now
        s = self._stream_session(key)
        s.lanes.add(lane)
        if lane == CHAT:
            s.link_up = False  # a new stream: a new session from our side
            s.out.new_channel()
        else:
            s.out.new_bulk()
            if s.files_up and self.files is not None:
                self.files.set_peer(True, now, s.name)
                self._files_flush()
        self._lane_state(s, now)

    def lane_closed(self, key: bytes, lane: int, now: float) -> None:
        """Our stream of ``lane`` to ``key`` ended (refused, reset, the peer restarted)."""
        self._settle()
        self._now = now
        s = self._stream_session(key)
        s.lanes.discard(lane)
        if lane == BULK:
            s.out.new_bulk()
            if self.files is not None:
                self.files.set_peer(False, now, s.name)
        self._lane_state(s, now)

    def lane_accepted(self, key: bytes, lane: int, now: float) -> None:
        """The peer opened a new stream of ``lane`` to us (we read only from it): its
        partial messages of the old one will never complete."""
        self._settle()
        self._now = now
        self._stream_session(key).new_reassembly(lane)

    def lane_ended(self, key: bytes, lane: int, now: float) -> None:
        """The peer's stream of ``lane`` ended: partial messages of it are dropped whole;
        the end of its interactive stream ends the session."""
        self._settle()
        self._now = now
        s = self._stream_session(key)
        s.new_reassembly(lane)
        if lane == CHAT and s.peer_up:
            self._peer_down(s)

    def lane_data(self, key: bytes, lane: int, payload: bytes, now: float) -> None:
        self._data(self._stream_session(key), lane, payload, now)

    def _lane_state(self, s: Session, now: float) -> None:
        up = s.online and CHAT in s.lanes
        if up and not s.link_up:
            s.link_up = True
            s.last_rx = now
            self._send_hello(s, reply=False, now=now)
        elif not up and s.link_up:
            s.link_up = False
            if s.peer_up:
                self._peer_down(s)

    def take_lane_frames(self, key: bytes, lane: int, limit: int = 256) -> list[bytes]:
        """Frames for our stream of ``lane`` to ``key``; commits the store first."""
        self._settle()
        s = self._sessions.get(key)
        if s is None or lane not in s.lanes:
            return []
        if self._frames_need > self.store.committed:
            self.store.commit()
        if lane == CHAT:
            frames = s.out.take_frames(limit, s.peer_up)
            if frames:
                s.last_tx = self._now
            return frames
        return s.out.take_bulk_frames(limit, s.files_up)

    def lanes_with_frames(self) -> list[tuple[bytes, int]]:
        self._settle()
        out = []
        for key, s in self._sessions.items():
            if not s.split:
                continue
            if CHAT in s.lanes and s.out.has_frames(s.peer_up):
                out.append((key, CHAT))
            if BULK in s.lanes and s.out.has_bulk_frames(s.files_up):
                out.append((key, BULK))
        return out

    def peer_keys(self) -> list[bytes]:
        return [k for k, s in self._sessions.items() if s.split]

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
            if self._incoming_count >= _INCOMING_MAX:
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
        relayed = self._relayed_for(s)
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
            pass
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
                    store.add_new_message(command.id, message)
                    self.stats["received_peer"] += 1
                    if self._is_local(message.goaltoken):
                        self._deliver_local(command.id, message)
                        if message.fileid is not None and files is not None:
                            # after the 2003: its 5003 follows it (now if the file is here)
                            files.announce(message.fileid, message.goaltoken)
                            self._files_flush()
                    else:
                        self._relay(s, command.id, message)
                s.out.ack(command.id)
        self._frames_need = store.writes

    def _is_local(self, token: str) -> bool:
        return token in self._by_token or self.store.user_side(token) == "local"

    def _relay(self, came: Session, message_id: bytes, message: ChatMessage) -> None:
        """A hub: a message for a user behind another peer goes on, stored in that peer's
        outbox (before the ack to the one it came from); never back where it came from."""
        nxt = self._route(message.goaltoken, exclude=came)
        if nxt is None:
            self._notices.append(f"no route to {message.goaltoken} for a message from "
                                 f"{_label(came).strip() or 'the peer bridge'}: dropped")
            return
        self.stats["relayed"] += 1
        self._queue_peer(nxt, message_id, message)

    def _queue_peer(self, s: Session, message_id: bytes, message: ChatMessage) -> None:
        pair, payload = f"{message.srctoken} {message.goaltoken}", wire.encode_msg(message_id,
                                                                                   message)
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
        best: Session | None = None
        for s in self._sessions.values():
            if s is exclude or not s.peer_up or token not in s.users:
                continue
            if best is None or s.users[token].hops < best.users[token].hops:
                best = s
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

    def _reachable(self, token: str, exclude: Session | None = None) -> User | None:
        """The best announcement of ``token`` by an up session other than ``exclude``."""
        best: User | None = None
        for s in self._sessions.values():
            if s is exclude or not s.peer_up:
                continue
            u = s.users.get(token)
            if u is not None and (best is None or u.hops < best.hops):
                best = u
        return best

    def _relayed_for(self, x: Session) -> list[User]:
        """What we announce to ``x`` of the users behind our other peers: never its own
        users, never what only it told us, at most MAX_HOPS hubs away."""
        out: dict[str, User] = {}
        for s in self._sessions.values():
            if s is x or not s.peer_up:
                continue
            for token, u in s.users.items():
                if u.bridge == x.bridge or u.hops + 1 > MAX_HOPS or token in self._by_token:
                    continue
                if token not in out or u.hops + 1 < out[token].hops:
                    out[token] = User(u.token, u.name, u.ip, u.port, "peer", u.bridge, u.hops + 1)
        return list(out.values())

    def _route_add(self, s: Session, user: User) -> None:
        was = self._reachable(user.token)
        s.users[user.token] = user
        if was is None and user.token not in self._by_token:
            self._broadcast(status_event(ResultCode.ONLINE, "peer", user.token, user.name,
                                         user.bridge))
        self._retell(user.token, s)

    def _route_remove(self, s: Session, token: str) -> None:
        gone = s.users.pop(token, None)
        if gone is None:
            return
        if self._reachable(token) is None and token not in self._by_token:
            self._broadcast(status_event(ResultCode.OFFLINE, "peer", gone.token, gone.name,
                                         gone.bridge))
        self._retell(token, s)

    def _retell(self, token: str, changed: Session) -> None:
        """Bring what the other sessions were told of ``token`` up to date (relay)."""
        for x in self._sessions.values():
            if x is changed or not x.peer_up or not self._may_send(x):
                continue
            u = self._reachable(token, exclude=x)
            ok = (u is not None and u.bridge != x.bridge and u.hops + 1 <= MAX_HOPS
                  and token not in self._by_token)
            if ok and x.told.get(token) != u.hops + 1:
                x.told[token] = u.hops + 1
                self._control_add(x, wire.encode_user_on(
                    User(u.token, u.name, u.ip, u.port, "peer", u.bridge, u.hops + 1)))
            elif not ok and token in x.told:
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
            relayed = self._relayed_for(s)
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
            if self.store.get_meta(_LEGACY_PEER) is None:
                self.store.set_meta(_LEGACY_PEER, s.name.encode())
                if self.files is not None:
                    self.files.adopt_legacy(s.name)
            self._notices.append(f"the one-peer era's {moved} queued messages and "
                                 f"{len(mine)} users are the peer bridge{_label(s)}'s")
        self._legacy = len(mine) < len(targets)

    def _files_flush(self) -> None:
        """Move what the file service produced to the clients and the peer bridges."""
        files = self.files
        assert files is not None
        for cid, obj in files.take_client_output():
            c = self._clients.get(cid)
            if c is not None:
                self._push(c, obj)
        for name, packed in files.take_peer_output():
            s = self._by_name.get(name)
            if s is not None and s.files_up:
                s.out.add_xfer([packed])
                self._frames_need = self.store.writes
        for token, event in files.take_available():  # offline users: told at their login
            conns = self._by_token.get(token)
            if conns:
                for cid in conns:
                    self._push(self._clients[cid], event)
                files.notified(token, event["fileid"])
        self._notices.extend(files.notices)
        files.notices.clear()

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

    # ------------------------------------------------------------------ introspection

    def client_ids(self) -> Iterable[int]:
        return list(self._clients)

    def statistics(self) -> dict[str, Any]:
        self._settle()
        return {
            **self.stats,
            "clients": len(self._clients),
            "local_users": len(self._by_token),
            "peer_users": len(self.peer_users),
            "peer_up": self.peer_up,
            "outbox": self._outbox_count,
            "in_flight": sum(s.out.in_flight for s in self._sessions.values()),
            "sessions": {s.name or "channel": s.statistics() for s in self._sessions.values()},
        }


def _label(s: Session) -> str:
    return f" {s.name[:16]}" if s.name else ""
