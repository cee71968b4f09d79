"""bridge_local's streams to every peer bridge (trio): a thin shell around the core's lanes.

Over the node's ``streams.sock`` (docs/wire.md §5) it watches the peers, and for each
peer that is online opens two streams of its own, one per lane: the interactive lane
(kind :data:`KIND_CHAT`: control and chat) and the bulk lane (:data:`KIND_BULK`: file
chunks). It keeps an ``accept`` waiting for each kind from any peer. Each side writes only
on the streams it opened and reads only on those it accepted, so each direction of a lane
is one stream with one reassembler. A refused open (the peer's bridge_local is not
accepting yet) is retried; a stream that ends (a peer daemon or bridge restart, a reset)
is a new one next time, and the core drops the partial messages of the old one whole.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

import trio

from toxbridge.framing import DATA, FrameDecoder, encode_data

from .core import BULK, CHAT, BridgeCore

__all__ = ["KIND_BULK", "KIND_CHAT", "PeerLinks"]

log = logging.getLogger(__name__)

KIND_CHAT, KIND_BULK = 48, 49  # the stream kinds of bridge_local's two lanes
_KINDS = {CHAT: KIND_CHAT, BULK: KIND_BULK}
_PRIORITY = {CHAT: "interactive", BULK: "bulk"}
READ_SIZE = 64 * 1024
FRAMES_PER_WRITE = 32
# The interactive lane's writer takes frames up to this many bytes per turn, as much as a
# client's reader takes in (one READ_SIZE read is ~600 chat lines): at 32 frames a turn,
# a client pipelining messages filled the outbox at ~10,000 a second while its lane sent
# ~1,000 a second, until the client stopped (bench messages: the first ~9 s of a 100,000
# message flood across Tox; issue 18). The bulk lane takes BULK_FRAMES_PER_WRITE.
CHAT_WRITE_BYTES = 64 * 1024
# A bulk lane's read or write is one step of the trio thread that the chat lanes (and the
# daemon's side of every stream, in a whole node) wait behind: on a hub relaying a file,
# 64 KiB of chunks a step was part of the chat line's wait at each of its two passes.
BULK_READ_SIZE = 16 * 1024
BULK_FRAMES_PER_WRITE = 16
RETRY_MIN, RETRY_MAX = 0.5, 5.0  # seconds between opens of a lane the peer refused
# Acks with nothing else to send wait up to this long for a frame to ride with (a delayed
# ack, as TCP's). In a conversation the answer comes within it: an ack of its own cost a
# crossing of both daemons and the peer bridge (a wake of each thread, a transport packet
# and its ACK, a DELETE and commit) on the cores the answer needed. Acks leave only after
# the commit all the same (take_lane_frames commits first); held ones are only later.
ACK_HOLD = 0.005


class _Closed(Exception):
    pass


async def _read_line(stream: trio.SocketStream, buf: bytearray) -> dict:
    while b"\n" not in buf:
        if len(buf) > 1 << 20:
            raise _Closed("an answer line over 1 MiB")
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise _Closed("closed before an answer")
        buf += data
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return json.loads(line)


class PeerLinks:
    """``after``: the core changed (the server's glue: commits, wakes, clients)."""

    def __init__(self, path: str, core: BridgeCore, after: Callable[[], None]) -> None:
        self.path = path
        self.core = core
        self.after = after
        self._wakers: set[trio.Event] = set()  # lane writers waiting for frames
        self._online: set[bytes] = set()
        self._openers: dict[tuple[bytes, int], trio.CancelScope] = {}
        self._readers: dict[tuple[bytes, int], trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    def kick(self) -> None:
        """Frames may wait: wake the lane writers."""
        wakers, self._wakers = self._wakers, set()
        for event in wakers:
            event.set()

    async def _connect(self, request: dict) -> tuple[trio.SocketStream, dict, bytearray]:
        stream = await trio.open_unix_socket(os.fspath(self.path))
        try:
            await stream.send_all(json.dumps(request).encode() + b"\n")
            buf = bytearray()
            answer = await _read_line(stream, buf)
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise
        return stream, answer, buf

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for lane in (CHAT, BULK):
                nursery.start_soon(self._acceptor, lane)
            await self._watch()

    # -- the peers ---------------------------------------------------------------------

    async def _watch(self) -> None:
        delay = RETRY_MIN
        while True:
            try:
                stream, answer, buf = await self._connect({"op": "peers"})
            except (OSError, _Closed, ValueError) as exc:
                log.warning("streams.sock %s: %s; retrying", self.path, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_MIN
            try:
                if not answer.get("ok"):
                    raise _Closed(f"refused: {answer}")
                for p in answer.get("peers", []):
                    self._peer(bytes.fromhex(p["peer"]), bool(p["online"]))
                while True:
                    event = await _read_line(stream, buf)
                    if event.get("event") == "peer":
                        self._peer(bytes.fromhex(event["peer"]), event.get("code") == 301)
            except (OSError, _Closed, ValueError, KeyError, trio.BrokenResourceError) as exc:
                log.warning("the peer watch ended: %s; watching again", exc)
            finally:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
            await trio.sleep(RETRY_MIN)

    def _peer(self, key: bytes, online: bool) -> None:
        log.info("peer %s %s", key.hex()[:16], "online" if online else "offline")
        if online:
            self._online.add(key)
        else:
            self._online.discard(key)
        self.core.peer_online(key, online, _now())
        if online:
            for lane in (CHAT, BULK):
                if (key, lane) not in self._openers:
                    self._nursery.start_soon(self._opener, key, lane)
        self.after()

    # -- our streams (we write) --------------------------------------------------------

    async def _opener(self, key: bytes, lane: int) -> None:
        scope = self._openers[(key, lane)] = trio.CancelScope()
        delay = RETRY_MIN
        try:
            with scope:
                while key in self._online:
                    opened = await self._open_once(key, lane)
                    if key not in self._online:
                        break
                    delay = RETRY_MIN if opened else min(delay * 2, RETRY_MAX)
                    await trio.sleep(delay)
        finally:
            if self._openers.get((key, lane)) is scope:
                del self._openers[(key, lane)]

    async def _open_once(self, key: bytes, lane: int) -> bool:
        """One stream of ``lane`` to ``key``, written until it ends. True if it was
        open for a while (the next open comes at once)."""
        request = {"op": "open", "kind": _KINDS[lane], "priority": _PRIORITY[lane],
                   "peer": key.hex().upper()}
        try:
            stream, answer, _ = await self._connect(request)
        except (OSError, _Closed, ValueError) as exc:
            log.info("open of lane %d to %s: %s", lane, key.hex()[:16], exc)
            return False
        if not answer.get("ok"):
            await stream.aclose()
            log.info("open of lane %d to %s refused: %s", lane, key.hex()[:16], answer)
            return False
        core = self.core
        started = trio.current_time()
        core.lane_opened(key, lane, _now())
        self.after()
        try:
            async with trio.open_nursery() as nursery:
                async def until_closed() -> None:  # the peer never writes here: EOF ends it
                    try:
                        while await stream.receive_some(READ_SIZE):
                            pass
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    nursery.cancel_scope.cancel()

                async def writer() -> None:
                    try:
                        while True:
                            if core.lane_acks_only(key, lane):
                                await self._hold_acks(key, lane)
                            frames = self._take(key, lane)
                            if frames:
                                await stream.send_all(b"".join(encode_data(f) for f in frames))
                                self.after()
                                continue
                            event = trio.Event()
                            self._wakers.add(event)
                            await event.wait()
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        log.info("lane %d to %s closed: %s", lane, key.hex()[:16], exc)
                    nursery.cancel_scope.cancel()
                nursery.start_soon(until_closed)
                nursery.start_soon(writer)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            core.lane_closed(key, lane, _now())
            self.after()
        # A refusal comes as an at-once close; a stream that lived was a real one.
        return trio.current_time() - started > 2.0

    def _take(self, key: bytes, lane: int) -> list[bytes]:
        """The frames of one write: BULK_FRAMES_PER_WRITE, or on the interactive lane up to
        CHAT_WRITE_BYTES (in the same order: the core's scheduler decides which)."""
        core = self.core
        if lane != CHAT:
            return core.take_lane_frames(key, lane, BULK_FRAMES_PER_WRITE)
        frames = core.take_lane_frames(key, lane, FRAMES_PER_WRITE)
        size = sum(map(len, frames))
        while frames and size < CHAT_WRITE_BYTES:
            more = core.take_lane_frames(key, lane, FRAMES_PER_WRITE)
            if not more:
                break
            frames += more
            size += sum(map(len, more))
        return frames

    async def _hold_acks(self, key: bytes, lane: int) -> None:
        """Until other frames join the acks waiting for the lane, or ACK_HOLD is over."""
        with trio.move_on_after(ACK_HOLD):
            while self.core.lane_acks_only(key, lane):
                event = trio.Event()
                self._wakers.add(event)
                await event.wait()

    # -- their streams (we read) -------------------------------------------------------

    async def _acceptor(self, lane: int) -> None:
        delay = RETRY_MIN
        while True:
            try:
                stream, answer, buf = await self._connect(
                    {"op": "accept", "kind": _KINDS[lane], "peer": "any"})
            except (OSError, _Closed, ValueError) as exc:
                log.info("accept of lane %d: %s; again", lane, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_MIN
            if not answer.get("ok"):
                await stream.aclose()
                log.warning("accept of lane %d refused: %s", lane, answer)
                await trio.sleep(RETRY_MAX)
                continue
            key = bytes.fromhex(answer["peer"])
            self._nursery.start_soon(self._reader, key, lane, stream, bytes(buf))

    async def _reader(self, key: bytes, lane: int, stream: trio.SocketStream,
                      first: bytes) -> None:
        old = self._readers.get((key, lane))
        if old is not None:
            old.cancel()  # the peer opened anew: its old stream is done
        scope = self._readers[(key, lane)] = trio.CancelScope()
        core = self.core
        core.lane_accepted(key, lane, _now())
        decoder = FrameDecoder(allowed_kinds=(DATA,))
        size = READ_SIZE if lane == CHAT else BULK_READ_SIZE
        try:
            with scope:
                data = first
                while True:
                    if data:
                        decoder.receive_data(data)
                        now = _now()
                        for frame in decoder:
                            core.lane_data(key, lane, frame.payload, now)
                        self.after()
                    data = await stream.receive_some(size)
                    if not data:
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError, Exception) as exc:
            if not isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)):
                log.warning("lane %d from %s: %s", lane, key.hex()[:16], exc)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            if self._readers.get((key, lane)) is scope:  # not replaced by a newer one
                del self._readers[(key, lane)]
                core.lane_ended(key, lane, _now())
                self.after()


def _now() -> float:
    return time.time()
