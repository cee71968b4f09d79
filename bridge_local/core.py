"""The bridge core (sans-IO): users, routing, delivery, the bridge-to-bridge sessions.

:class:`BridgeCore` is driven by a shell (``bridge_local.server``) and by tests, with no
sockets and no clock: every input carries ``now``. It is written in three parts over one
state: this module (the clients, their users and local delivery, and the outputs), its
base classes :class:`~bridge_local.lanes.Lanes` (the daemon's channel and the streams per
peer: the ``daemon_*``, ``peer_online`` and ``lane_*`` inputs, the frames out) and
:class:`~bridge_local.peering.Peering` (the session protocol with each peer bridge,
relaying, the timers), with routes from :mod:`bridge_local.routing`.

Inputs
    clients: :meth:`client_connected`, :meth:`client_line`, :meth:`client_disconnected`;
    the daemon's channel: :meth:`daemon_connected`, :meth:`daemon_event`,
    :meth:`daemon_data`, :meth:`daemon_disconnected`; streams: :meth:`peer_online`,
    ``lane_*``; time: :meth:`tick`.
Outputs
    per client, replies and events (dicts) from :meth:`take_client_output`; the ids of the
    clients that have some in :meth:`take_dirty`, of the clients to disconnect (they fell too
    far behind) in :meth:`take_closing`; data frames for the daemon from :meth:`take_frames`
    and for the lanes from :meth:`take_lane_frames`; human-readable notices (peer protocol
    errors, ...) from :meth:`take_notices`.

Both ``take_client_output(s)`` and the frames commit the store first, so a ``2002``
promising durable delivery, or an ack to the peer bridge, never leaves before the data it
speaks of is on disk. Each output remembers the store's write count when it was made, and
the commit is skipped when an earlier one already covered it: one commit per batch of
requests read, shared by every client's replies and the frames.

Delivery rules
    * Every accepted message gets a 16-byte id and goes into the history.
    * For a user of this bridge it goes through the local outbox: handed, in order, to the
      user's first connection (its *primary* connection) while the user is online, kept
      otherwise; a row leaves the outbox when the shell takes it for writing.
    * For a user of a peer bridge it goes into that peer's outbox, is sent while the
      bridge-to-bridge session is up, resent at every new session, and leaves the outbox
      when the peer bridge acks it (after storing it). The receiver drops duplicates by id.
    * A message goes to the session with the fewest hubs to its user; one for a user of
      another bridge is stored and relayed (docs/protocol.md §9.1a).
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import wire
from .fileservice import FileService
from .lanes import Lanes
from .peering import LEGACY_PEER, Peering
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
from .sessions import BULK, CHAT, Session
from .store import Store, StoreError

__all__ = ["BULK", "BridgeCore", "CHAT", "Limits"]

_ID_TIME = struct.Struct(">Q")
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Limits:
    """Every bound of the core, and its timers (seconds)."""

    client_queue: int = 10_000  # replies and events waiting for one client; over: closed
    refill: int = 500  # offline messages handed to a connection at a time
    outbox_max: int = 200_000  # messages waiting in both outboxes; over: 203
    inflight: int = 32  # chat messages in the fragmenter at once
    waiting: int = 256  # outbox entries held back behind their pair's previous message
    control_max: int = 4096  # control commands queued for the peer; over: resync by hello
    # A heartbeat after this long without sending: it proves the peer *bridge* (its
    # session) alive; the Link under it already loses nothing while both daemons live,
    # and a dead friend connection is toxcore's to report (28-32 s). 8 s leaves 2.5 pings
    # within peer_timeout (5 s had left 4; its exchange was an idle node's largest cost of
    # our own: docs/benchmarks.md, bench idle).
    ping_interval: float = 8.0
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


class BridgeCore(Lanes, Peering):
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
        legacy_peer = store.get_meta(LEGACY_PEER)
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
        record = self.store.add_new_message(message_id, message)  # to_dict once, for all
        if side == "local":
            self.stats["sent_local"] += 1
            online = self._deliver_local(message_id, message, record)
        else:
            assert route is not None
            self.stats["sent_peer"] += 1
            self._queue_peer(route, message_id, message, record)
            online = route.peer_up and goal in route.users
        return send_reply(ResultCode.DELIVERED if online else ResultCode.TARGET_OFFLINE)

    def _deliver_local(self, message_id: bytes, message: ChatMessage,
                       record: dict[str, Any] | None = None) -> bool:
        """Queue for a local user; hand it over now if online. True if online. ``record``:
        ``message.to_dict()``, if built already."""
        seq = self.store.add_local(message_id, message.goaltoken)
        self._outbox_count += 1
        conns = self._by_token.get(message.goaltoken)
        if not conns:
            return False
        p = self._clients[conns[0]]
        if p.backlog:
            self._refill(p)
        else:
            self._push(p, message_event(message, record), seq)
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
