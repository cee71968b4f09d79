"""Fuzzing over real sockets: a real daemon pair's bridge port and a real bridge_local server's
app port, on the private Tox network.

Fewer cases than tests/test_fuzz.py (each crosses Tox), each checked end to end: no hang
(every wait is under trio.fail_after), a clear error (an ``error`` event with a documented
code, or a ``9000`` reply with an ErrorCode), no crash, the well-behaved app or clients and
the peer link unaffected (a frame or message still flows after each bad input), and nothing
written outside the data directories.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_local.client import open_client
from bridge_local.fileservice import FilesConfig
from bridge_local.protocol import ErrorCode, LineDecoder
from bridge_local.server import BridgeConfig, serve
from toxbridge.errors import RemoteProtocolError
from toxbridge.framing import DATA, FrameDecoder, encode_data
from toxbridge.testing import App, DaemonProc

from .test_fuzz import hostile_line, mutate

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("fuzz")]

CASES: Counter[str] = Counter()
ERROR_CODES = {c.value for c in ErrorCode}


@pytest.fixture(scope="module")
def pair(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-daemons")
    with DaemonProc(["--listen"], d / "listen.tox", tox_network, verbose=False) as listener:
        with DaemonProc(["--peer", listener.tox_id], d / "peer.tox", tox_network,
                        verbose=False) as peer:
            yield listener, peer


def expected_outcome(stream: bytes) -> tuple[list[bytes], str | None]:
    """What the daemon must make of ``stream`` followed by end of file: the frames it
    forwards, and the error code it reports (None: a clean end)."""
    decoder = FrameDecoder(allowed_kinds=(DATA,))
    decoder.receive_data(stream) if stream else None
    frames: list[bytes] = []
    try:
        for frame in decoder:
            frames.append(frame.payload)
    except RemoteProtocolError:
        return frames, "bad_frame"
    return frames, ("truncated" if decoder.at_eof_incomplete() else None)


def _hostile_stream(seed: int) -> bytes:
    r = random.Random(seed)
    good = b"".join(encode_data(r.randbytes(r.choice((0, 3, 1024)))) for _ in range(r.randrange(4)))
    k = r.randrange(4)
    if k == 0:
        return good + bytes([r.choice((0, 2, 3, 0xFF))]) + r.randbytes(r.randrange(2, 40))
    if k == 1:
        return good + b"\x01" + (1025 + r.randrange(64000)).to_bytes(2, "big") + r.randbytes(30)
    if k == 2:
        return good + encode_data(r.randbytes(50))[: r.randrange(1, 53)]  # cut short
    return mutate(r, good or encode_data(b"x"))


async def _connect(port: int) -> App:
    """An app connection, retried while the daemon still serves the previous one (busy)."""
    while True:
        app = await App.connect(port)
        first = await app.next_event()
        if first["event"] == "ready":
            if (await app.wait_event(event="peer"))["code"] != 301:
                await app.wait_event(event="peer", code=301)
            return app
        assert first == {**first, "event": "error", "code": "busy"}, first
        await app.aclose()
        await trio.sleep(0.05)


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32), raw=st.binary(max_size=64))
async def test_fuzz_bridge_port_hostile_apps_get_an_error_and_the_link_carries_on(pair, seed, raw):
    listener, peer = pair
    stream = raw if seed % 5 == 0 else _hostile_stream(seed)
    frames, code = expected_outcome(stream)
    CASES["bridge port (real daemon)"] += 1
    with trio.fail_after(120):
        b = await _connect(peer.port)  # the well-behaved app on the other side
        a = await _connect(listener.port)
        try:
            try:
                if stream:
                    await a.stream.send_all(stream)
                await a.stream.send_eof()
            except trio.BrokenResourceError:
                assert code == "bad_frame"  # it hung up on us first
            # The frames before the bad one arrive at the peer's app, exactly.
            for i, expected in enumerate(frames):
                got = await b.next_data()
                assert got == expected, (stream.hex(), i, len(frames), (got or b"")[:20])
            if code is not None:  # a clear error event, then the daemon closes
                event = await a.wait_event(event="error")
                assert event["code"] == code, event
            assert await a.next_data() is None
        finally:
            await a.aclose()
        # The daemon and the link are unaffected: a new app gets ready + 301, and frames
        # flow both ways, and nothing extra reached the peer's app.
        a2 = await _connect(listener.port)
        try:
            await a2.send(f"ok {seed}".encode())
            got = await b.next_data()
            assert got == f"ok {seed}".encode(), (stream.hex(), len(frames), code, got[:20])
            await b.send(f"back {seed}".encode())
            assert await a2.next_data() == f"back {seed}".encode()
        finally:
            await a2.aclose()
            await b.aclose()


# --------------------------------------------------------------------------- the app port


def _hostile_lines(r: random.Random, token: str, goal: str, n: int) -> list[bytes]:
    lines = []
    for _ in range(n):
        k = r.randrange(10)
        if k == 0:
            lines.append(r.randbytes(r.randrange(1, 200)).replace(b"\n", b" "))
        else:
            lines.append(hostile_line(r, token, goal))
    return lines


async def _hostile_client(port: int, seed: int, goal: str, n: int) -> list[dict]:
    """A client that sends ``n`` hostile lines (logging in part way), then a sentinel, and
    returns every reply; each must be a JSON object, each error one with an ErrorCode."""
    r = random.Random(seed)
    replies: list[dict] = []
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        token = "nobody"
        lines = _hostile_lines(r, token, goal, n // 2)
        lines.append(json.dumps({"command": 1000, "name": f"mallory{seed}"}).encode())
        lines += _hostile_lines(r, token, goal, n // 2)
        if seed % 3 == 0:
            lines.append(b"{" + b"x" * 70_000)  # over the line limit
        lines.append(b'{"command": 1001, "token": "sentinel"}')
        await stream.send_all(b"\n".join(lines) + b"\n")
        decoder = LineDecoder(16 * 1024 * 1024)
        while True:
            data = await stream.receive_some(65536)
            assert data, f"the server closed a hostile client; replies so far {replies[-3:]}"
            decoder.receive_data(data)
            while (line := decoder.next_line()) is not None:
                reply = json.loads(line)
                assert isinstance(reply, dict) and isinstance(reply.get("command"), int)
                if reply["command"] == 9000:
                    assert reply["code"] in ERROR_CODES, reply
                replies.append(reply)
                if reply.get("request") == 1001 and reply.get("code") in (9008, 9009):
                    return replies  # the sentinel's answer: the connection is still served
    finally:
        await stream.aclose()


def _stray_files(top: Path, data_dirs: list[Path]) -> list[str]:
    """Files under ``top`` outside the data directories, or inside their file stores with a
    name that does not have the store's fixed shape."""
    stray = []
    store_name = re.compile(r"[0-9a-f]{64}\.(data|json|part|journal)|outgoing\.json")
    for p in top.rglob("*"):
        if not any(p == d or d in p.parents for d in data_dirs):
            stray.append(str(p))
        elif any(part.endswith(".files") for part in p.parts[:-1]) and p.is_file():
            if not store_name.fullmatch(p.name):
                stray.append(str(p))
    return stray


async def test_fuzz_app_port_hostile_clients_get_error_replies_and_chat_goes_on(pair, tmp_path):
    listener, peer = pair
    dirs = [tmp_path / "a", tmp_path / "b"]
    files = FilesConfig(max_file_size=1 << 20, max_total_size=8 << 20)
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            a, b = [await nursery.start(partial(serve, BridgeConfig(
                bridge_port=d.port, data_dir=dd, reconnect_delay=0.2, max_line=64 * 1024,
                files=files), announce=lambda line: None)) for d, dd in zip(pair, dirs)]
            await a.wait_peer()
            await b.wait_peer()
            async with open_client(a.app_port, name="alice-fz") as alice, \
                    open_client(b.app_port, name="bob-fz") as bob:
                await alice.wait_event(command=301, name="bob-fz")
                for round_ in range(10):
                    seeds = [round_ * 10 + i for i in range(3)]
                    results = []

                    async def run(seed: int, port: int) -> None:
                        results.append(await _hostile_client(port, seed, bob.token, 60))

                    async with trio.open_nursery() as hostile:
                        for seed in seeds:
                            hostile.start_soon(run, seed, a.app_port if seed % 2 else b.app_port)
                    CASES["JSON command lines (real server)"] += 61 * len(seeds)
                    assert all(any(r["command"] == 9000 for r in rs) for rs in results)
                    # Other clients and the peer link are unaffected.
                    assert (await alice.send(bob.token, f"a{round_}"))["code"] == 201
                    assert (await bob.wait_event(command=2003))["msg"] == f"a{round_}"
                    assert (await bob.send(alice.token, f"b{round_}"))["code"] == 201
                    assert (await alice.wait_event(command=2003))["msg"] == f"b{round_}"
            assert _stray_files(tmp_path, dirs) == []
            await a.stop()
            await b.stop()
    print("\nreal-socket fuzz inputs:", dict(CASES))
