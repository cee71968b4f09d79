"""The local endpoint for streams (trio): ``streams.sock`` beside the control socket, mode
0600; each connection is one stream to the peer (docs/wire.md §5).

The first line asks (``open`` or ``accept``), one JSON line answers, and then the
connection carries the stream's bytes both ways (``toxbridge.localpipe``, as port
forwarding does): the app's socket backpressure is the stream's flow control; the app's
SHUT_WR is the stream's FIN; an error on the connection (it closed with unread data, or
we cannot write) resets the stream; a peer FIN is our SHUT_WR, a peer RESET closes the
connection (no RST here).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import trio

from .chanstream import CHANNEL_KIND
from .localpipe import READ_SIZE, RESET, TrioStream, pipe
from .peertables import FIRST, PeerTables, UnknownPeer
from .streams import MAX_HEADER, Priority, ResetCode

__all__ = ["SOCKET_NAME", "StreamsServer"]

log = logging.getLogger(__name__)

SOCKET_NAME = "streams.sock"
MAX_REQUEST = 4096  # the first line
REQUEST_TIMEOUT = 30.0  # seconds to send it
MAX_CONNECTIONS = 512  # at once (the mux allows 256 streams each way)
ANY = "any"  # accept from any peer
WATCH_BACKLOG = 1024  # peer events waiting for a watcher that does not read
RESERVED_KINDS = range(0, 16)  # the daemon's own (1: the channel)
_PRIORITIES = {"control": Priority.CONTROL, "interactive": Priority.INTERACTIVE,
               "bulk": Priority.BULK}


class RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_request(line: bytes) -> tuple[str, int, Priority, bytes, str]:
    """``{"op": "open", "kind": K, "priority": P, "header": HEX, "peer": PEER}`` or
    ``{"op": "accept", "kind": K, "peer": PEER}`` -> (op, kind, priority, header, peer).
    PEER: a public key (hex), a configured name, "peer" (the first peer; the default) or,
    for accept, "any". Raises RequestError."""
    try:
        req = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError("bad_request", f"not a JSON line: {exc}") from None
    if not isinstance(req, dict) or req.get("op") not in ("open", "accept", "peers"):
        raise RequestError("bad_request",
                           'the first line needs "op": "open", "accept" or "peers"')
    if req["op"] == "peers":
        return "peers", 0, Priority.BULK, b"", ""
    kind = req.get("kind")
    if not isinstance(kind, int) or isinstance(kind, bool) or not 0 <= kind <= 255:
        raise RequestError("bad_request", '"kind" must be an integer 0..255')
    if kind in RESERVED_KINDS:
        raise RequestError("bad_request", f"kinds 0..{RESERVED_KINDS[-1]} are the daemon's")
    peer = req.get("peer", FIRST)
    if not isinstance(peer, str) or not peer:
        raise RequestError("bad_request", '"peer" must be a public key, a name, "peer" or "any"')
    if peer == ANY and req["op"] != "accept":
        raise RequestError("bad_request", '"peer": "any" is for accept; open names one peer')
    priority = _PRIORITIES.get(req.get("priority", "bulk"))
    if priority is None:
        raise RequestError("bad_request", '"priority" must be control, interactive or bulk')
    try:
        header = bytes.fromhex(req.get("header", ""))
    except (TypeError, ValueError):
        raise RequestError("bad_request", '"header" must be hex') from None
    if len(header) > MAX_HEADER:
        raise RequestError("bad_request", f"header over {MAX_HEADER} bytes")
    return req["op"], kind, priority, header, peer


class StreamsServer:
    """Serves ``sock`` (bound and listening: ``bind_control_socket``). ``wake``: tells the
    tox thread to look at the table."""

    def __init__(self, sock: socket.socket, path: os.PathLike, tables: PeerTables, wake) -> None:
        self._sock = sock
        self._path = Path(path)
        st = self._path.stat()
        self._ident = (st.st_dev, st.st_ino)
        self._tables = tables
        self._wake = wake
        self._count = 0

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled; the socket file is removed at the end (if it is still ours)."""
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._sock))
        try:
            async with listener:
                task_status.started()
                await trio.serve_listeners(self._handle, [listener])
        finally:
            try:
                st = self._path.stat()
                if (st.st_dev, st.st_ino) == self._ident:
                    self._path.unlink()
            except OSError:
                pass

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self._count >= MAX_CONNECTIONS:
            await self._reply_close(stream, {"ok": False, "code": "busy",
                                             "message": "too many stream connections"})
            return
        self._count += 1
        try:
            await self._serve_one(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._count -= 1
            await stream.aclose()

    async def _reply_close(self, stream: trio.SocketStream, reply: dict) -> None:
        with trio.move_on_after(2):
            try:
                await stream.send_all(json.dumps(reply).encode() + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await stream.aclose()

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        line, rest = b"", b""
        with trio.move_on_after(REQUEST_TIMEOUT):
            while b"\n" not in line and len(line) <= MAX_REQUEST:
                data = await stream.receive_some(MAX_REQUEST + 1 - len(line))
                if not data:
                    return
                line += data
        if b"\n" not in line:
            await self._reply_close(stream, {"ok": False, "code": "bad_request",
                                             "message": "no request line"})
            return
        line, rest = line.split(b"\n", 1)
        try:
            op, kind, priority, header, peer = parse_request(line)
            if op == "peers":
                await self._watch_peers(stream)
                return
            waiter = self._waiter(op, peer)
        except RequestError as exc:
            await self._reply_close(stream, {"ok": False, "code": exc.code,
                                             "message": str(exc)})
            return
        ls = TrioStream()
        ls.kind, ls.priority, ls.header = kind, priority, header
        ls.to_peer += rest
        if op == "open":
            waiter.request_open(ls)
        elif not waiter.request_accept(ls):
            await self._reply_close(stream, {"ok": False, "code": "busy",
                                             "message": "too many connections wait in accept"})
            return
        self._wake.set()
        sid = failure = None
        try:
            async with trio.open_nursery() as nursery:
                async def until_gone() -> None:
                    # An app that closes while it waits (a bridge_local that stopped) must
                    # not stay queued: the next OPEN would go to nobody.
                    while len(ls.to_peer) < MAX_REQUEST:
                        try:
                            data = await stream.receive_some(MAX_REQUEST)
                        except trio.BrokenResourceError:
                            data = b""
                        if not data:
                            nursery.cancel_scope.cancel()
                            return
                        with ls.lock:
                            ls.to_peer += data
                    await trio.sleep_forever()
                nursery.start_soon(until_gone)
                while True:
                    with ls.lock:
                        sid, failure = ls.sid, ls.failure
                    if sid is not None or failure is not None:
                        break
                    await ls.changed()
                nursery.cancel_scope.cancel()
        finally:
            if sid is None and failure is None:  # cancelled, or the app went away
                waiter.withdraw(ls)
                if ls.table is not None:  # accepted meanwhile
                    ls.table.withdraw(ls)
        if sid is None and failure is None:  # the app went away while it waited
            with ls.lock:
                late = ls.sid is not None  # accepted just then: nobody will pump it
                if late:
                    ls.reset_out = ResetCode.CANCELLED
            if late:
                ls.touch()
                self._wake.set()
            return
        if failure is not None:
            await self._reply_close(stream, {"ok": False, "code": failure[0],
                                             "message": failure[1]})
            return
        reply = {"ok": True, "stream": sid, "kind": kind,
                 "priority": Priority(ls.priority).name.lower(), "header": ls.header.hex(),
                 "peer": ls.peer_key.hex().upper()}
        name = self._tables.name_of(ls.peer_key)
        if name is not None:
            reply["name"] = name
        await stream.send_all(json.dumps(reply).encode() + b"\n")
        # (pipe's first touch sends the bytes that came with the request line)
        if await pipe(ls, stream, self._wake) == RESET:
            log.info("stream %s reset (code %s): closing its connection", ls.sid, ls.reset_in)

    async def _watch_peers(self, stream: trio.SocketStream) -> None:
        """``{"op": "peers"}``: the peers now, then one line per change, until the app
        closes (or reads so slowly that WATCH_BACKLOG events wait: then we close)."""
        token = trio.lowlevel.current_trio_token()
        backlog: list[dict] = []
        wake = trio.Event()
        overflow = False

        def queue(event: dict) -> None:  # the trio thread
            nonlocal wake, overflow
            if len(backlog) >= WATCH_BACKLOG:
                overflow = True
            else:
                backlog.append(event)
            wake.set()

        def watcher(event: dict) -> None:  # the tox thread
            try:
                token.run_sync_soon(queue, event)
            except trio.RunFinishedError:
                pass

        try:
            peers, unwatch = self._tables.watch(watcher)
        except OverflowError as exc:
            await self._reply_close(stream, {"ok": False, "code": "busy", "message": str(exc)})
            return
        try:
            await stream.send_all(json.dumps({"ok": True, "peers": peers}).encode() + b"\n")
            async with trio.open_nursery() as nursery:
                async def until_closed() -> None:
                    while await stream.receive_some(READ_SIZE):
                        pass  # nothing is asked after the request line
                    nursery.cancel_scope.cancel()
                nursery.start_soon(until_closed)
                while not overflow:
                    if not backlog:
                        await wake.wait()
                        wake = trio.Event()
                        continue
                    lines = b"".join(json.dumps(e).encode() + b"\n" for e in backlog)
                    backlog.clear()
                    await stream.send_all(lines)
                log.warning("a peer watcher fell %d events behind: closing it", WATCH_BACKLOG)
                nursery.cancel_scope.cancel()
        finally:
            unwatch()

    def _waiter(self, op: str, peer: str):
        """Where a request waits: the named peer's table, or (accept from "any", or from
        "peer" before there is one) the tables' shared acceptors. Raises RequestError."""
        if op == "accept" and (peer == ANY or (peer == FIRST and not len(self._tables))):
            return self._tables.shared
        try:
            return self._tables.resolve(peer)
        except UnknownPeer as exc:
            code = "no_peer" if peer == FIRST else "unknown_peer"
            raise RequestError(code, "no peer is connected" if peer == FIRST else str(exc)) from None
