"""The transport's two packets (layouts in docs/wire.md §4) as pure encode/parse functions.

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

# id, packet number, stream offset of the first byte carried, and how far below this packet
# number the sender's oldest outstanding packet is: the receiver need not report anything
# older (without it, every lost packet number would be a hole in every later ACK)
DATA_HEADER = struct.Struct(">BQQI")
DATA_HEADER_SIZE = DATA_HEADER.size  # 21
MAX_PAYLOAD = MAX_DATAGRAM - DATA_HEADER_SIZE  # 1352 stream bytes per full DATA packet

# id, stream_ack, limit, largest packet number, ack delay (µs), further ranges, first range
ACK_HEADER = struct.Struct(">BQQQIBI")
ACK_HEADER_SIZE = ACK_HEADER.size  # 34
ACK_RANGE = struct.Struct(">II")  # gap (missing packets), length (received packets)
MAX_ACK_RANGES = 32  # ranges after the first: 34 + 32 * 8 = 290 bytes at most
_U32 = 2**32 - 1
# one struct per range count: packing all ranges at once costs a third of packing each
_RANGES = [struct.Struct(f">{2 * k}I") for k in range(MAX_ACK_RANGES + 1)]


def encode_data(pn: int, offset: int, floor: int, payload: bytes) -> bytes:
    """``floor``: the sender's oldest outstanding packet number (<= ``pn``)."""
    return DATA_HEADER.pack(DATA_ID, pn, offset, pn - floor) + payload


def parse_data(packet: bytes) -> tuple[int, int, int, bytes]:
    """(packet number, offset, floor, payload) of a DATA packet; RemoteProtocolError if
    malformed."""
    if not DATA_HEADER_SIZE <= len(packet) <= MAX_DATAGRAM or packet[0] != DATA_ID:
        raise RemoteProtocolError(f"bad DATA packet ({len(packet)} bytes)")
    _, pn, offset, span = DATA_HEADER.unpack_from(packet)
    if span > pn:
        raise RemoteProtocolError(f"bad DATA packet: floor below packet 0 ({pn} - {span})")
    return pn, offset, pn - span, packet[DATA_HEADER_SIZE:]


def encode_ack(stream_ack: int, limit: int, ranges: list[tuple[int, int]], delay_us: int) -> bytes:
    """``ranges``: received packet numbers as inclusive (low, high), highest first, disjoint
    and not adjacent; at most 1 + MAX_ACK_RANGES of them (the oldest beyond are left out)."""
    if not ranges:
        raise ValueError("an ACK acknowledges at least one packet")
    ranges = ranges[: 1 + MAX_ACK_RANGES]
    low, high = ranges[0]
    header = ACK_HEADER.pack(ACK_ID, stream_ack, limit, high, min(delay_us, _U32),
                             len(ranges) - 1, high - low + 1)
    if len(ranges) == 1:
        return header
    flat = []
    for r_low, r_high in ranges[1:]:
        flat += (low - r_high - 1, r_high - r_low + 1)
        low = r_low
    return header + _RANGES[len(ranges) - 1].pack(*flat)


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
    if count:
        flat = _RANGES[count].unpack_from(packet, ACK_HEADER_SIZE)
        for i in range(0, 2 * count, 2):
            gap, length = flat[i], flat[i + 1]
            high = low - gap - 1
            low = high - length + 1
            if gap == 0 or length == 0 or low < 0:
                raise RemoteProtocolError("bad ACK range")
            ranges.append((low, high))
    return stream_ack, limit, delay_us, ranges
