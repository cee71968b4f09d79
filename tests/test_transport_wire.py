"""The transport's packets byte for byte (docs/wire.md §4), and what a parser refuses."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from toxbridge.errors import RemoteProtocolError
from toxbridge.transport.wire import (ACK_ID, DATA_HEADER_SIZE, DATA_ID, MAX_ACK_RANGES,
                                      MAX_DATAGRAM, MAX_PAYLOAD, encode_ack, encode_data,
                                      parse_ack, parse_data)


def test_the_ids_and_sizes_are_toxcores_lossy_custom_packets():
    assert (DATA_ID, ACK_ID) == (0xC8, 0xC9) and all(200 <= i <= 254 for i in (DATA_ID, ACK_ID))
    assert MAX_DATAGRAM == 1373 and DATA_HEADER_SIZE == 21 and MAX_PAYLOAD == 1352


def test_a_data_packet_is_id_number_offset_span_then_the_bytes():
    packet = encode_data(pn=0x0102, offset=0x0A0B0C, floor=0x0100, payload=b"hi")
    assert packet.hex(" ") == ("c8 00 00 00 00 00 00 01 02 00 00 00 00 00 0a 0b 0c"
                               " 00 00 00 02 68 69")
    assert parse_data(packet) == (0x0102, 0x0A0B0C, 0x0100, b"hi")


def test_a_probe_is_a_data_packet_without_bytes():
    assert encode_data(7, 99, 7, b"") == bytes.fromhex("c8 0000000000000007 0000000000000063 00000000")
    assert parse_data(encode_data(7, 99, 7, b""))[3] == b""


def test_an_ack_with_one_range():
    packet = encode_ack(stream_ack=4096, limit=65536, ranges=[(10, 12)], delay_us=1500)
    assert packet.hex(" ") == (
        "c9"
        " 00 00 00 00 00 00 10 00"  # stream_ack 4096
        " 00 00 00 00 00 01 00 00"  # limit 65536
        " 00 00 00 00 00 00 00 0c"  # largest 12
        " 00 00 05 dc"  # ack delay 1500 µs
        " 00"  # no further ranges
        " 00 00 00 03")  # the first range: 3 packets, 10..12
    assert parse_ack(packet) == (4096, 65536, 1500, [(10, 12)])


def test_an_ack_with_gaps_counts_them_in_packets_newest_first():
    packet = encode_ack(0, 1 << 20, [(20, 20), (15, 17), (0, 9)], delay_us=0)
    assert len(packet) == 34 + 2 * 8
    assert packet[29:].hex(" ") == ("02 00 00 00 01"  # 2 more ranges; first: packet 20 only
                                    " 00 00 00 02 00 00 00 03"  # gap 18..19, then 15..17
                                    " 00 00 00 05 00 00 00 0a")  # gap 10..14, then 0..9
    assert parse_ack(packet)[3] == [(20, 20), (15, 17), (0, 9)]


def test_an_ack_keeps_only_the_newest_ranges():
    ranges = [(1000 - 3 * i, 1000 - 3 * i) for i in range(50)]
    stream_ack, limit, delay, parsed = parse_ack(encode_ack(0, 0, ranges, 0))
    assert parsed == ranges[: 1 + MAX_ACK_RANGES]


@given(st.lists(st.tuples(st.integers(1, 1000), st.integers(1, 1000)), min_size=1,
                max_size=1 + MAX_ACK_RANGES),
       st.integers(0, 2**40), st.integers(0, 2**32 - 1))
def test_ack_ranges_round_trip(steps, base, delay_us):
    ranges, high = [], base + sum(g + n for g, n in steps)
    for gap, length in steps:  # from the top down: a range of ``length``, then a gap
        ranges.append((high - length + 1, high))
        high -= length + gap
    assert parse_ack(encode_ack(5, 9, ranges, delay_us)) == (5, 9, delay_us, ranges)


@pytest.mark.parametrize("packet, why", [
    (b"", "empty"),
    (bytes([DATA_ID]) + bytes(19), "short DATA"),
    (encode_data(1, 0, 0, bytes(MAX_PAYLOAD)) + b"x", "DATA over 1373 bytes"),
    (encode_data(1, 0, 0, b"")[:-4] + (2).to_bytes(4, "big"), "floor below packet 0"),
    (encode_ack(0, 0, [(0, 0)], 0)[:-1], "short ACK"),
    (encode_ack(0, 0, [(5, 9), (0, 1)], 0)[:-1], "ACK length does not match its count"),
    (encode_ack(0, 0, [(0, 0)], 0)[:-4] + bytes(4), "empty first range"),
    (encode_ack(10, 9, [(0, 0)], 0), "limit below stream_ack"),
    (encode_ack(0, 0, [(5, 9)], 0)[:29] + bytes([1]) + (5).to_bytes(4, "big")
     + (5).to_bytes(4, "big") + (1).to_bytes(4, "big"), "a range below packet 0"),
    (encode_ack(0, 0, [(5, 9)], 0)[:29] + bytes([1]) + (2).to_bytes(4, "big")
     + bytes(4) + (1).to_bytes(4, "big"), "a zero gap"),
])
def test_malformed_packets_are_remote_protocol_errors(packet, why):
    with pytest.raises(RemoteProtocolError):
        if packet[:1] == bytes([ACK_ID]):
            parse_ack(packet)
        else:
            parse_data(packet)
