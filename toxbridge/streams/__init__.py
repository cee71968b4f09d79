"""Many ordered byte streams over one peer's Link, sans-IO: :class:`Mux` (in ``mux``), the
frames inside the Link's byte stream (``wire``; layouts in docs/wire.md, "Streams"), flow
control (``flow``), the priority / round-robin scheduler (``scheduler``), the limits and the
events. Pure: no sockets, no clock, no Tox, no logging; it imports only ``toxbridge.errors``
and the stdlib. The tox thread will drive one Mux per peer, above that peer's Link.
"""

from .events import (
    CreditAvailable,
    MuxEvent,
    MuxStatistics,
    PeerRestarted,
    ProtocolViolation,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from .limits import Limits
from .mux import Mux
from .wire import MAX_FRAME, MAX_HEADER, MAX_PAYLOAD, PROTOCOL_VERSION, Priority, ResetCode

__all__ = [
    "CreditAvailable",
    "Limits",
    "MAX_FRAME",
    "MAX_HEADER",
    "MAX_PAYLOAD",
    "Mux",
    "MuxEvent",
    "MuxStatistics",
    "PROTOCOL_VERSION",
    "PeerRestarted",
    "Priority",
    "ProtocolViolation",
    "ResetCode",
    "StreamData",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
]
