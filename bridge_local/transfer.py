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
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import secrets
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from toxbridge.errors import LocalProtocolError, RemoteProtocolError

from .chunkmap import ChunkMap, ChunkMapError, chunk_count, from_wire, to_wire
from .protocol import CommandId

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

DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 512 * 1024
"""Largest chunk: its base64 form (699,052 characters) fits a 1 MiB JSON line."""
MAX_CHUNKS = 1 << 24
"""Most chunks of one file (a 2 MiB bitmap); :func:`choose_chunk_size` grows chunks to fit."""
DEFAULT_WINDOW = 16
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


# --------------------------------------------------------------------------- fields


def _fail(code: TransferCode, text: str, taskid: Any = None) -> TransferProtocolError:
    return TransferProtocolError(code, text, taskid)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(msg: Mapping[str, Any], name: str, lo: int = 0, hi: int = _INT63, **kw: Any) -> int:
    value = msg.get(name, kw["default"]) if "default" in kw else msg.get(name)
    if value is None:
        raise _fail(TransferCode.BAD_MESSAGE, f"missing field '{name}'", msg.get("taskid"))
    if not _is_int(value):
        raise _fail(
            TransferCode.BAD_MESSAGE, f"field '{name}' must be an integer", msg.get("taskid")
        )
    if not lo <= value <= hi:
        raise _fail(
            TransferCode.BAD_MESSAGE, f"field '{name}' must be in {lo}..{hi}", msg.get("taskid")
        )
    return value


def _str(msg: Mapping[str, Any], name: str, hi: int, *, required: bool = True) -> str | None:
    value = msg.get(name)
    if value is None:
        if required:
            raise _fail(TransferCode.BAD_MESSAGE, f"missing field '{name}'", msg.get("taskid"))
        return None
    if not isinstance(value, str):
        raise _fail(TransferCode.BAD_MESSAGE, f"field '{name}' must be a string", msg.get("taskid"))
    if not 1 <= len(value) <= hi or _SURROGATE.search(value):
        raise _fail(
            TransferCode.BAD_MESSAGE,
            f"field '{name}' must be 1..{hi} characters of valid Unicode",
            msg.get("taskid"),
        )
    return value


def _check_taskid(value: Any) -> int | str:
    if _is_int(value) and 0 <= value <= _INT63:
        return value
    if isinstance(value, str) and 1 <= len(value) <= MAX_ID_LENGTH:
        return value
    if value is None:
        raise _fail(TransferCode.BAD_MESSAGE, "missing field 'taskid'")
    raise _fail(
        TransferCode.BAD_MESSAGE,
        f"field 'taskid' must be an integer 0..2**63-1 or a string of 1..{MAX_ID_LENGTH}"
        " characters",
    )


def task_of(message: Any) -> int | str:
    """The ``taskid`` of a transfer message, for routing. Raises
    :class:`TransferProtocolError` (``BAD_MESSAGE``) if there is none or it is malformed."""
    if not isinstance(message, Mapping):
        raise _fail(TransferCode.BAD_MESSAGE, "a transfer message must be an object")
    return _check_taskid(message.get("taskid"))


def _same_task(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _range(msg: Mapping[str, Any]) -> tuple[int, int]:
    value = msg.get("range")
    if value is None:
        raise _fail(TransferCode.BAD_MESSAGE, "missing field 'range'", msg.get("taskid"))
    if not (
        isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value)
    ):
        raise _fail(
            TransferCode.BAD_MESSAGE, "field 'range' must be two integers", msg.get("taskid")
        )
    return value[0], value[1]


def _data(msg: Mapping[str, Any]) -> bytes:
    value = msg.get("data")
    if value is None:
        raise _fail(TransferCode.BAD_MESSAGE, "missing field 'data'", msg.get("taskid"))
    if isinstance(value, str):
        return _b64decode(value, msg.get("taskid"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise _fail(
        TransferCode.BAD_MESSAGE, "field 'data' must be bytes or base64 text", msg.get("taskid")
    )


def _b64decode(text: str, taskid: Any) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _fail(TransferCode.BAD_MESSAGE, "field 'data' is not valid base64", taskid) from None


def _peer_error(taskid: Any, code: int, message: str) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "command": CommandId.PEER_ERROR.value,
        "taskid": taskid,
        "result": int(code),
    }
    if message:
        msg["message"] = message[:MAX_MESSAGE_LENGTH]
    return msg


def _check_chunk_size(filesize: int, chunk_size: int) -> str | None:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        return f"chunk size {chunk_size} is not in 1..{MAX_CHUNK_SIZE}"
    if chunk_count(filesize, chunk_size) > MAX_CHUNKS:
        return f"chunk size {chunk_size} makes more than {MAX_CHUNKS} chunks of {filesize} bytes"
    return None


def choose_chunk_size(filesize: int, preferred: int = DEFAULT_CHUNK_SIZE) -> int:
    """``preferred`` clamped to 1..MAX_CHUNK_SIZE and grown so the file has at most
    :data:`MAX_CHUNKS` chunks. Raises ValueError for a file over 8 TiB."""
    if not 0 <= filesize <= MAX_FILE_SIZE:
        raise ValueError(f"file size {filesize} is not in 0..{MAX_FILE_SIZE}")
    size = min(max(preferred, 1), MAX_CHUNK_SIZE)
    return max(size, -(-filesize // MAX_CHUNKS))


# --------------------------------------------------------------------------- JSON form


def to_json(message: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of a message: ``data`` bytes become base64 text; the rest is kept."""
    out = dict(message)
    data = out.get("data")
    if isinstance(data, (bytes, bytearray, memoryview)):
        out["data"] = base64.b64encode(data).decode("ascii")
    return out


def from_json(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The dict form of a message decoded from JSON: base64 ``data`` becomes bytes.

    Raises :class:`TransferProtocolError` (``BAD_MESSAGE``) for data that is not base64.
    (:meth:`Sender.receive` and :meth:`Receiver.receive` also accept the JSON form as it is.)
    """
    out = dict(obj)
    if isinstance(out.get("data"), str):
        out["data"] = _b64decode(out["data"], out.get("taskid"))
    return out


# --------------------------------------------------------------------------- offers


@dataclass(frozen=True, slots=True)
class Offer:
    """A parsed ``7000``."""

    taskid: int | str
    filename: str
    filesize: int
    md5: str  # lowercase hex
    session: int
    fileid: str | None = None

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "command": CommandId.TRANSFER_START.value,
            "taskid": self.taskid,
            "filename": self.filename,
            "filesize": self.filesize,
            "md5": self.md5,
            "session": self.session,
        }
        if self.fileid is not None:
            msg["fileid"] = self.fileid
        return msg


def parse_offer(message: Any) -> Offer:
    """Validate a ``7000``. ``filename`` is for display only (it never becomes a path).

    Raises :class:`TransferProtocolError`: ``BAD_MESSAGE`` for a missing field, a wrong type
    or format; ``TOO_LARGE`` for a file over 8 TiB.
    """
    taskid = task_of(message)
    if message.get("command") != CommandId.TRANSFER_START:
        raise _fail(TransferCode.WRONG_STATE, "an offer is a 7000", taskid)
    filename = _str(message, "filename", MAX_FILENAME_LENGTH)
    assert filename is not None
    if _CONTROL.search(filename):
        raise _fail(
            TransferCode.BAD_MESSAGE, "field 'filename' must not contain control characters", taskid
        )
    filesize = _int(message, "filesize")
    if filesize > MAX_FILE_SIZE:
        raise _fail(TransferCode.TOO_LARGE, f"a file is at most {MAX_FILE_SIZE} bytes", taskid)
    md5 = _str(message, "md5", 32)
    assert md5 is not None
    if not _MD5.fullmatch(md5):
        raise _fail(TransferCode.BAD_MESSAGE, "field 'md5' must be 32 hexadecimal digits", taskid)
    session = _int(message, "session", default=0)
    fileid = _str(message, "fileid", MAX_ID_LENGTH, required=False)
    return Offer(taskid, filename, filesize, md5.lower(), session, fileid)


def refuse_offer(offer: Offer, code: TransferCode, message: str = "") -> dict[str, Any]:
    """The ``8000`` refusing an offer (``code`` not OK): over a limit, no space, unwanted."""
    if code == TransferCode.OK:
        raise ValueError("a refusal needs an error code")
    msg: dict[str, Any] = {
        "command": CommandId.TRANSFER_ACCEPT.value,
        "taskid": offer.taskid,
        "result": int(code),
        "filesize": offer.filesize,
        "suggest_chunksize": 0,
        "chunk_map": [],
        "session": offer.session,
    }
    if message:
        msg["message"] = message[:MAX_MESSAGE_LENGTH]
    return msg


def file_info_reply(
    *,
    fileid: str,
    taskid: int | str,
    type: InitType | int,
    state: FileState,
    filesize: int = 0,
    suggest_chunksize: int = DEFAULT_CHUNK_SIZE,
    md5: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """``5001``, the answer to a ``4001``: the file's state and its size."""
    reply: dict[str, Any] = {
        "command": CommandId.FILE_INFO.value,
        "fileid": fileid,
        "taskid": taskid,
        "type": int(type),
        "result": int(state),
        "filesize": filesize,
        "suggest_chunksize": suggest_chunksize,
    }
    if md5 is not None:
        reply["md5"] = md5
    if filename is not None:
        reply["filename"] = filename
    return reply


# --------------------------------------------------------------------------- machines


class _Transfer:
    """What both roles share: state, outbox, events, pause/abort/fail, statistics."""

    ROLE: Role

    def __init__(self, taskid: int | str, filesize: int, md5: str, state: State) -> None:
        self.taskid = _check_taskid(taskid)
        if not 0 <= filesize <= MAX_FILE_SIZE:
            raise TransferUsageError(f"file size {filesize} is not in 0..{MAX_FILE_SIZE}")
        if not isinstance(md5, str) or not _MD5.fullmatch(md5):
            raise TransferUsageError("md5 must be 32 hexadecimal digits")
        self.filesize = filesize
        self.md5 = md5.lower()
        self.state = state
        self.session: int | None = 0
        self.chunk_size = 0  # 0 until agreed
        self.paused_by_local = False
        self.paused_by_peer = False
        self.error: tuple[int, str] | None = None  # (code, message) once FAILED
        self._chunks = ChunkMap(0)  # sender: the receiver's map as known; receiver: its own
        self._out: list[dict[str, Any]] = []
        self._events: deque[Event] = deque()
        self._stats = TransferStatistics()

    # ------------------------------------------------------------------ shell interface

    def data_to_send(self) -> list[dict[str, Any]]:
        """The messages to send to the peer, in order (each taken once)."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Event]:
        """Take the pending events, in order (events queued while iterating are included)."""
        while self._events:
            yield self._events.popleft()

    def statistics(self) -> TransferStatistics:
        return self._stats

    @property
    def paused(self) -> bool:
        return self.paused_by_local or self.paused_by_peer

    @property
    def finished(self) -> bool:
        """DONE, FAILED or ABORTED: nothing more will happen."""
        return self.state in _FINAL

    @property
    def chunks(self) -> ChunkMap:
        """A copy of the chunk map: the receiver's own, or the sender's view of it."""
        return self._chunks.copy()

    @property
    def done_bytes(self) -> int:
        held = len(self._chunks)
        if not held:
            return 0
        size = held * self.chunk_size
        last = self._chunks.count - 1
        if last in self._chunks:
            size -= last * self.chunk_size + self.chunk_size - self.filesize
        return size

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` should be called next (None: no timer running)."""
        return None

    def handle_timeout(self, now: float) -> None:
        """Act on an expired timer (a no-op before :meth:`next_deadline`)."""

    def pause(self) -> None:
        """Stop sending chunks (both sides) and tell the peer (``7070`` PAUSE)."""
        self._require_live("pause")
        if not self.paused_by_local:
            self.paused_by_local = True
            self._send_control(Control.PAUSE)

    def resume(self, now: float) -> None:
        """Lift our pause and tell the peer (``7070`` RESUME)."""
        self._require_live("resume")
        if self.paused_by_local:
            self.paused_by_local = False
            self._send_control(Control.RESUME)
            self._unpaused(now)

    def abort(self, message: str = "") -> None:
        """Give the transfer up for good and tell the peer (``7070`` ABORT)."""
        if self.finished:
            return
        self._send_control(Control.ABORT, message)
        self.state = State.ABORTED
        self._events.append(Aborted(False, message))

    def fail(self, code: TransferCode, message: str) -> None:
        """Fail on a local error (disk full, read error …) and tell the peer (``7080``)."""
        if code == TransferCode.OK:
            raise TransferUsageError("a failure needs an error code")
        if not self.finished:
            self._failed(code, message, by_peer=False, notify=True)

    def receive(self, message: Mapping[str, Any], now: float) -> None:
        """Process one message from the peer (dict form or JSON form).

        Raises :class:`UnknownTask` for another task's message (nothing changes), and
        :class:`TransferProtocolError` for a message that breaks the protocol (the machine
        has failed and queued a ``7080``; its chunk map is unchanged).
        """
        if not isinstance(message, Mapping):
            raise _fail(TransferCode.BAD_MESSAGE, "a transfer message must be an object")
        taskid = message.get("taskid")
        if not _same_task(taskid, self.taskid):
            raise UnknownTask(
                TransferCode.UNKNOWN_TASK,
                f"message for task {taskid!r}, not {self.taskid!r}",
                taskid,
            )
        command = message.get("command")
        if self.finished:
            self._receive_final(command, message)
            return
        try:
            if command == CommandId.TRANSFER_PAUSE:
                self._receive_control(message, now)
            elif command == CommandId.PEER_ERROR:
                code = _int(message, "result", lo=-(2**31), hi=2**31 - 1)
                text = _str(message, "message", MAX_MESSAGE_LENGTH, required=False) or ""
                self._failed(code, text or "the peer reported an error", by_peer=True)
            else:
                if type(command) is not int:  # a list or map from the wire is unhashable
                    raise _fail(TransferCode.BAD_MESSAGE, f"command {command!r} is not a number",
                                self.taskid)
                handler = self._handlers().get(command)
                if handler is None:
                    raise _fail(
                        TransferCode.WRONG_STATE,
                        f"command {command!r} is not sent to a {self.ROLE.value}",
                        self.taskid,
                    )
                handler(message, now)
        except TransferProtocolError as exc:
            exc.taskid = self.taskid
            self._failed(exc.code, exc.message, by_peer=False, notify=True)
            raise

    # ------------------------------------------------------------------ internals

    def _handlers(self) -> dict[int, Any]:
        raise NotImplementedError

    def _require_live(self, what: str) -> None:
        if self.finished:
            raise TransferUsageError(f"cannot {what} a transfer that is {self.state.value}")

    def _send(self, command: CommandId, **fields: Any) -> None:
        self._out.append({"command": command.value, "taskid": self.taskid, **fields})

    def _send_control(self, control: Control, message: str = "") -> None:
        fields: dict[str, Any] = {"result": control.value}
        if message:
            fields["message"] = message[:MAX_MESSAGE_LENGTH]
        self._send(CommandId.TRANSFER_PAUSE, **fields)

    def _receive_control(self, message: Mapping[str, Any], now: float) -> None:
        value = _int(message, "result", lo=-(2**31), hi=2**31 - 1)
        if value == Control.PAUSE:
            if not self.paused_by_peer:
                self.paused_by_peer = True
                self._events.append(Paused(True))
        elif value == Control.RESUME:
            if self.paused_by_peer:
                self.paused_by_peer = False
                self._events.append(Resumed(True))
                self._unpaused(now)
        elif value == Control.ABORT:
            text = _str(message, "message", MAX_MESSAGE_LENGTH, required=False) or ""
            self.state = State.ABORTED
            self._events.append(Aborted(True, text))
        else:
            raise _fail(
                TransferCode.BAD_MESSAGE,
                f"a 7070 result is 0 (resume), 1 (pause) or 2 (abort), not {value}",
                self.taskid,
            )

    def _unpaused(self, now: float) -> None:
        pass

    def _failed(self, code: int, message: str, *, by_peer: bool, notify: bool = False) -> None:
        if notify:
            self._out.append(_peer_error(self.taskid, code, message))
        self.state = State.FAILED
        self.error = (int(code), message)
        try:
            code = TransferCode(code)
        except ValueError:
            pass
        self._events.append(Failed(code, message, by_peer))

    def _receive_final(self, command: Any, message: Mapping[str, Any]) -> None:
        if command in (CommandId.TRANSFER_PAUSE, CommandId.PEER_ERROR):
            return  # never answer an error with an error
        if self.state is State.FAILED:
            assert self.error is not None
            self._out.append(_peer_error(self.taskid, self.error[0], self.error[1]))
        elif self.state is State.ABORTED:
            self._send_control(Control.ABORT, "the transfer was aborted")

    def _progress(self) -> None:
        self._events.append(Progress(self.done_bytes, self.filesize))

    def _map_wire(self) -> list[dict[str, Any]]:
        return to_wire(self._chunks, self.filesize, self.chunk_size)

    def _bump(self, **counts: int) -> None:
        self._stats = replace(
            self._stats, **{k: getattr(self._stats, k) + v for k, v in counts.items()}
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
