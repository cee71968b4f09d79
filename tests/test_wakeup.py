"""The tox thread's wait: woken by set() from another thread or by a packet on a watched
socket, else after its timeout; and finding a process's UDP socket by its port."""

from __future__ import annotations

import os
import socket
import threading
import time

from toxbridge.network import loopback_options
from toxbridge.tox import Tox, udp_socket_fd
from toxbridge.wakeup import Wakeup


def test_wait_times_out_when_nothing_happens():
    w = Wakeup()
    t = time.monotonic()
    assert w.wait(0.05) is False
    assert 0.04 <= time.monotonic() - t < 1


def test_set_from_another_thread_ends_the_wait_at_once_and_stays_set_until_cleared():
    w = Wakeup()
    threading.Timer(0.05, w.set).start()
    t = time.monotonic()
    assert w.wait(5) is True
    assert time.monotonic() - t < 1
    assert w.wait(5) is True  # still set: returns at once
    w.clear()
    assert w.is_set() is False
    assert w.wait(0.01) is False


def test_a_datagram_on_a_watched_socket_ends_the_wait_without_setting_it():
    w = Wakeup()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        w.watch(rx.fileno())
        threading.Timer(0.05, tx.sendto, (b"x", rx.getsockname())).start()
        t = time.monotonic()
        assert w.wait(5) is False
        assert time.monotonic() - t < 1
        rx.recv(10)
        w.unwatch(rx.fileno())
        tx.sendto(b"y", rx.getsockname())
        assert w.wait(0.05) is False  # no longer watched: the full timeout
        rx.recv(10)


def test_udp_socket_fd_finds_the_socket_bound_to_a_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert udp_socket_fd(port) == s.fileno()
    assert udp_socket_fd(port) is None  # closed
    assert udp_socket_fd(0) is None


def test_udp_socket_fd_finds_toxcores_own_socket():
    tox = Tox(loopback_options())
    try:
        fd = udp_socket_fd(tox.udp_port)
        assert fd is not None
        s = socket.socket(fileno=fd)  # look at it only; hand it back untouched
        try:
            assert s.type == socket.SOCK_DGRAM and s.getsockname()[1] == tox.udp_port
        finally:
            s.detach()
    finally:
        tox.close()


def test_a_write_left_after_a_clear_is_reported_once_then_gone():
    """set() raises the flag, then writes; a clear() in between leaves a count with the
    flag down. The next wait reports it, the caller clears, and waits time out again
    (not a readable eventfd ending every wait: a busy loop)."""
    w = Wakeup()
    w.set()
    w.clear()
    os.eventfd_write(w._fd, 1)  # the late write of a racing set()
    assert w.wait(5) is True
    w.clear()
    t = time.monotonic()
    assert w.wait(0.05) is False
    assert time.monotonic() - t >= 0.04


def test_an_unwatched_wait_ignores_the_socket_but_not_set():
    w = Wakeup()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        w.watch(rx.fileno())
        tx.sendto(b"x", rx.getsockname())
        time.sleep(0.01)
        t = time.monotonic()
        assert w.wait(0.05, watched=False) is False
        assert time.monotonic() - t >= 0.04  # the datagram did not end it
        threading.Timer(0.02, w.set).start()
        assert w.wait(5, watched=False) is True


def test_a_skipping_wait_sleeps_through_upkeep_datagrams_but_not_one_queued_behind_them():
    """Kinds 0x80 and 0x02 are skippable: the wait sleeps through them, though they stay
    unread; a datagram of another kind ends it, even behind them. The owner's reads
    (toxcore's) take the datagrams and move the peek offset back, so the next skipping
    wait looks at the next new datagram only."""
    w = Wakeup()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        assert w.watch_datagrams(rx.fileno(), frozenset({0x80, 0x02})) is True
        to = rx.getsockname()
        tx.sendto(b"\x80onion", to)
        tx.sendto(b"\x02nodes", to)
        t = time.monotonic()
        assert w.wait(0.1, skip=True) is False
        assert time.monotonic() - t >= 0.09  # slept through both
        assert w.wait(0.05) is False and time.monotonic() - t < 1  # unskipping: readable
        threading.Timer(0.05, tx.sendto, (b"\x1bdata", to)).start()
        t = time.monotonic()
        assert w.wait(5, skip=True) is False
        assert 0.03 < time.monotonic() - t < 1  # woken by the data behind the upkeep
        assert [rx.recv(64) for _ in range(3)] == [b"\x80onion", b"\x02nodes", b"\x1bdata"]
        tx.sendto(b"\x02again", to)
        t = time.monotonic()
        assert w.wait(0.1, skip=True) is False and time.monotonic() - t >= 0.09
        tx.sendto(b"\x1bnext", to)
        assert w.wait(5, skip=True) is False and time.monotonic() - t < 1
        assert rx.recv(64) == b"\x02again" and rx.recv(64) == b"\x1bnext"
        threading.Timer(0.05, w.set).start()
        assert w.wait(5, skip=True) is True  # the flag still ends it
        w.clear()
        w.unwatch(rx.fileno())
        tx.sendto(b"\x1bunwatched", to)
        t = time.monotonic()
        assert w.wait(0.05, skip=True) is False and time.monotonic() - t >= 0.04
