"""The control protocol of a running node, sans-IO: one JSON object per line each way.

    request  {"v": 1, "cmd": "status", "id": 7, ...arguments}
    reply    {"v": 1, "ok": true, "id": 7, ...result}
             {"v": 1, "ok": false, "id": 7, "error": "unknown_command", "message": "..."}

``v`` may be left out of a request (it means 1); a request of a newer version gets the
error ``version``, so a newer client sees at once that this node is too old. ``id`` is
echoed when given (any JSON scalar). A command is one handler in the shell's table
(`toxbridge.control.server`); the codec knows no command names.

Bounds: a request line is at most MAX_REQUEST bytes, a reply line MAX_REPLY (the client
stops reading there). The shell closes a connection after a line that is too long: the
stream can no longer be split into lines reliably.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError, RemoteProtocolError

__all__ = [
    "MAX_REPLY",
    "MAX_REQUEST",
    "VERSION",
    "ControlError",
    "LineBuffer",
    "Request",
    "encode",
    "error_reply",
    "ok_reply",
    "parse_reply",
    "parse_request",
]

VERSION = 1
MAX_REQUEST = 4096
MAX_REPLY = 1024 * 1024


class ControlError(ProtocolError):
    """The node refused a control request."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)  # everything but v, cmd and id
    id: Any = None


class LineBuffer:
    """Bytes in, complete lines out (without the newline), at most ``max_line`` bytes each."""

    def __init__(self, max_line: int) -> None:
        self._buf = bytearray()
        self._max = max_line

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_line(self) -> bytes | None:
        """The next complete line, or None. Raises RemoteProtocolError if a line (complete
        or not) is over the limit; the buffer is useless after that."""
        i = self._buf.find(b"\n", 0, self._max + 1)
        if i < 0:
            if len(self._buf) > self._max:
                raise RemoteProtocolError(f"a line longer than {self._max} bytes")
            return None
        line = bytes(self._buf[:i])
        del self._buf[: i + 1]
        return line

    def __len__(self) -> int:
        return len(self._buf)


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _decode(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ControlError("bad_request", "a request is a JSON object")
    return obj


def parse_request(line: bytes) -> Request:
    """Raises ControlError (``bad_json``, ``bad_request``, ``version``)."""
    obj = _decode(line)
    version = obj.pop("v", VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ControlError("bad_request", "v must be an integer")
    if version != VERSION:
        raise ControlError("version", f"this node speaks control version {VERSION}, not {version}")
    cmd = obj.pop("cmd", None)
    if not isinstance(cmd, str) or not cmd:
        raise ControlError("bad_request", "cmd must be a non-empty string")
    rid = obj.pop("id", None)
    if isinstance(rid, (dict, list)):
        raise ControlError("bad_request", "id must be a string or a number")
    return Request(cmd, obj, rid)


def ok_reply(result: dict[str, Any], rid: Any = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"v": VERSION, "ok": True}
    if rid is not None:
        reply["id"] = rid
    reply.update(result)
    return reply


def error_reply(code: str, message: str, rid: Any = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"v": VERSION, "ok": False, "error": code, "message": message}
    if rid is not None:
        reply["id"] = rid
    return reply


def parse_reply(line: bytes) -> dict[str, Any]:
    """The result of a reply line. Raises ControlError: the node's own error, or
    ``bad_reply`` for something that is not a reply."""
    try:
        obj = _decode(line)
    except ControlError as exc:
        raise ControlError("bad_reply", f"the node's reply is {exc}") from None
    if obj.get("ok") is True:
        return obj
    if obj.get("ok") is False:
        raise ControlError(str(obj.get("error", "error")), str(obj.get("message", "")))
    raise ControlError("bad_reply", "the node's reply has no ok field")
