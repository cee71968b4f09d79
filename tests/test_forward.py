"""Port forwarding between two real daemons on the private Tox network (docs/forwarding.md):
``-L`` on one node, ``--expose`` on the other, real TCP servers behind it."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
import trio

from toxbridge.network import loopback_options
from toxbridge.testing import DaemonProc
from toxbridge.tox import Tox, save_profile

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("forward")]

DOWNLOAD = random.Random(5).randbytes(5_000_000)
MAX_SERVER_CONNECTIONS = 128


def _rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Server:
    """A TCP server on 127.0.0.1 in threads; ``handle(sock)`` serves one connection."""

    def __init__(self, handle) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self.events: list = []  # what the handlers saw
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while len(self._threads) < 10 * MAX_SERVER_CONNECTIONS:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(120)
        try:
            self.handle(self, conn)
        except OSError as exc:
            self.events.append(("error", type(exc).__name__))
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def echo(server: Server, conn: socket.socket) -> None:
    """Everything back; at EOF, EOF back."""
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def source(server: Server, conn: socket.socket) -> None:
    """The 5 MB download, then close."""
    conn.sendall(DOWNLOAD)


def endless(server: Server, conn: socket.socket) -> None:
    """Up to 200 MB, for a client that does not read."""
    chunk = b"e" * 65536
    for _ in range(3200):
        conn.sendall(chunk)


def half(server: Server, conn: socket.socket) -> None:
    """1 MB, then SHUT_WR; then it reads to EOF and records what it got."""
    conn.sendall(DOWNLOAD[:1_000_000])
    conn.shutdown(socket.SHUT_WR)
    got = bytearray()
    while data := conn.recv(65536):
        got += data
    server.events.append(("got", hashlib.sha256(got).hexdigest(), len(got)))


def sink(server: Server, conn: socket.socket) -> None:
    """Reads until EOF or a reset; records which."""
    n = 0
    try:
        while data := conn.recv(65536):
            n += len(data)
    except ConnectionResetError:
        server.events.append(("reset", n))
        return
    server.events.append(("eof", n))


def resetter(server: Server, conn: socket.socket) -> None:
    """Reads 10 bytes, then resets the connection."""
    got = b""
    while len(got) < 10 and (data := conn.recv(10 - len(got))):
        got += data
    _rst(conn)
    server.events.append(("sent-rst", got))


@pytest.fixture(scope="module")
def servers():
    made = {name: Server(fn) for name, fn in [("echo", echo), ("source", source),
                                              ("endless", endless), ("half", half),
                                              ("sink", sink), ("resetter", resetter)]}
    dead = socket.socket()  # a port nothing listens on
    dead.bind(("127.0.0.1", 0))
    made["dead_port"] = dead.getsockname()[1]
    dead.close()
    yield made
    for s in made.values():
        if isinstance(s, Server):
            s.close()


@pytest.fixture(scope="module")
def nodes(tox_network, tmp_path_factory, servers):
    """(exposer, forwarder, {name: local port}): the listener exposes the servers (not
    ``localhost``, and the dead port); the peer forwards a local port to each."""
    d = tmp_path_factory.mktemp("fwd")
    targets = {name: f"127.0.0.1:{s.port}" for name, s in servers.items() if isinstance(s, Server)}
    targets["dead"] = f"127.0.0.1:{servers['dead_port']}"
    targets["unexposed"] = f"localhost:{servers['echo'].port}"
    expose = [a for name, t in targets.items() if name != "unexposed" for a in ("--expose", t)]
    forward = [a for t in targets.values() for a in ("-L", f"0:{t}")]
    with DaemonProc(["--listen", *expose], d / "x.tox", tox_network) as exposer:
        with DaemonProc(["--peer", exposer.tox_id, *forward], d / "f.tox", tox_network) as fwd:
            ports = {}
            by_target = {t: name for name, t in targets.items()}
            for _ in targets:
                line = fwd.expect("forward ")  # forward 127.0.0.1:PORT -> HOST:PORT
                _, local, _, target = line.split()
                ports[by_target[target]] = int(local.rsplit(":", 1)[1])
            yield exposer, fwd, ports


async def read_all(stream: trio.SocketStream, limit: int = 1 << 30) -> bytes:
    out = bytearray()
    while data := await stream.receive_some(65536):
        out += data
        assert len(out) <= limit
    return bytes(out)


async def connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def echo_once(port: int, data: bytes) -> bytes:
    got = []
    async with await connect(port) as stream:
        async with trio.open_nursery() as nursery:
            async def recv():
                got.append(await read_all(stream))
            nursery.start_soon(recv)
            await stream.send_all(data)
            await stream.send_eof()  # SHUT_WR; the answer still comes
    return got[0]


_online = []


async def online(nodes) -> None:
    """The peers are connected: a forward through the echo works (once per module)."""
    if _online:
        return
    _, _, ports = nodes
    with trio.fail_after(120):
        while True:
            if await try_echo(ports["echo"]):
                _online.append(True)
                return
            await trio.sleep(0.5)


async def try_echo(port: int) -> bool:
    """One short echo through a forward worked (not yet, while the link comes up)."""
    try:
        with trio.move_on_after(5):
            return await echo_once(port, b"hello") == b"hello"
    except* (trio.BrokenResourceError, OSError):
        pass
    return False


async def sees_reset(stream: trio.SocketStream, timeout: float = 10) -> bytes:
    """The connection ends with an RST (not a clean EOF); what came before it."""
    got = bytearray()
    with trio.fail_after(timeout):
        with pytest.raises(trio.BrokenResourceError):
            while data := await stream.receive_some(65536):
                got += data
            raise AssertionError(f"a clean EOF after {len(got)} bytes, not a reset")
    return bytes(got)


async def test_50_concurrent_connections_through_one_forward_are_exact(nodes):
    await online(nodes)
    _, _, ports = nodes
    rng = random.Random(50)
    sent = [rng.randbytes(rng.randrange(1, 200_000)) for _ in range(50)]
    got: dict[int, bytes] = {}
    start = time.monotonic()
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            async def one(i):
                got[i] = await echo_once(ports["echo"], sent[i])
            for i in range(50):
                nursery.start_soon(one, i)
    elapsed = time.monotonic() - start
    assert [got[i] == sent[i] for i in range(50)] == [True] * 50
    print(f"50 connections, {sum(map(len, sent)) / 1e6:.1f} MB each way in {elapsed:.1f} s")


async def test_a_5MB_download_is_exact(nodes):
    await online(nodes)
    _, _, ports = nodes
    with trio.fail_after(120):
        start = time.monotonic()
        stream = await connect(ports["source"])
        data = await read_all(stream)
        elapsed = time.monotonic() - start
        await stream.aclose()
    assert data == DOWNLOAD
    print(f"5 MB download: {len(data) / elapsed / 1e6:.2f} MB/s")


async def test_a_client_that_shuts_down_its_write_side_gets_the_whole_answer(nodes):
    await online(nodes)
    _, _, ports = nodes
    data = random.Random(7).randbytes(2_000_000)
    with trio.fail_after(120):
        stream = await connect(ports["echo"])
        await stream.send_all(data)
        await stream.send_eof()  # before reading a byte of the answer
        assert await read_all(stream) == data
        await stream.aclose()


async def test_a_server_that_shuts_down_first_still_gets_the_clients_bytes(nodes, servers):
    await online(nodes)
    _, _, ports = nodes
    upload = random.Random(8).randbytes(1_500_000)
    with trio.fail_after(120):
        stream = await connect(ports["half"])
        assert await read_all(stream) == DOWNLOAD[:1_000_000]  # then the server's EOF
        await stream.send_all(upload)  # our direction is still open
        await stream.send_eof()
        assert await stream.receive_some(10) == b""
        await stream.aclose()
        want = ("got", hashlib.sha256(upload).hexdigest(), len(upload))
        while want not in servers["half"].events:
            await trio.sleep(0.05)


async def test_a_client_reset_resets_the_servers_connection(nodes, servers):
    await online(nodes)
    _, _, ports = nodes
    events = servers["sink"].events
    with trio.fail_after(30):
        stream = await connect(ports["sink"])
        await stream.send_all(b"x" * 100_000)
        await trio.sleep(1)  # the bytes are through
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()
        while not events:
            await trio.sleep(0.05)
    assert events[-1] == ("reset", 100_000)


async def test_a_server_reset_resets_the_clients_connection(nodes, servers):
    await online(nodes)
    _, _, ports = nodes
    with trio.fail_after(30):
        stream = await connect(ports["resetter"])
        await stream.send_all(b"0123456789")
        await sees_reset(stream)
        await stream.aclose()
    assert ("sent-rst", b"0123456789") in servers["resetter"].events


@pytest.mark.parametrize("name, reason", [
    ("dead", "refused by the peer: connect_refused: connection refused"),
    ("unexposed", "refused by the peer: not_exposed: localhost:{port} is not exposed"),
])
async def test_a_refused_destination_fails_fast_with_its_reason(nodes, servers, name, reason):
    await online(nodes)
    _, fwd, ports = nodes
    reason = reason.format(port=servers["echo"].port)
    start = time.monotonic()
    stream = await connect(ports[name])
    await sees_reset(stream, timeout=5)
    elapsed = time.monotonic() - start
    await stream.aclose()
    assert elapsed < 2, elapsed
    with trio.fail_after(5):
        while not any(reason in line for line in fwd.log):
            await trio.sleep(0.05)
    print(f"{name}: refused in {elapsed * 1000:.0f} ms")


async def test_a_stalled_connection_does_not_slow_another(nodes):
    await online(nodes)
    _, _, ports = nodes

    async def download() -> float:
        start = time.monotonic()
        stream = await connect(ports["source"])
        assert await read_all(stream) == DOWNLOAD
        await stream.aclose()
        return len(DOWNLOAD) / (time.monotonic() - start)

    # toxcore starts its slow start again after ~1 s without sending: both downloads
    # begin after 2 s of quiet, so that they compare like with like.
    with trio.fail_after(180):
        await trio.sleep(2)
        alone = await download()
        stalled = await connect(ports["endless"])  # never read
        await trio.sleep(2)  # it fills its window and buffers, then the link is quiet
        # Up to three tries: on 2 cores shared with the other xdist worker one download
        # can lose half its rate to a neighbour (CI, Debian 13: 18.05 then 7.64 MB/s);
        # a connection held up by the stalled one would lose it every time.
        besides = []
        while len(besides) < 3 and (not besides or besides[-1] < 0.5 * alone):
            besides.append(await download())
        assert await stalled.receive_some(10) == b"e" * 10  # still alive, just not read
        stalled.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stalled.socket.close()
    beside = max(besides)
    print(f"alone {alone / 1e6:.2f} MB/s, beside a stalled one "
          f"{', '.join(f'{b / 1e6:.2f}' for b in besides)} MB/s")
    assert beside >= 0.5 * alone, (alone, besides)


async def test_status_shows_the_forwards_and_their_connections(nodes):
    await online(nodes)
    exposer, fwd, ports = nodes

    async def status(node: DaemonProc, *json_flag: str) -> bytes:
        profile = node.args[node.args.index("--profile") + 1]
        proc = await trio.run_process([sys.executable, "-m", "toxbridge", "status", *json_flag,
                                       "--profile", profile], capture_stdout=True)
        return proc.stdout

    with trio.fail_after(30):
        async with await connect(ports["echo"]) as stream:
            await stream.send_all(b"s" * 50_000)
            got = 0
            while got < 50_000:
                got += len(await stream.receive_some(65536))
            await trio.sleep(0.5)
            mine = json.loads(await status(fwd, "--json"))
            theirs = json.loads(await status(exposer, "--json"))
            human = (await status(fwd)).decode()
    assert {f["listen"] for f in mine["forwards"]} == {f"127.0.0.1:{p}" for p in ports.values()}
    assert mine["exposed"] == []
    conns = [c for c in mine["forward_connections"] if c["bytes_to_peer"] == 50_000]
    assert len(conns) == 1 and conns[0]["bytes_from_peer"] == 50_000, mine["forward_connections"]
    dest = conns[0]["destination"]
    assert dest in theirs["exposed"]
    assert [(c["side"], c["bytes_to_peer"], c["bytes_from_peer"])
            for c in theirs["forward_connections"] if c["destination"] == dest] == [
        ("expose", 50_000, 50_000)]
    assert "forwarded connections" in human, human
    assert any(line.split()[:2] == [conns[0]["listen"], dest]
               for line in human.splitlines()), human  # the forwards table: listen, destination


def _stdio_node(exposer: DaemonProc, network, profile, dest: str) -> list[str]:
    cmd = [sys.executable, "-m", "toxbridge", "--peer", exposer.tox_id, "-W", dest, "--raw",
           "--profile", str(profile), "--bootstrap", str(network), "--secret", "s3cret", "-v"]
    if network.tcp_port:
        cmd += ["--tcp-relay", f"{network.host}:{network.tcp_port}:{network.public_key.hex()}"]
    return cmd


async def test_stdio_is_one_connection_then_the_node_exits(tox_network, tmp_path, servers):
    """... and the exposing node's per-peer rules apply to it: its own list only."""
    echo_to = f"127.0.0.1:{servers['echo'].port}"
    dead_to = f"127.0.0.1:{servers['dead_port']}"
    profile, err, rules = tmp_path / "w.tox", tmp_path / "w.err", tmp_path / "rules.toml"
    with Tox(loopback_options()) as tox:  # the -W node's identity, to name it in the rules
        save_profile(profile, tox.savedata())
        key = tox.public_key.hex()
    rules.write_text(f'[[peer]]\nkey = "{key}"\nexpose = ["{echo_to}"]\n')
    with DaemonProc(["--listen", "--expose", dead_to, "--expose-file", str(rules)],
                    tmp_path / "x.tox", tox_network) as exposer:
        with trio.fail_after(150), open(err, "wb") as log:
            proc = await trio.lowlevel.open_process(
                _stdio_node(exposer, tox_network, profile, echo_to), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log)
            try:
                rtts, got = [], b""
                for i in range(30):  # keystrokes: a line, its echo
                    line = f"key {i}\n".encode()
                    start = time.monotonic()
                    await proc.stdin.send_all(line)
                    while not got.endswith(line):
                        data = await proc.stdout.receive_some(65536)
                        assert data, err.read_text()
                        got += data
                    rtts.append(time.monotonic() - start)
                bulk = random.Random(9).randbytes(1_000_000)
                rest = bytearray()
                async with trio.open_nursery() as nursery:
                    async def send() -> None:
                        await proc.stdin.send_all(bulk)
                        await proc.stdin.aclose()  # EOF: FIN; the echo's EOF ends the node
                    nursery.start_soon(send)
                    while data := await proc.stdout.receive_some(65536):
                        rest += data
                assert bytes(rest) == bulk
                assert await proc.wait() == 0, err.read_text()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                await proc.stdin.aclose()
                await proc.stdout.aclose()
        assert b"tox-id " in err.read_bytes()  # announcements go to stderr with -W
        first, rtts = rtts[0], sorted(rtts[1:])  # the first waits for the Tox link
        print(f"-W: first byte after {first:.1f} s; keystroke round trip p50 "
              f"{rtts[14] * 1000:.1f} ms, max {rtts[-1] * 1000:.1f} ms")
        # The same node refused: one line, exit status 2.
        with trio.fail_after(150):
            r = await trio.run_process(_stdio_node(exposer, tox_network, profile, dead_to),
                                       stdin=b"", capture_stdout=True, capture_stderr=True,
                                       check=False)
        assert r.returncode == 2 and r.stdout == b"", (
            r.stderr.decode() + "\nthe exposing node's log:\n" + "\n".join(exposer.log[-80:]))
        # dead_to is exposed to every peer, but this one has a list of its own
        assert (f"toxbridge: -W {dead_to}: not_exposed: {dead_to} is not exposed to this peer"
                in r.stderr.decode().splitlines()), (
            r.stderr.decode() + "\nthe exposing node's log:\n" + "\n".join(exposer.log[-80:]))


async def test_a_connection_survives_a_35s_cut_of_the_link(nodes):
    """SIGSTOP of the exposing daemon for 35 s (past toxcore's friend timeout, so the
    friend connection goes down) in the middle of a download: the bytes are exact."""
    await online(nodes)
    exposer, fwd, ports = nodes
    with trio.fail_after(200):
        stream = await connect(ports["source"])
        got = bytearray()
        while len(got) < 1_000_000:
            got += await stream.receive_some(65536)
        exposer.signal(signal.SIGSTOP)
        try:
            with trio.move_on_after(35):
                while data := await stream.receive_some(65536):  # what was in flight
                    got += data
                raise AssertionError("the connection ended during the cut")
        finally:
            exposer.signal(signal.SIGCONT)
        assert len(got) < len(DOWNLOAD)  # the cut was in the middle
        cut_at = len(got)
        got += await read_all(stream)
        await stream.aclose()
    assert bytes(got) == DOWNLOAD
    assert any("friend connection down" in line for line in fwd.log), "the link never went down"
    print(f"cut after {cut_at} bytes; the rest came after the link returned")


async def test_hold_open_resets_connections_once_the_link_is_down_that_long(
        tox_network, tmp_path, servers):
    """--hold-open 2: a cut (SIGSTOP of the exposing daemon) past toxcore's friend timeout
    resets the forwarded connection about 2 s after the link is seen down."""
    echo_to = f"127.0.0.1:{servers['echo'].port}"
    with DaemonProc(["--listen", "--expose", echo_to], tmp_path / "x.tox", tox_network) as exposer:
        with DaemonProc(["--peer", exposer.tox_id, "-L", f"0:{echo_to}", "--hold-open", "2"],
                        tmp_path / "f.tox", tox_network) as fwd:
            port = int(fwd.expect("forward ").split()[1].rsplit(":", 1)[1])
            with trio.fail_after(150):
                while not await try_echo(port):  # until the link is up
                    await trio.sleep(0.5)
                stream = await connect(port)
                await stream.send_all(b"ping")
                assert await stream.receive_some(10) == b"ping"
                exposer.signal(signal.SIGSTOP)
                try:
                    start = time.monotonic()
                    await sees_reset(stream, timeout=60)
                    after = time.monotonic() - start
                finally:
                    exposer.signal(signal.SIGCONT)
                await stream.aclose()
            down = [line for line in fwd.log if "friend connection down" in line]
            held = [line for line in fwd.log if "(--hold-open 2): resetting 1 forwarded" in line]
            assert down and held, fwd.log[-20:]
            assert after > 20, after  # not before toxcore's friend timeout (28-32 s)
            print(f"reset {after:.1f} s after the cut")


async def test_stdio_waits_for_a_peer_that_comes_up_late(tox_network, tmp_path, servers):
    """``-W`` started 25 s before its peer (more than the answer's 20 s): the answer's time
    counts only while the peer's link is up, so the connection is made once it comes."""
    echo_to = f"127.0.0.1:{servers['echo'].port}"
    x_profile, w_profile = tmp_path / "x.tox", tmp_path / "w.tox"
    for profile in (x_profile, w_profile):
        with Tox(loopback_options()) as tox:
            save_profile(profile, tox.savedata())
            if profile == x_profile:
                x_id = tox.address.hex().upper()
    cmd = [sys.executable, "-m", "toxbridge", "--peer", x_id, "-W", echo_to, "--raw",
           "--profile", str(w_profile), "--bootstrap", str(tox_network), "--secret", "s3cret"]
    if tox_network.tcp_port:
        cmd += ["--tcp-relay", f"{tox_network.host}:{tox_network.tcp_port}:"
                f"{tox_network.public_key.hex()}"]
    with trio.fail_after(120):
        proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            await proc.stdin.send_all(b"late\n")
            await trio.sleep(25)
            assert proc.returncode is None  # still waiting for its peer
            with DaemonProc(["--listen", "--expose", echo_to], x_profile, tox_network):
                got = b""
                while not got.endswith(b"late\n"):
                    data = await proc.stdout.receive_some(65536)
                    assert data, (await proc.stderr.receive_some(65536)).decode()
                    got += data
                assert got == b"late\n"
                await proc.stdin.aclose()
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await proc.stdin.aclose()
            await proc.stdout.aclose()
            await proc.stderr.aclose()
