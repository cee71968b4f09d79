"""Raw toxcore peers in child processes: the anchor for tests and benchmarks.

Each ``RawPeer`` is a process owning one Tox on the private network, driven over a
pipe. It runs the loop that measured best here (TOXCORE-FACTS.md): send from our
own queue until SENDQ, ``iterate()``, sleep min(interval, 1 ms). Streams carry
sequence-numbered, content-checked lossless packets so the receiver can prove
order and integrity; pings measure round trips of a 64-byte packet.

A stream may be *windowed*: the receiver acknowledges every ACK_EVERY packets and the
sender keeps at most ``window`` packets of it unacknowledged (STREAM_WINDOW: the
Link's in-flight cap). Without a window the sender feeds toxcore as fast as its rate
allows, which measures toxcore's own pace but is fragile: if the receiver stalls for
more than ~0.6 s (a starved CPU) while the sender runs, thousands of packets pile up
unacknowledged in toxcore's queue, most of them lost at the stalled receiver's socket,
and net_crypto's throttle then keeps the connection at its floor of 4 packets/s while
it resends them -- minutes (TOXCORE-FACTS.md).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection as _Pipe

from ..network import NodeInfo, loopback_options
from ..tox import Connection, Tox
from ..tox.errors import CustomPacketError

__all__ = ["RawPeer", "StreamReport", "pattern", "STREAM_ID", "PING_ID", "PONG_ID", "ACK_ID",
           "STREAM_WINDOW"]

STREAM_ID, PING_ID, PONG_ID, ACK_ID = 160, 161, 162, 163
# Packets of a windowed stream unacknowledged at most: with our acks (one per ACK_EVERY)
# toxcore's queue stays under the 64 packets its throttle needs (as toxbridge/link.py).
STREAM_WINDOW = 56
ACK_EVERY = 8
_SEQ = struct.Struct(">BI")
_PING = struct.Struct(">BId")
LOOP_SLEEP = 0.001


def pattern(seq: int, size: int) -> bytes:
    """The packet a stream sends as number ``seq``: id, seq, then bytes derived from seq."""
    head = _SEQ.pack(STREAM_ID, seq)
    body = (seq.to_bytes(4, "big") * ((size // 4) + 1))[: size - len(head)]
    return head + body


@dataclass(frozen=True)
class StreamReport:
    packets: int
    bytes: int
    errors: int  # packets out of order or with wrong content
    first_s: float  # monotonic time of the first and last packet
    last_s: float
    per_second: list[int]  # bytes received in each second since the first packet


class _Child:
    """The loop inside the child process."""

    def __init__(self, conn, bootstrap: str, options: dict) -> None:
        self.conn = conn
        relay_port = options.pop("relay_tcp_port", None)
        # idle_loop: sleep as long as toxcore asks (a well-behaved idle client: the CPU
        # anchor), instead of the 1 ms loop that measured best for throughput.
        self.loop_sleep = None if options.pop("idle_loop", False) else LOOP_SLEEP
        self.tox = Tox(loopback_options(**options))
        node = NodeInfo.parse(bootstrap)
        self.tox.bootstrap(node.host, node.port, node.public_key)
        if relay_port:
            self.tox.add_tcp_relay(node.host, relay_port, node.public_key)
        self.expected: set[bytes] = set()  # keys whose friend request we take
        self.friend: int | None = None  # the first friend: streams and pings go to it
        self.others: set[int] = set()  # a hub's further friends: only connected, idle
        self.connected_at: float | None = None
        self.online = False
        self.drops = 0  # times the friend connection went down
        self.outq: deque[bytes] = deque()
        self.stream_left = 0  # packets of the current outgoing stream not yet queued
        self.stream_seq = 0
        self.stream_size = 1373
        self.stream_window: int | None = None  # None: as fast as toxcore takes them
        self.peer_acked = 0  # packets of our stream the peer acknowledged
        self.rx = _Receiver()
        self.ack_stream = False  # acknowledge the stream we receive?
        self.ack_sent = 0  # the last count we acknowledged (or tried to)
        self.ack_due = False  # an ack toxcore refused (SENDQ): retry it next turn
        self.pings: dict[int, float] = {}
        self.rtts: list[float] = []
        self.ping_left = 0
        self.ping_size = 64
        self.tox.on_friend_request = self._on_request
        self.tox.on_friend_connection_status = self._on_connection
        self.tox.on_friend_lossless_packet = self._on_packet

    def _on_request(self, key: bytes, message: bytes) -> None:
        if key not in self.expected:
            return
        self.expected.discard(key)
        number = self.tox.friend_add_norequest(key)
        if self.friend is None:
            self.friend = number
        else:
            self.others.add(number)

    def _on_connection(self, friend: int, status: Connection) -> None:
        if friend != self.friend:  # a hub's other friend: say when it first comes up
            if friend in self.others and status != Connection.NONE:
                self.others.discard(friend)
                self.conn.send(("connected", time.monotonic(), int(status)))
            return
        if self.online and status == Connection.NONE:
            self.drops += 1
        self.online = status != Connection.NONE
        if status != Connection.NONE and self.connected_at is None:
            self.connected_at = time.monotonic()
            self.conn.send(("connected", self.connected_at, int(status)))

    def _on_packet(self, friend: int, data: bytes) -> None:
        kind = data[0]
        if kind == STREAM_ID:
            self.rx.packet(data)
            if self.ack_stream and self.rx.seq - self.ack_sent >= ACK_EVERY:
                self._ack()
        elif kind == ACK_ID:
            self.peer_acked = max(self.peer_acked, _SEQ.unpack_from(data)[1])
        elif kind == PING_ID:
            self._send_now(bytes([PONG_ID]) + data[1:])
        elif kind == PONG_ID:
            _, n, _ = _PING.unpack_from(data)
            sent = self.pings.pop(n, None)
            if sent is not None:
                self.rtts.append(time.monotonic() - sent)
                if self.ping_left:
                    self._ping()
                else:
                    self.conn.send(("pings", self.rtts))

    def _ping(self) -> None:
        n = self.ping_left
        self.ping_left -= 1
        head = _PING.pack(PING_ID, n, 0.0)
        self.pings[n] = time.monotonic()
        self._send_now(head + bytes(self.ping_size - len(head)))

    def _ack(self) -> None:
        # Cumulative, so only the latest matters: on SENDQ just remember to send one.
        self.ack_sent = self.rx.seq
        try:
            self.ack_due = not self.tox.try_send_lossless_packet(
                self.friend, _SEQ.pack(ACK_ID, self.rx.seq))
        except CustomPacketError as exc:
            if exc.code != 3:  # FRIEND_NOT_CONNECTED: send it again once it is back
                raise
            self.ack_due = True

    def _send_now(self, packet: bytes) -> None:
        # Send from inside the callback (toxcore allows it): a round trip then costs
        # one receive-loop period, not two. Queue it if the rate budget is used up.
        if self.outq or not self.tox.try_send_lossless_packet(self.friend, packet):
            self.outq.append(packet)

    def command(self, cmd: tuple) -> bool:
        # ("stream", count, size[, window]) sends; ("receive", count[, ack]) expects one. A
        # windowed stream needs a receiver that acks, or it stops after `window` packets.
        name, *args = cmd
        if name == "address":
            self.conn.send(("address", self.tox.address))
        elif name == "expect":
            self.expected.add(args[0])
        elif name == "befriend":
            self.friend = self.tox.friend_add(args[0], b"toxbridge raw peer")
        elif name == "stream":
            self.stream_left, self.stream_size, *window = args
            self.stream_window = window[0] if window else None
            self.stream_seq = self.peer_acked = 0
        elif name == "receive":
            self.rx.reset(args[0])
            self.ack_stream = len(args) > 1 and args[1]
            self.ack_sent = 0
            self.ack_due = False
            # Said back so a caller can start the peer's stream only after this: a stream
            # that arrived first was counted, then reset here, and never acknowledged (the
            # sender stopped at its window: the 10000-packet test's timeouts with 0 packets).
            self.conn.send(("receiving",))
        elif name == "ping":
            count, self.ping_size = args
            self.rtts = []
            self.ping_left = count
            self._ping()
        elif name == "progress":  # what the current incoming stream moved so far
            self.conn.send(("progress", self.rx.snapshot(), self.drops))
        elif name == "stop":
            return False
        return True

    def _fill(self) -> None:
        # Generate stream packets lazily: the queue stays small whatever the volume.
        window = self.stream_window
        while (self.stream_left and len(self.outq) < 64
               and (window is None or self.stream_seq - self.peer_acked < window)):
            self.outq.append(pattern(self.stream_seq, self.stream_size))
            self.stream_seq += 1
            self.stream_left -= 1

    def run(self) -> None:
        tox, conn, outq = self.tox, self.conn, self.outq
        running = True
        while running:
            while conn.poll(0):
                running = self.command(conn.recv())
            if self.friend is not None and self.online:
                self._fill()
                try:
                    while outq and tox.try_send_lossless_packet(self.friend, outq[0]):
                        outq.popleft()
                        if not outq:
                            self._fill()
                except CustomPacketError as exc:
                    if exc.code != 3:  # FRIEND_NOT_CONNECTED: it dropped just now; wait for it
                        raise
                    self.online = False
                    self.drops += 1
            seen = self.rx.seq
            tox.iterate()
            # Flush the ack when a turn brought no more of the stream (or one was refused).
            if self.ack_stream and (self.ack_due or self.rx.seq == seen > self.ack_sent):
                self._ack()
            if self.rx.done_pending():
                conn.send(("stream_done", self.rx.report()))
            interval = tox.iteration_interval()
            time.sleep(interval if self.loop_sleep is None else min(interval, self.loop_sleep))
        tox.close()


class _Receiver:
    def __init__(self) -> None:
        self.reset(0)

    def reset(self, expected: int) -> None:
        self.expected = expected
        self.seq = 0
        self.bytes = 0
        self.errors = 0
        self.first = self.last = 0.0
        self.bins: list[int] = []
        self.reported = expected == 0

    def packet(self, data: bytes) -> None:
        now = time.monotonic()
        if self.seq == 0:
            self.first = now
        self.last = now
        seq = _SEQ.unpack_from(data)[1]
        if seq != self.seq or data != pattern(seq, len(data)):
            self.errors += 1
        self.seq += 1
        self.bytes += len(data)
        second = int(now - self.first)
        while len(self.bins) <= second:
            self.bins.append(0)
        self.bins[second] += len(data)

    def done_pending(self) -> bool:
        return not self.reported and self.seq >= self.expected

    def snapshot(self) -> StreamReport:
        return StreamReport(self.seq, self.bytes, self.errors, self.first, self.last, list(self.bins))

    def report(self) -> StreamReport:
        self.reported = True
        return StreamReport(self.seq, self.bytes, self.errors, self.first, self.last, self.bins)


def _child_main(argv: list[str]) -> None:
    fd, bootstrap, options = int(argv[0]), argv[1], json.loads(argv[2])
    try:
        _Child(_Pipe(fd), bootstrap, options).run()
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass


class RawPeer:
    """A raw toxcore peer in a child process. Use as a context manager."""

    def __init__(self, bootstrap: NodeInfo, *, use_relay: bool = False, wrap: list[str] | None = None,
                 **options) -> None:
        """``use_relay``: also use the bootstrap node as TCP relay (it must be one).
        ``wrap``: a command prefix that execs the child, e.g. ``ip netns exec NAME``."""
        if use_relay:
            options["relay_tcp_port"] = bootstrap.tcp_port
        # A plain subprocess (not multiprocessing): works from any script or test runner.
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [*(wrap or ()), sys.executable, "-m", "toxbridge.testing.rawpeer", str(theirs.fileno()), str(bootstrap),
             json.dumps(options)],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._conn = _Pipe(ours.detach())
        self.address: bytes = self.call(("address",), "address")[0]
        self.public_key = self.address[:32]

    def send(self, cmd: tuple) -> None:
        self._conn.send(cmd)

    def wait(self, name: str, timeout: float = 120.0) -> tuple:
        """Wait for the child's next message called ``name``; return its arguments."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._conn.poll(left):
                raise TimeoutError(f"raw peer: no {name!r} within {timeout} s")
            msg, *args = self._conn.recv()
            if msg == name:
                return tuple(args)

    def call(self, cmd: tuple, reply: str, timeout: float = 60.0) -> tuple:
        self.send(cmd)
        return self.wait(reply, timeout)

    def receive(self, count: int, ack: bool = False) -> None:
        """Expect a stream of ``count`` packets (``ack``: acknowledge it, as a windowed
        stream needs); returns once the child is ready, so the peer's stream may start."""
        self.call(("receive", count, ack), "receiving")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._conn.send(("stop",))
            except OSError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._conn.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @staticmethod
    def befriend(a: RawPeer, b: RawPeer, timeout: float = 120.0) -> float:
        """Make a and b friends (a sends the request); return when both are connected.

        Returns the monotonic time at which the later of the two was connected.
        """
        b.send(("expect", a.public_key))
        a.send(("befriend", b.address))
        t_a = a.wait("connected", timeout)[0]
        t_b = b.wait("connected", timeout)[0]
        return max(t_a, t_b)

    @staticmethod
    def befriend_hub(hub: RawPeer, spokes: list[RawPeer], timeout: float = 180.0) -> float:
        """Make each spoke a friend of the hub (the spokes ask, all at once); return when
        the hub has all of them connected (the monotonic time of the last)."""
        for spoke in spokes:
            hub.send(("expect", spoke.public_key))
        for spoke in spokes:
            spoke.send(("befriend", hub.address))
        return max(hub.wait("connected", timeout)[0] for _ in spokes)


if __name__ == "__main__":
    # Import ourselves by name so that pickled results name toxbridge.testing.rawpeer, not __main__.
    from toxbridge.testing.rawpeer import _child_main as main

    main(sys.argv[1:])
