"""The app token gate in front of the core (sans-IO), line by line."""

from __future__ import annotations

from bridge_local.apptoken import TokenGate
from bridge_local.protocol import LineTooLong

TOKEN = b"0123456789abcdef"


def test_gate_passes_a_login_with_the_token_and_everything_after_it() -> None:
    gate = TokenGate(TOKEN)
    assert gate.check(b'{"command":1000,"name":"carol","apptoken":"0123456789abcdef"}') is None
    assert gate.admitted
    assert gate.check(b'{"command":1000,"name":"again"}') is None  # the core says 9010


def test_gate_passes_what_is_not_a_login_to_the_core_which_refuses_it() -> None:
    gate = TokenGate(TOKEN)
    for line in (b'{"command":1001,"token":"x"}', b"not json", b"[1]", b'{"command":1000}',
                 LineTooLong(10)):
        assert gate.check(line) is None
    assert not gate.admitted


def test_gate_answers_a_login_without_the_token_9014_and_a_wrong_one_9015() -> None:
    for line, code in ((b'{"command":1000,"name":"carol"}', 9014),
                       (b'{"command":1000,"name":"carol","apptoken":null}', 9014),
                       (b'{"command":1000,"name":"carol","apptoken":"0123456789abcdeX"}', 9015),
                       (b'{"command":1000,"name":"carol","apptoken":["0123456789abcdef"]}', 9015)):
        gate = TokenGate(TOKEN)
        reply = gate.check(line)
        assert (reply["command"], reply["code"], reply["request"]) == (9000, code, 1000)
        assert not gate.admitted
