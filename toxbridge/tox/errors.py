"""Exceptions raised by the toxcore binding.

Every toxcore error enum value surfaces as a ``ToxError`` subclass whose ``error``
attribute names it without the ``TOX_ERR_`` prefix, e.g. ``FRIEND_ADD_ALREADY_SENT``.
"""

from __future__ import annotations

from ..errors import ToxbridgeError

__all__ = [
    "ToxError",
    "ToxLibraryError",
    "ToxClosedError",
    "ToxNewError",
    "BootstrapError",
    "FriendAddError",
    "FriendDeleteError",
    "FriendNotFoundError",
    "FriendQueryError",
    "SendMessageError",
    "CustomPacketError",
    "GetPortError",
    "SetInfoError",
    "EncryptionError",
    "DecryptionError",
    "OptionsError",
]


class ToxError(ToxbridgeError):
    """toxcore reported an error."""

    def __init__(self, function: str, error: str, code: int | None = None) -> None:
        super().__init__(f"{function}: {error}")
        self.function = function
        self.error = error
        self.code = code


class ToxLibraryError(ToxbridgeError):
    """libtoxcore could not be loaded (run native/toxcore-build.sh)."""


class ToxClosedError(ToxbridgeError):
    """The Tox instance was used after close()."""


class OptionsError(ToxError):
    """toxcore could not allocate options."""


class ToxNewError(ToxError):
    """toxcore could not start (port in use, bad proxy, encrypted or bad savedata)."""


class BootstrapError(ToxError):
    """A bootstrap node or TCP relay was rejected (bad host or port)."""


class FriendAddError(ToxError):
    """A friend could not be added."""


class FriendDeleteError(ToxError):
    """A friend could not be deleted."""


class FriendNotFoundError(ToxError):
    """No such friend."""


class FriendQueryError(ToxError):
    """A friend's state could not be read."""


class SendMessageError(ToxError):
    """A message could not be sent."""


class CustomPacketError(ToxError):
    """A custom packet could not be sent (SENDQ means: the rate budget is used up, retry)."""


class GetPortError(ToxError):
    """The port is not bound."""


class SetInfoError(ToxError):
    """Our name could not be set."""


class EncryptionError(ToxError):
    """The profile could not be encrypted."""


class DecryptionError(ToxError):
    """The profile could not be decrypted (wrong passphrase, or not a Tox profile)."""
