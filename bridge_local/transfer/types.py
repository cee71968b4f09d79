"""The transfer machine's vocabulary: limits, codes, states, errors and the events it hands
out (:mod:`bridge_local.transfer` is the overview)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from toxbridge.errors import LocalProtocolError, RemoteProtocolError

from ..protocol import CommandId

DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 512 * 1024
"""Largest chunk: its base64 form (699,052 characters) fits a 1 MiB JSON line."""
MAX_CHUNKS = 1 << 24
"""Most chunks of one file (a 2 MiB bitmap); :func:`choose_chunk_size` grows chunks to fit."""
# Chunks in flight (128 KiB each between bridges: 8 MiB, the Link's window). The window's
# loop spans the stream's credit loop (its 4 MiB) and the receiving bridge's write and ack:
# with 16 a file moved 0.55-0.62 of the channel at 150 ms and 1 % loss; 32: 0.73; 64: 0.87
# (issue 16, bench wan, once each).
DEFAULT_WINDOW = 64
MAX_WINDOW = 1024
DEFAULT_RTO = 15.0
DEFAULT_MAX_PENDING = 256
DEFAULT_MAX_REPAIRS = 3
MAX_FILE_SIZE = MAX_CHUNKS * MAX_CHUNK_SIZE  # 8 TiB
MAX_FILENAME_LENGTH = 255
MAX_ID_LENGTH = 128
MAX_MESSAGE_LENGTH = 1000
_INT63 = 2**63 - 1
_SESSION_MAX = 2**62

_MD5 = re.compile("[0-9a-fA-F]{32}")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class TransferCode(enum.IntEnum):
    """The ``result`` of ``8000``/``8001``/``8010`` and ``7080``: 0 is success."""

    OK = 0
    BAD_MESSAGE = 7101  # a field missing, of the wrong type or format
    UNKNOWN_TASK = 7102  # no transfer with this taskid
    WRONG_STATE = 7103  # a command this side or this state does not take
    BAD_RANGE = 7104  # a range out of the file or not one chunk
    WRONG_SIZE = 7105  # data not the length of its range, or not the agreed chunk_size
    BAD_CHUNK_MAP = 7106  # a chunk map that does not describe this file's chunks
    BAD_CHUNK_SIZE = 7107  # a chunk size outside 1..MAX_CHUNK_SIZE or too small for the file
    FILE_MISMATCH = 7108  # filesize or md5 differ from the transfer's
    MD5_MISMATCH = 7109  # the received file does not have the md5 of the offer
    TOO_LARGE = 7110  # over the file size limit
    NO_SPACE = 7111  # over the store quota, or the disk is full
    IO_ERROR = 7112  # reading or writing the file failed
    REFUSED = 7113  # the receiver does not want this file
    TOO_MANY_TRANSFERS = 7114
    NOT_FOUND = 7115  # no such file
    TOO_MANY_CHUNKS = 7116  # more chunks waiting to be stored than the receiver allows


class Control(enum.IntEnum):
    """The ``result`` of a ``7070``."""

    RESUME = 0
    PAUSE = 1
    ABORT = 2


class InitType(enum.IntEnum):
    """The ``type`` of a ``4001``."""

    UPLOAD = 1
    DOWNLOAD = 2


class FileState(enum.IntEnum):
    """The ``result`` of a ``5001``: the state of the file on the bridge."""

    AVAILABLE = 1  # complete and verified
    PARTIAL = 2  # being received; an upload resumes it
    MISSING = 3  # not on this bridge
    UNAVAILABLE = 4  # known, but cannot be served (failed, over a limit)


class Role(enum.Enum):
    SENDER = "sender"
    RECEIVER = "receiver"


class State(enum.Enum):
    """``OFFERED`` (sender: waiting for an 8000), ``SENDING`` (sender) / ``RECEIVING``
    (receiver), ``VERIFYING`` (receiver: all chunks stored, md5 asked for), ``FINISHING``
    (sender: 7010 sent), and the final ``DONE``, ``FAILED``, ``ABORTED``."""

    OFFERED = "offered"
    SENDING = "sending"
    RECEIVING = "receiving"
    VERIFYING = "verifying"
    FINISHING = "finishing"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"


_FINAL = frozenset({State.DONE, State.FAILED, State.ABORTED})


class TransferProtocolError(RemoteProtocolError):
    """The peer sent a transfer message that breaks the protocol."""

    def __init__(self, code: TransferCode, message: str, taskid: int | str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.taskid = taskid

    def peer_error(self) -> dict[str, Any]:
        """The ``7080`` telling the peer about this error."""
        return _peer_error(self.taskid, self.code, self.message)


class UnknownTask(TransferProtocolError):
    """A transfer message names a task that is not (or no longer) known."""


class TransferUsageError(LocalProtocolError):
    """The transfer machine was misused (a bug in the caller)."""


# --------------------------------------------------------------------------- events


class Event:
    """Base of the events a machine hands out (:meth:`Sender.events`)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Accepted(Event):
    """Sender: the receiver accepted the offer (again, after a resync), holding
    ``held_chunks`` of ``total_chunks`` chunks of ``chunk_size`` bytes."""

    chunk_size: int
    held_chunks: int
    total_chunks: int


@dataclass(frozen=True, slots=True)
class ChunkNeeded(Event):
    """Sender: read ``length`` bytes at ``offset`` and pass them to ``send_chunk(index, …)``."""

    index: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class ChunkReceived(Event):
    """Receiver: store ``data`` at ``offset``, then call ``chunk_stored(index)``."""

    index: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class VerifyNeeded(Event):
    """Receiver: every chunk is stored; compute the file's md5 and call ``check_md5``."""


@dataclass(frozen=True, slots=True)
class ChunksDiscarded(Event):
    """Receiver: these chunks are no longer trusted and will be received again."""

    indices: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Progress(Event):
    """Bytes the receiver holds (as far as this side knows) out of the file size."""

    done: int
    total: int


@dataclass(frozen=True, slots=True)
class Paused(Event):
    by_peer: bool


@dataclass(frozen=True, slots=True)
class Resumed(Event):
    by_peer: bool


@dataclass(frozen=True, slots=True)
class Completed(Event):
    """The receiver has the whole file and its md5 matched."""

    md5: str


@dataclass(frozen=True, slots=True)
class Failed(Event):
    """The transfer failed; ``by_peer``: the peer reported it (7080, or a refusal)."""

    code: TransferCode | int
    message: str
    by_peer: bool


@dataclass(frozen=True, slots=True)
class Aborted(Event):
    by_peer: bool
    message: str


@dataclass(frozen=True, slots=True)
class TransferStatistics:
    chunks_sent: int = 0  # 7001 sent
    chunks_resent: int = 0  # 7001 of a chunk this machine had sent before
    bytes_sent: int = 0  # chunk data bytes sent
    chunks_received: int = 0  # new chunks handed out (receiver)
    duplicates: int = 0  # chunks received that were held or waiting to be stored
    stale: int = 0  # messages of another session, ignored
    resyncs: int = 0  # offers after the first (sender)
    repairs: int = 0  # chunks discarded and asked for again (receiver)


# --------------------------------------------------------------------------- the 7080


def _peer_error(taskid: Any, code: int, message: str) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "command": CommandId.PEER_ERROR.value,
        "taskid": taskid,
        "result": int(code),
    }
    if message:
        msg["message"] = message[:MAX_MESSAGE_LENGTH]
    return msg
