"""The local-socket side of the daemon (trio): the bridge port and the app connection,
and the control socket (`toxbridge.control.server`; ``status`` reads the tox thread's snapshot).

A thin shell: framing is `toxbridge.framing`, the reliable link and Tox are in the tox
thread (`toxbridge.toxloop`). One app connection at a time; a second one gets an error
event and is closed, the first is unaffected. A malformed frame gets an error event and
closes that connection only.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Callable

import trio

from . import access
from .config import Config
from .control.protocol import ControlError
from .control.server import ControlServer, bind_control_socket
from .config import NAME_RULE, valid_name
from .errors import PeerError, RemoteProtocolError
from .peertables import UnknownPeer
from .forwarding import Forwarder
from .framing import DATA, FrameDecoder, encode_event
from .localsock import SOCKET_NAME as STREAMS_SOCKET, StreamsServer
from .toxloop import ToxLoop

__all__ = ["Daemon"]

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# The app socket's kernel buffers, each way. Left alone, loopback TCP grows them to
# megabytes, and every byte queued there is latency for whatever the app sends next.
# Set on the listening socket, so that the connection's window follows them from the
# handshake on (man 7 tcp). Set after accept, they shrank the buffer below a window already
# offered: when the daemon stopped reading (a freeze, a slow peer) the kernel dropped the
# app's segments and its retransmissions backed off to 7+ s (docs/benchmarks.md, catch-up).
SOCKET_BUFFER = 64 * 1024
WRITE_BATCH = 8  # runs of up to 64 frames per write to the app


class Daemon:
    def __init__(self, config: Config, announce: Callable[[str], None] = print) -> None:
        self.config = config
        self.announce = announce
        self.tox_loop: ToxLoop | None = None
        self.app: trio.SocketStream | None = None
        self.port: int | None = None
        # Set when the tox thread has something for us: one for the app reader (room in
        # the outbound queue), one for the app writer (frames or events to write).
        self._room = trio.Event()
        self._work = trio.Event()
        self._events: list[dict] = []  # events from the tox thread (bounded below)
        self._token: trio.lowlevel.TrioToken | None = None
        self._finished = trio.Event()
        self._scope: trio.CancelScope | None = None
        # The control socket's commands (name -> handler of the request's arguments), and
        # what others running in this process add to a status reply (bridge_local's
        # transfers): each gets the reply dict and fills in its part.
        self.control_commands = {"status": self._status, "peers.add": self._peers_add,
                                 "peers.remove": self._peers_remove}
        self.status_sections: list[Callable[[dict], None]] = []
        self._access = access.AccessPolicy(os.geteuid(), open=config.app_open)
        self.streams_path: os.PathLike | None = None
        self.forwarder: Forwarder | None = None  # port forwarding (toxbridge.forwarding)

    # Called from the tox thread.
    def _notify(self, event: dict | None) -> None:
        try:
            self._token.run_sync_soon(self._on_notify, event)
        except trio.RunFinishedError:
            pass

    def _on_notify(self, event: dict | None) -> None:
        if event is not None:
            if len(self._events) >= 256:  # an app that does not read: keep the newest
                del self._events[0]
            self._events.append(event)
        self._room.set()
        self._work.set()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop` (or the tox thread fails). Signals are the caller's
        business (`toxbridge.node`): it must catch them before this announces anything."""
        c = self.config
        self._token = trio.lowlevel.current_trio_token()
        # First, before the profile is opened: a second node on the same data dir stops here.
        control = streams_sock = None
        if c.control_socket is not None:
            control = ControlServer(bind_control_socket(c.control_socket), c.control_socket,
                                    self.control_commands)
        loop = None
        listeners: list = []
        try:
            if c.control_socket is not None:  # the local streams (docs/wire.md §5)
                self.streams_path = c.control_socket.with_name(STREAMS_SOCKET)
                streams_sock = bind_control_socket(self.streams_path)
            self.tox_loop = loop = ToxLoop(c, self._notify)
            listeners = await trio.open_tcp_listeners(c.bridge_port, host=c.bridge_host)
            self.forwarder = Forwarder(c, loop.tables, loop.wake, self.announce,
                                       link_up=lambda key: key in loop.slots
                                       and loop.slots[key].state.link != "none")
            await self.forwarder.open_listeners()
        except BaseException:  # e.g. the port is in use: the tox thread never runs
            for listener in listeners:
                listener.socket.close()
            if loop is not None:
                loop.tox.close()
            if control is not None:
                control.close()
            if streams_sock is not None:
                streams_sock.close()
                self.streams_path.unlink(missing_ok=True)
            raise
        for listener in listeners:  # inherited by each accepted app connection
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                listener.socket.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self.port = listeners[0].socket.getsockname()[1]
        tox_id = loop.address.hex().upper()
        if c.id_file:
            c.id_file.write_text(tox_id + "\n")
        loop.start()
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(trio.serve_listeners, self._handle_app, listeners)
                nursery.start_soon(self._watch_tox, nursery.cancel_scope)
                if control is not None:
                    await nursery.start(control.serve)
                if streams_sock is not None:
                    server = StreamsServer(streams_sock, self.streams_path, loop.tables, loop.wake)
                    await nursery.start(server.serve)
                self.announce(f"tox-id {tox_id}")
                self.announce(f"bridge {c.bridge_host}:{self.port}")
                await nursery.start(self.forwarder.serve)  # announces each -L
                self.status_sections.append(self.forwarder.status)
                if c.stdio is not None:
                    nursery.start_soon(self.forwarder.run_stdio, self.stop)
                task_status.started(self)
        finally:
            loop.stop()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(loop.join)
            self.announce("stopped")
        if loop.failure is not None:
            raise loop.failure

    def stop(self) -> None:
        """Stop serving: the tox thread saves the profile and closes toxcore."""
        if self._scope is not None:
            self._scope.cancel()

    async def _status(self, args: dict) -> dict:
        """``status``: the tox thread's snapshot (fresh: asked for, waited for up to
        0.5 s), and the sections others add."""
        loop = self.tox_loop
        old = loop.snapshot
        loop.request_snapshot()
        with trio.move_on_after(0.5):
            while loop.snapshot is old:
                await trio.sleep(0.005)
        if loop.snapshot is None:
            raise ControlError("starting", "the node is starting; try again")
        reply = loop.snapshot.to_dict()
        reply["bridge_port"] = self.port
        for section in self.status_sections:
            section(reply)
        return reply

    async def _call(self, fn) -> dict:
        """Run ``fn`` on the tox thread; its PeerError is the command's error."""
        call = self.tox_loop.submit(fn)
        with trio.move_on_after(5):
            while not call.done.is_set():
                await trio.sleep(0.005)
        if not call.done.is_set():
            raise ControlError("busy", "the tox thread did not answer within 5 s")
        if isinstance(call.error, PeerError):
            raise ControlError("refused", str(call.error))
        if call.error is not None:
            raise call.error
        return call.result

    async def _peers_add(self, args: dict) -> dict:
        """``peers add``: dial a Tox ID (``tox_id``, 76 hex digits), with an optional ``name``."""
        from .tox import parse_address

        name = args.get("name")
        if name is not None and not (isinstance(name, str) and valid_name(name)):
            raise ControlError("bad_request", f"a name is {NAME_RULE}")
        try:
            tox_id = parse_address(str(args.get("tox_id", "")))
        except ValueError as exc:
            raise ControlError("bad_request", str(exc)) from None
        loop = self.tox_loop
        return await self._call(lambda: loop.add_peer(tox_id, name))

    async def _peers_remove(self, args: dict) -> dict:
        """``peers remove``: a peer by its public key (or Tox ID) or name."""
        loop = self.tox_loop
        try:
            key = loop.tables.key_of(str(args.get("peer", "")))
        except UnknownPeer as exc:
            raise ControlError("unknown_peer", str(exc)) from None
        return await self._call(lambda: loop.remove_peer(key))

    async def _watch_tox(self, scope: trio.CancelScope) -> None:
        await trio.to_thread.run_sync(self.tox_loop.join, abandon_on_cancel=True)
        scope.cancel()

    # -- the app connection -----------------------------------------------------------

    async def _handle_app(self, stream: trio.SocketStream) -> None:
        # Before anything else (a stranger does not even learn that the port is busy).
        verdict, uid = await access.check(stream, self._access, tokens=False)
        if verdict != access.ADMIT:
            message = self._access.refusal(uid)
            log.warning("refused a bridge port connection: %s", message)
            await access.refuse(stream, encode_event(
                {"event": "error", "code": "forbidden", "message": message}))
            return
        if self.app is not None:
            log.warning("refused a second app connection")
            await self._close_with(stream, {"event": "error", "code": "busy",
                                            "message": "another app is connected to this bridge"})
            return
        self.app = stream
        log.info("app connected")
        # It gets the current peer state below; older peer/link changes would only mislead.
        self._events = [e for e in self._events if e.get("event") not in ("peer", "link")]
        loop = self.tox_loop
        error: dict | None = None
        try:
            ready = {"event": "ready", "tox_id": loop.address.hex().upper(),
                     "mode": self.config.mode, "version": 1}
            if self.streams_path is not None:  # every peer's streams (docs/wire.md §5)
                ready["streams"] = str(self.streams_path)
            await stream.send_all(encode_event(ready)
                                  + encode_event(loop.peer_event()))
            async with trio.open_nursery() as nursery:
                async def reader() -> None:
                    nonlocal error
                    error = await self._read_app(stream)
                    nursery.cancel_scope.cancel()

                async def writer() -> None:
                    # Caught here, inside the task: out of the nursery it would be an
                    # exception group, which would end serve_listeners and the daemon.
                    try:
                        await self._write_app(stream)
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        log.info("app connection lost: %s", exc)
                    nursery.cancel_scope.cancel()
                nursery.start_soon(reader)
                nursery.start_soon(writer)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("app connection lost: %s", exc)  # while sending `ready`
        finally:
            self.app = None
            if error is not None:
                log.warning("closing the app connection: %s", error["message"])
                await self._close_with(stream, error)
            else:
                await stream.aclose()
            log.info("app disconnected")

    async def _close_with(self, stream: trio.SocketStream, event: dict) -> None:
        with trio.move_on_after(2):
            try:
                await stream.send_all(encode_event(event))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await stream.aclose()

    async def _read_app(self, stream: trio.SocketStream) -> dict | None:
        """Frames from the app into the outbound queue; returns an error event, or None
        at a clean end of stream."""
        loop = self.tox_loop
        outbound, wake = loop.outbound, loop.wake
        decoder = FrameDecoder(allowed_kinds=(DATA,))
        while True:
            try:
                data = await stream.receive_some(READ_SIZE)
            except trio.BrokenResourceError:
                return None
            if not data:
                if decoder.at_eof_incomplete():
                    return {"event": "error", "code": "truncated",
                            "message": "the connection closed in the middle of a frame"}
                return None
            try:
                decoder.receive_data(data)
                for frame in decoder:
                    while not outbound.put_nowait(frame.payload):
                        wake.set()
                        await self._room.wait()  # the peer is slow: stop reading the app
                        self._room = trio.Event()
                wake.set()
            except RemoteProtocolError as exc:
                return {"event": "error", "code": "bad_frame", "message": str(exc)}

    async def _write_app(self, stream: trio.SocketStream) -> None:
        """Events, and the runs of frames the tox thread encoded, in big writes."""
        inbound = self.tox_loop.inbound
        while True:
            chunks = [encode_event(e) for e in self._events]
            self._events.clear()
            blobs = inbound.take(WRITE_BATCH)
            if blobs:
                # Room again in the inbound queue: said before the write, which may fail
                # (the app gone) and which the tox thread need not wait for.
                self.tox_loop.wake.set()
            if chunks or blobs:
                await stream.send_all(b"".join(chunks + blobs))
                continue
            await self._work.wait()
            self._work = trio.Event()
