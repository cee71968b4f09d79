"""bridge_local.protocol.jsonfast: orjson where it agrees with the stdlib, the stdlib where it
would not; so every result and every error is the stdlib's."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_local.protocol import jsonfast

STDLIB_OUT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def stdlib_in(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.JSONDecoder(parse_constant=refuse).decode(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_output_is_the_stdlib_value_and_reads_back_the_same(value) -> None:
    try:
        expected = STDLIB_OUT.encode(value)
    except ValueError:  # a lone surrogate: both refuse
        with pytest.raises(ValueError):
            jsonfast.dumps(value)
        return
    out = jsonfast.dumps(value)
    assert json.loads(out) == json.loads(expected)  # floats may be spelled differently
    assert jsonfast.loads(out) == stdlib_in(expected)


@pytest.mark.parametrize("text", [
    '{"a":1e400}',  # the stdlib reads inf: so do we
    '{"a":123456789012345678901234567890}',  # orjson would read a float
    '{"a":-9223372036854775809}',
    '{"a":"\\ud800"}',  # a lone surrogate escape: the field checks refuse it later
    '{"a":1,"a":2}',
    '[' * 600 + ']' * 600,
])
def test_input_orjson_would_read_differently_is_read_like_the_stdlib(text) -> None:
    assert jsonfast.loads(text.encode()) == stdlib_in(text)


@pytest.mark.parametrize("text, error", [
    ('{"a":NaN}', ValueError),
    ('{"a":Infinity}', ValueError),
    ('{"a":', json.JSONDecodeError),
    ('[' * 100_000 + ']' * 100_000, RecursionError),
])
def test_input_errors_are_the_stdlibs(text, error) -> None:
    with pytest.raises(error) as ours:
        jsonfast.loads(text.encode())
    with pytest.raises(error) as theirs:
        stdlib_in(text)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(UnicodeDecodeError):
        jsonfast.loads(b'{"a":"\xff"}')


@pytest.mark.parametrize("bad", [math.nan, math.inf, b"bytes", "\ud800", {1j: 1}])
def test_output_refuses_what_the_stdlib_refuses(bad) -> None:
    with pytest.raises((ValueError, TypeError)):
        jsonfast.dumps({"x": bad} if not isinstance(bad, dict) else bad)


def test_output_takes_what_the_stdlib_takes_and_orjson_alone_would_not() -> None:
    for value in ({"n": 2**70}, {1: "int key"}, {"null": None, "s": "null"}):
        assert jsonfast.dumps(value) == STDLIB_OUT.encode(value).encode()
