"""What goes to the peer bridge, and in which order (sans-IO): :class:`PeerSender`.

Three queues feed one fragmenter: control commands first (hellos, acks, user changes,
pings, byes), then file-transfer messages (bounded by the transfers' own windows), then
chat messages from the store's peer outbox. Messages of one (sender, target) pair go out one
after the other: the next enters the fragmenter only once the previous one's last fragment
is out, so the peer completes them in order. Other pairs interleave (round-robin
fragments), so chat is never stuck behind someone else's large message. Chat waits while
the bridge-to-bridge session is down; control goes out whenever the daemon is there.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from typing import TYPE_CHECKING

from toxbridge.fragment import Fragmenter

from . import wire

if TYPE_CHECKING:
    from .store import OutgoingEntry, Store

__all__ = ["PeerSender"]

_FRAG_HEADER = struct.Struct(">16sII")  # a fragment's message uuid, index and count
_BATCH = 1024  # outbox entries read (or kept as written) ahead of the fragmenter
# (1024: a client pipelining messages adds ~600 in one read; at 64 the sender read most of
# them back from SQLite, ~5 % of a sending bridge in a flood, issue 18)


class PeerSender:
    """The frames for the daemon's channel to the peer bridge, built from three queues.

    ``inflight``: chat messages in the fragmenter at once; ``waiting``: outbox entries held
    back behind their pair's previous message; ``control_max``: control commands queued
    (over it, the caller resynchronises: :meth:`control_full`).
    """

    def __init__(self, store: Store, *, inflight: int, waiting: int, control_max: int,
                 peer: str = "", split: bool = False) -> None:
        self.store = store
        self.inflight = inflight
        self.waiting = waiting
        self.control_max = control_max
        self.peer = peer  # whose rows of the peer outbox
        # split: file-transfer messages have a fragmenter (and a stream) of their own, the
        # bulk lane (take_bulk_frames); else they share the one channel with the rest.
        self.split = split
        self._xfer: deque[bytes] = deque()
        self.new_bulk()
        self.new_channel()

    def new_channel(self) -> None:
        """Forget everything queued: a new channel to the daemon, or none (split: the
        interactive lane only; see :meth:`new_bulk`)."""
        self._frag = Fragmenter(max_messages=self.inflight + 32)
        self._control: deque[bytes] = deque()
        if not self.split:
            self._xfer = deque()
        self._acks: list[bytes] = []
        self._flight: dict[bytes, OutgoingEntry] = {}  # fragment uuid -> entry
        self._inflight_ids: set[bytes] = set()
        self._busy: set[str] = set()  # pairs with a message in the fragmenter
        self.restart()

    def new_bulk(self) -> None:
        """A new bulk lane (split only): half-sent transfer messages are dropped whole (the
        transfers resend what the receiver's chunk map lacks)."""
        self._bfrag = Fragmenter(max_messages=64)
        if self.split:
            self._xfer = deque()

    def restart(self) -> None:
        """Read the peer outbox from its start again (a new session: resend the unacked)."""
        self._cursor = 0
        self._batch: deque[OutgoingEntry] = deque()  # the outbox's next entries after the cursor
        self._waiting: deque[OutgoingEntry] = deque()
        self._waiting_pairs: Counter[str] = Counter()
        # The outbox holds nothing after the cursor and the batch: new entries join the
        # batch as they are written (no reading back of rows just written).
        self._complete = False

    # ------------------------------------------------------------------ inputs

    def control_full(self) -> bool:
        return len(self._control) >= self.control_max

    def clear_control(self) -> None:
        self._control.clear()

    def add_control(self, packed: bytes) -> None:
        self._control.append(packed)

    def add_xfer(self, packed: list[bytes]) -> None:
        self._xfer.extend(packed)

    def clear_xfer(self) -> None:
        self._xfer.clear()

    def ack(self, message_id: bytes) -> None:
        """The peer's message ``message_id`` is stored: say so with the next control batch."""
        self._acks.append(message_id)

    def outbox_grew(self, entry: OutgoingEntry) -> None:
        """``entry`` entered the peer outbox (its seq the highest yet): it joins the batch
        if the batch holds everything before it and has room, else it is read later."""
        if self._complete and len(self._batch) < _BATCH:
            self._batch.append(entry)
        else:
            self._complete = False

    # ------------------------------------------------------------------ outputs

    def take_frames(self, limit: int, peer_up: bool) -> list[bytes]:
        """Up to ``limit`` data frames; chat only while ``peer_up`` (the session is up)."""
        frames: list[bytes] = []
        while len(frames) < limit:
            self._pump(peer_up)
            frame = self._frag.next_frame()
            if frame is None:
                break
            frames.append(frame)
            uid, index, total = _FRAG_HEADER.unpack_from(frame)
            if index + 1 == total:
                done = self._flight.pop(uid, None)
                if done is not None:
                    self._inflight_ids.discard(done.id)
                    self._busy.discard(done.pair)
        return frames

    def has_frames(self, peer_up: bool) -> bool:
        return bool(self._frag or self._control or (self._xfer and not self.split)
                    or self._acks or self._may_pump(peer_up))

    def acks_only(self, peer_up: bool) -> bool:
        """Acks wait, and nothing else: a shell may hold them a moment for other frames
        to ride with (:data:`bridge_local.peerlinks.ACK_HOLD`)."""
        return bool(self._acks) and not (self._frag or self._control
                                         or (self._xfer and not self.split)
                                         or self._may_pump(peer_up))

    def take_bulk_frames(self, limit: int, files_up: bool) -> list[bytes]:
        """Up to ``limit`` frames of the bulk lane (split): transfer messages only."""
        frames: list[bytes] = []
        frag = self._bfrag
        while len(frames) < limit:
            while files_up and self._xfer and frag.can_send(len(self._xfer[0])):
                frag.send_id(self._xfer.popleft())
            frame = frag.next_frame()
            if frame is None:
                break
            frames.append(frame)
        return frames

    def has_bulk_frames(self, files_up: bool) -> bool:
        return bool(self._bfrag or (files_up and self._xfer))

    @property
    def in_flight(self) -> int:
        """Chat messages in the fragmenter."""
        return len(self._flight)

    # ------------------------------------------------------------------ the pump

    def _may_pump(self, peer_up: bool) -> bool:
        if not peer_up or len(self._flight) >= self.inflight:
            return False
        if self._batch or not self._complete:
            return True
        return any(pair not in self._busy for pair in self._waiting_pairs)

    def _pump(self, peer_up: bool) -> None:
        if self._acks:
            for i in range(0, len(self._acks), wire.MAX_ACKS):
                self._control.append(wire.encode_ack(self._acks[i : i + wire.MAX_ACKS]))
            self._acks = []
        frag = self._frag
        while self._control and frag.can_send(len(self._control[0])):
            frag.send_id(self._control.popleft())
        if not peer_up:
            return
        while not self.split and self._xfer and frag.can_send(len(self._xfer[0])):
            frag.send_id(self._xfer.popleft())
        while len(self._flight) < self.inflight:
            entry = self._next_entry()
            if entry is None:
                return
            if not frag.can_send(len(entry.payload)):
                self._hold(entry, front=True)
                return
            fid = frag.send_id(entry.payload)
            self._flight[fid] = entry
            self._inflight_ids.add(entry.id)
            self._busy.add(entry.pair)

    def _hold(self, entry: OutgoingEntry, front: bool = False) -> None:
        if front:
            self._waiting.appendleft(entry)
        else:
            self._waiting.append(entry)
        self._waiting_pairs[entry.pair] += 1

    def _next_entry(self) -> OutgoingEntry | None:
        if any(pair not in self._busy for pair in self._waiting_pairs):
            for i, entry in enumerate(self._waiting):
                if entry.pair not in self._busy:
                    del self._waiting[i]
                    self._waiting_pairs[entry.pair] -= 1
                    if not self._waiting_pairs[entry.pair]:
                        del self._waiting_pairs[entry.pair]
                    return entry
        while len(self._waiting) < self.waiting:
            if not self._batch:
                if self._complete:  # nothing was added since the outbox was found empty
                    return None
                batch = self.store.peer_after(self._cursor, _BATCH, self.peer)
                self._complete = len(batch) < _BATCH
                if not batch:
                    return None
                self._batch.extend(batch)
            entry = self._batch.popleft()
            self._cursor = entry.seq
            if entry.id in self._inflight_ids:
                continue
            if entry.pair in self._busy or entry.pair in self._waiting_pairs:
                self._hold(entry)
                continue
            return entry
        return None
