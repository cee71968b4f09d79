"""A whole node in one process: the daemon (tox thread + bridge port) and, unless ``--raw``,
bridge_local's app server on top of it, connected to the bridge port over loopback TCP
exactly as a separate bridge_local process would be."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from functools import partial
from typing import Callable

import trio

from .config import Config
from .daemon import Daemon
from .errors import ToxbridgeError

__all__ = ["run_node_process"]

log = logging.getLogger(__name__)

STOP_GRACE = 3.0  # seconds bridge_local gets to say goodbye to the peer bridge


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write: a line never splits
    sys.stdout.flush()


async def _node(config: Config, app_config, announce: Callable[[str], None]) -> None:
    # Catch SIGINT/SIGTERM before anything is announced: a supervisor may signal us the
    # moment it reads our address, and that must still be a clean shutdown.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def daemon(task_status=trio.TASK_STATUS_IGNORED) -> None:
                try:
                    await Daemon(config, announce).run(task_status=task_status)
                finally:
                    nursery.cancel_scope.cancel()  # the daemon stopped: everything stops

            running: Daemon = await nursery.start(daemon)
            server = None
            if app_config is not None:
                from bridge_local.server import serve

                app_config = dataclasses.replace(app_config, bridge_host=config.bridge_host,
                                                 bridge_port=running.port)
                server = await nursery.start(partial(serve, app_config, announce=announce))
                running.status_sections.append(partial(_transfers, server))

            async def on_signal() -> None:
                async for sig in signals:
                    log.info("%s: shutting down", signal.Signals(sig).name)
                    if server is not None:
                        with trio.move_on_after(STOP_GRACE):
                            await server.stop()  # the peer bridge's clients get 302s at once
                    running.stop()
                    return

            nursery.start_soon(on_signal)


def _transfers(server, reply: dict) -> None:
    """bridge_local's transfers in flight, for a status reply. A bridge-to-bridge one
    names its peer (over the one-peer channel: the first peer)."""
    files = server.core.files if server.core is not None else None
    transfers = files.in_flight() if files is not None else []
    peer = reply["peers"][0]["public_key"] if reply.get("peers") else None
    for t in transfers:
        if t["hop"] in ("to_peer", "from_peer") and not t.get("peer"):
            t["peer"] = peer
    reply["transfers"] = transfers


def _only_error(exc: BaseException) -> BaseException:
    """The one exception inside nested exception groups (trio's nurseries), else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_node_process(config: Config, app_config=None, announce: Callable[[str], None] = _say) -> None:
    """Run until SIGINT/SIGTERM. ``app_config``: a ``bridge_local.server.BridgeConfig`` (its
    bridge address is filled in here), or None for ``--raw``."""
    # toxcore calls back into Python for every packet it receives, inside tox_iterate; with
    # the default 5 ms GIL switch interval the tox thread waits that long whenever the trio
    # thread is busy.
    sys.setswitchinterval(float(os.environ.get("TOXBRIDGE_SWITCH_INTERVAL", "0.0005")))
    try:
        trio.run(_node, config, app_config, announce)
    except BaseExceptionGroup as group:
        error = _only_error(group)
        if isinstance(error, ToxbridgeError):  # the caller prints it as one line
            raise error from None
        raise
