"""The Link's packets (layouts in docs/wire.md), its limits, and the events and statistics it
hands out. Pure data; the machine that uses them is :mod:`.machine`."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

PACKET_ID = 160  # first lossless custom packet id (160..191)
MAX_PACKET_SIZE = 1373  # toxcore's limit, the id byte included
# 2: the Link frames carry the stream mux (docs/wire.md §3), and HELLO grew the TRANSPORT
# flag and the transport epoch (§2, §4.5). A peer of version 1 cannot parse a v2 HELLO (and
# a v1 HELLO has no room for the flag), so the two get a VersionMismatch each, never a hang.
PROTOCOL_VERSION = 2
SESSION_ID_SIZE = 16
MAX_FRAME_PAYLOAD = 1024
MAX_BIG_FRAME = 16 * 1024  # Link(max_frame=...) at most: what the mux batches into one frame
FRAME_HEADER_SIZE = 2  # u16 length in front of each frame in the stream


class PacketType(enum.IntEnum):
    HELLO = 0x01
    DATA = 0x02
    ACK = 0x03
    RESYNC = 0x04


HELLO_REPLY = 0x01  # HELLO flag: an answer that needs no answer
# HELLO flag: the sender carries DATA, ACK and RESYNC inside our transport over lossy packets
# when the receiver says so too (both flags, on this connection)
HELLO_TRANSPORT = 0x02

_HELLO, _DATA, _ACK, _RESYNC = 0x01, 0x02, 0x03, 0x04  # plain ints for the hot path
# id, type, version, flags, session, echo, window, received, delivered, transport epoch
_HELLO_PACK = struct.Struct(">BBHB16s16sIQQB")
_DATA_PACK = struct.Struct(">BBQQ")  # id type seq ack
_OFFSET_PACK = struct.Struct(">BBQ")  # id type offset (ACK: ack, RESYNC: resume offset)
_VERSION_PACK = struct.Struct(">BBH")

DATA_HEADER_SIZE = _DATA_PACK.size  # 18
MAX_CHUNK = MAX_PACKET_SIZE - DATA_HEADER_SIZE  # 1355 stream bytes per full DATA packet
HELLO_SIZE = _HELLO_PACK.size  # 58
_NO_SESSION = bytes(SESSION_ID_SIZE)

# The receive window (and the most a sender keeps for resending): room for the local app's
# latency, and on the transport path (where it is also the in-flight limit) the
# bandwidth-delay product with room to spare: 25 MB/s x 150 ms = 3.75 MB. Over lossless
# packets what is *in flight* in toxcore is bounded much lower (below).
DEFAULT_WINDOW = 8 * 1024 * 1024
# toxcore 0.2.18 (net_crypto.c) throttles a connection to its floor of 4 packets/s while its
# send queue holds more than 64 packets *and* more than 2 s of its recent delivery rate. A
# stall of the peer (a frozen process, a cut shorter than the friend timeout) takes that
# rate to ~0 while the queue stays full, and the floor then holds until the queue drains at
# 4 packets/s -- minutes for a few hundred packets, forever if the sender keeps it topped
# up. So at most 56 DATA packets of ours are unacknowledged at any time (our ACKs, one per
# 8 packets received, share toxcore's queue), and the peer acks often. Measured: 56 and 44
# recover at once after a 5 s freeze of the peer; 88 crawls for minutes. The cost: at most
# 56 packets per round trip (~25 MB/s on loopback, ~1.5 MB/s at a 50 ms round trip).
DEFAULT_IN_FLIGHT = 56 * MAX_CHUNK
# Stream bytes accepted beyond what is in flight: enough to fill the next packets of a loop
# turn; what waits longer waits in the queues above us, where fair scheduling can happen.
DEFAULT_BACKLOG = 32 * 1024
# The receiver acks at least this often (in delivered bytes) during a one-way stream.
ACK_EVERY = 8 * MAX_CHUNK
# Progress needs a full packet to fit beside one partly received frame.
MIN_WINDOW = 8 * 1024
_MAX_WINDOW = 2**32 - 1  # u32 on the wire


@dataclass(frozen=True, slots=True)
class PeerHello:
    """The peer's HELLO opened the channel, or showed a new peer daemon (``restarted``)."""

    session_id: bytes
    version: int
    restarted: bool


@dataclass(frozen=True, slots=True)
class ChannelOpen:
    """Both HELLOs are seen on this connection (the peer's echoes ours): data flows again."""

    peer_session_id: bytes


@dataclass(frozen=True, slots=True)
class VersionMismatch:
    """The peer speaks another protocol version; the link is now in the ERROR state."""

    our_version: int
    peer_version: int


LinkEvent = PeerHello | ChannelOpen | VersionMismatch


class LinkState(enum.Enum):
    DISCONNECTED = "disconnected"  # no friend connection
    CONNECTING = "connecting"  # connected, waiting for the peer's HELLO
    OPEN = "open"  # the peer's HELLO, echoing our session, seen on this connection
    ERROR = "error"  # the peer broke the protocol; make a new Link


@dataclass(frozen=True, slots=True)
class LinkStatistics:
    packets_sent: int
    packets_received: int
    packets_ignored: int  # valid, but from before the channel opened on this connection
    data_packets_sent: int
    ack_packets_sent: int
    hello_packets_sent: int
    resync_packets_sent: int
    bytes_sent: int  # stream bytes in DATA packets, resends included
    bytes_resent: int
    bytes_received: int  # new stream bytes accepted
    duplicate_bytes: int  # stream bytes received twice and dropped
    gap_packets: int  # DATA packets dropped because bytes before them were missing
    frames_sent: int
    frames_received: int
    peer_restarts: int
    frames_dropped: int  # of a peer session two or more restarts back, never taken
    unacked_bytes: int
    buffered_bytes: int
