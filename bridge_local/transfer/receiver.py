"""The receiving role of the transfer machine (see :mod:`bridge_local.transfer`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .chunkmap import ChunkMap, chunk_count
from ..protocol import CommandId
from .base import _Transfer
from .codec import (
    Offer,
    _check_chunk_size,
    _data,
    _fail,
    _int,
    _is_int,
    _range,
    choose_chunk_size,
    parse_offer,
)
from .types import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_REPAIRS,
    _INT63,
    ChunkReceived,
    ChunksDiscarded,
    Completed,
    Role,
    State,
    TransferCode,
    TransferUsageError,
    VerifyNeeded,
)


class Receiver(_Transfer):
    """The side that gets the file. Made by :meth:`accept` (answering an offer) or
    :meth:`restore` (after a restart, from the chunk map persisted with the partial file).

    ``max_pending``: chunks handed out and not yet stored, beyond which the sender is
    flooding. ``max_repairs``: md5 failures with chunks to discard before giving up.
    """

    ROLE = Role.RECEIVER

    def __init__(
        self,
        *,
        taskid: int | str,
        filesize: int,
        md5: str,
        chunk_size: int,
        have: ChunkMap | None = None,
        filename: str | None = None,
        fileid: str | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_repairs: int = DEFAULT_MAX_REPAIRS,
    ) -> None:
        super().__init__(taskid, filesize, md5, State.RECEIVING)
        problem = _check_chunk_size(filesize, chunk_size)
        if problem:
            raise TransferUsageError(problem)
        count = chunk_count(filesize, chunk_size)
        if have is not None and have.count != count:
            raise TransferUsageError(
                f"a map of {have.count} chunks for {count} chunks of {chunk_size} bytes"
            )
        if max_pending < 1 or max_repairs < 0:
            raise TransferUsageError("max_pending must be at least 1, max_repairs at least 0")
        self.chunk_size = chunk_size
        self.filename = filename
        self.fileid = fileid
        self.max_pending = max_pending
        self.max_repairs = max_repairs
        self._chunks = have.copy() if have is not None else ChunkMap(count)
        self._pending: set[int] = set()
        self._verified = False
        self._end_asked = False
        self._repairs = 0

    @classmethod
    def accept(
        cls,
        offer: Offer,
        now: float,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        have: ChunkMap | None = None,
        **options: Any,
    ) -> Receiver:
        """Accept ``offer``: queue the ``8000`` with ``have`` (the chunks already held, in
        chunks of ``chunk_size``; None: nothing yet, and ``chunk_size`` is only a
        preference, grown for a huge file)."""
        if have is None:
            chunk_size = choose_chunk_size(offer.filesize, chunk_size)
        receiver = cls(
            taskid=offer.taskid,
            filesize=offer.filesize,
            md5=offer.md5,
            chunk_size=chunk_size,
            have=have,
            filename=offer.filename,
            fileid=offer.fileid,
            **options,
        )
        receiver._answer(offer.session)
        return receiver

    @classmethod
    def restore(cls, *, taskid: int | str, filesize: int, md5: str, chunk_size: int,
                have: ChunkMap, **options: Any) -> Receiver:
        """A receiver for a transfer interrupted by a restart. It queues an unsolicited
        ``8000`` asking the sender (if it still runs) to resync, and otherwise waits for
        the sender's next offer; chunks until then are stale."""
        receiver = cls(
            taskid=taskid, filesize=filesize, md5=md5, chunk_size=chunk_size, have=have, **options
        )
        receiver.session = None  # chunks are stale until the sender offers again
        receiver._send_map()
        receiver._check_complete()
        return receiver

    def chunk_stored(self, index: int) -> None:
        """Chunk ``index`` of a :class:`ChunkReceived` is stored durably enough: ack it."""
        if index not in self._pending:
            raise TransferUsageError(f"chunk {index} was not handed out (or was stored already)")
        self._pending.discard(index)
        if self.finished:
            return
        self._chunks.add(index)
        start = index * self.chunk_size
        self._send(
            CommandId.CHUNK_ACK,
            session=self.session,
            chunk_size=self.chunk_size,
            range=[start, min(start + self.chunk_size, self.filesize)],
            result=0,
            chunk_map=self._map_wire(),
        )
        self._progress()
        self._check_complete()

    def chunk_not_stored(self, index: int) -> None:
        """Chunk ``index`` of a :class:`ChunkReceived` was dropped (not stored, not failed):
        the sender will send it again after its next resync."""
        self._pending.discard(index)

    def discard_chunks(self, indices: Any, reason: str = "") -> None:
        """Chunks found bad after they were stored (their checksum on disk is wrong): forget
        them and ask the sender to resync, so that it sends them again."""
        indices = tuple(sorted({i for i in indices if i in self._chunks}))
        if not indices or self.finished:
            return
        for i in indices:
            self._chunks.discard(i)
        self._bump(repairs=len(indices))
        self._verified = False
        self.state = State.RECEIVING
        self._events.append(ChunksDiscarded(indices, reason or "stored data is corrupt"))
        self._progress()
        self._send_map()

    def check_md5(self, actual: str | None, untrusted: Any = ()) -> None:
        """The answer to :class:`VerifyNeeded`: ``actual`` is the md5 of the stored file
        (None: not computed, because ``untrusted`` chunks were found bad).

        If it matches, the ``8010`` goes out (now, or when the ``7010`` comes). If not, and
        ``untrusted`` names chunks to blame (their checksum on disk is wrong), they are
        discarded and received again (at most ``max_repairs`` times); otherwise the
        transfer fails with ``MD5_MISMATCH`` and the partial file should be discarded.
        """
        if self.state is not State.VERIFYING:
            raise TransferUsageError(f"no md5 was asked for (the transfer is {self.state.value})")
        if actual is None and not untrusted:
            raise TransferUsageError("no md5 and no untrusted chunks")
        if actual is not None and actual.lower() == self.md5 and not untrusted:
            self._verified = True
            if self._end_asked:
                self._finish()
            return
        untrusted = [i for i in untrusted if i in self._chunks]
        if untrusted and self._repairs < self.max_repairs:
            self._repairs += 1
            self.discard_chunks(untrusted, "md5 mismatch: chunks corrupt on disk")
            return
        self._failed(
            TransferCode.MD5_MISMATCH,
            f"the file's md5 is {actual.lower()}, the offer's is {self.md5}"
            if actual
            else f"chunks {sorted(untrusted)[:8]} corrupt, no repairs left",
            by_peer=False,
            notify=True,
        )

    # ------------------------------------------------------------------ receiving

    def _handlers(self) -> dict[int, Any]:
        return {
            CommandId.TRANSFER_START: self._on_offer,
            CommandId.CHUNK: self._on_chunk,
            CommandId.TRANSFER_END: self._on_end,
        }

    def _stale(self, message: Mapping[str, Any]) -> bool:
        session = _int(message, "session", hi=_INT63, default=0)
        if self.session is None or session != self.session:
            self._bump(stale=1)
            return True
        return False

    def _on_offer(self, message: Mapping[str, Any], now: float) -> None:
        offer = parse_offer(message)
        if offer.filesize != self.filesize or offer.md5 != self.md5:
            raise _fail(
                TransferCode.FILE_MISMATCH,
                "the offer names another file (filesize or md5) under this taskid",
            )
        self._answer(offer.session)

    def _on_chunk(self, message: Mapping[str, Any], now: float) -> None:
        if self._stale(message):
            return
        chunk_size = _int(message, "chunk_size")
        start, end = _range(message)
        data = _data(message)
        if chunk_size != self.chunk_size:
            raise _fail(
                TransferCode.WRONG_SIZE,
                f"chunk_size {chunk_size}, the transfer's is {self.chunk_size}",
            )
        if not 0 <= start < self.filesize or not start < end <= self.filesize:
            raise _fail(
                TransferCode.BAD_RANGE, f"range {[start, end]} is outside 0..{self.filesize}"
            )
        if start % chunk_size or end != min(start + chunk_size, self.filesize):
            raise _fail(TransferCode.BAD_RANGE, f"range {[start, end]} is not one whole chunk")
        if len(data) != end - start:
            raise _fail(
                TransferCode.WRONG_SIZE,
                f"range {[start, end]} holds {end - start} bytes, data has {len(data)}",
            )
        index = start // chunk_size
        if index in self._pending:
            self._bump(duplicates=1)
            return
        if index in self._chunks:  # our ack was lost or crossed a resync: ack again
            self._bump(duplicates=1)
            self._send(
                CommandId.CHUNK_ACK,
                session=self.session,
                chunk_size=chunk_size,
                range=[start, end],
                result=0,
                chunk_map=self._map_wire(),
            )
            return
        if len(self._pending) >= self.max_pending:
            raise _fail(
                TransferCode.TOO_MANY_CHUNKS,
                f"more than {self.max_pending} chunks waiting to be stored",
            )
        self._pending.add(index)
        self._bump(chunks_received=1)
        self._events.append(ChunkReceived(index, start, data))

    def _on_end(self, message: Mapping[str, Any], now: float) -> None:
        if self._stale(message):
            return
        _int(message, "result", lo=-(2**31), hi=2**31 - 1)
        if self.state is State.VERIFYING:
            self._end_asked = True
            if self._verified:
                self._finish()
        else:  # the sender believes we hold chunks we do not: have it resync
            self._send_map()

    def _answer(self, session: int) -> None:
        self.session = session
        self._end_asked = False
        self._send_map()
        self._check_complete()

    def _send_map(self) -> None:
        self._send(
            CommandId.TRANSFER_ACCEPT,
            result=0,
            filesize=self.filesize,
            suggest_chunksize=self.chunk_size,
            chunk_map=self._map_wire(),
            session=self.session or 0,
        )

    def _check_complete(self) -> None:
        if self.state is State.RECEIVING and self._chunks.complete:
            self.state = State.VERIFYING
            if not self._verified:
                self._events.append(VerifyNeeded())

    def _finish(self) -> None:
        self._send(CommandId.TRANSFER_DONE, session=self.session, result=0)
        self.state = State.DONE
        self._events.append(Completed(self.md5))

    def _receive_final(self, command: Any, message: Mapping[str, Any]) -> None:
        if self.state is State.DONE:
            if command == CommandId.TRANSFER_START:
                offer = parse_offer(message)
                if offer.filesize == self.filesize and offer.md5 == self.md5:
                    self.session = offer.session
                    self._send_map()
                return
            if command == CommandId.TRANSFER_END:
                session = message.get("session", 0)
                if _is_int(session) and session == self.session:
                    self._send(CommandId.TRANSFER_DONE, session=self.session, result=0)
            return
        super()._receive_final(command, message)
