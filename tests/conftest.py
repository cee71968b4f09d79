"""Shared fixtures: one private Tox network on 127.0.0.1 per test session (per xdist
worker), LAN discovery and IPv6 off everywhere."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from toxbridge.network import NodeInfo, loopback_options
from toxbridge.testing import start_bootstrap
from toxbridge.tox import Connection, Tox


@contextmanager
def private_network():
    """A private network's bootstrap node (tox-bootstrapd, also a TCP relay), for the block."""
    node = start_bootstrap()
    try:
        yield node.info
    finally:
        node.stop()


@pytest.fixture(scope="session")
def tox_network() -> NodeInfo:
    """The bootstrap node of this session's private network. No test floods it: 200
    strangers that vanish at once leave dead entries in every node's DHT lists for about
    two minutes (toxcore drops a node after ~122 s unheard), and on a network that small
    later sessions then came up late or not at all (test_hub's restart, test_triangle,
    test_status's DHT line)."""
    with private_network() as info:
        yield info


@pytest.fixture
def own_network() -> NodeInfo:
    """A private network of one test's alone: for a test that floods strangers."""
    with private_network() as info:
        yield info


@pytest.fixture(scope="module")
def module_network() -> NodeInfo:
    """A private network of one module's alone: its flood runs last in the module."""
    with private_network() as info:
        yield info


def iterate_until(toxes, predicate, timeout: float, what: str) -> None:
    """Iterate every Tox in ``toxes`` (one thread) until ``predicate()``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        for tox in toxes:
            tox.iterate()
        time.sleep(0.001)


def new_tox(network: NodeInfo, **options) -> Tox:
    tox = Tox(loopback_options(**options))
    tox.bootstrap(network.host, network.port, network.public_key)
    return tox


@pytest.fixture(scope="module")
def friends(tox_network):
    """Two in-process Tox instances, friends and connected: (a, b, a's friend number of b,
    b's friend number of a). Tests restore any handler they set."""
    a, b = new_tox(tox_network), new_tox(tox_network)
    requests = []
    b.on_friend_request = lambda key, msg: requests.append((key, msg))
    fa = a.friend_add(b.address, b"hello from a")
    iterate_until([a, b], lambda: requests, 120, "b to receive a's friend request")
    assert requests[0] == (a.public_key, b"hello from a")
    fb = b.friend_add_norequest(a.public_key)
    b.on_friend_request = None
    iterate_until(
        [a, b],
        lambda: a.friend_connection_status(fa) != Connection.NONE
        and b.friend_connection_status(fb) != Connection.NONE,
        120,  # ~10 s normally; generous for a loaded 2-core machine (the stranger flood runs beside it)
        "the friend connection",
    )
    yield a, b, fa, fb
    a.close()
    b.close()
