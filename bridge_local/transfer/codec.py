"""The transfer messages' fields, checked (sans-IO): parsing helpers, offers (``7000``), the
refusing ``8000``, the ``5001`` reply and the JSON form of chunk data (base64)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .chunkmap import chunk_count
from ..protocol import CommandId
from .types import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNKS,
    MAX_CHUNK_SIZE,
    MAX_FILENAME_LENGTH,
    MAX_FILE_SIZE,
    MAX_ID_LENGTH,
    MAX_MESSAGE_LENGTH,
    _CONTROL,
    _INT63,
    _MD5,
    _SURROGATE,
    FileState,
    InitType,
    TransferCode,
    TransferProtocolError,
)


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
