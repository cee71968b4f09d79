"""The app server (trio): a thin shell around :class:`~bridge_local.core.BridgeCore`.

It connects to the daemon's bridge port as its one app (reconnecting whenever that
connection drops), opens the store of that daemon's identity, then serves JSON-line clients
on the app port. Where the daemon's ``ready`` names its streams.sock, the peer bridges are
reached over streams, every peer with two lanes of its own (``bridge_local.peerlinks``), and
the bridge port is only held (so no other app takes the one-peer channel); otherwise the
one-peer channel of the bridge port carries it all. Protocol decisions are the core's;
this module only moves bytes and time.

Entry points: :func:`serve` (in-process, ``await nursery.start(serve, config)`` returns the
running :class:`BridgeServer`) and :func:`main` (``python -m bridge_local``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from toxbridge import access
from toxbridge.errors import ConfigError, RemoteProtocolError
from toxbridge.framing import DATA, EVENT, FrameDecoder, decode_event, encode_data

from .apptoken import TokenGate
from .core import BridgeCore, Limits
from .peerlinks import PeerLinks
from .fileservice import FilesConfig, FileService
from .protocol import (
    DEFAULT_MAX_LINE_LENGTH,
    ErrorCode,
    LineDecoder,
    encode_reply,
    error_reply,
)
from .store import Store, default_data_dir, store_path

__all__ = ["BridgeConfig", "BridgeServer", "DaemonUnavailable", "main", "serve"]

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
FRAMES_PER_WRITE = 32
# The daemon socket's kernel buffers, each way: short, so that file data queued below the
# fair scheduler (BridgeCore.take_frames) stays small and chat is not stuck behind it.
DAEMON_SOCKET_BUFFER = 64 * 1024
CLIENT_HIGH_WATER = 1000  # replies waiting for a client: stop reading its requests


async def _open_daemon_stream(host: str, port: int) -> trio.SocketStream:
    """A TCP connection to the daemon with DAEMON_SOCKET_BUFFER set before connect(), so
    that the window follows the buffer from the handshake on (set after it, the buffer
    shrank below a window already offered, and the kernel dropped segments once we stopped
    reading: retransmissions backing off for seconds; docs/benchmarks.md, catch-up)."""
    (family, type_, proto, _, address), *_ = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM)
    sock = trio.socket.socket(family, type_, proto)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, DAEMON_SOCKET_BUFFER)
        await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


class DaemonUnavailable(Exception):
    """The daemon's bridge port did not answer as a toxbridge daemon."""


@dataclass(frozen=True)
class BridgeConfig:
    """Everything the app server needs; built by the CLI, passed down."""

    bridge_host: str = "127.0.0.1"
    bridge_port: int = 0
    app_host: str = "127.0.0.1"
    app_port: int = 0
    data_dir: Path | None = None  # None: platformdirs' user data dir for toxbridge
    limits: Limits = field(default_factory=Limits)
    files: FilesConfig = field(default_factory=FilesConfig)
    max_line: int = DEFAULT_MAX_LINE_LENGTH
    max_clients: int = 1024
    reconnect_delay: float = 0.5
    tick: float = 1.0
    # Who may connect (toxbridge/access/): by default processes of our own uid only.
    app_socket: Path | None = None  # also serve on this Unix socket (mode 0600)
    app_token: bytes | None = None  # other uids are admitted if their login carries it
    app_open: bool = False  # no check at all
    use_streams: bool = True  # the peer bridges over streams.sock when the daemon has one


class _Conn:
    __slots__ = ("event", "drained", "scope", "gate", "refusal", "idle", "ready")

    def __init__(self, gate: TokenGate | None) -> None:
        self.event = trio.Event()
        self.idle = False  # the writer waits for ``event``: the flusher may take for it
        self.ready: list[dict] | None = None  # taken for the writer by the flusher
        self.drained = trio.Event()
        self.scope = trio.CancelScope()
        self.gate = gate  # another account's connection: its login must carry the token
        self.refusal: dict | None = None  # the gate's error reply: sent last, then closed


def _parse_tox_key(event: dict) -> bytes:
    try:
        key = bytes.fromhex(event["tox_id"])[:32]
    except (KeyError, TypeError, ValueError):
        raise DaemonUnavailable(f"bad ready event: {event}") from None
    if len(key) != 32:
        raise DaemonUnavailable(f"bad tox id in the ready event: {event}")
    return key


async def _until_broken(work: Awaitable[None], scope: trio.CancelScope, what: str) -> None:
    """Run one side of a connection; when it ends (or the connection breaks), end the other.

    Catching here, inside the task, keeps a broken connection from surfacing as an
    exception group in the nursery around it."""
    try:
        await work
    except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError) as exc:
        log.info("%s: %s", what, exc)
    scope.cancel()


class BridgeServer:
    """One running bridge. Made by :func:`serve`; use :meth:`stop` to leave cleanly."""

    def __init__(self, config: BridgeConfig, announce: Callable[[str], None]) -> None:
        self.config = config
        self.announce = announce
        self.core: BridgeCore | None = None
        self.app_port: int | None = None
        self.public_key: bytes | None = None
        self.store_path: Path | None = None
        self._conns: dict[int, _Conn] = {}
        self._frames = trio.Event()
        self._kick = trio.Event()  # the flusher has work
        self._waiting_output: set[int] = set()  # idle writers whose client has output
        self._peer_changed = trio.Event()
        self._peer_state = False
        self._writing = False
        self._nursery: trio.Nursery | None = None
        self.streams_path: str | None = None  # the daemon's streams.sock (its ready says)
        self.links: PeerLinks | None = None
        self._access = access.AccessPolicy(os.geteuid(), open=config.app_open,
                                           token=config.app_token)

    # -- the daemon connection ---------------------------------------------------------

    async def _connect(self) -> tuple[trio.SocketStream, FrameDecoder, bytes]:
        """Connect to the daemon and read up to its ready event."""
        c = self.config
        stream = await _open_daemon_stream(c.bridge_host, c.bridge_port)
        try:
            decoder = FrameDecoder(allowed_kinds=(DATA, EVENT))
            with trio.fail_after(10):
                while True:
                    frame = decoder.next_frame()
                    if frame is None:
                        data = await stream.receive_some(READ_SIZE)
                        if not data:
                            raise DaemonUnavailable("the daemon closed the connection")
                        decoder.receive_data(data)
                        continue
                    if frame.kind != EVENT:
                        continue
                    event = decode_event(frame.payload)
                    if event.get("event") == "error":
                        raise DaemonUnavailable(f"the daemon refused us: {event.get('message')}")
                    if event.get("event") == "ready":
                        self.streams_path = event.get("streams") if c.use_streams else None
                        return stream, decoder, _parse_tox_key(event)
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise

    async def _connect_retrying(self) -> tuple[trio.SocketStream, FrameDecoder, bytes]:
        delay = self.config.reconnect_delay
        while True:
            try:
                return await self._connect()
            except (OSError, DaemonUnavailable, RemoteProtocolError, trio.TooSlowError) as exc:
                log.warning("daemon at %s:%s: %s; retrying in %.1f s", self.config.bridge_host,
                            self.config.bridge_port, exc, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 10)

    async def _daemon_loop(self, first: tuple[trio.SocketStream, FrameDecoder, bytes]) -> None:
        core = self.core
        assert core is not None
        connection: tuple[trio.SocketStream, FrameDecoder, bytes] | None = first
        while True:
            if connection is None:
                connection = await self._connect_retrying()
            stream, decoder, key = connection
            connection = None
            if key != self.public_key:
                log.error("the daemon now has another identity (%s); tokens are those of %s",
                          key.hex()[:16], self.public_key.hex()[:16])
            log.info("connected to the daemon")
            if self.links is None:  # over streams the channel is only held
                core.daemon_connected(time.time())
            self._after()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_until_broken, self._daemon_writer(stream),
                                       nursery.cancel_scope, "daemon connection")
                    await _until_broken(self._daemon_reader(stream, decoder),
                                        nursery.cancel_scope, "daemon connection")
            finally:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                if self.links is None:
                    core.daemon_disconnected(time.time())
                self._after()
            log.warning("lost the daemon connection; reconnecting")
            await trio.sleep(self.config.reconnect_delay)

    async def _daemon_reader(self, stream: trio.SocketStream, decoder: FrameDecoder) -> None:
        core = self.core
        assert core is not None
        if self.links is not None:  # held, not used: read to its end
            while await stream.receive_some(READ_SIZE):
                pass
            return
        while True:
            for frame in decoder:
                now = time.time()
                if frame.kind == DATA:
                    core.daemon_data(frame.payload, now)
                else:
                    event = decode_event(frame.payload)
                    log.info("daemon event: %s", event)
                    core.daemon_event(event, now)
            self._after()
            data = await stream.receive_some(READ_SIZE)
            if not data:
                return
            decoder.receive_data(data)

    async def _daemon_writer(self, stream: trio.SocketStream) -> None:
        core = self.core
        assert core is not None
        while True:
            frames = core.take_frames(FRAMES_PER_WRITE)
            if frames:
                self._writing = True
                await stream.send_all(b"".join(encode_data(f) for f in frames))
                self._writing = False
                self._after()
                continue
            await self._frames.wait()
            self._frames = trio.Event()

    # -- clients -----------------------------------------------------------------------

    async def _handle_client(self, stream: trio.SocketStream) -> None:
        core = self.core
        assert core is not None
        verdict, uid = await access.check(stream, self._access, tokens=True)
        if verdict == access.REFUSE:
            message = self._access.refusal(uid)
            log.warning("refused an app connection: %s", message)
            await access.refuse(stream, encode_reply(error_reply(ErrorCode.FORBIDDEN, message)))
            return
        if len(self._conns) >= self.config.max_clients:
            with trio.move_on_after(1):
                await stream.send_all(encode_reply(error_reply(
                    ErrorCode.INTERNAL_ERROR, "too many clients; try again later")))
            await stream.aclose()
            return
        if stream.socket.family == socket.AF_UNIX:
            ip, port = "unix", 0
        else:
            ip, port = stream.socket.getpeername()[:2]
        cid = core.client_connected(ip, port)
        gate = TokenGate(self._access.token) if verdict == access.NEED_TOKEN else None
        conn = self._conns[cid] = _Conn(gate)
        async def read_then_flush() -> None:
            await self._client_reader(cid, stream, conn)
            with trio.move_on_after(5):  # the client closed its side: flush the replies
                while core.output_size(cid) or conn.ready is not None:
                    await conn.drained.wait()

        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_until_broken, self._client_writer(cid, stream, conn),
                                       nursery.cancel_scope, f"client {cid}")
                    await _until_broken(read_then_flush(), nursery.cancel_scope, f"client {cid}")
        finally:
            del self._conns[cid]
            core.client_disconnected(cid, time.time())
            self._after()
            with trio.CancelScope(shield=True):
                if conn.refusal is not None:
                    log.warning("closing app client %d: %s", cid, conn.refusal["message"])
                    await access.refuse(stream, encode_reply(conn.refusal))
                await stream.aclose()

    async def _client_reader(self, cid: int, stream: trio.SocketStream, conn: _Conn) -> None:
        core = self.core
        assert core is not None
        decoder = LineDecoder(self.config.max_line)
        while True:
            data = await stream.receive_some(READ_SIZE)
            decoder.receive_data(data)
            while (line := decoder.next_line()) is not None:
                if conn.gate is not None and (refusal := conn.gate.check(line)) is not None:
                    conn.refusal = refusal  # after the replies already queued
                    return
                try:
                    core.client_line(cid, line, time.time())
                except Exception:  # a bug: this client gets 9012, the others never notice
                    log.exception("failed to serve a request")
                    await stream.send_all(encode_reply(error_reply(
                        ErrorCode.INTERNAL_ERROR, "the server failed on this request")))
                if core.output_size(cid) >= CLIENT_HIGH_WATER:
                    self._after()
                    while core.output_size(cid) >= CLIENT_HIGH_WATER // 2:
                        await conn.drained.wait()
            self._after()
            if not data:
                return

    async def _client_writer(self, cid: int, stream: trio.SocketStream, conn: _Conn) -> None:
        core = self.core
        assert core is not None
        while True:
            out, conn.ready = conn.ready, None
            conn.drained.set()
            conn.drained = trio.Event()
            if out:
                await stream.send_all(b"".join(encode_reply(o) for o in out))
                continue
            # Output is always handed over by the flusher, never taken here: one commit
            # then covers every client's (a writer taking its own committed once per client).
            conn.idle = True
            if core.has_output(cid):
                self._waiting_output.add(cid)
                self._kick.set()
            await conn.event.wait()
            conn.idle = False
            conn.event = trio.Event()

    # -- glue --------------------------------------------------------------------------

    def _after(self) -> None:
        """The core changed: wake the daemon writer if frames wait, and the flusher, which
        hands out the clients' output in the scheduler's next turn. So every request and
        frame read in one turn (by any client's reader or the daemon's) shares one commit:
        with each client sending one request at a time, a commit per read was a commit
        per message, and the commits were most of the time of a loaded bridge."""
        core = self.core
        assert core is not None
        if core.has_frames():
            self._frames.set()
            if self.links is not None:
                self.links.kick()
        self._kick.set()

    async def _flusher(self) -> None:
        while True:
            await self._kick.wait()
            self._kick = trio.Event()
            if self._flush():
                self._kick.set()  # taking output may have refilled some from the outbox

    def _flush(self) -> bool:
        """Close the clients that fell behind, hand the idle writers their output behind one
        commit, pass on notices and the peer state. True if output was handed over."""
        core = self.core
        assert core is not None
        if core.has_frames():
            self._frames.set()
            if self.links is not None:
                self.links.kick()
        closing = core.take_closing()
        for cid in closing:  # first: what they hold stays in the outbox, never taken
            conn = self._conns.get(cid)
            if conn is not None:
                log.warning("client %d fell too far behind; closing it", cid)
                conn.scope.cancel()
        # The idle writers' output in one take, behind one commit (skipped if an earlier
        # one covered it); a busy writer asks again when its send is done.
        dirty = core.take_dirty()
        waiting, self._waiting_output = self._waiting_output, set()
        idle = []
        for cid in dirty | waiting:
            conn = self._conns.get(cid)
            if conn is not None and conn.idle and conn.ready is None and cid not in closing:
                idle.append(cid)
        handed: dict[int, list[dict]] = {}
        if idle:
            handed = core.take_client_outputs(idle)
            for cid, out in handed.items():
                self._conns[cid].ready = out
                self._conns[cid].event.set()
        for notice in core.take_notices():
            log.warning("%s", notice)
        if core.peer_up != self._peer_state:
            self._peer_state = core.peer_up
            log.info("peer bridge %s", "online" if core.peer_up else "offline")
            self._peer_changed.set()
            self._peer_changed = trio.Event()
        return bool(handed)

    async def _ticker(self) -> None:
        core = self.core
        assert core is not None
        while True:
            await trio.sleep(self.config.tick)
            core.tick(time.time())
            self._after()

    # -- public ------------------------------------------------------------------------

    async def wait_peer(self, up: bool = True) -> None:
        """Return once the session with the peer bridge is up (or down)."""
        while self.core is None or self.core.peer_up != up:
            await self._peer_changed.wait()

    async def stop(self, grace: float = 2.0) -> None:
        """Tell the peer bridge we leave (its clients get 302s at once), then stop."""
        if self.core is not None and self._nursery is not None:
            self.core.shutdown()
            self._after()
            with trio.move_on_after(grace):
                while self.core.has_frames() or self._writing:
                    await trio.sleep(0.005)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def run(self, task_status: trio.TaskStatus[BridgeServer] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        c = self.config
        first = await self._connect_retrying()
        self.public_key = first[2]
        self.store_path = store_path(c.data_dir or default_data_dir(), self.public_key)
        store = Store(self.store_path)
        files: FileService | None = None
        unix_id: tuple[int, int] | None = None
        try:
            files = FileService(self.store_path.with_suffix(".files"), c.files)
            self.core = BridgeCore(store, self.public_key, time.time(), c.limits, files)
            if self.streams_path is not None:
                self.links = PeerLinks(self.streams_path, self.core, self._after)
            listeners = await trio.open_tcp_listeners(c.app_port, host=c.app_host)
            self.app_port = listeners[0].socket.getsockname()[1]
            if c.app_socket is not None:
                unix, unix_id = await access.open_unix_listener(c.app_socket)
                listeners.append(unix)
            log.info("database %s", self.store_path)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._flusher)
                nursery.start_soon(self._daemon_loop, first)
                if self.links is not None:
                    log.info("peer bridges over %s", self.streams_path)
                    nursery.start_soon(self.links.run)
                nursery.start_soon(self._ticker)
                await nursery.start(trio.serve_listeners, self._handle_client, listeners)
                self.announce(f"app {c.app_host}:{self.app_port}")
                if c.app_socket is not None:
                    self.announce(f"app-socket {c.app_socket}")
                task_status.started(self)
        finally:
            if unix_id is not None:
                access.unlink_unix_listener(c.app_socket, unix_id)
            with trio.CancelScope(shield=True):
                await first[0].aclose()
            if files is not None:
                files.close()
            store.close()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write: a line never splits
    sys.stdout.flush()


async def serve(config: BridgeConfig, *, announce: Callable[[str], None] = _say,
                task_status: trio.TaskStatus[BridgeServer] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a bridge until cancelled (or :meth:`BridgeServer.stop`).

    ``await nursery.start(serve, config)`` returns the :class:`BridgeServer` once the app
    port is listening (``server.app_port``); the line ``app HOST:PORT`` is announced then.
    Waits (retrying) for the daemon first: tokens derive from its public key.
    """
    await BridgeServer(config, announce).run(task_status=task_status)


async def run_until_signal(config: BridgeConfig,
                           announce: Callable[[str], None] = _say) -> None:
    """Run a bridge until SIGINT/SIGTERM, then stop it cleanly (what ``main`` does)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server: BridgeServer = await nursery.start(partial(serve, config, announce=announce))

            async def watch() -> None:
                async for sig in signals:
                    log.info("%s: stopping", signal.Signals(sig).name)
                    await server.stop()
                    return

            nursery.start_soon(watch)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge_local",
        description="The app server: JSON command protocol on --app-port, over a running "
                    "toxbridge daemon's bridge port.")
    parser.add_argument("--bridge", type=_hostport, required=True, metavar="HOST:PORT",
                        help="the daemon's bridge port")
    parser.add_argument("--app-host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument("--app-port", type=int, default=0, help="default: any free port")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the database lives (default: the user data dir)")
    parser.add_argument("--max-file-size", type=int, default=FilesConfig.max_file_size,
                        metavar="BYTES", help="largest file accepted (default 4 GiB)")
    parser.add_argument("--store-quota", type=int, default=FilesConfig.max_total_size,
                        metavar="BYTES", help="total size of the file store (default 64 GiB)")
    parser.add_argument("--chunk-size", type=int, default=FilesConfig.chunk_size,
                        metavar="BYTES", help="file chunk size this bridge asks for")
    access.add_access_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    access.warn_if_open(args)
    try:
        access_fields = access.access_options(args)
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    config = BridgeConfig(bridge_host=args.bridge[0], bridge_port=args.bridge[1],
                          app_host=args.app_host, app_port=args.app_port, data_dir=args.data_dir,
                          files=FilesConfig(max_file_size=args.max_file_size,
                                            max_total_size=args.store_quota,
                                            chunk_size=args.chunk_size),
                          **access_fields)
    trio.run(run_until_signal, config)
    return 0
