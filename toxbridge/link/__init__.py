"""One peer's reliable framed channel over toxcore's lossless packets, sans-IO: :class:`Link`
(in ``machine``) and its packets, limits and events (in ``wire``). Pure: no sockets, no
clock, no Tox; it may import ``toxbridge.errors`` only. The tox thread drives it.
"""

from .machine import Link
from .wire import (
    ACK_EVERY,
    ChannelOpen,
    DATA_HEADER_SIZE,
    DEFAULT_BACKLOG,
    DEFAULT_IN_FLIGHT,
    DEFAULT_WINDOW,
    FRAME_HEADER_SIZE,
    HELLO_REPLY,
    HELLO_TRANSPORT,
    HELLO_SIZE,
    LinkEvent,
    LinkState,
    LinkStatistics,
    MAX_CHUNK,
    MAX_FRAME_PAYLOAD,
    MAX_PACKET_SIZE,
    MIN_WINDOW,
    PACKET_ID,
    PROTOCOL_VERSION,
    PacketType,
    PeerHello,
    SESSION_ID_SIZE,
    VersionMismatch,
)

__all__ = [
    "ACK_EVERY",
    "ChannelOpen",
    "DATA_HEADER_SIZE",
    "DEFAULT_BACKLOG",
    "DEFAULT_IN_FLIGHT",
    "DEFAULT_WINDOW",
    "FRAME_HEADER_SIZE",
    "HELLO_REPLY",
    "HELLO_TRANSPORT",
    "HELLO_SIZE",
    "Link",
    "LinkEvent",
    "LinkState",
    "LinkStatistics",
    "MAX_CHUNK",
    "MAX_FRAME_PAYLOAD",
    "MAX_PACKET_SIZE",
    "MIN_WINDOW",
    "PACKET_ID",
    "PROTOCOL_VERSION",
    "PacketType",
    "PeerHello",
    "SESSION_ID_SIZE",
    "VersionMismatch",
]
