"""The one line a user is shown for an error (an argparse error is one line too:
``toxbridge.usage``).

``user_message`` maps the exceptions a user can cause (a bad flag or config, a profile that
is corrupt or has another passphrase, a port in use, no usable bootstrap node) to one line
that says what to do, and returns None for anything else: that is a bug and keeps its
traceback. Pure: the CLI prints, and exits with ``USER_ERROR``.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Iterator, Mapping

from ..errors import ConfigError, ForwardError, ToxbridgeError
from ..usage import USER_ERROR, OneLineParser

__all__ = ["USER_ERROR", "OneLineParser", "user_message", "leaves"]


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, as trio raises them."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def user_message(exc: BaseException, profile: Path | None = None, passphrase_env: str | None = None,
                 ports: Mapping[str, int] | None = None) -> str | None:
    """One line for the first user error in ``exc`` (an exception group is searched), or
    None. ``ports``: the ports the user chose, by flag (``{"--app-port": 5000}``), to name
    the one that is in use."""
    for leaf in leaves(exc):
        message = _explain(leaf, profile, passphrase_env, ports or {})
        if message is not None:
            return message
    return None


def _explain(exc: BaseException, profile: Path | None, passphrase_env: str | None,
             ports: Mapping[str, int]) -> str | None:
    from ..tox import DecryptionError, FriendAddError, ToxLibraryError, ToxNewError
    from ..tox.profile import ProfileError

    where = f"the profile {profile}" if profile else "the profile"
    if isinstance(exc, (ConfigError, ForwardError)):
        return str(exc)
    if isinstance(exc, ProfileError) and exc.error == "PROFILE_ENCRYPTED":
        return f"{where} is encrypted: give its passphrase with --passphrase-env VAR"
    if isinstance(exc, DecryptionError):
        source = f" in ${passphrase_env}" if passphrase_env else ""
        return (f"cannot decrypt {where} ({exc.error}): the passphrase{source} is wrong, "
                "or the file is damaged (restore it from a backup)")
    if isinstance(exc, ToxNewError):
        if exc.error.startswith("NEW_LOAD"):
            return (f"{where} is not a Tox profile toxcore can load ({exc.error}): restore it "
                    "from a backup, or move it away to start with a new identity")
        if exc.error == "NEW_PORT_ALLOC":
            return ("toxcore found no free UDP port: another Tox program may hold them all; "
                    "stop it, or run with --no-udp")
    if isinstance(exc, FriendAddError) and exc.error == "FRIEND_ADD_OWN_KEY":
        return "--peer is this node's own Tox ID: give the listener's"
    if isinstance(exc, OSError) and exc.filename and exc.strerror:  # a profile, data dir, ...
        return f"cannot use {exc.filename}: {exc.strerror.lower()}"
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
        chosen = " or ".join(f"{flag} {port}" for flag, port in ports.items() if port)
        on = f" on {chosen}" if chosen else ""
        return (f"cannot listen{on}: {(exc.strerror or str(exc)).lower()}; choose another port "
                "(0 picks a free one) or host")
    # Other toxcore errors (and ProtocolError) escaping to here are bugs: a traceback.
    if isinstance(exc, ToxLibraryError) or type(exc) is ToxbridgeError:
        return str(exc)
    return None
