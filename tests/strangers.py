"""A flood of strangers (issue 6, item 5; issue 14, item 5): hundreds of Tox instances on
the private network asking nodes for friendship, which none may get. Used by
test_strangers.py alone, and beside the mesh tests (test_hub.py, test_triangle.py) while
they run."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio

from toxbridge.network import NodeInfo, loopback_options
from toxbridge.testing import DaemonProc
from toxbridge.tox import Connection, Tox

STRANGERS = 200
READY_TIMEOUT = 60  # seconds to create and bootstrap them all on a loaded machine
# A stranger not on the DHT asks the bootstrap node again this often, as clients do: 200
# first requests at once can overflow a busy bootstrap node's socket, and a Tox whose only
# node never answered stays off the network for good (local CI, 2026-12-04: 25 of 200
# refused after 120 s, 8-10 by each node, twice; 160 in 26 s when the triangle ran alone).
REBOOTSTRAP_S = 2.0


def requests(secret: str, allow_list: bool) -> list[bytes]:
    """What the strangers say, in turn: no prefix, a wrong secret, near misses, a
    maximum-length request; and the right secret where the nodes also have an allow-list
    the strangers are not on (a node with only a secret would rightly accept it)."""
    said = [
        b"hello",
        b"toxbridge/1 wrong",
        b"toxbridge/1 " + secret.encode()[:-1],  # a prefix of the secret
        b"toxbridge/1 " + secret.encode() + b"\x00",  # the secret and one byte more
        b"toxbridge/1 " + b"x" * 1004,  # 1016 bytes, toxcore's maximum
    ]
    if allow_list:
        said.insert(4, b"toxbridge/1 " + secret.encode())
    return said


class Flood(threading.Thread):
    """``count`` Tox instances, created, iterated and closed in this one thread; stranger
    ``i`` sends ``messages[i % len]`` to ``addresses[i % len]``. Records any that get a
    friend connection (``accepted``)."""

    def __init__(self, network: NodeInfo, addresses: list[str], messages: list[bytes],
                 count: int = STRANGERS) -> None:
        super().__init__(name="stranger-flood", daemon=True)
        self.network, self.addresses, self.messages, self.count = network, addresses, messages, count
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.keys: list[bytes] = []
        self.accepted: list[bytes] = []
        self.rounds = 0  # of iterating them all
        self.online = 0  # strangers on the DHT, as of the last round
        self.rebootstraps = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        toxes: list[Tox] = []
        try:
            for i in range(self.count):
                t = Tox(loopback_options())
                toxes.append(t)
                t.bootstrap(self.network.host, self.network.port, self.network.public_key)
                t.friend_add(self.addresses[i % len(self.addresses)],
                             self.messages[i % len(self.messages)])
                self.keys.append(t.public_key)
            self.ready.set()
            net = self.network
            asked = time.monotonic()
            while not self.stop.is_set():
                again = time.monotonic() - asked >= REBOOTSTRAP_S
                if again:
                    asked = time.monotonic()
                online = 0
                for t in toxes:
                    t.iterate()
                    if t.connection_status != Connection.NONE:
                        online += 1
                    elif again:
                        t.bootstrap(net.host, net.port, net.public_key)
                        self.rebootstraps += 1
                    if t.friend_connection_status(0) != Connection.NONE and t.public_key not in self.accepted:
                        self.accepted.append(t.public_key)
                self.online = online
                self.rounds += 1
                self.stop.wait(0.05)
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()
            for t in toxes:
                t.close()

    def hex_keys(self) -> set[str]:
        return {k.hex().upper() for k in self.keys}


def ignored_keys(daemon: DaemonProc) -> list[str]:
    """The keys of every friend request the node logged as refused, in order."""
    return re.findall(r"ignored a friend request from ([0-9A-F]{64})", "\n".join(daemon.log))


def refused(daemons: Iterable[DaemonProc]) -> Counter[str]:
    """How often each key was logged as refused, over all ``daemons``."""
    return Counter(k for d in daemons for k in ignored_keys(d))


def accepted_keys(daemon: DaemonProc) -> list[str]:
    """The keys of the peers the node accepted (as a listener), in order."""
    return re.findall(r"accepted the peer ([0-9A-F]{64})", "\n".join(daemon.log))


@asynccontextmanager
async def flood_of_strangers(network: NodeInfo, addresses: list[str], messages: list[bytes],
                             count: int = STRANGERS) -> AsyncIterator[Flood]:
    """A :class:`Flood` running for the body (its Toxes are created when this enters)."""
    flood = Flood(network, addresses, messages, count)
    flood.start()
    try:
        assert await trio.to_thread.run_sync(flood.ready.wait, READY_TIMEOUT), \
            f"{count} strangers not created in {READY_TIMEOUT} s"
        assert flood.error is None, flood.error
        yield flood
    finally:
        flood.stop.set()
        await trio.to_thread.run_sync(flood.join, 30)
    assert not flood.is_alive(), "the flood thread did not end"
    assert flood.error is None, flood.error


async def wait_refused(flood: Flood, daemons: list[DaemonProc], at_least: int,
                       timeout: float, each: int = 1) -> Counter[str]:
    """Until ``at_least`` strangers were refused (logged) by ``daemons`` together, and at
    least ``each`` by every one of them; the refusals per key. Fails if a key that is not a
    stranger's was refused (a real peer turned away)."""
    strangers = flood.hex_keys()
    deadline = time.monotonic() + timeout
    while True:
        assert flood.error is None, flood.error
        per_node = [set(ignored_keys(d)) for d in daemons]
        per_key = refused(daemons)
        assert set(per_key) <= strangers, set(per_key) - strangers
        if len(per_key) >= at_least and all(len(n) >= each for n in per_node):
            return per_key
        assert time.monotonic() < deadline, \
            (f"{len(per_key)} of {flood.count} strangers refused after {timeout} s "
             f"(by each node: {[len(n) for n in per_node]}; {flood.online} strangers on the DHT, "
             f"{flood.rebootstraps} bootstraps again, {flood.rounds} rounds)")
        await trio.sleep(0.5)
