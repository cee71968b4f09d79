"""The JSON command protocol of the app port (sans-IO).

Apps send one JSON object per line (UTF-8, ``\\n``-terminated). This module splits the byte
stream into lines (:class:`LineDecoder`), validates a line into a typed command
(:func:`decode_command`, or :func:`parse_command` for an already-decoded dict, e.g. one that
came msgpack-encoded from the other bridge), checks who may issue it (:func:`authorize`), and
builds and encodes replies (the ``*_reply`` helpers, :func:`encode_reply`).

Every failure is a :class:`CommandError` carrying an :class:`ErrorCode`; its
:meth:`~CommandError.reply` is the ``9000`` error reply to send back. docs/protocol.md is the
reference for client writers.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from toxbridge.errors import RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_LINE_LENGTH",
    "HISTORY_DEFAULT_LIMIT",
    "HISTORY_MAX_LIMIT",
    "MAX_MSG_LENGTH",
    "MAX_NAME_LENGTH",
    "ChatMessage",
    "Command",
    "CommandError",
    "CommandId",
    "ErrorCode",
    "FileCommand",
    "History",
    "LineDecoder",
    "LineTooLong",
    "ListUsers",
    "Login",
    "MessageType",
    "ResultCode",
    "SendMessage",
    "User",
    "authorize",
    "decode_command",
    "encode_reply",
    "error_reply",
    "history_reply",
    "login_reply",
    "make_token",
    "message_event",
    "parse_command",
    "send_reply",
    "status_event",
    "users_reply",
]

DEFAULT_MAX_LINE_LENGTH = 1024 * 1024
MAX_NAME_LENGTH = 64
MAX_TOKEN_LENGTH = 128
MAX_MSG_LENGTH = 1024 * 1024  # characters; a line is bounded in bytes anyway
MAX_FILENAME_LENGTH = 255
MAX_ID_LENGTH = 128  # fileid, taskid
HISTORY_DEFAULT_LIMIT = 100
HISTORY_MAX_LIMIT = 1000
_INT32 = 2**31 - 1
_INT63 = 2**63 - 1


class CommandId(enum.IntEnum):
    """The ``command`` numbers."""

    LOGIN = 1000
    USERS = 1001
    SEND = 1002
    HISTORY = 1003
    LOGIN_REPLY = 2000
    USERS_REPLY = 2001
    SEND_REPLY = 2002
    MESSAGE = 2003
    HISTORY_REPLY = 2004
    ONLINE = 301
    OFFLINE = 302
    FILE_INIT = 4001
    FILE_STATUS = 4002
    FILE_INFO = 5001
    FILE_STATUS_REPLY = 5002
    FILE_AVAILABLE = 5003
    TRANSFER_START = 7000
    CHUNK = 7001
    TRANSFER_END = 7010
    TRANSFER_PAUSE = 7070
    PEER_ERROR = 7080
    TRANSFER_ACCEPT = 8000
    CHUNK_ACK = 8001
    TRANSFER_DONE = 8010
    ERROR = 9000


class ResultCode(enum.IntEnum):
    """The result codes of the source protocol (100 friend, 200 message, 300 status)."""

    FRIEND_ADDED = 101
    FRIEND_FAILED = 102
    ALREADY_FRIEND = 103
    FRIEND_REQUEST_SENT = 104
    DELIVERED = 201
    UNKNOWN_TARGET = 202
    SEND_FAILED = 203
    TARGET_OFFLINE = 204
    ONLINE = 301
    OFFLINE = 302


class ErrorCode(enum.IntEnum):
    """The ``code`` of a ``9000`` error reply."""

    MALFORMED_JSON = 9001  # not UTF-8, or not JSON
    LINE_TOO_LONG = 9002
    NOT_AN_OBJECT = 9003
    UNKNOWN_COMMAND = 9004
    MISSING_FIELD = 9005
    WRONG_TYPE = 9006
    INVALID_VALUE = 9007  # right type, out of range (length, bounds, format)
    NOT_LOGGED_IN = 9008
    TOKEN_MISMATCH = 9009  # acting for a token other than one's own
    ALREADY_LOGGED_IN = 9010
    NOT_IMPLEMENTED = 9011  # a reserved command this server does not serve yet
    INTERNAL_ERROR = 9012  # the server failed; the request may be retried
    FORBIDDEN = 9013  # another account's process, and this port takes no app token; closed
    APP_TOKEN_MISSING = 9014  # another account's login without "apptoken"; closed
    APP_TOKEN_WRONG = 9015  # ... with a wrong one; closed


class MessageType(enum.IntEnum):
    """Conventional values of a message's ``type``; any integer 0..2**31-1 is carried."""

    TEXT = 1
    FILE = 2  # requires the file fields


class CommandError(RemoteProtocolError):
    """The client sent a request that cannot be served as it is."""

    def __init__(self, code: ErrorCode, message: str, request: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request = request

    def reply(self) -> dict[str, Any]:
        """The ``9000`` error reply for this error."""
        return error_reply(self.code, self.message, self.request)


# --------------------------------------------------------------------------- lines


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line went over the limit; it is skipped up to its newline."""

    limit: int

    def error(self) -> CommandError:
        return CommandError(ErrorCode.LINE_TOO_LONG, f"line longer than {self.limit} bytes")


class LineDecoder:
    """Splits a byte stream into lines, bounded.

    :meth:`receive_data` adds bytes (``b""`` marks the end of the stream); :meth:`next_line`
    returns a line without its ``\\n``, a :class:`LineTooLong` event, or None when no complete
    line is buffered (then check :attr:`eof`). A line longer than ``max_line_length`` bytes is
    reported once, as soon as it is known, and skipped through its newline; the lines after it
    are served normally. Blank lines are skipped. An unterminated last line at the end of the
    stream is still returned. Feed more data only after :meth:`next_line` returned None, so the
    buffer stays under ``max_line_length``.
    """

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        if max_line_length < 1:
            raise ValueError("max_line_length must be at least 1")
        self.max_line_length = max_line_length
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._skipping = False  # inside an over-long line
        self.eof = False

    def receive_data(self, data: bytes) -> None:
        if self.eof and data:
            raise ValueError("data after end of stream")
        if data:
            self._buf += data
        else:
            self.eof = True

    def next_line(self) -> bytes | LineTooLong | None:
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buf)
                if self._skipping:
                    self._buf.clear()
                    self._scanned = 0
                    return None
                if len(self._buf) > self.max_line_length:
                    self._buf.clear()
                    self._scanned = 0
                    self._skipping = not self.eof
                    return LineTooLong(self.max_line_length)
                if self.eof and self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    self._scanned = 0
                    if line.strip():
                        return line
                return None
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]  # cheap: bytearray drops its head without moving it
            self._scanned = 0
            if self._skipping:
                self._skipping = False
                continue
            if end > self.max_line_length:
                return LineTooLong(self.max_line_length)
            if line.strip():
                return line


# --------------------------------------------------------------------------- commands


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_MD5 = re.compile("[0-9a-fA-F]{32}")


@dataclass(frozen=True, slots=True)
class _Field:
    """One field of a command's table: wire name, kind and bounds."""

    name: str
    kind: str  # "str", "int", "number", "list", "data" (bytes or str), "range", "id"
    required: bool = True
    lo: int = 0  # least value (int, number); a str with lo=1 must not be empty
    hi: int = _INT63  # greatest length or value
    check: str = ""  # "name", "md5", "side": extra format rules for strings


def _check(spec: _Field, value: Any, request: int) -> Any:
    kind = spec.kind
    # Fast paths for the common valid cases (same result as the full checks below): this
    # runs for every field of every message, on both bridges.
    if kind == "str":
        if (type(value) is str and not spec.check and value.isascii()
                and spec.lo <= len(value) <= spec.hi):
            return value
    elif kind == "int" and type(value) is int and spec.lo <= value <= spec.hi:
        return value

    def fail(code: ErrorCode, what: str) -> CommandError:
        return CommandError(code, f"field '{spec.name}' {what}", request)

    if kind == "id":  # the seed gives task ids no type: a non-negative integer or a string
        if isinstance(value, int) and not isinstance(value, bool):
            spec, kind = _Field(spec.name, "int"), "int"
        elif isinstance(value, str):
            spec, kind = _Field(spec.name, "str", lo=1, hi=MAX_ID_LENGTH), "str"
        else:
            raise fail(ErrorCode.WRONG_TYPE, "must be a string or an integer")
    if kind == "str":
        if not isinstance(value, str):
            raise fail(ErrorCode.WRONG_TYPE, "must be a string")
        if len(value) < spec.lo:
            raise fail(ErrorCode.INVALID_VALUE, "must not be empty")
        if len(value) > spec.hi:
            raise fail(ErrorCode.INVALID_VALUE, f"must be at most {spec.hi} characters")
        if not value.isascii() and _SURROGATE.search(value):  # lone surrogates: no UTF-8
            raise fail(ErrorCode.INVALID_VALUE, "is not valid Unicode (lone surrogate)")
        if spec.check == "name" and _CONTROL.search(value):
            raise fail(ErrorCode.INVALID_VALUE, "must not contain control characters")
        if spec.check == "md5" and not _MD5.fullmatch(value):
            raise fail(ErrorCode.INVALID_VALUE, "must be 32 hexadecimal digits")
        if spec.check == "side" and value not in ("local", "peer"):
            raise fail(ErrorCode.INVALID_VALUE, "must be 'local' or 'peer'")
    elif kind in ("int", "number"):
        ok = (int, float) if kind == "number" else int
        if not isinstance(value, ok) or isinstance(value, bool):
            raise fail(
                ErrorCode.WRONG_TYPE,
                "must be a number" if kind == "number" else "must be an integer",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(ErrorCode.INVALID_VALUE, "must be finite")
        if not spec.lo <= value <= spec.hi:
            raise fail(ErrorCode.INVALID_VALUE, f"must be in {spec.lo}..{spec.hi}")
    elif kind == "list":
        if not isinstance(value, list):
            raise fail(ErrorCode.WRONG_TYPE, "must be an array")
    elif kind == "data":
        if not isinstance(value, (bytes, str)):
            raise fail(ErrorCode.WRONG_TYPE, "must be bytes or a string")
    elif kind == "range":
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise fail(ErrorCode.WRONG_TYPE, "must be an array of two integers")
        if not 0 <= value[0] <= value[1] <= _INT63:
            raise fail(ErrorCode.INVALID_VALUE, "must be [start, end] with 0 <= start <= end")
        value = tuple(value)
    return value


_TOKEN = _Field("token", "str", lo=1, hi=MAX_TOKEN_LENGTH)
_NAME = _Field("name", "str", lo=1, hi=MAX_NAME_LENGTH, check="name")
_IP = _Field("ip", "str", hi=64)
_PORT = _Field("port", "int", hi=65535)
_GOAL = _Field("goaltoken", "str", lo=1, hi=MAX_TOKEN_LENGTH)
_FILE_FIELDS = (
    _Field("filename", "str", False, lo=1, hi=MAX_FILENAME_LENGTH, check="name"),
    _Field("filesize", "int", False),
    _Field("md5", "str", False, check="md5"),
    _Field("fileid", "str", False, lo=1, hi=MAX_ID_LENGTH),
)


class Command:
    """Base of the typed commands; ``ID`` is the wire number, ``FIELDS`` the table."""

    __slots__ = ()
    ID: ClassVar[CommandId]
    FIELDS: ClassVar[tuple[_Field, ...]]


@dataclass(frozen=True, slots=True)
class Login(Command):
    """``1000``: log in as ``name`` (answered by ``2000``)."""

    ID: ClassVar[CommandId] = CommandId.LOGIN
    FIELDS: ClassVar[tuple[_Field, ...]] = (_NAME,)
    name: str


@dataclass(frozen=True, slots=True)
class ListUsers(Command):
    """``1001``: list the users online on both bridges (answered by ``2001``)."""

    ID: ClassVar[CommandId] = CommandId.USERS
    FIELDS: ClassVar[tuple[_Field, ...]] = (_TOKEN,)
    token: str


@dataclass(frozen=True, slots=True)
class SendMessage(Command):
    """``1002``: send a message (answered by ``2002``); file fields come all four or none."""

    ID: ClassVar[CommandId] = CommandId.SEND
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _TOKEN,
        _GOAL,
        _Field("type", "int", hi=_INT32),
        _Field("msg", "str", hi=MAX_MSG_LENGTH),
        *_FILE_FIELDS,
    )
    token: str
    goaltoken: str
    type: int
    msg: str
    filename: str | None = None
    filesize: int | None = None
    md5: str | None = None
    fileid: str | None = None

    @property
    def is_file(self) -> bool:
        return self.fileid is not None


@dataclass(frozen=True, slots=True)
class History(Command):
    """``1003``: the messages between two users, oldest first (answered by ``2004``).

    ``limit``: at most this many, the most recent ones (default 100, at most 1000);
    ``before``: only messages strictly older than this time (None: up to now).
    """

    ID: ClassVar[CommandId] = CommandId.HISTORY
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _TOKEN,
        _GOAL,
        _Field("limit", "int", False, lo=1, hi=HISTORY_MAX_LIMIT),
        _Field("before", "number", False, lo=0, hi=2**53),
    )
    token: str
    goaltoken: str
    limit: int = HISTORY_DEFAULT_LIMIT
    before: float | None = None


@dataclass(frozen=True, slots=True)
class FileCommand(Command):
    """A file-transfer command (4001, 4002, 7000 to 7080, 8000 to 8010), types checked only.

    ``fields`` are the seed protocol's fields, checked; ``raw`` is the whole request as
    received (the transfer machine needs ``md5``, ``session``, ``message`` and takes the
    dict itself: ``bridge_local.transfer`` validates the rest).
    """

    command: CommandId
    fields: Mapping[str, Any]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def token(self) -> str | None:
        token = self.fields.get("token")
        return token if isinstance(token, str) else None


_RESULT = _Field("result", "int", lo=-_INT32 - 1, hi=_INT32)
_TASK = _Field("taskid", "id")
_FILE_TABLES: dict[int, tuple[_Field, ...]] = {
    CommandId.FILE_INIT: (
        _Field("fileid", "str", lo=1, hi=MAX_ID_LENGTH),
        _TASK,
        _Field("type", "int", hi=_INT32),
        _TOKEN,
    ),
    CommandId.FILE_STATUS: (_Field("fileid", "str", lo=1, hi=MAX_ID_LENGTH), _TOKEN),
    CommandId.TRANSFER_START: (
        _TASK,
        _Field("filename", "str", lo=1, hi=MAX_FILENAME_LENGTH, check="name"),
        _Field("filesize", "int"),
        _Field("md5", "str", False, check="md5"),
        _Field("session", "int", False),
        _Field("fileid", "str", False, lo=1, hi=MAX_ID_LENGTH),
    ),
    CommandId.CHUNK: (
        _TASK,
        _Field("chunk_size", "int"),
        _Field("range", "range"),
        _Field("data", "data"),
    ),
    CommandId.TRANSFER_END: (_TASK, _RESULT),
    CommandId.TRANSFER_PAUSE: (_TASK, _RESULT),
    CommandId.PEER_ERROR: (_TASK, _RESULT),
    CommandId.TRANSFER_ACCEPT: (
        _TASK,
        _RESULT,
        _Field("filesize", "int"),
        _Field("suggest_chunksize", "int"),
        _Field("chunk_map", "list"),
    ),
    CommandId.CHUNK_ACK: (
        _TASK,
        _Field("chunk_size", "int"),
        _Field("range", "range"),
        _RESULT,
        _Field("chunk_map", "list"),
    ),
    CommandId.TRANSFER_DONE: (_TASK, _RESULT),
}

_COMMANDS: dict[int, type[Command]] = {c.ID: c for c in (Login, ListUsers, SendMessage, History)}
# Every other known number is a reply or an event: the server sends it, never receives it.
_SERVER_SENT = frozenset(CommandId) - _COMMANDS.keys() - _FILE_TABLES.keys()


def _values(table: tuple[_Field, ...], obj: Mapping[str, Any], request: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in table:
        value = obj.get(spec.name)
        if value is None:  # absent and null are the same
            if spec.required:
                raise CommandError(ErrorCode.MISSING_FIELD, f"missing field '{spec.name}'", request)
            continue
        values[spec.name] = _check(spec, value, request)
    return values


def parse_command(obj: Any) -> Command:
    """Validate a decoded request (a JSON object, or a dict unpacked from msgpack).

    Unknown fields are ignored; a null field counts as absent. Raises :class:`CommandError`.
    """
    if not isinstance(obj, dict):
        raise CommandError(
            ErrorCode.NOT_AN_OBJECT, f"a request must be a JSON object, not {_json_kind(obj)}"
        )
    number = obj.get("command")
    if number is None:
        raise CommandError(ErrorCode.MISSING_FIELD, "missing field 'command'")
    if not isinstance(number, int) or isinstance(number, bool):
        raise CommandError(ErrorCode.WRONG_TYPE, "field 'command' must be an integer")
    if number in _COMMANDS:
        cls = _COMMANDS[number]
        values = _values(cls.FIELDS, obj, number)
        if cls is SendMessage:
            _check_file_fields(values, number)
        return cls(**values)
    if number in _FILE_TABLES:
        values = _values(_FILE_TABLES[number], obj, number)
        return FileCommand(CommandId(number), MappingProxyType(values), MappingProxyType(obj))
    if number in _SERVER_SENT:
        raise CommandError(
            ErrorCode.UNKNOWN_COMMAND, f"command {number} is sent by the server, not to it", number
        )
    raise CommandError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {number}", number)


def _check_file_fields(values: dict[str, Any], request: int) -> None:
    present = [f.name for f in _FILE_FIELDS if f.name in values]
    if present or values["type"] == MessageType.FILE:
        for f in _FILE_FIELDS:
            if f.name not in values:
                raise CommandError(
                    ErrorCode.MISSING_FIELD,
                    f"missing field '{f.name}' (a file message needs all four file fields)",
                    request,
                )


def _json_kind(obj: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(obj), "a number" if isinstance(obj, (int, float)) else type(obj).__name__
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads would accept NaN and Infinity


# Built once: json.loads/dumps with arguments build a new decoder/encoder at every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode_command(line: bytes | bytearray | str) -> Command:
    """Decode and validate one request line. Raises :class:`CommandError`, nothing else."""
    try:
        text = line if isinstance(line, str) else bytes(line).decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(ErrorCode.MALFORMED_JSON, "line is not valid UTF-8") from None
    try:
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            ErrorCode.MALFORMED_JSON, f"malformed JSON: {exc.msg} at column {exc.colno}"
        ) from None
    except RecursionError:
        raise CommandError(ErrorCode.MALFORMED_JSON, "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer over Python's digit limit
        text = str(exc)
        if "digits" in text:
            text = "integer too long"
        raise CommandError(ErrorCode.MALFORMED_JSON, f"malformed JSON: {text}") from None
    return parse_command(obj)


def authorize(command: Command, session_token: str | None) -> None:
    """Check that a connection logged in as ``session_token`` (None: not logged in) may send
    ``command``: login only once, everything else only after it and only as itself.

    Raises :class:`CommandError`.
    """
    request = command.command if isinstance(command, FileCommand) else command.ID
    if isinstance(command, Login):
        if session_token is not None:
            raise CommandError(
                ErrorCode.ALREADY_LOGGED_IN, "this connection is already logged in", request
            )
        return
    if session_token is None:
        raise CommandError(ErrorCode.NOT_LOGGED_IN, "log in first (command 1000)", request)
    token = getattr(command, "token", None)
    if token is not None and token != session_token:
        raise CommandError(
            ErrorCode.TOKEN_MISMATCH, "token is not the one this connection logged in with", request
        )


def make_token(bridge_public_key: bytes, name: str) -> str:
    """The token of user ``name`` on the bridge with this Tox public key.

    32 lowercase hex digits: blake2b-128 of key and UTF-8 name, personalised for toxbridge.
    Stable for a name on a bridge, distinct across bridges. Not a secret.
    """
    if len(bridge_public_key) != 32:
        raise ValueError(f"a Tox public key is 32 bytes, not {len(bridge_public_key)}")
    digest = hashlib.blake2b(
        bridge_public_key + name.encode("utf-8"), digest_size=16, person=b"toxbridge-token"
    )
    return digest.hexdigest()


# --------------------------------------------------------------------------- replies


_USER_FIELDS = (_TOKEN, _NAME, _IP, _PORT, _Field("side", "str", False, check="side"))
_MESSAGE_FIELDS = (
    _Field("srctoken", "str", lo=1, hi=MAX_TOKEN_LENGTH),
    _GOAL,
    _NAME,
    _Field("time", "number", hi=2**53),
    _IP,
    _PORT,
    *SendMessage.FIELDS[2:],  # type, msg and the file fields, as sent
)


def _record_values(table: tuple[_Field, ...], obj: Any, request: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CommandError(
            ErrorCode.NOT_AN_OBJECT, f"a record must be an object, not {_json_kind(obj)}", request
        )
    return _values(table, obj, request)


@dataclass(frozen=True, slots=True)
class User:
    """A user online on one of the two bridges."""

    token: str
    name: str
    ip: str
    port: int
    side: str = "local"  # "local" (this bridge) or "peer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "name": self.name,
            "ip": self.ip,
            "port": self.port,
            "side": self.side,
        }

    @classmethod
    def from_dict(cls, obj: Any) -> User:
        """Validate a user record (from a ``2001``/``2000`` or the peer bridge).

        Raises :class:`CommandError`."""
        return cls(**_record_values(_USER_FIELDS, obj, CommandId.USERS_REPLY))


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message as delivered (``2003``) and listed in history (``2004``)."""

    srctoken: str
    goaltoken: str
    name: str  # the sender's name
    time: float  # Unix time, seconds
    ip: str
    port: int
    type: int
    msg: str
    filename: str | None = None
    filesize: int | None = None
    md5: str | None = None
    fileid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire fields; absent file fields are left out."""
        # Spelled out rather than through dataclasses.fields(): this runs several times per
        # message (store, wire, 2003 event) and fields() dominated the profile.
        d = {"srctoken": self.srctoken, "goaltoken": self.goaltoken, "name": self.name,
             "time": self.time, "ip": self.ip, "port": self.port, "type": self.type,
             "msg": self.msg}
        if self.filename is not None:
            d["filename"] = self.filename
        if self.filesize is not None:
            d["filesize"] = self.filesize
        if self.md5 is not None:
            d["md5"] = self.md5
        if self.fileid is not None:
            d["fileid"] = self.fileid
        return d

    @classmethod
    def from_dict(cls, obj: Any) -> ChatMessage:
        """Validate a message record (a ``2003`` or an entry of ``2004``; other keys ignored).

        Raises :class:`CommandError`."""
        values = _record_values(_MESSAGE_FIELDS, obj, CommandId.MESSAGE)
        _check_file_fields(values, CommandId.MESSAGE)
        return cls(**values)


def login_reply(user: User) -> dict[str, Any]:
    return {"command": CommandId.LOGIN_REPLY.value, **user.to_dict()}


def users_reply(users: Iterable[User]) -> dict[str, Any]:
    return {"command": CommandId.USERS_REPLY.value, "users": [u.to_dict() for u in users]}


def send_reply(code: ResultCode, reason: str | None = None) -> dict[str, Any]:
    """``2002``: ``result`` is true when the message was accepted (201 delivered, 204 stored
    for a user who is offline); ``reason`` is required with 203."""
    if code not in (
        ResultCode.DELIVERED,
        ResultCode.UNKNOWN_TARGET,
        ResultCode.SEND_FAILED,
        ResultCode.TARGET_OFFLINE,
    ):
        raise ValueError(f"{code!r} is not a send result")
    if code == ResultCode.SEND_FAILED and not reason:
        raise ValueError("a 203 reply says why")
    reply: dict[str, Any] = {
        "command": CommandId.SEND_REPLY.value,
        "result": code in (ResultCode.DELIVERED, ResultCode.TARGET_OFFLINE),
        "code": int(code),
    }
    if reason:
        reply["reason"] = reason
    return reply


def message_event(message: ChatMessage) -> dict[str, Any]:
    """``2003``: a message delivered to its target."""
    return {"command": CommandId.MESSAGE.value, **message.to_dict()}


def history_reply(messages: Iterable[ChatMessage]) -> dict[str, Any]:
    return {"command": CommandId.HISTORY_REPLY.value, "messages": [m.to_dict() for m in messages]}


def status_event(
    code: ResultCode, side: str, token: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """``301``/``302``: a user (token and name given) or, without them, the peer bridge itself
    came online or went offline."""
    if code not in (ResultCode.ONLINE, ResultCode.OFFLINE):
        raise ValueError(f"{code!r} is not a status code")
    if side not in ("local", "peer"):
        raise ValueError(f"side must be 'local' or 'peer', not {side!r}")
    event: dict[str, Any] = {"command": int(code), "side": side}
    if token is not None:
        event["token"] = token
    if name is not None:
        event["name"] = name
    return event


def error_reply(code: ErrorCode, message: str, request: int | None = None) -> dict[str, Any]:
    """``9000``: ``request`` is the number of the offending command, when known."""
    reply: dict[str, Any] = {
        "command": CommandId.ERROR.value,
        "code": int(code),
        "message": message,
    }
    if request is not None:
        reply["request"] = request
    return reply


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    """One reply line: compact JSON, UTF-8, ``\\n``-terminated.

    Raises ValueError/TypeError for what JSON cannot carry (a bug in the caller): NaN,
    bytes, lone surrogates.
    """
    return (_ENCODER.encode(reply) + "\n").encode("utf-8")
