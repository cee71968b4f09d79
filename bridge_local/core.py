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
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from toxbridge.errors import RemoteProtocolError
from toxbridge.fragment import Reassembler

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
from .peerout import PeerSender
from .store import OutgoingEntry, Store, StoreError

__all__ = ["BridgeCore", "Limits"]

_ID_TIME = struct.Struct(">Q")
_U64 = (1 << 64) - 1
_INCOMING_MAX = 1024  # chat messages from the peer queued before they are handled


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
        self._frames_need = 0  # the store's write count when the frames last gained a promise
        self._incoming: list[wire.Msg] = []  # chat from the peer, handled by _settle()
        # The daemon and the peer bridge.
        self.daemon_up = False
        self.link_up = False  # the daemon says the peer daemon is online
        self.peer_up = False  # ... and the peer bridge said hello in this session
        self.peer_session: bytes | None = None
        self.peer_users: dict[str, User] = {}
        self._last_rx = now
        self._last_tx = now
        self._last_hello = now
        self._now = now
        self._out = PeerSender(store, inflight=limits.inflight, waiting=limits.waiting,
                               control_max=limits.control_max)
        self._new_channel()
        self.stats = {"sent_local": 0, "sent_peer": 0, "received_peer": 0, "duplicates": 0,
                      "peer_errors": 0}

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
        if not self.daemon_up:
            return []
        if self._frames_need > self.store.committed:
            self.store.commit()
        frames = self._out.take_frames(limit, self.peer_up)
        if frames:
            self._last_tx = self._now
        return frames

    def has_frames(self) -> bool:
        self._settle()
        if not self.daemon_up:
            return False
        return self._out.has_frames(self.peer_up)

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
        self._broadcast(status_event(ResultCode.OFFLINE, "local", token, c.user.name))
        if self.daemon_up and self.link_up:  # ordered after our hello: never early
            self._control_add(wire.encode_user_off(token))

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
                self._push(c, users_reply(self.users()))
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
        """Online users of both bridges: this bridge's first."""
        self._settle()
        local = [self._clients[conns[0]].user for conns in self._by_token.values()]
        return [u for u in local if u is not None] + list(self.peer_users.values())

    def _login(self, c: _Client, command: Login, now: float) -> None:
        token = make_token(self.public_key, command.name)
        c.user = User(token, command.name, c.ip, c.port, "local")
        self.store.remember_user(token, command.name, "local", now)
        conns = self._by_token.setdefault(token, [])
        conns.append(c.id)
        self._push(c, login_reply(c.user))
        if len(conns) == 1:
            self._broadcast(status_event(ResultCode.ONLINE, "local", token, command.name), c.id)
            if self.daemon_up and self.link_up:
                self._control_add(wire.encode_user_on(c.user))
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
        if goal in self._by_token:
            side: str | None = "local"
        elif goal in self.peer_users:
            side = "peer"
        else:
            side = self.store.user_side(goal)
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
            self.stats["sent_peer"] += 1
            pair, payload = f"{message.srctoken} {goal}", wire.encode_msg(message_id, message)
            seq = self.store.add_peer(message_id, pair, payload)
            self._outbox_count += 1
            self._out.outbox_grew(OutgoingEntry(seq, message_id, pair, payload))
            self._frames_need = self.store.writes
            online = self.peer_up and goal in self.peer_users
            if message.fileid is not None and self.files is not None:
                self.files.file_message(message.fileid, now)
                self._files_flush()
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

    # ------------------------------------------------------------------ the daemon

    def _new_channel(self) -> None:
        self._reasm = Reassembler(max_partial=256, timeout=self.limits.partial_timeout)
        self._out.new_channel()

    def daemon_connected(self, now: float) -> None:
        self._settle()
        self._now = now
        self.daemon_up = True
        self.link_up = False
        self._new_channel()

    def daemon_disconnected(self, now: float) -> None:
        self._settle()
        self._now = now
        self.daemon_up = False
        self.link_up = False
        if self.peer_up:
            self._peer_down()
        self._new_channel()

    def daemon_event(self, event: dict[str, Any], now: float) -> None:
        self._settle()
        self._now = now
        if event.get("event") != "peer":
            if event.get("event") == "error":
                self._notices.append(f"daemon error: {event}")
            return
        if event.get("code") == ResultCode.ONLINE:
            self.link_up = True
            self._last_rx = now
            self._send_hello(reply=False, now=now)
        elif event.get("code") == ResultCode.OFFLINE:
            self.link_up = False
            if self.peer_up:
                self._peer_down()

    def daemon_data(self, payload: bytes, now: float) -> None:
        self._now = now
        self._last_rx = now
        try:
            message = self._reasm.receive_frame(payload, now)
            if message is None:
                return
            command = wire.decode(message.data)
        except RemoteProtocolError as exc:
            self.stats["peer_errors"] += 1
            self._notices.append(f"from the peer bridge: {exc}")
            return
        if isinstance(command, wire.Msg):
            self._incoming.append(command)
            if len(self._incoming) >= _INCOMING_MAX:
                self._settle()
            return
        self._settle()  # what follows a message must see it (a bye, a user going off, ...)
        self._handle_peer(command, now)

    def tick(self, now: float) -> None:
        """Timers: heartbeats, hello retries, peer timeout, expiry of partial messages."""
        self._settle()
        self._now = now
        self._reasm.expire(now)
        if self.files is not None:
            self.files.tick(now)
            self._files_flush()
        if not (self.daemon_up and self.link_up):
            return
        if self.peer_up:
            if now - self._last_rx > self.limits.peer_timeout:
                self._notices.append("the peer bridge went silent")
                self._peer_down()
            elif now - self._last_tx >= self.limits.ping_interval:
                self._control_add(wire.encode_ping())
                self._last_tx = now
        elif now - self._last_hello >= self.limits.hello_retry:
            self._send_hello(reply=False, now=now)

    def shutdown(self) -> None:
        """Tell the peer bridge we are leaving (call, then send the frames, then close)."""
        self._settle()
        if self.daemon_up:
            self._control_add(wire.encode_bye())
        self.peer_up = False

    # ------------------------------------------------------------------ the peer bridge

    def _send_hello(self, reply: bool, now: float) -> None:
        self._last_hello = now
        if not reply:
            # The peer starts its reassembly afresh at a request: whatever is half-sent
            # would reach it as orphan fragments, and a chat message caught half-way would
            # wait for the session after. Start clean: chat is resent from the outbox,
            # unsent acks are answered by the peer's resend, transfers resync, and the
            # hello itself carries the users.
            self._out.new_channel()
        local = [u for u in self.users() if u.side == "local"]
        known = self.store.known_users("local", wire.MAX_KNOWN)
        self._control_add(wire.encode_hello(reply, self.session, self.public_key, local, known))

    def _control_add(self, packed: bytes) -> None:
        if self._out.control_full():
            # Fell far behind: what is queued is replaced by a complete state (a hello).
            self._out.clear_control()
            self._notices.append("control queue overflow: resynchronising with a hello")
            self._send_hello(reply=False, now=self._now)
        self._out.add_control(packed)
        self._frames_need = self.store.writes

    def _handle_peer(self, command: wire.PeerCommand, now: float) -> None:
        if isinstance(command, wire.Ack):
            self.store.delete_peer(list(command.ids))
            self._outbox_count = max(0, self._outbox_count - len(command.ids))
        elif isinstance(command, wire.Ping):
            pass
        elif isinstance(command, wire.Xfer):
            if self.files is not None and self.peer_up:
                self.files.peer_message(command.to_receiver, command.message, now)
                self._files_flush()
        elif isinstance(command, wire.Hello):
            self._receive_hello(command, now)
        elif isinstance(command, wire.Bye):
            if self.peer_up:
                self._peer_down()
        elif not self.peer_up:
            return  # user changes outside a session: the next hello has the state
        elif isinstance(command, wire.UserOn):
            user = command.user
            self.store.remember_user(user.token, user.name, "peer", now)
            if user.token not in self.peer_users:
                if len(self.peer_users) >= wire.MAX_USERS:
                    self.stats["peer_errors"] += 1
                    self._notices.append(f"from the peer bridge: more than {wire.MAX_USERS} "
                                         f"online users; {user.token} ignored")
                    return
                self.peer_users[user.token] = user
                self._broadcast(status_event(ResultCode.ONLINE, "peer", user.token, user.name))
        elif isinstance(command, wire.UserOff):
            gone = self.peer_users.pop(command.token, None)
            if gone is not None:
                self._broadcast(status_event(ResultCode.OFFLINE, "peer", gone.token, gone.name))

    def _settle(self) -> None:
        """Handle the queued chat messages from the peer: store the new ones (one query
        tells the resent ones apart), deliver them, ack them all with the next frames."""
        if not self._incoming:
            return
        batch, self._incoming = self._incoming, []
        store = self.store
        try:
            seen = store.existing_ids({m.id for m in batch})
        except StoreError as exc:  # none acked: the peer bridge sends them again
            self._notices.append(f"could not store messages from the peer bridge: {exc}")
            return
        files = self.files
        for command in batch:
            message = command.message
            if command.id in seen:
                self.stats["duplicates"] += 1
            else:
                seen.add(command.id)
                store.add_new_message(command.id, message)
                self.stats["received_peer"] += 1
                self._deliver_local(command.id, message)
                if message.fileid is not None and files is not None:
                    # after the 2003: its 5003 follows it (now if the file is here already)
                    files.announce(message.fileid, message.goaltoken)
                    self._files_flush()
            self._out.ack(command.id)
        self._frames_need = store.writes

    def _receive_hello(self, hello: wire.Hello, now: float) -> None:
        if not hello.reply:
            # A new sender (or one that reconnected to its daemon): its earlier partial
            # messages will never complete.
            self._reasm = Reassembler(max_partial=256, timeout=self.limits.partial_timeout)
            self._send_hello(reply=True, now=now)
        self.link_up = True
        for token, name in hello.known:
            self.store.remember_user(token, name, "peer", now)
        for user in hello.users:
            self.store.remember_user(user.token, user.name, "peer", now)
        if self.peer_up and hello.session != self.peer_session:
            self._peer_down()  # the peer bridge restarted without saying bye
        users = {u.token: u for u in hello.users}
        # Resend what is not acknowledged when a session starts: at a request (the peer
        # (re)connected to its daemon) or at the first hello after we were down.
        resend = not hello.reply or not self.peer_up
        if not self.peer_up:
            self.peer_up = True
            self.peer_session = hello.session
            self.peer_users = users
            self._broadcast(status_event(ResultCode.ONLINE, "peer"))
            for u in users.values():
                self._broadcast(status_event(ResultCode.ONLINE, "peer", u.token, u.name))
        else:  # same session: bring the user list up to date
            for token in list(self.peer_users):
                if token not in users:
                    gone = self.peer_users.pop(token)
                    self._broadcast(status_event(ResultCode.OFFLINE, "peer", token, gone.name))
            for token, u in users.items():
                if token not in self.peer_users:
                    self.peer_users[token] = u
                    self._broadcast(status_event(ResultCode.ONLINE, "peer", token, u.name))
        if resend:
            self._out.restart()  # duplicates are dropped by the receiver
            if self.files is not None:  # the channel is new: transfers resync
                self._out.clear_xfer()
                self.files.set_peer(True, now)
                self._files_flush()

    def _files_flush(self) -> None:
        """Move what the file service produced to the clients and the peer bridge."""
        files = self.files
        assert files is not None
        for cid, obj in files.take_client_output():
            c = self._clients.get(cid)
            if c is not None:
                self._push(c, obj)
        if self.peer_up:
            self._out.add_xfer(files.take_peer_output())
            self._frames_need = self.store.writes
        else:
            files.take_peer_output()
        for token, event in files.take_available():  # offline users: told at their login
            conns = self._by_token.get(token)
            if conns:
                for cid in conns:
                    self._push(self._clients[cid], event)
                files.notified(token, event["fileid"])
        self._notices.extend(files.notices)
        files.notices.clear()

    def _peer_down(self) -> None:
        if self.files is not None:
            self.files.set_peer(False, self._now)
            self._out.clear_xfer()
        self.peer_up = False
        self._broadcast(status_event(ResultCode.OFFLINE, "peer"))
        for u in self.peer_users.values():
            self._broadcast(status_event(ResultCode.OFFLINE, "peer", u.token, u.name))
        self.peer_users = {}
        self._out.restart()

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
            "in_flight": self._out.in_flight,
            "reassembly": self._reasm.statistics(),
        }
