"""Our own transport over toxcore's lossy custom packets, sans-IO: a reliable byte stream each
way with packet numbers, selective acks, resend in new packets, a BBR-style congestion
controller that does not read random loss as congestion, and pacing. Pure: no sockets, no
clock (every time is an argument), no Tox; it may import ``toxbridge.errors`` only.
Packet layouts: docs/wire.md §4. The shell (the tox thread) drives :class:`Endpoint`.
"""

from .congestion import BbrController
from .endpoint import Endpoint, TransportStatistics
from .pacer import Pacer
from .recovery import MAX_TRACKED, Recovery
from .rtt import RttEstimator
from .wire import ACK_ID, DATA_ID, MAX_DATAGRAM, MAX_PAYLOAD

__all__ = [
    "ACK_ID",
    "BbrController",
    "DATA_ID",
    "Endpoint",
    "MAX_DATAGRAM",
    "MAX_PAYLOAD",
    "MAX_TRACKED",
    "Pacer",
    "Recovery",
    "RttEstimator",
    "TransportStatistics",
]
