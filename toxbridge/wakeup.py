"""The tox thread's alarm clock: a flag the trio side sets, waited on in poll() together
with toxcore's UDP socket, so the thread sleeps as long as toxcore allows and still wakes
at once for a frame to send or a packet that arrived.

An idle wait may also sleep through datagrams of kinds the caller names (toxcore's own
upkeep: ``toxbridge.tox.UPKEEP_PACKET_KINDS``): it peeks at each new datagram's first
byte and wakes only for another kind. Each new one is seen because the socket is in an
edge-triggered epoll (an event per arrival, though the socket stays readable) and has a
peek offset (``SO_PEEK_OFF``: each peek starts after the datagrams already peeked, and
toxcore's reads move the offset back). Linux only; without it, every datagram wakes.
"""

from __future__ import annotations

import math
import os
import select
import socket
import time

SO_PEEK_OFF = getattr(socket, "SO_PEEK_OFF", 42)  # Linux's value; Python 3.11 lacks the name


class Wakeup:
    """Like ``threading.Event`` (``set``/``clear``/``wait``), over an eventfd; ``watch``
    adds a descriptor whose readability also ends a wait."""

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poll = select.poll()  # the eventfd and the watched descriptors
        self._poll.register(self._fd, select.POLLIN)
        self._poll_self = select.poll()  # the eventfd alone
        self._poll_self.register(self._fd, select.POLLIN)
        self._watched: set[int] = set()
        self._skippable: _Skippable | None = None  # see watch_datagrams
        # Read without a lock: a set() that sees True skips its write, and the pending
        # wake is cleared (by the waiter) only before the waiter looks at the queues again.
        self._flag = False

    def set(self) -> None:
        """Any thread."""
        if not self._flag:
            self._flag = True
            os.eventfd_write(self._fd, 1)

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        self._flag = False
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass

    def watch(self, fd: int) -> None:
        if fd not in self._watched:
            self._watched.add(fd)
            self._poll.register(fd, select.POLLIN)

    def unwatch(self, fd: int) -> None:
        if fd in self._watched:
            self._watched.discard(fd)
            self._poll.unregister(fd)
        if self._skippable is not None and self._skippable.fd == fd:
            self._skippable.close()
            self._skippable = None

    def watch_datagrams(self, fd: int, kinds: frozenset[int]) -> bool:
        """Watch the datagram socket ``fd``, and let ``wait(..., skip=True)`` sleep through
        datagrams whose first byte is in ``kinds``. False if this kernel cannot peek past
        a datagram (then it is only watched)."""
        self.watch(fd)
        if self._skippable is None:
            try:
                self._skippable = _Skippable(fd, kinds, self._fd)
            except OSError:
                return False
        return True

    def wait(self, timeout: float, *, watched: bool = True, skip: bool = False) -> bool:
        """Until set, a watched descriptor is readable (unless ``watched`` is False), or
        ``timeout`` s; True if set. ``skip``: datagrams of the kinds given to
        ``watch_datagrams`` do not end the wait."""
        if skip and watched and not self._flag and self._skippable is not None:
            return self._skippable.wait(timeout) or self._flag
        if not self._flag:
            poll = self._poll if watched else self._poll_self
            for fd, _ in poll.poll(max(0, math.ceil(timeout * 1000))):
                if fd == self._fd:
                    # Written but the flag reads False: a clear() ran between a set()'s
                    # flag and its write. Report it, so that the caller's clear() reads
                    # the count; else the readable eventfd would end every later wait.
                    return True
        return self._flag

    def __del__(self) -> None:  # nobody can set() it any more
        if self._skippable is not None:
            self._skippable.close()
        os.close(self._fd)


class _Skippable:
    """The epoll and the peeking of ``Wakeup.watch_datagrams``: the socket is another's
    (toxcore's), so it is read only with MSG_PEEK through a duplicate descriptor."""

    def __init__(self, fd: int, kinds: frozenset[int], event_fd: int) -> None:
        self.fd = fd
        self._kinds = kinds
        self._event_fd = event_fd
        self._sock = socket.socket(fileno=os.dup(fd))
        self._epoll = None
        try:
            if self._sock.type != socket.SOCK_DGRAM:
                raise OSError("not a datagram socket")
            self._sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)  # shared with toxcore's
            self._epoll = select.epoll()
            self._epoll.register(event_fd, select.EPOLLIN)
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLET)
        except OSError:
            self.close()
            raise
        self._buf = bytearray(65536)  # a whole datagram: a peek's offset moves by what it copied

    def wait(self, timeout: float) -> bool:
        """True: the eventfd is readable (or a datagram of another kind came)."""
        deadline = time.monotonic() + timeout
        flags = socket.MSG_PEEK | socket.MSG_DONTWAIT
        while True:
            events = self._epoll.poll(max(0.0, math.ceil((deadline - time.monotonic()) * 1000) / 1000))
            if not events:
                return False
            if any(fd == self._event_fd for fd, _ in events):
                return True
            while True:  # each datagram that came since the last look
                try:
                    n = self._sock.recv_into(self._buf, 0, flags)
                except BlockingIOError:
                    break
                if n == 0 or self._buf[0] not in self._kinds:
                    return False
            if time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        self._sock.close()  # the duplicate only
