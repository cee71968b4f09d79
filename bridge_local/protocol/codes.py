"""The protocol's numbers: limits, command ids, result and error codes, message types, and
the error a bad request raises (its ``9000`` reply is built here too)."""

from __future__ import annotations

import enum
from typing import Any

from toxbridge.errors import RemoteProtocolError

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
