"""The requests an app sends: typed commands, validated from a line or a decoded dict, and
who may send them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from . import jsonfast
from .codes import (
    _INT32,
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    MAX_FILENAME_LENGTH,
    MAX_ID_LENGTH,
    MAX_MSG_LENGTH,
    MAX_TOKEN_LENGTH,
    CommandError,
    CommandId,
    ErrorCode,
    MessageType,
)
from .fields import (
    _FILE_FIELDS,
    _GOAL,
    _NAME,
    _TOKEN,
    _check_file_fields,
    _Field,
    _json_kind,
    _values,
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
    if number == 1002 and (fast := _fast_send(obj)) is not None:
        return fast
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


def _fast_send(obj: dict[str, Any]) -> SendMessage | None:
    """The common ``1002`` (ASCII strings, a text message, no file fields) checked in one
    go, with the result of the full checks; None when in any doubt (the field table then
    decides, and names what is wrong). Every message a client sends passes here: the table
    was ~6 % of a local flood (issue 18)."""
    get = obj.get
    token, goal, kind, msg = get("token"), get("goaltoken"), get("type"), get("msg")
    if not (type(token) is str and type(goal) is str and type(msg) is str
            and type(kind) is int and 0 <= kind <= _INT32 and kind != MessageType.FILE
            and 0 < len(token) <= MAX_TOKEN_LENGTH and 0 < len(goal) <= MAX_TOKEN_LENGTH
            and len(msg) <= MAX_MSG_LENGTH
            and token.isascii() and goal.isascii() and msg.isascii()):
        return None
    if (get("filename") is not None or get("filesize") is not None or get("md5") is not None
            or get("fileid") is not None):
        return None
    return SendMessage(token, goal, kind, msg)


def decode_command(line: bytes | bytearray | str) -> Command:
    """Decode and validate one request line. Raises :class:`CommandError`, nothing else."""
    try:
        obj = jsonfast.loads(line if isinstance(line, (bytes, str)) else bytes(line))
    except UnicodeDecodeError:
        raise CommandError(ErrorCode.MALFORMED_JSON, "line is not valid UTF-8") from None
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
