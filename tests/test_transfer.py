"""The transfer machine and the chunk map: exact messages, every error class, and two
machines joined by a hostile link (loss, duplication, reordering, restarts of either side)."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_local.transfer.chunkmap import (
    ChunkMap,
    ChunkMapError,
    chunk_count,
    chunk_range,
    from_wire,
    to_wire,
)
from bridge_local.transfer import (
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    Aborted,
    Accepted,
    ChunkNeeded,
    ChunkReceived,
    ChunksDiscarded,
    Completed,
    Failed,
    FileState,
    InitType,
    Paused,
    Progress,
    Receiver,
    Resumed,
    Sender,
    State,
    TransferCode,
    TransferProtocolError,
    TransferTable,
    TransferUsageError,
    UnknownTask,
    VerifyNeeded,
    choose_chunk_size,
    file_info_reply,
    from_json,
    parse_offer,
    refuse_offer,
    task_of,
    to_json,
)
from toxbridge.errors import LocalProtocolError, RemoteProtocolError

HELLO = b"hello world"  # 11 bytes: chunks of 4 are [0,4] [4,8] [8,11]
HELLO_MD5 = hashlib.md5(HELLO).hexdigest()


# =========================================================================== chunk map


def test_bitmap_is_most_significant_bit_first_with_zero_padding() -> None:
    m = ChunkMap(10)
    for i in (0, 2, 9):
        m.add(i)
    assert m.to_bytes() == bytes([0b10100000, 0b01000000])
    assert ChunkMap.from_bytes(10, m.to_bytes()) == m
    assert len(m) == 3 and 2 in m and 1 not in m and 10 not in m and -1 not in m


def test_persisted_map_rejects_wrong_length_and_set_padding() -> None:
    with pytest.raises(ChunkMapError, match="2 bytes, not 3"):
        ChunkMap.from_bytes(10, b"\0\0\0")
    with pytest.raises(ChunkMapError, match="padding"):
        ChunkMap.from_bytes(10, b"\0\x01")


def test_add_discard_runs_and_scans() -> None:
    m = ChunkMap(20)
    m.add_range(3, 17)
    assert m.add(0) and not m.add(0)
    assert m.discard(10) and not m.discard(10)
    assert m.runs() == [(0, 1), (3, 10), (11, 17)]
    assert list(m.missing()) == [1, 2, 10, 17, 18, 19]
    assert m.next_missing(3) == 10 and m.next_held(17) is None
    assert list(m) == [0, *range(3, 10), *range(11, 17)]
    with pytest.raises(IndexError):
        m.add(20)
    full = ChunkMap.full(13)
    assert full.complete and full.next_missing() is None and full.runs() == [(0, 13)]
    assert ChunkMap(0).complete and ChunkMap(0).runs() == []


@given(st.integers(0, 300), st.data())
def test_map_operations_match_a_set(count: int, data: st.DataObject) -> None:
    held = data.draw(st.sets(st.integers(0, max(count - 1, 0)))) if count else set()
    m = ChunkMap(count)
    for i in held:
        m.add(i)
    assert set(m) == held and len(m) == len(held)
    assert set(m.missing()) == set(range(count)) - held
    assert ChunkMap.from_bytes(count, m.to_bytes()) == m
    other = ChunkMap(count)
    other.add_range(count // 3, count // 2)
    m.update(other)
    assert set(m) == held | set(range(count // 3, count // 2))
    start = data.draw(st.integers(0, count))
    expect = min((i for i in range(start, count) if i not in m), default=None)
    assert m.next_missing(start) == expect


def test_chunk_count_and_ranges() -> None:
    assert [chunk_count(n, 4) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]
    assert chunk_range(2, 11, 4) == (8, 11)
    with pytest.raises(IndexError):
        chunk_range(3, 11, 4)


def test_wire_form_is_runs_in_the_seed_shape() -> None:
    m = ChunkMap(3)
    m.add(0)
    m.add(2)
    assert to_wire(m, 11, 4) == [{"index": 0, "range": [0, 4]}, {"index": 2, "range": [8, 11]}]
    m.add(1)
    assert to_wire(m, 11, 4) == [{"index": 0, "range": [0, 11]}]
    # The seed's one-entry-per-chunk form is the same map.
    seed = [
        {"index": 0, "range": [0, 4]},
        {"index": 1, "range": [4, 8]},
        {"index": 2, "range": [8, 11]},
    ]
    assert from_wire(seed, 11, 4) == m


def test_wire_form_of_a_big_transfer_in_progress_is_small() -> None:
    count = chunk_count(50 * 2**30, 2**16)  # a 50 GiB file
    m = ChunkMap(count)
    m.add_range(0, count // 2)
    for i in range(count // 2 + 1, count // 2 + 16, 2):  # a window with holes beyond
        m.add(i)
    wire = to_wire(m, 50 * 2**30, 2**16)
    assert len(wire) == 9
    assert len(msgpack.packb(wire)) < 400
    assert from_wire(wire, 50 * 2**30, 2**16) == m


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({}, "must be an array"),
        ([1], "must be an object"),
        ([{"index": "0", "range": [0, 4]}], "'index' must be an integer"),
        ([{"index": True, "range": [0, 4]}], "'index' must be an integer"),
        ([{"index": 0, "range": [0]}], "'range' must be two integers"),
        ([{"index": 0, "range": [0, 4.0]}], "'range' must be two integers"),
        ([{"index": 3, "range": [12, 16]}], "not a chunk"),  # beyond the file: wrong length
        ([{"index": 1, "range": [0, 4]}], "not a chunk"),
        ([{"index": 0, "range": [0, 5]}], "not a chunk boundary"),
        ([{"index": 2, "range": [8, 12]}], "not a chunk boundary"),  # past the end
        ([{"index": 0, "range": [0, 0]}], "not a chunk boundary"),
        (
            [{"index": 1, "range": [4, 8]}, {"index": 0, "range": [0, 4]}],
            "overlaps or precedes",
        ),
        ([{"index": 0, "range": [0, 8]}, {"index": 1, "range": [4, 8]}], "overlaps"),
        ([{"index": 0, "range": [0, 4]}] * 4, "4 entries for 3 chunks"),
    ],
)
def test_bad_wire_maps_are_refused_with_a_reason(entries: Any, match: str) -> None:
    with pytest.raises(ChunkMapError, match=match):
        from_wire(entries, 11, 4)


@given(st.integers(1, 50), st.integers(0, 40), st.data())
def test_wire_form_round_trips(chunk_size: int, count: int, data: st.DataObject) -> None:
    filesize = max(0, count * chunk_size - data.draw(st.integers(0, chunk_size - 1)))
    n = chunk_count(filesize, chunk_size)
    m = ChunkMap(n)
    for i in data.draw(st.sets(st.integers(0, max(n - 1, 0)))) if n else ():
        m.add(i)
    wire = to_wire(m, filesize, chunk_size)
    assert len(wire) == len(m.runs())
    assert from_wire(json.loads(json.dumps(wire)), filesize, chunk_size) == m


# =========================================================================== exact messages


def tiny_pair(**kw: Any) -> tuple[Sender, Receiver]:
    """A sender and a receiver of HELLO in chunks of 4, the offer answered."""
    s = Sender("t1", filename="a.txt", filesize=11, md5=HELLO_MD5, session=7, **kw)
    s.start(0.0)
    [offer] = s.data_to_send()
    r = Receiver.accept(parse_offer(offer), 0.0, chunk_size=4)
    [accept] = r.data_to_send()
    s.receive(accept, 0.0)
    return s, r


def test_a_whole_transfer_message_by_message() -> None:
    s = Sender("t1", filename="a.txt", filesize=11, md5=HELLO_MD5, window=2, session=7)
    s.start(0.0)
    offer = {
        "command": 7000,
        "taskid": "t1",
        "filename": "a.txt",
        "filesize": 11,
        "md5": HELLO_MD5,
        "session": 7,
    }
    assert s.data_to_send() == [offer]
    assert s.state is State.OFFERED

    r = Receiver.accept(parse_offer(offer), 0.0, chunk_size=4)
    accept = {
        "command": 8000,
        "taskid": "t1",
        "result": 0,
        "filesize": 11,
        "suggest_chunksize": 4,
        "chunk_map": [],
        "session": 7,
    }
    assert r.data_to_send() == [accept]

    s.receive(accept, 0.0)
    assert list(s.events()) == [
        Accepted(4, 0, 3),
        Progress(0, 11),
        ChunkNeeded(0, 0, 4),
        ChunkNeeded(1, 4, 4),  # a window of two
    ]
    assert s.send_chunk(0, b"hell", 0.0) and s.send_chunk(1, b"o wo", 0.0)
    c0, c1 = s.data_to_send()
    assert c0 == {
        "command": 7001,
        "taskid": "t1",
        "session": 7,
        "chunk_size": 4,
        "range": [0, 4],
        "data": b"hell",
    }

    r.receive(c1, 0.0)  # out of order is fine
    assert list(r.events()) == [ChunkReceived(1, 4, b"o wo")]
    r.chunk_stored(1)
    ack1 = {
        "command": 8001,
        "taskid": "t1",
        "session": 7,
        "chunk_size": 4,
        "range": [4, 8],
        "result": 0,
        "chunk_map": [{"index": 1, "range": [4, 8]}],
    }
    assert r.data_to_send() == [ack1]
    assert list(r.events()) == [Progress(4, 11)]
    s.receive(ack1, 0.0)
    assert list(s.events()) == [Progress(4, 11), ChunkNeeded(2, 8, 3)]
    s.send_chunk(2, b"rld", 0.0)
    [c2] = s.data_to_send()

    r.receive(c0, 0.0)
    r.receive(c2, 0.0)
    assert [e.index for e in r.events()] == [0, 2]
    r.chunk_stored(0)
    r.chunk_stored(2)
    ack0, ack2 = r.data_to_send()
    assert ack2["chunk_map"] == [{"index": 0, "range": [0, 11]}]
    assert list(r.events()) == [Progress(8, 11), Progress(11, 11), VerifyNeeded()]
    assert r.state is State.VERIFYING

    s.receive(ack0, 0.0)
    s.receive(ack2, 0.0)
    end = {"command": 7010, "taskid": "t1", "session": 7, "result": 0}
    assert s.data_to_send() == [end]
    assert s.state is State.FINISHING

    r.receive(end, 0.0)
    assert r.data_to_send() == []  # not before the md5 matched
    r.check_md5(HELLO_MD5.upper())
    done = {"command": 8010, "taskid": "t1", "session": 7, "result": 0}
    assert r.data_to_send() == [done]
    assert list(r.events()) == [Completed(HELLO_MD5)]
    s.receive(done, 0.0)
    assert list(s.events()) == [Progress(8, 11), Progress(11, 11), Completed(HELLO_MD5)]
    assert s.state is State.DONE and r.state is State.DONE
    assert s.statistics().chunks_sent == 3 and s.statistics().chunks_resent == 0


def test_empty_file_needs_no_chunk() -> None:
    md5 = hashlib.md5(b"").hexdigest()
    s = Sender(5, filename="empty", filesize=0, md5=md5, session=1)
    s.start(0.0)
    r = Receiver.accept(parse_offer(s.data_to_send()[0]), 0.0)
    assert list(r.events()) == [VerifyNeeded()]
    r.check_md5(md5)
    s.receive(r.data_to_send()[0], 0.0)
    assert s.data_to_send() == [{"command": 7010, "taskid": 5, "session": 1, "result": 0}]
    r.receive({"command": 7010, "taskid": 5, "session": 1, "result": 0}, 0.0)
    s.receive(r.data_to_send()[0], 0.0)
    assert s.state is State.DONE and r.state is State.DONE


def test_resume_offer_is_answered_with_the_chunks_held() -> None:
    have = ChunkMap(3)
    have.add(0)
    have.add(2)
    s = Sender("t1", filename="a", filesize=11, md5=HELLO_MD5, session=1)
    s.start(0.0)
    r = Receiver.accept(parse_offer(s.data_to_send()[0]), 0.0, chunk_size=4, have=have)
    [accept] = r.data_to_send()
    assert accept["chunk_map"] == [{"index": 0, "range": [0, 4]}, {"index": 2, "range": [8, 11]}]
    s.receive(accept, 0.0)
    assert list(s.events()) == [Accepted(4, 2, 3), Progress(7, 11), ChunkNeeded(1, 4, 4)]


def _accept_msg(have: ChunkMap, session: int) -> dict[str, Any]:
    return {
        "command": 8000,
        "taskid": "t1",
        "result": 0,
        "filesize": 11,
        "suggest_chunksize": 4,
        "chunk_map": to_wire(have, 11, 4),
        "session": session,
    }


def test_json_form_carries_data_as_base64() -> None:
    msg = {"command": 7001, "taskid": 1, "data": b"\x00\xffhi", "range": [0, 4]}
    assert to_json(msg) == {"command": 7001, "taskid": 1, "data": "AP9oaQ==", "range": [0, 4]}
    assert from_json(json.loads(json.dumps(to_json(msg)))) == msg
    with pytest.raises(TransferProtocolError, match="base64") as info:
        from_json({"command": 7001, "taskid": 1, "data": "AP9o!Q=="})
    assert info.value.code == TransferCode.BAD_MESSAGE
    assert to_json({"command": 7010}) == {"command": 7010}


def test_machine_accepts_the_json_form_directly() -> None:
    s, r = tiny_pair()
    ev = [e for e in s.events() if isinstance(e, ChunkNeeded)][0]
    s.send_chunk(ev.index, HELLO[ev.offset : ev.offset + ev.length], 0.0)
    [chunk] = s.data_to_send()
    r.receive(json.loads(json.dumps(to_json(chunk))), 0.0)
    assert list(r.events()) == [ChunkReceived(0, 0, b"hell")]


def test_helper_replies() -> None:
    offer = parse_offer(
        {"command": 7000, "taskid": 9, "filename": "f", "filesize": 10, "md5": HELLO_MD5,
         "session": 3, "fileid": "F1"}
    )
    assert offer.fileid == "F1" and offer.md5 == HELLO_MD5
    assert refuse_offer(offer, TransferCode.TOO_LARGE, "over 1 GB") == {
        "command": 8000,
        "taskid": 9,
        "result": 7110,
        "filesize": 10,
        "suggest_chunksize": 0,
        "chunk_map": [],
        "session": 3,
        "message": "over 1 GB",
    }
    assert file_info_reply(
        fileid="F1", taskid=9, type=InitType.DOWNLOAD, state=FileState.AVAILABLE, filesize=10,
        suggest_chunksize=4,
    ) == {
        "command": 5001,
        "fileid": "F1",
        "taskid": 9,
        "type": 2,
        "result": 1,
        "filesize": 10,
        "suggest_chunksize": 4,
    }
    assert choose_chunk_size(10, 0) == 1
    assert choose_chunk_size(10, 10**9) == MAX_CHUNK_SIZE
    assert choose_chunk_size(MAX_CHUNKS * 2**17 + 1, 4096) == 2**17 + 1


# =========================================================================== errors


def accepted_receiver() -> Receiver:
    _s, r = tiny_pair()
    return r


def chunk(rng: list[int], data: bytes, **kw: Any) -> dict[str, Any]:
    msg = {"command": 7001, "taskid": "t1", "session": 7, "chunk_size": 4, "range": rng,
           "data": data}
    msg.update(kw)
    return msg


@pytest.mark.parametrize(
    ("message", "code", "match"),
    [
        (chunk([12, 16], b"xxxx"), TransferCode.BAD_RANGE, "outside"),
        (chunk([-4, 0], b"xxxx"), TransferCode.BAD_RANGE, "outside"),
        (chunk([2, 6], b"xxxx"), TransferCode.BAD_RANGE, "not one whole chunk"),
        (chunk([8, 12], b"xxxx"), TransferCode.BAD_RANGE, "outside"),
        (chunk([0, 3], b"xxx"), TransferCode.BAD_RANGE, "not one whole chunk"),
        (chunk([0, 4], b"xxxxx"), TransferCode.WRONG_SIZE, "data has 5"),
        (chunk([0, 4], b"xxxx", chunk_size=8), TransferCode.WRONG_SIZE, "chunk_size 8"),
        (chunk([0, 4], 1234), TransferCode.BAD_MESSAGE, "'data' must be bytes"),
        (chunk([0, 4], "!!!!"), TransferCode.BAD_MESSAGE, "base64"),
        (chunk([0], b"xxxx"), TransferCode.BAD_MESSAGE, "'range' must be two integers"),
        (chunk([0, 4], b"xxxx", chunk_size=None), TransferCode.BAD_MESSAGE, "missing field"),
        (chunk([0, 4], b"xxxx", session="7"), TransferCode.BAD_MESSAGE, "'session'"),
        ({"command": 8001, "taskid": "t1"}, TransferCode.WRONG_STATE, "not sent to a receiver"),
        ({"command": 8000, "taskid": "t1"}, TransferCode.WRONG_STATE, "not sent to a receiver"),
        ({"command": 1234, "taskid": "t1"}, TransferCode.WRONG_STATE, "1234"),
        ({"command": 7070, "taskid": "t1", "result": 9}, TransferCode.BAD_MESSAGE, "7070"),
        (
            {"command": 7000, "taskid": "t1", "filename": "a", "filesize": 12, "md5": HELLO_MD5},
            TransferCode.FILE_MISMATCH,
            "another file",
        ),
        (
            {"command": 7000, "taskid": "t1", "filename": "a\x00", "filesize": 11,
             "md5": HELLO_MD5},
            TransferCode.BAD_MESSAGE,
            "control",
        ),
    ],
)
def test_bad_messages_to_a_receiver_fail_it_clearly(
    message: dict[str, Any], code: TransferCode, match: str
) -> None:
    r = accepted_receiver()
    before = r.chunks
    with pytest.raises(TransferProtocolError, match=match) as info:
        r.receive(message, 0.0)
    assert info.value.code == code and isinstance(info.value, RemoteProtocolError)
    assert r.state is State.FAILED and r.chunks == before
    assert r.data_to_send() == [
        {"command": 7080, "taskid": "t1", "result": int(code), "message": info.value.message}
    ]
    assert list(r.events()) == [Failed(code, info.value.message, False)]
    # A failed machine answers what follows with its error, but never an error with one.
    r.receive(chunk([0, 4], b"hell"), 0.0)
    assert r.data_to_send()[0]["command"] == 7080
    r.receive({"command": 7080, "taskid": "t1", "result": 1}, 0.0)
    assert r.data_to_send() == []


def ack(rng: list[int], chunk_map: Any, **kw: Any) -> dict[str, Any]:
    msg = {"command": 8001, "taskid": "t1", "session": 7, "chunk_size": 4, "range": rng,
           "result": 0, "chunk_map": chunk_map}
    msg.update(kw)
    return msg


@pytest.mark.parametrize(
    ("message", "code", "match"),
    [
        (ack([0, 4], [{"index": 5, "range": [20, 24]}]), TransferCode.BAD_CHUNK_MAP, "not a chunk"),
        (ack([0, 4], [{"index": 0, "range": [0, 16]}]), TransferCode.BAD_CHUNK_MAP, "boundary"),
        (ack([0, 4], "all"), TransferCode.BAD_CHUNK_MAP, "array"),
        (ack([12, 16], []), TransferCode.BAD_RANGE, "not a chunk"),
        (ack([0, 3], []), TransferCode.BAD_RANGE, "not a whole chunk"),
        (ack([0, 4], [], chunk_size=2), TransferCode.WRONG_SIZE, "chunk size 2"),
        (ack([0, 4], [], result=None), TransferCode.BAD_MESSAGE, "missing field 'result'"),
        ({"command": 7001, "taskid": "t1"}, TransferCode.WRONG_STATE, "not sent to a sender"),
        ({"command": 7000, "taskid": "t1"}, TransferCode.WRONG_STATE, "not sent to a sender"),
        ({"command": 8010, "taskid": "t1", "session": 7, "result": 0}, TransferCode.WRONG_STATE,
         "8010 before the 7010"),
    ],
)
def test_bad_messages_to_a_sender_fail_it_clearly(
    message: dict[str, Any], code: TransferCode, match: str
) -> None:
    s, _r = tiny_pair()
    list(s.events())
    with pytest.raises(TransferProtocolError, match=match) as info:
        s.receive(message, 0.0)
    assert info.value.code == code
    assert s.state is State.FAILED and len(s.chunks) == 0
    assert s.data_to_send()[-1]["command"] == 7080
    assert s.error == (int(code), info.value.message)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"suggest_chunksize": 0}, TransferCode.BAD_CHUNK_SIZE),
        ({"suggest_chunksize": MAX_CHUNK_SIZE + 1}, TransferCode.BAD_CHUNK_SIZE),
        ({"filesize": 12}, TransferCode.FILE_MISMATCH),
        ({"chunk_map": [{"index": 0, "range": [0, 12]}]}, TransferCode.BAD_CHUNK_MAP),
        ({"chunk_map": None}, TransferCode.BAD_CHUNK_MAP),
        ({"result": "0"}, TransferCode.BAD_MESSAGE),
    ],
)
def test_bad_accepts_fail_the_sender(fields: dict[str, Any], code: TransferCode) -> None:
    s = Sender("t1", filename="a", filesize=11, md5=HELLO_MD5, session=7)
    s.start(0.0)
    s.data_to_send()
    msg = {**_accept_msg(ChunkMap(3), 7), **fields}
    with pytest.raises(TransferProtocolError) as info:
        s.receive(msg, 0.0)
    assert info.value.code == code and s.state is State.FAILED


def test_sender_with_a_small_max_chunk_size_refuses_bigger_chunks() -> None:
    s = Sender("t1", filename="a", filesize=11, md5=HELLO_MD5, session=7, max_chunk_size=2)
    s.start(0.0)
    with pytest.raises(TransferProtocolError, match="over this sender's 2"):
        s.receive(_accept_msg(ChunkMap(3), 7), 0.0)


def test_unknown_task_changes_nothing() -> None:
    r = accepted_receiver()
    for taskid in ("t2", 1, None, ["t1"]):
        with pytest.raises(UnknownTask) as info:
            r.receive(chunk([0, 4], b"hell", taskid=taskid), 0.0)
        assert info.value.code == TransferCode.UNKNOWN_TASK
    assert r.state is State.RECEIVING and r.data_to_send() == []
    with pytest.raises(TransferProtocolError, match="object"):
        r.receive([1, 2], 0.0)  # type: ignore[arg-type]
    assert r.state is State.RECEIVING


def test_task_ids_int_and_string_differ() -> None:
    assert task_of({"taskid": 1}) == 1
    for bad in ({"taskid": True}, {"taskid": -1}, {"taskid": ""}, {"taskid": "x" * 129}, {}, 3):
        with pytest.raises(TransferProtocolError) as info:
            task_of(bad)
        assert info.value.code == TransferCode.BAD_MESSAGE
    table = TransferTable(max_transfers=2)
    s1 = Sender(1, filename="a", filesize=1, md5=HELLO_MD5)
    s2 = Sender("1", filename="a", filesize=1, md5=HELLO_MD5)
    table.add(s1)
    table.add(s2)
    assert table.route({"taskid": 1}) is s1 and table.route({"taskid": "1"}) is s2
    with pytest.raises(UnknownTask):
        table.route({"taskid": 2})
    with pytest.raises(TransferUsageError, match="at most 2"):
        table.add(Sender(3, filename="a", filesize=1, md5=HELLO_MD5))
    with pytest.raises(TransferUsageError, match="already"):
        table.add(Sender(1, filename="a", filesize=1, md5=HELLO_MD5))
    s1.start(0.0)
    assert table.next_deadline() == s1.rto
    table.handle_timeouts(s1.rto)
    assert s1.statistics().resyncs == 1
    table.remove(1)
    assert len(table) == 1 and list(table) == [s2]


def test_local_misuse_is_a_local_error() -> None:
    with pytest.raises(TransferUsageError):
        Sender("t", filename="a", filesize=1, md5="nope")
    with pytest.raises(TransferUsageError):
        Sender("t", filename="../\x00", filesize=1, md5=HELLO_MD5)
    with pytest.raises(TransferUsageError):
        Sender("t", filename="a", filesize=1, md5=HELLO_MD5, window=0)
    with pytest.raises(TransferUsageError):
        Receiver(taskid="t", filesize=11, md5=HELLO_MD5, chunk_size=4, have=ChunkMap(2))
    s, r = tiny_pair(window=2)
    with pytest.raises(TransferUsageError, match="not 3"):
        s.send_chunk(0, b"hel", 0.0)
    assert not s.send_chunk(2, b"rld", 0.0)  # not asked for
    with pytest.raises(TransferUsageError):
        r.chunk_stored(0)
    with pytest.raises(TransferUsageError, match="no md5"):
        r.check_md5(HELLO_MD5)
    assert issubclass(TransferUsageError, LocalProtocolError)


def test_stale_and_duplicate_messages_are_ignored_or_acked_again() -> None:
    s, r = tiny_pair()
    r.receive(chunk([0, 4], b"hell", session=6), 0.0)
    assert list(r.events()) == [] and r.statistics().stale == 1
    r.receive(chunk([0, 4], b"hell"), 0.0)
    r.receive(chunk([0, 4], b"hell"), 0.0)  # while waiting to be stored
    assert len(list(r.events())) == 1 and r.statistics().duplicates == 1
    r.chunk_stored(0)
    r.data_to_send()
    r.receive(chunk([0, 4], b"hell"), 0.0)  # already held: its ack is sent again
    [again] = r.data_to_send()
    assert again["command"] == 8001 and again["range"] == [0, 4]
    s.receive(ack([0, 4], [], session=3), 0.0)
    assert s.statistics().stale == 1 and s.state is State.SENDING


def test_a_flood_of_unstored_chunks_is_an_error() -> None:
    s = Sender("t1", filename="a", filesize=11, md5=HELLO_MD5, session=7)
    s.start(0.0)
    r = Receiver.accept(parse_offer(s.data_to_send()[0]), 0.0, chunk_size=4, max_pending=2)
    r.receive(chunk([0, 4], b"hell"), 0.0)
    r.receive(chunk([4, 8], b"o wo"), 0.0)
    with pytest.raises(TransferProtocolError) as info:
        r.receive(chunk([8, 11], b"rld"), 0.0)
    assert info.value.code == TransferCode.TOO_MANY_CHUNKS


# =========================================================================== control


def test_pause_and_resume_from_the_receiver() -> None:
    s, r = tiny_pair(window=1)
    list(s.events())
    s.send_chunk(0, b"hell", 0.0)
    r.receive(s.data_to_send()[0], 0.0)
    r.pause()
    assert r.data_to_send() == [{"command": 7070, "taskid": "t1", "result": 1}]
    s.receive({"command": 7070, "taskid": "t1", "result": 1}, 1.0)
    assert list(s.events()) == [Paused(True)] and s.paused and s.next_deadline() is None
    r.chunk_stored(0)  # what was in flight still lands
    s.receive(r.data_to_send()[0], 1.0)
    assert not [e for e in s.events() if isinstance(e, ChunkNeeded)]  # nothing new while paused
    r.resume(2.0)
    assert r.data_to_send() == [{"command": 7070, "taskid": "t1", "result": 0}]
    s.receive({"command": 7070, "taskid": "t1", "result": 0}, 2.0)
    assert list(s.events()) == [Resumed(True)]
    # Resuming resyncs: a new offer, answered with the receiver's map.
    [offer] = s.data_to_send()
    assert offer["command"] == 7000 and offer["session"] == 8
    r.receive(offer, 2.0)
    [accept] = r.data_to_send()
    assert accept["chunk_map"] == [{"index": 0, "range": [0, 4]}] and accept["session"] == 8
    s.receive(accept, 2.0)
    assert [e for e in s.events() if isinstance(e, ChunkNeeded)] == [ChunkNeeded(1, 4, 4)]


def test_pause_by_the_sender_and_abort() -> None:
    s, r = tiny_pair()
    s.pause()
    s.pause()  # once is enough
    assert s.data_to_send() == [{"command": 7070, "taskid": "t1", "result": 1}]
    r.receive({"command": 7070, "taskid": "t1", "result": 1}, 0.0)
    assert list(r.events()) == [Paused(True)] and r.paused
    s.abort("user cancelled")
    assert s.data_to_send() == [
        {"command": 7070, "taskid": "t1", "result": 2, "message": "user cancelled"}
    ]
    assert list(s.events())[-1] == Aborted(False, "user cancelled")
    r.receive({"command": 7070, "taskid": "t1", "result": 2, "message": "user cancelled"}, 0.0)
    assert r.state is State.ABORTED and list(r.events())[-1] == Aborted(True, "user cancelled")
    with pytest.raises(TransferUsageError):
        r.pause()


def test_peer_error_and_local_failure() -> None:
    s, r = tiny_pair()
    r.fail(TransferCode.NO_SPACE, "disk full")
    err = {"command": 7080, "taskid": "t1", "result": 7111, "message": "disk full"}
    assert r.data_to_send() == [err]
    s.receive(err, 0.0)
    assert s.state is State.FAILED
    assert list(s.events())[-1] == Failed(TransferCode.NO_SPACE, "disk full", True)
    s2 = Sender("t1", filename="a", filesize=11, md5=HELLO_MD5, session=7)
    s2.start(0.0)
    s2.receive({"command": 7080, "taskid": "t1", "result": 42}, 0.0)
    assert list(s2.events()) == [Failed(42, "the peer reported an error", True)]


def test_refused_offer_fails_the_sender_with_the_reason() -> None:
    s = Sender("t1", filename="a", filesize=11, md5=HELLO_MD5, session=7)
    s.start(0.0)
    s.receive(refuse_offer(parse_offer(s.data_to_send()[0]), TransferCode.NO_SPACE, "full"), 0.0)
    assert s.state is State.FAILED
    assert list(s.events()) == [Failed(TransferCode.NO_SPACE, "full", True)]
    assert s.data_to_send() == []  # the receiver knows already


def test_timeout_resyncs_instead_of_resending_blindly() -> None:
    s, r = tiny_pair(rto=5.0, window=3)
    for e in list(s.events()):
        if isinstance(e, ChunkNeeded):
            s.send_chunk(e.index, HELLO[e.offset : e.offset + e.length], 1.0)
    c0, _c1, _c2 = s.data_to_send()  # c1 and c2 are lost
    r.receive(c0, 1.0)
    list(r.events())
    r.chunk_stored(0)
    r.data_to_send()  # ...and so is the ack
    assert s.next_deadline() == 6.0  # rto after the first chunk went out
    s.handle_timeout(5.9)
    assert s.data_to_send() == []
    s.handle_timeout(6.0)
    [offer] = s.data_to_send()
    assert offer["session"] == 8 and s.state is State.OFFERED
    assert not s.send_chunk(1, b"o wo", 6.0)  # asked before the resync: no longer wanted
    r.receive(offer, 6.0)
    s.receive(r.data_to_send()[0], 6.0)
    assert [e.index for e in s.events() if isinstance(e, ChunkNeeded)] == [1, 2]


def test_unanswered_offer_is_repeated_under_a_new_session() -> None:
    s = Sender("t1", filename="a", filesize=11, md5=HELLO_MD5, session=7, rto=2.0)
    s.start(0.0)
    s.data_to_send()
    s.handle_timeout(2.0)
    s.handle_timeout(4.0)
    assert [m["session"] for m in s.data_to_send()] == [8, 9]
    s.receive(_accept_msg(ChunkMap(3), 8), 4.0)  # the answer to an older offer: stale
    assert s.state is State.OFFERED and s.statistics().stale == 1


def test_end_before_all_chunks_makes_the_sender_resync() -> None:
    s, r = tiny_pair()
    r.receive({"command": 7010, "taskid": "t1", "session": 7, "result": 0}, 0.0)
    [again] = r.data_to_send()
    assert again["command"] == 8000 and again["chunk_map"] == []
    s.receive(again, 0.0)
    assert s.data_to_send()[-1]["command"] == 7000


def test_restored_receiver_asks_the_sender_to_resync() -> None:
    have = ChunkMap(3)
    have.add(0)
    r = Receiver.restore(taskid="t1", filesize=11, md5=HELLO_MD5, chunk_size=4, have=have)
    [announce] = r.data_to_send()
    assert announce == {**_accept_msg(have, 0)}
    r.receive(chunk([4, 8], b"o wo"), 0.0)
    assert list(r.events()) == [] and r.statistics().stale == 1
    s, _ = tiny_pair()
    list(s.events())
    s.receive(announce, 0.0)
    assert s.data_to_send()[-1] == {
        "command": 7000, "taskid": "t1", "filename": "a.txt", "filesize": 11, "md5": HELLO_MD5,
        "session": 8,
    }


def run_to_verify(s: Sender, r: Receiver, data: bytes, disk: bytearray) -> None:
    for _ in range(100):
        moved = False
        for e in list(s.events()):
            if isinstance(e, ChunkNeeded):
                s.send_chunk(e.index, data[e.offset : e.offset + e.length], 0.0)
        for m in s.data_to_send():
            r.receive(m, 0.0)
            moved = True
        for e in list(r.events()):
            if isinstance(e, ChunkReceived):
                disk[e.offset : e.offset + len(e.data)] = e.data
                r.chunk_stored(e.index)
            if isinstance(e, VerifyNeeded):
                return
        for m in r.data_to_send():
            s.receive(m, 0.0)
            moved = True
        if not moved:
            return


def test_md5_mismatch_discards_untrusted_chunks_and_receives_them_again() -> None:
    s, r = tiny_pair()
    disk = bytearray(11)
    run_to_verify(s, r, HELLO, disk)
    assert r.state is State.VERIFYING
    disk[5] ^= 0xFF  # chunk 1 rots on disk
    r.check_md5(hashlib.md5(disk).hexdigest(), untrusted=[1])
    assert list(r.events()) == [
        ChunksDiscarded((1,), "md5 mismatch: chunks corrupt on disk"),
        Progress(7, 11),
    ]
    assert r.state is State.RECEIVING and r.statistics().repairs == 1
    run_to_verify(s, r, HELLO, disk)
    assert bytes(disk) == HELLO
    r.check_md5(hashlib.md5(disk).hexdigest())
    for _ in range(3):
        for m in s.data_to_send():
            r.receive(m, 0.0)
        for m in r.data_to_send():
            s.receive(m, 0.0)
    assert s.state is State.DONE and r.state is State.DONE
    assert s.statistics().chunks_resent == 1


def test_md5_mismatch_with_nothing_to_blame_fails_clearly() -> None:
    s = Sender("t1", filename="a", filesize=11, md5=HELLO_MD5, session=7)
    s.start(0.0)
    r = Receiver.accept(parse_offer(s.data_to_send()[0]), 0.0, chunk_size=4, max_repairs=0)
    s.receive(r.data_to_send()[0], 0.0)
    disk = bytearray(11)
    lying = b"hello World"  # the sender's data does not match its md5
    run_to_verify(s, r, lying, disk)
    r.check_md5(hashlib.md5(disk).hexdigest(), untrusted=[0])  # no repairs allowed
    assert r.state is State.FAILED
    [err] = [m for m in r.data_to_send() if m["command"] == 7080]
    assert err["result"] == TransferCode.MD5_MISMATCH
    s.receive(err, 0.0)
    assert s.state is State.FAILED and s.error[0] == TransferCode.MD5_MISMATCH


def test_receiver_done_answers_repeated_offers_and_ends() -> None:
    s, r = tiny_pair()
    disk = bytearray(11)
    run_to_verify(s, r, HELLO, disk)
    r.check_md5(HELLO_MD5)
    for m in s.data_to_send():
        r.receive(m, 0.0)
    r.receive({"command": 7010, "taskid": "t1", "session": 7, "result": 0}, 0.0)
    assert r.state is State.DONE
    r.data_to_send()
    r.receive({"command": 7010, "taskid": "t1", "session": 7, "result": 0}, 0.0)
    assert r.data_to_send() == [{"command": 8010, "taskid": "t1", "session": 7, "result": 0}]
    offer = {"command": 7000, "taskid": "t1", "filename": "a", "filesize": 11,
             "md5": HELLO_MD5, "session": 9}
    r.receive(offer, 0.0)
    assert r.data_to_send()[0]["chunk_map"] == [{"index": 0, "range": [0, 11]}]


# =========================================================================== two machines


class Pair:
    """A sender and a receiver over a link the test controls. What the receiver stored
    survives its restarts (as the file store's partial file and journal do)."""

    def __init__(
        self,
        data: bytes,
        *,
        window: int,
        chunk_size: int,
        encoding: str = "msgpack",
        restore: bool = True,
        rto: float = 10.0,
    ) -> None:
        self.data = data
        self.md5 = hashlib.md5(data).hexdigest()
        self.window = window
        self.chunk_size = chunk_size
        self.encoding = encoding
        self.restore = restore
        self.rto = rto
        self.now = 0.0
        self.to_receiver: list[dict[str, Any]] = []
        self.to_sender: list[dict[str, Any]] = []
        self.chunks_sent = 0
        self.restarts = 0
        self._sessions = itertools.count(1, 1 << 20)
        self.disk = bytearray(len(data))
        self.disk_map: ChunkMap | None = None
        self.disk_chunk_size = 0
        self.sender = self._new_sender()
        self.receiver: Receiver | None = None

    def _new_sender(self) -> Sender:
        s = Sender(
            "task-1",
            filename="f.bin",
            filesize=len(self.data),
            md5=self.md5,
            window=self.window,
            rto=self.rto,
            session=next(self._sessions),
        )
        s.start(self.now)
        return s

    def _wire(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.encoding == "json":
            return from_json(json.loads(json.dumps(to_json(msg))))
        return msgpack.unpackb(msgpack.packb(msg, use_bin_type=True), raw=False)

    def flush(self) -> None:
        for _ in range(10_000):
            busy = False
            for e in list(self.sender.events()):
                if isinstance(e, ChunkNeeded):
                    self.sender.send_chunk(e.index, self.data[e.offset : e.offset + e.length],
                                           self.now)
            for m in self.sender.data_to_send():
                busy = True
                self.chunks_sent += m["command"] == 7001
                self.to_receiver.append(self._wire(m))
            if self.receiver is not None:
                r = self.receiver
                for e in list(r.events()):
                    if isinstance(e, ChunkReceived):
                        self.disk[e.offset : e.offset + len(e.data)] = e.data
                        assert self.disk_map is not None
                        self.disk_map.add(e.index)
                        r.chunk_stored(e.index)
                    elif isinstance(e, VerifyNeeded):
                        r.check_md5(hashlib.md5(self.disk).hexdigest())
                    assert not isinstance(e, Failed), e
                for m in r.data_to_send():
                    busy = True
                    self.to_sender.append(self._wire(m))
            if not busy:
                return
        raise AssertionError("flush does not settle")

    def deliver_to_receiver(self, i: int = 0) -> None:
        m = self.to_receiver.pop(i)
        if self.receiver is None:
            if m["command"] != 7000:
                return  # the shell has no transfer for it yet; the sender will resync
            offer = parse_offer(m)
            if self.disk_map is None:
                self.receiver = Receiver.accept(offer, self.now, chunk_size=self.chunk_size)
                self.disk_chunk_size = self.receiver.chunk_size
                self.disk_map = ChunkMap(chunk_count(len(self.data), self.disk_chunk_size))
            else:
                self.receiver = Receiver.accept(
                    offer, self.now, chunk_size=self.disk_chunk_size, have=self.disk_map
                )
        else:
            self.receiver.receive(m, self.now)

    def deliver_to_sender(self, i: int = 0) -> None:
        self.sender.receive(self.to_sender.pop(i), self.now)

    def restart_sender(self) -> None:
        self.restarts += 1
        self.to_receiver.clear()
        self.to_sender.clear()
        self.sender = self._new_sender()

    def restart_receiver(self) -> None:
        self.restarts += 1
        self.to_receiver.clear()
        self.to_sender.clear()
        if self.restore and self.disk_map is not None:
            self.receiver = Receiver.restore(
                taskid="task-1",
                filesize=len(self.data),
                md5=self.md5,
                chunk_size=self.disk_chunk_size,
                have=self.disk_map,
            )
        else:
            self.receiver = None

    def wait(self) -> None:
        deadline = self.sender.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
            self.sender.handle_timeout(self.now)

    @property
    def done(self) -> bool:
        return self.sender.state is State.DONE

    def run(self, max_steps: int = 100_000, restart_at: dict[int, str] | None = None) -> None:
        """Deliver everything in order, no loss; wait for timers only when idle."""
        restart_at = restart_at or {}
        for step in range(max_steps):
            self.flush()
            if step in restart_at:
                getattr(self, f"restart_{restart_at[step]}")()
                continue
            if self.to_receiver:
                self.deliver_to_receiver()
            elif self.to_sender:
                self.deliver_to_sender()
            elif self.done:
                return
            else:
                self.wait()
        raise AssertionError(f"no completion in {max_steps} steps: {self.sender.state}")

    def check(self) -> None:
        assert self.done
        assert bytes(self.disk) == self.data
        assert self.receiver is None or self.receiver.state in (State.DONE, State.VERIFYING)


def transfer_shapes() -> st.SearchStrategy[tuple[bytes, int, int]]:
    """(data, chunk_size, window): sizes 0, exact multiples of the chunk size and not."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[bytes, int, int]:
        chunk_size = draw(st.integers(1, 64))
        chunks = draw(st.integers(0, 24))
        tail = draw(st.sampled_from([0, 0, 1, chunk_size - 1, chunk_size // 2]))
        size = max(0, chunks * chunk_size - tail)
        seed = draw(st.integers(0, 2**32))
        return random.Random(seed).randbytes(size), chunk_size, draw(st.integers(1, 8))

    return build()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transfer_shapes(), st.sampled_from(["json", "msgpack"]))
def test_clean_link_completes_without_any_resend(
    shape: tuple[bytes, int, int], encoding: str
) -> None:
    data, chunk_size, window = shape
    pair = Pair(data, window=window, chunk_size=chunk_size, encoding=encoding)
    pair.run()
    pair.check()
    assert pair.chunks_sent == chunk_count(len(data), chunk_size)
    assert pair.sender.statistics().resyncs == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    transfer_shapes(),
    st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["sender", "receiver"])),
             max_size=3),
    st.booleans(),
)
def test_restart_of_either_side_resends_at_most_one_window(
    shape: tuple[bytes, int, int], restarts: list[tuple[int, str]], restore: bool
) -> None:
    data, chunk_size, window = shape
    pair = Pair(data, window=window, chunk_size=chunk_size, restore=restore)
    pair.run(restart_at=dict(restarts))
    pair.check()
    extra = pair.chunks_sent - chunk_count(len(data), chunk_size)
    assert 0 <= extra <= window * pair.restarts


OPS = ["to_r", "to_r", "to_r", "to_s", "to_s", "drop_r", "drop_s", "dup_r", "dup_s", "wait",
       "restart_sender", "restart_receiver"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    transfer_shapes(),
    st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 30)), max_size=80),
    st.booleans(),
    st.sampled_from(["json", "msgpack"]),
)
def test_any_loss_duplication_reordering_and_restarts_still_deliver_the_file(
    shape: tuple[bytes, int, int], ops: list[tuple[str, int]], restore: bool, encoding: str
) -> None:
    data, chunk_size, window = shape
    pair = Pair(data, window=window, chunk_size=chunk_size, restore=restore, encoding=encoding)
    for op, k in ops:
        pair.flush()
        queue = pair.to_receiver if op.endswith("_r") else pair.to_sender
        if op in ("to_r", "to_s", "drop_r", "drop_s", "dup_r", "dup_s") and not queue:
            continue
        i = k % len(queue) if queue else 0  # any message, not only the oldest: reordering
        if op == "to_r":
            pair.deliver_to_receiver(i)
        elif op == "to_s":
            pair.deliver_to_sender(i)
        elif op.startswith("drop"):
            queue.pop(i)
        elif op.startswith("dup"):
            queue.insert(k % (len(queue) + 1), queue[i])
        elif op == "wait":
            pair.wait()
        else:
            getattr(pair, op)()
    pair.run()  # then an honest link: it must finish
    pair.check()


# =========================================================================== three hops


def test_big_file_over_three_hops_keeps_memory_to_a_window() -> None:
    """Upload (JSON), bridge to bridge (msgpack), download (JSON): the same machines."""
    data = random.Random(5).randbytes(300_001)
    hops = [Pair(data, window=4, chunk_size=4096, encoding=e) for e in ("json", "msgpack", "json")]
    for pair in hops:
        pair.run()
        pair.check()
        assert pair.chunks_sent == chunk_count(len(data), 4096)
