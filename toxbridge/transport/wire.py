"""The transport's two packets (layouts in docs/wire.md §3) as pure encode/parse functions.

Both are toxcore lossy custom packets: the first byte is the packet id, so a DATA packet and
an ACK need no type byte. ACK ranges are newest first, as (gap, length) pairs below the
first range, each counted in packets.
"""

from __future__ import annotations

import struct

from ..errors import RemoteProtocolError

DATA_ID = 200  # 0xC8, the first lossy custom packet id (200..254)
ACK_ID = 201  # 0xC9
MAX_DATAGRAM = 1373  # toxcore's limit for a custom packet, the id byte included

# id, packet number, stream offset of the first byte carried
DATA_HEADER = struct.Struct(">BQQ")
DATA_HEADER_SIZE = DATA_HEADER.size  # 17
MAX_PAYLOAD = MAX_DATAGRAM - DATA_HEADER_SIZE  # 1356 stream bytes per full DATA packet

# id, stream_ack, limit, largest packet number, ack delay (µs), further ranges, first range
ACK_HEADER = struct.Struct(">BQQQIBI")
ACK_HEADER_SIZE = ACK_HEADER.size  # 34
ACK_RANGE = struct.Struct(">II")  # gap (missing packets), length (received packets)
MAX_ACK_RANGES = 32  # ranges after the first: 34 + 32 * 8 = 290 bytes at most
_U32 = 2**32 - 1


def encode_data(pn: int, offset: int, payload: bytes) -> bytes:
    return DATA_HEADER.pack(DATA_ID, pn, offset) + payload


def parse_data(packet: bytes) -> tuple[int, int, bytes]:
    """(packet number, offset, payload) of a DATA packet; RemoteProtocolError if malformed."""
    if not DATA_HEADER_SIZE <= len(packet) <= MAX_DATAGRAM or packet[0] != DATA_ID:
        raise RemoteProtocolError(f"bad DATA packet ({len(packet)} bytes)")
    _, pn, offset = DATA_HEADER.unpack_from(packet)
    return pn, offset, packet[DATA_HEADER_SIZE:]


def encode_ack(stream_ack: int, limit: int, ranges: list[tuple[int, int]], delay_us: int) -> bytes:
    """``ranges``: received packet numbers as inclusive (low, high), highest first, disjoint
    and not adjacent; at most 1 + MAX_ACK_RANGES of them (the oldest beyond are left out)."""
    if not ranges:
        raise ValueError("an ACK acknowledges at least one packet")
    ranges = ranges[: 1 + MAX_ACK_RANGES]
    low, high = ranges[0]
    parts = [ACK_HEADER.pack(ACK_ID, stream_ack, limit, high, min(delay_us, _U32),
                             len(ranges) - 1, high - low + 1)]
    for r_low, r_high in ranges[1:]:
        parts.append(ACK_RANGE.pack(low - r_high - 1, r_high - r_low + 1))
        low = r_low
    return b"".join(parts)


def parse_ack(packet: bytes) -> tuple[int, int, int, list[tuple[int, int]]]:
    """(stream_ack, limit, ack delay in µs, ranges as inclusive (low, high), highest first)."""
    if len(packet) < ACK_HEADER_SIZE or packet[0] != ACK_ID:
        raise RemoteProtocolError(f"bad ACK packet ({len(packet)} bytes)")
    _, stream_ack, limit, high, delay_us, count, first = ACK_HEADER.unpack_from(packet)
    if len(packet) != ACK_HEADER_SIZE + count * ACK_RANGE.size or count > MAX_ACK_RANGES:
        raise RemoteProtocolError(f"bad ACK packet length {len(packet)} for {count} ranges")
    if first == 0 or first > high + 1 or limit < stream_ack:
        raise RemoteProtocolError("bad ACK: empty first range, or limit below stream_ack")
    low = high - first + 1
    ranges = [(low, high)]
    for gap, length in ACK_RANGE.iter_unpack(packet[ACK_HEADER_SIZE:]):
        high = low - gap - 1
        low = high - length + 1
        if gap == 0 or length == 0 or low < 0:
            raise RemoteProtocolError("bad ACK range")
        ranges.append((low, high))
    return stream_ack, limit, delay_us, ranges
