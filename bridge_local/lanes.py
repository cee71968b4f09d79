"""Where the bridge-to-bridge sessions meet the daemon (sans-IO): the daemon's one-peer
channel, and two streams each way per peer over streams.

:class:`Lanes` is a part of :class:`~bridge_local.core.BridgeCore` (a base class of it,
over its state). Over the one-peer channel of the bridge port (no streams) the channel is
one session, :data:`~bridge_local.sessions.CHANNEL`: the ``daemon_*`` inputs and
:meth:`Lanes.take_frames`. Over streams each peer daemon has a session of its own and two
lanes each way (docs/protocol.md §9.1a): ``peer_online``, ``lane_opened`` / ``lane_closed``
for ours (we write only on them), ``lane_accepted`` / ``lane_ended`` / ``lane_data`` for
the peer's (we read only from them), :meth:`Lanes.take_lane_frames`. A session's link is
up while its daemon says the peer is online and (over streams) our interactive lane is
open; then the session protocol (:mod:`bridge_local.peering`) says hello.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .protocol import ResultCode
from .sessions import BULK, CHANNEL, CHAT, Session

if TYPE_CHECKING:
    from .fileservice import FileService
    from .store import Store

__all__ = ["Lanes"]


class Lanes:
    """The sessions' frames in and out, per lane; and their link state."""

    # BridgeCore's state, as used here.
    store: Store
    files: FileService | None
    limits: Any
    daemon_up: bool
    _sessions: dict[bytes, Session]
    _by_name: dict[str, Session]
    _frames_need: int
    _now: float

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

    def lane_acks_only(self, key: bytes, lane: int) -> bool:
        """Only acks wait for our interactive lane to ``key`` (no other frame)."""
        self._settle()
        s = self._sessions.get(key)
        return (s is not None and lane == CHAT and lane in s.lanes
                and s.out.acks_only(s.peer_up))

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
