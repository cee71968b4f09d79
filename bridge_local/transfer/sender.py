"""The sending role of the transfer machine (see :mod:`bridge_local.transfer`)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .chunkmap import ChunkMap, ChunkMapError, from_wire
from ..protocol import CommandId
from .base import _Transfer
from .codec import Offer, _check_chunk_size, _fail, _int, _range, _str, parse_offer
from .types import (
    DEFAULT_RTO,
    DEFAULT_WINDOW,
    MAX_CHUNK_SIZE,
    MAX_MESSAGE_LENGTH,
    MAX_WINDOW,
    _INT63,
    _SESSION_MAX,
    Accepted,
    ChunkNeeded,
    Completed,
    Role,
    State,
    TransferCode,
    TransferProtocolError,
    TransferUsageError,
)


class Sender(_Transfer):
    """The side that has the file: offers it and sends the chunks the receiver lacks.

    ``window``: chunks asked for (:class:`ChunkNeeded`) or in flight at once. ``rto``:
    seconds without word from the receiver before a resync. ``session``: the first offer's
    session number (default random); a sender restarted for the same task must not reuse
    its predecessor's numbers. Call :meth:`start` to send the offer.
    """

    ROLE = Role.SENDER

    def __init__(
        self,
        taskid: int | str,
        *,
        filename: str,
        filesize: int,
        md5: str,
        fileid: str | None = None,
        window: int = DEFAULT_WINDOW,
        rto: float = DEFAULT_RTO,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        session: int | None = None,
    ) -> None:
        super().__init__(taskid, filesize, md5, State.OFFERED)
        if not 1 <= window <= MAX_WINDOW:
            raise TransferUsageError(f"window must be in 1..{MAX_WINDOW}")
        if not rto > 0:
            raise TransferUsageError("rto must be positive")
        if not 1 <= max_chunk_size <= MAX_CHUNK_SIZE:
            raise TransferUsageError(f"max_chunk_size must be in 1..{MAX_CHUNK_SIZE}")
        if session is None:
            session = 1 + secrets.randbelow(_SESSION_MAX // 2)
        if not 1 <= session <= _SESSION_MAX:
            raise TransferUsageError(f"session must be in 1..{_SESSION_MAX}")
        self.offer = Offer(self.taskid, filename, filesize, self.md5, session, fileid)
        try:
            parse_offer(self.offer.message())  # the peer's rules, for our own offer
        except TransferProtocolError as exc:
            raise TransferUsageError(exc.message) from None
        self.window = window
        self.rto = rto
        self.max_chunk_size = max_chunk_size
        self.session = session
        self._started = False
        self._last_heard = 0.0
        self._requested: set[int] = set()  # ChunkNeeded handed out, not sent yet
        self._inflight: set[int] = set()  # sent, not acknowledged
        self._ever_sent = ChunkMap(0)
        self._cursor = 0

    def start(self, now: float) -> None:
        """Send the offer (``7000``)."""
        if self._started:
            raise TransferUsageError("start() was called already")
        self._started = True
        self._last_heard = now
        self._out.append(self.offer.message())

    def resync(self, now: float) -> None:
        """Offer again under a new session, and continue from the receiver's answer. Call it
        when the link to the receiver came back (it is also done on timeouts)."""
        self._require_live("resync")
        if not self._started:
            raise TransferUsageError("call start() first")
        self.session = self.session % _SESSION_MAX + 1
        self.offer = replace(self.offer, session=self.session)
        self.state = State.OFFERED
        self._requested.clear()
        self._last_heard = now
        self._bump(resyncs=1)
        self._out.append(self.offer.message())

    def send_chunk(self, index: int, data: bytes, now: float) -> bool:
        """Send chunk ``index`` asked for by a :class:`ChunkNeeded`; False (nothing sent) if
        it is no longer wanted (a resync, pause or the end came in between).

        Raises :class:`TransferUsageError` if ``data`` is not the chunk's length.
        """
        if index not in self._requested or self.state is not State.SENDING:
            return False
        start = index * self.chunk_size
        end = min(start + self.chunk_size, self.filesize)
        if len(data) != end - start:
            raise TransferUsageError(f"chunk {index} is {end - start} bytes, not {len(data)}")
        self._requested.discard(index)
        if not self._inflight:  # the timer runs from the first chunk in flight
            self._last_heard = max(self._last_heard, now)
        self._inflight.add(index)
        if not self._ever_sent.add(index):
            self._bump(chunks_resent=1)
        self._bump(chunks_sent=1, bytes_sent=len(data))
        self._send(
            CommandId.CHUNK,
            session=self.session,
            chunk_size=self.chunk_size,
            range=[start, end],
            data=bytes(data),
        )
        return True

    def next_deadline(self) -> float | None:
        if not self._started or self.finished or self.paused:
            return None
        if self.state is State.SENDING and not self._inflight:
            return None  # waiting for the shell's chunks, not for the peer
        return self._last_heard + self.rto

    def handle_timeout(self, now: float) -> None:
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self.resync(now)

    # ------------------------------------------------------------------ receiving

    def _handlers(self) -> dict[int, Any]:
        return {
            CommandId.TRANSFER_ACCEPT: self._on_accept,
            CommandId.CHUNK_ACK: self._on_ack,
            CommandId.TRANSFER_DONE: self._on_done,
        }

    def _stale(self, message: Mapping[str, Any]) -> bool:
        if _int(message, "session", hi=_INT63, default=0) != self.session:
            self._bump(stale=1)
            return True
        return False

    def _on_accept(self, message: Mapping[str, Any], now: float) -> None:
        if not self._started:
            raise _fail(TransferCode.WRONG_STATE, "an 8000 before the offer", self.taskid)
        if self.state is not State.OFFERED:
            # The receiver restarted, repaired, or wants a fresh start: ask for its map.
            _int(message, "session", hi=_INT63, default=0)
            if not self.paused:
                self.resync(now)
            return
        if self._stale(message):
            return
        result = _int(message, "result", lo=-(2**31), hi=2**31 - 1)
        if result != TransferCode.OK:
            text = _str(message, "message", MAX_MESSAGE_LENGTH, required=False) or ""
            self._failed(result, text or "the receiver refused the file", by_peer=True)
            return
        filesize = _int(message, "filesize")
        if filesize != self.filesize:
            raise _fail(
                TransferCode.FILE_MISMATCH,
                f"accepted a file of {filesize} bytes, the offer is {self.filesize}",
            )
        chunk_size = _int(message, "suggest_chunksize")
        problem = _check_chunk_size(filesize, chunk_size)
        if problem is None and chunk_size > self.max_chunk_size:
            problem = f"chunk size {chunk_size} is over this sender's {self.max_chunk_size}"
        if problem:
            raise _fail(TransferCode.BAD_CHUNK_SIZE, problem)
        try:
            chunks = from_wire(message.get("chunk_map"), filesize, chunk_size)
        except ChunkMapError as exc:
            raise _fail(TransferCode.BAD_CHUNK_MAP, str(exc)) from None
        # All checked: adopt the receiver's map.
        if chunk_size != self.chunk_size:
            self.chunk_size = chunk_size
            self._ever_sent = ChunkMap(chunks.count)
        self._chunks = chunks
        self._inflight.clear()
        self._requested.clear()
        self._cursor = 0
        self._last_heard = now
        self.state = State.SENDING
        self._events.append(Accepted(chunk_size, len(chunks), chunks.count))
        self._progress()
        self._advance()

    def _on_ack(self, message: Mapping[str, Any], now: float) -> None:
        if self._stale(message):
            return
        if self.state is State.OFFERED:  # overtook its 8000 (only on a reordering link)
            self._bump(stale=1)
            return
        chunk_size = _int(message, "chunk_size")
        if chunk_size != self.chunk_size:
            raise _fail(
                TransferCode.WRONG_SIZE,
                f"ack for chunk size {chunk_size}, the transfer's is {self.chunk_size}",
            )
        start, end = _range(message)
        if start % chunk_size or not 0 <= start < self.filesize:
            raise _fail(TransferCode.BAD_RANGE, f"range {[start, end]} is not a chunk of the file")
        if end != min(start + chunk_size, self.filesize):
            raise _fail(TransferCode.BAD_RANGE, f"range {[start, end]} is not a whole chunk")
        result = _int(message, "result", lo=-(2**31), hi=2**31 - 1)
        try:
            chunks = from_wire(message.get("chunk_map"), self.filesize, chunk_size)
        except ChunkMapError as exc:
            raise _fail(TransferCode.BAD_CHUNK_MAP, str(exc)) from None
        if result != TransferCode.OK:
            text = _str(message, "message", MAX_MESSAGE_LENGTH, required=False) or ""
            self._failed(result, text or "the receiver could not take a chunk", by_peer=True)
            return
        self._last_heard = now
        before = len(self._chunks)
        self._chunks.update(chunks)
        self._inflight.discard(start // chunk_size)
        self._inflight -= {i for i in self._inflight if i in chunks}
        self._requested -= {i for i in self._requested if i in chunks}
        if len(self._chunks) != before:
            self._progress()
        self._advance()

    def _on_done(self, message: Mapping[str, Any], now: float) -> None:
        if self._stale(message):
            return
        if self.state is not State.FINISHING:
            raise _fail(TransferCode.WRONG_STATE, "an 8010 before the 7010")
        result = _int(message, "result", lo=-(2**31), hi=2**31 - 1)
        if result != TransferCode.OK:
            text = _str(message, "message", MAX_MESSAGE_LENGTH, required=False) or ""
            self._failed(result, text or "the receiver did not confirm the file", by_peer=True)
            return
        self.state = State.DONE
        self._events.append(Completed(self.md5))

    def _unpaused(self, now: float) -> None:
        if not self.paused and self.state is not State.OFFERED and self._started:
            self.resync(now)

    def _advance(self) -> None:
        """Ask for the chunks the window allows, or end when the receiver holds them all."""
        if self.state is not State.SENDING:
            return
        if self._chunks.complete:
            self._inflight.clear()
            self._requested.clear()
            self.state = State.FINISHING
            self._send(CommandId.TRANSFER_END, session=self.session, result=0)
            return
        if self.paused:
            return
        budget = self.window - len(self._inflight) - len(self._requested)
        first = self._chunks.next_missing(self._cursor)
        self._cursor = self._chunks.count if first is None else first
        i = first
        while budget > 0 and i is not None:
            if i not in self._inflight and i not in self._requested:
                self._requested.add(i)
                start = i * self.chunk_size
                length = min(self.chunk_size, self.filesize - start)
                self._events.append(ChunkNeeded(i, start, length))
                budget -= 1
            i = self._chunks.next_missing(i + 1)
