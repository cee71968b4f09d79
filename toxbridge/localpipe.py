"""A local connection's bytes to and from its stream (trio), for both shells over local
streams: ``streams.sock`` (``toxbridge.localsock``) and port forwarding
(``toxbridge.forwarding``).

The socket is read only while the stream's buffer toward the mux has room, so the local
socket's backpressure is the stream's flow control; what the peer sends is written as the
socket takes it, and only then is it consumed (the peer's credit). The local SHUT_WR is
the stream's FIN and the peer's FIN is our SHUT_WR; a socket that fails (ECONNRESET,
EPIPE) resets the stream. What to do with the socket at the end (close it, or abort it
with an RST) is the caller's: :func:`pipe` says how it ended.
"""

from __future__ import annotations

import trio

from .localstreams import CREDIT_WAKE, LocalStream
from .streams import ResetCode

__all__ = ["ABORTED", "DONE", "READ_SIZE", "RESET", "TrioStream", "pipe"]

READ_SIZE = 64 * 1024
DONE = "done"  # both directions ended
RESET = "reset"  # the peer reset the stream (``reset_in``), or it is gone
ABORTED = "aborted"  # our socket failed, or the stream was reset here: RESET sent


class TrioStream(LocalStream):
    """A LocalStream whose ``poke()`` (any thread) wakes its trio tasks; ``token``: the
    trio run's (the tox thread makes one for an incoming stream)."""

    def __init__(self, token: trio.lowlevel.TrioToken | None = None) -> None:
        super().__init__(self._poke)
        self._token = token or trio.lowlevel.current_trio_token()
        self._event = trio.Event()
        self._pending = False  # a wake-up is scheduled: pokes until it runs cost nothing
        self.bytes_out = self.bytes_in = 0  # piped to the peer, from the peer

    def _poke(self) -> None:  # any thread
        if not self._pending:
            self._pending = True
            try:
                self._token.run_sync_soon(self.poke_local)
            except trio.RunFinishedError:
                pass

    def poke_local(self) -> None:  # the trio thread
        self._pending = False
        self._event.set()
        self._event = trio.Event()

    async def changed(self) -> None:
        await self._event.wait()


class _Failed(Exception):
    """The local socket failed: reset the stream."""


def reset(ls: LocalStream, code: int, wake) -> None:
    """Reset the stream from here (unless it is reset already) and tell the tox thread."""
    with ls.lock:
        if ls.reset_in is None and ls.reset_out is None:
            ls.reset_out = code
    ls.touch()
    wake.set()


async def pipe(ls: TrioStream, sock, wake) -> str:
    """Bytes both ways between ``sock`` (``receive_some``, ``send_all``, ``send_eof``) and
    the stream until both directions ended (DONE) or either side reset it (RESET: the
    peer's; ABORTED: ours, CANCELLED). Cancelled, it resets the stream and re-raises.
    ``wake``: tells the tox thread to look at the table."""
    ends = {"in": False, "out": False}
    ls.touch()
    wake.set()

    def gone() -> bool:
        with ls.lock:
            return ls.reset_in is not None

    async def reader() -> None:  # socket -> stream
        while True:
            with ls.lock:
                room = ls.send_room
            if gone():
                return
            if room <= 0:
                await ls.changed()
                continue
            try:
                data = await sock.receive_some(min(room, READ_SIZE))
            except (trio.BrokenResourceError, OSError):  # ECONNRESET
                raise _Failed() from None
            with ls.lock:
                if data:
                    ls.to_peer += data
                else:
                    ls.end_out = True
            ls.bytes_out += len(data)
            ls.touch()
            wake.set()
            if not data:
                ends["out"] = True
                ls.poke_local()  # the watcher may be waiting for this alone
                return

    async def writer() -> None:  # stream -> socket
        while True:
            with ls.lock:
                if len(ls.to_app) <= READ_SIZE:  # all of it: the buffer itself, no copy
                    chunk, ls.to_app = ls.to_app, bytearray()
                else:
                    chunk = ls.to_app[:READ_SIZE]  # a copy already
                    del ls.to_app[:READ_SIZE]
                ls.taken += len(chunk)
                end = ls.end_in and not chunk
            if chunk:
                try:
                    await sock.send_all(chunk)
                except (trio.BrokenResourceError, OSError):
                    raise _Failed() from None
                with ls.lock:
                    ls.written += len(chunk)
                    wanted = ls.written - ls.consumed >= CREDIT_WAKE or ls.end_in
                ls.bytes_in += len(chunk)
                ls.touch()
                if wanted:  # else the next pump takes it (localstreams.CREDIT_WAKE)
                    wake.set()
                continue
            if gone():
                return
            if end:
                try:
                    await sock.send_eof()
                except (trio.BrokenResourceError, OSError):
                    raise _Failed() from None
                ends["in"] = True
                ls.poke_local()
                return
            await ls.changed()

    async def guard(fn) -> None:
        try:
            await fn()
        except _Failed:
            reset(ls, ResetCode.CANCELLED, wake)
            ls.poke_local()

    outcome = ABORTED
    try:
        async with trio.open_nursery() as nursery:
            async def watch() -> None:
                while not (gone() or ends["in"] and ends["out"]):
                    with ls.lock:
                        if ls.reset_out is not None:
                            break
                    await ls.changed()
                nursery.cancel_scope.cancel()
            nursery.start_soon(watch)
            nursery.start_soon(guard, reader)
            nursery.start_soon(guard, writer)
        if gone():
            outcome = RESET
        elif ends["in"] and ends["out"]:
            outcome = DONE
    finally:
        if outcome == ABORTED and not gone():
            reset(ls, ResetCode.CANCELLED, wake)  # our socket failed, or cancelled
        ls.touch()  # the last credit goes back
        wake.set()
    return outcome
