"""The exception tree of toxbridge.

Each class's docstring is the message a user would be shown for it.
"""

from __future__ import annotations


class ToxbridgeError(Exception):
    """toxbridge failed."""


class ProtocolError(ToxbridgeError):
    """A protocol was not followed."""


class LocalProtocolError(ProtocolError):
    """We misused a protocol object (a bug in the caller, or a limit reached locally)."""


class RemoteProtocolError(ProtocolError):
    """The other side broke the protocol (malformed or out-of-range input)."""


class StreamProtocolError(RemoteProtocolError):
    """The peer broke the stream protocol (a malformed or impossible stream frame)."""


class ConfigError(ToxbridgeError):
    """The configuration is invalid."""


class ForwardError(ToxbridgeError):
    """A port forward failed (its message says which and why)."""


class PeerError(ToxbridgeError):
    """A change to the node's peers was refused (its message says why)."""
