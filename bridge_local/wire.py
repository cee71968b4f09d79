"""The bridge-to-bridge commands (sans-IO): msgpack maps with a type tag ``t``.

They travel through :mod:`toxbridge.fragment` (UUID-tagged fragments over the daemon's data
frames), so each may be of any size. ``encode_*`` build the packed bytes; :func:`decode`
validates packed bytes into one of the frozen dataclasses below, or raises
:class:`PeerProtocolError`. docs/protocol.md, section 9, is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toxbridge.errors import RemoteProtocolError
from toxbridge.fragment import pack_message, unpack_message

from .protocol import ChatMessage, CommandError, User

__all__ = [
    "VERSION",
    "Ack",
    "Bye",
    "Hello",
    "Msg",
    "PeerProtocolError",
    "Ping",
    "UserOff",
    "UserOn",
    "Xfer",
    "decode",
    "encode_ack",
    "encode_bye",
    "encode_hello",
    "encode_msg",
    "encode_ping",
    "encode_user_off",
    "encode_user_on",
    "encode_xfer",
]

VERSION = 1
MAX_KNOWN = 10_000  # users listed in a hello as known (seen) on the sender's bridge
MAX_USERS = 10_000  # users online on one bridge as listed in a hello (and kept from UserOn)
MAX_ACKS = 4096  # ids in one ack


class PeerProtocolError(RemoteProtocolError):
    """The peer bridge sent a command that breaks the bridge-to-bridge protocol."""


@dataclass(frozen=True, slots=True)
class Hello:
    """Sent when the channel to the peer opens (``reply`` False); answered by one with
    ``reply`` True. Carries the sender's session (random per bridge process), its daemon's
    public key, its online users and the tokens of every user it has seen."""

    reply: bool
    session: bytes
    key: bytes
    users: tuple[User, ...]
    known: tuple[tuple[str, str], ...]
    # Users the sender knows behind its other peers (a hub): (token, name, bridge, hops).
    relay: tuple[tuple[str, str, str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class UserOn:
    user: User


@dataclass(frozen=True, slots=True)
class UserOff:
    token: str


@dataclass(frozen=True, slots=True)
class Msg:
    """A chat message for a user of the receiving bridge; ``id`` makes it idempotent."""

    id: bytes
    message: ChatMessage


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver stored these messages durably: the sender may forget them."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat: a peer bridge silent for longer than its timeout is considered gone."""


@dataclass(frozen=True, slots=True)
class Bye:
    """The sender is shutting down cleanly: its users are offline."""


@dataclass(frozen=True, slots=True)
class Xfer:
    """A file transfer message (7000–8010, docs/files.md) between the bridges. ``to_receiver``:
    it is for the receiving side of the task (the sender's ``70xx``, or its 7070/7080);
    task ids of the two directions are separate. ``message`` is the dict (``data`` bytes)."""

    to_receiver: bool
    message: dict[str, Any]


PeerCommand = Hello | UserOn | UserOff | Msg | Ack | Ping | Bye | Xfer


def encode_hello(
    reply: bool, session: bytes, key: bytes, users: list[User], known: list[tuple[str, str]],
    relay: list[tuple[str, str, str, int]] = (),
) -> bytes:
    obj = {
        "t": "hello",
        "v": VERSION,
        "reply": reply,
        "session": session,
        "key": key,
        "users": [_user(u) for u in users[:MAX_USERS]],
        "known": [[t, n] for t, n in known[:MAX_KNOWN]],
    }
    if relay:
        obj["relay"] = [list(r) for r in relay[:MAX_KNOWN]]
    return pack_message(obj)


def _user(user: User) -> dict[str, Any]:
    d = user.to_dict()
    del d["side"]
    if user.hops:
        d["hops"] = user.hops
    return d


def encode_user_on(user: User) -> bytes:
    return pack_message({"t": "on", "user": _user(user)})


def encode_user_off(token: str) -> bytes:
    return pack_message({"t": "off", "token": token})


def encode_msg(message_id: bytes, message: ChatMessage,
               record: dict[str, Any] | None = None) -> bytes:
    """``record``: ``message.to_dict()`` if the caller built it already."""
    return pack_message({"t": "msg", "id": message_id,
                         "m": message.to_dict() if record is None else record})


def encode_ack(ids: list[bytes]) -> bytes:
    if len(ids) > MAX_ACKS:
        raise ValueError(f"at most {MAX_ACKS} ids per ack")
    return pack_message({"t": "ack", "ids": ids})


def encode_xfer(to_receiver: bool, message: dict[str, Any]) -> bytes:
    return pack_message({"t": "xfer", "r": to_receiver, "m": message})


def encode_ping() -> bytes:
    return pack_message({"t": "ping"})


def encode_bye() -> bytes:
    return pack_message({"t": "bye"})


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PeerProtocolError(f"{what}: field {key!r} missing or of the wrong type")
    return value


def _id(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 16:
        raise PeerProtocolError(f"{what}: a message id is 16 bytes")
    return value


def _peer_user(obj: Any) -> User:
    if isinstance(obj, dict):
        obj = {**obj, "side": "peer"}
    try:
        return User.from_dict(obj)
    except CommandError as exc:
        raise PeerProtocolError(f"bad user record: {exc.message}") from None


def decode(data: bytes) -> PeerCommand:
    """Validate one packed command from the peer bridge. Raises PeerProtocolError
    (a RemoteProtocolError); unknown extra keys are ignored."""
    try:
        obj = unpack_message(data)
    except RemoteProtocolError as exc:
        raise PeerProtocolError(str(exc)) from None
    kind = obj.get("t")
    if kind == "msg":
        try:
            message = ChatMessage.from_dict(_get(obj, "m", dict, "msg"))
        except CommandError as exc:
            raise PeerProtocolError(f"bad message record: {exc.message}") from None
        return Msg(_id(obj.get("id"), "msg"), message)
    if kind == "ack":
        ids = _get(obj, "ids", list, "ack")
        if len(ids) > MAX_ACKS:
            raise PeerProtocolError(f"ack of {len(ids)} ids, at most {MAX_ACKS}")
        return Ack(tuple(_id(i, "ack") for i in ids))
    if kind == "xfer":
        return Xfer(bool(_get(obj, "r", bool, "xfer")), _get(obj, "m", dict, "xfer"))
    if kind == "ping":
        return Ping()
    if kind == "on":
        return UserOn(_peer_user(obj.get("user")))
    if kind == "off":
        token = _get(obj, "token", str, "off")
        return UserOff(token)
    if kind == "bye":
        return Bye()
    if kind == "hello":
        version = _get(obj, "v", int, "hello")
        if version != VERSION:
            raise PeerProtocolError(f"peer bridge speaks version {version}, we speak {VERSION}")
        session = _get(obj, "session", bytes, "hello")
        key = _get(obj, "key", bytes, "hello")
        if len(session) != 16 or len(key) != 32:
            raise PeerProtocolError("hello: session is 16 bytes and key 32")
        users_raw = _get(obj, "users", list, "hello")
        if len(users_raw) > MAX_USERS:  # checked before parsing: the cost is bounded too
            raise PeerProtocolError(f"hello: {len(users_raw)} online users, at most {MAX_USERS}")
        users = tuple(_peer_user(u) for u in users_raw)
        known_raw = _get(obj, "known", list, "hello")
        if len(known_raw) > MAX_KNOWN:
            raise PeerProtocolError(f"hello: {len(known_raw)} known users, at most {MAX_KNOWN}")
        known = []
        for item in known_raw:
            if not (
                isinstance(item, list) and len(item) == 2 and all(isinstance(s, str) for s in item)
            ):
                raise PeerProtocolError("hello: a known user is [token, name]")
            _peer_user({"token": item[0], "name": item[1], "ip": "", "port": 0})  # validates
            known.append((item[0], item[1]))
        relay_raw = obj.get("relay", [])
        if not isinstance(relay_raw, list) or len(relay_raw) > MAX_KNOWN:
            raise PeerProtocolError(f"hello: relay is a list of at most {MAX_KNOWN}")
        relay = []
        for item in relay_raw:
            if not (isinstance(item, list) and len(item) == 4
                    and all(isinstance(s, str) for s in item[:3])
                    and isinstance(item[3], int) and not isinstance(item[3], bool)):
                raise PeerProtocolError("hello: a relayed user is [token, name, bridge, hops]")
            u = _peer_user({"token": item[0], "name": item[1], "ip": "", "port": 0,
                            "bridge": item[2], "hops": item[3]})
            relay.append((u.token, u.name, u.bridge, u.hops))
        return Hello(bool(_get(obj, "reply", bool, "hello")), session, key, users, tuple(known),
                     tuple(relay))
    raise PeerProtocolError(f"unknown bridge command type {kind!r}")
