"""The socket-table parser and the owner lookup, on exact tables; the access policy."""

from __future__ import annotations

import ipaddress

import pytest

from toxbridge.access import ADMIT, NEED_TOKEN, REFUSE, AccessPolicy, read_token_file, token_matches
from toxbridge.errors import ConfigError
from toxbridge.access.procnet import SocketEntry, find_owner, parse_table

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

# A listener on 127.0.0.1:8080 (uid 1000); a client of uid 1001 at :41652 and the accepted
# end; a second client on the same port pair from another source port; a time-wait remnant.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4700 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A2B4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 4711 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:A2B4 01 00000000:00000000 00:00000000 00000000  1000        0 4712 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:A2B5 0100007F:1F91 01 00000000:00000000 00:00000000 00000000  1002        0 4713 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:A2B6 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
"""

TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5100 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:C350 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000  1003        0 5101 1 0000000000000000 20 4 30 10 -1
"""

LOOP = V4("127.0.0.1")


def test_parse_table_reads_every_field_of_the_kernels_ipv4_lines() -> None:
    entries = parse_table(TCP, "little")
    assert entries[0] == SocketEntry((LOOP, 8080), (V4("0.0.0.0"), 0), 0x0A, 1000, 4700)
    assert entries[1] == SocketEntry((LOOP, 41652), (LOOP, 8080), 0x01, 1001, 4711)
    assert entries[4] == SocketEntry((LOOP, 41654), (LOOP, 8080), 0x06, 0, 0)
    assert len(entries) == 5


def test_parse_table_reads_ipv6_words_in_host_order() -> None:
    entries = parse_table(TCP6, "little")
    assert entries[0].local == (V6("::1"), 8080)
    assert entries[1].local == (V6("::ffff:127.0.0.1"), 50000)
    assert entries[1].uid == 1003


def test_parse_table_honours_a_big_endian_host() -> None:
    line = "   0: 7F000001:A2B4 7F000001:1F90 01 00000000:00000000 00:00000000 00000000  7  0 9 1\n"
    assert parse_table(line, "big")[0].local == (LOOP, 41652)
    assert parse_table(line, "little")[0].local == (V4("1.0.0.127"), 41652)


@pytest.mark.parametrize("line", [
    "   0: 0100007F:1F90 0100007F 01 0 0 0 1000 0 1",      # no port
    "   0: 0100007F:1F90 0100007F:1F9 01 0 0 0 1000 0 1",  # a 3-digit port
    "   0: 01007F:1F90 0100007F:1F90 01 0 0 0 1000 0 1",   # a 6-digit address
    "   0: 0100007F:1F90 0100007F:1F90 01 0 0 0 x 0 1",    # uid not a number
    "   0: 0100007F:1F90 0100007F:1F90 01 0 0",           # too few fields
])
def test_parse_table_names_the_line_that_is_not_in_the_kernels_format(line: str) -> None:
    with pytest.raises(ValueError, match="line 2 of the socket table"):
        parse_table("  sl  local_address\n" + line, "little")


def test_find_owner_matches_the_connecting_end_on_both_address_and_port() -> None:
    entries = parse_table(TCP, "little")
    assert find_owner(entries, ("127.0.0.1", 41652), ("127.0.0.1", 8080)) == 1001
    # The accepted end (local :8080) is ours, not the peer's; never mistaken for it.
    assert find_owner(entries, ("127.0.0.1", 8080), ("127.0.0.1", 41652)) == 1000
    # Same source port, another destination port: not our connection.
    assert find_owner(entries, ("127.0.0.1", 41653), ("127.0.0.1", 8080)) is None
    assert find_owner(entries, ("127.0.0.1", 41653), ("127.0.0.1", 8081)) == 1002
    assert find_owner(entries, ("127.0.0.1", 41652), ("127.0.0.2", 8080)) is None


def test_find_owner_ignores_entries_no_process_holds() -> None:
    # The time-wait remnant shows uid 0: it must not pass for root.
    entries = parse_table(TCP, "little")
    assert find_owner(entries, ("127.0.0.1", 41654), ("127.0.0.1", 8080)) is None


def test_find_owner_sees_an_ipv4_mapped_peer_in_either_table() -> None:
    v4 = parse_table(TCP, "little")
    v6 = parse_table(TCP6, "little")
    # A dual-stack listener sees an IPv4 client as ::ffff:127.0.0.1.
    assert find_owner(v4, ("::ffff:127.0.0.1", 41652), ("::ffff:127.0.0.1", 8080)) == 1001
    assert find_owner(v6, ("127.0.0.1", 50000), ("127.0.0.1", 8080)) == 1003


@pytest.mark.parametrize("policy, uid, tokens, verdict", [
    (AccessPolicy(1000), 1000, True, ADMIT),
    (AccessPolicy(1000), 1001, True, REFUSE),
    (AccessPolicy(1000), None, True, REFUSE),
    (AccessPolicy(1000, token=b"t" * 16), 1001, True, NEED_TOKEN),
    (AccessPolicy(1000, token=b"t" * 16), None, True, NEED_TOKEN),
    (AccessPolicy(1000, token=b"t" * 16), 1000, True, ADMIT),
    (AccessPolicy(1000, token=b"t" * 16), 1001, False, REFUSE),  # the bridge port: no login
    (AccessPolicy(1000, open=True), 1001, False, ADMIT),
    (AccessPolicy(1000, open=True), None, True, ADMIT),
])
def test_access_policy_verdicts(policy: AccessPolicy, uid, tokens: bool, verdict: str) -> None:
    assert policy.verdict(uid, tokens) == verdict


def test_token_matches_only_the_exact_string() -> None:
    token = b"0123456789abcdef"
    assert token_matches(token, "0123456789abcdef")
    for given in ("0123456789abcdeF", "0123456789abcde", "", None, 123, ["x"], "\ud800" * 16):
        assert not token_matches(token, given)


def test_read_token_file_strips_whitespace_and_refuses_short_or_spaced_tokens(tmp_path) -> None:
    path = tmp_path / "token"
    path.write_text("  0123456789abcdef\n")
    assert read_token_file(path) == b"0123456789abcdef"
    for bad in ("short", "0123456789 abcdef", ""):
        path.write_text(bad)
        with pytest.raises(ConfigError, match="at least 16 characters"):
            read_token_file(path)
    with pytest.raises(ConfigError, match="cannot read the app token file"):
        read_token_file(tmp_path / "missing")


def test_parse_table_with_ports_keeps_only_the_lines_of_that_port_pair() -> None:
    entries = parse_table(TCP, "little", ports=(41652, 8080))
    assert [e.inode for e in entries] == [4711]
    assert find_owner(entries, ("127.0.0.1", 41652), ("127.0.0.1", 8080)) == 1001
    assert [e.inode for e in parse_table(TCP6, "little", ports=(50000, 8080))] == [5101]
    assert parse_table(TCP, "little", ports=(8080, 41653)) == []
