"""The sans-IO core of port forwarding (toxbridge.forward): the specs, the rules, and the
forward stream's header and answer, byte for byte."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from toxbridge.errors import ConfigError, RemoteProtocolError
from toxbridge.forward import (FORWARD_KIND, Answer, Destination, LocalForward, Refusal,
                               Rules, Status, decode_header, encode_answer, encode_header,
                               StdioForward, parse_answer, parse_destination,
                               parse_local_forward, parse_rules, parse_stdio_forward)

KEY_A, KEY_B = bytes(range(32)), bytes(range(1, 33))


@pytest.mark.parametrize("text, want", [
    ("8080:127.0.0.1:80", LocalForward("127.0.0.1", 8080, Destination("127.0.0.1", 80))),
    ("0.0.0.0:22:Home.LAN:22", LocalForward("0.0.0.0", 22, Destination("home.lan", 22))),
    ("0:localhost:65535", LocalForward("127.0.0.1", 0, Destination("localhost", 65535))),
    ("[::1]:9000:[fe80::1]:443", LocalForward("::1", 9000, Destination("fe80::1", 443))),
    ("8080:web:80@laptop", LocalForward("127.0.0.1", 8080, Destination("web", 80), "laptop")),
    ("[::1]:0:[::1]:22@" + "AB" * 32,
     LocalForward("::1", 0, Destination("::1", 22), "AB" * 32)),
    ("0:web:80@peer", LocalForward("127.0.0.1", 0, Destination("web", 80), "peer")),
])
def test_local_forward_specs(text, want):
    assert parse_local_forward(text) == want
    assert parse_local_forward(str(want)) == want  # str() gives a spec back


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:22", StdioForward(Destination("127.0.0.1", 22))),
    ("[::1]:22@home", StdioForward(Destination("::1", 22), "home")),
])
def test_stdio_forward_specs(text, want):
    assert parse_stdio_forward(text) == want
    assert parse_stdio_forward(str(want)) == want


@pytest.mark.parametrize("parse, text, why", [
    (parse_local_forward, "80:host:22@", "the peer after '@' must be"),
    (parse_local_forward, "80:host:22@a b", "the peer after '@' must be"),
    (parse_local_forward, "80:host@laptop", "is not [BIND:]LPORT:HOST:PORT[@PEER]"),
    (parse_local_forward, "80:host:22@x@y", "the peer after '@' must be"),
    (parse_stdio_forward, "host@laptop", "is not HOST:PORT[@PEER]"),
    (parse_stdio_forward, "host:22@" + "a" * 65, "the peer after '@' must be"),
])
def test_bad_peer_suffixes(parse, text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse(text)


@pytest.mark.parametrize("text, why", [
    ("80:host", "is not [BIND:]LPORT:HOST:PORT[@PEER]"),
    ("a:b:80:host:22", "is not [BIND:]LPORT:HOST:PORT[@PEER]"),
    ("x:host:22", "local port 'x' is not a port number"),
    ("70000:host:22", "local port 70000 is outside 0..65535"),
    ("80:host:0", "port 0 is outside 1..65535"),
    ("80:ho st:22", "is not a host name"),
    ("80:[::1:22", "'[' without ']'"),
    ("80:[::1]x:22", "':' expected after ']'"),
    ("80:host:22:", "ends with ':'"),
    ("80::22", "must have 1..253 characters"),
    ("80:a..b:22", "is not a host name"),
])
def test_bad_local_forward_specs_say_why(text, why):
    with pytest.raises(ValueError) as info:
        parse_local_forward(text)
    assert why in str(info.value)


def test_destinations_round_trip_through_their_text():
    for text in ("127.0.0.1:22", "[::1]:8080", "db.internal:5432"):
        assert str(parse_destination(text)) == text
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_destination("127.0.0.1")


@pytest.mark.parametrize("dest, wire", [
    (Destination("127.0.0.1", 22), b"\x01\x00\x16127.0.0.1"),
    (Destination("a", 65535), b"\x01\xff\xffa"),
    (Destination("::1", 443), b"\x01\x01\xbb::1"),
])
def test_header_bytes(dest, wire):
    assert encode_header(dest) == wire
    assert decode_header(wire) == dest


@pytest.mark.parametrize("wire, why", [
    (b"\x01\x00", "of 2 bytes"),
    (b"\x02\x00\x16abc", "version 2"),
    (b"\x01\x00\x00abc", "port 0"),
    (b"\x01\x00\x16a b", "is not a host name"),
    (b"\x01\x00\x16\xffab", "forward header"),
])
def test_bad_headers_are_remote_errors(wire, why):
    with pytest.raises(RemoteProtocolError) as info:
        decode_header(wire)
    assert why in str(info.value)


hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)


@given(hosts, st.integers(1, 65535))
def test_headers_round_trip(host, port):
    dest = Destination(host, port)
    assert decode_header(encode_header(dest)) == dest
    assert len(encode_header(dest)) <= 256  # the mux's header limit


def test_answer_bytes():
    assert encode_answer(Status.OK) == b"\x00\x00"
    assert encode_answer(Status.NOT_EXPOSED, "no") == b"\x01\x02no"
    assert parse_answer(b"\x02\x03abcREST") == (Answer(2, "abc"), 5)
    assert Answer(2, "abc").reason == "connect_refused: abc"
    assert Answer(99).reason == "status 99" and not Answer(99).ok
    assert Answer(0).ok and FORWARD_KIND == 2


def test_a_long_answer_text_is_cut_on_a_character():
    wire = encode_answer(Status.UNREACHABLE, "é" * 200)
    assert wire[1] == 254 and wire[2:].decode() == "é" * 127


@given(st.sampled_from(list(Status)), st.text(max_size=100), st.binary(max_size=20),
       st.integers(0, 200))
def test_answers_parse_at_any_cut(status, text, rest, cut):
    wire = encode_answer(status, text) + rest
    end = len(encode_answer(status, text))
    cut = min(cut, len(wire))
    got = parse_answer(wire[:cut])
    if cut < end:
        assert got is None
    else:
        assert got == (Answer(status, text), end)


def test_nothing_is_reachable_by_default():
    assert Rules().allowed(KEY_A, Destination("127.0.0.1", 22)) == Refusal(
        "127.0.0.1:22 is not exposed")
    assert Rules().empty


def test_rules_for_everyone_and_per_peer():
    rules = parse_rules(f"""
expose = ["127.0.0.1:22", "Web.Local:80"]
[[peer]]
key = "{KEY_B.hex()}"
name = "laptop"
expose = ["127.0.0.1:5432"]
""", "r.toml")
    ssh, web, db = (Destination("127.0.0.1", 22), Destination("web.local", 80),
                    Destination("127.0.0.1", 5432))
    assert rules.allowed(KEY_A, ssh) is True and rules.allowed(KEY_A, web) is True
    assert rules.allowed(KEY_A, db) == Refusal("127.0.0.1:5432 is not exposed")
    assert rules.allowed(KEY_B, db) is True
    # a peer with its own list reaches only that
    assert rules.allowed(KEY_B, ssh) == Refusal("127.0.0.1:22 is not exposed to this peer")
    assert rules.allowed(KEY_A, Destination("localhost", 22)) != True  # never resolved
    both = rules.merged(Rules(frozenset({Destination("h", 1)}), ((KEY_B, frozenset({ssh})),)))
    assert both.allowed(KEY_B, ssh) is True and both.allowed(KEY_A, Destination("h", 1)) is True


@pytest.mark.parametrize("text, why", [
    ("expose = [", "not valid TOML"),
    ("exposed = []", "unknown key 'exposed'"),
    ("expose = '127.0.0.1:22'", "'expose' must be a list"),
    ("expose = ['127.0.0.1']", "'expose': '127.0.0.1' is not HOST:PORT"),
    ("peer = 3", "'peer' must be [[peer]] tables"),
    ("[[peer]]\nkey = 'ab'", "[[peer]] 1: 'key' must be a public key of 64 hex digits"),
    ("[[peer]]\nkey = 'zz'", "'key' must be a public key"),
    (f"[[peer]]\nkey = '{KEY_A.hex()}'\nport = 1", "[[peer]] 1: unknown key 'port'"),
    (f"[[peer]]\nkey = '{KEY_A.hex()}'\nname = 1", "'name' must be a string"),
    (f"[[peer]]\nkey = '{KEY_A.hex()}'\n[[peer]]\nkey = '{KEY_A.hex()}'", "listed twice"),
])
def test_bad_rules_files_are_one_line_errors(text, why):
    with pytest.raises(ConfigError) as info:
        parse_rules(text, "r.toml")
    message = str(info.value)
    assert message.startswith("rules file r.toml: ") and why in message, message
    assert "\n" not in message
