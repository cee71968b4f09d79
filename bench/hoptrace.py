"""The hop tracer of ``python -m bench hops``: wraps the few functions a message passes
through, each recording ``monotonic_ns point size`` (one ``os.write`` per event, ~2 us:
the figures include it). Processes share CLOCK_MONOTONIC, so their times compare.

With ``TOXBRIDGE_HOPS_TAG`` set (``bench mesh --hops``: whole nodes, a file moving beside
the chat) only what carries a chat line's text is recorded, its point named after it
(``_ping`` / ``_pong``), a unix socket's side too (``_d``: the daemon's accepted end,
``_bl``: bridge_local's): one event among thousands of the file's cannot be told apart by
time alone, and the daemon and bridge_local share the process. The chat line's bytes are
plain text in every layer above toxcore's encryption."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time


def install(directory: str) -> None:
    fd = os.open(os.path.join(directory, f"{os.getpid()}.tsv"),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    now = time.monotonic_ns
    head = []

    def rec(point: str, size: int = 0) -> None:
        if not head:  # sys.argv is known by the first event
            head.append(1)
            os.write(fd, ("# " + " ".join(sys.argv) + "\n").encode())
        os.write(fd, f"{now()}\t{point}\t{size}\t{threading.get_ident()}\n".encode())

    import trio

    tags = tuple(t.encode() for t in os.environ.get("TOXBRIDGE_HOPS_TAG", "").split(",") if t)

    def tag(data) -> str | None:
        """The tag the bytes carry ("" untagged mode: every event); None: not recorded."""
        if not tags:
            return ""
        if len(data) > 1 << 17:
            return None  # a file's batch; a chat line comes alone or in a small one
        raw = bytes(data)
        for t in tags:
            if t in raw:
                return "_" + t.decode()
        return None

    def fam(stream) -> str:
        if stream.socket.family != socket.AF_UNIX:
            return "inet"
        if not tags:
            return "unix"
        return "unix_d" if stream.socket.getsockname() else "unix_bl"

    receive_some, send_all = trio.SocketStream.receive_some, trio.SocketStream.send_all

    async def traced_receive(self, max_bytes=None):
        data = await receive_some(self, max_bytes)
        if data and (t := tag(data)) is not None:
            rec("in_" + fam(self) + t, len(data))
        return data

    async def traced_send(self, data):
        if (t := tag(data)) is not None:
            rec("out_" + fam(self) + t, len(data))
        return await send_all(self, data)

    trio.SocketStream.receive_some, trio.SocketStream.send_all = traced_receive, traced_send
    if not tags and ("bridge_local" in sys.modules or _importable("bridge_local.store")):
        from bridge_local import store
        commit = store.Store.commit

        def traced_commit(self):
            commit(self)
            rec("commit")
        store.Store.commit = traced_commit
    from toxbridge import toxloop, wakeup
    from toxbridge.tox import _tox
    wait = wakeup.Wakeup.wait

    def traced_wait(self, timeout, **kw):
        r = wait(self, timeout, **kw)
        rec("wake_flag" if r else "wake")
        return r
    if not tags:
        wakeup.Wakeup.wait = traced_wait
    lossy = _tox.Tox.try_send_lossy_packet

    def traced_lossy(self, friend, data):
        if (t := tag(data)) is not None:
            rec(f"lossy_out_{data[0]}{t}", len(data))
        return lossy(self, friend, data)
    _tox.Tox.try_send_lossy_packet = traced_lossy
    on_lossy = toxloop.ToxLoop._on_lossy

    def traced_on_lossy(self, friend, data):
        if (t := tag(data)) is not None:
            rec(f"lossy_in_{data[0]}{t}", len(data))
        return on_lossy(self, friend, data)
    toxloop.ToxLoop._on_lossy = traced_on_lossy
    if tags:  # where the chat line's bytes enter our transport (behind its unsent bytes)
        from toxbridge.transport import endpoint
        ep_send = endpoint.Endpoint.send

        def traced_ep_send(self, data):
            if (t := tag(data)) is not None:
                rec("ep_in" + t, len(data))
            return ep_send(self, data)
        endpoint.Endpoint.send = traced_ep_send


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True
