"""The file transfer machine of commands 7000–8010 (sans-IO): one sender, one receiver.

One machine serves the three hops of a file: upload (a client sends to its own bridge, JSON
lines with base64 chunk data), bridge to bridge (msgpack, raw bytes) and download (a bridge
sends to its client). Messages in and out are plain dicts whose ``data`` is ``bytes``; the
JSON form differs only there (:func:`to_json`, :func:`from_json`). No I/O, no clock (pass
``now``), no file access: the sender asks for chunks (:class:`ChunkNeeded`, answered by
:meth:`Sender.send_chunk`), the receiver hands them out (:class:`ChunkReceived`, answered by
:meth:`Receiver.chunk_stored` once the chunk is stored) and asks for the md5
(:class:`VerifyNeeded`, answered by :meth:`Receiver.check_md5`).

The exchange (docs/files.md is the reference)::

    sender                                   receiver
    7000 offer  taskid filename filesize md5 session   ->
                <-  8000 accept  result filesize suggest_chunksize chunk_map session
    7001 chunk  session chunk_size range data  ->  (up to `window` chunks in flight)
                <-  8001 ack  session chunk_size range result chunk_map
    7010 end    session result  ->           (when the receiver's map is full)
                <-  8010 done  session result  (only once the md5 matched)
    7070 pause / resume / abort, 7080 peer error: either side, any time

**Sessions and resync.** Every ``7000`` carries a ``session`` number, new for each offer;
the receiver adopts it and echoes it in its ``8000`` and in every later message; chunks,
acks and ends of another session are stale and ignored. Whenever the sender is unsure of
the receiver's state — its offer unanswered, no word from the receiver for ``rto`` seconds,
a pause lifted, or an ``8000`` arriving while it sends (a receiver restarted from disk, or
one that found a bad chunk or got a ``7010`` too early) — it *resyncs*: it stops sending,
offers again under a new session and, when the answer comes, takes the receiver's chunk map
as the truth. On an ordered channel the answer reflects every chunk sent before the offer,
so a resync sends again only the chunks really lost: at most one window after a restart of
either side.

**Errors.** A malformed or out-of-place message from the peer makes :meth:`receive` raise
:class:`TransferProtocolError` (with a :class:`TransferCode`); the machine has then failed,
its chunk map untouched, and queued a ``7080`` telling the peer why. A message for another
task raises :class:`UnknownTask` and changes nothing. Stale and duplicate messages are not
errors: they are counted (:meth:`statistics`) and ignored or answered again.

The shell loop: :meth:`receive` each message from the peer, handle :meth:`events`, send
:meth:`data_to_send`, and call :meth:`handle_timeout` at :meth:`next_deadline`.

The code: :mod:`~bridge_local.transfer_types` (limits, codes, states, errors, events),
:mod:`~bridge_local.transfer_codec` (fields, offers, the JSON form),
:mod:`~bridge_local.transfer_base`, :mod:`~bridge_local.transfer_sender`,
:mod:`~bridge_local.transfer_receiver` (the machines), and here the :class:`TransferTable`;
every public name is importable from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .transfer_base import _Transfer
from .transfer_codec import (
    Offer,
    choose_chunk_size,
    file_info_reply,
    from_json,
    parse_offer,
    refuse_offer,
    task_of,
    to_json,
)
from .transfer_receiver import Receiver
from .transfer_sender import Sender
from .transfer_types import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_RTO,
    DEFAULT_WINDOW,
    MAX_CHUNKS,
    MAX_CHUNK_SIZE,
    Aborted,
    Accepted,
    ChunkNeeded,
    ChunkReceived,
    ChunksDiscarded,
    Completed,
    Control,
    Event,
    Failed,
    FileState,
    InitType,
    Paused,
    Progress,
    Resumed,
    Role,
    State,
    TransferCode,
    TransferProtocolError,
    TransferStatistics,
    TransferUsageError,
    UnknownTask,
    VerifyNeeded,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_RTO",
    "DEFAULT_WINDOW",
    "MAX_CHUNKS",
    "MAX_CHUNK_SIZE",
    "Aborted",
    "Accepted",
    "ChunkNeeded",
    "ChunkReceived",
    "ChunksDiscarded",
    "Completed",
    "Control",
    "Event",
    "Failed",
    "FileState",
    "InitType",
    "Offer",
    "Paused",
    "Progress",
    "Receiver",
    "Resumed",
    "Role",
    "Sender",
    "State",
    "TransferCode",
    "TransferProtocolError",
    "TransferStatistics",
    "TransferTable",
    "TransferUsageError",
    "UnknownTask",
    "VerifyNeeded",
    "choose_chunk_size",
    "file_info_reply",
    "from_json",
    "parse_offer",
    "refuse_offer",
    "task_of",
    "to_json",
]


# --------------------------------------------------------------------------- table


class TransferTable:
    """The transfers of one peer (one client connection, or the peer bridge), by taskid.

    Bounded: at most ``max_transfers`` at once. Task ids are the peer's and may collide with
    another peer's, so keep one table per peer.
    """

    def __init__(self, max_transfers: int = 64) -> None:
        if max_transfers < 1:
            raise ValueError("max_transfers must be at least 1")
        self.max_transfers = max_transfers
        self._by_task: dict[tuple[type, int | str], _Transfer] = {}

    def add(self, transfer: _Transfer) -> None:
        """Raises :class:`TransferUsageError` when the table is full or the taskid in use."""
        key = (type(transfer.taskid), transfer.taskid)
        if key in self._by_task:
            raise TransferUsageError(f"task {transfer.taskid!r} is already running")
        if len(self._by_task) >= self.max_transfers:
            raise TransferUsageError(f"at most {self.max_transfers} transfers at once")
        self._by_task[key] = transfer

    def get(self, taskid: int | str) -> _Transfer | None:
        return self._by_task.get((type(taskid), taskid))

    def route(self, message: Any) -> _Transfer:
        """The transfer a message is for. Raises :class:`TransferProtocolError`:
        ``BAD_MESSAGE`` without a valid taskid, :class:`UnknownTask` for an unknown one."""
        taskid = task_of(message)
        transfer = self.get(taskid)
        if transfer is None:
            raise UnknownTask(TransferCode.UNKNOWN_TASK, f"no transfer {taskid!r}", taskid)
        return transfer

    def remove(self, taskid: int | str) -> None:
        self._by_task.pop((type(taskid), taskid), None)

    def __len__(self) -> int:
        return len(self._by_task)

    def __iter__(self) -> Iterator[_Transfer]:
        return iter(list(self._by_task.values()))

    def next_deadline(self) -> float | None:
        deadlines = [d for t in self._by_task.values() if (d := t.next_deadline()) is not None]
        return min(deadlines, default=None)

    def handle_timeouts(self, now: float) -> None:
        for transfer in list(self._by_task.values()):
            transfer.handle_timeout(now)
