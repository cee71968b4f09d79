"""The app token gate (sans-IO): a connection from another account's process, admitted
only because the node has an app token (``--app-token-file``), must carry the token in its
``1000`` login (``"apptoken"``). One gate per such connection; same-user connections have
none, so their protocol is the seed's, unchanged.

Lines before the login pass through: the core answers them as for any connection not
logged in (``9008``). A login without the token or with a wrong one is answered with an
error reply, after which the server closes the connection.
"""

from __future__ import annotations

import json
from typing import Any

from toxbridge.access import token_matches

from .protocol import CommandError, CommandId, ErrorCode, LineTooLong, Login, decode_command, error_reply

__all__ = ["TokenGate"]


class TokenGate:
    def __init__(self, token: bytes) -> None:
        self._token = token
        self.admitted = False

    def check(self, line: bytes | LineTooLong) -> dict[str, Any] | None:
        """None: hand the line to the core. Otherwise the error reply to send; then close."""
        if self.admitted or isinstance(line, LineTooLong):
            return None
        try:
            command = decode_command(line)
        except CommandError:
            return None  # the core gives it the same answer
        if not isinstance(command, Login):
            return None
        given = json.loads(line).get("apptoken")  # it decoded above: a JSON object
        login = CommandId.LOGIN.value
        if given is None:
            return error_reply(ErrorCode.APP_TOKEN_MISSING, "this connection comes from another "
                               "account: its login (1000) must carry the node's app token in "
                               "'apptoken'", login)
        if not token_matches(self._token, given):
            return error_reply(ErrorCode.APP_TOKEN_WRONG, "wrong 'apptoken'", login)
        self.admitted = True
        return None
