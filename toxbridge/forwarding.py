"""Port forwarding's trio shells in the daemon (docs/forwarding.md).

Forwarding side: a TCP listener per ``-L``; each accepted connection opens one BULK stream
of kind ``FORWARD_KIND`` to the forward's peer (``@PEER``, else ``--via``, else the first),
whose header names the destination, waits for the exposing side's answer (reading the
client meanwhile), then pipes bytes both ways. ``-W``: stdin/stdout as one such connection.
Exposing side: every forward stream the peer opens is checked against the rules, then
connected with ``trio.open_tcp_stream``; a refusal or a failed connect is answered at once.

Both sides pipe as streams.sock does (``toxbridge.localpipe``): the socket is read only
while the stream has room, so TCP backpressure is the stream's flow control; bytes from
the peer are consumed only once written; SHUT_WR is FIN and FIN is SHUT_WR; a socket that
fails (ECONNRESET, EPIPE) resets the stream; here a reset stream aborts the socket with an
RST.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import socket
import struct
import time
from typing import Callable

import trio

from .config import Config
from .forward import (FORWARD_KIND, Answer, Destination, LocalForward, Status, StdioForward,
                      decode_header, encode_answer, encode_header, parse_answer)
from .errors import ConfigError, ForwardError, RemoteProtocolError
from .localpipe import ABORTED, DONE, READ_SIZE, RESET, TrioStream, pipe, reset
from .localstreams import LocalStream
from .peertables import FIRST, PeerTables, UnknownPeer
from .streams import Priority, ResetCode, StreamOpened

__all__ = ["Forwarder"]

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 20.0  # s from accept to the answer (the exposing side connects within 10)
CONNECT_TIMEOUT = 10.0  # s for the exposing side's connect
STDIO_WAIT = 120.0  # s -W waits for the peer to come online
LINK_CHECK = 0.25  # s between looks at the peer's link while an open waits
HOLD_OPEN_CHECK = 1.0  # s between looks at the link state
DRAIN_TIMEOUT = 30.0  # s a refused stream waits for the opener's reset
MAX_CONNECTIONS = 256  # forwarded connections at once, each side (the mux's stream limit)


class _Conn(TrioStream):
    """A forwarded connection's stream; ``poke()`` (any thread) wakes its trio tasks."""

    def __init__(self, token: trio.lowlevel.TrioToken, side: str, label: str,
                 listen: str | None = None) -> None:
        super().__init__(token)
        self.side, self.label = side, label  # for status
        self.listen = listen  # the forward's local address ("stdio" for -W); None: exposing
        self.dest: Destination | None = None
        self.since = time.monotonic()

    def status(self, names: PeerTables) -> dict:
        key = self.peer_key
        return {"side": self.side, "forward": self.label, "listen": self.listen,
                "stream": self.sid,
                "peer": key.hex().upper() if key else None,
                "peer_name": names.name_of(key) if key else None,
                "destination": str(self.dest) if self.dest else None,
                "bytes_to_peer": self.bytes_out, "bytes_from_peer": self.bytes_in,
                "age_s": round(time.monotonic() - self.since, 1)}


def _rst(sock: trio.SocketStream) -> None:
    """Close with an RST, as a TCP peer sees a reset connection."""
    try:
        sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.socket.close()


def _local_address(listeners: list[trio.SocketListener]) -> str:
    host, port = listeners[0].socket.getsockname()[:2]
    return str(Destination(host, port))


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connect_status(exc: OSError) -> tuple[Status, str]:
    causes = [exc, exc.__cause__, *getattr(exc.__cause__, "exceptions", ())]
    if any(isinstance(c, ConnectionRefusedError) or getattr(c, "errno", None) == errno.ECONNREFUSED
           for c in causes):
        return Status.CONNECT_REFUSED, "connection refused"
    return Status.UNREACHABLE, str(exc)


class Forwarder:
    """The forwards of one node (``config.forwards``, ``config.stdio``) and its exposing
    side (``config.rules``). ``wake``: tells the tox thread to look at the tables. Each
    forward reaches the peer its ``@PEER`` names, else ``config.via``, else the first."""

    def __init__(self, config: Config, tables: PeerTables, wake,
                 announce: Callable[[str], None], link_up: Callable[[bytes], bool]) -> None:
        self._config = config
        self._link_up = link_up  # link_up(key): is that peer's friend connection up?
        self._tables = tables
        self._wake = wake
        self._guessed: set[str] = set()  # forwards told they reach the first of several
        self._announce = announce
        self._listeners: list[tuple[LocalForward, list[trio.SocketListener]]] = []
        self._conns: set[_Conn] = set()
        self._incoming = 0  # exposing-side connections (read on the tox thread: a hint)
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None

    async def open_listeners(self) -> None:
        """Bind every ``-L`` (before the tox thread starts: a port in use fails the node)."""
        for fwd in self._config.forwards:
            if not _loopback(fwd.bind):
                log.warning("-L %s listens on %s: anyone who reaches it reaches %s",
                            fwd, fwd.bind, fwd.destination)
            try:
                listeners = await trio.open_tcp_listeners(fwd.port, host=fwd.bind)
            except OSError as exc:
                for _, opened in self._listeners:
                    for listener in opened:
                        listener.socket.close()
                raise ConfigError(f"-L {fwd}: cannot listen on {fwd.bind}:{fwd.port}: "
                                    f"{exc.strerror or exc}") from None
            self._listeners.append((fwd, listeners))

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled. The exposing side serves from here on."""
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._tables.shared.serve_kind(FORWARD_KIND, self._accept_stream)
            for fwd, listeners in self._listeners:
                at, via = _local_address(listeners), self._via(fwd)
                self._announce(f"forward {at} -> {fwd.destination}"
                               + (f" via {via}" if via != FIRST else ""))
                nursery.start_soon(trio.serve_listeners,
                                   functools.partial(self._forward_tcp, fwd, at), listeners)
            task_status.started()
            await self._hold_open()

    def _via(self, fwd: LocalForward | StdioForward) -> str:
        return fwd.via or self._config.via or FIRST

    async def _hold_open(self) -> None:
        """While a peer's link is down its streams wait (the Link loses nothing); a
        forwarded connection that waited ``hold_open`` s for it (since it went down, or
        since the connection began) is reset. Each peer's link counts for its own
        connections only."""
        down_since: dict[bytes, float] = {}
        while True:
            await trio.sleep(HOLD_OPEN_CHECK)
            now = time.monotonic()
            keys = {c.peer_key for c in self._conns if c.peer_key is not None}
            for key in keys:
                if self._link_up(key):
                    down_since.pop(key, None)
                else:
                    down_since.setdefault(key, now)
            for key in set(down_since) - keys:
                del down_since[key]  # no connection waits for it: counted anew
            for key, since in down_since.items():
                late = [c for c in self._conns if c.peer_key == key
                        and now - max(since, c.since) >= self._config.hold_open]
                if not late:
                    continue
                log.warning("the link to %s has been down for %.0f s (--hold-open %d): "
                            "resetting %d forwarded connections", self._peer_label(key),
                            now - since, self._config.hold_open, len(late))
                for conn in late:
                    self._conns.discard(conn)  # once
                    self._reset(conn, ResetCode.TIMEOUT)
                    conn.poke_local()

    def _peer_label(self, key: bytes) -> str:
        return self._tables.name_of(key) or key.hex().upper()[:16]

    def status(self, reply: dict) -> None:
        """The forwards (each with its peer), what is exposed, and the open connections
        with their peer and bytes each way, for ``toxbridge status``; each peer of
        ``reply["peers"]`` also gets its own forwards and connections (``peers list``)."""
        conns = [c.status(self._tables) for c in self._conns]
        forwards = []
        items = [(fwd, _local_address(listeners)) for fwd, listeners in self._listeners]
        if self._config.stdio is not None:
            items.append((self._config.stdio, "stdio"))
        for fwd, listen in items:
            via = self._via(fwd)
            try:
                key = self._tables.key_of(via).hex().upper()
            except UnknownPeer:
                key = None  # no peer yet
            mine = [c for c in conns if c["listen"] == listen]
            forwards.append({"listen": listen, "destination": str(fwd.destination),
                             "via": via, "peer": key,
                             "peer_name": self._tables.name_of(bytes.fromhex(key)) if key else None,
                             "connections": len(mine),
                             "bytes_to_peer": sum(c["bytes_to_peer"] for c in mine),
                             "bytes_from_peer": sum(c["bytes_from_peer"] for c in mine)})
        rules = self._config.rules
        reply["forwards"] = forwards
        reply["exposed"] = sorted(str(d) for d in rules.everyone)
        reply["exposed_per_peer"] = {k.hex().upper(): sorted(str(d) for d in v)
                                     for k, v in rules.peers}
        reply["forward_connections"] = conns
        for peer in reply.get("peers", ()):
            peer["forwards"] = [{k: f[k] for k in ("listen", "destination", "connections")}
                                for f in forwards if f["peer"] == peer["public_key"]]
            peer["forward_connections"] = [c for c in conns if c["peer"] == peer["public_key"]]

    # -- the forwarding side ------------------------------------------------------------

    def _new(self, side: str, label: str, listen: str) -> _Conn:
        conn = _Conn(self._token, side, label, listen)
        self._conns.add(conn)
        return conn

    async def _forward_tcp(self, fwd: LocalForward, listen: str, tcp: trio.SocketStream) -> None:
        if sum(c.side == "forward" for c in self._conns) >= MAX_CONNECTIONS:  # this side's
            log.warning("-L %s: %d forwarded connections already; refusing one", fwd,
                        MAX_CONNECTIONS)
            _rst(tcp)
            return
        conn = self._new("forward", str(fwd), listen)
        try:
            failed = []
            async with trio.open_nursery() as nursery:
                # The client's first bytes go out behind the OPEN, not a round trip later
                # (a refusal drops them, as the reset connection would).
                nursery.start_soon(self._read_early, conn, tcp, failed)
                try:
                    answer = await self._open(conn, fwd, OPEN_TIMEOUT)
                finally:
                    nursery.cancel_scope.cancel()
            if answer is None or not answer.ok or failed:
                if failed and answer is not None and answer.ok:
                    self._reset(conn, ResetCode.CANCELLED)
                _rst(tcp)
                return
            await self._pipe(conn, tcp)
        finally:
            self._conns.discard(conn)

    async def _read_early(self, conn: _Conn, tcp: trio.SocketStream, failed: list) -> None:
        """Until cancelled (the answer came): the client's bytes into the stream, while it
        has room; stops at EOF (``_pipe`` reads it again) or a failed socket (``failed``).
        trio's receive is cancel-safe: no byte is lost when the answer cancels it."""
        ls = conn
        while True:
            with ls.lock:
                room = ls.send_room
            if room <= 0:
                await ls.changed()
                continue
            try:
                data = await tcp.receive_some(min(room, READ_SIZE))
            except (trio.BrokenResourceError, OSError):
                failed.append(True)
                return
            if not data:
                return
            with ls.lock:
                ls.to_peer += data
            conn.bytes_out += len(data)
            ls.touch()
            self._wake.set()

    async def run_stdio(self, stop: Callable[[], None]) -> None:
        """``-W``: stdin/stdout as one connection, once the peer is online; then ``stop``.
        Raises ForwardError if the peer refuses it (the node then exits with its line)."""
        fwd = self._config.stdio
        conn = self._new("forward", "stdio", "stdio")
        try:
            deadline = trio.current_time() + STDIO_WAIT
            while True:
                answer = await self._open(conn, fwd, OPEN_TIMEOUT, quiet_no_peer=True,
                                          max_wait=max(0.0, deadline - trio.current_time()))
                if answer is not None or trio.current_time() > deadline:
                    break
                self._conns.discard(conn)
                conn = self._new("forward", "stdio", "stdio")  # no peer yet: try again
                await trio.sleep(0.5)
            answer = answer or Answer(Status.TIMEOUT, "the peer did not come online")
            if not answer.ok:
                raise ForwardError(f"-W {fwd}: {answer.reason}")
            await self._pipe(conn, _Stdio())
        finally:
            self._conns.discard(conn)
            stop()

    async def _open(self, conn: _Conn, fwd: LocalForward | StdioForward, timeout: float,
                    quiet_no_peer: bool = False, max_wait: float = 0.0) -> Answer | None:
        """Open the stream to the forward's peer and wait for the answer: ``timeout`` s of
        the peer's link being up, at most ``max_wait`` s in all (at least ``timeout``).
        The answer's bytes are consumed. None: no stream (no such peer; with ``quiet_no_peer`` not
        logged)."""
        ls, dest, via = conn, fwd.destination, self._via(fwd)
        ls.kind, ls.priority, ls.header = FORWARD_KIND, Priority.BULK, encode_header(dest)
        conn.dest = dest
        try:
            table = self._tables.resolve(via)
        except UnknownPeer as exc:
            if not quiet_no_peer:
                log.warning("forward to %s: no stream: %s", dest, exc)
            return None
        named = fwd.via or self._config.via
        if not named and len(self._tables) > 1 and conn.label not in self._guessed:
            self._guessed.add(conn.label)  # said once per forward
            log.warning("%s names no peer and this node has %d: it reaches the first, %s "
                        "(say which: @PEER after the forward, or --via PEER)",
                        "-W" if conn.label == "stdio" else f"-L {conn.label}",
                        len(self._tables), self._peer_label(table.peer_key))
        table.request_open(ls)
        self._wake.set()
        answer = None
        # ``timeout`` counts while the peer's link is up: a node just started (or a peer
        # that just restarted) may take longer than that to connect, and its first open
        # waits for the link within ``max_wait`` (-W: STDIO_WAIT).
        key, waited, timed_out = table.peer_key, 0.0, False
        start = last = trio.current_time()
        while True:
            with ls.lock:
                failure, parsed = ls.failure, parse_answer(bytes(ls.to_app[:257]))
                closed = (ls.reset_in is not None or ls.reset_out is not None
                          or (ls.end_in and parsed is None))
                if parsed is not None:
                    answer, n = parsed
                    del ls.to_app[:n]
                    ls.taken += n
                    ls.written += n
            if failure is not None or answer is not None or closed:
                break
            now = trio.current_time()
            if key is None or self._link_up(key):
                waited += now - last
            last = now
            if waited >= timeout or now - start >= max(max_wait, timeout):
                timed_out = True
                break
            with trio.move_on_after(min(LINK_CHECK, timeout - waited)):
                await ls.changed()
        if answer is not None:
            ls.touch()
            self._wake.set()
            if not answer.ok:
                log.warning("forward to %s refused by the peer: %s", dest, answer.reason)
                self._reset(ls, ResetCode.CANCELLED)
            return answer
        if failure is not None:
            if not (quiet_no_peer and failure[0] == "no_peer"):
                log.warning("forward to %s: no stream: %s", dest, failure[1])
            return None
        if timed_out:
            log.warning("forward to %s: no answer within %.0f s", dest, timeout)
            with ls.lock:
                sid = ls.sid
            if sid is None:
                table.withdraw(ls)
            self._reset(ls, ResetCode.TIMEOUT)
            return Answer(Status.TIMEOUT, f"no answer within {timeout:.0f} s")
        log.warning("forward to %s: the peer closed the stream without an answer "
                    "(code %s)", dest, ls.reset_in)
        return Answer(Status.UNREACHABLE, "the peer closed the stream without an answer")

    def _reset(self, ls: LocalStream, code: int) -> None:
        reset(ls, code, self._wake)

    # -- the exposing side --------------------------------------------------------------

    def _accept_stream(self, event: StreamOpened, peer_key: bytes | None) -> LocalStream | None:
        """On the tox thread: an OPEN of the forward kind. None refuses it (RESET)."""
        if self._incoming >= MAX_CONNECTIONS or self._token is None:
            return None
        conn = _Conn(self._token, "expose", "")
        conn.peer_key = peer_key  # the exposing side's rules and hold-open go by it
        try:
            self._token.run_sync_soon(self._spawn, conn)
        except trio.RunFinishedError:
            return None
        return conn

    def _spawn(self, conn: _Conn) -> None:
        self._incoming += 1  # read on the tox thread: a hint (the mux caps streams anyway)
        self._conns.add(conn)
        self._nursery.start_soon(self._expose, conn)

    async def _expose(self, conn: _Conn) -> None:
        ls = conn
        try:
            with trio.move_on_after(5):
                while True:
                    with ls.lock:
                        if ls.sid is not None:
                            break
                    await ls.changed()
            try:
                dest = decode_header(ls.header)
            except RemoteProtocolError as exc:
                log.warning("peer opened a forward stream with a bad header: %s", exc)
                await self._refuse(ls, Status.BAD_REQUEST, str(exc))
                return
            conn.dest, conn.label = dest, str(dest)
            verdict = self._config.rules.allowed(conn.peer_key, dest)
            if verdict is not True:
                log.warning("refused a forward to %s: %s", dest, verdict.text)
                await self._refuse(ls, Status.NOT_EXPOSED, verdict.text)
                return
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    tcp = await trio.open_tcp_stream(dest.host, dest.port)
            except trio.TooSlowError:
                await self._refuse(ls, Status.TIMEOUT, f"no connection within {CONNECT_TIMEOUT:.0f} s")
                return
            except OSError as exc:
                status, text = _connect_status(exc)
                log.info("forward to %s failed: %s", dest, text)
                await self._refuse(ls, status, text)
                return
            with ls.lock:
                ls.to_peer += encode_answer(Status.OK)
            await self._pipe(conn, tcp)
        finally:
            self._incoming -= 1
            self._conns.discard(conn)

    async def _refuse(self, ls: _Conn, status: Status, text: str) -> None:
        """The answer and FIN; then wait (bounded) for the opener to reset or end."""
        with ls.lock:
            ls.to_peer += encode_answer(status, text)
            ls.end_out = True
        ls.touch()
        self._wake.set()
        with trio.move_on_after(DRAIN_TIMEOUT):
            while True:
                with ls.lock:
                    n = len(ls.to_app)  # anything the client sent meanwhile: dropped
                    del ls.to_app[:]
                    ls.taken += n
                    ls.written += n
                    over = ls.reset_in is not None or ls.end_in
                ls.touch()
                self._wake.set()
                if over:
                    return
                await ls.changed()
        self._reset(ls, ResetCode.TIMEOUT)

    # -- both sides ---------------------------------------------------------------------

    async def _pipe(self, conn: _Conn, sock) -> None:
        """Bytes both ways (``localpipe.pipe``); then the socket closed, or aborted (an RST
        for TCP) if either side reset the stream."""
        outcome = ABORTED
        try:
            outcome = await pipe(conn, sock, self._wake)
        finally:
            if outcome == RESET:
                log.info("forward %s: stream %s reset (code %s): resetting the connection",
                         conn.label, conn.sid, conn.reset_in)
            if outcome == DONE:
                await sock.aclose()
            else:
                sock.abort() if isinstance(sock, _Stdio) else _rst(sock)


class _Stdio:
    """stdin and stdout as one stream-like connection (``-W``)."""

    def __init__(self) -> None:
        self._in = trio.lowlevel.FdStream(0)
        self._out = trio.lowlevel.FdStream(1)

    async def receive_some(self, n: int) -> bytes:
        return await self._in.receive_some(n)

    async def send_all(self, data: bytes) -> None:
        await self._out.send_all(data)

    async def send_eof(self) -> None:
        await self._out.aclose()

    def abort(self) -> None:
        for s in (self._in, self._out):
            try:
                s.close()
            except OSError:
                pass

    async def aclose(self) -> None:
        await self._in.aclose()
        await self._out.aclose()

