"""The JSON command codec of the app port: lines, commands, errors, replies — exact tables."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_local.protocol import (
    ChatMessage,
    CommandError,
    CommandId,
    ErrorCode,
    FileCommand,
    History,
    LineDecoder,
    LineTooLong,
    ListUsers,
    Login,
    ResultCode,
    SendMessage,
    User,
    authorize,
    decode_command,
    encode_reply,
    error_reply,
    history_reply,
    login_reply,
    make_token,
    message_event,
    parse_command,
    send_reply,
    status_event,
    users_reply,
)
from toxbridge.errors import RemoteProtocolError

MD5 = "9e107d9d372bb6826bd81d3542a419d6"

# --------------------------------------------------------------------------- lines


def lines_of(decoder: LineDecoder) -> list[bytes | LineTooLong]:
    out = []
    while (item := decoder.next_line()) is not None:
        out.append(item)
    return out


LINE_CASES = [
    # (chunks, max length, expected items)
    ([b"a\nb\n"], 10, [b"a", b"b"]),
    ([b"a", b"b", b"c\n"], 10, [b"abc"]),
    ([b"abc\r\n"], 10, [b"abc\r"]),
    ([b"\n \n\r\n\t\nx\n"], 10, [b"x"]),  # blank lines skipped
    ([b"0123456789\n"], 10, [b"0123456789"]),  # exactly the limit
    ([b"0123456789A\nok\n"], 10, [LineTooLong(10), b"ok"]),
    ([b"0123456789A"], 10, [LineTooLong(10)]),  # known too long before the newline
    ([b"0123456789A", b"BC", b"D\nok\n"], 10, [LineTooLong(10), b"ok"]),
    ([b"01234", b"56789", b"\n"], 10, [b"0123456789"]),
    ([b"x" * 25 + b"\n" + b"y" * 11 + b"\nz\n"], 10, [LineTooLong(10), LineTooLong(10), b"z"]),
    ([b"partial", b""], 10, [b"partial"]),  # unterminated last line at end of stream
    ([b"   ", b""], 10, []),
    ([b"0123456789AB", b""], 10, [LineTooLong(10)]),
]


@pytest.mark.parametrize(("chunks", "limit", "expected"), LINE_CASES)
def test_line_decoder_table(chunks: list[bytes], limit: int, expected: list) -> None:
    d = LineDecoder(limit)
    got: list = []
    for chunk in chunks:
        d.receive_data(chunk)
        got += lines_of(d)
    assert got == expected


def test_line_decoder_reports_end_of_stream() -> None:
    d = LineDecoder()
    d.receive_data(b"a\n")
    assert not d.eof
    d.receive_data(b"")
    assert d.next_line() == b"a" and d.next_line() is None and d.eof
    with pytest.raises(ValueError):
        d.receive_data(b"more")


def test_line_too_long_converts_to_an_error_reply() -> None:
    assert encode_reply(LineTooLong(1048576).error().reply()) == (
        b'{"command":9000,"code":9002,"message":"line longer than 1048576 bytes"}\n'
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=10),
    st.lists(st.integers(1, 40), min_size=1, max_size=20),
)
def test_line_decoder_gives_the_same_lines_for_any_chunking(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    limit = 20
    expected = [line if len(line) <= limit else LineTooLong(limit) for line in lines if line.strip()]
    d = LineDecoder(limit)
    got: list = []
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        d.receive_data(stream[pos : pos + n])
        pos, i = pos + n, i + 1
        got += lines_of(d)
        assert len(d._buf) <= max(limit + n, n)  # bounded buffer
    assert got == expected


# --------------------------------------------------------------------------- commands


def short_id(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."



GOOD = [
    (b'{"command":1000,"name":"alice"}', Login("alice")),
    ('{"command": 1000, "name": "\u7231\u4e3d\u4e1d"}'.encode(), Login("\u7231\u4e3d\u4e1d")),
    (b'{"name":"bob","command":1000,"extra":[1,2]}', Login("bob")),  # unknown fields ignored
    (b'{"command":1000,"name":"' + b"n" * 64 + b'"}', Login("n" * 64)),
    (b'{"command":1001,"token":"t1"}', ListUsers("t1")),
    (
        b'{"command":1002,"token":"t1","goaltoken":"t2","type":1,"msg":"hi\\nthere"}',
        SendMessage("t1", "t2", 1, "hi\nthere"),
    ),
    (b'{"command":1002,"token":"t1","goaltoken":"t2","type":0,"msg":""}', SendMessage("t1", "t2", 0, "")),
    (
        b'{"command":1002,"token":"t1","goaltoken":"t2","type":1,"msg":"m","filename":null}',
        SendMessage("t1", "t2", 1, "m"),  # null counts as absent
    ),
    (
        b'{"command":1002,"token":"t1","goaltoken":"t2","type":2,"msg":"",'
        b'"filename":"a.txt","filesize":3,"md5":"' + MD5.encode() + b'","fileid":"f1"}',
        SendMessage("t1", "t2", 2, "", "a.txt", 3, MD5, "f1"),
    ),
    (b'{"command":1003,"token":"t1","goaltoken":"t2"}', History("t1", "t2")),
    (
        b'{"command":1003,"token":"t1","goaltoken":"t2","limit":50,"before":1700000000.5}',
        History("t1", "t2", 50, 1700000000.5),
    ),
    (b'{"command":1003,"token":"t1","goaltoken":"t2","before":17}', History("t1", "t2", 100, 17)),
    (
        b'{"command":4001,"fileid":"f1","taskid":"k1","type":1,"token":"t1"}',
        FileCommand(CommandId.FILE_INIT, MappingProxyType({"fileid": "f1", "taskid": "k1", "type": 1, "token": "t1"})),
    ),
    (
        b'{"command":7001,"taskid":7,"chunk_size":2,"range":[0,2],"data":"aGk="}',
        FileCommand(CommandId.CHUNK, MappingProxyType({"taskid": 7, "chunk_size": 2, "range": (0, 2), "data": "aGk="})),
    ),
    (
        b'{"command":8000,"taskid":"k","result":0,"filesize":9,"suggest_chunksize":4,"chunk_map":[]}',
        FileCommand(
            CommandId.TRANSFER_ACCEPT,
            MappingProxyType({"taskid": "k", "result": 0, "filesize": 9, "suggest_chunksize": 4, "chunk_map": []}),
        ),
    ),
    (b'{"command":7070,"taskid":"k","result":1}', FileCommand(CommandId.TRANSFER_PAUSE, MappingProxyType({"taskid": "k", "result": 1}))),
]


@pytest.mark.parametrize(("line", "command"), GOOD, ids=short_id)
def test_decode_command_table(line: bytes, command: object) -> None:
    assert decode_command(line) == command
    assert decode_command(line.decode()) == command


def err(code: ErrorCode, message: str, request: int | None = None) -> bytes:
    reply = {"command": 9000, "code": int(code), "message": message}
    if request is not None:
        reply["request"] = request
    return json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


SEND = b'{"command":1002,"token":"t1","goaltoken":"t2","type":1,"msg":"m"'
BAD = [
    (b"\xff\n", err(ErrorCode.MALFORMED_JSON, "line is not valid UTF-8")),
    (b"{", err(ErrorCode.MALFORMED_JSON, "malformed JSON: Expecting property name enclosed in double quotes at column 2")),
    (b"", err(ErrorCode.MALFORMED_JSON, "malformed JSON: Expecting value at column 1")),
    (b'{"command":1000}{}', err(ErrorCode.MALFORMED_JSON, "malformed JSON: Extra data at column 17")),
    (b'{"command":1001,"token":NaN}', err(ErrorCode.MALFORMED_JSON, "malformed JSON: NaN is not JSON")),
    (b"[" * 100_000, err(ErrorCode.MALFORMED_JSON, "malformed JSON: nested too deeply")),
    (b"1" * 5000, err(ErrorCode.MALFORMED_JSON, "malformed JSON: integer too long")),
    (b'{"command":1002,"type":-Infinity}', err(ErrorCode.MALFORMED_JSON, "malformed JSON: -Infinity is not JSON")),
    (b"[1000]", err(ErrorCode.NOT_AN_OBJECT, "a request must be a JSON object, not an array")),
    (b'"x"', err(ErrorCode.NOT_AN_OBJECT, "a request must be a JSON object, not a string")),
    (b"null", err(ErrorCode.NOT_AN_OBJECT, "a request must be a JSON object, not null")),
    (b"1.5", err(ErrorCode.NOT_AN_OBJECT, "a request must be a JSON object, not a number")),
    (b"{}", err(ErrorCode.MISSING_FIELD, "missing field 'command'")),
    (b'{"command":"1000","name":"a"}', err(ErrorCode.WRONG_TYPE, "field 'command' must be an integer")),
    (b'{"command":true}', err(ErrorCode.WRONG_TYPE, "field 'command' must be an integer")),
    (b'{"command":1000.0,"name":"a"}', err(ErrorCode.WRONG_TYPE, "field 'command' must be an integer")),
    (b'{"command":1234}', err(ErrorCode.UNKNOWN_COMMAND, "unknown command 1234", 1234)),
    (b'{"command":2003}', err(ErrorCode.UNKNOWN_COMMAND, "command 2003 is sent by the server, not to it", 2003)),
    (b'{"command":9000}', err(ErrorCode.UNKNOWN_COMMAND, "command 9000 is sent by the server, not to it", 9000)),
    (b'{"command":1000}', err(ErrorCode.MISSING_FIELD, "missing field 'name'", 1000)),
    (b'{"command":1000,"name":null}', err(ErrorCode.MISSING_FIELD, "missing field 'name'", 1000)),
    (b'{"command":1000,"name":7}', err(ErrorCode.WRONG_TYPE, "field 'name' must be a string", 1000)),
    (b'{"command":1000,"name":""}', err(ErrorCode.INVALID_VALUE, "field 'name' must not be empty", 1000)),
    (b'{"command":1000,"name":"' + b"n" * 65 + b'"}', err(ErrorCode.INVALID_VALUE, "field 'name' must be at most 64 characters", 1000)),
    (b'{"command":1000,"name":"a\\nb"}', err(ErrorCode.INVALID_VALUE, "field 'name' must not contain control characters", 1000)),
    (b'{"command":1000,"name":"\\ud800"}', err(ErrorCode.INVALID_VALUE, "field 'name' is not valid Unicode (lone surrogate)", 1000)),
    (b'{"command":1001}', err(ErrorCode.MISSING_FIELD, "missing field 'token'", 1001)),
    (b'{"command":1001,"token":""}', err(ErrorCode.INVALID_VALUE, "field 'token' must not be empty", 1001)),
    (b'{"command":1001,"token":"' + b"t" * 129 + b'"}', err(ErrorCode.INVALID_VALUE, "field 'token' must be at most 128 characters", 1001)),
    (b'{"command":1001,"token":["t"]}', err(ErrorCode.WRONG_TYPE, "field 'token' must be a string", 1001)),
    (b'{"command":1002,"token":"t1","goaltoken":"t2","msg":"m"}', err(ErrorCode.MISSING_FIELD, "missing field 'type'", 1002)),
    (b'{"command":1002,"token":"t1","goaltoken":"t2","type":true,"msg":"m"}', err(ErrorCode.WRONG_TYPE, "field 'type' must be an integer", 1002)),
    (b'{"command":1002,"token":"t1","goaltoken":"t2","type":1.0,"msg":"m"}', err(ErrorCode.WRONG_TYPE, "field 'type' must be an integer", 1002)),
    (b'{"command":1002,"token":"t1","goaltoken":"t2","type":-1,"msg":"m"}', err(ErrorCode.INVALID_VALUE, "field 'type' must be in 0..2147483647", 1002)),
    (b'{"command":1002,"token":"t1","goaltoken":"t2","type":1,"msg":5}', err(ErrorCode.WRONG_TYPE, "field 'msg' must be a string", 1002)),
    (b'{"command":1002,"token":"t1","type":1,"msg":"m"}', err(ErrorCode.MISSING_FIELD, "missing field 'goaltoken'", 1002)),
    (SEND + b',"fileid":"f"}', err(ErrorCode.MISSING_FIELD, "missing field 'filename' (a file message needs all four file fields)", 1002)),
    (SEND.replace(b'"type":1', b'"type":2') + b"}", err(ErrorCode.MISSING_FIELD, "missing field 'filename' (a file message needs all four file fields)", 1002)),
    (SEND + b',"filename":"a","filesize":1,"md5":"x","fileid":"f"}', err(ErrorCode.INVALID_VALUE, "field 'md5' must be 32 hexadecimal digits", 1002)),
    (SEND + b',"filename":"a","filesize":-1,"md5":"' + MD5.encode() + b'","fileid":"f"}', err(ErrorCode.INVALID_VALUE, "field 'filesize' must be in 0..9223372036854775807", 1002)),
    (SEND + b',"filename":"a\\u0000","filesize":1,"md5":"' + MD5.encode() + b'","fileid":"f"}', err(ErrorCode.INVALID_VALUE, "field 'filename' must not contain control characters", 1002)),
    (b'{"command":1003,"token":"t1","goaltoken":"t2","limit":0}', err(ErrorCode.INVALID_VALUE, "field 'limit' must be in 1..1000", 1003)),
    (b'{"command":1003,"token":"t1","goaltoken":"t2","limit":1001}', err(ErrorCode.INVALID_VALUE, "field 'limit' must be in 1..1000", 1003)),
    (b'{"command":1003,"token":"t1","goaltoken":"t2","before":"now"}', err(ErrorCode.WRONG_TYPE, "field 'before' must be a number", 1003)),
    (b'{"command":1003,"token":"t1","goaltoken":"t2","before":1e400}', err(ErrorCode.INVALID_VALUE, "field 'before' must be finite", 1003)),
    (b'{"command":1003,"token":"t1","goaltoken":"t2","before":-1}', err(ErrorCode.INVALID_VALUE, "field 'before' must be in 0..9007199254740992", 1003)),
    (b'{"command":4001,"fileid":"f","taskid":"k","type":1}', err(ErrorCode.MISSING_FIELD, "missing field 'token'", 4001)),
    (b'{"command":7001,"taskid":1.5}', err(ErrorCode.WRONG_TYPE, "field 'taskid' must be a string or an integer", 7001)),
    (b'{"command":7001,"taskid":""}', err(ErrorCode.INVALID_VALUE, "field 'taskid' must not be empty", 7001)),
    (b'{"command":7001,"taskid":1,"chunk_size":2,"range":[0],"data":""}', err(ErrorCode.WRONG_TYPE, "field 'range' must be an array of two integers", 7001)),
    (b'{"command":7001,"taskid":1,"chunk_size":2,"range":[2,1],"data":""}', err(ErrorCode.INVALID_VALUE, "field 'range' must be [start, end] with 0 <= start <= end", 7001)),
    (b'{"command":7001,"taskid":1,"chunk_size":2,"range":[0,2],"data":3}', err(ErrorCode.WRONG_TYPE, "field 'data' must be bytes or a string", 7001)),
    (b'{"command":8001,"taskid":1,"chunk_size":2,"range":[0,2],"result":0,"chunk_map":{}}', err(ErrorCode.WRONG_TYPE, "field 'chunk_map' must be an array", 8001)),
    (b'{"command":7010,"taskid":1,"result":false}', err(ErrorCode.WRONG_TYPE, "field 'result' must be an integer", 7010)),
]


@pytest.mark.parametrize(("line", "reply"), BAD, ids=short_id)
def test_decode_command_error_table(line: bytes, reply: bytes) -> None:
    with pytest.raises(CommandError) as info:
        decode_command(line)
    assert encode_reply(info.value.reply()) == reply
    assert isinstance(info.value, RemoteProtocolError)


def test_parse_command_accepts_msgpack_style_dicts_with_bytes() -> None:
    cmd = parse_command({"command": 7001, "taskid": "k", "chunk_size": 3, "range": [0, 3], "data": b"abc"})
    assert cmd == FileCommand(CommandId.CHUNK, MappingProxyType({"taskid": "k", "chunk_size": 3, "range": (0, 3), "data": b"abc"}))
    assert isinstance(cmd, FileCommand) and cmd.token is None


def test_file_command_fields_are_read_only() -> None:
    cmd = decode_command(b'{"command":7070,"taskid":"k","result":1}')
    assert isinstance(cmd, FileCommand)
    with pytest.raises(TypeError):
        cmd.fields["taskid"] = "other"  # type: ignore[index]


def test_send_message_knows_whether_it_is_a_file() -> None:
    assert not SendMessage("a", "b", 1, "m").is_file
    assert SendMessage("a", "b", 2, "", "f", 1, MD5, "id").is_file


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
_FIELD_NAMES = ["command", "name", "token", "goaltoken", "type", "msg", "filename", "filesize",
                "md5", "fileid", "limit", "before", "taskid", "range", "data", "result", "chunk_map"]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_command_error(line: bytes) -> None:
    try:
        decode_command(line)
    except CommandError as exc:
        assert isinstance(exc.code, ErrorCode)
        encode_reply(exc.reply())


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(
    st.sampled_from(_FIELD_NAMES),
    st.one_of(_json, st.sampled_from([1000, 1001, 1002, 1003, 4001, 7000, 7001, 8001, 2003, 0])),
))
def test_arbitrary_objects_decode_to_a_command_or_an_error_reply(obj: dict) -> None:
    line = json.dumps(obj).encode()  # may hold NaN / Infinity: not JSON, refused
    try:
        command = decode_command(line)
    except CommandError as exc:
        encode_reply(exc.reply())
    else:
        assert obj["command"] in (1000, 1001, 1002, 1003, 4001, 7000, 7001, 8001)
        if not isinstance(command, FileCommand):
            hash(command)  # plain commands are immutable values


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=64).filter(lambda s: s and s.isprintable()))
def test_any_printable_name_logs_in_and_echoes_back(name: str) -> None:
    line = json.dumps({"command": 1000, "name": name}).encode()
    assert decode_command(line) == Login(name)
    user = User(make_token(bytes(32), name), name, "127.0.0.1", 5000)
    assert json.loads(encode_reply(login_reply(user)))["name"] == name


# --------------------------------------------------------------------------- authorization


AUTH = [
    # (command, session token, error code or None)
    (Login("a"), None, None),
    (Login("a"), "t1", ErrorCode.ALREADY_LOGGED_IN),
    (ListUsers("t1"), None, ErrorCode.NOT_LOGGED_IN),
    (ListUsers("t1"), "t1", None),
    (ListUsers("t2"), "t1", ErrorCode.TOKEN_MISMATCH),
    (SendMessage("t1", "t2", 1, "m"), "t1", None),
    (SendMessage("t2", "t1", 1, "m"), "t1", ErrorCode.TOKEN_MISMATCH),
    (History("t1", "t2"), "t1", None),
    (History("t2", "t1"), "t1", ErrorCode.TOKEN_MISMATCH),
    (History("t1", "t2"), None, ErrorCode.NOT_LOGGED_IN),
    (FileCommand(CommandId.FILE_INIT, MappingProxyType({"token": "t2"})), "t1", ErrorCode.TOKEN_MISMATCH),
    (FileCommand(CommandId.TRANSFER_END, MappingProxyType({"taskid": 1})), "t1", None),
    (FileCommand(CommandId.TRANSFER_END, MappingProxyType({"taskid": 1})), None, ErrorCode.NOT_LOGGED_IN),
]


@pytest.mark.parametrize(("command", "session", "code"), AUTH)
def test_authorize_table(command: object, session: str | None, code: ErrorCode | None) -> None:
    if code is None:
        authorize(command, session)  # type: ignore[arg-type]
        return
    with pytest.raises(CommandError) as info:
        authorize(command, session)  # type: ignore[arg-type]
    assert info.value.code == code
    assert info.value.request == getattr(command, "ID", getattr(command, "command", None))


def test_authorization_error_replies_are_exact() -> None:
    with pytest.raises(CommandError) as info:
        authorize(SendMessage("t2", "t1", 1, "m"), "t1")
    assert encode_reply(info.value.reply()) == (
        b'{"command":9000,"code":9009,"message":"token is not the one this connection logged in with","request":1002}\n'
    )
    with pytest.raises(CommandError) as info:
        authorize(ListUsers("t"), None)
    assert encode_reply(info.value.reply()) == (
        b'{"command":9000,"code":9008,"message":"log in first (command 1000)","request":1001}\n'
    )


# --------------------------------------------------------------------------- tokens


def test_token_is_stable_hex_and_pinned() -> None:
    key = bytes(range(32))
    assert make_token(key, "alice") == make_token(key, "alice")
    assert make_token(bytes(32), "alice") == "2b5c59f9f44a68eec0729ce93a2ee501"
    assert len(make_token(key, "\u7231")) == 32 and make_token(key, "x").islower()


def test_tokens_differ_across_bridges_and_names() -> None:
    k1, k2 = bytes(32), bytes(31) + b"\x01"
    tokens = {make_token(k, n) for k in (k1, k2) for n in ("alice", "bob", "Alice", "alice ")}
    assert len(tokens) == 8


def test_token_needs_a_tox_public_key() -> None:
    with pytest.raises(ValueError):
        make_token(b"short", "alice")


# --------------------------------------------------------------------------- replies


ALICE = User("aa" * 16, "alice", "127.0.0.1", 40000)
BOB = User("bb" * 16, "bob", "10.0.0.2", 40001, side="peer")
TEXT = ChatMessage("aa" * 16, "bb" * 16, "alice", 1700000000.25, "127.0.0.1", 40000, 1, "hi \u4f60\u597d")
FILE = ChatMessage("aa" * 16, "bb" * 16, "alice", 1700000001, "127.0.0.1", 40000, 2, "", "a.txt", 3, MD5, "f1")

REPLIES = [
    (
        login_reply(ALICE),
        b'{"command":2000,"token":"' + b"a" * 32 + b'","name":"alice","ip":"127.0.0.1","port":40000,"side":"local"}\n',
    ),
    (users_reply([]), b'{"command":2001,"users":[]}\n'),
    (
        users_reply([BOB]),
        b'{"command":2001,"users":[{"token":"' + b"b" * 32 + b'","name":"bob","ip":"10.0.0.2","port":40001,"side":"peer"}]}\n',
    ),
    (send_reply(ResultCode.DELIVERED), b'{"command":2002,"result":true,"code":201}\n'),
    (send_reply(ResultCode.UNKNOWN_TARGET), b'{"command":2002,"result":false,"code":202}\n'),
    (send_reply(ResultCode.SEND_FAILED, "peer bridge refused it"), b'{"command":2002,"result":false,"code":203,"reason":"peer bridge refused it"}\n'),
    (send_reply(ResultCode.TARGET_OFFLINE), b'{"command":2002,"result":true,"code":204}\n'),
    (
        message_event(TEXT),
        '{"command":2003,"srctoken":"%s","goaltoken":"%s","name":"alice","time":1700000000.25,"ip":"127.0.0.1","port":40000,"type":1,"msg":"hi \u4f60\u597d"}\n'.encode()
        % (b"a" * 32, b"b" * 32),
    ),
    (
        history_reply([FILE]),
        b'{"command":2004,"messages":[{"srctoken":"%s","goaltoken":"%s","name":"alice","time":1700000001,"ip":"127.0.0.1","port":40000,"type":2,"msg":"","filename":"a.txt","filesize":3,"md5":"%s","fileid":"f1"}]}\n'
        % (b"a" * 32, b"b" * 32, MD5.encode()),
    ),
    (status_event(ResultCode.ONLINE, "peer", "bb" * 16, "bob"), b'{"command":301,"side":"peer","token":"' + b"b" * 32 + b'","name":"bob"}\n'),
    (status_event(ResultCode.OFFLINE, "peer"), b'{"command":302,"side":"peer"}\n'),
    (status_event(ResultCode.OFFLINE, "peer", bridge="AB" * 32),
     b'{"command":302,"side":"peer","bridge":"' + b"AB" * 32 + b'"}\n'),
    (status_event(ResultCode.ONLINE, "local", "cc" * 16, "carol", "CD" * 32),
     b'{"command":301,"side":"local","token":"' + b"c" * 32 + b'","name":"carol","bridge":"'
     + b"CD" * 32 + b'"}\n'),
    (error_reply(ErrorCode.INTERNAL_ERROR, "oops"), b'{"command":9000,"code":9012,"message":"oops"}\n'),
]


@pytest.mark.parametrize(("reply", "line"), REPLIES)
def test_reply_table(reply: dict, line: bytes) -> None:
    assert encode_reply(reply) == line


def test_reply_builders_refuse_wrong_codes() -> None:
    with pytest.raises(ValueError):
        send_reply(ResultCode.ONLINE)
    with pytest.raises(ValueError):
        send_reply(ResultCode.SEND_FAILED)  # 203 needs a reason
    with pytest.raises(ValueError):
        status_event(ResultCode.DELIVERED, "local")
    with pytest.raises(ValueError):
        status_event(ResultCode.ONLINE, "elsewhere")


def test_encode_reply_refuses_what_json_cannot_carry() -> None:
    for bad in ({"x": float("nan")}, {"x": b"bytes"}, {"x": "\ud800"}):
        with pytest.raises((ValueError, TypeError)):
            encode_reply(bad)


def test_records_round_trip_through_from_dict() -> None:
    for record in (TEXT, FILE):
        assert ChatMessage.from_dict(json.loads(encode_reply(message_event(record)))) == record
    assert User.from_dict(json.loads(encode_reply(login_reply(BOB)))) == BOB
    assert User.from_dict({"token": "t", "name": "n", "ip": "", "port": 0}) == User("t", "n", "", 0)


RECORD_ERRORS = [
    (User.from_dict, [], ErrorCode.NOT_AN_OBJECT),
    (User.from_dict, {"token": "t", "name": "n", "ip": "", "port": 70000}, ErrorCode.INVALID_VALUE),
    (User.from_dict, {"token": "t", "name": "n", "ip": "", "port": 1, "side": "x"}, ErrorCode.INVALID_VALUE),
    (ChatMessage.from_dict, {**TEXT.to_dict(), "time": "now"}, ErrorCode.WRONG_TYPE),
    (ChatMessage.from_dict, {**TEXT.to_dict(), "fileid": "f"}, ErrorCode.MISSING_FIELD),
    (ChatMessage.from_dict, {k: v for k, v in TEXT.to_dict().items() if k != "srctoken"}, ErrorCode.MISSING_FIELD),
]


@pytest.mark.parametrize(("parse", "obj", "code"), RECORD_ERRORS)
def test_record_errors(parse, obj, code: ErrorCode) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError) as info:
        parse(obj)
    assert info.value.code == code


def test_codes_do_not_clash() -> None:
    results = {int(c) for c in ResultCode}
    errors = {int(c) for c in ErrorCode}
    commands = {int(c) for c in CommandId}
    assert not results & errors and not errors & commands
    assert {301, 302} <= results & commands  # status events use their code as command


_SEND_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**31 + 3), st.floats(),
                         st.text(max_size=5), st.text(alphabet="ab\x00\u00e9", max_size=3),
                         st.just("x" * 129), st.just("x" * 128), st.lists(st.integers(), max_size=2))


@given(st.dictionaries(st.sampled_from(["token", "goaltoken", "type", "msg", "filename",
                                        "filesize", "md5", "fileid", "other"]),
                       _SEND_VALUES, max_size=9))
def test_a_1002_on_the_fast_path_is_what_the_field_table_makes_of_it(fields) -> None:
    from bridge_local.protocol.commands import SendMessage, _check_file_fields, _values

    obj = {"command": 1002, **fields}
    try:
        values = _values(SendMessage.FIELDS, obj, 1002)
        _check_file_fields(values, 1002)
        expected = SendMessage(**values)
    except CommandError as exc:
        with pytest.raises(CommandError) as caught:
            parse_command(obj)
        assert caught.value.reply() == exc.reply()
    else:
        assert parse_command(obj) == expected
