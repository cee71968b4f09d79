"""The JSON command protocol of the app port (sans-IO).

Apps send one JSON object per line (UTF-8, ``\\n``-terminated). This module splits the byte
stream into lines (:class:`LineDecoder`), validates a line into a typed command
(:func:`decode_command`, or :func:`parse_command` for an already-decoded dict, e.g. one that
came msgpack-encoded from the other bridge), checks who may issue it (:func:`authorize`), and
builds and encodes replies (the ``*_reply`` helpers, :func:`encode_reply`).

Every failure is a :class:`CommandError` carrying an :class:`ErrorCode`; its
:meth:`~CommandError.reply` is the ``9000`` error reply to send back. docs/protocol.md is the
reference for client writers.

The modules, each read top to bottom: ``codes`` (limits, ids, codes, CommandError), ``lines``
(the line splitter), ``fields`` (the field checker), ``commands`` (requests), ``replies``
(records, replies, events), ``jsonfast`` (orjson with the stdlib's exact results). Pure;
it may import ``toxbridge.errors`` and nothing else of the project; every other module of
bridge_local may import it.
"""

from .codes import (
    DEFAULT_MAX_LINE_LENGTH,
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    MAX_MSG_LENGTH,
    MAX_NAME_LENGTH,
    CommandError,
    CommandId,
    ErrorCode,
    MessageType,
    ResultCode,
    error_reply,
)
from .commands import (
    Command,
    FileCommand,
    History,
    ListUsers,
    Login,
    SendMessage,
    authorize,
    decode_command,
    make_token,
    parse_command,
)
from .lines import LineDecoder, LineTooLong
from .replies import (
    ChatMessage,
    User,
    encode_reply,
    history_reply,
    login_reply,
    message_event,
    send_reply,
    status_event,
    users_reply,
)

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
