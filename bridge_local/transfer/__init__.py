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

The modules: ``types`` (limits, codes, states, errors, events), ``codec`` (fields, offers,
the JSON form), ``chunkmap`` (which chunks are held, and its wire form), ``base``,
``sender`` and ``receiver`` (the machines), ``table`` (:class:`TransferTable`); every public
name is importable from here. Pure: it may import ``bridge_local.protocol`` (command ids)
and ``toxbridge.errors``, nothing else of the project.
"""

from __future__ import annotations

from .codec import (
    Offer,
    choose_chunk_size,
    file_info_reply,
    from_json,
    parse_offer,
    refuse_offer,
    task_of,
    to_json,
)
from .receiver import Receiver
from .sender import Sender
from .table import TransferTable
from .types import (
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
