"""The hop tracer of ``python -m bench hops``: wraps the few functions a message passes
through, each recording ``monotonic_ns point size`` (one ``os.write`` per event, ~2 us:
the figures include it). Processes share CLOCK_MONOTONIC, so their times compare."""

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

    def fam(stream) -> str:
        return "unix" if stream.socket.family == socket.AF_UNIX else "inet"

    receive_some, send_all = trio.SocketStream.receive_some, trio.SocketStream.send_all

    async def traced_receive(self, max_bytes=None):
        data = await receive_some(self, max_bytes)
        if data:
            rec("in_" + fam(self), len(data))
        return data

    async def traced_send(self, data):
        rec("out_" + fam(self), len(data))
        return await send_all(self, data)

    trio.SocketStream.receive_some, trio.SocketStream.send_all = traced_receive, traced_send
    if "bridge_local" in sys.modules or _importable("bridge_local.store"):
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
    wakeup.Wakeup.wait = traced_wait
    lossy = _tox.Tox.try_send_lossy_packet

    def traced_lossy(self, friend, data):
        rec(f"lossy_out_{data[0]}", len(data))
        return lossy(self, friend, data)
    _tox.Tox.try_send_lossy_packet = traced_lossy
    on_lossy = toxloop.ToxLoop._on_lossy

    def traced_on_lossy(self, friend, data):
        rec(f"lossy_in_{data[0]}", len(data))
        return on_lossy(self, friend, data)
    toxloop.ToxLoop._on_lossy = traced_on_lossy


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True
