"""Local streams: each connection on the node's ``streams.sock`` is one mux stream. This
module holds what the trio side (``toxbridge.localsock``) and the tox thread share,
and the tox thread's half: opening, accepting, moving bytes between the shared buffers
and the Mux, consuming what the app has taken (so its stream's credit follows the app).

Every :class:`LocalStream` field is guarded by its lock; the trio side changes them and
calls :meth:`StreamTable.touch`, the tox thread changes them and calls ``poke()`` (which
must be thread-safe: it schedules a wake-up in trio) when the trio side may be waiting for
that change (see READER_WAKE, WRITER_WAKE).

Each peer has its own table (its mux's stream ids); the tables share one :class:`Shared`:
the kinds a server accepts (port forwarding's exposing side) and the connections that
accept a stream from any peer (``toxbridge.peertables`` finds a peer's table).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from .errors import ProtocolError
from .streams import (CreditAvailable, Mux, Priority, ResetCode, StreamData, StreamEnded,
                      StreamOpened, StreamReset)

__all__ = ["CREDIT_WAKE", "LocalStream", "READER_WAKE", "Shared", "StreamTable", "TO_PEER_BUFFER", "WRITER_WAKE"]

TO_PEER_BUFFER = 64 * 1024  # bytes read from the app, not yet taken by the mux
# A poke costs the tox thread a socket write to wake trio, and getting the GIL back after it
# waits out the busy trio thread's switch interval: a poke per take or per delivery was
# 13-21 % of the tox thread's time while a file moved (issue 14, py-spy). So the tox thread
# pokes only when the trio side may be waiting: a reader waits only with to_peer full, so it
# is poked when the take brings the room from under READER_WAKE to at least that (and then
# reads that much at once); a writer waits only with to_app empty (forwarding's answer
# parser with less than an answer, <= 257 bytes), so it is poked when to_app held less
# than WRITER_WAKE before the delivery.
READER_WAKE = TO_PEER_BUFFER // 2
WRITER_WAKE = 4096
# The other way, the trio side wakes the tox thread after a write to the app only once this
# much written is not yet consumed in the mux (or the stream ends): consuming sends credit
# only once a quarter of a window is owed (1 MiB by default), so a wake per chat message
# was a tox thread turn per message for nothing, on the message's own path. What is owed
# below this goes with the next pump, which a dirty table makes due (``dirty``).
CREDIT_WAKE = 64 * 1024
MAX_ACCEPTORS = 64  # local connections waiting in `accept` at once


class LocalStream:
    """One local connection's stream. ``poke``: wakes its trio task (any thread)."""

    def __init__(self, poke: Callable[[], None]) -> None:
        self.lock = threading.Lock()
        self.poke = poke
        self.kind = 0
        self.priority = Priority.BULK
        self.header = b""
        self.sid: int | None = None  # set when opened or accepted
        self.failure: tuple[str, str] | None = None  # (code, message): no stream
        self.to_peer = bytearray()  # app -> mux (at most TO_PEER_BUFFER)
        self.to_app = bytearray()  # mux -> app (at most the stream's window: the credit)
        self.taken = 0  # bytes the trio side took from to_app
        self.written = 0  # ... and wrote to the app
        self.consumed = 0  # ... and the tox thread reported to the mux
        self.end_out = False  # the app half-closed: FIN after to_peer
        self.fin_sent = False
        self.end_in = False  # the peer half-closed
        self.reset_out: int | None = None  # the app aborted: RESET with this code
        self.reset_in: int | None = None  # the stream is gone (peer, restart): this code
        self.table: StreamTable | None = None  # set once it is its peer's (queued or accepted)
        self.peer_key: bytes | None = None  # ... and that peer's public key

    def touch(self) -> None:
        """The trio side changed this stream: its table's tox side looks at it."""
        if self.table is not None:
            self.table.touch(self)

    @property
    def send_room(self) -> int:
        return TO_PEER_BUFFER - len(self.to_peer)


class Shared:
    """What every peer's table shares: servers by kind, and acceptors of any peer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # kind -> accept(event, peer_key): a LocalStream for an OPEN of that kind that no
        # connection waits for, or None (refused); called on the tox thread, must not block.
        self.servers: dict[int, Callable[[StreamOpened, bytes | None], LocalStream | None]] = {}
        self.acceptors: dict[int, deque[LocalStream]] = {}  # kind -> waiting for any peer

    def serve_kind(self, kind: int, accept) -> None:
        """Every OPEN of ``kind`` from any peer goes to ``accept`` (forwarding's exposing side)."""
        with self.lock:
            self.servers[kind] = accept

    def request_accept(self, ls: LocalStream) -> bool:
        """Accept the next stream of ``ls.kind`` from any peer. False: too many wait."""
        with self.lock:
            return _enqueue(self.acceptors, ls)

    def withdraw(self, ls: LocalStream) -> None:
        with self.lock:
            _dequeue(self.acceptors, ls)

    def take_acceptor(self, kind: int) -> LocalStream | None:
        with self.lock:
            queue = self.acceptors.get(kind)
            return queue.popleft() if queue else None


def _enqueue(acceptors: dict[int, deque[LocalStream]], ls: LocalStream) -> bool:
    if sum(len(q) for q in acceptors.values()) >= MAX_ACCEPTORS:
        return False
    acceptors.setdefault(ls.kind, deque()).append(ls)
    return True


def _dequeue(acceptors: dict[int, deque[LocalStream]], ls: LocalStream) -> None:
    queue = acceptors.get(ls.kind)
    if queue is not None and ls in queue:
        queue.remove(ls)


class StreamTable:
    """One peer's local streams, and the connections waiting to accept one of its."""

    def __init__(self, shared: Shared | None = None, peer_key: bytes | None = None) -> None:
        self._lock = threading.Lock()
        self._opens: deque[LocalStream] = deque()  # asked to open, not yet opened
        self._acceptors: dict[int, deque[LocalStream]] = {}  # kind -> waiting connections
        self._live: dict[int, LocalStream] = {}  # stream id -> (tox thread only)
        self._dirty: set[LocalStream] = set()  # changed by the trio side
        self.shared = shared or Shared()
        self.mux: Mux | None = None  # set by the tox thread (PeerIO)
        self.peer_key = peer_key  # the peer's public key
        self.closed: tuple[str, str] | None = None  # the peer was removed: (code, message)

    # -- the trio side ---------------------------------------------------------------------

    def request_open(self, ls: LocalStream) -> None:
        with self._lock:
            ls.table, ls.peer_key = self, self.peer_key
            if self.closed is None:
                self._opens.append(ls)
                return
        self._refuse(ls, *self.closed)

    def request_accept(self, ls: LocalStream) -> bool:
        """False: too many are waiting already."""
        with self._lock:
            ls.table, ls.peer_key = self, self.peer_key
            if self.closed is not None:
                ls.failure = self.closed
                return True
            return _enqueue(self._acceptors, ls)

    def serve_kind(self, kind: int, accept) -> None:
        """Every OPEN of ``kind`` goes to ``accept`` (port forwarding's exposing side)."""
        self.shared.serve_kind(kind, accept)

    def withdraw(self, ls: LocalStream) -> None:
        """A connection that waited (open or accept) went away before its stream."""
        with self._lock:
            _dequeue(self._acceptors, ls)
            if ls in self._opens:
                self._opens.remove(ls)

    def touch(self, ls: LocalStream) -> None:
        """The trio side changed ``ls`` (bytes, end, reset, written)."""
        with self._lock:
            self._dirty.add(ls)

    @property
    def dirty(self) -> bool:
        """Something the trio side changed waits for ``service`` (a hint, read unlocked)."""
        return bool(self._dirty)

    # -- the tox thread --------------------------------------------------------------------

    def service(self, mux: Mux | None, *, opens: bool = True) -> None:
        """Opens (unless ``opens`` is False: they wait), and what the trio side changed,
        into the mux."""
        with self._lock:
            waiting = self._opens if opens else ()
            if opens:
                self._opens = deque()
            dirty, self._dirty = self._dirty, set()
        for ls in waiting:
            if mux is None or mux.error is not None:
                self._refuse(ls, "no_peer", "no peer is connected")
                continue
            try:
                sid = mux.open_stream(ls.kind, ls.priority, ls.header)
            except ProtocolError as exc:
                self._refuse(ls, "refused", str(exc))
                continue
            with ls.lock:
                ls.sid = sid
                ls.table, ls.peer_key = self, self.peer_key
            self._live[sid] = ls
            dirty.add(ls)
            ls.poke()
        if mux is None:
            return
        for ls in dirty:
            self._move(mux, ls)

    def _move(self, mux: Mux, ls: LocalStream) -> None:
        sid = ls.sid
        if sid is None or self._live.get(sid) is not ls:
            return
        poke = False
        with ls.lock:
            if ls.reset_out is not None:
                mux.reset(sid, ls.reset_out)
                del self._live[sid]
                return
            if ls.written > ls.consumed:
                mux.consume(sid, ls.written - ls.consumed)
                ls.consumed = ls.written
            if ls.to_peer:
                room = ls.send_room
                # A view, not bytes(): the mux copies only what it takes, and a call per
                # wake-up copied the whole buffer (64 KiB) for a mux frame's worth.
                with memoryview(ls.to_peer) as view:
                    n = mux.send(sid, view)
                if n:
                    del ls.to_peer[:n]
                    poke = room < READER_WAKE <= ls.send_room
            if ls.end_out and not ls.to_peer and not ls.fin_sent:
                mux.end(sid)
                ls.fin_sent = True
            done = (ls.fin_sent and ls.end_in and not ls.to_app
                    and ls.taken == ls.written == ls.consumed)
        if done:
            self._live.pop(sid, None)  # the mux forgets it by itself
        if poke:
            ls.poke()

    def on_event(self, mux: Mux, event) -> bool:
        """A mux event for a stream that is not the channel; False: an OPEN nobody
        waits for (the caller refuses it)."""
        if isinstance(event, StreamOpened):
            with self._lock:
                queue = self._acceptors.get(event.kind)
                ls = queue.popleft() if queue else None
            if ls is None:
                ls = self.shared.take_acceptor(event.kind)
            if ls is None:
                with self.shared.lock:
                    server = self.shared.servers.get(event.kind)
                if server is not None:
                    ls = server(event, self.peer_key)
            if ls is None:
                return False
            with ls.lock:
                ls.sid, ls.priority, ls.header = event.stream_id, event.priority, event.header
                ls.table, ls.peer_key = self, self.peer_key
            self._live[event.stream_id] = ls
            ls.poke()
            return True
        ls = self._live.get(getattr(event, "stream_id", -1))
        if ls is None:
            if isinstance(event, StreamData):  # for a stream whose app is gone
                mux.consume(event.stream_id, len(event.data))
            return True
        if isinstance(event, StreamData):
            with ls.lock:
                held = len(ls.to_app)
                ls.to_app += event.data
            if held >= WRITER_WAKE:
                return True  # its writer has not waited since (see WRITER_WAKE)
        elif isinstance(event, StreamEnded):
            with ls.lock:
                ls.end_in = True
        elif isinstance(event, StreamReset):
            with ls.lock:
                ls.reset_in = event.code
            del self._live[event.stream_id]
        elif isinstance(event, CreditAvailable):
            self._move(mux, ls)
            return True
        ls.poke()
        return True

    def peer_gone(self, code: int = ResetCode.PEER_RESTARTED) -> None:
        """The Link (and mux) were replaced: every stream is gone."""
        for sid, ls in list(self._live.items()):
            with ls.lock:
                ls.reset_in = code
            ls.poke()
        self._live.clear()

    def close(self, code: str, message: str) -> None:
        """The peer was removed: its streams reset (PEER_REMOVED), waiting connections
        refused with ``code``, and so is every later request."""
        with self._lock:
            self.closed = (code, message)
            waiting = list(self._opens) + [ls for q in self._acceptors.values() for ls in q]
            self._opens.clear()
            self._acceptors.clear()
        for ls in waiting:
            self._refuse(ls, code, message)
        self.peer_gone(ResetCode.PEER_REMOVED)

    def _refuse(self, ls: LocalStream, code: str, message: str) -> None:
        with ls.lock:
            ls.failure = (code, message)
        ls.poke()

    def __len__(self) -> int:
        return len(self._live)
