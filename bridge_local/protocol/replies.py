"""What the server sends: user and message records, the reply and event builders, and the
line encoder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import jsonfast
from .codes import (
    _INT32,
    MAX_MSG_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TOKEN_LENGTH,
    CommandId,
    MessageType,
    ResultCode,
)
from .commands import SendMessage
from .fields import _GOAL, _IP, _NAME, _PORT, _TOKEN, _check_file_fields, _Field, _record_values

_USER_FIELDS = (_TOKEN, _NAME, _IP, _PORT, _Field("side", "str", False, check="side"),
                _Field("bridge", "str", False, hi=64), _Field("hops", "int", False, hi=16))
_MESSAGE_FIELDS = (
    _Field("srctoken", "str", lo=1, hi=MAX_TOKEN_LENGTH),
    _GOAL,
    _NAME,
    _Field("time", "number", hi=2**53),
    _IP,
    _PORT,
    *SendMessage.FIELDS[2:],  # type, msg and the file fields, as sent
)


@dataclass(frozen=True, slots=True)
class User:
    """A user online on one of the two bridges."""

    token: str
    name: str
    ip: str
    port: int
    side: str = "local"  # "local" (this bridge) or "peer"
    bridge: str = ""  # the public key (hex) of the bridge the user is on; '' not known
    hops: int = 0  # hubs between us and that bridge (0: a peer of ours, or this bridge)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "token": self.token,
            "name": self.name,
            "ip": self.ip,
            "port": self.port,
            "side": self.side,
        }
        if self.bridge:
            d["bridge"] = self.bridge
        return d

    @classmethod
    def from_dict(cls, obj: Any) -> User:
        """Validate a user record (from a ``2001``/``2000`` or the peer bridge).

        Raises :class:`CommandError`."""
        return cls(**_record_values(_USER_FIELDS, obj, CommandId.USERS_REPLY))


class ChatMessage(NamedTuple):
    """A message as delivered (``2003``) and listed in history (``2004``).

    A NamedTuple, not a frozen dataclass: one is built for every message on both bridges
    (and read back from the store), and a tuple's ``__new__`` costs a fraction of a frozen
    dataclass's ``__init__`` (issue 18)."""

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
        # Spelled out: this runs several times per message (store, wire, 2003 event).
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
        """Validate a message record (a ``2003``, an entry of ``2004``, or one from the peer
        bridge; other keys ignored).

        Raises :class:`CommandError`."""
        fast = _fast_message(obj)
        if fast is not None:
            return fast
        values = _record_values(_MESSAGE_FIELDS, obj, CommandId.MESSAGE)
        _check_file_fields(values, CommandId.MESSAGE)
        return cls(**values)


def _fast_message(obj: Any) -> ChatMessage | None:
    """The common record (ASCII strings, a text message, no file fields) checked in one
    go, with the result of the full checks; None when in any doubt (the full checks then
    decide, and name what is wrong). Every message from the peer bridge passes here."""
    if type(obj) is not dict:
        return None
    get = obj.get
    src, goal, name, when = get("srctoken"), get("goaltoken"), get("name"), get("time")
    ip, port, kind, msg = get("ip"), get("port"), get("type"), get("msg")
    if not (type(src) is str and type(goal) is str and type(name) is str
            and type(ip) is str and type(msg) is str
            and 0 < len(src) <= MAX_TOKEN_LENGTH and 0 < len(goal) <= MAX_TOKEN_LENGTH
            and 0 < len(name) <= MAX_NAME_LENGTH and len(ip) <= 64
            and len(msg) <= MAX_MSG_LENGTH
            and src.isascii() and goal.isascii() and ip.isascii() and msg.isascii()
            and name.isascii() and name.isprintable()  # ASCII: no control characters
            and (type(when) is float or type(when) is int) and 0 <= when <= 2**53
            and type(port) is int and 0 <= port <= 65535
            and type(kind) is int and 0 <= kind <= _INT32 and kind != MessageType.FILE):
        return None
    if (get("filename") is not None or get("filesize") is not None or get("md5") is not None
            or get("fileid") is not None):
        return None
    return ChatMessage(src, goal, name, when, ip, port, kind, msg)


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


def message_event(message: ChatMessage, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """``2003``: a message delivered to its target. ``record``: ``message.to_dict()``, if
    the caller built it already (it is copied, not kept)."""
    return {"command": CommandId.MESSAGE.value,
            **(message.to_dict() if record is None else record)}


def history_reply(messages: Iterable[ChatMessage]) -> dict[str, Any]:
    return {"command": CommandId.HISTORY_REPLY.value, "messages": [m.to_dict() for m in messages]}


def status_event(
    code: ResultCode, side: str, token: str | None = None, name: str | None = None,
    bridge: str = "",
) -> dict[str, Any]:
    """``301``/``302``: a user (token and name given) or, without them, the peer bridge itself
    came online or went offline. ``bridge``: the public key (hex) of the user's bridge, or
    of that peer bridge ('' unknown: the field is left out)."""
    if code not in (ResultCode.ONLINE, ResultCode.OFFLINE):
        raise ValueError(f"{code!r} is not a status code")
    if side not in ("local", "peer"):
        raise ValueError(f"side must be 'local' or 'peer', not {side!r}")
    event: dict[str, Any] = {"command": int(code), "side": side}
    if token is not None:
        event["token"] = token
    if name is not None:
        event["name"] = name
    if bridge:
        event["bridge"] = bridge
    return event


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    """One reply line: compact JSON, UTF-8, ``\\n``-terminated.

    Raises ValueError/TypeError for what JSON cannot carry (a bug in the caller): NaN,
    bytes, lone surrogates.
    """
    return jsonfast.dumps(reply) + b"\n"
